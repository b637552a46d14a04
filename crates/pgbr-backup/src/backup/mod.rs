//! `backup`: a full copy of a running cluster, coordinated with `pg_backup_start`/`pg_backup_stop`
//! on one session, its files streamed to the repository by `process-max` workers (largest first),
//! the WAL it needs checked in the archive, and the manifest written last to commit it.
//!
//! [`run`] reads as its phases: `plan` (prior backup, type, label, the interrupted attempt to
//! resume), `start` (the session, `pg_backup_start`, a standby's replay), `walk` (the data
//! directory and tablespaces) feeding the `planner` (per file: reference, whole, blocks or
//! bundle), `copy` (the workers, each unit of work in `store`, with progress recorded for a
//! resume), `stop` (`pg_backup_stop`, the WAL in the archive) and `commit` (manifest, then
//! backup.info).

mod commit;
mod copy;
mod plan;
mod planner;
mod resume;
mod start;
mod stop;
mod store;
mod summaries;
mod walk;

use std::sync::Arc;

use pgbr_manifest::{BackupType, FileEntry};

use crate::config::{BackupOptions, PgOptions};
use crate::error::Result;
use crate::progress::Progress;
use crate::repo::Repository;

/// Object names inside a backup directory, where restore and verify have found them.
pub(crate) use resume::reconcile;

/// What a finished backup reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// The new backup's label.
    pub label: String,
    /// The type taken (a diff or incr without a prior becomes full).
    pub backup_type: BackupType,
    /// Why the type differs from the one asked for, if it does.
    pub type_changed: Option<String>,
    /// Files in the backup.
    pub file_count: u64,
    /// Bytes of the cluster's files.
    pub size_original: u64,
    /// Bytes stored in the repository for them.
    pub size_stored: u64,
    /// WAL start and stop LSNs.
    pub lsn_start: String,
    /// See `lsn_start`.
    pub lsn_stop: String,
    /// First and last WAL segment the backup needs.
    pub wal_start: String,
    /// See `wal_start`.
    pub wal_stop: String,
    /// Pages that failed their checksum (they do not stop the backup).
    pub page_errors: u64,
    /// Backups found unfinished and removed before this one started.
    pub removed_incomplete: Vec<String>,
    /// When this backup resumed an interrupted one: how many of its stored files were reused.
    pub resumed_files: Option<u64>,
    /// Bytes read from the cluster's files (PostgreSQL 17+ with `summarize_wal`: an
    /// incremental reads only the blocks the WAL summaries say changed).
    pub bytes_read: u64,
}

/// Takes a backup of the cluster `pg` describes into `repo`.
///
/// A diff or incr backup with no usable prior backup of this cluster becomes a full backup
/// ([`BackupReport::type_changed`] says so). Files unchanged since the prior backup (same size
/// and modification time, or same checksum with `delta`) are referenced, not copied; in files of
/// 1 MiB or more only changed 64 KiB blocks are stored.
///
/// Takes the stanza's lock and its claim in the repository ([`crate::claim`]) unless `repo`
/// holds them; a claim taken here is released when the backup ends, committed or failed.
pub async fn run(
    repo: &mut Repository,
    pg: &PgOptions,
    opts: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupReport> {
    repo.lock(&opts.lock_path)?;
    let took = repo.claim("backup").await?;
    let result = run_claimed(repo, pg, opts, progress).await;
    repo.release_claim_if(took, result).await
}

/// [`run`], the stanza claimed.
async fn run_claimed(
    repo: &mut Repository,
    pg: &PgOptions,
    opts: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupReport> {
    let (session, control, db) = start::connect(repo, pg, opts).await?;
    let mut plan = plan::Plan::make(repo, opts, &db, &*progress).await?;
    if let Some(resumed) = &plan.resumed {
        resume::clear_partial(repo, &plan.label, resumed, &*progress).await?;
    }
    let started = start::start(&session, pg, opts, &plan, &db, &control, &*progress).await?;

    let from_standby = opts.standby.is_some();
    let summary_use = summaries::load(
        &session,
        &started,
        plan.prior.as_ref(),
        from_standby,
        opts.archive_timeout,
        &*progress,
    )
    .await?;

    let primary_root = started.primary_root(pg).map(Arc::from);
    let mut planner = planner::Planner::new(
        plan.prior.take(),
        plan.resumed.as_ref(),
        summary_use.summaries,
        opts,
        primary_root,
    );
    let listing = walk::walk_cluster(
        &pg.path,
        &started.source.path,
        &started.tablespaces,
        started.checksums,
        started.lsn_start,
        &mut planner,
    )?;
    let (kept, work) = planner.finish(opts);
    let total: u64 = work.iter().map(planner::Work::size).sum();
    progress.start(total, work.len() as u64);

    let codec = copy::codec(repo, opts);
    let meta = commit::meta(&plan, repo, opts, &started, &db);
    let skeleton = commit::skeleton(meta.clone(), &listing);
    repo.save_inprogress(&plan.label, &skeleton).await?;
    crate::failpoints::crash_point!("backup::after-inprogress");
    let storer = copy::storer(repo, &plan.label, opts, &codec, summary_use.record);
    let copy = copy::copy(
        repo,
        &plan.label,
        opts,
        storer,
        skeleton,
        work,
        progress.clone(),
    );
    let copied = match copy.await {
        Ok(copied) => copied,
        Err(e) => {
            session.close().await;
            return Err(e);
        }
    };
    let reused = plan
        .resumed
        .as_ref()
        .map(|r| resume::files_reused(r, &copied.stored));
    let bytes_read = copied.read;
    let mut files = join(kept, copied);
    crate::failpoints::crash_point!("backup::after-files");

    let mut stopped = stop::stop(
        repo,
        session,
        opts,
        &plan.label,
        &started,
        &codec,
        &*progress,
    )
    .await?;
    files.append(&mut stopped.files);
    let manifest = commit::manifest(meta, opts, listing, files, stopped)?;
    commit::commit(repo, &manifest).await?;
    progress.message(&format!(
        "backup {}: done in {:.1}s",
        plan.label,
        plan.started.elapsed().as_secs_f64()
    ));
    Ok(BackupReport {
        label: plan.label,
        backup_type: plan.backup_type,
        type_changed: plan.type_changed,
        file_count: manifest.files.len() as u64,
        size_original: manifest.backup.size_original,
        size_stored: manifest.backup.size_stored,
        page_errors: commit::page_errors(&manifest.files),
        lsn_start: manifest.backup.lsn_start,
        lsn_stop: manifest.backup.lsn_stop,
        wal_start: manifest.backup.wal_start,
        wal_stop: manifest.backup.wal_stop,
        removed_incomplete: plan.removed_incomplete,
        resumed_files: reused,
        bytes_read,
    })
}

/// Every entry of the backup's files so far: those `kept` from the prior backup and those the
/// workers `copied`.
fn join(kept: Vec<FileEntry>, copied: copy::Copied) -> Vec<FileEntry> {
    let copy::Copied {
        mut stored,
        referenced,
        ..
    } = copied;
    let mut files = kept;
    // The longer list takes the other in: no second buffer as long as both.
    if stored.len() > files.len() {
        std::mem::swap(&mut files, &mut stored);
    }
    files.append(&mut stored);
    files.extend(referenced);
    files
}
