//! What a worker does with one unit of [`Work`]: store a file whole, as blocks (only those
//! changed since the prior backup, delta-coded where a base is known), pack a bundle, or check
//! what an interrupted attempt stored and keep it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pgbr_manifest::{BlockMapRef, Checksum, CompactString, FileEntry};

use super::planner::{Job, Work};
use crate::error::{Error, Result};
use crate::layout;
use crate::pipeline::{self, Codec};

/// What every backup worker shares: where and how this backup stores its files.
pub(super) struct Storer {
    pub storage: pgbr_storage::Storage,
    /// `backup/<stanza>`: the directories of earlier backups (holding delta bases) are in it.
    pub stanza_dir: String,
    /// This backup's directory, `backup/<stanza>/<label>`.
    pub dir: String,
    /// Extension of the objects of files stored whole.
    pub ext: &'static str,
    pub codec: Codec,
    /// `--delta`: a file whose checksum is the prior backup's copy's is referenced, not stored.
    pub delta: bool,
    /// Codecs of the earlier backups whose blocks can be delta bases.
    pub base_codecs: BTreeMap<String, Codec>,
    pub handle: tokio::runtime::Handle,
    /// Which of the `process-max` workers are busy: with one idle, a file may use two cores.
    pub busy: pipeline::Busy,
    /// Block maps keep each block's chaining value (the cluster summarizes its WAL).
    pub record_chain: bool,
    /// Bytes read from the cluster's files so far.
    pub read: Arc<AtomicU64>,
}

/// The manifest entry of `job`, stored by this backup.
fn entry(
    job: &Job,
    size: u64,
    checksum: Checksum,
    stored_size: u64,
    page_errors: Vec<u32>,
) -> FileEntry {
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
}

impl Storer {
    /// Runs one unit of work on a worker thread; returns the manifest entries it produced.
    pub fn store(&self, work: Work) -> Result<Vec<FileEntry>> {
        match work {
            Work::Reuse { job, entry } => {
                if self.stored_intact(&entry) {
                    let mut e = *entry;
                    e.mode = job.mode;
                    return Ok(vec![e]);
                }
                self.store_again(job)
            }
            Work::ReuseBundle { id, files } => self.reuse_bundle(id, files),
            Work::Whole(job) => self.store_whole(job),
            Work::Blocks(job) => self.store_blocks(job),
            Work::Bundle { id, jobs } => self.store_bundle(id, jobs),
        }
    }

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
            self.store_blocks(job)
        } else {
            self.store_whole(job)
        }
    }

    /// Keeps the files an interrupted attempt put in its bundle `id` that read back intact, from
    /// one read of the bundle, and stores the others again.
    fn reuse_bundle(
        &self,
        id: u64,
        mut files: Vec<(Job, Box<FileEntry>)>,
    ) -> Result<Vec<FileEntry>> {
        let Storer {
            storage,
            dir,
            codec,
            handle,
            ..
        } = self;
        files.sort_by_key(|(_, e)| e.bundle.as_ref().map_or(0, |b| b.offset));
        let places: Vec<_> = files
            .iter()
            .map(|(_, e)| e.bundle.as_ref().map_or((0, 0), |b| (b.offset, b.length)))
            .collect();
        let object = layout::bundle(dir, id);
        let mut intact = vec![false; files.len()];
        // A bundle that cannot be read (or whose pieces overlap) leaves the files not yet
        // checked to be stored again.
        let _ = pipeline::read_bundle_pieces(storage, &object, &places, handle, &mut |i, piece| {
            let (_, e) = &files[i];
            intact[i] =
                pipeline::open_piece(codec, &object, places[i].0, piece).is_ok_and(|plain| {
                    plain.len() as u64 == e.size
                        && pgbr_manifest::Checksum::of(&plain) == e.checksum
                });
            Ok(())
        });
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

    /// Stores a file as one object (or, with `--delta`, references the prior backup's copy when
    /// the checksums agree).
    fn store_whole(&self, job: Job) -> Result<Vec<FileEntry>> {
        self.read.fetch_add(job.size, Ordering::Relaxed);
        if self.delta {
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
        let object = layout::whole(&self.dir, &job.target, &job.name, self.ext);
        let stored = pipeline::store_file(
            &job.source(),
            &self.storage,
            pipeline::Publish::At(&object),
            &self.codec,
            job.pages,
            &self.handle,
        )?;
        Ok(stored
            .map(|s| entry(&job, s.size, s.checksum, s.stored_size, s.page_errors))
            .into_iter()
            .collect())
    }

    /// Stores the blocks of a file changed since the prior backup (all of them without one).
    fn store_blocks(&self, job: Job) -> Result<Vec<FileEntry>> {
        let Storer {
            storage,
            stanza_dir,
            dir,
            codec,
            base_codecs,
            handle,
            ..
        } = self;
        let object = layout::blocks(dir, &job.target, &job.name);
        let object_of = |label: Option<&str>| match label {
            Some(label) => layout::blocks(
                &layout::label_dir(stanza_dir, label),
                &job.target,
                &job.name,
            ),
            None => object.clone(),
        };
        let codec_of = |label: Option<&str>| {
            label
                .and_then(|l| base_codecs.get(l))
                .cloned()
                .ok_or_else(|| Error::Internal(format!("no codec known for backup {label:?}")))
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
                size: p.size,
                bases: bases_known.then_some(reader),
            })
        });
        let chain = match (&job.changes, self.record_chain) {
            (Some(changes), _) => pipeline::Chain::Skip(changes),
            (None, true) => pipeline::Chain::Record,
            (None, false) => pipeline::Chain::Off,
        };
        let stored = pipeline::store_blocks(
            &job.source(),
            storage,
            &object,
            codec,
            job.pages,
            prior,
            chain,
            &|| self.busy.spare_core(),
            handle,
        )?;
        Ok(stored
            .map(|s| {
                self.read.fetch_add(s.read, Ordering::Relaxed);
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

    /// Packs small files into bundle `id`.
    fn store_bundle(&self, id: u64, jobs: Vec<Job>) -> Result<Vec<FileEntry>> {
        let object = layout::bundle(&self.dir, id);
        let sizes: u64 = jobs.iter().map(|j| j.size).sum();
        self.read.fetch_add(sizes, Ordering::Relaxed);
        let sources: Vec<_> = jobs.iter().map(|j| (j.source(), j.pages)).collect();
        let stored = pipeline::store_bundle(
            &sources,
            &self.storage,
            &object,
            id,
            &self.codec,
            &self.handle,
        )?;
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
