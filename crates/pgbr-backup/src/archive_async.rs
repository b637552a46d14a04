//! Asynchronous archiving through a spool directory, so a busy server's `archive_command` and
//! `restore_command` do not wait on one repository round trip per segment.
//!
//! Push works as pgBackRest's does: a background worker ([`drain_ready`]) pushes every WAL file
//! PostgreSQL has marked ready for archiving (`pg_wal/archive_status/<name>.ready`), `process-max`
//! at a time, ahead of the archiver, straight from `pg_wal`, and reports each in
//! `<spool>/archive/<stanza>/out/`: `<name>.ok` once every repository holds it, `<name>.error`
//! when it could not be pushed. `archive-push` returns once its own file is reported
//! ([`take_push_status`]): PostgreSQL recycles a segment only after it is in the repository, so a
//! killed worker, a lost spool or a lost host loses nothing. Above `archive-push-queue-max` bytes
//! of ready WAL the worker reports the waiting files as dropped instead, and `archive-push` says so
//! loudly and succeeds, so that `pg_wal` does not fill the disk.
//!
//! Get: [`take_prefetched`] serves a segment from `<spool>/archive/<stanza>/in/` when a prefetch
//! worker ([`prefetch`]) already fetched (and verified) it, else fetches it directly; the caller then
//! starts a prefetch of the segments that follow.

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgbr_wal::{Segment, WalFileName};

use crate::archive;
use crate::config::ArchivePushOptions;
pub use crate::config::AsyncOptions;
use crate::error::{Error, Result};
use crate::layout;
use crate::repo::Repository;

fn out_dir(opts: &AsyncOptions, stanza: &str) -> PathBuf {
    opts.stanza_dir(stanza).join("out")
}

fn in_dir(opts: &AsyncOptions, stanza: &str) -> PathBuf {
    opts.stanza_dir(stanza).join("in")
}

/// The lock the push worker of `stanza` holds while it runs.
fn push_lock(opts: &AsyncOptions, stanza: &str) -> PathBuf {
    opts.stanza_dir(stanza).join("push.lock")
}

/// The lock the prefetch worker of `stanza` holds while it runs.
fn prefetch_lock(opts: &AsyncOptions, stanza: &str) -> PathBuf {
    opts.stanza_dir(stanza).join("get.lock")
}

fn ensure_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| Error::io("unable to create spool directory", dir, e))
}

/// Writes `data` to `dir/name` through a temporary name, so that a reader sees all of it or
/// nothing. Not synced: a report lost in a crash only makes `archive-push` push its file again.
fn write_report(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
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

/// What a worker did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Files pushed to the repository.
    pub pushed: u64,
    /// Files that failed (reported as failed; the next worker tries again).
    pub failed: u64,
    /// Files dropped because more WAL waited than `archive-push-queue-max`.
    pub dropped: u64,
    /// Whether another worker already held the lock (this one did nothing).
    pub already_running: bool,
}

/// The push worker: pushes the WAL files of `wal_dir` that PostgreSQL marked ready and that have
/// no report yet to every repository of `repos`, `process_max` files at a time, reporting each
/// (see the module documentation), until no such file has appeared for `idle`. Only one worker
/// runs per stanza and spool. It stops at the first failure: the `archive-push` of that file
/// fails with it, and the next `archive-push` starts a new worker.
///
/// `unavailable` names the configured repositories that could not be opened (with why): files
/// are still pushed to the others but reported as failed, so `archive-push` keeps failing until
/// the repository is back (repositories that already hold a file are not written again).
pub async fn drain_ready(
    repos: &[Repository],
    unavailable: &[String],
    push: &ArchivePushOptions,
    opts: &AsyncOptions,
    wal_dir: &Path,
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
    let lock_path = push_lock(opts, &stanza);
    let mut total = DrainReport {
        already_running: true,
        ..Default::default()
    };
    // A file marked ready just as the worker gave up would wait for the next archive-push: after
    // releasing the lock, look once more, and carry on if there is work and nobody took over.
    while let Some(lock) = WorkerLock::try_take(&lock_path)? {
        let r = drain_locked(repos, unavailable, push, opts, wal_dir, idle).await?;
        drop(lock);
        total.already_running = false;
        total.pushed += r.pushed;
        total.failed += r.failed;
        total.dropped += r.dropped;
        if r.failed > 0 || unreported(wal_dir, &out_dir(opts, &stanza))?.is_empty() {
            break;
        }
    }
    Ok(total)
}

/// The WAL files of `wal_dir` marked ready for archiving and not reported on in `out`, in
/// archiving order, with their sizes.
fn unreported(wal_dir: &Path, out: &Path) -> Result<Vec<(String, u64)>> {
    let status = wal_dir.join("archive_status");
    let entries = match fs::read_dir(&status) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("unable to list", &status, e)),
        Ok(entries) => entries,
    };
    let mut names: Vec<(String, u64)> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".ready").map(str::to_string))
        .filter(|n| pgbr_wal::classify(n).is_some() && !out.join(layout::spool_ok(n)).exists())
        .filter_map(|n| {
            // A file gone since its marker was listed is PostgreSQL's business, not ours.
            let size = fs::metadata(wal_dir.join(&n)).ok()?.len();
            Some((n, size))
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Removes the reports of files no longer marked ready: PostgreSQL has marked them done (their
/// `archive-push` returned), or removed them.
fn remove_stale_reports(wal_dir: &Path, out: &Path) {
    let Ok(entries) = fs::read_dir(out) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(file) = e.file_name().into_string() else {
            continue;
        };
        let name = file
            .strip_suffix(".ok")
            .or_else(|| file.strip_suffix(".error"))
            .filter(|name| pgbr_wal::classify(name).is_some());
        if name.is_some_and(|name| !is_marked_ready(&wal_dir.join(name))) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// How often a busy push worker removes the reports of files archived since.
const STALE_REPORTS_EVERY: Duration = Duration::from_secs(60);

/// A push task's outcome: the WAL file, and why pushing it failed, if it did.
type PushedFile = (String, std::result::Result<(), String>);

/// Reports the file of a finished push task in `out`, counts it, and returns its name.
fn report_pushed(
    joined: std::result::Result<PushedFile, tokio::task::JoinError>,
    out: &Path,
    report: &mut DrainReport,
) -> Result<String> {
    let (name, outcome) = joined.map_err(|e| Error::Internal(format!("push task failed: {e}")))?;
    match outcome {
        Ok(()) => {
            report.pushed += 1;
            let _ = fs::remove_file(out.join(layout::spool_error(&name)));
            write_report(out, &layout::spool_ok(&name), b"")?;
            crate::failpoints::crash_point!("archive-push-async::after-report");
        }
        Err(e) => {
            report.failed += 1;
            write_report(out, &layout::spool_error(&name), e.as_bytes())?;
        }
    }
    Ok(name)
}

async fn drain_locked(
    repos: &[Repository],
    unavailable: &[String],
    push: &ArchivePushOptions,
    opts: &AsyncOptions,
    wal_dir: &Path,
    idle: Duration,
) -> Result<DrainReport> {
    let stanza = repos[0].stanza().to_string();
    let out = out_dir(opts, &stanza);
    ensure_dir(&out)?;
    let slots = opts.process_max.max(1);
    let push = ArchivePushOptions {
        pg_path: None,
        ..push.clone()
    };
    let mut report = DrainReport::default();
    let mut idle_since = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut cleaned = Instant::now();
    loop {
        // A slot is free: look for files marked ready since (PostgreSQL calls archive_command
        // right after marking one, so this is done often).
        if tasks.len() < slots {
            let unreported = unreported(wal_dir, &out)?;
            let waiting_bytes: u64 = unreported.iter().map(|(_, size)| size).sum();
            let mut waiting: Vec<String> = unreported
                .into_iter()
                .map(|(name, _)| name)
                .filter(|name| !in_flight.contains(name))
                .collect();
            if !waiting.is_empty() {
                idle_since = Instant::now();
            }
            if let Some(max) = opts.push_queue_max.filter(|&max| waiting_bytes > max) {
                let why = format!(
                    "{waiting_bytes} bytes of WAL waited to be pushed, over archive-push-queue-max ({max} bytes)"
                );
                for name in waiting.drain(..) {
                    write_report(&out, &layout::spool_ok(&name), why.as_bytes())?;
                    report.dropped += 1;
                }
            }
            for name in waiting.into_iter().take(slots - tasks.len()) {
                in_flight.insert(name.clone());
                let path = wal_dir.join(&name);
                let push = push.clone();
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
        }
        if tasks.is_empty() {
            if idle_since.elapsed() >= idle {
                remove_stale_reports(wal_dir, &out);
                return Ok(report);
            }
            // A worker kept busy for days must not collect a report per segment.
            if cleaned.elapsed() >= STALE_REPORTS_EVERY {
                remove_stale_reports(wal_dir, &out);
                cleaned = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        // Each file is reported as soon as it is pushed: its archive-push is waiting. With a
        // slot free, look for new files again after a short while.
        let joined = if tasks.len() < slots {
            tokio::select! {
                joined = tasks.join_next() => joined,
                () = tokio::time::sleep(Duration::from_millis(10)) => None,
            }
        } else {
            tasks.join_next().await
        };
        if let Some(joined) = joined {
            let name = report_pushed(joined, &out, &mut report)?;
            in_flight.remove(&name);
            idle_since = Instant::now();
        }
        // A failure is left for the archive-push of that file to report; the next archive-push
        // starts a new worker, which tries again: no busy retry loop in the background.
        if report.failed > 0 {
            while let Some(joined) = tasks.join_next().await {
                report_pushed(joined, &out, &mut report)?;
            }
            return Ok(report);
        }
    }
}

/// How long `archive-get` waits at most for a segment a prefetch worker is fetching.
const PREFETCH_WAIT_MAX: Duration = Duration::from_secs(60);

/// Marks, in the prefetch spool, a segment a prefetch worker is fetching.
fn fetching_marker(dir: &Path, wal_name: &str) -> PathBuf {
    dir.join(format!("{wal_name}.fetching"))
}

/// Moves `wal_name` from the prefetch spool to `dest` if a worker fetched it (it was verified
/// against its checksum then), waiting for it while a running worker is fetching it; false when
/// it is not there and not coming. No repository is opened, so a prefetched segment costs no key
/// unwrap.
pub async fn take_prefetched(
    stanza: &str,
    wal_name: &str,
    dest: &Path,
    opts: &AsyncOptions,
) -> Result<bool> {
    let dir = in_dir(opts, stanza);
    let started = Instant::now();
    loop {
        if move_prefetched(&dir, wal_name, dest)? {
            return Ok(true);
        }
        // Being fetched: wait for it rather than fetch it a second time.
        let coming = fetching_marker(&dir, wal_name).exists()
            && prefetch_worker_running(opts, stanza)?
            && started.elapsed() < PREFETCH_WAIT_MAX;
        if !coming {
            // It may have arrived between the two looks.
            return move_prefetched(&dir, wal_name, dest);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Moves `dir/wal_name` to `dest` if it is there.
fn move_prefetched(dir: &Path, wal_name: &str, dest: &Path) -> Result<bool> {
    let spooled = dir.join(wal_name);
    if !spooled.exists() {
        return Ok(false);
    }
    if fs::rename(&spooled, dest).is_err() {
        // Another filesystem: copy, then remove.
        let data = fs::read(&spooled).map_err(|e| Error::io("unable to read", &spooled, e))?;
        pgbr_storage::posix::write_file_durable(dest, &data, 0o600)?;
        let _ = fs::remove_file(&spooled);
    }
    Ok(true)
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

/// How long a prefetch worker with every wanted segment spooled waits for recovery to take one
/// before it exits.
const PREFETCH_IDLE: Duration = Duration::from_secs(5);

/// The prefetch worker: keeps the segments after `wal_name` (as many as `archive-get-queue-max`
/// holds) in the spool, fetching them in parallel, and moves on as recovery takes them. It
/// drops spooled segments recovery has moved past, and exits when a segment is not in the
/// archive (yet), or when recovery has taken none for a few seconds.
pub async fn prefetch(
    repo: &Repository,
    wal_name: &str,
    segment_size: u64,
    opts: &AsyncOptions,
) -> Result<PrefetchReport> {
    let stanza = repo.stanza().to_string();
    let Some(_lock) = WorkerLock::try_take(&prefetch_lock(opts, &stanza))? else {
        return Ok(PrefetchReport {
            already_running: true,
            ..Default::default()
        });
    };
    let dir = in_dir(opts, &stanza);
    ensure_dir(&dir)?;
    let mut report = PrefetchReport::default();
    let mut after = wal_name.to_string();
    let mut idle_since = Instant::now();
    loop {
        let window = prefetch_candidates(&after, segment_size, opts);
        // Anything spooled that is not wanted any more (older, or another timeline) goes.
        for e in fs::read_dir(&dir)
            .map_err(|e| Error::io("unable to list", &dir, e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if !window.contains(&name) {
                let _ = fs::remove_file(e.path());
            }
        }
        let wanted: Vec<String> = window
            .iter()
            .filter(|name| !dir.join(name).exists())
            .cloned()
            .collect();
        if wanted.is_empty() {
            if idle_since.elapsed() >= PREFETCH_IDLE {
                return Ok(report);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        } else {
            let missing = report.missing;
            fetch_into(repo, wanted, &dir, opts, &mut report).await?;
            if report.missing > missing {
                // The end of the archive, for now: the next archive-get starts a worker again.
                return Ok(report);
            }
            idle_since = Instant::now();
        }
        // Recovery has taken the spooled segments that are gone: the window moves past them.
        if let Some(taken) = window.iter().rev().find(|name| !dir.join(name).exists()) {
            after = taken.clone();
        }
    }
}

/// Fetches `wanted` into the spool `dir`, `process-max` at a time.
async fn fetch_into(
    repo: &Repository,
    wanted: Vec<String>,
    dir: &Path,
    opts: &AsyncOptions,
    report: &mut PrefetchReport,
) -> Result<()> {
    // Marked before any is fetched: an archive-get of one of them waits for it rather than
    // fetching it too.
    for name in &wanted {
        let marker = fetching_marker(dir, name);
        fs::write(&marker, b"")
            .map_err(|e| Error::io("unable to write to the spool", &marker, e))?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for name in wanted {
        while tasks.len() >= opts.process_max.max(1) {
            if let Some(r) = tasks.join_next().await {
                tally(report, r)?;
            }
        }
        let repo = repo.task_handle();
        let dir = dir.to_path_buf();
        tasks.spawn(async move {
            let fetched = async {
                // As archive-get: the cluster in the data directory (the worker's cwd) picks the
                // archive ids once the stanza lists several clusters.
                let Some(wal) = archive::find_for(&repo, &name, archive::local_cluster()).await?
                else {
                    return Ok(false);
                };
                let data = archive::read(&repo, &wal).await?;
                pgbr_storage::posix::write_file_durable(&dir.join(&name), &data, 0o600)?;
                Ok(true)
            }
            .await;
            let _ = fs::remove_file(fetching_marker(&dir, &name));
            fetched
        });
    }
    while let Some(r) = tasks.join_next().await {
        tally(report, r)?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "000000010000000000000001";
    const B: &str = "000000010000000000000002";
    const C: &str = "000000010000000000000003";

    /// A spool in `root/spool`, two workers, no queue limits.
    fn spool_under(root: &Path) -> AsyncOptions {
        AsyncOptions {
            spool_path: root.join("spool"),
            process_max: 2,
            push_queue_max: None,
            get_queue_max: 0,
        }
    }

    #[test]
    fn reports_say_which_ready_files_are_left_and_what_became_of_each() {
        let root = tempfile::tempdir().unwrap();
        let wal = root.path().join("pg_wal");
        fs::create_dir_all(wal.join("archive_status")).unwrap();
        for name in [A, B] {
            fs::write(wal.join(name), b"wal").unwrap();
        }
        // C is marked ready but gone: PostgreSQL's business, not the worker's.
        for name in [A, B, C] {
            fs::write(wal.join(format!("archive_status/{name}.ready")), b"").unwrap();
        }
        fs::write(wal.join(format!("archive_status/{C}.done")), b"").unwrap();
        let opts = spool_under(root.path());
        let out = out_dir(&opts, "main");
        ensure_dir(&out).unwrap();
        let names = |v: Vec<(String, u64)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let status = |name| take_push_status(&opts, "main", name).unwrap();
        assert_eq!(names(unreported(&wal, &out).unwrap()), [A, B]);
        assert!(is_marked_ready(&wal.join(A)) && !is_marked_ready(&wal.join("elsewhere")));

        // A pushed: no longer waiting; its report stays while it is marked ready.
        write_report(&out, &format!("{A}.ok"), b"").unwrap();
        assert_eq!(names(unreported(&wal, &out).unwrap()), [B]);
        assert_eq!(status(A), PushStatus::Pushed);
        assert_eq!(status(A), PushStatus::Pushed);
        // B failed: the failure is taken once, so that the next call tries again.
        write_report(&out, &format!("{B}.error"), b"disk full").unwrap();
        assert_eq!(status(B), PushStatus::Failed("disk full".into()));
        assert_eq!(status(B), PushStatus::Pending);
        write_report(&out, &format!("{B}.ok"), b"over the limit").unwrap();
        assert_eq!(status(B), PushStatus::Dropped("over the limit".into()));
        // A worker that failed as a whole fails whichever call looks next, once.
        report_worker_failure(&opts, "main", "no repository").unwrap();
        assert_eq!(status(C), PushStatus::Failed("no repository".into()));
        assert_eq!(status(C), PushStatus::Pending);

        // Once PostgreSQL marks A done, its report goes; B's stays while B is ready.
        fs::rename(
            wal.join(format!("archive_status/{A}.ready")),
            wal.join(format!("archive_status/{A}.done")),
        )
        .unwrap();
        write_report(&out, &format!("{C}.error"), b"gone").unwrap();
        remove_stale_reports(&wal, &out);
        assert!(!out.join(format!("{A}.ok")).exists());
        assert!(out.join(format!("{B}.ok")).exists());
        // C is still marked ready (its file is gone): its report stays too.
        assert!(out.join(format!("{C}.error")).exists());
    }

    #[tokio::test]
    async fn archive_get_waits_for_a_segment_a_running_worker_is_fetching() {
        let root = tempfile::tempdir().unwrap();
        let opts = spool_under(root.path());
        let dir = in_dir(&opts, "main");
        ensure_dir(&dir).unwrap();
        let dest = root.path().join("RECOVERYXLOG");
        // A stale marker and no worker: not coming, at once.
        fs::write(fetching_marker(&dir, A), b"").unwrap();
        let started = Instant::now();
        assert!(!take_prefetched("main", A, &dest, &opts).await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(1));

        // A running worker (its lock held) delivers it a little later.
        let lock = WorkerLock::try_take(&prefetch_lock(&opts, "main"))
            .unwrap()
            .unwrap();
        let worker_dir = dir.clone();
        let worker = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            pgbr_storage::posix::write_file_durable(&worker_dir.join(A), b"segment", 0o600)
                .unwrap();
            fs::remove_file(fetching_marker(&worker_dir, A)).unwrap();
            drop(lock);
        });
        assert!(take_prefetched("main", A, &dest, &opts).await.unwrap());
        assert_eq!(fs::read(&dest).unwrap(), b"segment");
        assert!(!dir.join(A).exists(), "a served segment leaves the spool");
        worker.await.unwrap();
    }
}
