//! The spool of asynchronous archiving, so a busy server's `archive_command` and
//! `restore_command` do not wait on one repository round trip per segment.
//!
//! Push works as pgBackRest's does: a background worker ([`super::drain_ready`]) pushes every WAL file
//! PostgreSQL has marked ready for archiving (`pg_wal/archive_status/<name>.ready`), `process-max`
//! at a time, ahead of the archiver, straight from `pg_wal`, and reports each in
//! `<spool>/archive/<stanza>/out/`: `<name>.ok` once every repository holds it, `<name>.error`
//! when it could not be pushed. `archive-push` returns once its own file is reported
//! ([`take_push_status`]): PostgreSQL recycles a segment only after it is in the repository, so a
//! killed worker, a lost spool or a lost host loses nothing. Above `archive-push-queue-max` bytes
//! of ready WAL the worker reports the waiting files as dropped instead, and `archive-push` says so
//! loudly and succeeds, so that `pg_wal` does not fill the disk.
//!
//! Get: [`super::take_prefetched`] serves a segment from `<spool>/archive/<stanza>/in/` when a prefetch
//! worker ([`super::prefetch`]) already fetched (and verified) it, else fetches it directly; the caller then
//! starts a prefetch of the segments that follow.

use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub use crate::config::AsyncOptions;
use crate::error::{Error, Result};
use crate::layout;

pub(super) fn out_dir(opts: &AsyncOptions, stanza: &str) -> PathBuf {
    opts.stanza_dir(stanza).join("out")
}

pub(super) fn in_dir(opts: &AsyncOptions, stanza: &str) -> PathBuf {
    opts.stanza_dir(stanza).join("in")
}

/// The lock the push worker of `stanza` holds while it runs.
pub(super) fn push_lock(opts: &AsyncOptions, stanza: &str) -> PathBuf {
    opts.stanza_dir(stanza).join("push.lock")
}

/// The lock the prefetch worker of `stanza` holds while it runs.
pub(super) fn prefetch_lock(opts: &AsyncOptions, stanza: &str) -> PathBuf {
    opts.stanza_dir(stanza).join("get.lock")
}

pub(super) fn ensure_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| Error::io("unable to create spool directory", dir, e))
}

/// Writes `data` to `dir/name` through a temporary name, so that a reader sees all of it or
/// nothing. Not synced: a report lost in a crash only makes `archive-push` push its file again.
pub(super) fn write_report(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dest = dir.join(name);
    fs::write(&tmp, data)
        .and_then(|()| fs::rename(&tmp, &dest))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io("unable to write to the spool", &dest, e)
        })
}

/// Where PostgreSQL marks `wal_path` ready for archiving: `archive_status/<name>.ready` in the
/// directory that holds it.
fn ready_marker(wal_path: &Path) -> Option<PathBuf> {
    let name = wal_path.file_name()?.to_str()?;
    Some(
        wal_path
            .parent()?
            .join("archive_status")
            .join(format!("{name}.ready")),
    )
}

/// Whether PostgreSQL has marked the WAL file at `wal_path` ready for archiving. Only such files
/// are pushed by the worker (it finds them by their markers); `archive-push` pushes any other
/// file itself.
pub fn is_marked_ready(wal_path: &Path) -> bool {
    ready_marker(wal_path).is_some_and(|m| m.exists())
}

/// What the push worker reported for a WAL file (see [`take_push_status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushStatus {
    /// Every repository holds it.
    Pushed,
    /// Not pushed, and reported as archived: more WAL waited than `archive-push-queue-max`.
    /// The text says how much.
    Dropped(String),
    /// Pushing failed: the message. The next worker tries again.
    Failed(String),
    /// Nothing reported yet.
    Pending,
}

/// Name of the report of a worker that failed as a whole (no repository could be opened, ...).
const WORKER_FAILED: &str = "global.error";

/// Records why the push worker failed as a whole: the `archive-push` waiting fails with it, and
/// the next one starts a new worker.
pub fn report_worker_failure(opts: &AsyncOptions, stanza: &str, why: &str) -> Result<()> {
    let dir = out_dir(opts, stanza);
    ensure_dir(&dir)?;
    write_report(&dir, WORKER_FAILED, why.as_bytes())
}

/// The worker's report on the WAL file `name`, or the report of a worker that failed as a whole.
/// A failure is taken out of the spool, so that the next `archive-push` starts a worker that
/// tries again. A success stays until the worker sees the file no longer marked ready: a report
/// taken while PostgreSQL had not yet marked the file done would make the worker push it again.
pub fn take_push_status(opts: &AsyncOptions, stanza: &str, name: &str) -> Result<PushStatus> {
    let dir = out_dir(opts, stanza);
    let reports = [
        (layout::spool_ok(name), false),
        (layout::spool_error(name), true),
        (WORKER_FAILED.to_string(), true),
    ];
    for (file, failed) in reports {
        let path = dir.join(file);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("unable to read the spool", &path, e)),
        };
        if failed {
            fs::remove_file(&path)
                .map_err(|e| Error::io("unable to remove from the spool", &path, e))?;
        }
        return Ok(match (failed, text.is_empty()) {
            (true, _) => PushStatus::Failed(text),
            (false, true) => PushStatus::Pushed,
            (false, false) => PushStatus::Dropped(text),
        });
    }
    Ok(PushStatus::Pending)
}

/// An exclusive, non-blocking lock on a file, released when dropped (or when the process dies).
pub struct WorkerLock {
    _file: File,
}

impl WorkerLock {
    /// Takes the lock at `path`, or `None` if another process holds it.
    pub fn try_take(path: &Path) -> Result<Option<WorkerLock>> {
        if let Some(parent) = path.parent() {
            ensure_dir(parent)?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("unable to open lock file", path, e))?;
        // SAFETY: flock on a valid, open descriptor has no memory-safety preconditions.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Ok(None);
        }
        Ok(Some(WorkerLock { _file: file }))
    }
}

/// Whether a push worker is running for `stanza` (its lock is held).
pub fn push_worker_running(opts: &AsyncOptions, stanza: &str) -> Result<bool> {
    Ok(WorkerLock::try_take(&push_lock(opts, stanza))?.is_none())
}

/// Whether a prefetch worker is running for `stanza`.
pub fn prefetch_worker_running(opts: &AsyncOptions, stanza: &str) -> Result<bool> {
    Ok(WorkerLock::try_take(&prefetch_lock(opts, stanza))?.is_none())
}

/// A spool in `root/spool`, two workers, no queue limits.
#[cfg(test)]
pub(super) fn spool_under(root: &Path) -> AsyncOptions {
    AsyncOptions {
        spool_path: root.join("spool"),
        process_max: 2,
        push_queue_max: None,
        get_queue_max: 0,
    }
}
