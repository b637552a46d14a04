//! Asynchronous archiving through a spool directory, so a busy server's `archive_command` and
//! `restore_command` do not wait on one repository round trip per segment.
//!
//! Push: [`queue_push`] copies the WAL file into `<spool>/archive/<stanza>/queue/` (fsynced, then
//! renamed) and returns; a background worker ([`drain_push_queue`]) pushes queued files in parallel
//! and deletes each once it is stored. A failure is written to `<spool>/archive/<stanza>/error/`,
//! and every later `archive-push` fails with it until the worker succeeds, so PostgreSQL's archiver
//! (and `pg_stat_archiver`) shows the problem. Queued files survive a killed worker: the next
//! `archive-push` starts a new one, which carries on where the old one stopped.
//!
//! Get: [`get_prefetched`] serves a segment from `<spool>/archive/<stanza>/in/` when a prefetch
//! worker ([`prefetch`]) already fetched (and verified) it, else fetches it directly; the caller then
//! starts a prefetch of the segments that follow.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgbr_wal::{Segment, WalFileName};

use crate::archive::{self, GetOutcome};
use crate::config::ArchivePushOptions;
use crate::error::{Error, Result};
use crate::repo::Repository;

/// Spool settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsyncOptions {
    /// `spool-path`.
    pub spool_path: PathBuf,
    /// Parallel transfers of the worker.
    pub process_max: usize,
    /// `archive-push-queue-max`: above this many queued bytes, new WAL is dropped (with a warning)
    /// rather than filling the disk. `None` = no limit.
    pub push_queue_max: Option<u64>,
    /// `archive-get-queue-max`: bytes of WAL to prefetch ahead of recovery.
    pub get_queue_max: u64,
}

/// What [`queue_push`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueOutcome {
    /// Durably queued; a worker must be running to push it.
    Queued,
    /// Already queued with the same contents.
    AlreadyQueued,
    /// Dropped because the queue is over `archive-push-queue-max`: the archive now has a gap.
    Dropped {
        /// Bytes queued when the file was dropped.
        queued_bytes: u64,
    },
}

fn stanza_spool(opts: &AsyncOptions, stanza: &str) -> PathBuf {
    opts.spool_path.join("archive").join(stanza)
}

fn queue_dir(opts: &AsyncOptions, stanza: &str) -> PathBuf {
    stanza_spool(opts, stanza).join("queue")
}

fn error_dir(opts: &AsyncOptions, stanza: &str) -> PathBuf {
    stanza_spool(opts, stanza).join("error")
}

fn in_dir(opts: &AsyncOptions, stanza: &str) -> PathBuf {
    stanza_spool(opts, stanza).join("in")
}

fn ensure_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| Error::io("unable to create spool directory", dir, e))
}

/// Writes `data` to `dir/name` durably: temporary file, fsync, rename, fsync of the directory.
fn write_durable(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dest = dir.join(name);
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, &dest)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("unable to write to the spool", &dest, e)
    })
}

/// Bytes of WAL waiting in the queue.
fn queued_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("unable to list the spool queue", dir, e)),
        Ok(entries) => {
            for e in entries.flatten() {
                if let Ok(m) = e.metadata() {
                    total += m.len();
                }
            }
        }
    }
    Ok(total)
}

/// The first error a background push left, if any: (WAL file, message).
pub fn pending_error(opts: &AsyncOptions, stanza: &str) -> Result<Option<(String, String)>> {
    let dir = error_dir(opts, stanza);
    let mut names: Vec<_> = match fs::read_dir(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("unable to list the spool", &dir, e)),
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".error"))
            .collect(),
    };
    names.sort();
    let Some(first) = names.into_iter().next() else {
        return Ok(None);
    };
    let message = fs::read_to_string(dir.join(&first)).unwrap_or_default();
    Ok(Some((
        first.trim_end_matches(".error").to_string(),
        message,
    )))
}

/// Queues the WAL file at `wal_path` for the background worker.
///
/// Fails if an earlier queued file could not be pushed (so PostgreSQL keeps retrying and reports
/// it), or if the file cannot be queued durably.
pub fn queue_push(
    stanza: &str,
    wal_path: &Path,
    push: &ArchivePushOptions,
    opts: &AsyncOptions,
) -> Result<QueueOutcome> {
    if let Some((wal, message)) = pending_error(opts, stanza)? {
        return Err(Error::Internal(format!(
            "asynchronous archive-push of {wal} failed: {message} (the file stays queued in {} and is retried)",
            queue_dir(opts, stanza).display()
        )));
    }
    let path = match (&push.pg_path, wal_path.is_relative()) {
        (Some(pg), true) => pg.join(wal_path),
        _ => wal_path.to_path_buf(),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::config(format!("'{}' does not name a WAL file", path.display())))?
        .to_string();
    if pgbr_wal::classify(&name).is_none() {
        return Err(Error::config(format!(
            "'{name}' is not a WAL segment, partial segment, backup history or timeline history file name"
        )));
    }
    let data = fs::read(&path).map_err(|e| Error::io("unable to read WAL file", &path, e))?;
    let queue = queue_dir(opts, stanza);
    ensure_dir(&queue)?;
    if let Ok(existing) = fs::read(queue.join(&name)) {
        if existing == data {
            return Ok(QueueOutcome::AlreadyQueued);
        }
    }
    if let Some(max) = opts.push_queue_max {
        let queued = queued_bytes(&queue)?;
        if queued + data.len() as u64 > max {
            return Ok(QueueOutcome::Dropped {
                queued_bytes: queued,
            });
        }
    }
    write_durable(&queue, &name, &data)?;
    Ok(QueueOutcome::Queued)
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
    Ok(WorkerLock::try_take(&stanza_spool(opts, stanza).join("push.lock"))?.is_none())
}

/// Whether a prefetch worker is running for `stanza`.
pub fn prefetch_worker_running(opts: &AsyncOptions, stanza: &str) -> Result<bool> {
    Ok(WorkerLock::try_take(&stanza_spool(opts, stanza).join("get.lock"))?.is_none())
}

/// What a worker did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Files pushed to the repository.
    pub pushed: u64,
    /// Files that failed (left queued, error recorded).
    pub failed: u64,
    /// Whether another worker already held the lock (this one did nothing).
    pub already_running: bool,
}

/// The push worker: pushes queued files to every repository of `repos`, `process_max` files at a
/// time, until the queue stays empty for `idle`. Only one worker runs per stanza and spool.
///
/// A file leaves the queue once every repository holds it. `unavailable` names the configured
/// repositories that could not be opened (with why): files are still pushed to the others, but
/// stay queued with that error, so `archive-push` keeps failing and a later worker fills in the
/// repository when it is back (repositories that already hold a file are not written again).
pub async fn drain_push_queue(
    repos: &[Repository],
    unavailable: &[String],
    push: &ArchivePushOptions,
    opts: &AsyncOptions,
    idle: Duration,
) -> Result<DrainReport> {
    let stanza = repos
        .first()
        .ok_or_else(|| {
            Error::Internal(format!(
                "no repository can take WAL: {}",
                unavailable.join("; ")
            ))
        })?
        .stanza()
        .to_string();
    let lock_path = stanza_spool(opts, &stanza).join("push.lock");
    let mut total = DrainReport {
        already_running: true,
        ..Default::default()
    };
    // A file queued just as the worker gave up would wait for the next archive-push: after
    // releasing the lock, look once more, and carry on if there is work and nobody took over.
    while let Some(lock) = WorkerLock::try_take(&lock_path)? {
        let r = drain_locked(repos, unavailable, push, opts, idle).await?;
        drop(lock);
        total.already_running = false;
        total.pushed += r.pushed;
        total.failed += r.failed;
        if r.failed > 0 || queued_names(&queue_dir(opts, &stanza))?.is_empty() {
            break;
        }
    }
    Ok(total)
}

fn queued_names(queue: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = match fs::read_dir(queue) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("unable to list the spool queue", queue, e)),
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.ends_with(".tmp") && pgbr_wal::classify(n).is_some())
            .collect(),
    };
    names.sort();
    Ok(names)
}

async fn drain_locked(
    repos: &[Repository],
    unavailable: &[String],
    push: &ArchivePushOptions,
    opts: &AsyncOptions,
    idle: Duration,
) -> Result<DrainReport> {
    let stanza = repos[0].stanza().to_string();
    let queue = queue_dir(opts, &stanza);
    let errors = error_dir(opts, &stanza);
    ensure_dir(&queue)?;
    ensure_dir(&errors)?;
    let mut report = DrainReport::default();
    let mut idle_since = Instant::now();
    loop {
        let names = queued_names(&queue)?;
        if names.is_empty() {
            if idle_since.elapsed() >= idle {
                return Ok(report);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        idle_since = Instant::now();
        let batch: Vec<String> = names
            .into_iter()
            .take(opts.process_max.max(1) * 4)
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        let mut results = Vec::new();
        for name in batch {
            while tasks.len() >= opts.process_max.max(1) {
                if let Some(r) = tasks.join_next().await {
                    results.push(r);
                }
            }
            let path = queue.join(&name);
            let push = ArchivePushOptions {
                pg_path: None,
                ..push.clone()
            };
            // Tasks own what they use; a task handle shares the storage and the key.
            let handles: Vec<Repository> = repos.iter().map(Repository::task_handle).collect();
            let mut problems: Vec<String> = unavailable.to_vec();
            tasks.spawn(async move {
                for repo in &handles {
                    if let Err(e) = archive::push(repo, &path, &push).await {
                        problems.push(format!("{}: {e}", repo.name()));
                    }
                }
                let r = if problems.is_empty() {
                    Ok(())
                } else {
                    Err(problems.join("; "))
                };
                (name, r)
            });
        }
        while let Some(r) = tasks.join_next().await {
            results.push(r);
        }
        for r in results {
            let (name, outcome) =
                r.map_err(|e| Error::Internal(format!("push task failed: {e}")))?;
            match outcome {
                Ok(_) => {
                    report.pushed += 1;
                    let _ = fs::remove_file(errors.join(format!("{name}.error")));
                    fs::remove_file(queue.join(&name)).map_err(|e| {
                        Error::io("unable to remove from the spool", queue.join(&name), e)
                    })?;
                }
                Err(e) => {
                    report.failed += 1;
                    write_durable(&errors, &format!("{name}.error"), e.to_string().as_bytes())?;
                }
            }
        }
        // A failure is left for the next archive-push to report and to retry (it starts a new
        // worker): no busy retry loop in the background.
        if report.failed > 0 {
            return Ok(report);
        }
    }
}

/// Serves `wal_name` from the prefetch spool if a worker fetched it, else from the repository.
pub async fn get_prefetched(
    repo: &Repository,
    wal_name: &str,
    dest: &Path,
    opts: &AsyncOptions,
) -> Result<GetOutcome> {
    let spooled = in_dir(opts, repo.stanza()).join(wal_name);
    if spooled.exists() {
        // Prefetched files were verified against their checksum when fetched.
        match fs::rename(&spooled, dest) {
            Ok(()) => return Ok(GetOutcome::Found),
            Err(_) => {
                // Another filesystem: copy, then remove.
                let data =
                    fs::read(&spooled).map_err(|e| Error::io("unable to read", &spooled, e))?;
                let dir = dest.parent().unwrap_or(Path::new("."));
                let name = dest
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("RECOVERYXLOG");
                write_durable(dir, name, &data)?;
                let _ = fs::remove_file(&spooled);
                return Ok(GetOutcome::Found);
            }
        }
    }
    archive::get(repo, wal_name, dest).await
}

/// The segments after `wal_name` worth prefetching within `archive-get-queue-max`.
pub fn prefetch_candidates(wal_name: &str, segment_size: u64, opts: &AsyncOptions) -> Vec<String> {
    let Some(WalFileName::Segment(_)) = pgbr_wal::classify(wal_name) else {
        return Vec::new();
    };
    let Ok(seg) = Segment::parse(wal_name, segment_size) else {
        return Vec::new();
    };
    let count = (opts.get_queue_max / segment_size.max(1)).max(1);
    let mut out = Vec::new();
    let mut s = seg;
    for _ in 0..count {
        s = s.next();
        out.push(s.name());
    }
    out
}

/// What a prefetch worker did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefetchReport {
    /// Segments fetched into the spool.
    pub fetched: u64,
    /// Segments the archive does not hold (yet).
    pub missing: u64,
    /// Another prefetch worker held the lock.
    pub already_running: bool,
}

/// The prefetch worker: fetches the segments after `wal_name` into the spool in parallel, and
/// drops spooled segments recovery has moved past.
pub async fn prefetch(
    repo: &Repository,
    wal_name: &str,
    segment_size: u64,
    opts: &AsyncOptions,
) -> Result<PrefetchReport> {
    let stanza = repo.stanza().to_string();
    let Some(_lock) = WorkerLock::try_take(&stanza_spool(opts, &stanza).join("get.lock"))? else {
        return Ok(PrefetchReport {
            already_running: true,
            ..Default::default()
        });
    };
    let dir = in_dir(opts, &stanza);
    ensure_dir(&dir)?;
    let wanted = prefetch_candidates(wal_name, segment_size, opts);
    // Anything spooled that is not wanted any more (older, or another timeline) goes.
    for e in fs::read_dir(&dir)
        .map_err(|e| Error::io("unable to list", &dir, e))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        if !wanted.contains(&name) {
            let _ = fs::remove_file(e.path());
        }
    }
    let mut report = PrefetchReport::default();
    let mut tasks = tokio::task::JoinSet::new();
    for name in wanted {
        if dir.join(&name).exists() {
            continue;
        }
        while tasks.len() >= opts.process_max.max(1) {
            if let Some(r) = tasks.join_next().await {
                tally(&mut report, r)?;
            }
        }
        let repo = repo.task_handle();
        let dir = dir.clone();
        tasks.spawn(async move {
            // As archive-get: the cluster in the data directory (the worker's cwd) picks the
            // archive ids once the stanza lists several clusters.
            let Some(wal) = archive::find_for(&repo, &name, archive::local_cluster()).await? else {
                return Ok(false);
            };
            let data = archive::read(&repo, &wal).await?;
            write_durable(&dir, &name, &data)?;
            Ok(true)
        });
    }
    while let Some(r) = tasks.join_next().await {
        tally(&mut report, r)?;
    }
    Ok(report)
}

fn tally(
    report: &mut PrefetchReport,
    r: std::result::Result<Result<bool>, tokio::task::JoinError>,
) -> Result<()> {
    match r.map_err(|e| Error::Internal(format!("prefetch task failed: {e}")))? {
        Ok(true) => report.fetched += 1,
        Ok(false) => report.missing += 1,
        Err(e) => return Err(e),
    }
    Ok(())
}
