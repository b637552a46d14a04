//! The stanza's claim in the repository: what keeps two hosts that share a repository from
//! running `backup`, `expire` or a stanza command on one stanza at the same time.
//!
//! The local lock ([`crate::lock`]) protects one host. The claim is an object,
//! `layout::claim` (`backup/<stanza>/backup.lock`), created with create-if-absent
//! (`O_EXCL`-like hard link on posix, `PutMode::Create` on object stores: `If-None-Match: *` on S3
//! and Azure, generation 0 on GCS) before the command changes anything. It names its holder:
//! command, backup label, host, pid, when it started and when it was last renewed. A command that
//! finds a live claim fails at once with [`crate::Error::Locked`] (exit 13) naming the claim, the
//! repository and the holder; a backup therefore never shares its label or its directory with
//! another one.
//!
//! The holder renews the claim every [`RENEW_EVERY`] (it rewrites the object, after checking it is
//! still its own) and removes it when it ends, whether it succeeded or failed. A claim left by a
//! holder that is gone is stale, and the next command takes it over with a warning:
//! - on the holder's own host (same host name, boot and pid namespace), as soon as its process is
//!   gone: no process with its pid, or one that started at another time (a reused pid);
//! - from another host, once it has not been renewed for [`STALE_AFTER`] (hosts' clocks are
//!   assumed to agree within a few minutes). A live holder that could not renew for that long
//!   finds the claim gone or another's at its next renewal, and its backup fails without
//!   committing.
//!
//! Two commands that find the same stale claim race for a takeover marker
//! (`layout::claim_takeover`, also create-if-absent): only the winner deletes the
//! stale claim, and only after reading it again under the marker, so a fresh claim is never
//! deleted as stale.

mod object;

pub(crate) use object::is_claim_name;
pub use object::{Claim, RENEW_EVERY, STALE_AFTER};
