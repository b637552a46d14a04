//! `verify` of a repository pgBackRest wrote: each info file and copy (decryption, format, SHA-1
//! self-checksum), each backup's manifest and copy, every file a backup stored (whole, or its
//! piece of a bundle) decrypted, decompressed and compared with the manifest's size and SHA-1,
//! every archived WAL file with the SHA-1 in its name, and WAL continuity as for pgbr's own.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::Arc;

use pgbr_manifest::pgbackrest::{
    BackrestArchiveInfo, BackrestBackupInfo, BackrestCompress, BackrestManifest,
};
use pgbr_manifest::ArchiveInfo;
use pgbr_wal::{LongPageHeader, WalFileName};

use super::archive::Segments;
use super::report::VerifyReport;
use crate::archive::parse_backrest_name;
use crate::config::VerifyOptions;
use crate::error::Result;
use crate::layout;
use crate::pipeline;
use crate::progress::Progress;
use crate::repo::{decode_reader, sha1_copy, stored_at, Repository};

/// One stored object (or piece of one) to read and check.
struct Check {
    /// The object, for the report (`<bundle>@<offset>` for a bundled file).
    name: String,
    object: String,
    range: Option<std::ops::Range<u64>>,
    pass: Option<String>,
    compress: BackrestCompress,
    sha1: Option<[u8; 20]>,
    size: Option<u64>,
    is_segment: bool,
}

/// What reading one object found.
#[derive(Default)]
struct Checked {
    bytes: u64,
    problem: Option<String>,
    segment_size: Option<u32>,
}

/// Verifies the pgBackRest stanza `repo` holds.
pub(super) async fn run(
    repo: &Repository,
    opts: &VerifyOptions,
    progress: Arc<dyn Progress>,
) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        stanza: repo.stanza().to_string(),
        repo: repo.name(),
        ..Default::default()
    };
    info_files(repo, &mut report).await?;
    let mut checks = backups(repo, &mut report).await?;
    let files = checks.len() as u64;
    let segments = archive(repo, &mut checks, &mut report).await?;
    progress.start(0, checks.len() as u64);
    let (storage, handle) = (repo.storage().clone(), tokio::runtime::Handle::current());
    let names: Vec<String> = checks.iter().map(|c| c.name.clone()).collect();
    let worker_progress = Arc::clone(&progress);
    let results = pipeline::run_parallel(checks, opts.process_max, move |c: Check| {
        let checked = read(&storage, &handle, &c);
        worker_progress.file_done(&c.name, 0);
        Ok(checked)
    })
    .await?;
    let mut sizes: BTreeMap<u32, u64> = BTreeMap::new();
    for (i, (name, checked)) in names.into_iter().zip(results).enumerate() {
        report.bytes_read += checked.bytes;
        if (i as u64) < files {
            report.files_checked += 1;
        } else {
            report.wal_checked += 1;
        }
        if let Some(size) = checked.segment_size {
            *sizes.entry(size).or_default() += 1;
        }
        if let Some(problem) = checked.problem {
            report.error(name, problem);
        }
    }
    let summaries = repo.backup_info().backups.clone();
    super::continuity::check(repo, opts, &summaries, segments, &sizes, &mut report);
    report.ok = report.errors.is_empty();
    Ok(report)
}

/// The repository passphrase, when encrypted.
fn repo_pass(repo: &Repository) -> Option<&[u8]> {
    repo.opts.cipher_pass.as_ref().map(|p| p.expose())
}

/// Each info file and copy on its own.
async fn info_files(repo: &Repository, report: &mut VerifyReport) -> Result<()> {
    let stanza = repo.stanza();
    for (info, is_backup) in [
        (layout::backup_info(stanza), true),
        (layout::archive_info(stanza), false),
    ] {
        for path in [info.clone(), layout::copy_of(&info)] {
            report.info_files_checked += 1;
            let Some(raw) = repo.storage().get_opt(&path).await? else {
                report.error(&path, "missing");
                continue;
            };
            let read =
                crate::repo::backrest_decrypt(&raw, repo_pass(repo), &path).and_then(|text| {
                    let parsed = if is_backup {
                        BackrestBackupInfo::parse(&text, stanza).map(|_| ())
                    } else {
                        BackrestArchiveInfo::parse(&text, stanza).map(|_| ())
                    };
                    parsed.map_err(|e| crate::error::Error::Corrupt(e.to_string()))
                });
            if let Err(e) = read {
                report.error(&path, e.to_string());
            }
        }
    }
    Ok(())
}

/// Each backup's manifest and copy; the checks of every file each backup stored itself (a file
/// it references is checked with the backup that stored it).
async fn backups(repo: &Repository, report: &mut VerifyReport) -> Result<Vec<Check>> {
    let keys = repo.backrest().cloned().unwrap_or_default();
    let mut checks = Vec::new();
    for summary in &repo.backup_info().backups {
        let label = &summary.label;
        let dir = repo.backup_path(label);
        let mut loaded: Option<BackrestManifest> = None;
        for path in [
            layout::manifest(&dir),
            layout::copy_of(&layout::manifest(&dir)),
        ] {
            let Some(raw) = repo.storage().get_opt(&path).await? else {
                report.error(&path, "missing");
                continue;
            };
            let pass = keys.backup_pass.as_deref().map(str::as_bytes);
            match crate::repo::backrest_decrypt(&raw, pass, &path).and_then(|text| {
                BackrestManifest::parse(&text)
                    .map_err(|e| crate::error::Error::Corrupt(e.to_string()))
            }) {
                Ok(m) if m.manifest.backup.label == *label => loaded = loaded.or(Some(m)),
                Ok(m) => report.error(
                    &path,
                    format!(
                        "the manifest of backup {}, not {label}",
                        m.manifest.backup.label
                    ),
                ),
                Err(e) => report.error(&path, e.to_string()),
            }
        }
        let Some(m) = loaded else { continue };
        report.backups_checked += 1;
        for (f, own) in m.manifest.files.iter().zip(&m.files) {
            if let Some(r) = &f.reference {
                if repo.backup_info().backup(r).is_none() {
                    report.error(
                        format!("{dir}/{}/{}", f.target, f.name),
                        format!("references backup {r}, which backup.info does not list"),
                    );
                }
                continue;
            }
            let (object, range) = stored_at(&dir, f, m.compress);
            let name = match &range {
                Some(r) => format!("{object}@{} ({}/{})", r.start, f.target, f.name),
                None => object.clone(),
            };
            if f.stored_size == 0 && f.size == 0 {
                continue;
            }
            checks.push(Check {
                name,
                object,
                range,
                pass: m.cipher_pass.clone(),
                compress: m.compress,
                sha1: own.sha1,
                size: Some(f.size),
                is_segment: false,
            });
        }
    }
    Ok(checks)
}

/// The checks of every archived WAL file (`<name>-<sha1><ext>`); returns the segments found.
async fn archive(
    repo: &Repository,
    checks: &mut Vec<Check>,
    report: &mut VerifyReport,
) -> Result<Segments> {
    let pass = repo.backrest().and_then(|k| k.archive_pass.clone());
    let mut segments = Segments::new();
    for db in &repo.archive_info().db_history {
        let archive_id = ArchiveInfo::archive_id(db);
        let prefix = layout::under(&layout::archive_id_dir(repo.stanza(), &archive_id));
        for o in repo.storage().list(&prefix).await? {
            let file = o.path.rsplit('/').next().unwrap_or_default();
            let (wal_name, rest) = file.split_once('-').unwrap_or((file, ""));
            let Some(kind) = pgbr_wal::classify(wal_name) else {
                report.error(
                    &o.path,
                    "not an archived WAL file name (<wal>-<sha1>.<ext>)",
                );
                continue;
            };
            let parsed = parse_backrest_name(file, wal_name).and_then(|(sum, compress)| {
                Some((<[u8; 20]>::try_from(hex::decode(sum).ok()?).ok()?, compress))
            });
            let Some((sha1, compress)) = parsed else {
                // pgBackRest stores history and backup history files under their own names.
                if !matches!(kind, WalFileName::Segment(_) | WalFileName::Partial(_))
                    && rest.is_empty()
                {
                    continue;
                }
                report.error(
                    &o.path,
                    "not an archived WAL file name (<wal>-<sha1>.<ext>)",
                );
                continue;
            };
            let is_segment = matches!(kind, WalFileName::Segment(_));
            if is_segment {
                segments
                    .entry(archive_id.clone())
                    .or_default()
                    .insert(wal_name.to_string());
            }
            checks.push(Check {
                name: o.path.clone(),
                object: o.path.clone(),
                range: None,
                pass: pass.clone(),
                compress,
                sha1: Some(sha1),
                size: None,
                is_segment,
            });
        }
    }
    Ok(segments)
}

/// Reads one object (blocking) and checks it.
fn read(storage: &pgbr_storage::Storage, handle: &tokio::runtime::Handle, c: &Check) -> Checked {
    let mut checked = Checked::default();
    let stored: io::Result<Box<dyn Read + Send>> = match c.range.clone() {
        Some(range) => storage
            .get_range_blocking(&c.object, range, handle)
            .map(|b| Box::new(io::Cursor::new(b)) as Box<dyn Read + Send>)
            .map_err(io::Error::other),
        None => storage
            .blocking_reader(&c.object, handle.clone())
            .map(|r| Box::new(r) as Box<dyn Read + Send>)
            .map_err(io::Error::other),
    };
    let result = stored.and_then(|stored| {
        let mut counted = Counted {
            inner: stored,
            bytes: 0,
        };
        let mut reader =
            decode_reader(&mut counted, c.pass.as_deref(), c.compress).map_err(io::Error::other)?;
        let mut head = Head(Vec::new());
        let (size, sum) = sha1_copy(&mut reader, &mut head)?;
        drop(reader);
        Ok((size, sum, head.0, counted.bytes))
    });
    match result {
        Err(e) => checked.problem = Some(format!("cannot be read: {e}")),
        Ok((size, sum, head, bytes)) => {
            checked.bytes = bytes;
            if c.size.is_some_and(|want| want != size) {
                checked.problem = Some(format!(
                    "{size} bytes, the manifest says {}",
                    c.size.unwrap_or(0)
                ));
            } else if c.sha1.is_some_and(|want| want != sum) || (c.sha1.is_none() && size != 0) {
                checked.problem = Some(format!("SHA-1 {} does not match", hex::encode(sum)));
            } else if c.is_segment {
                checked.segment_size = LongPageHeader::parse(&head).ok().map(|h| h.segment_size);
            }
        }
    }
    checked
}

/// Counts the stored bytes read through it.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Keeps the first 64 bytes written to it (a WAL segment's long page header), drops the rest.
struct Head(Vec<u8>);

impl io::Write for Head {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = 64usize.saturating_sub(self.0.len());
        self.0.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
