//! A file stored as blocks: each compared with the prior backup's, the changed ones written.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use pgbr_manifest::{block_hash, BlockBase, BlockRef, Checksum, PAGE_SIZE};
use pgbr_storage::{CompressType, Storage};

use super::pieces::fetch_bases;
use super::{BaseReader, Prior, StoredBlocks, BLOCK_SIZE};
use crate::error::{Error, Result};
use crate::pipeline::codec::{seal, Codec};
use crate::pipeline::pages::{check_pages, PageCheckSpec};
use crate::pipeline::read_full;

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

/// Hashes, page-checks and compares with `prior` the blocks `chunks` of a file, the first being
/// block `first_index`. Without `deltas`, seals each changed block with `codec`; with them, the
/// caller codes changed blocks against their bases. Independent of the blocks before, so a
/// window's halves can be examined on two threads.
fn examine_blocks(
    chunks: &[&[u8]],
    first_index: usize,
    pages: Option<&PageCheckSpec>,
    prior: Option<(&[BlockRef], &str)>,
    deltas: bool,
    codec: &Codec,
) -> io::Result<Vec<Examined>> {
    let pages_per_block = BLOCK_SIZE / PAGE_SIZE;
    let mut out = Vec::with_capacity(chunks.len());
    for (k, chunk) in chunks.iter().enumerate() {
        let index = first_index + k;
        let mut page_errors = Vec::new();
        if let Some(spec) = pages {
            check_pages(
                chunk,
                (index * pages_per_block) as u64,
                spec,
                &mut page_errors,
            );
        }
        let hash = block_hash(chunk);
        let before = prior.and_then(|(blocks, label)| blocks.get(index).map(|b| (b, label)));
        let examined = match before {
            Some((b, label)) if b.hash == hash => Examined {
                len: chunk.len(),
                block: BlockRef {
                    hash,
                    reference: Some(b.reference.clone().unwrap_or_else(|| label.into())),
                    offset: b.offset,
                    length: b.length,
                    base: b.base.clone(),
                },
                base: None,
                sealed: None,
                page_errors,
            },
            _ => {
                let base = before.filter(|_| deltas).map(|(b, label)| {
                    b.base.clone().unwrap_or_else(|| BlockBase {
                        reference: b.reference.clone().unwrap_or_else(|| label.into()),
                        offset: b.offset,
                        length: b.length,
                    })
                });
                let sealed = if deltas {
                    None
                } else {
                    Some(seal(codec, chunk)?)
                };
                Examined {
                    len: chunk.len(),
                    block: BlockRef {
                        hash,
                        reference: None,
                        offset: 0,
                        length: 0,
                        base: None,
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

/// Stores `src` as blocks at `object`: blocks whose hash matches `prior` (the same file's block
/// map in the prior backup) are referenced, the others are written. With `prior.bases` and
/// zstd, a changed block is coded as a delta against its earlier version (the whole block the
/// prior version is, or is itself a delta against), so a page that changed in a few bytes costs a
/// few bytes. No object is written when no block changed. While `spare_core()` says a core is
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
    spare_core: &dyn Fn() -> bool,
    handle: &tokio::runtime::Handle,
) -> Result<Option<StoredBlocks>> {
    let mut file = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("unable to open", src, e)),
    };
    let io_err = |e: io::Error| Error::io("unable to store", src, e);
    // Changed blocks are delta-coded with zstd, when earlier versions can be read.
    let deltas = codec.compress_type == CompressType::Zst
        && prior.as_ref().is_some_and(|p| p.bases.is_some());
    let prior_blocks = prior.as_ref().map(|p| (p.blocks, p.label));
    let mut window = vec![0u8; WINDOW_BLOCKS * BLOCK_SIZE];
    let mut hasher = blake3::Hasher::new();
    let mut writer: Option<pgbr_storage::BlockingWriter> = None;
    let mut blocks: Vec<BlockRef> = Vec::new();
    let mut page_errors = Vec::new();
    let mut size = 0u64;
    let mut written = 0u64;
    let mut write = |sealed: &[u8], block: &mut BlockRef| -> Result<()> {
        let w = writer.get_or_insert_with(|| storage.blocking_writer(object, handle.clone()));
        w.write_all(sealed).map_err(io_err)?;
        block.offset = written;
        block.length = sealed.len() as u64;
        written += sealed.len() as u64;
        Ok(())
    };
    loop {
        let n =
            read_full(&mut file, &mut window).map_err(|e| Error::io("unable to read", src, e))?;
        if n == 0 {
            break;
        }
        let chunks: Vec<&[u8]> = window[..n].chunks(BLOCK_SIZE).collect();
        let first_index = blocks.len();
        // Without deltas, changed blocks are sealed as they are examined; delta coding (an
        // incremental's few changed blocks) follows, in order, on this thread.
        let examine = |range: std::ops::Range<usize>| {
            examine_blocks(
                &chunks[range.clone()],
                first_index + range.start,
                pages.as_ref(),
                prior_blocks,
                deltas,
                codec,
            )
        };
        let examined = if !deltas && chunks.len() > 1 && spare_core() {
            let mid = chunks.len() / 2;
            let (first, second) = std::thread::scope(|scope| {
                let helper = scope.spawn(|| examine(mid..chunks.len()));
                hasher.update(&window[..n]);
                let first = examine(0..mid);
                let second = helper
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a block sealing thread panicked")));
                (first, second)
            });
            let mut all = first.map_err(io_err)?;
            all.extend(second.map_err(io_err)?);
            all
        } else {
            hasher.update(&window[..n]);
            examine(0..chunks.len()).map_err(io_err)?
        };
        // Changed blocks left to code against their earlier version: (index in `blocks`, the
        // block, its delta base).
        let mut changed: Vec<(usize, &[u8], Option<BlockBase>)> = Vec::new();
        for (e, chunk) in examined.into_iter().zip(&chunks) {
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
        if changed.is_empty() {
            continue;
        }
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
    if let Some(w) = writer {
        w.finish()?;
    }
    Ok(Some(StoredBlocks {
        size,
        checksum: Checksum::from(hasher.finalize()),
        stored_size: written,
        blocks,
        page_errors,
    }))
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
