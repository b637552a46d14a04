//! Every backup: its manifest copies, then every file its manifest lists, read from the backup
//! that holds it and checked against the manifest.

use std::collections::{BTreeMap, BTreeSet};

use pgbr_manifest::{BackupSummary, BlockMapRef, FileEntry, Manifest};
use pgbr_storage::CompressType;

use super::jobs::{BundledFile, Checker, Job, PART_BLOCKS};
use super::manifests;
use super::report::VerifyReport;
use crate::error::Result;
use crate::layout;
use crate::repo::Repository;

/// What the backups checked so far tell about those after them.
struct Known {
    /// How each backup stored its files: a delta-coded block is read with its base's codec.
    compress_of: BTreeMap<String, CompressType>,
    /// Backups a reference may name: those listed, and those committed but not listed (an
    /// interrupted expire or backup leaves them; the next backup or expire lists them again).
    committed: BTreeSet<String>,
}

/// Checks every backup listed in backup.info or present as a directory, backup by backup (only
/// one backup's jobs are held at a time). Returns what WAL continuity needs of each backup; its
/// manifest is not kept (with many files, each is tens of MB).
pub(super) async fn check(
    checker: &mut Checker<'_>,
    report: &mut VerifyReport,
) -> Result<Vec<BackupSummary>> {
    let repo = checker.repo();
    let stanza = repo.stanza().to_string();
    let listed: BTreeSet<String> = repo
        .backup_info()
        .backups
        .iter()
        .map(|b| b.label.clone())
        .collect();
    let (dirs, _) = repo
        .storage()
        .list_dir(&layout::under(&layout::stanza_backup_dir(&stanza)))
        .await?;
    let mut labels: BTreeSet<String> = listed.clone();
    for d in dirs {
        let d = d.trim_end_matches('/').to_string();
        if pgbr_manifest::parse_label(&d).is_ok() {
            labels.insert(d);
        }
    }
    let mut summaries: Vec<BackupSummary> = Vec::new();
    let mut known = Known {
        compress_of: repo.compress_types(),
        committed: listed.clone(),
    };
    for label in &labels {
        let is_listed = listed.contains(label);
        let Some((m, manifest_checksum)) = manifests::read(repo, label, is_listed, report).await?
        else {
            continue;
        };
        report.backups_checked += 1;
        known.committed.insert(label.clone());
        let Some(compress) = codec_of(repo, &m, report) else {
            continue;
        };
        known.compress_of.insert(label.clone(), compress);
        let jobs = file_jobs(&m, &stanza, compress, &known, report);
        summaries.push(BackupSummary::from_manifest(&m, manifest_checksum));
        drop(m);
        checker.check(jobs).await?;
    }
    Ok(summaries)
}

/// How backup `m` compressed its files, when its files can be read with the repository's cipher.
fn codec_of(repo: &Repository, m: &Manifest, report: &mut VerifyReport) -> Option<CompressType> {
    let label = &m.backup.label;
    let base = layout::manifest(&repo.backup_path(label));
    if crate::codecs::cipher_type(m.backup.cipher_type) != repo.cipher() {
        report.error(
            &base,
            format!(
                "backup {label} was written with cipher {} but the repository uses {}",
                m.backup.cipher_type,
                repo.cipher()
            ),
        );
        return None;
    }
    Some(crate::codecs::compress_type(m.backup.compress_type))
}

/// The jobs that check the files backup `m` stored itself (bytes held by an earlier backup are
/// checked with that backup), its bundled files a bundle per job.
fn file_jobs(
    m: &Manifest,
    stanza: &str,
    compress: CompressType,
    known: &Known,
    report: &mut VerifyReport,
) -> Vec<Job> {
    let label = m.backup.label.to_string();
    let dir = layout::backup_dir(stanza, &label);
    let mut jobs = Vec::new();
    // This backup's bundled files, by bundle.
    let mut bundles: BTreeMap<u64, Vec<BundledFile>> = BTreeMap::new();
    for f in &m.files {
        if let Some(r) = f.reference.as_deref().filter(|r| *r != label.as_str()) {
            if !known.committed.contains(r) {
                report.error(
                    format!("{dir}/{}/{}", f.target, f.name),
                    format!("references backup {r}, which is not in the repository"),
                );
            }
            continue;
        }
        if let Some(map) = &f.block_map {
            jobs.extend(block_jobs(f, map, stanza, &label, compress, known, report));
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
            object: layout::whole(&dir, &f.target, &f.name, compress.extension()),
            compress,
            size: f.size,
            checksum: f.checksum.to_string(),
        });
    }
    for (id, mut files) in bundles {
        files.sort_by_key(|b| b.offset);
        jobs.push(Job::Bundle {
            object: layout::bundle(&dir, id),
            compress,
            files,
        });
    }
    jobs
}

/// The jobs that check the blocks backup `label` stored of the block-mapped file `f` (blocks
/// held by earlier backups are checked with those). A big file's are checked in parts, so that
/// all workers share it. None when a block is coded against a backup that is not in the
/// repository.
fn block_jobs(
    f: &FileEntry,
    map: &BlockMapRef,
    stanza: &str,
    label: &str,
    compress: CompressType,
    known: &Known,
    report: &mut VerifyReport,
) -> Vec<Job> {
    // Named as reports name a stored file: without its storage suffix.
    let path = layout::whole(&layout::backup_dir(stanza, label), &f.target, &f.name, "");
    let mut compress = BTreeMap::from([(label.to_string(), compress)]);
    let mut unknown_base = None;
    for base in map.blocks.iter().filter_map(|b| b.base.as_ref()) {
        match known.compress_of.get(base.reference.as_str()) {
            Some(c) => {
                compress.insert(base.reference.to_string(), *c);
            }
            None => unknown_base = Some(base.reference.clone()),
        }
    }
    if let Some(r) = unknown_base {
        report.error(
            &path,
            format!(
                "a block is coded against a block of backup {r}, which is not in the repository"
            ),
        );
        return Vec::new();
    }
    for r in map.blocks.iter().filter_map(|b| b.reference.as_deref()) {
        if !known.committed.contains(r) {
            report.error(
                &path,
                format!("a block references backup {r}, which is not in the repository"),
            );
            break;
        }
    }
    let (numbers, blocks) = crate::pipeline::own_blocks(map);
    let mut numbers = numbers.into_iter();
    let mut blocks = blocks.into_iter().peekable();
    let mut counts_file = true;
    let mut jobs = Vec::new();
    while blocks.peek().is_some() {
        jobs.push(Job::Blocks {
            stanza_dir: layout::stanza_backup_dir(stanza),
            label: label.to_string(),
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
    jobs
}
