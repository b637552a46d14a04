//! Stopping the backup: `pg_backup_stop`, whose backup_label and tablespace_map are stored as
//! files of the data directory, then the wait for the WAL the backup needs to reach the archive
//! (copied into the backup with `--archive-copy`).

use std::time::{Duration, Instant};

use pgbr_manifest::FileEntry;
use pgbr_wal::Segment;

use super::plan::now;
use super::start::Started;
use crate::archive;
use crate::config::BackupOptions;
use crate::error::{Error, Result};
use crate::layout;
use crate::pg::{BackupStop, PgSession};
use crate::pipeline::{self, Codec};
use crate::progress::Progress;
use crate::repo::Repository;

/// Where the backup stopped, and the files it stored on the way.
pub(super) struct Stopped {
    pub stop: BackupStop,
    pub wal_stop: String,
    /// backup_label, tablespace_map and (`--archive-copy`) the WAL segments.
    pub files: Vec<FileEntry>,
}

/// Stops backup `label` on `session` (closing it), waits for its WAL in the archive and stores
/// the files the stop produced.
pub(super) async fn stop(
    repo: &Repository,
    session: PgSession,
    opts: &BackupOptions,
    label: &str,
    started: &Started,
    codec: &Codec,
    progress: &dyn Progress,
) -> Result<Stopped> {
    progress.message(&format!(
        "backup {label}: files copied, stopping (pg_backup_stop)"
    ));
    let stop = session.backup_stop().await?;
    let wal_stop = session.walfile_name(stop.lsn).await?;

    // backup_label and tablespace_map come from pg_backup_stop, not from the data directory.
    let mut extra: Vec<(String, Vec<u8>)> =
        vec![("backup_label".into(), stop.label_file.clone().into_bytes())];
    if let Some(map) = &stop.tablespace_map {
        extra.push(("tablespace_map".into(), map.clone().into_bytes()));
    }
    let wal_start = &started.wal_start;
    if opts.archive_check || opts.archive_copy {
        let needed = segments_between(wal_start, &wal_stop, started.segment_size)?;
        progress.message(&format!(
            "backup {label}: waiting for {} WAL segment(s) {wal_start}..{wal_stop} to reach the archive",
            needed.len()
        ));
        // The session stays open while waiting: on a timeout, pg_stat_archiver says why.
        let found = wait_for_archive(repo, &session, &needed, opts).await?;
        session.close().await;
        if opts.archive_copy {
            for wal in found {
                let name = wal.path.rsplit('/').next().unwrap_or_default();
                let segment = name.get(..24).unwrap_or(name).to_string();
                let data = archive::read(repo, &wal).await?;
                extra.push((format!("pg_wal/{segment}"), data));
            }
        }
    } else {
        session.close().await;
    }
    let stamp = now();
    let backup_dir = repo.backup_path(label);
    let ext = opts.compress.compress_type.extension();
    let mut files = Vec::with_capacity(extra.len());
    for (name, data) in extra {
        let object = layout::whole(&backup_dir, "pg_data", &name, ext);
        let stored_size = pipeline::store_bytes(repo.storage(), &object, codec, &data).await?;
        files.push(FileEntry {
            target: "pg_data".into(),
            name: name.into(),
            size: data.len() as u64,
            mtime: stamp,
            mode: 0o600,
            checksum: pgbr_manifest::Checksum::of(&data),
            reference: None,
            stored_size,
            bundle: None,
            block_map: None,
            page_errors: Vec::new(),
        });
    }
    Ok(Stopped {
        stop,
        wal_stop,
        files,
    })
}

/// Every segment name from `first` to `last` inclusive (same timeline).
fn segments_between(first: &str, last: &str, segment_size: u64) -> Result<Vec<String>> {
    let parse = |n: &str| {
        Segment::parse(n, segment_size).map_err(|source| Error::Wal {
            context: format!("WAL file name {n}"),
            source,
        })
    };
    let (a, b) = (parse(first)?, parse(last)?);
    let mut out = vec![a.name()];
    let mut s = a;
    while s < b && out.len() < 1_000_000 {
        s = s.next();
        out.push(s.name());
    }
    Ok(out)
}

/// Waits until every segment in `needed` is in the archive, or the timeout passes.
async fn wait_for_archive(
    repo: &Repository,
    session: &PgSession,
    needed: &[String],
    opts: &BackupOptions,
) -> Result<Vec<archive::ArchivedWal>> {
    let timeout = opts.archive_timeout;
    let deadline = Instant::now() + timeout;
    let mut found = Vec::with_capacity(needed.len());
    for name in needed {
        loop {
            if let Some(w) = archive::find(repo, name).await? {
                found.push(w);
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::ArchiveTimeout(format!(
                    "WAL segment {name} did not reach {} within archive-timeout ({:.0}s); {}; check that archive_command is 'pgbr --stanza={} archive-push %p'",
                    repo.name(),
                    timeout.as_secs_f64(),
                    crate::check::why_not_archived(session, &opts.lock_path, repo.stanza()).await,
                    repo.stanza()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(found)
}
