//! `expire`: remove backups beyond the retention policy (or one backup named by `--set`), with
//! everything that depends on them, and the WAL no retained backup needs.
//!
//! Which backups go: `repo-retention-full` (count, or days with `repo-retention-full-type=time`)
//! keeps the newest full backups; a diff or incr backup goes with the backup it is based on
//! (`prior`/`references`); `repo-retention-diff` keeps the newest differential backups.
//!
//! Which WAL goes, per archive id: everything before the start of the oldest backup whose WAL is
//! kept for point-in-time recovery (`repo-retention-archive` backups of
//! `repo-retention-archive-type`; by default every retained backup), except the segments from
//! start to stop of every retained backup, which it needs to be consistent. Timeline history files
//! are never removed.
//!
//! Crash safety: the order is backup.info first (the backups leave the list), then each expired
//! backup's manifest (both copies, newest backup first, so a backup whose manifest survives never
//! lacks the backups it references), then the rest of each directory, then WAL. Whatever a crash
//! leaves behind, the next `backup` or `expire` reconciles: a directory without a manifest is
//! removed, a committed backup missing from backup.info is listed again (and expired again).

mod archive;
mod backups;
#[cfg(test)]
mod tests;

pub(crate) use archive::archive_boundary;
use archive::{plan_archive, summarize, WalObject};
pub use backups::plan_backups;

use std::collections::BTreeMap;

use serde::Serialize;

use pgbr_manifest::BackupSummary;

use crate::config::ExpireOptions;
use crate::error::Result;
use crate::layout;
use crate::repo::Repository;

/// WAL removed (or that would be) for one archive id and timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArchiveExpired {
    /// `<pg-version>-<db-id>`.
    pub archive_id: String,
    /// Timeline.
    pub timeline: u32,
    /// First segment removed.
    pub first: String,
    /// Last segment removed.
    pub last: String,
    /// Files removed (segments, partial segments, backup history files).
    pub count: u64,
}

/// What `expire` did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExpireReport {
    /// Nothing was removed; the lists say what would have been.
    pub dry_run: bool,
    /// Backups expired, newest first.
    pub backups_expired: Vec<String>,
    /// WAL expired per archive id and timeline.
    pub archive_expired: Vec<ArchiveExpired>,
    /// Interrupted backups (directories without a manifest) removed on the way.
    pub removed_incomplete: Vec<String>,
    /// Things the caller should tell the user (e.g. no retention configured).
    pub warnings: Vec<String>,
}

/// Applies the retention policy (or `--set`) to `repo`. Takes the stanza lock, and (unless
/// `dry_run`) the stanza's claim in the repository unless `repo` holds it; a claim taken here is
/// released when the expire ends.
pub async fn run(repo: &mut Repository, opts: &ExpireOptions) -> Result<ExpireReport> {
    repo.lock(&opts.lock_path)?;
    let took = !opts.dry_run && repo.claim("expire").await?;
    let result = run_claimed(repo, opts).await;
    repo.release_claim_if(took, result).await
}

/// [`run`], the stanza claimed (unless a dry run).
async fn run_claimed(repo: &mut Repository, opts: &ExpireOptions) -> Result<ExpireReport> {
    let mut report = ExpireReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    if !opts.dry_run {
        report.removed_incomplete = crate::backup::reconcile(repo).await?;
    }
    if opts.set.is_none() && opts.retention_full.is_none() {
        report.warnings.push(format!(
            "option '{}-retention-full' is not set: no backup expires; set it to keep the repository from growing without bound",
            repo.opts.name()
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let expired = plan_backups(&repo.backup_info().backups, opts, now)?;
    let retained: Vec<BackupSummary> = repo
        .backup_info()
        .backups
        .iter()
        .filter(|b| !expired.contains(&b.label))
        .cloned()
        .collect();
    let wal = plan_archive(repo, &retained, opts).await?;
    report.backups_expired = expired.clone();
    report.archive_expired = summarize(&wal);
    if opts.dry_run {
        return Ok(report);
    }

    remove(repo, &expired, &wal).await?;
    Ok(report)
}

/// Removes the expired backups and WAL, in the order that keeps every step crash-safe (see the
/// module documentation).
async fn remove(repo: &mut Repository, expired: &[String], wal: &[WalObject]) -> Result<()> {
    // 1. backup.info: the backups leave the list.
    if !expired.is_empty() {
        repo.backup_info
            .backups
            .retain(|b| !expired.contains(&b.label));
        repo.save_backup_info().await?;
        crate::failpoints::crash_point!("expire::after-backup-info");
    }
    // 2. Manifests, newest backup first: a backup without a manifest is no longer a backup.
    for label in expired {
        let manifest = layout::manifest(&repo.backup_path(label));
        repo.storage().delete(&layout::copy_of(&manifest)).await?;
        repo.storage().delete(&manifest).await?;
        crate::failpoints::crash_point!("expire::after-manifest");
    }
    // 3. The rest of each directory.
    for label in expired {
        repo.storage()
            .delete_prefix(&layout::under(&repo.backup_path(label)))
            .await?;
        crate::failpoints::crash_point!("expire::after-directory");
    }
    // 4. WAL no retained backup needs, then what killed archive-push calls left of it.
    let mut segments_by_dir: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for w in wal {
        repo.storage().delete(&w.path).await?;
        crate::failpoints::crash_point!("expire::after-wal");
        if let Some((dir, _)) = w.path.rsplit_once('/') {
            segments_by_dir
                .entry(dir)
                .or_default()
                .push(w.segment.clone());
        }
    }
    for (dir, segments) in &segments_by_dir {
        repo.storage().remove_abandoned(dir, segments).await?;
    }
    Ok(())
}
