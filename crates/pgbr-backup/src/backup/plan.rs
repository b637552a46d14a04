//! What backup to take: its prior backup (diff, incr), its type (full when there is no usable
//! prior), the interrupted attempt it resumes, and its label.

use std::time::{Duration, Instant};

use pgbr_manifest::{new_label, BackupSummary, BackupType, DbHistory, Manifest};

use super::resume;
use crate::config::BackupOptions;
use crate::error::Result;
use crate::layout;
use crate::progress::Progress;
use crate::repo::Repository;

/// The backup decided on.
pub(super) struct Plan {
    pub backup_type: BackupType,
    /// Why the type differs from the one asked for, if it does.
    pub type_changed: Option<String>,
    /// The prior backup's manifest (diff, incr), until the planner takes it.
    pub prior: Option<Manifest>,
    pub prior_label: Option<String>,
    /// The interrupted attempt this backup resumes.
    pub resumed: Option<Manifest>,
    /// Interrupted backups removed before this one started.
    pub removed_incomplete: Vec<String>,
    pub label: String,
    pub timestamp_start: i64,
    /// When the backup started, for its report of how long it took.
    pub started: Instant,
}

impl Plan {
    /// Decides on the backup of database `db` that `opts` asks for, and claims its label.
    pub async fn make(
        repo: &mut Repository,
        opts: &BackupOptions,
        db: &DbHistory,
        progress: &dyn Progress,
    ) -> Result<Plan> {
        // Committed backups missing from backup.info are listed again first: one may be the
        // prior.
        resume::reconcile_with(repo, false, None).await?;
        let prior = choose_prior(repo, opts.backup_type, db).await?;
        let backup_type = if prior.is_some() {
            opts.backup_type
        } else {
            BackupType::Full
        };
        let type_changed = (backup_type != opts.backup_type).then(|| {
            format!(
                "no prior backup of this cluster exists: the {} backup has been changed to full",
                opts.backup_type
            )
        });
        if let Some(m) = &type_changed {
            progress.message(m);
        }
        let prior_label = prior.as_ref().map(|m| m.backup.label.clone());
        let resumed = resume::find_resumable(repo, backup_type, prior_label.as_deref()).await?;
        let removed_incomplete = resume::reconcile_with(
            repo,
            true,
            resumed.as_ref().map(|m| m.backup.label.as_str()),
        )
        .await?;
        let started = Instant::now();
        let mut timestamp_start = now();
        let mut label = match &resumed {
            Some(m) => m.backup.label.clone(),
            None => new_label(backup_type, prior_label.as_deref(), timestamp_start),
        };
        // A label is never used twice: wait for the next second until it is new.
        while resumed.is_none() && repo.backup_info().backup(&label).is_some()
            || repo
                .storage()
                .exists(&layout::manifest(&repo.backup_path(&label)))
                .await?
            || prior_label.as_deref() == Some(label.as_str())
        {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            timestamp_start = now();
            label = new_label(backup_type, prior_label.as_deref(), timestamp_start);
        }
        if let Some(c) = &repo.claim {
            c.set_label(&label).await?;
        }
        crate::failpoints::crash_point!("backup::after-label");
        Ok(Plan {
            backup_type,
            type_changed,
            prior,
            prior_label,
            resumed,
            removed_incomplete,
            label,
            timestamp_start,
            started,
        })
    }
}

pub(super) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The summary a `backup_type` backup of database `db_id` builds on: the last full (diff) or the
/// last backup (incr). Last means last committed: backup.info keeps commit order, while stop
/// times have a resolution of a second, in which two backups can end.
fn prior_of(
    backups: &[BackupSummary],
    backup_type: BackupType,
    db_id: u32,
) -> Option<&BackupSummary> {
    backups.iter().rfind(|b| {
        b.db_id == db_id && (backup_type == BackupType::Incr || b.backup_type == BackupType::Full)
    })
}

/// The backup an incremental builds on: the last full (diff) or the last backup (incr) of the
/// current cluster, with its manifest. `None` when there is none: the backup becomes full.
async fn choose_prior(
    repo: &Repository,
    backup_type: BackupType,
    db: &DbHistory,
) -> Result<Option<Manifest>> {
    if backup_type == BackupType::Full {
        return Ok(None);
    }
    let Some(candidate) = prior_of(&repo.backup_info().backups, backup_type, db.db_id) else {
        return Ok(None);
    };
    let manifest = repo.load_manifest(&candidate.label).await?;
    if manifest.backup.system_id != db.system_id || manifest.backup.pg_version != db.pg_version {
        return Ok(None);
    }
    Ok(Some(manifest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::summary;

    #[test]
    fn the_prior_is_the_last_committed_even_within_one_second() {
        // Committed in this order, the last three in the same second: by label the incr would
        // sort last.
        let full = "20261126-010000F";
        let wal = "000000010000000000000002";
        let backups = vec![
            summary(full, BackupType::Full, None, 100, wal),
            summary(
                "20261126-010000F_20261126-010001I",
                BackupType::Incr,
                Some(full),
                101,
                wal,
            ),
            summary(
                "20261126-010000F_20261126-010001D",
                BackupType::Diff,
                Some(full),
                101,
                wal,
            ),
        ];
        let incr = prior_of(&backups, BackupType::Incr, 1).map(|b| b.label.as_str());
        assert_eq!(incr, Some("20261126-010000F_20261126-010001D"));
        let diff = prior_of(&backups, BackupType::Diff, 1).map(|b| b.label.as_str());
        assert_eq!(diff, Some("20261126-010000F"));
        assert!(prior_of(&backups, BackupType::Incr, 2).is_none());
    }
}
