//! The typed options of the stanza commands.

use std::path::PathBuf;

/// Options of `stanza-delete`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Directory of the lock and stop files (`lock-path`).
    pub lock_path: PathBuf,
    /// The stanza's data directory (`pg1-path`), checked for a running PostgreSQL; `None` skips
    /// the check.
    pub pg_path: Option<PathBuf>,
    /// Delete even though PostgreSQL seems to run in `pg_path`.
    pub force: bool,
}
