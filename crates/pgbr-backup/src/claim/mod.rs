//! The stanza's claim in the repository: what keeps two hosts that share a repository from
//! running `backup`, `expire` or a stanza command on one stanza at the same time.
//!
//! The local lock ([`crate::lock`]) protects one host. The claim is an object,
//! [`crate::layout::claim`] (`backup/<stanza>/backup.lock`), created with create-if-absent
//! (`O_EXCL`-like hard link on posix, `PutMode::Create` on object stores: `If-None-Match: *` on S3
//! and Azure, generation 0 on GCS) before the command changes anything. It names its holder:
//! command, backup label, host, pid, when it started and when it was last renewed. A command that
//! finds a live claim fails at once with [`Error::Locked`] (exit 13) naming the claim, the
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
//! ([`crate::layout::claim_takeover`], also create-if-absent): only the winner deletes the
//! stale claim, and only after reading it again under the marker, so a fresh claim is never
//! deleted as stale.

pub(crate) mod object;

pub(crate) use object::is_claim_name;
pub use object::{Claim, RENEW_EVERY, STALE_AFTER};

use crate::config::RepoOptions;
use crate::error::Result;

/// Releases the claim of `repo` when the command that ends with `result` took it (`took`): a
/// claim that cannot be removed is left for the next command to take over, with a warning.
pub(crate) async fn release_if<T>(
    repo: &mut crate::Repository,
    took: bool,
    result: Result<T>,
) -> Result<T> {
    if took {
        if let Some(claim) = repo.claim.take() {
            claim.release_or_warn().await;
        }
    }
    result
}

/// Runs `run` with `stanza` claimed in the repository `repo_opts` describes (for `command`), then
/// releases the claim: the stanza commands, which work without a [`crate::Repository`].
pub(crate) async fn with_stanza_claimed<T, F>(
    repo_opts: &RepoOptions,
    stanza: &str,
    command: &str,
    run: impl FnOnce() -> F,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let storage = crate::repo::open_storage(repo_opts)?;
    let repo = crate::repo::describe(repo_opts, &storage);
    let claim = Claim::take(&storage, &repo, stanza, command).await?;
    let result = run().await;
    claim.release_or_warn().await;
    result
}
