//! `info --output=json` in pgBackRest's schema (2.45), key for key, so that monitoring written
//! for pgBackRest (check_pgbackrest, pgbackrest_exporter, scripts) reads pgbr's: one object per
//! stanza with its repositories (`repo`), clusters (`db`), WAL ranges (`archive`) and backups
//! (`backup`), each naming its repository by `repo-key`. What pgbr adds lives under keys
//! pgBackRest does not use (`pgbr`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{ArchiveRange, StanzaReport};

/// pgBackRest's status codes of a stanza or repository.
const OK: (u64, &str) = (0, "ok");
const NO_BACKUPS: (u64, &str) = (2, "no valid backups");
const MIXED: (u64, &str) = (4, "different across repos");
const OTHER: u64 = 99;

/// `reports` (one per stanza and repository, as [`crate::multi::info_all`] gives them) in
/// pgBackRest's schema. `backup_lock_held(stanza)`: whether a backup holds the stanza's lock.
pub fn pgbackrest_json(reports: &[StanzaReport], backup_lock_held: &dyn Fn(&str) -> bool) -> Value {
    let mut stanzas: BTreeMap<&str, Vec<&StanzaReport>> = BTreeMap::new();
    for r in reports {
        stanzas.entry(r.name.as_str()).or_default().push(r);
    }
    Value::Array(
        stanzas
            .into_iter()
            .map(|(name, repos)| stanza(name, &repos, backup_lock_held(name)))
            .collect(),
    )
}

/// The status (code, message) of one repository's report.
fn repo_status(r: &StanzaReport) -> (u64, String) {
    match &r.message {
        Some(m) => (OTHER, m.clone()),
        None if r.backups.is_empty() => (NO_BACKUPS.0, NO_BACKUPS.1.into()),
        None => (OK.0, OK.1.into()),
    }
}

fn stanza(name: &str, repos: &[&StanzaReport], lock_held: bool) -> Value {
    let statuses: Vec<(u64, String)> = repos.iter().map(|r| repo_status(r)).collect();
    let (code, message) = match statuses.as_slice() {
        [one] => one.clone(),
        all if all.iter().all(|s| s.0 == OK.0) => (OK.0, OK.1.into()),
        all if all.iter().all(|s| s.0 == all[0].0) => all[0].clone(),
        _ => (MIXED.0, MIXED.1.into()),
    };
    let cipher = match repos.first() {
        Some(first) if repos.iter().all(|r| r.cipher == first.cipher) => first.cipher.clone(),
        _ => "mixed".into(),
    };
    let mut backups: Vec<Value> = Vec::new();
    let mut ordered: Vec<(&StanzaReport, &pgbr_manifest::BackupSummary)> = repos
        .iter()
        .flat_map(|r| r.backups.iter().map(move |b| (*r, b)))
        .collect();
    ordered.sort_by_key(|(r, b)| (b.timestamp_start, b.label.clone(), r.repo_key));
    for (r, b) in ordered {
        backups.push(backup(r, b));
    }
    json!({
        "archive": repos.iter().flat_map(|r| archive(r)).collect::<Vec<_>>(),
        "backup": backups,
        "cipher": cipher,
        "db": repos.iter().flat_map(|r| r.db.iter().map(move |d| json!({
            "id": d.db_id,
            "repo-key": r.repo_key,
            "system-id": d.system_id,
            "version": d.pg_version.to_string(),
        }))).collect::<Vec<_>>(),
        "name": name,
        "repo": repos.iter().zip(&statuses).map(|(r, (code, message))| json!({
            "cipher": r.cipher,
            "key": r.repo_key,
            "status": {"code": code, "message": message},
        })).collect::<Vec<_>>(),
        "status": {
            "code": code,
            "lock": {"backup": {"held": lock_held}},
            "message": message,
        },
    })
}

/// One entry per archive id (pgbr's ranges are per timeline too: merged).
fn archive(r: &StanzaReport) -> Vec<Value> {
    let mut by_id: BTreeMap<&str, Vec<&ArchiveRange>> = BTreeMap::new();
    for a in &r.archive {
        by_id.entry(a.archive_id.as_str()).or_default().push(a);
    }
    by_id
        .into_iter()
        .map(|(id, ranges)| {
            let db_id: Option<u32> = id.rsplit('-').next().and_then(|d| d.parse().ok());
            json!({
                "database": {"id": db_id, "repo-key": r.repo_key},
                "id": id,
                "max": ranges.iter().map(|a| a.max.as_str()).max(),
                "min": ranges.iter().map(|a| a.min.as_str()).min(),
            })
        })
        .collect()
}

fn backup(r: &StanzaReport, b: &pgbr_manifest::BackupSummary) -> Value {
    json!({
        "archive": {"start": b.wal_start, "stop": b.wal_stop},
        "backrest": match &b.backrest_version {
            Some(version) => json!({"format": pgbr_manifest::pgbackrest::BACKREST_FORMAT, "version": version}),
            None => json!({"format": pgbr_manifest::INFO_FORMAT, "version": concat!("pgbr ", env!("CARGO_PKG_VERSION"))}),
        },
        "database": {"id": b.db_id, "repo-key": r.repo_key},
        "error": b.page_errors > 0,
        "info": {
            "delta": b.size_delta,
            "repository": {"delta": b.size_stored, "size": b.size_repo},
            "size": b.size_original,
        },
        "label": b.label,
        "lsn": {"start": b.lsn_start, "stop": b.lsn_stop},
        "prior": b.prior,
        "reference": (!b.references.is_empty()).then_some(&b.references),
        "timestamp": {"start": b.timestamp_start, "stop": b.timestamp_stop},
        "type": b.backup_type.to_string(),
        "pgbr": {"file_count": b.file_count, "page_errors": b.page_errors, "repo": r.repo},
    })
}
