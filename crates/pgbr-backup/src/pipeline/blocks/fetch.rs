//! A block-mapped file restored: its blocks fetched and decoded a window at a time, and written
//! at their places, consecutive ones gathered into few writes.

use std::fs::File;
use std::io;
use std::path::Path;

use pgbr_manifest::BlockRef;
use pgbr_storage::Storage;

use super::check_block_hash;
use super::decode::{decode_window, windows_of};
use crate::error::{Error, Result};
use crate::pipeline::Codec;

/// Writes `blocks`, the consecutive blocks of a block-mapped file from index `first_index` on, at
/// their places in `dest`, a window of blocks at a time, fetching each window's pieces (and their
/// delta bases) with one ranged read per object they lie in (see
/// [`fetch_pieces`](super::pieces::fetch_pieces)). While
/// `spare_core()` says a core is idle (the other workers are done), windows are decoded two at
/// a time, the second on a helper thread, so that the last big file uses two cores.
/// `object_of(reference)` names the object a block lives in and
/// `codec_of(reference)` how it was stored. Given a `hasher` (the caller hashes the whole file
/// in order and checks its checksum), the blocks go into it in order; without one each block is
/// checked against its own hash. Returns the bytes written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fetch_blocks(
    storage: &Storage,
    blocks: &[BlockRef],
    first_index: usize,
    block_size: u64,
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
    codec_of: &(dyn Fn(Option<&str>) -> Result<Codec> + Sync),
    spare_core: &dyn Fn() -> bool,
    dest: &File,
    dest_path: &Path,
    hasher: Option<&mut blake3::Hasher>,
    handle: &tokio::runtime::Handle,
) -> Result<u64> {
    let windows = windows_of(blocks);
    let decode = |window: &std::ops::Range<usize>,
                  each: &mut dyn FnMut(usize, Vec<u8>) -> Result<()>|
     -> Result<()> {
        decode_window(
            storage,
            blocks,
            window.clone(),
            &|i| first_index + i,
            block_size,
            object_of,
            codec_of,
            handle,
            each,
        )
    };
    let mut out = BlockWriter {
        blocks,
        first_index,
        block_size,
        object_of,
        dest,
        dest_path,
        hasher,
        pending: Vec::new(),
        pending_first: 0,
        pending_bytes: 0,
        written: 0,
        behind: None,
    };
    for pair in windows.chunks(2) {
        match pair {
            [a, b] if spare_core() => {
                // This thread decodes and writes `a` block by block (each still in cache when
                // written); a helper decodes `b` meanwhile, written after `a` in order.
                let later = std::thread::scope(|scope| {
                    let helper = scope.spawn(|| {
                        let mut plains = Vec::with_capacity(b.len());
                        decode(b, &mut |_, plain| {
                            plains.push(plain);
                            Ok(())
                        })
                        .map(|()| plains)
                    });
                    let now = decode(a, &mut |at, plain| out.block(at, plain));
                    let later = helper.join().unwrap_or_else(|_| {
                        Err(Error::Internal("a block decoding thread panicked".into()))
                    });
                    now.and(later)
                })?;
                out.end_window(a)?;
                for (k, plain) in later.into_iter().enumerate() {
                    out.block(b.start + k, plain)?;
                }
                out.end_window(b)?;
            }
            windows => {
                for window in windows {
                    decode(window, &mut |at, plain| out.block(at, plain))?;
                    out.end_window(window)?;
                }
            }
        }
    }
    Ok(out.written)
}

/// Bytes of consecutive blocks [`BlockWriter`] gathers into one write: a quarter of the
/// syscalls of a write per block, and the blocks are still in the CPU's cache when copied.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Where [`fetch_blocks`] puts the blocks it decodes, in file order: each is checked (or fed
/// to the caller's hasher) and written at its place, consecutive ones gathered into one write.
struct BlockWriter<'a, 'h> {
    blocks: &'a [BlockRef],
    first_index: usize,
    block_size: u64,
    object_of: &'a (dyn Fn(Option<&str>) -> String + Sync),
    dest: &'a File,
    dest_path: &'a Path,
    hasher: Option<&'h mut blake3::Hasher>,
    /// Consecutive blocks taken but not written yet, the first being block `pending_first`.
    pending: Vec<Vec<u8>>,
    pending_first: usize,
    pending_bytes: usize,
    written: u64,
    /// The bytes of the last window ended, whose writeback started then.
    behind: Option<std::ops::Range<u64>>,
}

impl BlockWriter<'_, '_> {
    /// Takes block `at` (an index in `blocks`).
    fn block(&mut self, at: usize, plain: Vec<u8>) -> Result<()> {
        // A longer block would overwrite the next one's place.
        if plain.len() as u64 > self.block_size {
            return Err(Error::Corrupt(format!(
                "{}: block {} opens to {} bytes, more than the block size ({}); the stored data is damaged",
                (self.object_of)(self.blocks[at].reference.as_deref()),
                self.first_index + at,
                plain.len(),
                self.block_size
            )));
        }
        // With the whole file hashed, its checksum vouches for every block; otherwise each
        // block is checked on its own.
        match self.hasher.as_deref_mut() {
            Some(h) => {
                h.update(&plain);
            }
            None => check_block_hash(
                &self.blocks[at],
                &plain,
                self.first_index + at,
                self.object_of,
            )?,
        }
        if !self.pending.is_empty() && self.pending_first + self.pending.len() != at {
            self.flush()?;
        }
        if self.pending.is_empty() {
            self.pending_first = at;
        }
        // A short block (the file's last) ends what can be written in one piece.
        let short = (plain.len() as u64) < self.block_size;
        self.pending_bytes += plain.len();
        self.pending.push(plain);
        if short || self.pending_bytes >= WRITE_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the blocks taken so far.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let offset = (self.first_index + self.pending_first) as u64 * self.block_size;
        write_all_vectored_at(self.dest, &self.pending, offset)
            .map_err(|e| Error::io("unable to write", self.dest_path, e))?;
        self.written += self.pending_bytes as u64;
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Writes what is left of `window` and has the disk start on it: it writes a window while
    /// the next ones are decoded, instead of all at the restore's final syncfs. The window
    /// before leaves the page cache: a restore of gigabytes reuses a few megabytes of it
    /// instead of taking fresh pages (and evicting what others cache) for every byte.
    fn end_window(&mut self, window: &std::ops::Range<usize>) -> Result<()> {
        self.flush()?;
        let start = (self.first_index + window.start) as u64 * self.block_size;
        let end = (self.first_index + window.end) as u64 * self.block_size;
        pgbr_storage::posix::start_writeback(self.dest, start, end - start);
        // The window before this one started to be written back one window ago: it is on disk
        // by now, or nearly, and its pages can go (see `posix::drop_written`).
        if let Some(before) = self.behind.replace(start..end) {
            pgbr_storage::posix::drop_written(self.dest, before.start, before.end - before.start);
        }
        Ok(())
    }
}

/// Writes all of `bufs`, one after the other, at `offset` of `file`: one `pwritev` for all of
/// them unless the kernel takes fewer bytes.
fn write_all_vectored_at(file: &File, bufs: &[Vec<u8>], mut offset: u64) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = bufs.iter().map(|b| io::IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let at = i64::try_from(offset).map_err(|_| io::Error::other("offset out of range"))?;
        match nix::sys::uio::pwritev(file, rest, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                offset += n as u64;
                io::IoSlice::advance_slices(&mut rest, n);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
