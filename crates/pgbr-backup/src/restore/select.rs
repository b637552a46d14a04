//! Which backup a restore takes, and whether recovery from it can reach the target.

use pgbr_manifest::{BackupSummary, Manifest};
use pgbr_wal::{Lsn, Segment};

use crate::error::{Error, Result};
use crate::recovery::RecoveryTarget;
use crate::repo::Repository;

/// Whether recovery from a backup can reach `target`: for a time or LSN target, the backup must
/// have ended before it.
pub(crate) fn usable_for(target: &RecoveryTarget) -> impl Fn(&BackupSummary) -> bool + '_ {
    move |b: &BackupSummary| match target {
        RecoveryTarget::Time { unix, .. } => b.timestamp_stop <= *unix,
        RecoveryTarget::Lsn(lsn) => b
            .lsn_stop
            .parse::<Lsn>()
            .map(|s| s <= *lsn)
            .unwrap_or(false),
        _ => true,
    }
}

/// Picks the backup to restore: `set`, or else the newest one that can reach `target` (for a
/// time or LSN target, the newest that ended before it).
pub fn choose_backup(
    repo: &Repository,
    set: Option<&str>,
    target: &RecoveryTarget,
) -> Result<String> {
    let info = repo.backup_info();
    if let Some(label) = set {
        if info.backup(label).is_some() {
            return Ok(label.to_string());
        }
        let known: Vec<&str> = info.backups.iter().map(|b| b.label.as_str()).collect();
        return Err(Error::BackupMissing(format!(
            "backup set {label} is not in {} for stanza '{}' (available: {})",
            repo.name(),
            repo.stanza(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    if info.backups.is_empty() {
        return Err(Error::BackupMissing(format!(
            "{} holds no backup for stanza '{}': run 'pgbr --stanza={} backup' first",
            repo.name(),
            repo.stanza(),
            repo.stanza()
        )));
    }
    let usable = usable_for(target);
    // The newest is the last committed (backup.info keeps commit order; stop times have a
    // resolution of a second, in which two backups can end).
    info.backups
        .iter()
        .rfind(|b| usable(b))
        .map(|b| b.label.clone())
        .ok_or_else(|| {
            let oldest = info.backups.iter().min_by_key(|b| b.timestamp_stop);
            Error::BackupMissing(format!(
                "no backup in {} ended before the recovery target {}; the oldest backup, {}, is consistent only from {}",
                repo.name(),
                describe_target(target),
                oldest.map(|b| b.label.as_str()).unwrap_or("?"),
                oldest.map(consistency_point).unwrap_or_default()
            ))
        })
}

fn describe_target(t: &RecoveryTarget) -> String {
    match t {
        RecoveryTarget::Time { text, .. } => format!("time '{text}'"),
        RecoveryTarget::Lsn(l) => format!("LSN {l}"),
        RecoveryTarget::Xid(x) => format!("xid {x}"),
        RecoveryTarget::Name(n) => format!("restore point '{n}'"),
        other => other.type_name().to_string(),
    }
}

fn consistency_point(b: &BackupSummary) -> String {
    let time = chrono::DateTime::from_timestamp(b.timestamp_stop, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S+00").to_string())
        .unwrap_or_default();
    format!("{time} (LSN {})", b.lsn_stop)
}

/// Refuses a target the chosen backup cannot reach: one earlier than its consistency point.
pub(super) fn check_target_reachable(
    repo: &Repository,
    label: &str,
    target: &RecoveryTarget,
) -> Result<()> {
    let Some(b) = repo.backup_info().backup(label) else {
        return Ok(());
    };
    let before = match target {
        RecoveryTarget::Time { unix, .. } => *unix < b.timestamp_stop,
        RecoveryTarget::Lsn(lsn) => b.lsn_stop.parse::<Lsn>().map(|s| *lsn < s).unwrap_or(false),
        _ => false,
    };
    if before {
        return Err(Error::RestoreTarget(format!(
            "the recovery target {} is before backup {label} is consistent ({}): recovery could never reach it. Choose an older backup with --set, or a later target",
            describe_target(target),
            consistency_point(b)
        )));
    }
    Ok(())
}

/// Finds the first WAL segment missing from the archive between the backup's start and what the
/// target needs (for targets without a known end, the newest archived segment). `None` when
/// the archive is continuous.
async fn first_archive_gap(
    repo: &Repository,
    also: &[Repository],
    manifest: &Manifest,
    target: &RecoveryTarget,
) -> Result<Option<String>> {
    let b = &manifest.backup;
    let size = if b.wal_segment_size == 0 {
        pgbr_wal::DEFAULT_SEGMENT_SIZE
    } else {
        b.wal_segment_size
    };
    let start = Segment::parse(&b.wal_start, size).map_err(|source| Error::Wal {
        context: format!("manifest of backup {}: wal_start", b.label),
        source,
    })?;
    let stop_number = Segment::parse(&b.wal_stop, size)
        .map(|s| s.number)
        .unwrap_or(start.number);
    let mut held = crate::archive::archived_segments(repo, size).await?;
    for other in also {
        held.extend(crate::archive::archived_segments(other, size).await?);
    }
    // A segment number counts as present on the backup's timeline or a later one: after a
    // promotion, recovery follows the newer timeline's copy.
    let present = |n: u64| {
        held.iter()
            .any(|(tli, seg)| *seg == n && *tli >= start.timeline)
    };
    let last = match target {
        RecoveryTarget::Immediate => stop_number,
        RecoveryTarget::Lsn(lsn) => lsn.segment_number(size),
        _ => held
            .iter()
            .filter(|(tli, _)| *tli >= start.timeline)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(start.number),
    };
    for n in start.number..=last.max(start.number) {
        // WAL stored inside the backup covers its own start..stop range.
        if present(n) || (b.archive_copy && n <= stop_number) {
            continue;
        }
        let missing = Segment {
            timeline: start.timeline,
            number: n,
            size,
        };
        return Ok(Some(missing.name()));
    }
    Ok(None)
}

/// Refuses a restore whose recovery would stop at a gap in the archive before reaching
/// `target`; with `force`, returns the gap as a warning instead.
pub(super) async fn check_archive(
    repo: &Repository,
    also: &[Repository],
    manifest: &Manifest,
    target: &RecoveryTarget,
    force: bool,
) -> Result<Vec<String>> {
    if *target == RecoveryTarget::Preserve {
        return Ok(Vec::new());
    }
    let Some(missing) = first_archive_gap(repo, also, manifest, target).await? else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = std::iter::once(repo)
        .chain(also)
        .map(Repository::name)
        .collect();
    let message = format!(
        "WAL segment {missing} is missing from {}: recovery from backup {} would stop there, before the recovery target",
        names.join(" and "),
        manifest.backup.label
    );
    if !force {
        return Err(Error::RestoreTarget(format!(
            "{message}. Nothing was written. Restore a later backup, recover the segment into the archive, or pass --force to restore anyway"
        )));
    }
    Ok(vec![message])
}
