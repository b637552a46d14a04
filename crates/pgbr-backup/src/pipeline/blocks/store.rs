//! A file stored as blocks: each compared with the prior backup's, the changed ones written.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use pgbr_manifest::{
    block_chain_value, block_hash, blocks_checksum, BlockBase, BlockRef, Checksum, PAGE_SIZE,
};
use pgbr_storage::{CompressType, Storage};

use super::pieces::fetch_bases;
use super::{BaseReader, Chain, Prior, StoredBlocks, BLOCK_SIZE};
use crate::error::{Error, Result};
use crate::pipeline::codec::{seal, Codec};
use crate::pipeline::pages::{check_pages, PageCheckSpec};
use crate::pipeline::read_full_at;

/// Blocks read, hashed and stored together: a window's delta bases are fetched with as few
/// ranged reads as their places allow.
pub(super) const WINDOW_BLOCKS: usize = 32;

/// What [`examine_blocks`] found of one block of a window.
struct Examined {
    len: usize,
    /// The block's entry: a reference to the prior backup's copy, or (changed: no reference) one
    /// to fill in when its bytes are written.
    block: BlockRef,
    /// Of a changed block, with deltas: its earlier version, to code it as a delta against.
    base: Option<BlockBase>,
    /// Of a changed block, without deltas: its stored bytes.
    sealed: Option<Vec<u8>>,
    /// Pages of the block (numbers in the file) whose checksum is wrong.
    page_errors: Vec<u32>,
}

/// How [`examine_blocks`] examines blocks: checking pages, comparing with the prior backup's
/// blocks, coding.
struct Examine<'a> {
    pages: Option<&'a PageCheckSpec>,
    prior: Option<(&'a [BlockRef], &'a str)>,
    deltas: bool,
    codec: &'a Codec,
    /// Keep each block's chaining value.
    chain: bool,
}

/// Hashes, page-checks and compares with the prior backup's the blocks `chunks` of a file, block
/// numbers `indexes`. Without deltas, seals each changed block; with them, the caller codes
/// changed blocks against their bases. Independent of the blocks before, so a window's halves
/// can be examined on two threads.
fn examine_blocks(chunks: &[&[u8]], indexes: &[usize], how: &Examine) -> io::Result<Vec<Examined>> {
    let pages_per_block = BLOCK_SIZE / PAGE_SIZE;
    let mut out = Vec::with_capacity(chunks.len());
    for (chunk, &index) in chunks.iter().zip(indexes) {
        let mut page_errors = Vec::new();
        if let Some(spec) = how.pages {
            check_pages(
                chunk,
                (index * pages_per_block) as u64,
                spec,
                &mut page_errors,
            );
        }
        let hash = block_hash(chunk);
        let chain = how
            .chain
            .then(|| block_chain_value(chunk, index as u64, BLOCK_SIZE as u64))
            .flatten();
        let before = how
            .prior
            .and_then(|(blocks, label)| blocks.get(index).map(|b| (b, label)));
        let examined = match before {
            Some((b, label)) if b.hash == hash => Examined {
                len: chunk.len(),
                block: BlockRef {
                    chain,
                    ..referenced(b, label)
                },
                base: None,
                sealed: None,
                page_errors,
            },
            _ => {
                let base = before.filter(|_| how.deltas).map(|(b, label)| {
                    b.base.clone().unwrap_or_else(|| BlockBase {
                        reference: b.reference.clone().unwrap_or_else(|| label.into()),
                        offset: b.offset,
                        length: b.length,
                    })
                });
                let sealed = if how.deltas {
                    None
                } else {
                    Some(seal(how.codec, chunk)?)
                };
                Examined {
                    len: chunk.len(),
                    block: BlockRef {
                        hash,
                        reference: None,
                        offset: 0,
                        length: 0,
                        base: None,
                        chain,
                    },
                    base,
                    sealed,
                    page_errors,
                }
            }
        };
        out.push(examined);
    }
    Ok(out)
}

/// The prior backup's block `b` (of backup `label`) as this backup references it.
fn referenced(b: &BlockRef, label: &str) -> BlockRef {
    BlockRef {
        hash: b.hash,
        reference: Some(b.reference.clone().unwrap_or_else(|| label.into())),
        offset: b.offset,
        length: b.length,
        base: b.base.clone(),
        chain: b.chain,
    }
}

/// One window of a file: the blocks read (their numbers, and where each is in the window), and
/// whether the file ended in it.
struct WindowRead {
    read: Vec<(usize, std::ops::Range<usize>)>,
    bytes: u64,
    end_of_file: bool,
}

/// Reads into `window` the blocks from number `first` on that `skipped` (one entry per block
/// of the window) does not mark, a run of adjacent blocks at a time.
fn read_window(
    file: &File,
    window: &mut [u8],
    first: usize,
    skipped: &[bool],
) -> io::Result<WindowRead> {
    let mut out = WindowRead {
        read: Vec::new(),
        bytes: 0,
        end_of_file: false,
    };
    let mut k = 0;
    while k < skipped.len() {
        if skipped[k] {
            k += 1;
            continue;
        }
        let run_end = (k..skipped.len())
            .find(|&j| skipped[j])
            .unwrap_or(skipped.len());
        let buf = &mut window[k * BLOCK_SIZE..run_end * BLOCK_SIZE];
        let n = read_full_at(file, buf, ((first + k) * BLOCK_SIZE) as u64)?;
        out.bytes += n as u64;
        for (j, start) in (k..).zip((0..n).step_by(BLOCK_SIZE)) {
            let at = k * BLOCK_SIZE + start;
            out.read
                .push((first + j, at..at + (n - start).min(BLOCK_SIZE)));
        }
        if n < buf.len() {
            out.end_of_file = true;
            break;
        }
        k = run_end;
    }
    Ok(out)
}

/// Stores `src` as blocks at `object`: blocks whose hash matches `prior` (the same file's block
/// map in the prior backup) are referenced, the others are written. With `prior.bases` and
/// zstd, a changed block is coded as a delta against its earlier version (the whole block the
/// prior version is, or is itself a delta against), so a page that changed in a few bytes costs a
/// few bytes. With [`Chain::Skip`], the blocks the WAL summaries vouch for are not read at all
/// (except the first: a file that turns out to be one block has the root hash of its bytes as
/// checksum). No object is written when no block changed. While `spare_core()` says a core is
/// idle (the other workers are done), each window's blocks are examined and compressed on two
/// threads, so that the last big file uses two cores. `Ok(None)` if the file vanished.
#[allow(clippy::too_many_arguments)]
pub(crate) fn store_blocks(
    src: &Path,
    storage: &Storage,
    object: &str,
    codec: &Codec,
    pages: Option<PageCheckSpec>,
    prior: Option<Prior<'_>>,
    chain: Chain<'_>,
    spare_core: &dyn Fn() -> bool,
    handle: &tokio::runtime::Handle,
) -> Result<Option<StoredBlocks>> {
    let file = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("unable to open", src, e)),
    };
    let io_err = |e: io::Error| Error::io("unable to store", src, e);
    let read_err = |e: io::Error| Error::io("unable to read", src, e);
    let size_now = file.metadata().map_err(read_err)?.len();
    if let Chain::Skip(_) = chain {
        without_read_ahead(&file);
    }
    // Changed blocks are delta-coded with zstd, when earlier versions can be read.
    let deltas = codec.compress_type == CompressType::Zst
        && prior.as_ref().is_some_and(|p| p.bases.is_some());
    let how = Examine {
        pages: pages.as_ref(),
        prior: prior.as_ref().map(|p| (p.blocks, p.label)),
        deltas,
        codec,
        chain: !matches!(chain, Chain::Off),
    };
    let vouched = |index| vouched_for(chain, prior.as_ref(), size_now, index);
    let mut window = vec![0u8; WINDOW_BLOCKS * BLOCK_SIZE];
    let mut summing = Summing::new(chain);
    let mut writer: Option<pgbr_storage::BlockingWriter> = None;
    let mut blocks: Vec<BlockRef> = Vec::new();
    let mut page_errors = Vec::new();
    let (mut size, mut written, mut read) = (0u64, 0u64, 0u64);
    let mut write = |sealed: &[u8], block: &mut BlockRef| -> Result<()> {
        let w = writer.get_or_insert_with(|| storage.blocking_writer(object, handle.clone()));
        w.write_all(sealed).map_err(io_err)?;
        block.offset = written;
        block.length = sealed.len() as u64;
        written += sealed.len() as u64;
        Ok(())
    };
    loop {
        let first = blocks.len();
        let skipped: Vec<Option<BlockRef>> = (first..first + WINDOW_BLOCKS).map(vouched).collect();
        let marks: Vec<bool> = skipped.iter().map(Option::is_some).collect();
        let got = read_window(&file, &mut window, first, &marks).map_err(read_err)?;
        read += got.bytes;
        let chunks: Vec<&[u8]> = got.read.iter().map(|(_, r)| &window[r.clone()]).collect();
        let indexes: Vec<usize> = got.read.iter().map(|(i, _)| *i).collect();
        // Without deltas, changed blocks are sealed as they are examined; delta coding (an
        // incremental's few changed blocks) follows, in order, on this thread.
        let two = !deltas && chunks.len() > 1 && spare_core();
        // The file's checksum takes the window in while the helper thread, if any, examines.
        let alongside = || summing.window(&window, &got, first == 0 && !marks[0]);
        let examined = examine_window(&chunks, &indexes, &how, two, alongside).map_err(io_err)?;
        // The window's entries in file order: vouched-for blocks, and those read, up to the
        // end of the file.
        let mut examined = examined.into_iter().zip(chunks.iter().copied()).peekable();
        // Changed blocks left to code against their earlier version: (index in `blocks`, the
        // block, its delta base).
        let mut changed: Vec<(usize, &[u8], Option<BlockBase>)> = Vec::new();
        let last = got.read.last().map(|(i, _)| *i);
        for (k, vouched) in skipped.into_iter().enumerate() {
            let index = first + k;
            if got.end_of_file && last.is_none_or(|l| index > l) {
                break;
            }
            if let Some(block) = vouched {
                size += BLOCK_SIZE as u64;
                blocks.push(block);
                continue;
            }
            let Some((e, chunk)) = examined.next() else {
                break;
            };
            page_errors.extend(e.page_errors);
            size += e.len as u64;
            let mut block = e.block;
            match e.sealed {
                Some(sealed) => write(&sealed, &mut block)?,
                None if block.reference.is_none() => changed.push((blocks.len(), chunk, e.base)),
                None => {}
            }
            blocks.push(block);
        }
        if !changed.is_empty() {
            let bases = prior.as_ref().and_then(|p| p.bases.as_ref());
            code_changed(
                changed,
                &mut blocks,
                bases,
                storage,
                codec,
                handle,
                src,
                &mut write,
            )?;
        }
        if got.end_of_file {
            break;
        }
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    Ok(Some(StoredBlocks {
        checksum: summing.finish(&blocks, size, src)?,
        size,
        stored_size: written,
        blocks,
        page_errors,
        read,
    }))
}

/// Turns off the kernel's read-ahead for `file`, which reads only the blocks WAL summaries name:
/// read-ahead after each would read much of the rest anyway. Best effort (advice not taken
/// changes nothing but the bytes read).
fn without_read_ahead(file: &File) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: posix_fadvise takes a valid open descriptor, which `file` holds for the call; it
    // reads no memory of ours.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM);
    }
}

/// The prior backup's entry of block `index` when the summaries of `chain` vouch for it: whole in
/// both versions of the file (`size_now` bytes now), with its chaining value kept, and not the
/// first (which is always read).
fn vouched_for(
    chain: Chain<'_>,
    prior: Option<&Prior<'_>>,
    size_now: u64,
    index: usize,
) -> Option<BlockRef> {
    let (Chain::Skip(changes), Some(p)) = (chain, prior) else {
        return None;
    };
    let end = (index as u64 + 1) * BLOCK_SIZE as u64;
    let whole = index > 0 && end <= size_now && end <= p.size;
    let b = p.blocks.get(index).filter(|b| b.chain.is_some())?;
    (whole && !changes.may_have_changed(index)).then(|| referenced(b, p.label))
}

/// [`examine_blocks`] of a window's blocks read, its halves on two threads with `two`; runs
/// `alongside` on this thread first (while the helper thread starts on its half).
fn examine_window(
    chunks: &[&[u8]],
    indexes: &[usize],
    how: &Examine,
    two: bool,
    alongside: impl FnOnce(),
) -> io::Result<Vec<Examined>> {
    if !two {
        alongside();
        return examine_blocks(chunks, indexes, how);
    }
    let mid = chunks.len() / 2;
    let (first, second) = std::thread::scope(|scope| {
        let helper = scope.spawn(|| examine_blocks(&chunks[mid..], &indexes[mid..], how));
        alongside();
        let first = examine_blocks(&chunks[..mid], &indexes[..mid], how);
        let second = helper
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a block sealing thread panicked")));
        (first, second)
    });
    let mut all = first?;
    all.extend(second?);
    Ok(all)
}

/// How a file's checksum is made as its windows go by.
enum Summing {
    /// BLAKE3 of the bytes read, which are the whole file in order (nothing is skipped).
    Bytes(Box<blake3::Hasher>),
    /// From the blocks' chaining values, or, for a file of one block, BLAKE3 of that block.
    Chain { single_block: Option<Checksum> },
}

impl Summing {
    fn new(chain: Chain<'_>) -> Summing {
        match chain {
            Chain::Off => Summing::Bytes(Box::default()),
            Chain::Record | Chain::Skip(_) => Summing::Chain { single_block: None },
        }
    }

    /// Takes in the blocks `got` read into `window`; `from_start`: the first block read is the
    /// file's first.
    fn window(&mut self, window: &[u8], got: &WindowRead, from_start: bool) {
        match self {
            Summing::Bytes(hasher) => {
                for (_, range) in &got.read {
                    hasher.update(&window[range.clone()]);
                }
            }
            Summing::Chain { single_block } => {
                if from_start && got.bytes <= BLOCK_SIZE as u64 {
                    let whole = &window[..got.bytes as usize];
                    *single_block = Some(Checksum::from(blake3::hash(whole)));
                }
            }
        }
    }

    /// The checksum of the file `src`, `size` bytes stored as `blocks`.
    fn finish(self, blocks: &[BlockRef], size: u64, src: &Path) -> Result<Checksum> {
        let single_block = match self {
            Summing::Bytes(hasher) => return Ok(Checksum::from(hasher.finalize())),
            Summing::Chain { single_block } => single_block,
        };
        if let Some(sum) = single_block.filter(|_| size <= BLOCK_SIZE as u64) {
            return Ok(sum);
        }
        blocks_checksum(blocks, size, BLOCK_SIZE as u64).ok_or_else(|| {
            Error::Internal(format!(
                "{}: a block of the file has no chaining value",
                src.display()
            ))
        })
    }
}

/// Seals the changed blocks of a window that [`examine_blocks`] left to code, `changed` being
/// (index in `blocks`, the block, its delta base): one with a base as a delta against its
/// earlier version (the window's bases are fetched together through `bases`), the others whole.
/// Hands each to `write` with its entry, in order.
#[allow(clippy::too_many_arguments)]
fn code_changed(
    changed: Vec<(usize, &[u8], Option<BlockBase>)>,
    blocks: &mut [BlockRef],
    bases: Option<&BaseReader<'_>>,
    storage: &Storage,
    codec: &Codec,
    handle: &tokio::runtime::Handle,
    src: &Path,
    write: &mut dyn FnMut(&[u8], &mut BlockRef) -> Result<()>,
) -> Result<()> {
    let io_err = |e: io::Error| Error::io("unable to store", src, e);
    let wanted: Vec<&BlockBase> = changed.iter().filter_map(|(_, _, b)| b.as_ref()).collect();
    let plains = match bases {
        Some(reader) if !wanted.is_empty() => fetch_bases(
            storage,
            &wanted,
            reader.object_of,
            reader.codec_of,
            BLOCK_SIZE,
            handle,
        )?,
        _ => Vec::new(),
    };
    let mut coder = pgbr_storage::DeltaCoder::new(codec.level).map_err(io_err)?;
    let mut next_base = plains.iter();
    for (index, chunk, base) in changed {
        let sealed = match base {
            Some(base) => {
                let plain = next_base
                    .next()
                    .ok_or_else(|| Error::Internal("a delta base was not fetched".into()))?;
                let delta = coder.encode(plain, chunk).map_err(io_err)?;
                blocks[index].base = Some(base);
                pgbr_crypto::encrypt_owned(codec.cipher, codec.key.as_ref(), delta)
                    .map_err(io_err)?
            }
            None => seal(codec, chunk).map_err(io_err)?,
        };
        write(&sealed, &mut blocks[index])?;
    }
    Ok(())
}
