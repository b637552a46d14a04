//! The typed options of the `restore` command.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::recovery::RecoveryOptions;
use super::Config;

/// Options of the `restore` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Where to restore the data directory.
    pub pg_path: PathBuf,
    /// The backup to restore; `None` picks the latest.
    pub set: Option<String>,
    /// Rewrite only files that differ from the backup (size and checksum).
    pub delta: bool,
    /// Restore over a non-empty directory, rewriting every file.
    pub force: bool,
    /// Tablespace destinations by OID or name.
    pub tablespace_map: BTreeMap<String, PathBuf>,
    /// Parallel workers.
    pub process_max: usize,
    /// Command line that `restore_command` runs, with `%f` and `%p` left for PostgreSQL.
    pub restore_command: Option<String>,
    /// Recovery target and how to reach it.
    pub recovery: RecoveryOptions,
}

impl Default for RestoreOptions {
    /// No data directory, every other option at its registry default.
    fn default() -> Self {
        RestoreOptions {
            pg_path: PathBuf::new(),
            set: None,
            delta: false,
            force: false,
            tablespace_map: BTreeMap::new(),
            process_max: Config::unconfigured(crate::options::Command::Restore).process_max(),
            restore_command: None,
            recovery: RecoveryOptions::default(),
        }
    }
}
