//! Per file, what the backup does with it: reference the prior backup's copy, check and reuse
//! what an interrupted attempt stored, or store it whole, as blocks, or in a bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgbr_manifest::{CompactString, FileEntry, FileIndex, Manifest};

use super::summaries::WalSummaries;
use crate::config::BackupOptions;
use crate::pipeline::{self, ChangedBlocks, PageCheckSpec};

/// One file to copy.
pub(super) struct Job {
    /// Shared by the target's jobs, like `root`.
    pub target: Arc<str>,
    pub name: CompactString,
    /// The directory `name` is under: shared by the target's jobs, not a path per file, which
    /// in a cluster of many files would be a tenth of the backup's memory.
    pub root: Arc<Path>,
    pub size: u64,
    pub mtime: i64,
    pub mode: u32,
    pub pages: Option<PageCheckSpec>,
    /// The same file in the prior backup, references resolved (incremental backups). Boxed:
    /// most jobs have none, and a cluster of many files holds every job at once.
    pub prior: Option<Box<FileEntry>>,
    /// Of a file stored as blocks: the blocks the WAL summaries say may have changed since the
    /// prior backup (the others are not read).
    pub changes: Option<Box<ChangedBlocks>>,
}

impl Job {
    /// Where the file is read from.
    pub fn source(&self) -> PathBuf {
        self.root.join(&self.name)
    }
}

/// What a worker does.
pub(super) enum Work {
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
    /// The bytes of the cluster's files it reads.
    pub fn size(&self) -> u64 {
        match self {
            Work::Whole(j) | Work::Blocks(j) | Work::Reuse { job: j, .. } => j.size,
            Work::Bundle { jobs, .. } => jobs.iter().map(|j| j.size).sum(),
            Work::ReuseBundle { files, .. } => files.iter().map(|(j, _)| j.size).sum(),
        }
    }
}

/// Decides per file: reference it, store it whole, as blocks, or in a bundle.
pub(super) struct Planner<'a> {
    /// The prior backup's manifest (diff/incr). An unchanged file's entry is the prior manifest's
    /// own, turned into a reference where it lies (`kept` marks it): a copy of each would be the
    /// peak memory of an incremental of many files. Files are looked up through its index: a
    /// file new since the prior backup is not in it, and must not cost a scan of its every file.
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
    /// The WAL summaries an incremental reads by.
    summaries: Option<WalSummaries>,
    work: Vec<Work>,
    bundled: Vec<Job>,
    /// Files of the resumed attempt's bundles to check, by bundle id.
    reused_bundles: BTreeMap<u64, Vec<(Job, Box<FileEntry>)>>,
}

impl<'a> Planner<'a> {
    /// A planner for a backup on `prior`, resuming `resumed` if any, reading by `summaries` if
    /// any. `primary_root`: backing up from a standby, the primary's data directory.
    pub fn new(
        prior: Option<Manifest>,
        resumed: Option<&'a Manifest>,
        summaries: Option<WalSummaries>,
        opts: &BackupOptions,
        primary_root: Option<Arc<Path>>,
    ) -> Self {
        Planner {
            kept: vec![false; prior.as_ref().map_or(0, |m| m.files.len())],
            prior: prior.map(|m| {
                let index = m.file_index();
                (m, index)
            }),
            resumed: resumed.map(|m| (m, m.file_index())),
            delta: opts.delta,
            bundle_limit: opts.bundle.map(|b| b.limit),
            primary_root,
            summaries,
            work: Vec::new(),
            bundled: Vec::new(),
            reused_bundles: BTreeMap::new(),
        }
    }

    /// Decides on one file of the cluster.
    pub fn add(&mut self, mut job: Job) {
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
            if let (true, Some(summaries)) = (prior_blocks, &self.summaries) {
                job.changes = summaries
                    .changed_blocks(&job.target, &job.name, job.size)
                    .map(Box::new);
            }
            self.work.push(Work::Blocks(job));
        } else if self.bundle_limit.is_some_and(|limit| job.size < limit) {
            self.bundled.push(job);
        } else {
            self.work.push(Work::Whole(job));
        }
    }

    /// The entries of unchanged files (references to the prior backup), and the work, largest
    /// first, with small files packed into bundles.
    pub fn finish(self, opts: &BackupOptions) -> (Vec<FileEntry>, Vec<Work>) {
        let resumed = self.resumed.as_ref().map(|(m, _)| *m);
        let (files, mut work, bundled) = self.split();
        if let Some(b) = opts.bundle {
            work.extend(bundles(bundled, b.size, resumed));
        }
        work.sort_by_key(|w| std::cmp::Reverse(w.size()));
        (files, work)
    }

    /// The entries of unchanged files (references to the prior backup), the work, and the files
    /// to bundle.
    fn split(mut self) -> (Vec<FileEntry>, Vec<Work>, Vec<Job>) {
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

/// `bundled` packed into bundles of about `size` bytes.
fn bundles(mut bundled: Vec<Job>, size: u64, resumed: Option<&Manifest>) -> Vec<Work> {
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
    let mut work = Vec::new();
    let mut current: Vec<Job> = Vec::new();
    let mut current_size = 0u64;
    for job in bundled {
        current_size += job.size;
        current.push(job);
        if current_size >= size {
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
    work
}
