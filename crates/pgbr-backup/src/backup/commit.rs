//! Committing the backup: its manifest is written (twice) last of its objects, which makes it a
//! backup; then its in-progress record goes and backup.info lists it.

use pgbr_manifest::{BackupMeta, BackupSummary, DbHistory, FileEntry, Manifest};

use super::plan::{now, Plan};
use super::start::Started;
use super::stop::Stopped;
use super::walk::Listing;
use crate::config::BackupOptions;
use crate::error::{Error, Result};
use crate::layout;
use crate::repo::Repository;

/// Labels referenced by `files` (whole files and blocks), sorted.
pub(super) fn references_of(files: &[FileEntry]) -> Vec<String> {
    let mut references = std::collections::BTreeSet::new();
    for f in files {
        references.extend(f.reference.as_deref());
        for b in f.block_map.iter().flat_map(|m| &m.blocks) {
            references.extend(b.reference.as_deref());
            references.extend(b.base.as_ref().map(|base| base.reference.as_str()));
        }
    }
    references.into_iter().map(str::to_string).collect()
}

/// What the manifest says of the backup `plan` decided on from its start on: what its
/// in-progress record holds, and what its manifest completes when it stops.
pub(super) fn meta(
    plan: &Plan,
    repo: &Repository,
    opts: &BackupOptions,
    started: &Started,
    db: &DbHistory,
) -> BackupMeta {
    BackupMeta {
        label: plan.label.clone(),
        backup_type: plan.backup_type,
        prior: plan.prior_label.clone(),
        references: Vec::new(),
        timestamp_start: plan.timestamp_start,
        lsn_start: started.lsn_start.to_string(),
        wal_start: started.wal_start.clone(),
        timeline: started.timeline,
        pg_version: db.pg_version,
        system_id: db.system_id,
        db_id: db.db_id,
        checksums_enabled: started.checksums,
        compress_type: crate::codecs::compression(opts.compress.compress_type),
        compress_level: opts.compress.level,
        cipher_type: crate::codecs::cipher(repo.cipher()),
        pgbr_version: env!("CARGO_PKG_VERSION").to_string(),
        wal_segment_size: started.segment_size,
        ..BackupMeta::default()
    }
}

/// The in-progress manifest of a backup that has stored no file yet.
pub(super) fn skeleton(meta: BackupMeta, listing: &Listing) -> Manifest {
    Manifest {
        backup: meta,
        targets: listing.targets.clone(),
        paths: listing.paths.clone(),
        links: listing.links.clone(),
        files: Vec::new(),
    }
}

/// The manifest of the backup `meta` started, with every one of its `files`.
pub(super) fn manifest(
    meta: BackupMeta,
    opts: &BackupOptions,
    listing: Listing,
    mut files: Vec<FileEntry>,
    stopped: Stopped,
) -> Result<Manifest> {
    let Listing {
        targets,
        mut paths,
        links,
    } = listing;
    // Names are unique: an unstable sort is the same order, without a scratch buffer half the
    // list's size.
    files.sort_unstable_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
    paths.sort_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
    let references = references_of(&files);
    let size_original: u64 = files.iter().map(|f| f.size).sum();
    // What this backup stored itself (referenced bytes belong to earlier backups).
    let size_stored: u64 = files
        .iter()
        .filter(|f| f.reference.is_none())
        .map(|f| f.stored_size)
        .sum();
    let label = meta.label.clone();
    let stop = stopped.stop;
    let manifest = Manifest {
        backup: BackupMeta {
            references,
            timestamp_stop: now(),
            lsn_stop: stop.lsn.to_string(),
            wal_stop: stopped.wal_stop,
            archive_copy: opts.archive_copy,
            backup_label: stop.label_file,
            tablespace_map: stop.tablespace_map,
            size_original,
            size_stored,
            ..meta
        },
        targets,
        paths,
        links,
        files,
    };
    manifest.validate().map_err(|source| Error::Manifest {
        context: format!("manifest of backup {label}"),
        source,
    })?;
    Ok(manifest)
}

/// Pages of the files this backup stored that failed their checksum.
pub(super) fn page_errors(files: &[FileEntry]) -> u64 {
    files
        .iter()
        .filter(|f| f.reference.is_none())
        .map(|f| f.page_errors.len() as u64)
        .sum()
}

/// Commits `manifest`: the manifest, then backup.info.
pub(super) async fn commit(repo: &mut Repository, manifest: &Manifest) -> Result<()> {
    let label = &manifest.backup.label;
    crate::failpoints::crash_point!("backup::before-commit");
    // A backup whose claim another command took over (it could not renew it) must not commit.
    if let Some(c) = &repo.claim {
        c.check().await?;
    }
    let (_, manifest_checksum) = repo.save_manifest(label, manifest).await?;
    crate::failpoints::crash_point!("backup::after-commit");
    // Committed: the in-progress record is no longer needed.
    repo.storage()
        .delete(&layout::inprogress(&repo.backup_path(label)))
        .await?;
    let summary = BackupSummary::from_manifest(manifest, manifest_checksum);
    repo.backup_info.backups.push(summary);
    repo.save_backup_info().await?;
    crate::failpoints::crash_point!("backup::after-backup-info");
    Ok(())
}
