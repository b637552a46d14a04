//! Interrupted backups: the one a new backup can resume (its in-progress manifest names what it
//! stored), and bringing backup.info in line with the backup directories, which removes the
//! others.

use pgbr_manifest::{BackupSummary, BackupType, FileEntry, Manifest};

use crate::error::{Error, Result};
use crate::layout;
use crate::progress::Progress;
use crate::repo::Repository;

/// The interrupted backup this one can resume: same type and prior, with an in-progress manifest
/// that verifies. The newest, if several.
pub(super) async fn find_resumable(
    repo: &Repository,
    backup_type: BackupType,
    prior: Option<&str>,
) -> Result<Option<Manifest>> {
    let prefix = layout::under(&layout::stanza_backup_dir(repo.stanza()));
    let (dirs, _) = repo.storage().list_dir(&prefix).await?;
    let mut best: Option<Manifest> = None;
    for dir in dirs {
        let label = layout::last_segment(&dir);
        if pgbr_manifest::parse_label(label).is_err() || repo.backup_info().backup(label).is_some()
        {
            continue;
        }
        if repo
            .storage()
            .exists(&layout::manifest(&repo.backup_path(label)))
            .await?
        {
            continue;
        }
        let Some(m) = repo.load_inprogress(label).await? else {
            continue;
        };
        if m.backup.backup_type == backup_type
            && m.backup.prior.as_deref() == prior
            && best
                .as_ref()
                .is_none_or(|b| b.backup.label < m.backup.label)
        {
            best = Some(m);
        }
    }
    Ok(best)
}

/// Removes what the interrupted attempt `resumed` (of backup `label`) was writing when it died.
pub(super) async fn clear_partial(
    repo: &Repository,
    label: &str,
    resumed: &Manifest,
    progress: &dyn Progress,
) -> Result<()> {
    progress.message(&format!(
        "resuming interrupted backup {label}: {} stored file(s) will be verified and reused where unchanged",
        resumed.files.len()
    ));
    // Nobody else writes here (the stanza is claimed) and this backup's workers have not
    // started.
    let dir = layout::under(&repo.backup_path(label));
    let partial = repo.storage().remove_abandoned_below(&dir).await?;
    if partial > 0 {
        progress.message(&format!(
            "resuming interrupted backup {label}: removed {partial} partly written object(s) the interrupted attempt left"
        ));
    }
    Ok(())
}

/// Files of the resumed attempt that this backup kept as they were.
pub(super) fn files_reused(resumed: &Manifest, done: &[FileEntry]) -> u64 {
    let index = resumed.file_index();
    done.iter()
        .filter(|e| {
            let at = index.position(resumed, &e.target, &e.name);
            at.map(|i| &resumed.files[i]).is_some_and(|r| {
                r.checksum == e.checksum
                    && r.stored_size == e.stored_size
                    && r.bundle == e.bundle
                    && r.block_map == e.block_map
            })
        })
        .count() as u64
}

/// Brings backup.info in line with the backup directories: a directory without a committed
/// manifest is an interrupted backup and is removed; a committed backup missing from backup.info
/// (a crash between the two writes) is added back.
pub(crate) async fn reconcile(repo: &mut Repository) -> Result<Vec<String>> {
    reconcile_with(repo, true, None).await
}

/// [`reconcile`], optionally leaving interrupted backups alone (`remove_incomplete` false), or
/// all but the one being resumed (`keep`).
pub(super) async fn reconcile_with(
    repo: &mut Repository,
    remove_incomplete: bool,
    keep: Option<&str>,
) -> Result<Vec<String>> {
    // An incomplete directory may be a live backup's, unless this command holds the claim.
    if !repo.is_claimed() {
        return Err(Error::Internal(format!(
            "backup directories of stanza '{}' reconciled without holding its claim",
            repo.stanza()
        )));
    }
    let prefix = layout::under(&layout::stanza_backup_dir(repo.stanza()));
    let (dirs, _) = repo.storage().list_dir(&prefix).await?;
    let mut removed = Vec::new();
    let mut changed = false;
    for dir in dirs {
        let label = layout::last_segment(&dir).to_string();
        if pgbr_manifest::parse_label(&label).is_err() {
            continue;
        }
        if repo.backup_info().backup(&label).is_some() {
            continue;
        }
        match repo.load_manifest_with_checksum(&label).await {
            Ok((m, checksum)) => {
                repo.finish_commit(&label).await?;
                repo.backup_info
                    .backups
                    .push(BackupSummary::from_manifest(&m, checksum));
                changed = true;
            }
            Err(Error::BackupMissing(_)) if !remove_incomplete || keep == Some(label.as_str()) => {}
            Err(Error::BackupMissing(_)) => {
                repo.storage()
                    .delete_prefix(&layout::under(&repo.backup_path(&label)))
                    .await?;
                removed.push(label);
            }
            Err(e) => return Err(e),
        }
    }
    if changed {
        repo.backup_info
            .backups
            .sort_by(|a, b| a.label.cmp(&b.label));
        repo.save_backup_info().await?;
    }
    Ok(removed)
}
