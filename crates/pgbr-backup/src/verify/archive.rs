//! The archive: every archived WAL file, checked against the checksum in its name.

use std::collections::{BTreeMap, BTreeSet};

use pgbr_manifest::ArchiveInfo;
use pgbr_wal::WalFileName;

use super::jobs::{Checker, Job};
use super::report::VerifyReport;
use crate::archive::parse_stored_name;
use crate::error::Result;

/// The WAL segments archived, by archive id.
pub(super) type Segments = BTreeMap<String, BTreeSet<String>>;

/// Reads and checks every archived WAL file of every archive id; returns the segments found,
/// for WAL continuity.
pub(super) async fn check(
    checker: &mut Checker<'_>,
    report: &mut VerifyReport,
) -> Result<Segments> {
    let repo = checker.repo();
    let storage = repo.storage();
    let stanza = repo.stanza();
    let mut jobs = Vec::new();
    let mut segments: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for db in &repo.archive_info().db_history {
        let archive_id = ArchiveInfo::archive_id(db);
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for o in storage
            .list(&crate::layout::under(&crate::layout::archive_id_dir(
                stanza,
                &archive_id,
            )))
            .await?
        {
            let file = o.path.rsplit('/').next().unwrap_or_default();
            let wal_name = file.split('-').next().unwrap_or_default();
            let kind = pgbr_wal::classify(wal_name);
            let parsed = kind
                .as_ref()
                .and_then(|_| parse_stored_name(file, wal_name));
            let (Some(kind), Some((checksum, compress))) = (kind, parsed) else {
                report.error(
                    &o.path,
                    "not an archived WAL file name (<wal>-<blake3>.<ext>)",
                );
                continue;
            };
            if let Some(other) = seen.insert(wal_name.to_string(), o.path.clone()) {
                report.error(
                    &o.path,
                    format!("{wal_name} is archived twice (also {other})"),
                );
            }
            let is_segment = matches!(kind, WalFileName::Segment(_));
            if is_segment {
                segments
                    .entry(archive_id.clone())
                    .or_default()
                    .insert(wal_name.to_string());
            }
            jobs.push(Job::Wal {
                object: o.path.clone(),
                compress,
                checksum,
                is_segment,
            });
        }
    }
    checker.check(jobs).await?;
    Ok(segments)
}
