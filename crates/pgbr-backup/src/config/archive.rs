//! The typed options of `archive-push`, and the spool of asynchronous archiving.

use std::path::{Path, PathBuf};

use super::{registry_default, CompressOptions, Config};
use crate::error::Error;
use crate::options::Command;

/// Options of `archive-push`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivePushOptions {
    /// Compression.
    pub compress: CompressOptions,
    /// The data directory relative WAL paths are resolved against (PostgreSQL passes `pg_wal/...`).
    pub pg_path: Option<PathBuf>,
    /// Threads one segment's compression may use (`process-max`; 0 or 1: the calling thread).
    pub process_max: usize,
}

impl Default for ArchivePushOptions {
    /// No data directory, compression and workers at their registry defaults.
    fn default() -> Self {
        registry_default(Config::unconfigured(Command::ArchivePush).archive_push())
    }
}

impl ArchivePushOptions {
    /// The WAL file `wal` names. PostgreSQL runs `archive_command` in its data directory and
    /// passes `%p` relative to it (`pg_wal/...`), so a relative path is resolved against
    /// `pg_path`, which must be set and be the current directory (as pgBackRest requires):
    /// otherwise pgbr would archive another cluster's file, or fail to find one, under a
    /// misleading message.
    pub fn wal_path(&self, wal: &Path) -> Result<PathBuf, Error> {
        if wal.is_absolute() {
            return Ok(wal.to_path_buf());
        }
        let Some(pg) = &self.pg_path else {
            return Err(Error::config(format!(
                "archive-push was given the relative WAL path {} but option 'pg1-path' is not set: set pg1-path to the data directory of the cluster that archives (PostgreSQL runs archive_command there; is %f passed instead of %p?)",
                wal.display()
            )));
        };
        let cwd = std::env::current_dir()
            .and_then(std::fs::canonicalize)
            .map_err(|e| Error::io("unable to read the current directory", ".", e))?;
        if std::fs::canonicalize(pg).ok().as_deref() != Some(cwd.as_path()) {
            return Err(Error::config(format!(
                "archive-push was given the relative WAL path {} in directory {}, but pg1-path is {}: PostgreSQL runs archive_command in its data directory, so pg1-path must be {} (fix pg1-path in this stanza's configuration, or make this cluster archive to its own stanza)",
                wal.display(),
                cwd.display(),
                pg.display(),
                cwd.display()
            )));
        }
        Ok(pg.join(wal))
    }
}

/// Spool settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsyncOptions {
    /// `spool-path`.
    pub spool_path: PathBuf,
    /// Parallel transfers of the worker.
    pub process_max: usize,
    /// `archive-push-queue-max`: above this many bytes of WAL waiting to be pushed, the waiting
    /// files are dropped (reported as archived, with an error) rather than filling the disk.
    /// `None` = no limit.
    pub push_queue_max: Option<u64>,
    /// `archive-get-queue-max`: bytes of WAL to prefetch ahead of recovery.
    pub get_queue_max: u64,
}

impl AsyncOptions {
    /// The spool directory of `stanza`: `<spool-path>/archive/<stanza>`, where the reports,
    /// the prefetched segments, the worker locks and the workers' logs are.
    pub fn stanza_dir(&self, stanza: &str) -> PathBuf {
        self.spool_path.join("archive").join(stanza)
    }
}
