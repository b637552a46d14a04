//! Writing the files of a backup pgBackRest took: each fetched from where pgBackRest stored it
//! (`<label>/<target>/<name><ext>`, or a piece of `<label>/bundle/<id>`), decrypted with the
//! backup's passphrase, decompressed, and checked against the manifest's SHA-1 before it takes
//! its name. The safety model, plan and recovery settings are the restore's own (see `super`).

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use pgbr_manifest::pgbackrest::BackrestManifest;
use pgbr_manifest::{FileEntry, Manifest};

use super::apply::PG_CONTROL;
use super::file::{already_current_by, complete_file, open_destination, Checked, RestoreContext};
use super::plan::Plan;
use super::write::{group_files, Written};
use crate::error::{Error, Result};
use crate::layout;
use crate::pipeline;
use crate::progress::Progress;
use crate::repo::{decode_reader, sha1_copy, stored_at, Repository};

/// A pgBackRest backup being restored: its manifest and how its (and its references') files
/// are stored.
pub(super) struct BackrestSource {
    pub backup: BackrestManifest,
}

/// The manifest of pgBackRest's backup `label` in `repo`, in pgbr's terms, with the cluster's WAL
/// segment size (which pgBackRest's manifest does not record) read from the backup's
/// `pg_control`: the restore's archive check counts segments by it.
pub(super) async fn load(repo: &Repository, label: &str) -> Result<(Manifest, BackrestSource)> {
    let backup = repo.load_backrest_manifest(label).await?;
    let mut manifest = backup.manifest.clone();
    let control = manifest
        .files
        .iter()
        .position(|f| f.target == "pg_data" && f.name == PG_CONTROL)
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "{}: backup {label} has no {PG_CONTROL}",
                repo.name()
            ))
        })?;
    let f = &manifest.files[control];
    let dir = layout::backup_dir(repo.stanza(), f.reference.as_deref().unwrap_or(label));
    let (object, range) = stored_at(&dir, f, backup.compress);
    let stored = match range {
        Some(range) => repo.storage().get_range(&object, range).await?,
        None => repo.storage().get(&object).await?,
    };
    let mut plain = Vec::new();
    let (_, sum) = decode_reader(&stored[..], backup.cipher_pass.as_deref(), backup.compress)
        .and_then(|mut r| sha1_copy(&mut r, &mut plain).map_err(|e| Error::Corrupt(e.to_string())))
        .map_err(|e| {
            Error::Corrupt(format!(
                "{}: {PG_CONTROL} of backup {label} cannot be read: {e}",
                repo.name()
            ))
        })?;
    let control_file = match backup.files[control].sha1 {
        Some(want) if want == sum => pgbr_wal::ControlFile::parse(&plain).ok(),
        _ => None,
    }
    .ok_or_else(|| {
        Error::Corrupt(format!(
            "{}: {PG_CONTROL} of backup {label} does not match its manifest; the backup is damaged",
            repo.name()
        ))
    })?;
    manifest.backup.wal_segment_size = u64::from(control_file.wal_segment_size);
    Ok((manifest, BackrestSource { backup }))
}

enum Job {
    File(usize),
    Bundle(Vec<usize>),
}

/// Restores every file of `manifest` (`source`'s, in pgbr's terms) where `plan` puts it, on
/// `process_max` workers, largest first.
pub(super) async fn restore_files(
    manifest: &Arc<Manifest>,
    source: &Arc<BackrestSource>,
    plan: &Arc<Plan>,
    ctx: Arc<RestoreContext>,
    process_max: usize,
    progress: &Arc<dyn Progress>,
) -> Result<Written> {
    let total: u64 = manifest.files.iter().map(|f| f.size).sum();
    progress.start(total, manifest.files.len() as u64);
    let (singles, bundles) = group_files(manifest);
    let mut jobs: Vec<Job> = singles.into_iter().map(Job::File).collect();
    jobs.extend(bundles.into_iter().map(Job::Bundle));
    let size_of = |job: &Job| -> u64 {
        match job {
            Job::File(i) => manifest.files[*i].size,
            Job::Bundle(files) => files.iter().map(|&i| manifest.files[i].size).sum(),
        }
    };
    jobs.sort_by_cached_key(|j| std::cmp::Reverse(size_of(j)));
    let (shared, source, plan) = (Arc::clone(manifest), Arc::clone(source), Arc::clone(plan));
    let worker_progress = Arc::clone(progress);
    let results = pipeline::run_parallel(jobs, process_max, move |job: Job| {
        crate::failpoints::crash_point!("restore::copy-file");
        let files = match job {
            Job::File(i) => {
                let written = restore_file(&shared, &source, i, &plan, &ctx, None)?;
                vec![(i, written)]
            }
            Job::Bundle(files) => restore_bundle(&shared, &source, files, &plan, &ctx)?,
        };
        for (i, _) in &files {
            let f = &shared.files[*i];
            worker_progress.file_done(&f.name, f.size);
        }
        Ok(files.into_iter().map(|(_, w)| w).collect::<Vec<_>>())
    })
    .await?;
    Ok(Written::tally(results.into_iter().flatten()))
}

/// `--delta`: whether `dest` already holds file `i` (same size, and same SHA-1, or with
/// `--delta --force` the same modification time).
fn already_current(
    source: &BackrestSource,
    f: &FileEntry,
    i: usize,
    dest: &Path,
    ctx: &RestoreContext,
) -> Result<bool> {
    already_current_by(f, dest, ctx, |path| {
        sha1_of_file(path).is_ok_and(|(_, sum)| Some(sum) == source.backup.files[i].sha1)
    })
}

fn sha1_of_file(path: &Path) -> io::Result<(u64, [u8; 20])> {
    let mut file = fs::File::open(path)?;
    sha1_copy(&mut file, &mut io::sink())
}

/// Restores the files of one bundle from one sequential read of it.
fn restore_bundle(
    manifest: &Manifest,
    source: &BackrestSource,
    mut files: Vec<usize>,
    plan: &Plan,
    ctx: &RestoreContext,
) -> Result<Vec<(usize, Option<u64>)>> {
    let mut out = Vec::with_capacity(files.len());
    let mut needed = Vec::new();
    files.sort_by_key(|&i| manifest.files[i].bundle.as_ref().map_or(0, |b| b.offset));
    for i in files {
        let f = &manifest.files[i];
        if f.size == 0 || !already_current(source, f, i, &plan.file_path(f), ctx)? {
            needed.push(i);
        } else {
            out.push((i, None));
        }
    }
    let Some(&first) = needed.first() else {
        return Ok(out);
    };
    let f = &manifest.files[first];
    let (object, _) = stored_at(
        &ctx.backup_dir(f.reference.as_deref()),
        f,
        source.backup.compress,
    );
    let places: Vec<(u64, u64)> = needed
        .iter()
        .map(|&i| {
            manifest.files[i]
                .bundle
                .as_ref()
                .map_or((0, 0), |b| (b.offset, b.length))
        })
        .collect();
    let mut next = needed.into_iter();
    pipeline::read_bundle_pieces(
        &ctx.storage,
        &object,
        &places,
        &ctx.handle,
        &mut |_, piece| {
            let Some(i) = next.next() else {
                return Err(Error::Internal(format!("{object}: more pieces than files")));
            };
            let written = restore_file(manifest, source, i, plan, ctx, Some(piece))?;
            out.push((i, written));
            Ok(())
        },
    )?;
    Ok(out)
}

/// Restores file `i`; `piece`, for a bundled file, is its stored bytes already read. Returns the
/// bytes written, `None` when the destination already held the file.
fn restore_file(
    manifest: &Manifest,
    source: &BackrestSource,
    i: usize,
    plan: &Plan,
    ctx: &RestoreContext,
    piece: Option<&[u8]>,
) -> Result<Option<u64>> {
    let f = &manifest.files[i];
    let dest = plan.file_path(f);
    if piece.is_none() && already_current(source, f, i, &dest, ctx)? {
        return Ok(None);
    }
    let opened = open_destination(f, &dest)?;
    let result = (|| -> Result<u64> {
        let expected = source.backup.files[i].sha1;
        let (size, sum) = if f.size == 0 && f.stored_size == 0 {
            (0, None)
        } else {
            let dir = ctx.backup_dir(f.reference.as_deref());
            let (object, range) = stored_at(&dir, f, source.backup.compress);
            let stored: Box<dyn Read + Send> = match (piece, range) {
                (Some(p), _) => Box::new(io::Cursor::new(p.to_vec())),
                (None, Some(range)) => Box::new(io::Cursor::new(ctx.storage.get_range_blocking(
                    &object,
                    range,
                    &ctx.handle,
                )?)),
                (None, None) => Box::new(ctx.storage.blocking_reader(&object, ctx.handle.clone())?),
            };
            let pass = source.backup.cipher_pass.as_deref();
            let mut reader = decode_reader(stored, pass, source.backup.compress)?;
            let mut file = io::BufWriter::with_capacity(256 * 1024, &opened.file);
            let (size, sum) = sha1_copy(&mut reader, &mut file)
                .and_then(|done| file.flush().map(|()| done))
                .map_err(|e| {
                    Error::Corrupt(format!(
                        "{object}: cannot be read back ({e}); the backup is damaged"
                    ))
                })?;
            (size, Some(sum))
        };
        let matches = match (sum, expected) {
            (None, None) => true,
            (Some(found), Some(want)) => found == want,
            (Some(_), None) => size == 0,
            (None, Some(_)) => false,
        };
        if !matches {
            return Err(Error::Corrupt(format!(
                "{}/{}: restored contents do not match pgBackRest's manifest (size {size}, expected {}; SHA-1 {}, expected {}); the backup is damaged",
                f.target,
                f.name,
                f.size,
                sum.map(hex::encode).unwrap_or_default(),
                expected.map(hex::encode).unwrap_or_default()
            )));
        }
        complete_file(f, &dest, &opened, size, &Checked::Sha1, ctx)?;
        Ok(size)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&opened.path);
    }
    result.map(Some)
}
