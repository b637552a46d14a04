//! `backup`: a full copy of a running cluster, coordinated with `pg_backup_start`/`pg_backup_stop`
//! on one session, its files streamed to the repository by `process-max` workers (largest first),
//! the WAL it needs checked in the archive, and the manifest written last to commit it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgbr_manifest::{
    new_label, BackupMeta, BackupSummary, BackupType, FileEntry, LinkEntry, Manifest, PathEntry,
    Target,
};
use pgbr_storage::posix::{self, Entry, EntryKind};
use pgbr_wal::{Lsn, Segment};

use crate::archive;
use crate::config::{BackupOptions, PgOptions};
use crate::error::{Error, Result};
use crate::exclude;
use crate::pipeline::{self, Codec, PageCheckSpec};
use crate::progress::Progress;
use crate::repo::{Repository, MANIFEST_FILE};

/// What a finished backup reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// The new backup's label.
    pub label: String,
    /// Files in the backup.
    pub file_count: u64,
    /// Bytes of the cluster's files.
    pub size_original: u64,
    /// Bytes stored in the repository for them.
    pub size_stored: u64,
    /// WAL start and stop LSNs.
    pub lsn_start: String,
    /// See `lsn_start`.
    pub lsn_stop: String,
    /// First and last WAL segment the backup needs.
    pub wal_start: String,
    /// See `wal_start`.
    pub wal_stop: String,
    /// Pages that failed their checksum (they do not stop the backup).
    pub page_errors: u64,
    /// Backups found unfinished and removed before this one started.
    pub removed_incomplete: Vec<String>,
}

/// One file to copy.
struct Job {
    target: String,
    name: String,
    source: PathBuf,
    size: u64,
    mtime: i64,
    mode: u32,
    pages: Option<PageCheckSpec>,
}

/// Takes a backup of the cluster `pg` describes into `repo`.
pub async fn run(
    repo: &mut Repository,
    pg: &PgOptions,
    opts: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupReport> {
    if opts.backup_type != BackupType::Full {
        return Err(Error::config(format!(
            "--type={} is not available yet: pgbr takes full backups only (use --type=full)",
            opts.backup_type
        )));
    }
    repo.lock(&opts.lock_path)?;
    let db = repo.current_db()?.clone();
    let (session, ident, control) = crate::pg::connect_checked(pg).await?;
    if ident.system_id != db.system_id || ident.major() != db.pg_version {
        return Err(Error::ClusterMismatch(format!(
            "the cluster in {} (system {}, PostgreSQL {}) is not the one stanza '{}' was created for (system {}, PostgreSQL {}); run stanza-create for a new stanza",
            pg.path.display(),
            ident.system_id,
            ident.major(),
            repo.stanza(),
            db.system_id,
            db.pg_version
        )));
    }
    if opts.archive_check {
        let mode = session.setting("archive_mode").await?;
        if mode == "off" {
            return Err(Error::config(
                "archive_mode is off on the cluster: a backup cannot be restored without its WAL. Set archive_mode=on and archive_command to 'pgbr ... archive-push %p', or pass --no-archive-check to take it anyway".into(),
            ));
        }
    }
    let removed_incomplete = reconcile(repo).await?;
    let started = Instant::now();
    let mut timestamp_start = now();
    let mut label = new_label(BackupType::Full, None, timestamp_start);
    while repo.backup_info().backup(&label).is_some()
        || repo
            .storage()
            .exists(&format!("{}/{MANIFEST_FILE}", repo.backup_path(&label)))
            .await?
    {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        timestamp_start = now();
        label = new_label(BackupType::Full, None, timestamp_start);
    }
    progress.message(&format!("backup {label}: starting (pg_backup_start)"));
    let (lsn_start, wal_start, timeline) = session.backup_start(&label, opts.start_fast).await?;
    let tablespaces = session.tablespaces().await?;

    let checksums = control.checksums_enabled();
    let mut targets = vec![Target {
        name: "pg_data".into(),
        path: pg.path.display().to_string(),
        tablespace_oid: None,
        tablespace_name: None,
    }];
    let mut paths = Vec::new();
    let mut links = Vec::new();
    let mut jobs = Vec::new();
    let pg_entries = walk(&pg.path, true)?;
    for e in pg_entries {
        if let Some(oid) = e.rel_path.strip_prefix("pg_tblspc/") {
            if let EntryKind::Symlink { target } = &e.kind {
                let oid_num: u32 = oid.parse().map_err(|_| {
                    Error::Corrupt(format!(
                        "{}: unexpected entry pg_tblspc/{oid}",
                        pg.path.display()
                    ))
                })?;
                let ts = tablespaces.iter().find(|t| t.oid == oid_num);
                let name = format!("pg_tblspc/{oid}");
                targets.push(Target {
                    name: name.clone(),
                    path: target.display().to_string(),
                    tablespace_oid: Some(oid_num),
                    tablespace_name: ts.map(|t| t.name.clone()),
                });
                collect(
                    &name,
                    target,
                    walk(target, false)?,
                    checksums,
                    lsn_start,
                    &mut paths,
                    &mut links,
                    &mut jobs,
                );
                continue;
            }
        }
        collect_one(
            "pg_data", &pg.path, e, checksums, lsn_start, &mut paths, &mut links, &mut jobs,
        );
    }
    paths.push(PathEntry {
        target: "pg_data".into(),
        name: String::new(),
        mode: mode_of(&pg.path)?,
    });
    for t in targets.iter().skip(1) {
        paths.push(PathEntry {
            target: t.name.clone(),
            name: String::new(),
            mode: mode_of(Path::new(&t.path))?,
        });
    }
    jobs.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    progress.start(total, jobs.len() as u64);

    let codec = Codec {
        compress_type: opts.compress.compress_type,
        level: opts.compress.level,
        cipher: repo.cipher(),
        key: repo.key().cloned(),
    };
    let backup_dir = repo.backup_path(&label);
    let ext = opts.compress.compress_type.extension();
    let handle = tokio::runtime::Handle::current();
    let storage = repo.storage().clone();
    let worker_progress = Arc::clone(&progress);
    let worker_codec = codec.clone();
    let worker_dir = backup_dir.clone();
    let copied = pipeline::run_parallel(jobs, opts.process_max, move |job: Job| {
        let object = format!("{worker_dir}/{}/{}{ext}", job.target, job.name);
        let stored = pipeline::store_file(
            &job.source,
            &storage,
            &object,
            &worker_codec,
            job.pages,
            &handle,
        )?;
        worker_progress.file_done(&job.name, job.size);
        Ok(stored.map(|s| FileEntry {
            target: job.target,
            name: job.name,
            size: s.size,
            mtime: job.mtime,
            mode: job.mode,
            checksum: s.checksum,
            reference: None,
            stored_size: s.stored_size,
            bundle: None,
            block_map: None,
            page_errors: s.page_errors,
        }))
    })
    .await;
    let mut files: Vec<FileEntry> = match copied {
        Ok(f) => f.into_iter().flatten().collect(),
        Err(e) => {
            session.close().await;
            return Err(e);
        }
    };
    progress.message(&format!(
        "backup {label}: files copied, stopping (pg_backup_stop)"
    ));
    let stop = session.backup_stop().await?;
    let wal_stop = session.walfile_name(stop.lsn).await?;
    session.close().await;

    // backup_label and tablespace_map come from pg_backup_stop, not from the data directory.
    let mut extra: Vec<(String, Vec<u8>)> =
        vec![("backup_label".into(), stop.label_file.clone().into_bytes())];
    if let Some(map) = &stop.tablespace_map {
        extra.push(("tablespace_map".into(), map.clone().into_bytes()));
    }
    let segment_size = u64::from(control.wal_segment_size);
    if opts.archive_check || opts.archive_copy {
        let needed = segments_between(&wal_start, &wal_stop, segment_size)?;
        progress.message(&format!(
            "backup {label}: waiting for {} WAL segment(s) {wal_start}..{wal_stop} to reach the archive",
            needed.len()
        ));
        let found = wait_for_archive(repo, &needed, opts.archive_timeout).await?;
        if opts.archive_copy {
            for wal in found {
                let name = wal.path.rsplit('/').next().unwrap_or_default();
                let segment = name.get(..24).unwrap_or(name).to_string();
                let data = archive::read(repo, &wal).await?;
                extra.push((format!("pg_wal/{segment}"), data));
            }
        }
    }
    let stamp = now();
    for (name, data) in extra {
        let object = format!("{backup_dir}/pg_data/{name}{ext}");
        let stored_size = pipeline::store_bytes(repo.storage(), &object, &codec, &data).await?;
        files.push(FileEntry {
            target: "pg_data".into(),
            name,
            size: data.len() as u64,
            mtime: stamp,
            mode: 0o600,
            checksum: blake3::hash(&data).to_hex().to_string(),
            reference: None,
            stored_size,
            bundle: None,
            block_map: None,
            page_errors: Vec::new(),
        });
    }
    files.sort_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
    paths.sort_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
    let size_original: u64 = files.iter().map(|f| f.size).sum();
    let size_stored: u64 = files.iter().map(|f| f.stored_size).sum();
    let page_errors: u64 = files.iter().map(|f| f.page_errors.len() as u64).sum();
    let manifest = Manifest {
        backup: BackupMeta {
            label: label.clone(),
            backup_type: BackupType::Full,
            prior: None,
            references: Vec::new(),
            timestamp_start,
            timestamp_stop: now(),
            lsn_start: lsn_start.to_string(),
            lsn_stop: stop.lsn.to_string(),
            wal_start: wal_start.clone(),
            wal_stop: wal_stop.clone(),
            timeline,
            pg_version: db.pg_version,
            system_id: db.system_id,
            db_id: db.db_id,
            checksums_enabled: checksums,
            compress_type: opts.compress.compress_type.to_string(),
            compress_level: opts.compress.level,
            cipher_type: repo.cipher().to_string(),
            archive_copy: opts.archive_copy,
            backup_label: stop.label_file,
            tablespace_map: stop.tablespace_map,
            size_original,
            size_stored,
            pgbr_version: env!("CARGO_PKG_VERSION").to_string(),
            wal_segment_size: segment_size,
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
    repo.save_manifest(&label, &manifest).await?;
    let summary = BackupSummary::from_manifest(&manifest);
    repo.backup_info.backups.push(summary);
    repo.save_backup_info().await?;
    progress.message(&format!(
        "backup {label}: done in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(BackupReport {
        label,
        file_count: manifest.files.len() as u64,
        size_original,
        size_stored,
        lsn_start: manifest.backup.lsn_start,
        lsn_stop: manifest.backup.lsn_stop,
        wal_start,
        wal_stop,
        page_errors,
        removed_incomplete,
    })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn mode_of(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .map_err(|e| Error::io("unable to stat", path, e))
}

fn walk(root: &Path, is_pg_data: bool) -> Result<Vec<Entry>> {
    let entries = if is_pg_data {
        posix::walk(root, &|rel: &str, kind: &EntryKind| {
            exclude::skip_in_pg_data(rel, kind)
        })?
    } else {
        posix::walk(root, &|rel: &str, _: &EntryKind| {
            exclude::skip_anywhere(rel)
        })?
    };
    Ok(exclude::drop_unlogged(entries))
}

#[allow(clippy::too_many_arguments)]
fn collect(
    target: &str,
    root: &Path,
    entries: Vec<Entry>,
    checksums: bool,
    start: Lsn,
    paths: &mut Vec<PathEntry>,
    links: &mut Vec<LinkEntry>,
    jobs: &mut Vec<Job>,
) {
    for e in entries {
        collect_one(target, root, e, checksums, start, paths, links, jobs);
    }
}

#[allow(clippy::too_many_arguments)]
fn collect_one(
    target: &str,
    root: &Path,
    e: Entry,
    checksums: bool,
    start: Lsn,
    paths: &mut Vec<PathEntry>,
    links: &mut Vec<LinkEntry>,
    jobs: &mut Vec<Job>,
) {
    match e.kind {
        EntryKind::Dir => paths.push(PathEntry {
            target: target.into(),
            name: e.rel_path,
            mode: e.mode,
        }),
        EntryKind::Symlink { target: dest } => links.push(LinkEntry {
            target: target.into(),
            name: e.rel_path,
            destination: dest.display().to_string(),
        }),
        EntryKind::File { size } => {
            let pages = (checksums
                && exclude::is_checksummed_relation(target == "pg_data", &e.rel_path))
            .then(|| {
                let name = e.rel_path.rsplit('/').next().unwrap_or_default();
                let segment = exclude::relation_parts(name)
                    .and_then(|(_, _, s)| s.parse().ok())
                    .unwrap_or(0);
                PageCheckSpec {
                    segment,
                    start_lsn: start.0,
                }
            });
            jobs.push(Job {
                target: target.into(),
                source: root.join(&e.rel_path),
                name: e.rel_path,
                size,
                mtime: e.mtime,
                mode: e.mode,
                pages,
            })
        }
    }
}

/// Every segment name from `first` to `last` inclusive (same timeline).
fn segments_between(first: &str, last: &str, segment_size: u64) -> Result<Vec<String>> {
    let parse = |n: &str| {
        Segment::parse(n, segment_size).map_err(|source| Error::Wal {
            context: format!("WAL file name {n}"),
            source,
        })
    };
    let (a, b) = (parse(first)?, parse(last)?);
    let mut out = vec![a.name()];
    let mut s = a;
    while s < b && out.len() < 1_000_000 {
        s = s.next();
        out.push(s.name());
    }
    Ok(out)
}

/// Waits until every segment in `needed` is in the archive, or the timeout passes.
async fn wait_for_archive(
    repo: &Repository,
    needed: &[String],
    timeout: Duration,
) -> Result<Vec<archive::ArchivedWal>> {
    let deadline = Instant::now() + timeout;
    let mut found = Vec::with_capacity(needed.len());
    for name in needed {
        loop {
            if let Some(w) = archive::find(repo, name).await? {
                found.push(w);
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::ArchiveTimeout(format!(
                    "WAL segment {name} did not reach {} within archive-timeout ({:.0}s): check that archive_command is 'pgbr --stanza={} archive-push %p' and look at the PostgreSQL log for archiver errors",
                    repo.name(),
                    timeout.as_secs_f64(),
                    repo.stanza()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(found)
}

/// Brings backup.info in line with the backup directories: a directory without a committed
/// manifest is an interrupted backup and is removed; a committed backup missing from backup.info
/// (a crash between the two writes) is added back.
pub(crate) async fn reconcile(repo: &mut Repository) -> Result<Vec<String>> {
    let prefix = format!("backup/{}/", repo.stanza());
    let (dirs, _) = repo.storage().list_dir(&prefix).await?;
    let mut removed = Vec::new();
    let mut changed = false;
    for dir in dirs {
        let label = dir
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        if pgbr_manifest::parse_label(&label).is_err() {
            continue;
        }
        if repo.backup_info().backup(&label).is_some() {
            continue;
        }
        match repo.load_manifest(&label).await {
            Ok(m) => {
                repo.backup_info
                    .backups
                    .push(BackupSummary::from_manifest(&m));
                changed = true;
            }
            Err(Error::BackupMissing(_)) => {
                repo.storage()
                    .delete_prefix(&format!("{}/", repo.backup_path(&label)))
                    .await?;
                removed.push(label);
            }
            Err(e) => return Err(e),
        }
    }
    if changed {
        repo.backup_info
            .backups
            .sort_by(|a, b| a.label.cmp(&b.label));
        repo.save_backup_info().await?;
    }
    Ok(removed)
}
