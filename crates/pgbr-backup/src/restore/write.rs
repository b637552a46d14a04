//! Writing the backup's files: the jobs the workers share (a file, the files of one bundle, a
//! part of a big file), and how each file is fetched, checked and put in place.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgbr_manifest::{Checksum, FileEntry, Manifest};

use super::file::{
    already_current, complete_file, open_destination, Checked, Overwrite, RestoreContext,
};
use super::parts::{restore_changed_blocks, SplitFile, PART_BYTES};
use super::plan::Plan;
use super::settings::TABLESPACE_MAP;
use crate::error::{Error, Result};
use crate::layout;
use crate::pipeline::{self, Codec};
use crate::progress::Progress;
use crate::repo::Repository;

/// How each backup a restore of `manifest` reads from (its own, and those it references) stored
/// its bytes. Found before anything is written: a referenced backup missing from `backup.info`,
/// or a cipher other than the repository's, refuses the restore.
pub(super) async fn codecs(
    repo: &Repository,
    manifest: &Manifest,
) -> Result<BTreeMap<String, Codec>> {
    let label = &manifest.backup.label;
    let cipher = crate::codecs::cipher_type(manifest.backup.cipher_type);
    if cipher != repo.cipher() {
        return Err(Error::Corrupt(format!(
            "backup {label} was written with cipher {cipher} but {} uses {}",
            repo.name(),
            repo.cipher()
        )));
    }
    let compress_of = |m: &Manifest| crate::codecs::compress_type(m.backup.compress_type);
    let codec_of = |compress_type| Codec {
        workers: 0,
        compress_type,
        level: 0,
        cipher,
        key: repo.key().cloned(),
    };
    let mut codecs = BTreeMap::from([(label.clone(), codec_of(compress_of(manifest)))]);
    // backup.info says how each backup stored its bytes; a manifest is read only where it
    // does not.
    let summarized = repo.compress_types();
    for reference in &manifest.backup.references {
        if repo.backup_info().backup(reference).is_none() {
            return Err(Error::Corrupt(format!(
                "backup {label} references backup {reference}, which {} does not list in backup.info: backup {label} cannot be restored. Restore another backup with --set; run 'pgbr verify'",
                repo.name()
            )));
        }
        let ct = match summarized.get(reference) {
            Some(&ct) => ct,
            None => compress_of(&repo.load_manifest(reference).await?),
        };
        codecs.insert(reference.clone(), codec_of(ct));
    }
    Ok(codecs)
}

/// What the workers did with the files.
#[derive(Default)]
pub(super) struct Written {
    /// Files written.
    pub files: u64,
    /// Bytes written to them.
    pub bytes: u64,
    /// Files already in place and left alone.
    pub unchanged: u64,
}

impl Written {
    /// Counts each file's outcome: the bytes written, or `None` when it was left alone.
    pub(super) fn tally(outcomes: impl IntoIterator<Item = Option<u64>>) -> Written {
        let mut written = Written::default();
        for outcome in outcomes {
            match outcome {
                Some(n) => {
                    written.files += 1;
                    written.bytes += n;
                }
                None => written.unchanged += 1,
            }
        }
        written
    }
}

/// Restores every file of `manifest` where `plan` puts it, on `process_max` workers, largest
/// jobs first. `tablespace_map` is left out: it is written afterwards from the actual
/// destinations (PostgreSQL recreates the pg_tblspc links from it, and the backup's copy names
/// the source's tablespace paths).
pub(super) async fn restore_files(
    manifest: &Arc<Manifest>,
    plan: &Arc<Plan>,
    ctx: Arc<RestoreContext>,
    process_max: usize,
    progress: &Arc<dyn Progress>,
) -> Result<Written> {
    let total: u64 = manifest.files.iter().map(|f| f.size).sum();
    progress.start(total, manifest.files.len() as u64);
    // Files of one bundle are restored together from one read of the bundle. Jobs name files
    // by their place in the manifest, which the workers share, not by a copy of each entry.
    let (singles, bundles) = group_files(manifest);
    let mut jobs: Vec<RestoreJob> = Vec::new();
    for i in singles {
        let f = &manifest.files[i];
        match SplitFile::plan(i, f, plan.file_path(f), &ctx)? {
            Some(split) => jobs.extend(
                (0..split.part_count).map(|part| RestoreJob::Part(Arc::clone(&split), part)),
            ),
            None => jobs.push(RestoreJob::File(i)),
        }
    }
    jobs.extend(bundles.into_iter().map(RestoreJob::Bundle));
    let size_of = |job: &RestoreJob| -> u64 {
        match job {
            RestoreJob::File(i) => manifest.files[*i].size,
            RestoreJob::Bundle(files) => files.iter().map(|&i| manifest.files[i].size).sum(),
            RestoreJob::Part(..) => PART_BYTES,
        }
    };
    schedule(&mut jobs, size_of);
    let worker_progress = Arc::clone(progress);
    let (shared, plan) = (Arc::clone(manifest), Arc::clone(plan));
    let results = pipeline::run_parallel(jobs, process_max, move |job: RestoreJob| {
        crate::failpoints::crash_point!("restore::copy-file");
        let with_dest = |i: usize| {
            let f = &shared.files[i];
            (f, plan.file_path(f))
        };
        let out = ctx.busy.run(|| match job {
            RestoreJob::File(i) => {
                let (f, dest) = with_dest(i);
                restore_file(f, &dest, &ctx, None).map(|written| vec![(written, f)])
            }
            RestoreJob::Bundle(files) => {
                restore_bundle(files.into_iter().map(with_dest).collect(), &ctx)
            }
            RestoreJob::Part(split, part) => {
                let f = &shared.files[split.index];
                split
                    .restore_part(part, f, &ctx)
                    .map(|done| done.map(|written| (written, f)).into_iter().collect())
            }
        });
        let out = out?;
        for (_, f) in &out {
            worker_progress.file_done(&f.name, f.size);
        }
        Ok(out.into_iter().map(|(w, _)| w).collect::<Vec<_>>())
    })
    .await?;
    Ok(Written::tally(results.into_iter().flatten()))
}

/// The files of `manifest` a restore writes, by their place in it: those stored on their own,
/// and those of each bundle (restored together from one read of it). `tablespace_map` is left
/// out (see [`restore_files`]).
pub(super) fn group_files(manifest: &Manifest) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut singles = Vec::new();
    let mut bundles: BTreeMap<(Option<&str>, u64), Vec<usize>> = BTreeMap::new();
    for (i, f) in manifest.files.iter().enumerate() {
        if f.target == "pg_data" && f.name == TABLESPACE_MAP {
            continue;
        }
        match &f.bundle {
            Some(b) => bundles
                .entry((f.reference.as_deref(), b.id))
                .or_default()
                .push(i),
            None => singles.push(i),
        }
    }
    (singles, bundles.into_values().collect())
}

/// A manifest entry and where it goes.
type FileDest<'m> = (&'m FileEntry, PathBuf);

/// One unit of restore work: files by their index in the manifest's files.
pub(super) enum RestoreJob {
    /// A file on its own.
    File(usize),
    /// The files of one bundle (all in one backup's bundle with one id).
    Bundle(Vec<usize>),
    /// One part of a big file (see [`PART_BYTES`]).
    Part(Arc<SplitFile>, usize),
}

/// Orders restore jobs largest first (`size_of`), so that no big file is left for the end, with
/// the parts of big files interleaved: each file's parts are spread evenly over the run of
/// parts. Two workers writing parts of one file take turns on its inode lock (ext4 serializes
/// buffered writes to a file); two writing different files do not.
pub(super) fn schedule(jobs: &mut [RestoreJob], size_of: impl Fn(&RestoreJob) -> u64) {
    let spread = |job: &RestoreJob| -> u64 {
        match job {
            RestoreJob::Part(split, part) => {
                ((*part as u64) << 32) / split.part_count.max(1) as u64
            }
            RestoreJob::File(_) | RestoreJob::Bundle(_) => 0,
        }
    };
    jobs.sort_by_cached_key(|j| (std::cmp::Reverse(size_of(j)), spread(j)));
}

/// Restores the files of one bundle from a single read of it (only when one of them is needed).
fn restore_bundle<'m>(
    files: Vec<FileDest<'m>>,
    ctx: &RestoreContext,
) -> Result<Vec<(Option<u64>, &'m FileEntry)>> {
    let Some((first, _)) = files.first() else {
        return Ok(Vec::new());
    };
    let (reference, id) = match &first.bundle {
        Some(b) => (first.reference.as_deref(), b.id),
        None => {
            return Err(Error::Internal(format!(
                "{}/{}: restored from a bundle without a place in it",
                first.target, first.name
            )))
        }
    };
    let mut out = Vec::with_capacity(files.len());
    let mut needed = Vec::new();
    for (f, dest) in files {
        if already_current(f, &dest, ctx)? {
            out.push((None, f));
        } else {
            needed.push((f, dest));
        }
    }
    if needed.is_empty() {
        return Ok(out);
    }
    // One sequential read of the bundle, holding one file's piece at a time.
    let object = layout::bundle(&ctx.backup_dir(reference), id);
    needed.sort_by_key(|(f, _)| f.bundle.as_ref().map_or(0, |b| b.offset));
    let places = needed
        .iter()
        .map(|(f, _)| {
            f.bundle
                .as_ref()
                .map(|b| (b.offset, b.length))
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "{}/{}: restored from a bundle without a place in it",
                        f.target, f.name
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut needed = needed.into_iter();
    pipeline::read_bundle_pieces(
        &ctx.storage,
        &object,
        &places,
        &ctx.handle,
        &mut |_, piece| {
            let Some((f, dest)) = needed.next() else {
                return Err(Error::Internal(format!("{object}: more pieces than files")));
            };
            let written = restore_file(f, &dest, ctx, Some(piece))?;
            out.push((written, f));
            Ok(())
        },
    )?;
    Ok(out)
}

/// Restores one file; returns the bytes written, `Ok(None)` when the destination already held it.
/// `bundle`, for a bundled file, is its stored piece already read from the bundle.
fn restore_file(
    f: &FileEntry,
    dest: &Path,
    ctx: &RestoreContext,
    bundle: Option<&[u8]>,
) -> Result<Option<u64>> {
    // A block-mapped file compared by its contents is compared block by block, below: hashing
    // it whole first would read it twice.
    let compared_below = ctx.overwrite.by_contents() && f.block_map.is_some();
    if bundle.is_none() && !compared_below && already_current(f, dest, ctx)? {
        return Ok(None);
    }
    // A block-stored file that differs (or may): rewrite only its changed blocks, in place.
    if matches!(ctx.overwrite, Overwrite::Delta { .. })
        && f.block_map.is_some()
        && fs::symlink_metadata(dest).is_ok_and(|m| m.is_file())
    {
        return restore_changed_blocks(f, dest, ctx);
    }
    let opened = open_destination(f, dest)?;
    let result = (|| -> Result<u64> {
        let (file, tmp) = (&opened.file, &opened.path);
        let (size, checksum) = if let Some(map) = &f.block_map {
            let mut hasher = blake3::Hasher::new();
            let all = 0..map.blocks.len();
            let written = ctx.fetch_blocks(f, map, all, file, tmp, Some(&mut hasher))?;
            (written, Checksum::from(hasher.finalize()))
        } else if let Some(b) = &f.bundle {
            let reference = f.reference.as_deref();
            let object = layout::bundle(&ctx.backup_dir(reference), b.id);
            let data = match bundle {
                Some(piece) => {
                    pipeline::open_piece(&ctx.codec(reference)?, &object, b.offset, piece)?
                }
                None => pipeline::fetch_range(
                    &ctx.storage,
                    &object,
                    b.offset,
                    b.length,
                    &ctx.codec(reference)?,
                    &ctx.handle,
                )?,
            };
            (&opened.file)
                .write_all(&data)
                .map_err(|e| Error::io("unable to write", tmp, e))?;
            (data.len() as u64, Checksum::of(&data))
        } else if f.size == 0 && f.stored_size == 0 {
            (0, Checksum::of(b""))
        } else {
            let reference = f.reference.as_deref();
            let codec = ctx.codec(reference)?;
            let object = layout::whole(
                &ctx.backup_dir(reference),
                &f.target,
                &f.name,
                codec.compress_type.extension(),
            );
            let mut file = &opened.file;
            pipeline::fetch_to_file(&ctx.storage, &object, &codec, &mut file, tmp, &ctx.handle)?
        };
        complete_file(f, dest, &opened, size, &Checked::Whole(checksum), ctx)?;
        Ok(size)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&opened.path);
    }
    result.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_big_files_are_interleaved_after_bigger_jobs() {
        let split = SplitFile::for_test;
        let (a, b) = (split(0, 4), split(1, 2));
        let mut jobs: Vec<RestoreJob> = (0..4)
            .map(|p| RestoreJob::Part(Arc::clone(&a), p))
            .chain((0..2).map(|p| RestoreJob::Part(Arc::clone(&b), p)))
            .chain([RestoreJob::File(7), RestoreJob::File(8)])
            .collect();
        schedule(&mut jobs, |j| match j {
            RestoreJob::File(7) => PART_BYTES + 1,
            RestoreJob::File(_) => 10,
            RestoreJob::Bundle(_) => 0,
            RestoreJob::Part(..) => PART_BYTES,
        });
        let order: Vec<String> = jobs
            .iter()
            .map(|j| match j {
                RestoreJob::File(i) => format!("file{i}"),
                RestoreJob::Bundle(_) => "bundle".into(),
                RestoreJob::Part(s, p) => format!("{}.{p}", s.index),
            })
            .collect();
        assert_eq!(
            order,
            ["file7", "0.0", "1.0", "0.1", "0.2", "1.1", "0.3", "file8"]
        );
    }
}
