//! The typed options of `expire` (retention) and `verify`.

use std::path::PathBuf;

use pgbr_manifest::BackupType;

use super::{registry_default, Config};
use crate::options::Command;

/// What `repo-retention-full` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RetentionFullType {
    /// Keep that many full backups.
    #[default]
    Count,
    /// Keep full backups for that many days (and the newest one older than that, so the whole
    /// window stays recoverable).
    Time,
}

/// Options of `expire` (also run after every successful backup).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpireOptions {
    /// `repo-retention-full`: full backups (or days) to keep; `None` keeps every full backup.
    pub retention_full: Option<u32>,
    /// `repo-retention-full-type`.
    pub retention_full_type: RetentionFullType,
    /// `repo-retention-diff`: differential backups to keep; `None` keeps them with their full.
    pub retention_diff: Option<u32>,
    /// `repo-retention-archive`: backups of `retention_archive_type` whose WAL stays for
    /// point-in-time recovery; `None` follows `retention_full` (type full) or `retention_diff`.
    pub retention_archive: Option<u32>,
    /// `repo-retention-archive-type`: full, diff or incr.
    pub retention_archive_type: BackupType,
    /// `--set`: expire this backup (and what depends on it) instead of applying retention.
    pub set: Option<String>,
    /// `--force`: allow `--set` to expire the newest full backup.
    pub force: bool,
    /// `--dry-run`: report, remove nothing.
    pub dry_run: bool,
    /// Directory of the stanza lock files.
    pub lock_path: PathBuf,
    /// WAL from this segment on (any timeline) is kept whatever the retention: set by
    /// [`crate::multi::expire_options`] when a repository pgBackRest wrote, configured beside this
    /// one, needs the WAL pgbr archived since it took the stanza over to carry its newest
    /// backup to the present.
    pub keep_wal_from: Option<String>,
}

impl Default for ExpireOptions {
    /// Every option at its registry default: no retention, so nothing expires.
    fn default() -> Self {
        registry_default(Config::unconfigured(Command::Expire).expire())
    }
}

/// Options of `verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Parallel workers.
    pub process_max: usize,
    /// The retention options: WAL continuity is checked from the oldest backup whose WAL expire
    /// keeps for point-in-time recovery (older backups only need their own start..stop WAL).
    pub retention: ExpireOptions,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        registry_default(Config::unconfigured(Command::Verify).verify())
    }
}
