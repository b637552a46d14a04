//! The objects verify reads, as jobs for the workers: each read through the pipeline's decode
//! chain and checked against what covers it (the manifest, or the checksum in a WAL file's name).

use std::collections::BTreeMap;
use std::sync::Arc;

use pgbr_crypto::{CipherType, DataKey};
use pgbr_manifest::{BlockRef, Checksum};
use pgbr_storage::{CompressType, Storage};
use pgbr_wal::LongPageHeader;

use super::report::{Problem, VerifyReport};
use crate::error::Result;
use crate::pipeline::{self, Codec, DecodeError, Decoded};
use crate::progress::Progress;
use crate::repo::Repository;

/// Stored blocks of one file checked by one job at most: 64 MiB of 64 KiB blocks. A table's
/// 1 GiB segment would otherwise keep one worker busy long after the others are done.
pub(super) const PART_BLOCKS: usize = 1024;

/// One object to read on a worker.
pub(super) enum Job {
    /// A backup file: expect `size` bytes with BLAKE3 `checksum` after decoding.
    File {
        object: String,
        compress: CompressType,
        size: u64,
        checksum: String,
    },
    /// The blocks one backup stored of a block-mapped file (or a part of them, see
    /// [`PART_BLOCKS`]): each must open (a delta-coded one against its base) and match its hash.
    /// Read a window of blocks at a time, a few ranged reads each.
    Blocks {
        /// `backup/<stanza>`.
        stanza_dir: String,
        /// The backup that stored the blocks.
        label: String,
        target: String,
        name: String,
        block_size: u64,
        /// The blocks, in file order, and their numbers in the file.
        blocks: Vec<BlockRef>,
        numbers: Vec<usize>,
        /// How `label` stored its bytes, and each backup holding a delta base.
        compress: BTreeMap<String, CompressType>,
        /// Whether this job counts the file among those checked (its first part).
        counts_file: bool,
    },
    /// The files one bundle holds, by offset: read in one pass, each must open and match the
    /// manifest's size and checksum.
    Bundle {
        object: String,
        compress: CompressType,
        files: Vec<BundledFile>,
    },
    /// An archived WAL file: expect the checksum in its name.
    Wal {
        object: String,
        compress: CompressType,
        checksum: String,
        is_segment: bool,
    },
}

/// A file packed in a bundle.
pub(super) struct BundledFile {
    /// `<target>/<name>`, for messages.
    pub(super) path: String,
    pub(super) offset: u64,
    pub(super) length: u64,
    pub(super) size: u64,
    pub(super) checksum: Checksum,
}

/// What checking one job found.
struct JobResult {
    object: String,
    is_wal: bool,
    /// Files checked: one, or a bundle's.
    files: u64,
    stored: u64,
    /// What is wrong with `object` (a bundle: with which of its files).
    problems: Vec<String>,
    segment_size: Option<u32>,
}

impl JobResult {
    /// The result of checking one object (`is_wal`: an archived WAL file), `stored` bytes read.
    fn one(object: String, is_wal: bool, stored: u64, problem: Option<String>) -> JobResult {
        JobResult {
            object,
            is_wal,
            files: 1,
            stored,
            problems: problem.into_iter().collect(),
            segment_size: None,
        }
    }
}

/// Reads bundle `object` in one pass and checks each of `files` (sorted by offset) against the
/// manifest. When the bundle cannot be read on, the files not reached carry the reason.
fn check_bundle(
    storage: &Storage,
    object: &str,
    codec: &Codec,
    files: &[BundledFile],
    handle: &tokio::runtime::Handle,
) -> JobResult {
    let mut result = JobResult {
        object: object.to_string(),
        is_wal: false,
        files: files.len() as u64,
        stored: 0,
        problems: Vec::new(),
        segment_size: None,
    };
    let places: Vec<(u64, u64)> = files.iter().map(|f| (f.offset, f.length)).collect();
    let mut reached = 0;
    let read = pipeline::read_bundle_pieces(storage, object, &places, handle, &mut |i, piece| {
        reached = i + 1;
        let f = &files[i];
        result.stored += f.length;
        match pipeline::open_piece(codec, object, f.offset, piece) {
            Err(e) => result.problems.push(format!("{}: {e}", f.path)),
            Ok(plain) => {
                let checksum = Checksum::of(&plain);
                if plain.len() as u64 != f.size || checksum != f.checksum {
                    result.problems.push(format!(
                        "bundled file {} (offset {}) does not match the manifest: size {}, expected {}; checksum {checksum}, expected {}",
                        f.path,
                        f.offset,
                        plain.len(),
                        f.size,
                        f.checksum
                    ));
                }
            }
        }
        Ok(())
    });
    if let Err(e) = read {
        // Nothing after this point can be read in order.
        result.problems.extend(
            files[reached..]
                .iter()
                .map(|f| format!("{} (offset {}): {e}", f.path, f.offset)),
        );
    }
    result
}

/// Reads and checks one job's objects.
fn check_job(
    job: Job,
    storage: &Storage,
    cipher: CipherType,
    key: Option<&DataKey>,
    handle: &tokio::runtime::Handle,
) -> JobResult {
    match job {
        Job::File {
            object,
            compress,
            size,
            checksum,
        } => {
            let codec = Codec::for_reading(compress, cipher, key);
            check_file(storage, object, &codec, size, &checksum, handle)
        }
        Job::Blocks {
            stanza_dir,
            label,
            target,
            name,
            block_size,
            blocks,
            numbers,
            compress,
            counts_file,
        } => {
            let object_of = |reference: Option<&str>| {
                let backup = reference.unwrap_or(&label);
                crate::layout::blocks(
                    &crate::layout::label_dir(&stanza_dir, backup),
                    &target,
                    &name,
                )
            };
            let codec_of = |reference: Option<&str>| {
                let backup = reference.unwrap_or(&label);
                let compress_type = compress.get(backup).copied().ok_or_else(|| {
                    crate::error::Error::Internal(format!("no codec known for backup {backup}"))
                })?;
                Ok(Codec::for_reading(compress_type, cipher, key))
            };
            let checked = pipeline::check_blocks(
                storage, &blocks, &numbers, block_size, &object_of, &codec_of, handle,
            );
            JobResult {
                files: u64::from(counts_file),
                ..JobResult::one(
                    object_of(None),
                    false,
                    blocks.iter().map(|b| b.length).sum(),
                    checked.err().map(|e| e.to_string()),
                )
            }
        }
        Job::Bundle {
            object,
            compress,
            files,
        } => {
            let codec = Codec::for_reading(compress, cipher, key);
            check_bundle(storage, &object, &codec, &files, handle)
        }
        Job::Wal {
            object,
            compress,
            checksum,
            is_segment,
        } => {
            let codec = Codec::for_reading(compress, cipher, key);
            check_wal(storage, object, &codec, &checksum, is_segment, handle)
        }
    }
}

/// Checks a backup file stored whole against the manifest's `size` and `checksum`.
fn check_file(
    storage: &Storage,
    object: String,
    codec: &Codec,
    size: u64,
    checksum: &str,
    handle: &tokio::runtime::Handle,
) -> JobResult {
    match decode(storage, &object, codec, handle) {
        Err(message) => JobResult::one(object, false, 0, Some(message)),
        Ok((decoded, _)) => {
            let (actual_size, actual) = (decoded.size, decoded.checksum.to_string());
            let problem = (actual_size != size || actual != checksum).then(|| {
                format!(
                    "does not match the manifest: size {actual_size}, expected {size}; checksum {actual}, expected {checksum}"
                )
            });
            JobResult::one(object, false, decoded.stored, problem)
        }
    }
}

/// Checks an archived WAL file against the `checksum` in its name; of a segment, also reads
/// its segment size from its first page.
fn check_wal(
    storage: &Storage,
    object: String,
    codec: &Codec,
    checksum: &str,
    is_segment: bool,
    handle: &tokio::runtime::Handle,
) -> JobResult {
    match decode(storage, &object, codec, handle) {
        Err(message) => JobResult::one(object, true, 0, Some(message)),
        Ok((decoded, head)) => {
            let actual = decoded.checksum.to_string();
            let problem = (actual != checksum)
                .then(|| format!("does not match the checksum in its name (found {actual})"));
            let segment_size = if is_segment && problem.is_none() {
                LongPageHeader::parse(&head).ok().map(|h| h.segment_size)
            } else {
                None
            };
            JobResult {
                segment_size,
                ..JobResult::one(object, true, decoded.stored, problem)
            }
        }
    }
}

/// Plaintext bytes [`decode`] keeps of an object's start: enough for a WAL segment's first page
/// header.
const HEAD_BYTES: usize = 8192;

/// Reads `object` through the pipeline's decode chain; returns what it decoded and its first
/// [`HEAD_BYTES`] bytes, or a message.
fn decode(
    storage: &Storage,
    object: &str,
    codec: &Codec,
    handle: &tokio::runtime::Handle,
) -> std::result::Result<(Decoded, Vec<u8>), String> {
    let what = match codec.cipher {
        CipherType::None => "decompressed",
        CipherType::Aes256Gcm => "decrypted and authenticated",
        _ => "decrypted",
    };
    let mut head = Vec::new();
    let mut keep_head = |plain: &[u8]| {
        let take = HEAD_BYTES.saturating_sub(head.len()).min(plain.len());
        head.extend_from_slice(&plain[..take]);
        Ok(())
    };
    let decoded = pipeline::decode_object(storage, object, codec, handle, &mut keep_head).map_err(
        |e| match e {
            DecodeError::Open(e) => format!("cannot be read: {e}"),
            DecodeError::Decode(e) => format!("cannot be {what}: {e}"),
            DecodeError::Sink(e) => e.to_string(),
        },
    )?;
    Ok((decoded, head))
}

/// Counts and problems of the jobs checked so far.
#[derive(Default)]
struct Findings {
    files: u64,
    wal: u64,
    bytes: u64,
    /// Segments seen per WAL segment size.
    sizes: BTreeMap<u32, u64>,
    bad: Vec<Problem>,
}

/// Checks jobs on the workers and gathers what they find, phase after phase.
pub(super) struct Checker<'a> {
    repo: &'a Repository,
    workers: usize,
    progress: Arc<dyn Progress>,
    findings: Findings,
}

impl<'a> Checker<'a> {
    /// Checks the objects of `repo` on `workers` threads, reporting to `progress`.
    pub(super) fn new(repo: &'a Repository, workers: usize, progress: Arc<dyn Progress>) -> Self {
        Checker {
            repo,
            workers,
            progress,
            findings: Findings::default(),
        }
    }

    /// The repository checked.
    pub(super) fn repo(&self) -> &'a Repository {
        self.repo
    }

    /// Checks `jobs` on the workers and adds what they found to the findings.
    pub(super) async fn check(&mut self, jobs: Vec<Job>) -> Result<()> {
        self.progress.start(0, jobs.len() as u64);
        let storage = self.repo.storage().clone();
        let cipher = self.repo.cipher();
        let key = self.repo.key().cloned();
        let handle = tokio::runtime::Handle::current();
        let worker_progress = Arc::clone(&self.progress);
        let results = pipeline::run_parallel(jobs, self.workers, move |job: Job| {
            let r = check_job(job, &storage, cipher, key.as_ref(), &handle);
            worker_progress.file_done(&r.object, r.stored);
            Ok(r)
        })
        .await?;
        let findings = &mut self.findings;
        for r in results {
            if r.is_wal {
                findings.wal += r.files;
            } else {
                findings.files += r.files;
            }
            findings.bytes += r.stored;
            if let Some(size) = r.segment_size {
                *findings.sizes.entry(size).or_default() += 1;
            }
            for message in r.problems {
                findings.bad.push(Problem {
                    object: r.object.clone(),
                    message,
                });
            }
        }
        Ok(())
    }

    /// Adds the counts and problems found to `report` (the problems by object); hands back the
    /// segments seen per WAL segment size.
    pub(super) fn add_to(self, report: &mut VerifyReport) -> BTreeMap<u32, u64> {
        let findings = self.findings;
        report.files_checked += findings.files;
        report.wal_checked += findings.wal;
        report.bytes_read += findings.bytes;
        let mut bad = findings.bad;
        bad.sort_by(|a, b| a.object.cmp(&b.object));
        report.errors.extend(bad);
        findings.sizes
    }
}
