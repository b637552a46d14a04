//! The push worker: pushes what PostgreSQL marked ready, ahead of the archiver, and reports each
//! file in the spool.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::spool::{
    ensure_dir, is_marked_ready, out_dir, push_lock, write_report, AsyncOptions, WorkerLock,
};
use crate::archive;
use crate::config::ArchivePushOptions;
use crate::error::{Error, Result};
use crate::layout;
use crate::repo::Repository;

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

#[cfg(test)]
mod tests {
    use super::super::spool::{
        is_marked_ready, report_worker_failure, spool_under, take_push_status, PushStatus,
    };
    use super::*;

    const A: &str = "000000010000000000000001";
    const B: &str = "000000010000000000000002";
    const C: &str = "000000010000000000000003";

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
}
