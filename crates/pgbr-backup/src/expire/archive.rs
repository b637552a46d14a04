//! Which WAL no retained backup needs.

use std::collections::BTreeMap;

use pgbr_manifest::{ArchiveInfo, BackupSummary, BackupType};

use super::ArchiveExpired;
use crate::config::{ExpireOptions, RetentionFullType};
use crate::error::Result;
use crate::layout;
use crate::repo::Repository;

/// A WAL position independent of timeline and segment size: (log id, segment within the log).
type Pos = (u32, u32);

fn position(segment: &str) -> Option<Pos> {
    if segment.len() < 24 || !segment.is_char_boundary(24) {
        return None;
    }
    let log = u32::from_str_radix(&segment[8..16], 16).ok()?;
    let seg = u32::from_str_radix(&segment[16..24], 16).ok()?;
    Some((log, seg))
}

fn timeline_of(segment: &str) -> Option<u32> {
    u32::from_str_radix(segment.get(..8)?, 16).ok()
}

/// One archived file that expire removes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct WalObject {
    pub(super) path: String,
    archive_id: String,
    pub(super) segment: String,
}

/// What WAL keeps a retained backup restorable, per archive id.
#[derive(Debug, Default)]
struct Keep {
    /// Every position from here on is kept (on any timeline); `None`: only `ranges`.
    from: Option<Pos>,
    /// (timeline, start, stop) of each retained backup.
    ranges: Vec<(u32, Pos, Pos)>,
    /// Keep everything (an archive id newer than every backup).
    all: bool,
}

impl Keep {
    fn keeps(&self, segment: &str) -> bool {
        if self.all {
            return true;
        }
        let (Some(pos), Some(tli)) = (position(segment), timeline_of(segment)) else {
            return true;
        };
        if self.from.is_some_and(|f| pos >= f) {
            return true;
        }
        self.ranges
            .iter()
            .any(|(t, a, b)| *t == tli && pos >= *a && pos <= *b)
    }
}

/// The backups whose WAL is kept for point-in-time recovery; the oldest of them is the boundary
/// (`verify` checks WAL continuity from the same point).
pub(crate) fn archive_boundary<'a>(
    retained: &'a [BackupSummary],
    opts: &ExpireOptions,
) -> Option<&'a BackupSummary> {
    let mut sorted: Vec<&BackupSummary> = retained.iter().collect();
    sorted.sort_by(|a, b| (a.timestamp_start, &a.label).cmp(&(b.timestamp_start, &b.label)));
    let count = opts
        .retention_archive
        .or(match opts.retention_archive_type {
            BackupType::Full if opts.retention_full_type == RetentionFullType::Count => {
                opts.retention_full
            }
            BackupType::Diff => opts.retention_diff,
            _ => None,
        });
    let Some(n) = count else {
        return sorted.first().copied();
    };
    let counted: Vec<&BackupSummary> = sorted
        .iter()
        .copied()
        .filter(|b| match opts.retention_archive_type {
            BackupType::Full => b.backup_type == BackupType::Full,
            BackupType::Diff => b.backup_type != BackupType::Incr,
            BackupType::Incr => true,
        })
        .collect();
    let n = n as usize;
    if counted.len() > n {
        Some(counted[counted.len() - n])
    } else {
        sorted.first().copied()
    }
}

pub(super) async fn plan_archive(
    repo: &Repository,
    retained: &[BackupSummary],
    opts: &ExpireOptions,
) -> Result<Vec<WalObject>> {
    // With no backup at all there is nothing to measure against: keep every WAL file.
    let Some(boundary) = archive_boundary(retained, opts) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for db in &repo.archive_info().db_history {
        let archive_id = ArchiveInfo::archive_id(db);
        let mut keep = Keep::default();
        if db.db_id > boundary.db_id {
            keep.all = true;
        } else if db.db_id == boundary.db_id {
            keep.from = position(&boundary.wal_start);
            if keep.from.is_none() {
                keep.all = true;
            }
        }
        if let (Some(floor), false) = (opts.keep_wal_from.as_deref().and_then(position), keep.all) {
            keep.from = Some(keep.from.map_or(floor, |f| f.min(floor)));
        }
        for b in retained.iter().filter(|b| b.db_id == db.db_id) {
            match (position(&b.wal_start), position(&b.wal_stop)) {
                (Some(a), Some(z)) => keep.ranges.push((b.timeline, a, z)),
                _ => keep.all = true,
            }
        }
        if keep.all {
            continue;
        }
        let prefix = layout::under(&layout::archive_id_dir(repo.stanza(), &archive_id));
        for o in repo.storage().list(&prefix).await? {
            let file = o.path.rsplit('/').next().unwrap_or_default();
            let wal_name = file.split('-').next().unwrap_or_default();
            match pgbr_wal::classify(wal_name) {
                Some(pgbr_wal::WalFileName::History(_)) | None => continue,
                Some(_) => {}
            }
            let segment = &wal_name[..24];
            if !keep.keeps(segment) {
                out.push(WalObject {
                    path: o.path.clone(),
                    archive_id: archive_id.clone(),
                    segment: segment.to_string(),
                });
            }
        }
    }
    Ok(out)
}

pub(super) fn summarize(wal: &[WalObject]) -> Vec<ArchiveExpired> {
    let mut per: BTreeMap<(String, u32), ArchiveExpired> = BTreeMap::new();
    for w in wal {
        let tli = timeline_of(&w.segment).unwrap_or(0);
        let e = per
            .entry((w.archive_id.clone(), tli))
            .or_insert_with(|| ArchiveExpired {
                archive_id: w.archive_id.clone(),
                timeline: tli,
                first: w.segment.clone(),
                last: w.segment.clone(),
                count: 0,
            });
        if w.segment < e.first {
            e.first = w.segment.clone();
        }
        if w.segment > e.last {
            e.last = w.segment.clone();
        }
        e.count += 1;
    }
    per.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_keep_rules() {
        let keep = Keep {
            from: position("000000010000000000000009"),
            ranges: vec![(1, (0, 2), (0, 3))],
            all: false,
        };
        assert!(!keep.keeps("000000010000000000000001"));
        assert!(keep.keeps("000000010000000000000002"));
        assert!(keep.keeps("000000010000000000000003"));
        assert!(!keep.keeps("000000010000000000000004"));
        assert!(!keep.keeps("000000020000000000000003"));
        assert!(keep.keeps("000000010000000000000009"));
        assert!(keep.keeps("00000002000000010000000A"));
        let b = super::super::tests::chain();
        let opts = ExpireOptions {
            retention_full: Some(2),
            retention_archive: Some(1),
            ..Default::default()
        };
        assert_eq!(
            archive_boundary(&b, &opts).map(|b| b.label.as_str()),
            Some("20261123-000000F")
        );
        let opts = ExpireOptions::default();
        assert_eq!(
            archive_boundary(&b, &opts).map(|b| b.label.as_str()),
            Some("20261120-000000F")
        );
    }
}
