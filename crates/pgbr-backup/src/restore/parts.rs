//! Big files: a block-mapped file over [`PART_BYTES`] is restored in parts that every worker
//! takes, and a `--delta` restore rewrites only the blocks of a file that differ.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgbr_manifest::{Checksum, FileEntry};

use super::file::{
    already_current, blocks_in, complete_file, open_destination, Checked, Opened, Overwrite,
    RestoreContext,
};
use crate::error::{Error, Result};
use crate::pipeline;

/// Block-mapped files longer than this, written whole, are restored in parts of this many bytes,
/// each a job of its own: the biggest files of a cluster (a table's 1 GiB segments) would
/// otherwise keep one core busy long after the others ran out of work. A power of two (BLAKE3
/// hashes each part on its own, see [`pipeline::merge_part_hashes`]) and a multiple of the
/// block size.
pub(super) const PART_BYTES: u64 = 64 << 20;

/// A part restored: its BLAKE3 chaining value (written whole), and the bytes it wrote.
type PartDone = (Option<blake3::hazmat::ChainingValue>, u64);

/// A big block-mapped file restored in parts (see [`PART_BYTES`]), by whichever workers take them:
/// the last part to finish checks the whole file and completes it.
pub(super) struct SplitFile {
    /// The file's index in the manifest.
    pub index: usize,
    dest: PathBuf,
    /// Where the parts write: `dest`, or the temporary name it takes when whole.
    path: PathBuf,
    rename: bool,
    /// `--delta` over a file already at the destination: each part keeps the blocks that are
    /// right and rewrites the others, in place.
    in_place: bool,
    /// How many parts the file is restored in.
    pub part_count: usize,
    /// Each part as it finishes: its BLAKE3 chaining value (a part written whole: the file's
    /// checksum is merged from them; a part compared in place checks each block on its own)
    /// and the bytes it wrote.
    parts: std::sync::Mutex<Vec<Option<PartDone>>>,
    /// Set once the file is whole, checked and in place.
    complete: std::sync::atomic::AtomicBool,
}

impl SplitFile {
    /// The file `f` (at `dest`) to restore in parts, or `None` when it is restored in one piece: small,
    /// not block-mapped, current already by size and time (`--delta`), or to be compared by
    /// checksum first (`--delta --force`).
    pub fn plan(
        index: usize,
        f: &FileEntry,
        dest: PathBuf,
        ctx: &RestoreContext,
    ) -> Result<Option<Arc<SplitFile>>> {
        let Some(map) = &f.block_map else {
            return Ok(None);
        };
        let block_size = u64::from(map.block_size);
        if f.size <= PART_BYTES || block_size == 0 || PART_BYTES % block_size != 0 {
            return Ok(None);
        }
        let parts = map
            .blocks
            .len()
            .div_ceil((PART_BYTES / block_size) as usize);
        if parts < 2 || f.size.div_ceil(PART_BYTES) != parts as u64 {
            return Ok(None);
        }
        let existing = fs::symlink_metadata(&dest).ok();
        let in_place = match ctx.overwrite {
            Overwrite::Delta { trust_size_time } => match &existing {
                None => false,
                Some(meta) if meta.is_file() => {
                    // Compared by contents, each part compares its own blocks.
                    if trust_size_time && already_current(f, &dest, ctx)? {
                        return Ok(None);
                    }
                    true
                }
                Some(_) => return Ok(None),
            },
            Overwrite::Fresh | Overwrite::All => false,
        };
        // Each part opens the file for itself: holding a descriptor per big file from here to
        // its last part would run out of them on a cluster of thousands of 1 GiB segments.
        let (path, rename) = if in_place {
            (dest.clone(), false)
        } else {
            let opened = open_destination(f, &dest)?;
            // Its parts are written by several workers, out of order: allocated at once, the
            // file is not extended (and its blocks reserved) write by write.
            pgbr_storage::posix::preallocate(&opened.file, f.size);
            (opened.path, opened.rename)
        };
        let split = Arc::new(SplitFile {
            index,
            dest,
            path,
            rename,
            in_place,
            part_count: parts,
            parts: std::sync::Mutex::new(vec![None; parts]),
            complete: Default::default(),
        });
        Ok(Some(split))
    }

    /// Restores part `part` of `f`. Returns `None` while other parts remain; once this part
    /// completed the file, the bytes written to it (`None` when the file in place was already
    /// right, `--delta`).
    pub fn restore_part(
        &self,
        part: usize,
        f: &FileEntry,
        ctx: &RestoreContext,
    ) -> Result<Option<Option<u64>>> {
        use blake3::hazmat::HasherExt;
        let Some(map) = &f.block_map else {
            return Err(Error::Internal(format!(
                "{}: parts of a file without blocks",
                f.name
            )));
        };
        let block_size = u64::from(map.block_size);
        let per_part = (PART_BYTES / block_size) as usize;
        let first = part * per_part;
        let range = first..(first + per_part).min(map.blocks.len());
        let start = first as u64 * block_size;
        let expected = f.size.saturating_sub(start).min(PART_BYTES);
        let path = &self.path;
        let opened = Opened::existing(path, self.rename)?;
        let file = &opened.file;
        let (done, cv, written) = if self.in_place {
            let (checked, written) = rewrite_changed_blocks(f, map, file, path, range, ctx)?;
            (checked, None, written)
        } else {
            let mut hasher = blake3::Hasher::new();
            hasher.set_input_offset(start);
            let written = ctx.fetch_blocks(f, map, range, file, path, Some(&mut hasher))?;
            (written, Some(hasher.finalize_non_root()), written)
        };
        if done != expected {
            return Err(Error::Corrupt(format!(
                "{}/{}: bytes {start}..{} restored as {done} bytes; the backup is damaged",
                f.target,
                f.name,
                start + expected
            )));
        }
        let all = {
            let mut parts = self
                .parts
                .lock()
                .map_err(|_| Error::Internal("a restore worker panicked".into()))?;
            parts[part] = Some((cv, written));
            parts.iter().copied().collect::<Option<Vec<_>>>()
        };
        // Not the last part to finish: another completes the file.
        let Some(all) = all else {
            return Ok(None);
        };
        let written: u64 = all.iter().map(|(_, written)| written).sum();
        let checked = if self.in_place {
            Checked::ByBlocks
        } else {
            let hashes: Option<Vec<_>> = all.iter().map(|(cv, _)| *cv).collect();
            hashes
                .and_then(|h| pipeline::merge_part_hashes(&h, PART_BYTES, f.size))
                .map(|hash| Checked::Whole(Checksum::from(hash)))
                .ok_or_else(|| Error::Internal(format!("{}: parts do not make the file", f.name)))?
        };
        let mut changed = written > 0 || !self.in_place;
        if self.in_place {
            changed |= truncate(file, path, f.size)?;
        }
        complete_file(f, &self.dest, &opened, f.size, &checked, ctx)?;
        self.complete
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(Some(changed.then_some(written)))
    }
}

impl SplitFile {
    /// A file of `parts` parts, in place (dropping it removes nothing), for tests of the order
    /// of jobs.
    #[cfg(test)]
    pub fn for_test(index: usize, parts: usize) -> Arc<SplitFile> {
        Arc::new(SplitFile {
            index,
            dest: PathBuf::from(format!("f{index}")),
            path: PathBuf::from(format!("f{index}")),
            rename: false,
            in_place: true,
            part_count: parts,
            parts: std::sync::Mutex::new(vec![None; parts]),
            complete: Default::default(),
        })
    }
}

impl Drop for SplitFile {
    /// A new file not completed (a part failed, or the restore stopped) is not left behind. One
    /// rewritten in place stays: the restore removed pg_control first, so the cluster does not
    /// start until a restore completes.
    fn drop(&mut self) {
        if !self.in_place && !*self.complete.get_mut() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Delta restore of a block-mapped file in place, in one pass: each block whose hash matches
/// its block map is kept, each run of the others is fetched, checked block by block and
/// written. Durability comes from the restore's final syncfs. Returns the bytes written, `None`
/// when the file was already right.
pub(super) fn restore_changed_blocks(
    f: &FileEntry,
    dest: &Path,
    ctx: &RestoreContext,
) -> Result<Option<u64>> {
    let Some(map) = &f.block_map else {
        return Err(Error::Internal(
            "restore_changed_blocks without a block map".into(),
        ));
    };
    let opened = Opened::existing(dest, false)?;
    let all = 0..map.blocks.len();
    let (checked, written) = rewrite_changed_blocks(f, map, &opened.file, dest, all, ctx)?;
    let truncated = truncate(&opened.file, dest, f.size)?;
    complete_file(f, dest, &opened, checked, &Checked::ByBlocks, ctx)?;
    Ok((written > 0 || truncated).then_some(written))
}

/// Cuts `file` (at `path`) to `size` bytes; whether it was longer.
fn truncate(file: &File, path: &Path, size: u64) -> Result<bool> {
    let len = file
        .metadata()
        .map_err(|e| Error::io("unable to stat", path, e))?
        .len();
    if len != size {
        file.set_len(size)
            .map_err(|e| Error::io("unable to truncate", path, e))?;
    }
    Ok(len != size)
}

/// Blocks read at once when a file is compared in place: one read of 1 MiB rather than 16 of
/// 64 KiB.
const COMPARE_BLOCKS: usize = 16;

/// Compares blocks `range` of `file` (at `path`) with `f`'s block map, keeps those whose hash
/// matches and fetches and writes each run of the others (each checked against its hash).
/// Returns the bytes of the range now right (kept and written) and the bytes written.
fn rewrite_changed_blocks(
    f: &FileEntry,
    map: &pgbr_manifest::BlockMapRef,
    file: &File,
    path: &Path,
    range: std::ops::Range<usize>,
    ctx: &RestoreContext,
) -> Result<(u64, u64)> {
    let blocks = blocks_in(f, map, &range)?;
    let block_size = map.block_size as usize;
    let mut buf = vec![0u8; block_size * COMPARE_BLOCKS];
    // Bytes of the blocks kept, and of those fetched and written.
    let (mut kept, mut written) = (0u64, 0u64);
    // Blocks [run_start, i) (numbers in the file) differ and are not written yet.
    let mut run_start = None;
    let fetch_run =
        |start: usize, end: usize| ctx.fetch_blocks(f, map, start..end, file, path, None);
    for (c, chunk) in blocks.chunks(COMPARE_BLOCKS).enumerate() {
        let first = range.start + c * COMPARE_BLOCKS;
        let offset = first as u64 * block_size as u64;
        let want = f
            .size
            .saturating_sub(offset)
            .min((block_size * chunk.len()) as u64) as usize;
        let n = pipeline::read_full_at(file, &mut buf[..want], offset)
            .map_err(|e| Error::io("unable to read", path, e))?;
        for (k, b) in chunk.iter().enumerate() {
            let at = k * block_size;
            let len = want.saturating_sub(at).min(block_size);
            let same = n >= at + len && pgbr_manifest::block_hash(&buf[at..at + len]) == b.hash;
            if !same {
                run_start.get_or_insert(first + k);
                continue;
            }
            if let Some(start) = run_start.take() {
                written += fetch_run(start, first + k)?;
            }
            kept += len as u64;
        }
    }
    if let Some(start) = run_start.take() {
        written += fetch_run(start, range.end)?;
    }
    Ok((kept + written, written))
}
