//! The prefetch worker: fetches the segments recovery will ask for next into the spool, and
//! `archive-get` taking one from there.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgbr_wal::{Segment, WalFileName};

use super::spool::{
    ensure_dir, in_dir, prefetch_lock, prefetch_worker_running, AsyncOptions, WorkerLock,
};
use crate::archive;
use crate::error::{Error, Result};
use crate::repo::Repository;

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
    // The segments of the window this worker has seen in the spool (fetched, or found there): one
    // that is gone was taken by recovery and is never fetched again, even when `archive-get`
    // takes it between two looks at the spool.
    let mut spooled: HashSet<String> = HashSet::new();
    loop {
        let window = prefetch_candidates(&after, segment_size, opts);
        spooled.retain(|name| window.contains(name));
        // Anything spooled that is not wanted any more (older, or another timeline) goes.
        for e in fs::read_dir(&dir)
            .map_err(|e| Error::io("unable to list", &dir, e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if window.contains(&name) {
                spooled.insert(name);
            } else {
                let _ = fs::remove_file(e.path());
            }
        }
        let wanted: Vec<String> = window
            .iter()
            .filter(|name| !spooled.contains(*name))
            .cloned()
            .collect();
        if wanted.is_empty() {
            if idle_since.elapsed() >= PREFETCH_IDLE {
                return Ok(report);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        } else {
            let missing = report.missing;
            fetch_into(repo, wanted.clone(), &dir, opts, &mut report).await?;
            if report.missing > missing {
                // The end of the archive, for now: the next archive-get starts a worker again.
                return Ok(report);
            }
            spooled.extend(wanted);
            idle_since = Instant::now();
        }
        // Recovery has taken the spooled segments that are gone: the window moves past them.
        let taken = |name: &&String| spooled.contains(*name) && !dir.join(name).exists();
        if let Some(taken) = window.iter().rev().find(taken) {
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
    use super::super::spool::spool_under;
    use super::*;

    const A: &str = "000000010000000000000001";

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
