//! A backup's manifest copies, each read and checked on its own: the manifest a backup's files
//! are checked against is a copy that verifies.

use pgbr_manifest::{Checksum, Manifest};

use super::report::VerifyReport;
use crate::error::Result;
use crate::layout;
use crate::repo::Repository;

/// Reads both manifest copies of backup `label` (`is_listed`: in backup.info), reporting what is
/// wrong with each; the first copy that verifies, or `None` when there is none.
pub(super) async fn read(
    repo: &Repository,
    label: &str,
    is_listed: bool,
    report: &mut VerifyReport,
) -> Result<Option<(Manifest, Checksum)>> {
    let storage = repo.storage();
    let dir = repo.backup_path(label);
    let base = layout::manifest(&dir);
    let mut good: Option<(Manifest, Checksum)> = None;
    let mut present = 0;
    let mut missing = Vec::new();
    // The manifest as first read, and what was wrong with it: a copy byte for byte the same
    // verifies the same way, and is not parsed (and held) a second time.
    let mut first: Option<(bytes::Bytes, Option<String>)> = None;
    for path in [base.clone(), layout::copy_of(&base)] {
        let Some(raw) = storage.get_opt(&path).await? else {
            missing.push(path);
            continue;
        };
        present += 1;
        report.bytes_read += raw.len() as u64;
        if let Some((first_raw, problem)) = &first {
            if *first_raw == raw {
                if let Some(problem) = problem {
                    report.error(&path, problem.clone());
                }
                continue;
            }
        }
        let (manifest, problem) = judge_copy(repo, label, &raw);
        if good.is_none() {
            good = manifest;
        }
        if let Some(problem) = &problem {
            report.error(&path, problem.clone());
        }
        if first.is_none() {
            first = Some((raw, problem));
        }
    }
    if present == 0 {
        if is_listed {
            report.error(
                &dir,
                format!("backup {label} is listed in backup.info but has no manifest"),
            );
        } else {
            report.note(
                &dir,
                "incomplete backup (no manifest): an interrupted backup or expire; the next backup or expire removes it",
            );
        }
        return Ok(None);
    }
    for path in missing {
        if is_listed {
            report.error(&path, "missing (the other manifest copy exists)");
        } else {
            report.note(&path, "missing (the other manifest copy exists)");
        }
    }
    let Some(good) = good else {
        report.error(
            &dir,
            format!("backup {label} has no manifest copy that verifies; it cannot be restored"),
        );
        return Ok(None);
    };
    if !is_listed {
        report.note(
            &dir,
            format!("backup {label} is committed but not listed in backup.info; the next backup or expire lists it again"),
        );
    }
    Ok(Some(good))
}

/// Opens one manifest copy `raw` of backup `label`: the manifest when it verifies and is the one
/// backup.info commits (if it lists the backup), else what is wrong with it.
fn judge_copy(
    repo: &Repository,
    label: &str,
    raw: &[u8],
) -> (Option<(Manifest, Checksum)>, Option<String>) {
    let parsed = repo
        .open_manifest_with_checksum(raw, &format!("manifest of backup {label}"))
        .map_err(|e| e.to_string());
    let summary = repo.backup_info().backup(label);
    match parsed {
        Ok((m, _)) if m.backup.label != *label => (
            None,
            Some(format!(
                "is the manifest of backup {}, not {label}",
                m.backup.label
            )),
        ),
        Ok((m, checksum)) => {
            match summary.map(|s| crate::repo::check_bound(repo.backup_info(), s, &m, &checksum)) {
                Some(Err(why)) => (
                    None,
                    Some(format!(
                        "is not the manifest committed as backup {label}: {why}"
                    )),
                ),
                _ => (Some((m, checksum)), None),
            }
        }
        Err(e) => (None, Some(format!("manifest does not verify: {e}"))),
    }
}
