//! The typed options of the `backup` command.

use std::path::PathBuf;
use std::time::Duration;

use pgbr_manifest::BackupType;
use pgbr_storage::CompressType;

use super::{registry_default, Config, PgOptions};
use crate::options::Command;

/// Compression settings for stored files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressOptions {
    /// Codec.
    pub compress_type: CompressType,
    /// Level.
    pub level: i32,
}

impl Default for CompressOptions {
    fn default() -> Self {
        registry_default(Config::unconfigured(Command::Backup).compress())
    }
}

/// Options of the `backup` command.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupOptions {
    /// full, diff or incr.
    pub backup_type: BackupType,
    /// Compression.
    pub compress: CompressOptions,
    /// Parallel workers.
    pub process_max: usize,
    /// Ask PostgreSQL for an immediate checkpoint.
    pub start_fast: bool,
    /// `expire-auto`: [`crate::backup_expire::run`] applies the retention after the backup.
    pub expire_auto: bool,
    /// Wait until the WAL the backup needs is in the archive.
    pub archive_check: bool,
    /// Also store that WAL inside the backup.
    pub archive_copy: bool,
    /// How long to wait for the WAL.
    pub archive_timeout: Duration,
    /// Directory of the stanza lock files (`lock-path`); `backup` takes the lock itself.
    pub lock_path: PathBuf,
    /// Compare files with the prior backup by checksum instead of size and modification time.
    pub delta: bool,
    /// Pack small files into bundle objects (`None`: one object per file). On by default: one
    /// object per small file is what makes clusters of many relations slow to back up.
    pub bundle: Option<BundleOptions>,
    /// `backup-standby`: copy files from this standby (the `pg2-*` options) once it has replayed
    /// past the backup's start; the primary (`pg1-*`) still starts and stops the backup.
    pub standby: Option<PgOptions>,
}

/// Bundling of small files (`repo1-bundle*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleOptions {
    /// Target size of a bundle object.
    pub size: u64,
    /// Files smaller than this are bundled.
    pub limit: u64,
}

impl Default for BundleOptions {
    /// The sizes `repo1-bundle-size` and `repo1-bundle-limit` default to.
    fn default() -> Self {
        registry_default(Config::unconfigured(Command::Backup).bundle_sizes(1))
    }
}

impl Default for BackupOptions {
    /// A full backup (a configured `backup` without `--type` is incremental), every other option
    /// at its registry default.
    fn default() -> Self {
        let mapped = registry_default(Config::unconfigured(Command::Backup).backup());
        BackupOptions {
            backup_type: BackupType::Full,
            ..mapped
        }
    }
}
