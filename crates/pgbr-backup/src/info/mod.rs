//! `info`: what a repository holds for each stanza: the cluster, the backups and the WAL archive's
//! range per archive id and timeline. Returns data; the caller renders it (text, JSON, or
//! Prometheus' text format).

use serde::Serialize;

mod pgbackrest;
mod prometheus;
pub use pgbackrest::pgbackrest_json;
pub use prometheus::prometheus_text;

use pgbr_manifest::{ArchiveInfo, BackupSummary, DbHistory};

use crate::config::RepoOptions;
use crate::error::{Error, Result};
use crate::layout;
use crate::repo::{self, Repository};

/// The archive's extent for one archive id and timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArchiveRange {
    /// `<pg-version>-<db-id>`.
    pub archive_id: String,
    /// Timeline.
    pub timeline: u32,
    /// First segment held.
    pub min: String,
    /// Last segment held.
    pub max: String,
    /// Segments held.
    pub count: u64,
    /// When the last segment was archived (its object's modification time, Unix seconds).
    pub max_archived_at: i64,
}

/// One stanza's state.
#[derive(Clone, Debug, Serialize)]
pub struct StanzaReport {
    /// Stanza name.
    pub name: String,
    /// The repository it was read from.
    pub repo: String,
    /// That repository's N (`repo<N>`).
    pub repo_key: u32,
    /// `ok`, or `error` with `message`.
    pub status: String,
    /// Why the stanza could not be read.
    pub message: Option<String>,
    /// Encryption.
    pub cipher: String,
    /// Cluster history (the last is the current one).
    pub db: Vec<DbHistory>,
    /// WAL held, per archive id and timeline.
    pub archive: Vec<ArchiveRange>,
    /// Backups, oldest first.
    pub backups: Vec<BackupSummary>,
    /// Files whose pages failed their checksum when backed up, per backup.
    pub page_errors: Vec<PageErrors>,
}

/// Pages of one file that failed their checksum when it was copied, listed for every backup
/// whose restore holds that copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PageErrors {
    /// The backup whose restore holds the damaged copy.
    pub label: String,
    /// The earlier backup that copied the file (and found the damage), when `label` references
    /// its copy rather than holding one of its own.
    pub reference: Option<String>,
    /// `pg_data` or `pg_tblspc/<oid>`.
    pub target: String,
    /// The file, relative to its target.
    pub name: String,
    /// Page numbers within the file.
    pub blocks: Vec<u32>,
}

/// Lists the damaged pages in the backups of `r`, a file referenced from an earlier backup with
/// the pages that backup found (manifests are read only when the summary counts any).
async fn page_errors(r: &Repository) -> Result<Vec<PageErrors>> {
    let mut out = Vec::new();
    for b in r.backup_info().backups.iter().filter(|b| b.page_errors > 0) {
        let m = r.load_manifest(&b.label).await?;
        for f in m.files.iter().filter(|f| !f.page_errors.is_empty()) {
            out.push(PageErrors {
                label: b.label.clone(),
                reference: f.reference.as_ref().map(|r| r.to_string()),
                target: f.target.to_string(),
                name: f.name.to_string(),
                blocks: f.page_errors.clone(),
            });
        }
    }
    Ok(out)
}

/// Reports on `stanza`, or on every stanza in the repository.
pub async fn collect(opts: &RepoOptions, stanza: Option<&str>) -> Result<Vec<StanzaReport>> {
    let storage = repo::open_storage(opts)?;
    let repo_name = repo::describe(opts, &storage);
    let names: Vec<String> = match stanza {
        Some(s) => vec![s.to_string()],
        None => {
            let (dirs, _) = storage.list_dir(&layout::stanzas()).await?;
            dirs.into_iter()
                .map(|d| layout::last_segment(&d).to_string())
                .filter(|d| !d.is_empty())
                .collect()
        }
    };
    let mut out = Vec::new();
    for name in names {
        let report = match Repository::open_with(storage.clone(), opts, &name).await {
            Ok(r) => StanzaReport {
                name: name.clone(),
                repo: repo_name.clone(),
                repo_key: opts.index,
                status: "ok".into(),
                message: None,
                cipher: r.cipher().to_string(),
                db: r.archive_info().db_history.clone(),
                archive: archive_ranges(&r).await?,
                backups: {
                    let mut b = r.backup_info().backups.clone();
                    b.sort_by(|x, y| x.label.cmp(&y.label));
                    b
                },
                page_errors: page_errors(&r).await?,
            },
            Err(e @ Error::StanzaMissing { .. }) if stanza.is_some() => return Err(e),
            // A wrong passphrase or cipher setting concerns the whole repository: fail (exit 5 or
            // 2) rather than report every stanza as "error" and exit 0.
            Err(e @ (Error::WrongPassphrase { .. } | Error::Config(_))) => return Err(e),
            Err(e) => StanzaReport {
                name: name.clone(),
                repo: repo_name.clone(),
                repo_key: opts.index,
                status: "error".into(),
                message: Some(e.to_string()),
                cipher: opts.cipher_type.to_string(),
                db: Vec::new(),
                archive: Vec::new(),
                backups: Vec::new(),
                page_errors: Vec::new(),
            },
        };
        out.push(report);
    }
    Ok(out)
}

/// `info --set`: `reports` with only backup `set` (and its page errors) left in each. A label no
/// report holds is an error naming it and listing the backups there are, as `restore --set`.
pub fn only_set(mut reports: Vec<StanzaReport>, set: &str) -> Result<Vec<StanzaReport>> {
    let mut found = false;
    let mut available = std::collections::BTreeSet::new();
    let mut repos = Vec::new();
    let mut stanzas = Vec::new();
    for r in &mut reports {
        available.extend(r.backups.iter().map(|b| b.label.clone()));
        if !repos.contains(&r.repo) {
            repos.push(r.repo.clone());
        }
        if !stanzas.contains(&r.name) {
            stanzas.push(r.name.clone());
        }
        r.backups.retain(|b| b.label == set);
        r.page_errors.retain(|p| p.label == set);
        found |= !r.backups.is_empty();
    }
    if found {
        return Ok(reports);
    }
    if reports.is_empty() {
        return Err(Error::BackupMissing(format!(
            "backup set {set} is not in the repository: it holds no stanza"
        )));
    }
    let available: Vec<String> = available.into_iter().collect();
    Err(Error::BackupMissing(format!(
        "backup set {set} is not in {} for stanza {} (available: {})",
        repos.join(", "),
        stanzas
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", "),
        if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        }
    )))
}

async fn archive_ranges(repo: &Repository) -> Result<Vec<ArchiveRange>> {
    let mut out = Vec::new();
    for db in &repo.archive_info().db_history {
        let archive_id = ArchiveInfo::archive_id(db);
        let objects = repo
            .storage()
            .list(&layout::under(&layout::archive_id_dir(
                repo.stanza(),
                &archive_id,
            )))
            .await?;
        let mut per_tli: std::collections::BTreeMap<u32, (String, String, u64, i64)> =
            Default::default();
        for o in objects {
            let file = o.path.rsplit('/').next().unwrap_or_default();
            let Some(seg) = file.get(..24) else { continue };
            if file.as_bytes().get(24) != Some(&b'-') || !seg.bytes().all(|b| b.is_ascii_hexdigit())
            {
                continue;
            }
            let Ok(tli) = u32::from_str_radix(&seg[..8], 16) else {
                continue;
            };
            let e = per_tli
                .entry(tli)
                .or_insert_with(|| (seg.to_string(), seg.to_string(), 0, o.modified));
            if seg < e.0.as_str() {
                e.0 = seg.to_string();
            }
            if seg >= e.1.as_str() {
                e.1 = seg.to_string();
                e.3 = o.modified;
            }
            e.2 += 1;
        }
        for (timeline, (min, max, count, max_archived_at)) in per_tli {
            out.push(ArchiveRange {
                archive_id: archive_id.clone(),
                timeline,
                min,
                max,
                count,
                max_archived_at,
            });
        }
    }
    Ok(out)
}
