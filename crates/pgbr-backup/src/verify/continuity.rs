//! WAL continuity, per archive id and timeline: every retained backup's own start..stop, and
//! everything from the start of the oldest backup kept for point-in-time recovery (the same
//! boundary expire uses, from the retention options) to the newest segment.

use std::collections::{BTreeMap, BTreeSet};

use pgbr_manifest::{ArchiveInfo, BackupSummary, DbHistory};
use pgbr_wal::Segment;

use super::archive::Segments;
use super::report::VerifyReport;
use crate::config::VerifyOptions;
use crate::repo::Repository;

/// Segment numbers, by timeline.
type ByTimeline = BTreeMap<u32, BTreeSet<u64>>;

/// Reports each run of missing segments of `segments` (those archived, by archive id) as an
/// error. `summaries` are the backups checked; `sizes` the segments seen per segment size (the
/// most common one names segments).
pub(super) fn check(
    repo: &Repository,
    opts: &VerifyOptions,
    summaries: &[BackupSummary],
    mut segments: Segments,
    sizes: &BTreeMap<u32, u64>,
    report: &mut VerifyReport,
) {
    let segment_size = sizes
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(s, _)| u64::from(*s))
        .unwrap_or(16 * 1024 * 1024);
    let boundary = crate::expire::archive_boundary(summaries, &opts.retention).cloned();
    for db in &repo.archive_info().db_history {
        let archive_id = ArchiveInfo::archive_id(db);
        let names = segments.remove(&archive_id).unwrap_or_default();
        let here: Vec<&BackupSummary> = summaries.iter().filter(|b| b.db_id == db.db_id).collect();
        let missing = missing_in(db, &names, &here, boundary.as_ref(), segment_size);
        report_gaps(&archive_id, missing, segment_size, report);
    }
}

/// The segments missing from archive id `db`, which holds segments `names` and backups `here`:
/// each backup's own range, and from `boundary` (or the start, or not at all for an archive id
/// before the boundary's) to the newest segment of each timeline.
fn missing_in(
    db: &DbHistory,
    names: &BTreeSet<String>,
    here: &[&BackupSummary],
    boundary: Option<&BackupSummary>,
    segment_size: u64,
) -> ByTimeline {
    let seg = |name: &str| Segment::parse(name, segment_size).ok();
    let mut have: ByTimeline = BTreeMap::new();
    for n in names {
        if let Some(s) = seg(n) {
            have.entry(s.timeline).or_default().insert(s.number);
        }
    }
    let mut missing: ByTimeline = BTreeMap::new();
    let mut need = |tli: u32, from: u64, to: u64, have: &ByTimeline| {
        let present = have.get(&tli);
        for n in from..=to {
            if !present.is_some_and(|p| p.contains(&n)) {
                missing.entry(tli).or_default().insert(n);
            }
        }
    };
    for b in here {
        if let (Some(a), Some(z)) = (seg(&b.wal_start), seg(&b.wal_stop)) {
            if a.timeline == z.timeline && z.number >= a.number {
                need(a.timeline, a.number, z.number, &have);
            }
        }
    }
    // Where continuity starts in this archive id (None: only the backups' own ranges).
    let from: Option<u64> = match boundary {
        None => Some(0),
        Some(bd) if db.db_id > bd.db_id => Some(0),
        Some(bd) if db.db_id == bd.db_id => seg(&bd.wal_start).map(|s| s.number),
        Some(_) => None,
    };
    if let Some(from) = from {
        for (&tli, present) in &have {
            let first = here
                .iter()
                .filter_map(|b| seg(&b.wal_start))
                .filter(|s| s.timeline == tli)
                .map(|s| s.number)
                .min()
                .or_else(|| present.first().copied())
                .unwrap_or(0);
            let start = first.max(from);
            let end = present.last().copied().unwrap_or(0);
            if end >= start {
                need(tli, start, end, &have);
            }
        }
    }
    missing
}

/// Reports each run of consecutive `missing` segments of `archive_id` as one error, named by its
/// first segment.
fn report_gaps(
    archive_id: &str,
    missing: ByTimeline,
    segment_size: u64,
    report: &mut VerifyReport,
) {
    for (tli, nums) in missing {
        let nums: Vec<u64> = nums.into_iter().collect();
        let name = |num: u64| {
            Segment {
                timeline: tli,
                number: num,
                size: segment_size,
            }
            .name()
        };
        let mut i = 0;
        while i < nums.len() {
            let mut j = i;
            while j + 1 < nums.len() && nums[j + 1] == nums[j] + 1 {
                j += 1;
            }
            let message = if i == j {
                format!(
                    "WAL gap in archive {archive_id} timeline {tli}: segment {} is missing",
                    name(nums[i])
                )
            } else {
                format!(
                    "WAL gap in archive {archive_id} timeline {tli}: segments {}..{} ({} files) are missing",
                    name(nums[i]),
                    name(nums[j]),
                    j - i + 1
                )
            };
            report.error(name(nums[i]), message);
            i = j + 1;
        }
    }
}
