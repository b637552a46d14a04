//! `archive-push` and `archive-get`: PostgreSQL's `archive_command` and `restore_command`.
//!
//! A WAL file is stored as `archive/<stanza>/<pg>-<db-id>/<TTTTTTTTLLLLLLLL>/<name>-<blake3><ext>`
//! (history files directly under `<pg>-<db-id>/`). The checksum in the name is of the plaintext, so a
//! second push of the same file is recognised whatever the cipher, and a read is verified against it.
//!
//! The parts: [`push`] and [`get`] against one repository, the stored names ([`find`],
//! [`archived_segments`]), the spool of asynchronous archiving ([`spool`]) with its two workers
//! (`drain`: push ahead of the archiver; `prefetch`: fetch ahead of recovery), and [`client`], the
//! commands as PostgreSQL runs them, from a [`crate::config::Config`], over every repository.

pub mod client;
mod drain;
mod get;
mod prefetch;
mod push;
mod repos;
pub mod spool;
mod stored;

pub use drain::{drain_ready, DrainReport};
pub(crate) use get::local_cluster;
pub use get::{get, read};
pub use prefetch::{prefetch, prefetch_candidates, take_prefetched, PrefetchReport};
pub use push::push;
pub use repos::{get_first, push_all, GetFirstReport, PushAllReport};
pub use stored::{archived_segments, find, find_for};
pub(crate) use stored::{parse_backrest_name, parse_stored_name};

use pgbr_storage::CompressType;

/// What `archive-push` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// The file was stored.
    Stored {
        /// Bytes written to the repository.
        stored_bytes: u64,
    },
    /// The same file (same checksum) was already in the archive; nothing was written.
    AlreadyArchived,
}

/// What `archive-get` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetOutcome {
    /// The file was written to the destination.
    Found,
    /// The archive does not hold the file (normal at the end of recovery).
    NotFound,
}

/// A WAL file as it sits in the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedWal {
    /// Object path.
    pub path: String,
    /// BLAKE3 hex of the plaintext.
    pub checksum: String,
    /// Codec of the stored bytes.
    pub compress_type: CompressType,
    /// Stored size.
    pub size: u64,
    /// Set for a file pgBackRest archived: its compression (bz2 among them). Its `checksum` is
    /// then the SHA-1 (40 hex digits) pgBackRest names it with, and it is encrypted, if at all,
    /// with the passphrase in pgBackRest's `archive.info`.
    pub backrest_compress: Option<pgbr_manifest::pgbackrest::BackrestCompress>,
}
