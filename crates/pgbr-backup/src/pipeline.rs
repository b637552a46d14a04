//! The per-file work of backup and restore, run on `process-max` blocking worker threads.
//!
//! Backup streams each file once: read → BLAKE3 → page check → compress → encrypt → store, in
//! [`CHUNK`]-sized pieces, so a worker's memory is a chunk plus the codec state plus one upload part.
//! Restore runs the same chain backwards and verifies the checksum before a file takes its name.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pgbr_crypto::{CipherType, DataKey, DecryptReader, EncryptWriter};
use pgbr_manifest::{
    block_hash, check_page, BlockBase, BlockRef, BundleRef, Checksum, PageCheck, PAGE_SIZE,
};
use pgbr_storage::{CompressType, CompressWriter, DecompressReader, Storage};

use crate::error::{Error, Result};

/// Read size of the pipelines.
pub(crate) const CHUNK: usize = 1024 * 1024;
/// Buffer for reading a bundle's pieces in order: they are small, and a local object is read in
/// the caller's sizes.
const BUNDLE_READ_BUFFER: usize = 256 * 1024;
/// Pages in one 1 GiB relation segment file.
const PAGES_PER_SEGMENT: u64 = 131072;

/// Which of `workers` parallel workers are busy with a unit of work: fewer than all means the
/// work ran out for some, so one still working on a big file may use a second core.
pub(crate) struct Busy {
    workers: usize,
    active: std::sync::atomic::AtomicUsize,
}

impl Busy {
    pub(crate) fn new(workers: usize) -> Busy {
        Busy {
            workers,
            active: Default::default(),
        }
    }

    /// Runs `unit` counted as busy.
    pub(crate) fn run<T>(&self, unit: impl FnOnce() -> T) -> T {
        use std::sync::atomic::Ordering::Relaxed;
        self.active.fetch_add(1, Relaxed);
        let out = unit();
        self.active.fetch_sub(1, Relaxed);
        out
    }

    /// Whether a worker is idle.
    pub(crate) fn spare_core(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Relaxed) < self.workers
    }
}

/// Runs `work` over `jobs` on `workers` blocking threads, stopping at the first error.
pub(crate) async fn run_parallel<J, R, F>(jobs: Vec<J>, workers: usize, work: F) -> Result<Vec<R>>
where
    J: Send + 'static,
    R: Send + 'static,
    F: Fn(J) -> Result<R> + Send + Sync + 'static,
{
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    let failed = Arc::new(AtomicBool::new(false));
    let work = Arc::new(work);
    let mut handles = Vec::new();
    for _ in 0..workers.max(1) {
        let queue = Arc::clone(&queue);
        let failed = Arc::clone(&failed);
        let work = Arc::clone(&work);
        handles.push(tokio::task::spawn_blocking(move || -> Result<Vec<R>> {
            let mut out = Vec::new();
            loop {
                if failed.load(Ordering::Relaxed) {
                    return Ok(out);
                }
                let job = match queue.lock() {
                    Ok(mut q) => q.pop_front(),
                    Err(_) => return Err(Error::Internal("work queue poisoned".into())),
                };
                let Some(job) = job else {
                    return Ok(out);
                };
                match work(job) {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        }));
    }
    let mut results = Vec::new();
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(mut r)) => results.append(&mut r),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(Error::Internal(format!("worker failed: {e}")));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

/// How stored bytes are encoded.
#[derive(Clone)]
pub(crate) struct Codec {
    pub compress_type: CompressType,
    pub level: i32,
    pub cipher: CipherType,
    pub key: Option<DataKey>,
    /// Extra compression threads for one stream (zstd only; 0 = none).
    pub workers: u32,
}

/// Counts bytes on their way to the store.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What storing one file produced.
pub(crate) struct Stored {
    pub size: u64,
    pub checksum: Checksum,
    pub stored_size: u64,
    pub page_errors: Vec<u32>,
}

/// Page checking for one relation file.
#[derive(Clone, Copy)]
pub(crate) struct PageCheckSpec {
    /// Segment number of the file (`16384.3` -> 3).
    pub segment: u64,
    /// Pages at or after this LSN are rewritten by WAL replay and not checked.
    pub start_lsn: u64,
}

/// Where [`store_file`] publishes what it stored.
pub(crate) enum Publish<'a> {
    /// At this object (nothing is stored for an empty file).
    At(&'a str),
    /// Under `name_of(checksum)`, which must be in the directory of `pending` (the name it is
    /// written under meanwhile, which never becomes visible): one pass, where a name that
    /// carries the checksum would otherwise need a hashing pass first. Only for a local
    /// repository ([`Storage::is_local`]). An empty file is stored too.
    Named {
        pending: &'a str,
        name_of: &'a dyn Fn(&Checksum) -> String,
    },
}

/// Stores the local file `src`: reads, hashes, page-checks, compresses, encrypts and writes it
/// in one pass, and publishes it as `to` says. `Ok(None)` if the file vanished before it could
/// be opened (PostgreSQL dropped it).
pub(crate) fn store_file(
    src: &Path,
    storage: &Storage,
    to: Publish<'_>,
    codec: &Codec,
    pages: Option<PageCheckSpec>,
    handle: &tokio::runtime::Handle,
) -> Result<Option<Stored>> {
    let object = match &to {
        Publish::At(object) => object,
        Publish::Named { pending, .. } => pending,
    };
    let mut file = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("unable to open", src, e)),
    };
    let mut buf = vec![0u8; CHUNK];
    let mut filled =
        read_full(&mut file, &mut buf).map_err(|e| Error::io("unable to read", src, e))?;
    let mut hasher = blake3::Hasher::new();
    if filled == 0 {
        let mut stored = Stored {
            size: 0,
            checksum: Checksum::from(hasher.finalize()),
            stored_size: 0,
            page_errors: Vec::new(),
        };
        if let Publish::Named { pending, name_of } = to {
            // Named: an empty file is still stored as a (sealed) piece, so that it reads back.
            let sealed = seal(codec, &[]).map_err(|e| Error::io("unable to store", src, e))?;
            let mut w = storage.blocking_writer(pending, handle.clone());
            w.write_all(&sealed)
                .map_err(|e| Error::io("unable to store", src, e))?;
            w.finish_as(&name_of(&stored.checksum))?;
            stored.stored_size = sealed.len() as u64;
        }
        return Ok(Some(stored));
    }
    let sink = Counting {
        inner: storage.blocking_writer(object, handle.clone()),
        count: 0,
    };
    let io_err = |e: io::Error| Error::io("unable to store", src, e);
    let enc = EncryptWriter::new(codec.cipher, codec.key.as_ref(), sink).map_err(io_err)?;
    let mut comp =
        CompressWriter::with_workers(codec.compress_type, codec.level, codec.workers, enc)
            .map_err(io_err)?;
    let mut size = 0u64;
    let mut page_errors = Vec::new();
    while filled > 0 {
        let chunk = &buf[..filled];
        hasher.update(chunk);
        if let Some(spec) = &pages {
            check_pages(chunk, size / PAGE_SIZE as u64, spec, &mut page_errors);
        }
        comp.write_all(chunk).map_err(io_err)?;
        size += filled as u64;
        filled = read_full(&mut file, &mut buf).map_err(|e| Error::io("unable to read", src, e))?;
    }
    let enc = comp.finish().map_err(io_err)?;
    let sink = enc.finish().map_err(io_err)?;
    let stored = Stored {
        size,
        checksum: Checksum::from(hasher.finalize()),
        stored_size: sink.count,
        page_errors,
    };
    match to {
        Publish::At(_) => sink.inner.finish()?,
        Publish::Named { name_of, .. } => sink.inner.finish_as(&name_of(&stored.checksum))?,
    };
    Ok(Some(stored))
}

/// Stores bytes already in memory (backup_label, tablespace_map, archived WAL).
pub(crate) async fn store_bytes(
    storage: &Storage,
    object: &str,
    codec: &Codec,
    data: &[u8],
) -> Result<u64> {
    let compressed = pgbr_storage::compress_to_vec(codec.compress_type, codec.level, data)
        .map_err(|e| Error::Internal(format!("compressing {object}: {e}")))?;
    let sealed = pgbr_crypto::encrypt_owned(codec.cipher, codec.key.as_ref(), compressed)
        .map_err(|e| Error::Internal(format!("encrypting {object}: {e}")))?;
    let n = sealed.len() as u64;
    storage.put(object, bytes::Bytes::from(sealed)).await?;
    Ok(n)
}

/// Fills `buf` as far as the file allows; returns the bytes read (0 at end of file).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streams `object` through decryption and decompression into `dest`, returning the plaintext's
/// size and BLAKE3 hex. The caller compares them with the manifest before renaming `dest`.
pub(crate) fn fetch_to_file(
    storage: &Storage,
    object: &str,
    codec: &Codec,
    dest: &mut impl Write,
    dest_path: &Path,
    handle: &tokio::runtime::Handle,
) -> Result<(u64, Checksum)> {
    let raw = storage.blocking_reader(object, handle.clone())?;
    let corrupt = |e: io::Error| {
        Error::Corrupt(format!(
            "{object}: cannot be read back ({e}); the stored file is damaged or the key is wrong"
        ))
    };
    let dec = DecryptReader::new(codec.cipher, codec.key.as_ref(), raw).map_err(corrupt)?;
    let mut plain = DecompressReader::new(codec.compress_type, dec).map_err(corrupt)?;
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    loop {
        let n = match read_full(&mut plain, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                // A storage failure surfaces as io::Error too; keep its text.
                return Err(corrupt(e));
            }
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dest.write_all(&buf[..n])
            .map_err(|e| Error::io("unable to write", dest_path, e))?;
        size += n as u64;
    }
    Ok((size, Checksum::from(hasher.finalize())))
}

/// Size and BLAKE3 hex of a stored object's plaintext (read, decrypted, decompressed).
pub(crate) fn hash_object(
    storage: &Storage,
    object: &str,
    codec: &Codec,
    handle: &tokio::runtime::Handle,
) -> Result<(u64, Checksum)> {
    fetch_to_file(
        storage,
        object,
        codec,
        &mut io::sink(),
        Path::new(object),
        handle,
    )
}

/// Files at least this large are hashed on two threads by [`hash_file`].
const PARALLEL_HASH_MIN: u64 = 2 * 1024 * 1024;

/// BLAKE3 hex and size of a local file (archive-push names a segment by it; delta restore
/// compares it with the manifest). A big file is hashed on two threads, one per half of the
/// BLAKE3 tree, joined at the root: the same hash as one pass, in about half the time.
pub(crate) fn hash_file(path: &Path) -> io::Result<(u64, Checksum)> {
    use blake3::hazmat::{left_subtree_len, merge_subtrees_root, HasherExt, Mode};
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < PARALLEL_HASH_MIN {
        let mut hasher = blake3::Hasher::new();
        let size = hash_range(&file, 0, u64::MAX, &mut hasher)?;
        return Ok((size, Checksum::from(hasher.finalize())));
    }
    let left_len = left_subtree_len(len);
    let (left, right) = std::thread::scope(|scope| {
        let right = scope.spawn(|| {
            let mut hasher = blake3::Hasher::new();
            hasher.set_input_offset(left_len);
            let n = hash_range(&file, left_len, u64::MAX, &mut hasher)?;
            Ok::<_, io::Error>((n, hasher.finalize_non_root()))
        });
        let mut hasher = blake3::Hasher::new();
        let left =
            hash_range(&file, 0, left_len, &mut hasher).map(|n| (n, hasher.finalize_non_root()));
        let right = right
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")));
        (left, right)
    });
    let ((left_read, left_cv), (right_read, right_cv)) = (left?, right?);
    if left_read != left_len || right_read == 0 {
        // The file shrank while it was read: hash what is there now, in one pass.
        let mut hasher = blake3::Hasher::new();
        let size = hash_range(&file, 0, u64::MAX, &mut hasher)?;
        return Ok((size, Checksum::from(hasher.finalize())));
    }
    let root = merge_subtrees_root(&left_cv, &right_cv, Mode::Hash);
    Ok((left_read + right_read, Checksum::from(root)))
}

/// The BLAKE3 hash of `len` bytes from the chaining values of their consecutive parts of
/// `part_len` bytes each (the last may be shorter), each hashed on its own with
/// `set_input_offset(its start)` and `finalize_non_root`: the hash one pass over all of them
/// gives, whichever threads hashed which part. `part_len` must be a power of two of at least one
/// BLAKE3 chunk, and there must be two parts or more; `None` when the arguments do not describe
/// such a split (a caller's mistake, never a guess).
pub(crate) fn merge_part_hashes(
    parts: &[blake3::hazmat::ChainingValue],
    part_len: u64,
    len: u64,
) -> Option<blake3::Hash> {
    use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, Mode};
    // BLAKE3's own tree: each node's left subtree holds the largest power of two of bytes that
    // leaves its right one at least a byte. With `len` above `part_len`, that is a whole
    // number of parts, so the parts are the tree's subtrees down to their own roots.
    fn subtree(
        parts: &[blake3::hazmat::ChainingValue],
        part_len: u64,
        len: u64,
    ) -> blake3::hazmat::ChainingValue {
        match parts {
            [one] => *one,
            _ => {
                let left = left_subtree_len(len);
                let (l, r) = parts.split_at((left / part_len) as usize);
                merge_subtrees_non_root(
                    &subtree(l, part_len, left),
                    &subtree(r, part_len, len - left),
                    Mode::Hash,
                )
            }
        }
    }
    let well_formed = part_len.is_power_of_two()
        && part_len >= blake3::CHUNK_LEN as u64
        && len > part_len
        && len.div_ceil(part_len) == parts.len() as u64;
    if !well_formed {
        return None;
    }
    let left = left_subtree_len(len);
    let (l, r) = parts.split_at((left / part_len) as usize);
    Some(merge_subtrees_root(
        &subtree(l, part_len, left),
        &subtree(r, part_len, len - left),
        Mode::Hash,
    ))
}

/// Feeds up to `limit` bytes of `file` from `offset` (to its end) into `hasher`; returns the
/// bytes read.
fn hash_range(
    file: &File,
    offset: u64,
    limit: u64,
    hasher: &mut blake3::Hasher,
) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < limit {
        let want = (limit - done).min(CHUNK as u64) as usize;
        let n = read_full_at(file, &mut buf[..want], offset + done)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(done)
}

/// Fills `buf` from `offset` as far as the file allows; fewer bytes only at its end.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Block size of block-mapped files: each block is compressed and encrypted on its own, so an
/// incremental stores only changed blocks and restore can fetch any block by range.
pub(crate) const BLOCK_SIZE: usize = 64 * 1024;
/// Files at least this large are stored as blocks.
pub(crate) const BLOCK_THRESHOLD: u64 = 1024 * 1024;

/// What storing one block-mapped file produced.
pub(crate) struct StoredBlocks {
    pub size: u64,
    pub checksum: Checksum,
    pub stored_size: u64,
    pub blocks: Vec<BlockRef>,
    pub page_errors: Vec<u32>,
}

/// Compresses then encrypts one piece of data held in memory.
pub(crate) fn seal(codec: &Codec, data: &[u8]) -> io::Result<Vec<u8>> {
    let compressed = pgbr_storage::compress_to_vec(codec.compress_type, codec.level, data)?;
    pgbr_crypto::encrypt_owned(codec.cipher, codec.key.as_ref(), compressed)
}

/// Decrypts then decompresses one piece stored with [`seal`].
pub(crate) fn unseal(codec: &Codec, data: &[u8]) -> io::Result<Vec<u8>> {
    let compressed = pgbr_crypto::decrypt_borrowed(codec.cipher, codec.key.as_ref(), data)?;
    pgbr_storage::decompress_to_vec(codec.compress_type, &compressed)
}

fn check_pages(chunk: &[u8], first_page_in_file: u64, spec: &PageCheckSpec, errors: &mut Vec<u32>) {
    for (i, page) in chunk.chunks_exact(PAGE_SIZE).enumerate() {
        let in_file = first_page_in_file + i as u64;
        let block = u32::try_from(spec.segment * PAGES_PER_SEGMENT + in_file).unwrap_or(u32::MAX);
        if let PageCheck::Mismatch { .. } = check_page(page, block, spec.start_lsn) {
            errors.push(u32::try_from(in_file).unwrap_or(u32::MAX));
        }
    }
}

/// A coder for decoding deltas (its level only matters when encoding).
fn delta_decoder<'b>() -> Result<pgbr_storage::DeltaCoder<'b>> {
    pgbr_storage::DeltaCoder::new(3).map_err(|e| Error::Internal(format!("delta decoder: {e}")))
}

/// Opens a piece stored delta-coded against `base` (at most `max_size` bytes).
fn unseal_delta<'b>(
    codec: &Codec,
    coder: &mut pgbr_storage::DeltaCoder<'b>,
    base: &'b [u8],
    data: &[u8],
    max_size: usize,
) -> io::Result<Vec<u8>> {
    let delta = pgbr_crypto::decrypt_borrowed(codec.cipher, codec.key.as_ref(), data)?;
    coder.decode_at_most(base, &delta, max_size)
}

/// The prior backup's copy of a file stored as blocks, for an incremental store of it.
pub(crate) struct Prior<'a> {
    /// Its block map.
    pub blocks: &'a [BlockRef],
    /// Label of the prior backup (blocks with no reference are in it).
    pub label: &'a str,
    /// Where earlier versions of changed blocks can be read as delta bases; `None` stores
    /// changed blocks whole.
    pub bases: Option<BaseReader<'a>>,
}

/// Reads stored blocks of this file in earlier backups.
pub(crate) struct BaseReader<'a> {
    /// The object of this file's blocks in the backup with that label.
    pub object_of: &'a (dyn Fn(Option<&str>) -> String + Sync),
    /// How that backup stored them; an error when it cannot be known.
    pub codec_of: &'a (dyn Fn(Option<&str>) -> Result<Codec> + Sync),
}

/// Blocks read, hashed and stored together: a window's delta bases are fetched with as few
/// ranged reads as their places allow.
const WINDOW_BLOCKS: usize = 32;

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
        let wanted: Vec<&BlockBase> = changed.iter().filter_map(|(_, _, b)| b.as_ref()).collect();
        let plains = match prior.as_ref().and_then(|p| p.bases.as_ref()) {
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

/// Largest gap between two wanted pieces read through in one ranged read.
const MAX_GAP_BYTES: u64 = 256 * 1024;

/// Where a stored piece is: in the object of the backup `reference` names (`None`: this one),
/// `length` bytes from `offset`.
#[derive(Clone, Copy)]
struct PieceAt<'a> {
    reference: Option<&'a str>,
    offset: u64,
    length: u64,
}

impl<'a> From<&'a BlockRef> for PieceAt<'a> {
    fn from(b: &'a BlockRef) -> Self {
        PieceAt {
            reference: b.reference.as_deref(),
            offset: b.offset,
            length: b.length,
        }
    }
}

impl<'a> From<&'a BlockBase> for PieceAt<'a> {
    fn from(b: &'a BlockBase) -> Self {
        PieceAt {
            reference: Some(&b.reference),
            offset: b.offset,
            length: b.length,
        }
    }
}

/// One ranged read that [`plan_reads`] plans: `range` of the object of the backup `reference`
/// names, holding the pieces at `members` (indexes into the pieces planned).
struct PlannedRead<'a> {
    reference: Option<&'a str>,
    range: std::ops::Range<u64>,
    members: Vec<usize>,
}

/// Plans the ranged reads that fetch `pieces`. Pieces of one object that lie at most
/// [`MAX_GAP_BYTES`] apart are fetched with one read spanning at most [`MAX_RUN_BYTES`] (one
/// piece may be longer): an incremental's blocks alternate between its own object and earlier
/// ones, and the delta bases of its changed blocks lie between the blocks still current in the
/// earlier object, so one read per object covers a window of blocks where one read per run of
/// consecutive pieces would be hundreds.
fn plan_reads<'a>(pieces: &[PieceAt<'a>]) -> Vec<PlannedRead<'a>> {
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    order.sort_by_key(|&i| (pieces[i].reference, pieces[i].offset));
    let mut reads: Vec<PlannedRead> = Vec::new();
    for i in order {
        let p = pieces[i];
        let p_end = p.offset.saturating_add(p.length);
        match reads.last_mut() {
            // Sorted: a piece of the same object starts at or after the read's start.
            Some(read)
                if read.reference == p.reference
                    && p.offset <= read.range.end.saturating_add(MAX_GAP_BYTES)
                    && p_end - read.range.start <= MAX_RUN_BYTES =>
            {
                read.range.end = read.range.end.max(p_end);
                read.members.push(i);
            }
            _ => reads.push(PlannedRead {
                reference: p.reference,
                range: p.offset..p_end,
                members: vec![i],
            }),
        }
    }
    reads
}

/// Reads the stored bytes of `pieces` (each in the object `object_of(reference)` names) with
/// the reads [`plan_reads`] plans, handed back in the order given.
fn fetch_pieces(
    storage: &Storage,
    pieces: &[PieceAt],
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
    handle: &tokio::runtime::Handle,
) -> Result<Vec<bytes::Bytes>> {
    let mut out = vec![bytes::Bytes::new(); pieces.len()];
    for read in plan_reads(pieces) {
        let object = object_of(read.reference);
        let raw = storage.get_range_blocking(&object, read.range.clone(), handle)?;
        for i in read.members {
            let p = pieces[i];
            let start = usize::try_from(p.offset - read.range.start).unwrap_or(usize::MAX);
            out[i] = start
                .checked_add(usize::try_from(p.length).unwrap_or(usize::MAX))
                .filter(|&piece_end| piece_end <= raw.len())
                .map(|piece_end| raw.slice(start..piece_end))
                .ok_or_else(|| {
                    Error::Corrupt(format!("{object}: shorter than its block map says"))
                })?;
        }
    }
    Ok(out)
}

/// Opens one whole (not delta-coded) stored block read as a delta base, of at most
/// `max_size` bytes.
fn open_base(
    base: PieceAt,
    raw: &[u8],
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
    codec_of: &(dyn Fn(Option<&str>) -> Result<Codec> + Sync),
    max_size: usize,
) -> Result<Vec<u8>> {
    let object = object_of(base.reference);
    let plain = open_piece(&codec_of(base.reference)?, &object, base.offset, raw)?;
    if plain.len() > max_size {
        return Err(Error::Corrupt(format!(
            "{object} (bytes {}..{}): a block of {} bytes, more than {max_size}",
            base.offset,
            base.offset + raw.len() as u64,
            plain.len()
        )));
    }
    Ok(plain)
}

/// Reads and opens the whole (not delta-coded) stored blocks at `bases`, in order (see
/// [`fetch_pieces`]). `object_of` and `codec_of` as for [`fetch_blocks`]; each block is at most
/// `max_size` bytes.
fn fetch_bases(
    storage: &Storage,
    bases: &[&BlockBase],
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
    codec_of: &(dyn Fn(Option<&str>) -> Result<Codec> + Sync),
    max_size: usize,
    handle: &tokio::runtime::Handle,
) -> Result<Vec<Vec<u8>>> {
    let pieces: Vec<PieceAt> = bases.iter().map(|&b| PieceAt::from(b)).collect();
    let raws = fetch_pieces(storage, &pieces, object_of, handle)?;
    pieces
        .iter()
        .zip(&raws)
        .map(|(&base, raw)| open_base(base, raw, object_of, codec_of, max_size))
        .collect()
}

/// One small file packed into a bundle.
pub(crate) struct Bundled {
    pub stored: Stored,
    pub bundle: Option<BundleRef>,
}

/// Packs `files` into one bundle object; each file's bytes are sealed on their own, so restore
/// reads one file by range. Vanished files come back as `None`. No object for empty input.
pub(crate) fn store_bundle(
    files: &[(PathBuf, Option<PageCheckSpec>)],
    storage: &Storage,
    object: &str,
    id: u64,
    codec: &Codec,
    handle: &tokio::runtime::Handle,
) -> Result<Vec<Option<Bundled>>> {
    let ahead = OpenAhead::new(files.iter().map(|(path, _)| path.as_path()).collect());
    std::thread::scope(|scope| {
        scope.spawn(|| ahead.run());
        // Stops the opening thread however this ends (an error, a panic), before the scope joins it.
        let ahead = ahead.stop_when_dropped();
        let mut writer: Option<pgbr_storage::BlockingWriter> = None;
        let mut offset = 0u64;
        let mut out = Vec::with_capacity(files.len());
        for (index, (src, pages)) in files.iter().enumerate() {
            let data = match ahead.open(index).and_then(read_whole) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    out.push(None);
                    continue;
                }
                Err(e) => return Err(Error::io("unable to read", src, e)),
            };
            let mut page_errors = Vec::new();
            if let Some(spec) = pages {
                check_pages(&data, 0, spec, &mut page_errors);
            }
            let checksum = Checksum::of(&data);
            if data.is_empty() {
                out.push(Some(Bundled {
                    stored: Stored {
                        size: 0,
                        checksum,
                        stored_size: 0,
                        page_errors,
                    },
                    bundle: None,
                }));
                continue;
            }
            let sealed = seal(codec, &data).map_err(|e| Error::io("unable to store", src, e))?;
            let w = writer.get_or_insert_with(|| storage.blocking_writer(object, handle.clone()));
            w.write_all(&sealed)
                .map_err(|e| Error::io("unable to store", src, e))?;
            out.push(Some(Bundled {
                stored: Stored {
                    size: data.len() as u64,
                    checksum,
                    stored_size: sealed.len() as u64,
                    page_errors,
                },
                bundle: Some(BundleRef {
                    id,
                    offset,
                    length: sealed.len() as u64,
                }),
            }));
            offset += sealed.len() as u64;
        }
        if let Some(w) = writer {
            w.finish()?;
        }
        Ok(out)
    })
}

/// How many files [`OpenAhead`] opens before the reader needs them (each holds a descriptor).
const OPEN_AHEAD: usize = 64;

/// Opens the files of a bundle ahead of the one reader that reads them in order, and asks the
/// kernel to read them in ([`pgbr_storage::posix::will_need`]). A bundle's files are small: read
/// one after another on a cold cache, each read would wait for the disk alone, and the open of
/// each for its inode. The reader takes the opened files over, so a warm cache pays no extra
/// open.
struct OpenAhead<'a> {
    paths: Vec<&'a Path>,
    opened: Vec<Mutex<Option<File>>>,
    progress: Mutex<Progress>,
    moved: std::sync::Condvar,
}

struct Progress {
    /// The index the reader is at; `None` once it has finished.
    reading: Option<usize>,
    /// The opening thread sleeps until the reader reaches this index (a batch at a time, so
    /// that a reader faster than the disk does not wake it for every file).
    wake_at: Option<usize>,
}

impl<'a> OpenAhead<'a> {
    fn new(paths: Vec<&'a Path>) -> Self {
        let opened = paths.iter().map(|_| Mutex::new(None)).collect();
        Self {
            paths,
            opened,
            progress: Mutex::new(Progress {
                reading: Some(0),
                wake_at: None,
            }),
            moved: std::sync::Condvar::new(),
        }
    }

    /// The opening thread: at most [`OPEN_AHEAD`] files ahead of the reader, never behind it.
    fn run(&self) {
        let mut next = 1;
        while next < self.paths.len() {
            let Ok(mut progress) = self.progress.lock() else {
                return;
            };
            loop {
                match progress.reading {
                    None => return,
                    Some(at) if next >= at + OPEN_AHEAD => {
                        progress.wake_at = Some(next - OPEN_AHEAD / 2);
                        progress = match self.moved.wait(progress) {
                            Ok(p) => p,
                            Err(_) => return,
                        };
                    }
                    Some(at) => {
                        next = next.max(at + 1);
                        break;
                    }
                }
            }
            drop(progress);
            let Some(path) = self.paths.get(next) else {
                return;
            };
            // A file that cannot be opened is left to the reader, which reports why.
            if let Ok(file) = File::open(path) {
                pgbr_storage::posix::will_need(&file);
                if let Ok(mut slot) = self.opened[next].lock() {
                    *slot = Some(file);
                }
            }
            next += 1;
        }
    }

    /// The reader: file `index`, opened ahead or now.
    fn open(&self, index: usize) -> io::Result<File> {
        self.set_reading(Some(index));
        let ahead = self.opened[index]
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        match ahead {
            Some(file) => Ok(file),
            None => File::open(self.paths[index]),
        }
    }

    /// A guard that stops the opening thread when dropped (the opened files go with `self`).
    fn stop_when_dropped(&self) -> StopWhenDropped<'_, 'a> {
        StopWhenDropped(self)
    }

    fn set_reading(&self, index: Option<usize>) {
        let Ok(mut progress) = self.progress.lock() else {
            return;
        };
        progress.reading = index;
        let wake = match (index, progress.wake_at) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(at), Some(wake_at)) => at >= wake_at,
        };
        if wake {
            progress.wake_at = None;
            self.moved.notify_one();
        }
    }
}

struct StopWhenDropped<'s, 'a>(&'s OpenAhead<'a>);

impl<'a> std::ops::Deref for StopWhenDropped<'_, 'a> {
    type Target = OpenAhead<'a>;
    fn deref(&self) -> &OpenAhead<'a> {
        self.0
    }
}

impl Drop for StopWhenDropped<'_, '_> {
    fn drop(&mut self) {
        self.0.set_reading(None);
    }
}

/// All of `file`, in one allocation of its size.
fn read_whole(mut file: File) -> io::Result<Vec<u8>> {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.read_to_end(&mut data)?;
    Ok(data)
}

/// Reads and opens one sealed piece of an object by range.
pub(crate) fn fetch_range(
    storage: &Storage,
    object: &str,
    offset: u64,
    length: u64,
    codec: &Codec,
    handle: &tokio::runtime::Handle,
) -> Result<Vec<u8>> {
    let raw = storage.get_range_blocking(object, offset..offset + length, handle)?;
    open_piece(codec, object, offset, &raw)
}

/// Reads the pieces of bundle `object` at `places` (offset and length of each, by offset) in one
/// buffered pass, handing each to `each(index in places, piece)`. Errors name the object.
pub(crate) fn read_bundle_pieces(
    storage: &Storage,
    object: &str,
    places: &[(u64, u64)],
    handle: &tokio::runtime::Handle,
    each: &mut dyn FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut reader = io::BufReader::with_capacity(
        BUNDLE_READ_BUFFER,
        storage.blocking_reader(object, handle.clone())?,
    );
    let short = || Error::Corrupt(format!("{object}: shorter than the manifest says"));
    let unreadable = |e: io::Error| Error::Corrupt(format!("{object}: cannot be read ({e})"));
    let mut position = 0u64;
    let mut piece = Vec::new();
    for (i, &(offset, length)) in places.iter().enumerate() {
        let gap = offset.checked_sub(position).ok_or_else(|| {
            Error::Corrupt(format!(
                "{object}: the manifest places two files' bytes over each other at byte {offset}"
            ))
        })?;
        let skipped =
            io::copy(&mut (&mut reader).take(gap), &mut io::sink()).map_err(unreadable)?;
        piece.clear();
        (&mut reader)
            .take(length)
            .read_to_end(&mut piece)
            .map_err(unreadable)?;
        if skipped != gap || piece.len() as u64 != length {
            return Err(short());
        }
        position = offset + length;
        each(i, &piece)?;
    }
    Ok(())
}

/// Opens one sealed piece that starts at `offset` in `object`; errors name both.
pub(crate) fn open_piece(
    codec: &Codec,
    object: &str,
    offset: u64,
    piece: &[u8],
) -> Result<Vec<u8>> {
    unseal(codec, piece).map_err(|e| {
        Error::Corrupt(format!(
            "{object} (bytes {offset}..{}): cannot be read back ({e}); the stored data is damaged or the key is wrong",
            offset + piece.len() as u64
        ))
    })
}

/// Most stored bytes fetched in one ranged read.
const MAX_RUN_BYTES: u64 = 2 * 1024 * 1024;
/// Most blocks decoded together: bounds the plaintext of a window held while it is decoded.
const MAX_WINDOW_BLOCKS: usize = 128;
/// Most stored bytes (blocks and their delta bases) fetched for one window.
const MAX_WINDOW_BYTES: u64 = 4 * 1024 * 1024;

/// Splits `blocks` into windows decoded together: at most [`MAX_WINDOW_BLOCKS`] blocks whose
/// stored bytes, with their delta bases, come to at most [`MAX_WINDOW_BYTES`] (or one block).
fn windows_of(blocks: &[BlockRef]) -> Vec<std::ops::Range<usize>> {
    let mut windows = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, b) in blocks.iter().enumerate() {
        let stored = b
            .length
            .saturating_add(b.base.as_ref().map_or(0, |base| base.length));
        if i > start
            && (i - start == MAX_WINDOW_BLOCKS || bytes.saturating_add(stored) > MAX_WINDOW_BYTES)
        {
            windows.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(stored);
    }
    if start < blocks.len() {
        windows.push(start..blocks.len());
    }
    windows
}

/// Reads the window `window` of `blocks` (their pieces and delta bases, see [`fetch_pieces`]) and
/// decodes its blocks in order, handing each to `each(index in blocks, plaintext)`.
/// `number_of(index in blocks)` is the block's number in its file, for messages.
#[allow(clippy::too_many_arguments)]
fn decode_window(
    storage: &Storage,
    blocks: &[BlockRef],
    window: std::ops::Range<usize>,
    number_of: &dyn Fn(usize) -> usize,
    block_size: u64,
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
    codec_of: &(dyn Fn(Option<&str>) -> Result<Codec> + Sync),
    handle: &tokio::runtime::Handle,
    each: &mut dyn FnMut(usize, Vec<u8>) -> Result<()>,
) -> Result<()> {
    let in_window = &blocks[window.clone()];
    // The window's stored blocks, then their delta bases.
    let mut pieces: Vec<PieceAt> = in_window.iter().map(PieceAt::from).collect();
    pieces.extend(
        in_window
            .iter()
            .filter_map(|b| b.base.as_ref())
            .map(PieceAt::from),
    );
    let raws = fetch_pieces(storage, &pieces, object_of, handle)?;
    let (own, base_raws) = raws.split_at(in_window.len());
    let bases = pieces[in_window.len()..]
        .iter()
        .zip(base_raws)
        .map(|(&base, raw)| open_base(base, raw, object_of, codec_of, block_size as usize))
        .collect::<Result<Vec<_>>>()?;
    let mut next_base = bases.iter();
    let mut coder = delta_decoder()?;
    // Consecutive blocks mostly come from one backup: look its codec up once per change.
    let mut codec: Option<(Option<&str>, Codec)> = None;
    for (k, (b, raw)) in in_window.iter().zip(own).enumerate() {
        let reference = b.reference.as_deref();
        let codec = match &codec {
            Some((r, c)) if *r == reference => c,
            _ => &codec.insert((reference, codec_of(reference)?)).1,
        };
        let plain = match b.base {
            Some(_) => match next_base.next() {
                Some(base) => unseal_delta(codec, &mut coder, base, raw, block_size as usize),
                None => return Err(Error::Internal("a delta base was not fetched".into())),
            },
            None => unseal(codec, raw),
        };
        let plain = plain.map_err(|e| {
            Error::Corrupt(format!(
                "{}: block {} cannot be read back ({e}); the stored data is damaged or the key is wrong",
                object_of(reference),
                number_of(window.start + k)
            ))
        })?;
        each(window.start + k, plain)?;
    }
    Ok(())
}

/// The blocks of `map` that its own backup stored (the others are held by earlier backups), with
/// their numbers in the file: what [`check_blocks`] checks of one backup.
pub(crate) fn own_blocks(map: &pgbr_manifest::BlockMapRef) -> (Vec<usize>, Vec<BlockRef>) {
    map.blocks
        .iter()
        .enumerate()
        .filter(|(_, b)| b.reference.is_none())
        .map(|(i, b)| (i, b.clone()))
        .unzip()
}

/// That `plain`, block number `number` of its file, matches `block`'s hash.
fn check_block_hash(
    block: &BlockRef,
    plain: &[u8],
    number: usize,
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
) -> Result<()> {
    if block_hash(plain) == block.hash {
        return Ok(());
    }
    Err(Error::Corrupt(format!(
        "{}: block {number} does not match its hash; the stored data is damaged",
        object_of(block.reference.as_deref())
    )))
}

/// Checks that each of `blocks` (stored blocks of one file, in file order, as [`own_blocks`]
/// gives them with their `numbers` in the file) reads back, opens and matches its hash, a window
/// at a time (see [`fetch_blocks`]): a few ranged reads per window, not one per block.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_blocks(
    storage: &Storage,
    blocks: &[BlockRef],
    numbers: &[usize],
    block_size: u64,
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
    codec_of: &(dyn Fn(Option<&str>) -> Result<Codec> + Sync),
    handle: &tokio::runtime::Handle,
) -> Result<()> {
    if numbers.len() != blocks.len() {
        return Err(Error::Internal(format!(
            "{} block numbers for {} blocks",
            numbers.len(),
            blocks.len()
        )));
    }
    for window in windows_of(blocks) {
        decode_window(
            storage,
            blocks,
            window,
            &|i| numbers[i],
            block_size,
            object_of,
            codec_of,
            handle,
            &mut |at, plain| check_block_hash(&blocks[at], &plain, numbers[at], object_of),
        )?;
    }
    Ok(())
}

/// Writes `blocks`, the consecutive blocks of a block-mapped file from index `first_index` on, at
/// their places in `dest`, a window of blocks at a time, fetching each window's pieces (and their
/// delta bases) with one ranged read per object they lie in (see [`fetch_pieces`]). While
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn codec() -> Codec {
        Codec {
            compress_type: CompressType::Zst,
            level: 3,
            cipher: CipherType::None,
            key: None,
            workers: 0,
        }
    }

    #[test]
    fn reads_are_planned_per_object_across_small_gaps() {
        let at = |reference, offset, length| PieceAt {
            reference,
            offset,
            length,
        };
        let pieces = [
            at(None, 0, 100),
            at(Some("F"), 1000, 50),
            at(None, 100, 100),
            // A delta base between blocks still current in F, read through.
            at(Some("F"), 1100, 50),
            // Too far from the rest of F.
            at(Some("F"), 1150 + MAX_GAP_BYTES + 1, 10),
            // One piece longer than a read may span starts a read of its own.
            at(None, 300, MAX_RUN_BYTES),
        ];
        let reads: Vec<_> = plan_reads(&pieces)
            .into_iter()
            .map(|r| (r.reference, r.range, r.members))
            .collect();
        assert_eq!(
            reads,
            [
                (None, 0..200, vec![0, 2]),
                (None, 300..300 + MAX_RUN_BYTES, vec![5]),
                (Some("F"), 1000..1150, vec![1, 3]),
                (
                    Some("F"),
                    1150 + MAX_GAP_BYTES + 1..1150 + MAX_GAP_BYTES + 11,
                    vec![4]
                ),
            ]
        );
    }

    #[test]
    fn windows_hold_at_most_their_block_count_and_bytes() {
        let block = |length| BlockRef {
            hash: pgbr_manifest::BlockHash::default(),
            reference: None,
            offset: 0,
            length,
            base: None,
        };
        let small: Vec<BlockRef> = (0..300).map(|_| block(10)).collect();
        assert_eq!(windows_of(&small), [0..128, 128..256, 256..300]);
        let big: Vec<BlockRef> = (0..5).map(|_| block(MAX_WINDOW_BYTES / 2)).collect();
        assert_eq!(windows_of(&big), [0..2, 2..4, 4..5]);
        assert_eq!(
            windows_of(&[block(u64::MAX)]),
            vec![std::ops::Range { start: 0, end: 1 }]
        );
        assert!(windows_of(&[]).is_empty());
    }

    /// A runtime for the blocking storage calls under test.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("rt")
    }

    /// The object of the test file in the backup labelled `label`.
    fn object_of_label(label: &str) -> String {
        format!("{label}/file.blk")
    }

    /// Stores `data` as blocks of backup `label` (optionally against `prior`, the block map of
    /// the prior backup and its label; with `deltas`, changed blocks are coded against their
    /// earlier versions), then rebuilds the file from the blocks and returns (blocks, rebuilt
    /// bytes).
    fn store_and_rebuild(
        rt: &tokio::runtime::Runtime,
        storage: &Storage,
        dir: &Path,
        data: &[u8],
        label: &str,
        prior: Option<(&[BlockRef], &str)>,
        deltas: bool,
    ) -> (Vec<BlockRef>, Vec<u8>) {
        let src = dir.join("file");
        std::fs::write(&src, data).expect("write");
        let handle = rt.handle().clone();
        let object = object_of_label(label);
        let object_of = |r: Option<&str>| object_of_label(r.unwrap_or(label));
        let codec_of = |_: Option<&str>| Ok(codec());
        let stored = store_blocks(
            &src,
            storage,
            &object,
            &codec(),
            None,
            prior.map(|(blocks, label)| Prior {
                blocks,
                label,
                bases: deltas.then_some(BaseReader {
                    object_of: &object_of,
                    codec_of: &codec_of,
                }),
            }),
            // Whole blocks are sealed on two threads (deltas stay on one).
            &|| true,
            &handle,
        )
        .expect("store")
        .expect("file exists");
        assert_eq!(stored.size, data.len() as u64);
        let out = dir.join("rebuilt");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&out)
            .expect("create");
        fetch_blocks(
            storage,
            &stored.blocks,
            0,
            BLOCK_SIZE as u64,
            &object_of,
            &codec_of,
            &|| true,
            &f,
            &out,
            None,
            &handle,
        )
        .expect("fetch");
        f.set_len(data.len() as u64).expect("len");
        (stored.blocks, std::fs::read(&out).expect("read"))
    }

    /// Storing a file's blocks on two threads (a spare core) gives what one thread gives: the
    /// same object, block map, checksum and page errors, with and without a prior block map.
    #[test]
    fn two_threads_store_the_same_blocks_as_one() {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("tempdir");
        // Three windows, the last block short; bytes that compress a little, and pages whose
        // checksums are wrong (so page errors are found in every window).
        let len = 2 * WINDOW_BLOCKS * BLOCK_SIZE + 5 * BLOCK_SIZE + 1000;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if i % 3 == 0 {
                    state as u8
                } else {
                    (i / 4096) as u8
                }
            })
            .collect();
        let src = dir.path().join("16384.2");
        std::fs::write(&src, &data).expect("write");
        let pages = PageCheckSpec {
            segment: 2,
            start_lsn: u64::MAX,
        };
        let store = |object: &str, prior: Option<Prior<'_>>, two: bool, storage: &Storage| {
            store_blocks(
                &src,
                storage,
                object,
                &codec(),
                Some(pages),
                prior,
                &|| two,
                rt.handle(),
            )
            .expect("store")
            .expect("file exists")
        };
        let storage = Storage::memory();
        let one = store("one.blk", None, false, &storage);
        let two = store("two.blk", None, true, &storage);
        assert!(!one.page_errors.is_empty(), "no page error to compare");
        let object = |name: &str| rt.block_on(storage.get(name)).expect("object");
        let same = |a: &StoredBlocks, b: &StoredBlocks, what: &str| {
            assert_eq!(a.size, b.size, "{what}");
            assert_eq!(a.checksum, b.checksum, "{what}");
            assert_eq!(a.stored_size, b.stored_size, "{what}");
            assert_eq!(a.blocks, b.blocks, "{what}");
            assert_eq!(a.page_errors, b.page_errors, "{what}");
        };
        same(&one, &two, "no prior");
        assert_eq!(object("one.blk"), object("two.blk"));
        // Against a prior map where every third block differs.
        let mut earlier = one.blocks.clone();
        for b in earlier.iter_mut().step_by(3) {
            b.hash = pgbr_manifest::BlockHash::default();
        }
        let prior = || {
            Some(Prior {
                blocks: &earlier,
                label: "F",
                bases: None,
            })
        };
        let one = store("one-i.blk", prior(), false, &storage);
        let two = store("two-i.blk", prior(), true, &storage);
        same(&one, &two, "with a prior");
        assert_eq!(object("one-i.blk"), object("two-i.blk"));
        let stored = one.blocks.iter().filter(|b| b.reference.is_none()).count();
        assert_eq!(stored, earlier.len().div_ceil(3));
    }

    /// `check_blocks` opens each block a backup stored (a delta-coded one against its base) and
    /// names a damaged one by its number in the file.
    #[test]
    fn check_blocks_opens_own_blocks_and_names_a_damaged_one() {
        let rt = runtime();
        let storage = Storage::memory();
        let dir = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..5 * BLOCK_SIZE).map(|i| (i * 7 % 253) as u8).collect();
        let (full, _) = store_and_rebuild(&rt, &storage, dir.path(), &data, "full", None, false);
        let mut changed = data.clone();
        changed[3 * BLOCK_SIZE + 10] ^= 1;
        let (incr, _) = store_and_rebuild(
            &rt,
            &storage,
            dir.path(),
            &changed,
            "incr",
            Some((&full, "full")),
            true,
        );
        let check = |label: &str, blocks: &[BlockRef]| {
            let map = pgbr_manifest::BlockMapRef {
                block_size: BLOCK_SIZE as u32,
                blocks: blocks.to_vec(),
            };
            let (numbers, own) = own_blocks(&map);
            let object_of = |r: Option<&str>| object_of_label(r.unwrap_or(label));
            check_blocks(
                &storage,
                &own,
                &numbers,
                BLOCK_SIZE as u64,
                &object_of,
                &|_| Ok(codec()),
                rt.handle(),
            )
            .map(|()| numbers)
        };
        // The incremental stored block 3 only, as a delta against the full's block 3.
        assert_eq!(check("incr", &incr).expect("incr intact"), [3]);
        assert!(incr[3].base.is_some());
        assert_eq!(check("full", &full).expect("full intact"), [0, 1, 2, 3, 4]);

        let object = object_of_label("full");
        let mut stored = rt.block_on(storage.get(&object)).expect("get").to_vec();
        stored[(full[1].offset + full[1].length / 2) as usize] ^= 0x55;
        rt.block_on(storage.put(&object, stored.into()))
            .expect("put");
        let err = check("full", &full).expect_err("damaged").to_string();
        assert!(err.contains("block 1 "), "{err}");
        assert!(err.contains(&object), "{err}");
    }

    #[test]
    fn hash_file_on_two_threads_equals_one_pass() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        for len in [
            0usize,
            1,
            1024,
            1025,
            PARALLEL_HASH_MIN as usize - 1,
            PARALLEL_HASH_MIN as usize,
            PARALLEL_HASH_MIN as usize + 1,
            3 * 1024 * 1024 + 77,
            16 * 1024 * 1024,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&path, &data).expect("write");
            let (size, hex) = hash_file(&path).expect("hash");
            assert_eq!(size, len as u64);
            assert_eq!(
                hex,
                blake3::hash(&data).to_hex().to_string(),
                "length {len}"
            );
        }
    }

    /// More files than are opened ahead, some gone before the bundle is stored, one empty: each
    /// piece reads back as its file, the gone ones are `None`, and nothing is held open after.
    #[test]
    fn bundle_of_files_opened_ahead_reads_back_each_file() {
        let rt = runtime();
        let storage = Storage::memory();
        let dir = tempfile::tempdir().expect("tempdir");
        let count = OPEN_AHEAD * 3 + 7;
        let content = |i: usize| -> Vec<u8> {
            let len = if i == 5 { 0 } else { (i * 37) % 9000 + 1 };
            (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
        };
        let gone = |i: usize| i % 50 == 3;
        let files: Vec<_> = (0..count)
            .map(|i| {
                let path = dir.path().join(format!("f{i}"));
                if !gone(i) {
                    std::fs::write(&path, content(i)).expect("write");
                }
                (path, None)
            })
            .collect();
        let stored =
            store_bundle(&files, &storage, "b/1", 1, &codec(), rt.handle()).expect("store_bundle");
        assert_eq!(stored.len(), count);
        for (i, piece) in stored.iter().enumerate() {
            let Some(piece) = piece else {
                assert!(gone(i), "file {i} exists but was not stored");
                continue;
            };
            assert!(!gone(i), "file {i} was gone but is stored");
            assert_eq!(piece.stored.checksum, Checksum::of(&content(i)), "file {i}");
            match &piece.bundle {
                None => assert!(content(i).is_empty(), "file {i} has no piece"),
                Some(b) => {
                    let back =
                        fetch_range(&storage, "b/1", b.offset, b.length, &codec(), rt.handle())
                            .expect("fetch_range");
                    assert_eq!(back, content(i), "file {i}");
                }
            }
        }
        let open_fds = std::fs::read_dir("/proc/self/fd").expect("fds").count();
        drop(stored);
        assert!(
            open_fds < 64,
            "{open_fds} descriptors open after the bundle"
        );
    }

    /// Hashes `data` in parts of `part_len` bytes, each on its own as a restore worker does.
    fn part_hashes(data: &[u8], part_len: usize) -> Vec<blake3::hazmat::ChainingValue> {
        use blake3::hazmat::HasherExt;
        data.chunks(part_len)
            .enumerate()
            .map(|(i, part)| {
                let mut hasher = blake3::Hasher::new();
                hasher.set_input_offset((i * part_len) as u64);
                hasher.update(part);
                hasher.finalize_non_root()
            })
            .collect()
    }

    #[test]
    fn part_hashes_merge_into_the_whole_hash_at_the_edges() {
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let chunk = blake3::CHUNK_LEN;
        for (part_len, len) in [
            (chunk, chunk + 1),
            (chunk, 2 * chunk),
            (chunk, 3 * chunk),
            (4 * chunk, 16 * chunk),
            (4 * chunk, 16 * chunk + 1),
            (8 * chunk, 17 * chunk - 1),
            (16 * chunk, 70_000),
        ] {
            let data = &data[..len];
            assert_eq!(
                merge_part_hashes(&part_hashes(data, part_len), part_len as u64, len as u64),
                Some(blake3::hash(data)),
                "parts of {part_len} bytes, {len} bytes"
            );
        }
        // What does not describe a split is refused, never merged into a wrong hash.
        let cvs = part_hashes(&data[..3 * chunk], chunk);
        assert_eq!(
            merge_part_hashes(&cvs, chunk as u64, 4 * chunk as u64),
            None
        );
        assert_eq!(
            merge_part_hashes(&cvs[..1], chunk as u64, chunk as u64),
            None
        );
        assert_eq!(merge_part_hashes(&cvs, 1000, 3000), None);
        assert_eq!(merge_part_hashes(&cvs, 512, 3 * 512), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// However a file is cut into parts, their hashes merge into its BLAKE3 hash.
        #[test]
        fn part_hashes_merge_into_the_whole_hash(
            log_parts in 0u32..4,
            extra in 1usize..40_000,
            seed in any::<u64>(),
        ) {
            let part_len = blake3::CHUNK_LEN << log_parts;
            let len = part_len + extra;
            let mut state = seed | 1;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            prop_assert_eq!(
                merge_part_hashes(&part_hashes(&data, part_len), part_len as u64, len as u64),
                Some(blake3::hash(&data))
            );
        }

        /// An incremental stores exactly the blocks a random edit changed (or added), references
        /// every other block, and the blocks rebuild the edited file.
        #[test]
        fn delta_coded_generations_rebuild_exactly_and_stay_one_delta_deep(
            seed in any::<u64>(),
            blocks in 1usize..6,
            tail in 0usize..BLOCK_SIZE,
            generations in prop::collection::vec(
                (prop::collection::vec((any::<usize>(), any::<u8>()), 0..4), -70_000i64..70_000),
                1..4,
            ),
        ) {
            let rt = runtime();
            let storage = Storage::memory();
            let dir = tempfile::tempdir().expect("tempdir");
            let mut state = seed | 1;
            let mut next = || { state ^= state << 13; state ^= state >> 7; state ^= state << 17; (state & 0xff) as u8 };
            let mut data: Vec<u8> = (0..blocks * BLOCK_SIZE + tail).map(|_| next()).collect();
            let (full, rebuilt) = store_and_rebuild(&rt, &storage, dir.path(), &data, "g0", None, true);
            prop_assert_eq!(&rebuilt, &data);
            // Every generation's own blocks, by label, to check where bases point.
            let mut own: std::collections::HashMap<String, Vec<BlockRef>> = std::collections::HashMap::new();
            own.insert("g0".into(), full.iter().filter(|b| b.reference.is_none()).cloned().collect());
            let mut prior = full;
            for (g, (edits, len_delta)) in generations.iter().enumerate() {
                let old = data.clone();
                let new_len = (data.len() as i64 + len_delta).max(1) as usize;
                data.resize(new_len, 0);
                for byte in data.iter_mut().skip(old.len()) { *byte = next(); }
                for (pos, byte) in edits {
                    let p = pos % data.len();
                    data[p] ^= byte | 1;
                }
                let label = format!("g{}", g + 1);
                let prior_label = format!("g{g}");
                let (map, rebuilt) = store_and_rebuild(
                    &rt, &storage, dir.path(), &data, &label, Some((&prior, &prior_label)), true,
                );
                prop_assert_eq!(&rebuilt, &data, "generation {}", g + 1);
                for (i, b) in map.iter().enumerate() {
                    let start = i * BLOCK_SIZE;
                    let had = prior.get(i);
                    if had.is_some_and(|p| p.hash == b.hash) {
                        prop_assert!(b.reference.is_some(), "unchanged block {} is referenced", i);
                        continue;
                    }
                    prop_assert!(b.reference.is_none(), "changed block {} is stored", i);
                    prop_assert_eq!(b.base.is_some(), had.is_some(), "block {} has a base iff it had a version", i);
                    if let Some(base) = &b.base {
                        let whole = own[base.reference.as_str()].iter().find(|o| o.offset == base.offset);
                        prop_assert!(whole.is_some_and(|o| o.base.is_none() && o.length == base.length),
                            "block {}'s base is a whole block of {}", i, base.reference);
                        // A block of random bytes that kept its length and changed in a few
                        // bytes costs a few bytes.
                        let same_len = start + BLOCK_SIZE <= old.len().min(data.len());
                        if same_len && old.len() == data.len() && edits.len() <= 2 && g == 0 {
                            prop_assert!(b.length < 400, "block {} stored {} bytes", i, b.length);
                        }
                    }
                }
                own.insert(label, map.iter().filter(|b| b.reference.is_none()).cloned().collect());
                prior = map;
            }
        }

        #[test]
        fn block_incremental_stores_exactly_the_changed_blocks(
            seed in any::<u64>(),
            blocks in 1usize..8,
            tail in 0usize..BLOCK_SIZE,
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            new_len_delta in -70_000i64..140_000,
        ) {
            let rt = runtime();
            let storage = Storage::memory();
            let dir = tempfile::tempdir().expect("tempdir");
            let mut state = seed | 1;
            let mut next = || { state ^= state << 13; state ^= state >> 7; state ^= state << 17; (state & 0xff) as u8 };
            let len = blocks * BLOCK_SIZE + tail;
            let old: Vec<u8> = (0..len).map(|_| next()).collect();
            let (prior, rebuilt) = store_and_rebuild(&rt, &storage, dir.path(), &old, "full", None, false);
            prop_assert_eq!(&rebuilt, &old);
            prop_assert!(prior.iter().all(|b| b.reference.is_none()));

            let mut new = old.clone();
            let new_len = (len as i64 + new_len_delta).max(1) as usize;
            new.resize(new_len, 0);
            for byte in new.iter_mut().skip(len) { *byte = next(); }
            for (pos, byte) in &edits {
                let p = pos % new.len();
                new[p] ^= byte | 1;
            }
            let (incr, rebuilt) = store_and_rebuild(
                &rt, &storage, dir.path(), &new, "incr", Some((&prior, "full")), false,
            );
            prop_assert_eq!(&rebuilt, &new);
            for (i, b) in incr.iter().enumerate() {
                let start = i * BLOCK_SIZE;
                let unchanged = start < old.len()
                    && old[start..(start + BLOCK_SIZE).min(old.len())] == new[start..(start + BLOCK_SIZE).min(new.len())];
                prop_assert_eq!(b.reference.is_some(), unchanged, "block {}", i);
            }
        }
    }
}
