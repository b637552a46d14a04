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

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use pgbr_manifest::{ArchiveInfo, BackupSummary, BackupType};

use crate::config::{ExpireOptions, RetentionFullType};
use crate::error::{Error, Result};
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
    crate::claim::release_if(repo, took, result).await
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

    // 1. backup.info: the backups leave the list.
    if !expired.is_empty() {
        repo.backup_info
            .backups
            .retain(|b| !expired.contains(&b.label));
        repo.save_backup_info().await?;
        crate::failpoints::crash_point!("expire::after-backup-info");
    }
    // 2. Manifests, newest backup first: a backup without a manifest is no longer a backup.
    for label in &expired {
        let manifest = layout::manifest(&repo.backup_path(label));
        repo.storage().delete(&layout::copy_of(&manifest)).await?;
        repo.storage().delete(&manifest).await?;
        crate::failpoints::crash_point!("expire::after-manifest");
    }
    // 3. The rest of each directory.
    for label in &expired {
        repo.storage()
            .delete_prefix(&layout::under(&repo.backup_path(label)))
            .await?;
        crate::failpoints::crash_point!("expire::after-directory");
    }
    // 4. WAL no retained backup needs, then what killed archive-push calls left of it.
    let mut segments_by_dir: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for w in &wal {
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
    Ok(report)
}

/// The backups to expire, newest first (so dependents precede what they depend on).
pub fn plan_backups(
    backups: &[BackupSummary],
    opts: &ExpireOptions,
    now: i64,
) -> Result<Vec<String>> {
    let mut sorted: Vec<&BackupSummary> = backups.iter().collect();
    sorted.sort_by(|a, b| (a.timestamp_start, &a.label).cmp(&(b.timestamp_start, &b.label)));
    let fulls: Vec<&BackupSummary> = sorted
        .iter()
        .copied()
        .filter(|b| b.backup_type == BackupType::Full)
        .collect();
    let mut expire: BTreeSet<String> = BTreeSet::new();
    if let Some(set) = &opts.set {
        let Some(b) = sorted.iter().find(|b| &b.label == set) else {
            let known: Vec<&str> = sorted.iter().map(|b| b.label.as_str()).collect();
            return Err(Error::BackupMissing(format!(
                "backup set {set} does not exist (available: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        if b.backup_type == BackupType::Full
            && fulls.last().map(|f| &f.label) == Some(&b.label)
            && !opts.force
        {
            return Err(Error::BackupMissing(format!(
                "backup set {set} is the newest full backup: expiring it would leave no recent full backup; pass --force to expire it anyway"
            )));
        }
        expire.insert(set.clone());
    } else {
        if let Some(n) = opts.retention_full {
            match opts.retention_full_type {
                RetentionFullType::Count => {
                    let n = n as usize;
                    if fulls.len() > n {
                        for f in &fulls[..fulls.len() - n] {
                            expire.insert(f.label.clone());
                        }
                    }
                }
                RetentionFullType::Time => {
                    let cutoff = now - i64::from(n) * 86_400;
                    // Keep the newest full that ended before the cutoff, so the whole window
                    // stays recoverable; expire every full older than it.
                    if let Some(keep) = fulls.iter().rposition(|f| f.timestamp_stop <= cutoff) {
                        for f in &fulls[..keep] {
                            expire.insert(f.label.clone());
                        }
                    }
                }
            }
        }
        if let Some(n) = opts.retention_diff {
            let diffs: Vec<&&BackupSummary> = sorted
                .iter()
                .filter(|b| b.backup_type == BackupType::Diff && !expire.contains(&b.label))
                .collect();
            let n = n as usize;
            if diffs.len() > n {
                for d in &diffs[..diffs.len() - n] {
                    expire.insert(d.label.clone());
                }
            }
        }
    }
    // Everything based on an expired backup goes with it.
    loop {
        let before = expire.len();
        for b in &sorted {
            let depends = b
                .prior
                .iter()
                .chain(b.references.iter())
                .any(|l| expire.contains(l));
            if depends {
                expire.insert(b.label.clone());
            }
        }
        if expire.len() == before {
            break;
        }
    }
    Ok(sorted
        .iter()
        .rev()
        .filter(|b| expire.contains(&b.label))
        .map(|b| b.label.clone())
        .collect())
}

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
struct WalObject {
    path: String,
    archive_id: String,
    segment: String,
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

async fn plan_archive(
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

fn summarize(wal: &[WalObject]) -> Vec<ArchiveExpired> {
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
    use crate::test_support::summary;

    fn chain() -> Vec<BackupSummary> {
        vec![
            summary(
                "20261120-000000F",
                BackupType::Full,
                None,
                100,
                "000000010000000000000002",
            ),
            summary(
                "20261120-000000F_20261121-000000D",
                BackupType::Diff,
                Some("20261120-000000F"),
                200,
                "000000010000000000000004",
            ),
            summary(
                "20261120-000000F_20261121-010000I",
                BackupType::Incr,
                Some("20261120-000000F_20261121-000000D"),
                250,
                "000000010000000000000005",
            ),
            summary(
                "20261122-000000F",
                BackupType::Full,
                None,
                300,
                "000000010000000000000007",
            ),
            summary(
                "20261123-000000F",
                BackupType::Full,
                None,
                400,
                "000000010000000000000009",
            ),
        ]
    }

    #[test]
    fn count_retention_takes_dependents_newest_first() {
        let opts = ExpireOptions {
            retention_full: Some(2),
            ..Default::default()
        };
        let gone = plan_backups(&chain(), &opts, 1000).expect("plan");
        assert_eq!(
            gone,
            vec![
                "20261120-000000F_20261121-010000I",
                "20261120-000000F_20261121-000000D",
                "20261120-000000F"
            ]
        );
        let opts = ExpireOptions {
            retention_full: Some(3),
            ..Default::default()
        };
        assert!(plan_backups(&chain(), &opts, 1000)
            .expect("plan")
            .is_empty());
    }

    #[test]
    fn diff_retention_and_set() {
        let opts = ExpireOptions {
            retention_full: Some(5),
            retention_diff: Some(1),
            ..Default::default()
        };
        assert!(plan_backups(&chain(), &opts, 1000)
            .expect("plan")
            .is_empty());
        let opts = ExpireOptions {
            set: Some("20261120-000000F_20261121-000000D".into()),
            ..Default::default()
        };
        assert_eq!(
            plan_backups(&chain(), &opts, 1000).expect("plan"),
            vec![
                "20261120-000000F_20261121-010000I",
                "20261120-000000F_20261121-000000D"
            ]
        );
        let opts = ExpireOptions {
            set: Some("20261123-000000F".into()),
            ..Default::default()
        };
        let e = plan_backups(&chain(), &opts, 1000).expect_err("newest full");
        assert!(e.to_string().contains("--force"), "{e}");
        let opts = ExpireOptions {
            set: Some("20261123-000000F".into()),
            force: true,
            ..Default::default()
        };
        assert_eq!(
            plan_backups(&chain(), &opts, 1000).expect("forced"),
            vec!["20261123-000000F"]
        );
        let opts = ExpireOptions {
            set: Some("20261101-000000F".into()),
            ..Default::default()
        };
        assert!(plan_backups(&chain(), &opts, 1000).is_err());
    }

    #[test]
    fn time_retention_keeps_the_newest_full_before_the_window() {
        let day = 86_400;
        let mut b = chain();
        b[0].timestamp_stop = 0;
        b[3].timestamp_stop = 5 * day;
        b[4].timestamp_stop = 9 * day;
        let opts = ExpireOptions {
            retention_full: Some(2),
            retention_full_type: RetentionFullType::Time,
            ..Default::default()
        };
        // now = day 10: window starts at day 8; the full of day 5 is kept, the one of day 0 goes.
        let gone = plan_backups(&b, &opts, 10 * day).expect("plan");
        assert_eq!(gone.last().map(String::as_str), Some("20261120-000000F"));
        assert!(!gone.contains(&"20261122-000000F".to_string()));
    }

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
        let b = chain();
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
