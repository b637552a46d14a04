//! `backup`: a full copy of a running cluster, coordinated with `pg_backup_start`/`pg_backup_stop`
//! on one session, its files streamed to the repository by `process-max` workers (largest first),
//! the WAL it needs checked in the archive, and the manifest written last to commit it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgbr_manifest::{
    new_label, BackupMeta, BackupSummary, BackupType, BlockMapRef, CompactString, FileEntry,
    FileIndex, LinkEntry, Manifest, PathEntry, Target,
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
    /// The type taken (a diff or incr without a prior becomes full).
    pub backup_type: BackupType,
    /// Why the type differs from the one asked for, if it does.
    pub type_changed: Option<String>,
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
    /// When this backup resumed an interrupted one: how many of its stored files were reused.
    pub resumed_files: Option<u64>,
}

/// One file to copy.
struct Job {
    /// Shared by the target's jobs, like `root`.
    target: Arc<str>,
    name: CompactString,
    /// The directory `name` is under: shared by the target's jobs, not a path per file (with
    /// many files, those paths were a tenth of a backup's memory).
    root: Arc<Path>,
    size: u64,
    mtime: i64,
    mode: u32,
    pages: Option<PageCheckSpec>,
    /// The same file in the prior backup, references resolved (incremental backups). Boxed:
    /// most jobs have none, and a cluster of many files holds every job at once.
    prior: Option<Box<FileEntry>>,
}

impl Job {
    /// Where the file is read from.
    fn source(&self) -> PathBuf {
        self.root.join(&self.name)
    }
}

/// What a worker does.
enum Work {
    /// Store a file whole (one object).
    Whole(Job),
    /// Store a file as blocks.
    Blocks(Job),
    /// Pack small files into one bundle object.
    Bundle { id: u64, jobs: Vec<Job> },
    /// Check what an interrupted attempt stored; store the file again if it does not verify.
    Reuse { job: Job, entry: Box<FileEntry> },
    /// The same for the files an interrupted attempt put in its bundle `id`, checked together
    /// from one read of the bundle.
    ReuseBundle {
        id: u64,
        files: Vec<(Job, Box<FileEntry>)>,
    },
}

impl Work {
    fn size(&self) -> u64 {
        match self {
            Work::Whole(j) | Work::Blocks(j) | Work::Reuse { job: j, .. } => j.size,
            Work::Bundle { jobs, .. } => jobs.iter().map(|j| j.size).sum(),
            Work::ReuseBundle { files, .. } => files.iter().map(|(j, _)| j.size).sum(),
        }
    }
}

/// Decides per file: reference it, store it whole, as blocks, or in a bundle.
struct Planner<'a> {
    /// The prior backup's manifest (diff/incr). An unchanged file's entry is the prior manifest's
    /// own, turned into a reference where it lies (`kept` marks it): with many files, a copy of
    /// each was the peak of an incremental. Files are looked up through its index: a file new
    /// since the prior backup is not in it, and must not cost a scan of its every file.
    prior: Option<(Manifest, FileIndex)>,
    kept: Vec<bool>,
    /// The interrupted attempt this backup resumes, and its index.
    resumed: Option<(&'a Manifest, FileIndex)>,
    /// `--delta`: trust checksums, not size and time.
    delta: bool,
    /// Files smaller than this go into bundles (`None`: no bundles).
    bundle_limit: Option<u64>,
    /// Backup from a standby: the primary's data directory, where the files at the top of the
    /// data directory (configuration, which is not replicated) are read.
    primary_root: Option<Arc<Path>>,
    work: Vec<Work>,
    bundled: Vec<Job>,
    /// Files of the resumed attempt's bundles to check, by bundle id.
    reused_bundles: BTreeMap<u64, Vec<(Job, Box<FileEntry>)>>,
}

impl Planner<'_> {
    fn add(&mut self, mut job: Job) {
        if let Some(root) = &self.primary_root {
            if &*job.target == "pg_data" && !job.name.contains('/') {
                if let Ok(meta) = std::fs::metadata(root.join(&job.name)) {
                    use std::os::unix::fs::MetadataExt;
                    job.root = Arc::clone(root);
                    job.size = meta.len();
                    job.mtime = meta.mtime();
                }
            }
        }
        if let Some((m, index)) = &mut self.prior {
            if let Some(i) = index.position(m, &job.target, &job.name) {
                let (p, p_label) = (&mut m.files[i], m.backup.label.as_str());
                // A file changed in the same second the prior backup started could keep its
                // size and time: only older files are trusted by size and time.
                if !self.delta
                    && p.size == job.size
                    && p.mtime == job.mtime
                    && job.mtime < m.backup.timestamp_start
                {
                    carry(p, p_label);
                    p.mode = job.mode;
                    self.kept[i] = true;
                    return;
                }
                job.prior = Some(Box::new(carried(p, p_label)));
            }
        }
        // Stored by the interrupted attempt this one resumes, and unchanged since before it began.
        if let Some((r, index)) = &self.resumed {
            if let Some(e) = index
                .position(r, &job.target, &job.name)
                .map(|i| &r.files[i])
            {
                if e.reference.is_none()
                    && e.size == job.size
                    && e.mtime == job.mtime
                    && job.mtime < r.backup.timestamp_start
                {
                    let entry = Box::new(e.clone());
                    match &e.bundle {
                        Some(b) => self
                            .reused_bundles
                            .entry(b.id)
                            .or_default()
                            .push((job, entry)),
                        None => self.work.push(Work::Reuse { job, entry }),
                    }
                    return;
                }
            }
        }
        let prior_blocks = job
            .prior
            .as_ref()
            .and_then(|p| p.block_map.as_ref())
            .is_some_and(|b| b.block_size as usize == pipeline::BLOCK_SIZE);
        if job.size >= pipeline::BLOCK_THRESHOLD || prior_blocks {
            self.work.push(Work::Blocks(job));
        } else if self.bundle_limit.is_some_and(|limit| job.size < limit) {
            self.bundled.push(job);
        } else {
            self.work.push(Work::Whole(job));
        }
    }

    /// The entries of unchanged files (references to the prior backup), the work, and the files
    /// to bundle.
    fn finish(mut self) -> (Vec<FileEntry>, Vec<Work>, Vec<Job>) {
        self.work.extend(
            std::mem::take(&mut self.reused_bundles)
                .into_iter()
                .map(|(id, files)| Work::ReuseBundle { id, files }),
        );
        let files = match self.prior {
            Some((m, _)) => {
                let mut files = m.files;
                let mut kept = self.kept.into_iter();
                files.retain(|_| kept.next().unwrap_or(false));
                files
            }
            None => Vec::new(),
        };
        (files, self.work, self.bundled)
    }
}

/// Shortest time between two records of an unfinished backup's progress (see `save_inprogress`).
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(2);

/// Object names inside a backup directory (shared with restore and verify).
pub(crate) mod layout {
    /// A file stored whole.
    pub fn whole(backup_dir: &str, target: &str, name: &str, ext: &str) -> String {
        format!("{backup_dir}/{target}/{name}{ext}")
    }
    /// A block-mapped file's blocks stored by one backup.
    pub fn blocks(backup_dir: &str, target: &str, name: &str) -> String {
        format!("{backup_dir}/{target}/{name}.blk")
    }
    /// A bundle of small files.
    pub fn bundle(backup_dir: &str, id: u64) -> String {
        format!("{backup_dir}/bundle/{id}")
    }
}

/// `entry` of backup `label`, as a later backup references it: every reference made explicit.
fn carried(entry: &FileEntry, label: &str) -> FileEntry {
    let mut e = entry.clone();
    carry(&mut e, label);
    e
}

/// Makes `entry`, of backup `label`'s manifest, name that backup where it held the bytes itself.
fn carry(entry: &mut FileEntry, label: &str) {
    if entry.reference.is_none() {
        entry.reference = Some(label.into());
    }
    if let Some(map) = &mut entry.block_map {
        for b in &mut map.blocks {
            if b.reference.is_none() {
                b.reference = Some(label.into());
            }
        }
    }
}

/// The summary a `backup_type` backup of database `db_id` builds on: the last full (diff) or the
/// last backup (incr). Last means last committed: backup.info keeps commit order, while stop
/// times have a resolution of a second, in which two backups can end.
fn prior_of(
    backups: &[BackupSummary],
    backup_type: BackupType,
    db_id: u32,
) -> Option<&BackupSummary> {
    backups.iter().rfind(|b| {
        b.db_id == db_id && (backup_type == BackupType::Incr || b.backup_type == BackupType::Full)
    })
}

/// The backup an incremental builds on: the last full (diff) or the last backup (incr) of the
/// current cluster, with its manifest. `None` when there is none: the backup becomes full.
async fn choose_prior(
    repo: &Repository,
    backup_type: BackupType,
    db: &pgbr_manifest::DbHistory,
) -> Result<Option<Manifest>> {
    if backup_type == BackupType::Full {
        return Ok(None);
    }
    let Some(candidate) = prior_of(&repo.backup_info().backups, backup_type, db.db_id) else {
        return Ok(None);
    };
    let manifest = repo.load_manifest(&candidate.label).await?;
    if manifest.backup.system_id != db.system_id || manifest.backup.pg_version != db.pg_version {
        return Ok(None);
    }
    Ok(Some(manifest))
}

/// The interrupted backup this one can resume: same type and prior, with an in-progress manifest
/// that verifies. The newest, if several.
async fn find_resumable(
    repo: &Repository,
    backup_type: BackupType,
    prior: Option<&str>,
) -> Result<Option<Manifest>> {
    let prefix = format!("backup/{}/", repo.stanza());
    let (dirs, _) = repo.storage().list_dir(&prefix).await?;
    let mut best: Option<Manifest> = None;
    for dir in dirs {
        let label = dir
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        if pgbr_manifest::parse_label(label).is_err() || repo.backup_info().backup(label).is_some()
        {
            continue;
        }
        if repo
            .storage()
            .exists(&format!("{}/{MANIFEST_FILE}", repo.backup_path(label)))
            .await?
        {
            continue;
        }
        let Some(m) = repo.load_inprogress(label).await? else {
            continue;
        };
        if m.backup.backup_type == backup_type
            && m.backup.prior.as_deref() == prior
            && best
                .as_ref()
                .is_none_or(|b| b.backup.label < m.backup.label)
        {
            best = Some(m);
        }
    }
    Ok(best)
}

/// Labels referenced by `files` (whole files and blocks), sorted.
fn references_of(files: &[FileEntry]) -> Vec<String> {
    let mut references = std::collections::BTreeSet::new();
    for f in files {
        references.extend(f.reference.as_deref());
        for b in f.block_map.iter().flat_map(|m| &m.blocks) {
            references.extend(b.reference.as_deref());
            references.extend(b.base.as_ref().map(|base| base.reference.as_str()));
        }
    }
    references.into_iter().map(str::to_string).collect()
}

/// Takes a backup of the cluster `pg` describes into `repo`.
///
/// A diff or incr backup with no usable prior backup of this cluster becomes a full backup
/// ([`BackupReport::type_changed`] says so). Files unchanged since the prior backup (same size
/// and modification time, or same checksum with `delta`) are referenced, not copied; in files of
/// 1 MiB or more only changed 64 KiB blocks are stored.
///
/// Takes the stanza's lock and its claim in the repository ([`crate::claim`]) unless `repo`
/// holds them; a claim taken here is released when the backup ends, committed or failed.
pub async fn run(
    repo: &mut Repository,
    pg: &PgOptions,
    opts: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupReport> {
    repo.lock(&opts.lock_path)?;
    let took = repo.claim("backup").await?;
    let result = run_claimed(repo, pg, opts, progress).await;
    crate::claim::release_if(repo, took, result).await
}

/// [`run`], the stanza claimed.
async fn run_claimed(
    repo: &mut Repository,
    pg: &PgOptions,
    opts: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupReport> {
    crate::stanza::check_upgrade_finished(repo)?;
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
    // Committed backups missing from backup.info are listed again first: one may be the prior.
    reconcile_with(repo, false, None).await?;
    let prior = choose_prior(repo, opts.backup_type, &db).await?;
    let backup_type = if prior.is_some() {
        opts.backup_type
    } else {
        BackupType::Full
    };
    let type_changed = (backup_type != opts.backup_type).then(|| {
        format!(
            "no prior backup of this cluster exists: the {} backup has been changed to full",
            opts.backup_type
        )
    });
    if let Some(m) = &type_changed {
        progress.message(m);
    }
    let prior_label = prior.as_ref().map(|m| m.backup.label.clone());
    let resumed = find_resumable(repo, backup_type, prior_label.as_deref()).await?;
    let removed_incomplete = reconcile_with(
        repo,
        true,
        resumed.as_ref().map(|m| m.backup.label.as_str()),
    )
    .await?;
    let started = Instant::now();
    let mut timestamp_start = now();
    let mut label = match &resumed {
        Some(m) => m.backup.label.clone(),
        None => new_label(backup_type, prior_label.as_deref(), timestamp_start),
    };
    while resumed.is_none() && repo.backup_info().backup(&label).is_some()
        || repo
            .storage()
            .exists(&format!("{}/{MANIFEST_FILE}", repo.backup_path(&label)))
            .await?
        || prior_label.as_deref() == Some(label.as_str())
    {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        timestamp_start = now();
        label = new_label(backup_type, prior_label.as_deref(), timestamp_start);
    }
    if let Some(c) = &repo.claim {
        c.set_label(&label).await?;
    }
    crate::failpoints::crash_point!("backup::after-label");
    if let Some(m) = &resumed {
        progress.message(&format!(
            "resuming interrupted backup {label}: {} stored file(s) will be verified and reused where unchanged",
            m.files.len()
        ));
        // What the killed attempt was writing when it died; nobody else writes here (the stanza
        // is claimed) and this backup's workers have not started.
        let dir = format!("{}/", repo.backup_path(&label));
        let partial = repo.storage().remove_abandoned_below(&dir).await?;
        if partial > 0 {
            progress.message(&format!(
                "resuming interrupted backup {label}: removed {partial} partly written object(s) the interrupted attempt left"
            ));
        }
    }
    progress.message(&format!(
        "backup {label} ({backup_type}{}): starting (pg_backup_start)",
        prior_label
            .as_deref()
            .map(|p| format!(" on {p}"))
            .unwrap_or_default()
    ));
    let (lsn_start, wal_start, timeline) = session.backup_start(&label, opts.start_fast).await?;
    let tablespaces = session.tablespaces().await?;
    // From a standby: the primary started the backup; copy once the standby has replayed past its
    // start.
    let source = match &opts.standby {
        None => pg.clone(),
        Some(standby) => {
            let (sb, sb_ident, _) = crate::pg::connect_checked(standby).await?;
            if sb_ident.system_id != db.system_id {
                return Err(Error::ClusterMismatch(format!(
                    "the standby in {} ({}) is database system {}, not the primary's {}",
                    standby.path.display(),
                    standby.option("path"),
                    sb_ident.system_id,
                    db.system_id
                )));
            }
            progress.message(&format!(
                "backup {label}: waiting for the standby to replay to {lsn_start}"
            ));
            sb.wait_replay(lsn_start, opts.archive_timeout).await?;
            sb.close().await;
            standby.clone()
        }
    };

    let checksums = control.checksums_enabled();
    let mut targets = vec![Target {
        name: "pg_data".into(),
        path: pg.path.display().to_string(),
        tablespace_oid: None,
        tablespace_name: None,
    }];
    let mut paths = Vec::new();
    let mut links = Vec::new();
    // Each file is decided on as the walk finds it: no list of every file beside the prior
    // manifest (with many files, that list was a fifth of an incremental's memory).
    let mut planner = Planner {
        kept: vec![false; prior.as_ref().map_or(0, |m| m.files.len())],
        prior: prior.map(|m| {
            let index = m.file_index();
            (m, index)
        }),
        resumed: resumed.as_ref().map(|m| (m, m.file_index())),
        delta: opts.delta,
        bundle_limit: opts.bundle.map(|b| b.limit),
        // Configuration at the top of the data directory is not replicated: from a standby,
        // take the primary's.
        primary_root: (source.path != pg.path).then(|| Arc::from(pg.path.as_path())),
        work: Vec::new(),
        bundled: Vec::new(),
        reused_bundles: BTreeMap::new(),
    };
    let pg_entries = walk(&source.path, true)?;
    let pg_root: Arc<Path> = Arc::from(source.path.as_path());
    let pg_data: Arc<str> = Arc::from("pg_data");
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
                    &Arc::from(name.as_str()),
                    &Arc::from(target.as_path()),
                    walk(target, false)?,
                    checksums,
                    lsn_start,
                    &mut paths,
                    &mut links,
                    &mut planner,
                );
                continue;
            }
        }
        collect_one(
            &pg_data,
            &pg_root,
            e,
            checksums,
            lsn_start,
            &mut paths,
            &mut links,
            &mut planner,
        );
    }
    paths.push(PathEntry {
        target: "pg_data".into(),
        name: String::new(),
        mode: mode_of(&source.path)?,
    });
    for t in targets.iter().skip(1) {
        paths.push(PathEntry {
            target: t.name.clone(),
            name: String::new(),
            mode: mode_of(Path::new(&t.path))?,
        });
    }

    let (mut files, mut work, mut bundled) = planner.finish();
    if let Some(b) = opts.bundle {
        bundled.sort_by(|x, y| (&x.target, &x.name).cmp(&(&y.target, &y.name)));
        // Bundles of a resumed attempt stay where they are: new ones take fresh ids.
        let mut id = resumed
            .iter()
            .flat_map(|m| {
                m.files
                    .iter()
                    .filter_map(|f| f.bundle.as_ref().map(|b| b.id))
            })
            .max()
            .unwrap_or(0);
        let mut current: Vec<Job> = Vec::new();
        let mut current_size = 0u64;
        for job in bundled {
            current_size += job.size;
            current.push(job);
            if current_size >= b.size {
                id += 1;
                work.push(Work::Bundle {
                    id,
                    jobs: std::mem::take(&mut current),
                });
                current_size = 0;
            }
        }
        if !current.is_empty() {
            work.push(Work::Bundle {
                id: id + 1,
                jobs: current,
            });
        }
    }
    work.sort_by_key(|w| std::cmp::Reverse(w.size()));
    let total: u64 = work.iter().map(Work::size).sum();
    progress.start(total, work.len() as u64);

    let codec = Codec {
        workers: 0,
        compress_type: opts.compress.compress_type,
        level: opts.compress.level,
        cipher: repo.cipher(),
        key: repo.key().cloned(),
    };
    let backup_dir = repo.backup_path(&label);
    let ext = opts.compress.compress_type.extension();
    let handle = tokio::runtime::Handle::current();
    let storage = repo.storage().clone();
    // What is stored so far is written down every few seconds, so an interrupted backup can be
    // resumed by the next one.
    let done: Arc<std::sync::Mutex<Vec<FileEntry>>> = Arc::default();
    let skeleton = Manifest {
        backup: BackupMeta {
            label: label.clone(),
            backup_type,
            prior: prior_label.clone(),
            references: Vec::new(),
            timestamp_start,
            lsn_start: lsn_start.to_string(),
            wal_start: wal_start.clone(),
            timeline,
            pg_version: db.pg_version,
            system_id: db.system_id,
            db_id: db.db_id,
            checksums_enabled: checksums,
            compress_type: crate::codecs::compression(opts.compress.compress_type),
            compress_level: opts.compress.level,
            cipher_type: crate::codecs::cipher(repo.cipher()),
            pgbr_version: env!("CARGO_PKG_VERSION").to_string(),
            wal_segment_size: u64::from(control.wal_segment_size),
            ..BackupMeta::default()
        },
        targets: targets.clone(),
        paths: paths.clone(),
        links: links.clone(),
        files: Vec::new(),
    };
    repo.save_inprogress(&label, &skeleton).await?;
    crate::failpoints::crash_point!("backup::after-inprogress");
    let (stop_snapshots, mut snapshots_stopped) = tokio::sync::oneshot::channel::<()>();
    let snapshots = {
        let done = Arc::clone(&done);
        let repo = repo.task_handle();
        let label = label.clone();
        // Failpoint: the snapshot loses the entries lent to it, as a bug here would.
        let lose_lent_entries = crate::failpoints::triggered("backup::lose-snapshot-entries");
        tokio::spawn(async move {
            let mut m = skeleton;
            let mut pause = SNAPSHOT_INTERVAL;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = &mut snapshots_stopped => return,
                }
                // The entries are lent to the snapshot, not copied: with many files a copy was
                // the backup's peak memory. Workers meanwhile add to an empty list.
                m.files = match done.lock() {
                    Ok(mut d) => std::mem::take(&mut *d),
                    Err(_) => return,
                };
                m.backup.references = references_of(&m.files);
                let started = std::time::Instant::now();
                let saved = repo.save_inprogress(&label, &m).await;
                if lose_lent_entries {
                    m.files.clear();
                }
                if let Ok(mut d) = done.lock() {
                    let newer = std::mem::replace(&mut *d, std::mem::take(&mut m.files));
                    d.extend(newer);
                }
                if let Err(e) = saved {
                    tracing::warn!("unable to record backup progress: {e}");
                }
                // Recording progress takes at most about a twentieth of the backup's time.
                pause = SNAPSHOT_INTERVAL.max(started.elapsed() * 20);
            }
        })
    };
    // Codecs of the earlier backups whose blocks can be delta bases, from backup.info.
    let base_codecs: BTreeMap<String, Codec> = repo
        .compress_types()
        .into_iter()
        .map(|(label, compress_type)| {
            let codec = Codec {
                compress_type,
                ..codec.clone()
            };
            (label, codec)
        })
        .collect();
    let worker_progress = Arc::clone(&progress);
    let storer = Storer {
        storage,
        stanza_dir: format!("backup/{}", repo.stanza()),
        dir: backup_dir.clone(),
        ext,
        codec: codec.clone(),
        delta: opts.delta,
        base_codecs,
        handle,
        busy: pipeline::Busy::new(opts.process_max),
    };
    let worker_done = Arc::clone(&done);
    let copied = pipeline::run_parallel(work, opts.process_max, move |w: Work| {
        crate::failpoints::crash_point!("backup::copy-file");
        let out = storer.busy.run(|| storer.store(w))?;
        for e in &out {
            worker_progress.file_done(&e.name, e.size);
        }
        // What this backup stored goes to the progress record, which also hands it back at
        // the end: one copy of each entry, not two (with many files, the copy was the peak).
        // Entries of earlier backups are returned here: a resume cannot reuse them.
        let (stored, referenced): (Vec<_>, Vec<_>) =
            out.into_iter().partition(|e| e.reference.is_none());
        let count = stored.len();
        match worker_done.lock() {
            Ok(mut d) => d.extend(stored),
            Err(_) => return Err(Error::Internal("backup progress record poisoned".into())),
        }
        Ok((count, referenced))
    })
    .await;
    // Stopped between two snapshots, so the lent entries are back in `done`.
    let _ = stop_snapshots.send(());
    let snapshots_ended = snapshots.await;
    // The progress record is now the only list of what this backup stored: a manifest is
    // written from it only when it holds every entry the workers handed it.
    let outcome = copied.and_then(|results| {
        snapshots_ended
            .map_err(|e| Error::Internal(format!("the backup progress task failed: {e}")))?;
        let stored = match done.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => return Err(Error::Internal("backup progress record poisoned".into())),
        };
        let expected: usize = results.iter().map(|(count, _)| count).sum();
        if stored.len() != expected {
            return Err(Error::Internal(format!(
                "the entries of {} of the {expected} files stored were lost; the backup is not committed",
                expected.abs_diff(stored.len())
            )));
        }
        Ok((stored, results))
    });
    let (stored, results) = match outcome {
        Ok(checked) => checked,
        Err(e) => {
            session.close().await;
            return Err(e);
        }
    };
    let reused = resumed.as_ref().map(|r| files_reused(r, &stored));
    // The longer list takes the other in: no second buffer as long as both.
    let mut others = if stored.len() > files.len() {
        std::mem::replace(&mut files, stored)
    } else {
        stored
    };
    files.append(&mut others);
    files.extend(results.into_iter().flat_map(|(_, referenced)| referenced));
    crate::failpoints::crash_point!("backup::after-files");
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
        let object = layout::whole(&backup_dir, "pg_data", &name, ext);
        let stored_size = pipeline::store_bytes(repo.storage(), &object, &codec, &data).await?;
        files.push(FileEntry {
            target: "pg_data".into(),
            name: name.into(),
            size: data.len() as u64,
            mtime: stamp,
            mode: 0o600,
            checksum: pgbr_manifest::Checksum::of(&data),
            reference: None,
            stored_size,
            bundle: None,
            block_map: None,
            page_errors: Vec::new(),
        });
    }
    // Names are unique: an unstable sort is the same order, without a scratch buffer half the
    // list's size.
    files.sort_unstable_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
    paths.sort_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
    let references = references_of(&files);
    let size_original: u64 = files.iter().map(|f| f.size).sum();
    // What this backup stored itself (referenced bytes belong to earlier backups).
    let size_stored: u64 = files
        .iter()
        .filter(|f| f.reference.is_none())
        .map(|f| f.stored_size)
        .sum();
    let page_errors: u64 = files
        .iter()
        .filter(|f| f.reference.is_none())
        .map(|f| f.page_errors.len() as u64)
        .sum();
    let manifest = Manifest {
        backup: BackupMeta {
            label: label.clone(),
            backup_type,
            prior: prior_label,
            references,
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
            compress_type: crate::codecs::compression(opts.compress.compress_type),
            compress_level: opts.compress.level,
            cipher_type: crate::codecs::cipher(repo.cipher()),
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
    crate::failpoints::crash_point!("backup::before-commit");
    // A backup whose claim another command took over (it could not renew it) must not commit.
    if let Some(c) = &repo.claim {
        c.check().await?;
    }
    let (_, manifest_checksum) = repo.save_manifest(&label, &manifest).await?;
    crate::failpoints::crash_point!("backup::after-commit");
    // Committed: the in-progress record is no longer needed.
    repo.storage()
        .delete(&format!("{backup_dir}/{}", crate::repo::INPROGRESS_FILE))
        .await?;
    let summary = BackupSummary::from_manifest(&manifest, manifest_checksum);
    repo.backup_info.backups.push(summary);
    repo.save_backup_info().await?;
    crate::failpoints::crash_point!("backup::after-backup-info");
    progress.message(&format!(
        "backup {label}: done in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(BackupReport {
        label,
        backup_type,
        type_changed,
        file_count: manifest.files.len() as u64,
        size_original,
        size_stored,
        lsn_start: manifest.backup.lsn_start,
        lsn_stop: manifest.backup.lsn_stop,
        wal_start,
        wal_stop,
        page_errors,
        removed_incomplete,
        resumed_files: reused,
    })
}

/// Files of the resumed attempt that this backup kept as they were.
fn files_reused(resumed: &Manifest, done: &[FileEntry]) -> u64 {
    let index = resumed.file_index();
    done.iter()
        .filter(|e| {
            let at = index.position(resumed, &e.target, &e.name);
            at.map(|i| &resumed.files[i]).is_some_and(|r| {
                r.checksum == e.checksum
                    && r.stored_size == e.stored_size
                    && r.bundle == e.bundle
                    && r.block_map == e.block_map
            })
        })
        .count() as u64
}

/// What every backup worker shares: where and how this backup stores its files.
struct Storer {
    storage: pgbr_storage::Storage,
    /// `backup/<stanza>`: the directories of earlier backups (holding delta bases) are in it.
    stanza_dir: String,
    /// This backup's directory, `backup/<stanza>/<label>`.
    dir: String,
    /// Extension of the objects of files stored whole.
    ext: &'static str,
    codec: Codec,
    /// `--delta`: a file whose checksum is the prior backup's copy's is referenced, not stored.
    delta: bool,
    /// Codecs of the earlier backups whose blocks can be delta bases.
    base_codecs: BTreeMap<String, Codec>,
    handle: tokio::runtime::Handle,
    /// Which of the `process-max` workers are busy: with one idle, a file may use two cores.
    busy: pipeline::Busy,
}

impl Storer {
    /// Whether the bytes an interrupted attempt stored for `entry` (in this backup's directory)
    /// read back to what the entry says.
    fn stored_intact(&self, entry: &FileEntry) -> bool {
        let Storer {
            storage,
            dir,
            ext,
            codec,
            handle,
            ..
        } = self;
        if let Some(map) = &entry.block_map {
            let object = layout::blocks(dir, &entry.target, &entry.name);
            // The blocks this attempt stored (a delta-coded one reads back only with its base:
            // such a file is stored again), checked a window at a time.
            let (numbers, own) = pipeline::own_blocks(map);
            return own.iter().all(|b| b.base.is_none())
                && pipeline::check_blocks(
                    storage,
                    &own,
                    &numbers,
                    u64::from(map.block_size),
                    &|_| object.clone(),
                    &|_| Ok(codec.clone()),
                    handle,
                )
                .is_ok();
        }
        if entry.bundle.is_some() {
            // Bundled files are checked a bundle at a time (`Work::ReuseBundle`).
            return false;
        }
        if entry.size == 0 && entry.stored_size == 0 {
            return true;
        }
        let object = layout::whole(dir, &entry.target, &entry.name, ext);
        pipeline::hash_object(storage, &object, codec, handle)
            .is_ok_and(|(size, sum)| size == entry.size && sum == entry.checksum)
    }

    /// Stores a file whose copy from an interrupted attempt did not check out.
    fn store_again(&self, job: Job) -> Result<Vec<FileEntry>> {
        if job.size >= pipeline::BLOCK_THRESHOLD {
            self.store(Work::Blocks(job))
        } else {
            self.store(Work::Whole(job))
        }
    }

    /// Runs one unit of work on a worker thread; returns the manifest entries it produced.
    fn store(&self, work: Work) -> Result<Vec<FileEntry>> {
        let Storer {
            storage,
            stanza_dir,
            dir,
            ext,
            codec,
            delta,
            base_codecs,
            handle,
            ..
        } = self;
        let entry = |job: &Job,
                     size: u64,
                     checksum: pgbr_manifest::Checksum,
                     stored_size: u64,
                     page_errors: Vec<u32>| {
            FileEntry {
                target: CompactString::from(&*job.target),
                name: job.name.clone(),
                size,
                mtime: job.mtime,
                mode: job.mode,
                checksum,
                reference: None,
                stored_size,
                bundle: None,
                block_map: None,
                page_errors,
            }
        };
        match work {
            Work::Reuse { job, entry } => {
                if self.stored_intact(&entry) {
                    let mut e = *entry;
                    e.mode = job.mode;
                    return Ok(vec![e]);
                }
                self.store_again(job)
            }
            Work::ReuseBundle { id, mut files } => {
                files.sort_by_key(|(_, e)| e.bundle.as_ref().map_or(0, |b| b.offset));
                let places: Vec<_> = files
                    .iter()
                    .map(|(_, e)| e.bundle.as_ref().map_or((0, 0), |b| (b.offset, b.length)))
                    .collect();
                let object = layout::bundle(dir, id);
                let mut intact = vec![false; files.len()];
                // A bundle that cannot be read (or whose pieces overlap) leaves the files not
                // yet checked to be stored again.
                let _ = pipeline::read_bundle_pieces(
                    storage,
                    &object,
                    &places,
                    handle,
                    &mut |i, piece| {
                        let (_, e) = &files[i];
                        intact[i] = pipeline::open_piece(codec, &object, places[i].0, piece)
                            .is_ok_and(|plain| {
                                plain.len() as u64 == e.size
                                    && pgbr_manifest::Checksum::of(&plain) == e.checksum
                            });
                        Ok(())
                    },
                );
                let mut out = Vec::with_capacity(files.len());
                for ((job, entry), intact) in files.into_iter().zip(intact) {
                    if intact {
                        let mut e = *entry;
                        e.mode = job.mode;
                        out.push(e);
                    } else {
                        out.extend(self.store_again(job)?);
                    }
                }
                Ok(out)
            }
            Work::Whole(job) => {
                if *delta {
                    // Same checksum as the prior backup's copy: reference it instead of storing.
                    if let Some(p) = &job.prior {
                        if p.size == job.size && p.block_map.is_none() {
                            if let Ok((_, sum)) = pipeline::hash_file(&job.source()) {
                                if sum == p.checksum {
                                    let mut e = (**p).clone();
                                    e.mode = job.mode;
                                    e.mtime = job.mtime;
                                    return Ok(vec![e]);
                                }
                            }
                        }
                    }
                }
                let object = layout::whole(dir, &job.target, &job.name, ext);
                let stored = pipeline::store_file(
                    &job.source(),
                    storage,
                    pipeline::Publish::At(&object),
                    codec,
                    job.pages,
                    handle,
                )?;
                Ok(stored
                    .map(|s| entry(&job, s.size, s.checksum, s.stored_size, s.page_errors))
                    .into_iter()
                    .collect())
            }
            Work::Blocks(job) => {
                let object = layout::blocks(dir, &job.target, &job.name);
                let object_of = |label: Option<&str>| match label {
                    Some(label) => {
                        layout::blocks(&format!("{stanza_dir}/{label}"), &job.target, &job.name)
                    }
                    None => object.clone(),
                };
                let codec_of = |label: Option<&str>| {
                    label
                        .and_then(|l| base_codecs.get(l))
                        .cloned()
                        .ok_or_else(|| {
                            Error::Internal(format!("no codec known for backup {label:?}"))
                        })
                };
                let reader = pipeline::BaseReader {
                    object_of: &object_of,
                    codec_of: &codec_of,
                };
                let prior = job.prior.as_ref().and_then(|p| {
                    let map = p.block_map.as_ref()?;
                    let label = p.reference.as_deref()?;
                    // Deltas only against blocks whose backups' codecs are all known.
                    let known = |l: &str| base_codecs.contains_key(l);
                    let bases_known = known(label)
                        && map.blocks.iter().all(|b| {
                            b.reference.as_deref().is_none_or(known)
                                && b.base.as_ref().is_none_or(|base| known(&base.reference))
                        });
                    (map.block_size as usize == pipeline::BLOCK_SIZE).then_some(pipeline::Prior {
                        blocks: map.blocks.as_slice(),
                        label,
                        bases: bases_known.then_some(reader),
                    })
                });
                let stored = pipeline::store_blocks(
                    &job.source(),
                    storage,
                    &object,
                    codec,
                    job.pages,
                    prior,
                    &|| self.busy.spare_core(),
                    handle,
                )?;
                Ok(stored
                    .map(|s| {
                        let mut e = entry(&job, s.size, s.checksum, s.stored_size, s.page_errors);
                        e.block_map = Some(BlockMapRef {
                            block_size: pipeline::BLOCK_SIZE as u32,
                            blocks: s.blocks,
                        });
                        e
                    })
                    .into_iter()
                    .collect())
            }
            Work::Bundle { id, jobs } => {
                let object = layout::bundle(dir, id);
                let sources: Vec<_> = jobs.iter().map(|j| (j.source(), j.pages)).collect();
                let stored = pipeline::store_bundle(&sources, storage, &object, id, codec, handle)?;
                Ok(jobs
                    .iter()
                    .zip(stored)
                    .filter_map(|(job, b)| {
                        let b = b?;
                        let mut e = entry(
                            job,
                            b.stored.size,
                            b.stored.checksum,
                            b.stored.stored_size,
                            b.stored.page_errors,
                        );
                        e.bundle = b.bundle;
                        Some(e)
                    })
                    .collect())
            }
        }
    }
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
    target: &Arc<str>,
    root: &Arc<Path>,
    entries: Vec<Entry>,
    checksums: bool,
    start: Lsn,
    paths: &mut Vec<PathEntry>,
    links: &mut Vec<LinkEntry>,
    planner: &mut Planner,
) {
    for e in entries {
        collect_one(target, root, e, checksums, start, paths, links, planner);
    }
}

#[allow(clippy::too_many_arguments)]
fn collect_one(
    target: &Arc<str>,
    root: &Arc<Path>,
    e: Entry,
    checksums: bool,
    start: Lsn,
    paths: &mut Vec<PathEntry>,
    links: &mut Vec<LinkEntry>,
    planner: &mut Planner,
) {
    match e.kind {
        EntryKind::Dir => paths.push(PathEntry {
            target: target.to_string(),
            name: e.rel_path,
            mode: e.mode,
        }),
        EntryKind::Symlink { target: dest } => links.push(LinkEntry {
            target: target.to_string(),
            name: e.rel_path,
            destination: dest.display().to_string(),
        }),
        EntryKind::File { size } => {
            let pages = (checksums
                && exclude::is_checksummed_relation(&**target == "pg_data", &e.rel_path))
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
            planner.add(Job {
                target: Arc::clone(target),
                root: Arc::clone(root),
                name: e.rel_path.into(),
                size,
                mtime: e.mtime,
                mode: e.mode,
                pages,
                prior: None,
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
    reconcile_with(repo, true, None).await
}

/// [`reconcile`], optionally leaving interrupted backups alone (`remove_incomplete` false), or
/// all but the one being resumed (`keep`).
async fn reconcile_with(
    repo: &mut Repository,
    remove_incomplete: bool,
    keep: Option<&str>,
) -> Result<Vec<String>> {
    // An incomplete directory may be a live backup's, unless this command holds the claim.
    if !repo.is_claimed() {
        return Err(Error::Internal(format!(
            "backup directories of stanza '{}' reconciled without holding its claim",
            repo.stanza()
        )));
    }
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
        match repo.load_manifest_with_checksum(&label).await {
            Ok((m, checksum)) => {
                repo.finish_commit(&label).await?;
                repo.backup_info
                    .backups
                    .push(BackupSummary::from_manifest(&m, checksum));
                changed = true;
            }
            Err(Error::BackupMissing(_)) if !remove_incomplete || keep == Some(label.as_str()) => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::summary;

    #[test]
    fn the_prior_is_the_last_committed_even_within_one_second() {
        // Committed in this order, the last three in the same second: by label the incr would
        // sort last.
        let full = "20261126-010000F";
        let wal = "000000010000000000000002";
        let backups = vec![
            summary(full, BackupType::Full, None, 100, wal),
            summary(
                "20261126-010000F_20261126-010001I",
                BackupType::Incr,
                Some(full),
                101,
                wal,
            ),
            summary(
                "20261126-010000F_20261126-010001D",
                BackupType::Diff,
                Some(full),
                101,
                wal,
            ),
        ];
        let incr = prior_of(&backups, BackupType::Incr, 1).map(|b| b.label.as_str());
        assert_eq!(incr, Some("20261126-010000F_20261126-010001D"));
        let diff = prior_of(&backups, BackupType::Diff, 1).map(|b| b.label.as_str());
        assert_eq!(diff, Some("20261126-010000F"));
        assert!(prior_of(&backups, BackupType::Incr, 2).is_none());
    }
}
