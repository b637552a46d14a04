//! `verify`: read every object of a stanza's repository and check it against what covers it.
//!
//! - `backup.info`, `archive.info` and each `.copy`: each copy on its own (envelope, format,
//!   self-checksum, content), and that both info files describe the same clusters.
//! - Every backup directory: each manifest copy on its own (decryption, then the manifest's
//!   self-checksum and rules); every file the manifest lists, read from the backup that holds it,
//!   decrypted (for AES-256-GCM, authenticated), decompressed, and compared with the manifest's size
//!   and BLAKE3 checksum.
//! - Every archived WAL file against the checksum in its name, and WAL continuity per archive id
//!   and timeline from the oldest backup's start to the newest segment.
//!
//! Objects are read on `process-max` workers. Problems are collected, not raised: the report names
//! each bad object, and [`VerifyReport::ok`] says whether there was any. Verify takes no lock; run
//! it when no `expire` runs, or an object removed under it shows up as missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;

use serde::Serialize;

use pgbr_crypto::{CipherType, DecryptReader};
use pgbr_manifest::{ArchiveInfo, BackupInfo, BackupSummary, BlockRef, Checksum, Manifest};
use pgbr_storage::{CompressType, DecompressReader, Storage};
use pgbr_wal::{LongPageHeader, Segment, WalFileName};

use crate::archive::parse_stored_name;
use crate::config::VerifyOptions;
use crate::error::Result;
use crate::progress::Progress;
use crate::repo::{archive_info_path, backup_info_path, Repository, COPY_SUFFIX, MANIFEST_FILE};

/// One bad (or noteworthy) object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object (repository path), or for a WAL gap the first missing segment's name.
    pub object: String,
    /// What is wrong.
    pub message: String,
}

/// What `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The stanza.
    pub stanza: String,
    /// The repository.
    pub repo: String,
    /// `true` when no problem was found.
    pub ok: bool,
    /// Info files and copies read.
    pub info_files_checked: u64,
    /// Backups whose manifest was read.
    pub backups_checked: u64,
    /// Backup files read and checked.
    pub files_checked: u64,
    /// Archived WAL files read and checked.
    pub wal_checked: u64,
    /// Stored bytes read.
    pub bytes_read: u64,
    /// Everything wrong; each names its object.
    pub errors: Vec<Problem>,
    /// Not wrong, but worth knowing (an interrupted backup, a backup missing from backup.info).
    pub notes: Vec<Problem>,
}

impl VerifyReport {
    fn error(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem {
            object: object.into(),
            message: message.into(),
        });
    }
    fn note(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.notes.push(Problem {
            object: object.into(),
            message: message.into(),
        });
    }
}

/// One object to read on a worker.
/// Stored blocks of one file checked by one job at most: 64 MiB of 64 KiB blocks. A table's
/// 1 GiB segment would otherwise keep one worker busy long after the others are done.
const PART_BLOCKS: usize = 1024;

enum Job {
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
struct BundledFile {
    /// `<target>/<name>`, for messages.
    path: String,
    offset: u64,
    length: u64,
    size: u64,
    checksum: Checksum,
}

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

/// Counts stored bytes read.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Reads `object`, decrypts, decompresses; returns (plain size, BLAKE3 hex, first bytes, stored
/// bytes read) or a message.
fn decode(
    storage: &Storage,
    object: &str,
    cipher: CipherType,
    key: Option<&pgbr_crypto::DataKey>,
    compress: CompressType,
    handle: &tokio::runtime::Handle,
) -> std::result::Result<(u64, String, Vec<u8>, u64), String> {
    let raw = storage
        .blocking_reader(object, handle.clone())
        .map_err(|e| format!("cannot be read: {e}"))?;
    let mut counting = Counting {
        inner: raw,
        count: 0,
    };
    let what = match cipher {
        CipherType::None => "decompressed",
        CipherType::Aes256Gcm => "decrypted and authenticated",
        _ => "decrypted",
    };
    let mut hasher = blake3::Hasher::new();
    let mut head = Vec::new();
    let mut size = 0u64;
    {
        let dec = DecryptReader::new(cipher, key, &mut counting)
            .map_err(|e| format!("cannot be {what}: {e}"))?;
        let mut plain =
            DecompressReader::new(compress, dec).map_err(|e| format!("cannot be {what}: {e}"))?;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = match plain.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("cannot be {what}: {e}")),
            };
            if head.len() < 8192 {
                let take = (8192 - head.len()).min(n);
                head.extend_from_slice(&buf[..take]);
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
    }
    Ok((
        size,
        hasher.finalize().to_hex().to_string(),
        head,
        counting.count,
    ))
}

/// Reads bundle `object` in one pass and checks each of `files` (sorted by offset) against the
/// manifest. When the bundle cannot be read on, the files not reached carry the reason.
fn check_bundle(
    storage: &Storage,
    object: &str,
    codec: &crate::pipeline::Codec,
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
    let read = crate::pipeline::read_bundle_pieces(
        storage,
        object,
        &places,
        handle,
        &mut |i, piece| {
            reached = i + 1;
            let f = &files[i];
            result.stored += f.length;
            match crate::pipeline::open_piece(codec, object, f.offset, piece) {
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
        },
    );
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
    key: Option<&pgbr_crypto::DataKey>,
    handle: &tokio::runtime::Handle,
) -> JobResult {
    match job {
        Job::File {
            object,
            compress,
            size,
            checksum,
        } => match decode(storage, &object, cipher, key, compress, handle) {
            Err(message) => JobResult::one(object, false, 0, Some(message)),
            Ok((actual_size, actual, _, stored)) => {
                let problem = (actual_size != size || actual != checksum).then(|| {
                    format!(
                        "does not match the manifest: size {actual_size}, expected {size}; checksum {actual}, expected {checksum}"
                    )
                });
                JobResult::one(object, false, stored, problem)
            }
        },
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
                crate::backup::layout::blocks(&format!("{stanza_dir}/{backup}"), &target, &name)
            };
            let codec_of = |reference: Option<&str>| {
                let backup = reference.unwrap_or(&label);
                let compress_type = compress.get(backup).copied().ok_or_else(|| {
                    crate::error::Error::Internal(format!("no codec known for backup {backup}"))
                })?;
                Ok(crate::pipeline::Codec {
                    workers: 0,
                    compress_type,
                    level: 0,
                    cipher,
                    key: key.cloned(),
                })
            };
            let checked = crate::pipeline::check_blocks(
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
            let codec = crate::pipeline::Codec {
                workers: 0,
                compress_type: compress,
                level: 0,
                cipher,
                key: key.cloned(),
            };
            check_bundle(storage, &object, &codec, &files, handle)
        }
        Job::Wal {
            object,
            compress,
            checksum,
            is_segment,
        } => match decode(storage, &object, cipher, key, compress, handle) {
            Err(message) => JobResult::one(object, true, 0, Some(message)),
            Ok((_, actual, head, stored)) => {
                let problem = (actual != checksum)
                    .then(|| format!("does not match the checksum in its name (found {actual})"));
                let segment_size = if is_segment && problem.is_none() {
                    LongPageHeader::parse(&head).ok().map(|h| h.segment_size)
                } else {
                    None
                };
                JobResult {
                    segment_size,
                    ..JobResult::one(object, true, stored, problem)
                }
            }
        },
    }
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

/// Checks `jobs` on `workers` threads and adds what they found to `findings`.
async fn check_all(
    jobs: Vec<Job>,
    repo: &Repository,
    workers: usize,
    progress: &Arc<dyn Progress>,
    findings: &mut Findings,
) -> Result<()> {
    progress.start(0, jobs.len() as u64);
    let storage = repo.storage().clone();
    let cipher = repo.cipher();
    let key = repo.key().cloned();
    let handle = tokio::runtime::Handle::current();
    let worker_progress = Arc::clone(progress);
    let results = crate::pipeline::run_parallel(jobs, workers, move |job: Job| {
        let r = check_job(job, &storage, cipher, key.as_ref(), &handle);
        worker_progress.file_done(&r.object, r.stored);
        Ok(r)
    })
    .await?;
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

/// Verifies the stanza `repo` holds.
pub async fn run(
    repo: &Repository,
    opts: &VerifyOptions,
    progress: Arc<dyn Progress>,
) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        stanza: repo.stanza().to_string(),
        repo: repo.name(),
        ..Default::default()
    };
    let storage = repo.storage().clone();
    let stanza = repo.stanza().to_string();

    // Info files, each copy on its own.
    let mut backup_infos = Vec::new();
    let mut archive_infos = Vec::new();
    for base in [backup_info_path(&stanza), archive_info_path(&stanza)] {
        for path in [base.clone(), format!("{base}{COPY_SUFFIX}")] {
            report.info_files_checked += 1;
            match storage.get_opt(&path).await? {
                None => report.error(&path, "missing"),
                Some(bytes) => {
                    report.bytes_read += bytes.len() as u64;
                    let parsed = if base.ends_with("backup.info") {
                        BackupInfo::from_bytes(&bytes).map(|b| backup_infos.push(b))
                    } else {
                        ArchiveInfo::from_bytes(&bytes).map(|a| archive_infos.push(a))
                    };
                    if let Err(e) = parsed {
                        report.error(&path, format!("does not verify: {e}"));
                    }
                }
            }
        }
    }
    if backup_infos.len() == 2 && backup_infos[0] != backup_infos[1] {
        report.note(
            backup_info_path(&stanza),
            "differs from its copy (an update was interrupted between the two writes); the next backup or expire rewrites both",
        );
    }
    let (backup_dbs, archive_dbs) = (
        &repo.backup_info().db_history,
        &repo.archive_info().db_history,
    );
    if archive_dbs.len() == backup_dbs.len() + 1 && archive_dbs.starts_with(backup_dbs) {
        report.error(
            backup_info_path(&stanza),
            format!(
                "lacks the database archive.info records last: a stanza-upgrade was interrupted; run 'pgbr --stanza={stanza} stanza-upgrade' to finish it"
            ),
        );
    } else if backup_dbs != archive_dbs || repo.backup_info().cipher != repo.archive_info().cipher {
        report.error(
            backup_info_path(&stanza),
            "backup.info and archive.info describe different clusters or ciphers",
        );
    }

    // Backups: every label listed or present as a directory.
    let listed: BTreeSet<String> = repo
        .backup_info()
        .backups
        .iter()
        .map(|b| b.label.clone())
        .collect();
    let (dirs, _) = storage.list_dir(&format!("backup/{stanza}/")).await?;
    let mut labels: BTreeSet<String> = listed.clone();
    for d in dirs {
        let d = d.trim_end_matches('/').to_string();
        if pgbr_manifest::parse_label(&d).is_ok() {
            labels.insert(d);
        }
    }
    let mut jobs = Vec::new();
    let mut findings = Findings::default();
    // What WAL continuity needs of each backup; its manifest is not kept (with many files,
    // each is tens of MB).
    let mut summaries: Vec<BackupSummary> = Vec::new();
    // How each backup stored its files: a delta-coded block is read with its base's codec.
    let mut compress_of = repo.compress_types();
    // Backups a reference may name: those listed, and those committed but not listed (an
    // interrupted expire or backup leaves them; the next backup or expire lists them again).
    let mut committed: BTreeSet<String> = listed.clone();
    for label in &labels {
        let is_listed = listed.contains(label);
        let dir = repo.backup_path(label);
        let base = format!("{dir}/{MANIFEST_FILE}");
        let mut good: Option<(Manifest, pgbr_manifest::Checksum)> = None;
        let mut present = 0;
        let mut missing = Vec::new();
        // The manifest as first read, and what was wrong with it: a copy byte for byte the same
        // verifies the same way, and is not parsed (and held) a second time.
        let mut first: Option<(bytes::Bytes, Option<String>)> = None;
        for path in [base.clone(), format!("{base}{COPY_SUFFIX}")] {
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
            let parsed = repo
                .open_manifest_with_checksum(&raw, &format!("manifest of backup {label}"))
                .map_err(|e| e.to_string());
            let summary = repo.backup_info().backup(label);
            let problem = match parsed {
                Ok((m, _)) if m.backup.label != *label => Some(format!(
                    "is the manifest of backup {}, not {label}",
                    m.backup.label
                )),
                Ok((m, checksum)) => match summary
                    .map(|s| crate::repo::check_bound(repo.backup_info(), s, &m, &checksum))
                {
                    Some(Err(why)) => Some(format!(
                        "is not the manifest committed as backup {label}: {why}"
                    )),
                    _ => {
                        if good.is_none() {
                            good = Some((m, checksum));
                        }
                        None
                    }
                },
                Err(e) => Some(format!("manifest does not verify: {e}")),
            };
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
            continue;
        }
        for path in missing {
            if is_listed {
                report.error(&path, "missing (the other manifest copy exists)");
            } else {
                report.note(&path, "missing (the other manifest copy exists)");
            }
        }
        let Some((m, manifest_checksum)) = good else {
            report.error(
                &dir,
                format!("backup {label} has no manifest copy that verifies; it cannot be restored"),
            );
            continue;
        };
        if !is_listed {
            report.note(
                &dir,
                format!("backup {label} is committed but not listed in backup.info; the next backup or expire lists it again"),
            );
        }
        report.backups_checked += 1;
        committed.insert(label.clone());
        if crate::codecs::cipher_type(m.backup.cipher_type) != repo.cipher() {
            report.error(
                &base,
                format!(
                    "backup {label} was written with cipher {} but the repository uses {}",
                    m.backup.cipher_type,
                    repo.cipher()
                ),
            );
            continue;
        }
        let compress = crate::codecs::compress_type(m.backup.compress_type);
        compress_of.insert(label.clone(), compress);
        let dir = format!("backup/{stanza}/{label}");
        // This backup's bundled files, by bundle.
        let mut bundles: BTreeMap<u64, Vec<BundledFile>> = BTreeMap::new();
        for f in &m.files {
            // Bytes held by an earlier backup are verified with that backup.
            if let Some(r) = f.reference.as_deref().filter(|r| *r != label.as_str()) {
                if !committed.contains(r) {
                    report.error(
                        format!("{dir}/{}/{}", f.target, f.name),
                        format!("references backup {r}, which is not in the repository"),
                    );
                }
                continue;
            }
            if let Some(map) = &f.block_map {
                let mut compress = BTreeMap::from([(label.clone(), compress)]);
                let mut unknown_base = None;
                for base in map.blocks.iter().filter_map(|b| b.base.as_ref()) {
                    match compress_of.get(base.reference.as_str()) {
                        Some(c) => {
                            compress.insert(base.reference.to_string(), *c);
                        }
                        None => unknown_base = Some(base.reference.clone()),
                    }
                }
                if let Some(r) = unknown_base {
                    report.error(
                        format!("{dir}/{}/{}", f.target, f.name),
                        format!("a block is coded against a block of backup {r}, which is not in the repository"),
                    );
                    continue;
                }
                for r in map.blocks.iter().filter_map(|b| b.reference.as_deref()) {
                    if !committed.contains(r) {
                        report.error(
                            format!("{dir}/{}/{}", f.target, f.name),
                            format!(
                                "a block references backup {r}, which is not in the repository"
                            ),
                        );
                        break;
                    }
                }
                // Blocks held by earlier backups are verified with those. A big file's are
                // checked in parts, so that all workers share it.
                let (numbers, blocks) = crate::pipeline::own_blocks(map);
                let mut numbers = numbers.into_iter();
                let mut blocks = blocks.into_iter().peekable();
                let mut counts_file = true;
                while blocks.peek().is_some() {
                    jobs.push(Job::Blocks {
                        stanza_dir: format!("backup/{stanza}"),
                        label: label.clone(),
                        target: f.target.to_string(),
                        name: f.name.to_string(),
                        block_size: u64::from(map.block_size),
                        blocks: blocks.by_ref().take(PART_BLOCKS).collect(),
                        numbers: numbers.by_ref().take(PART_BLOCKS).collect(),
                        compress: compress.clone(),
                        counts_file,
                    });
                    counts_file = false;
                }
                continue;
            }
            if let Some(b) = &f.bundle {
                bundles.entry(b.id).or_default().push(BundledFile {
                    path: format!("{}/{}", f.target, f.name),
                    offset: b.offset,
                    length: b.length,
                    size: f.size,
                    checksum: f.checksum,
                });
                continue;
            }
            if f.size == 0 && f.stored_size == 0 {
                continue;
            }
            jobs.push(Job::File {
                object: crate::backup::layout::whole(
                    &dir,
                    &f.target,
                    &f.name,
                    compress.extension(),
                ),
                compress,
                size: f.size,
                checksum: f.checksum.to_string(),
            });
        }
        for (id, mut files) in bundles {
            files.sort_by_key(|b| b.offset);
            jobs.push(Job::Bundle {
                object: crate::backup::layout::bundle(&dir, id),
                compress,
                files,
            });
        }
        summaries.push(BackupSummary::from_manifest(&m, manifest_checksum));
        drop(m);
        // Backup by backup: only one backup's jobs are held at a time.
        check_all(
            std::mem::take(&mut jobs),
            repo,
            opts.process_max,
            &progress,
            &mut findings,
        )
        .await?;
    }

    // The archive.
    let mut segments: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for db in &repo.archive_info().db_history {
        let archive_id = ArchiveInfo::archive_id(db);
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for o in storage
            .list(&format!("archive/{stanza}/{archive_id}/"))
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

    check_all(jobs, repo, opts.process_max, &progress, &mut findings).await?;
    report.files_checked += findings.files;
    report.wal_checked += findings.wal;
    report.bytes_read += findings.bytes;
    let (sizes, mut bad) = (findings.sizes, findings.bad);
    bad.sort_by(|a, b| a.object.cmp(&b.object));
    report.errors.extend(bad);

    // WAL continuity, per archive id and timeline: every retained backup's own start..stop, and
    // everything from the start of the oldest backup kept for point-in-time recovery (the same
    // boundary expire uses, from the retention options) to the newest segment.
    let segment_size = sizes
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(s, _)| u64::from(*s))
        .unwrap_or(16 * 1024 * 1024);
    let boundary = crate::expire::archive_boundary(&summaries, &opts.retention).cloned();
    let seg = |name: &str| Segment::parse(name, segment_size).ok();
    for db in &repo.archive_info().db_history {
        let archive_id = ArchiveInfo::archive_id(db);
        let names = segments.remove(&archive_id).unwrap_or_default();
        let mut have: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
        for n in &names {
            if let Some(s) = seg(n) {
                have.entry(s.timeline).or_default().insert(s.number);
            }
        }
        let mut missing: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
        let mut need = |tli: u32, from: u64, to: u64, have: &BTreeMap<u32, BTreeSet<u64>>| {
            let present = have.get(&tli);
            for n in from..=to {
                if !present.is_some_and(|p| p.contains(&n)) {
                    missing.entry(tli).or_default().insert(n);
                }
            }
        };
        let here: Vec<&BackupSummary> = summaries.iter().filter(|b| b.db_id == db.db_id).collect();
        for b in &here {
            if let (Some(a), Some(z)) = (seg(&b.wal_start), seg(&b.wal_stop)) {
                if a.timeline == z.timeline && z.number >= a.number {
                    need(a.timeline, a.number, z.number, &have);
                }
            }
        }
        // Where continuity starts in this archive id (None: only the backups' own ranges).
        let from: Option<u64> = match &boundary {
            None => Some(0),
            Some(bd) if db.db_id > bd.db_id => Some(0),
            Some(bd) if db.db_id == bd.db_id => seg(&bd.wal_start).map(|s| s.number),
            Some(_) => None,
        };
        if let Some(from) = from {
            let timelines: BTreeSet<u32> = have.keys().copied().collect();
            for tli in timelines {
                let present = &have[&tli];
                let starts: Vec<u64> = here
                    .iter()
                    .filter_map(|b| seg(&b.wal_start))
                    .filter(|s| s.timeline == tli)
                    .map(|s| s.number)
                    .collect();
                let first = starts
                    .iter()
                    .copied()
                    .min()
                    .or_else(|| present.first().copied())
                    .unwrap_or(0);
                let start = first.max(from);
                let end = present.last().copied().unwrap_or(0);
                if end >= start {
                    need(tli, start, end, &have);
                }
            }
        }
        for (tli, nums) in missing {
            let nums: Vec<u64> = nums.into_iter().collect();
            let mut i = 0;
            while i < nums.len() {
                let mut j = i;
                while j + 1 < nums.len() && nums[j + 1] == nums[j] + 1 {
                    j += 1;
                }
                let name = |num: u64| {
                    Segment {
                        timeline: tli,
                        number: num,
                        size: segment_size,
                    }
                    .name()
                };
                let message = if i == j {
                    format!(
                        "WAL gap in archive {archive_id} timeline {tli}: segment {} is missing",
                        name(nums[i])
                    )
                } else {
                    format!(
                        "WAL gap in archive {archive_id} timeline {tli}: segments {}..{} ({} files) are missing",
                        name(nums[i]),
                        name(nums[j]),
                        j - i + 1
                    )
                };
                report.error(name(nums[i]), message);
                i = j + 1;
            }
        }
    }
    report.ok = report.errors.is_empty();
    Ok(report)
}
