//! Which backups the retention policy (or `--set`) expires.

use std::collections::BTreeSet;

use pgbr_manifest::{BackupSummary, BackupType};

use crate::config::{ExpireOptions, RetentionFullType};
use crate::error::{Error, Result};

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
