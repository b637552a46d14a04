//! The per-file work of backup and restore, run on `process-max` blocking worker threads.
//!
//! Backup streams each file once: read → BLAKE3 → page check → compress → encrypt → store, in
//! [`CHUNK`]-sized pieces, so a worker's memory is a chunk plus the codec state plus one upload part.
//! Restore runs the same chain backwards and verifies the checksum before a file takes its name.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pgbr_crypto::{CipherType, DataKey, DecryptReader, EncryptWriter};
use pgbr_manifest::{check_page, PageCheck, PAGE_SIZE};
use pgbr_storage::{CompressType, CompressWriter, DecompressReader, Storage};

use crate::error::{Error, Result};

/// Read size of the pipelines.
pub(crate) const CHUNK: usize = 1024 * 1024;
/// Pages in one 1 GiB relation segment file.
const PAGES_PER_SEGMENT: u64 = 131072;

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
    pub checksum: String,
    pub stored_size: u64,
    pub page_errors: Vec<u32>,
}

/// Page checking for one relation file.
pub(crate) struct PageCheckSpec {
    /// Segment number of the file (`16384.3` -> 3).
    pub segment: u64,
    /// Pages at or after this LSN are rewritten by WAL replay and not checked.
    pub start_lsn: u64,
}

/// Stores the local file `src` at `object` (nothing is stored for an empty file).
/// `Ok(None)` if the file vanished before it could be opened (PostgreSQL dropped it).
pub(crate) fn store_file(
    src: &Path,
    storage: &Storage,
    object: &str,
    codec: &Codec,
    pages: Option<PageCheckSpec>,
    handle: &tokio::runtime::Handle,
) -> Result<Option<Stored>> {
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
        return Ok(Some(Stored {
            size: 0,
            checksum: hasher.finalize().to_hex().to_string(),
            stored_size: 0,
            page_errors: Vec::new(),
        }));
    }
    let sink = Counting {
        inner: storage.blocking_writer(object, handle.clone()),
        count: 0,
    };
    let io_err = |e: io::Error| Error::io("unable to store", src, e);
    let enc = EncryptWriter::new(codec.cipher, codec.key.as_ref(), sink).map_err(io_err)?;
    let mut comp = CompressWriter::new(codec.compress_type, codec.level, enc).map_err(io_err)?;
    let mut size = 0u64;
    let mut page_errors = Vec::new();
    while filled > 0 {
        let chunk = &buf[..filled];
        hasher.update(chunk);
        if let Some(spec) = &pages {
            let first_page = size / PAGE_SIZE as u64;
            for (i, page) in chunk.chunks_exact(PAGE_SIZE).enumerate() {
                let in_file = first_page + i as u64;
                let block = spec.segment * PAGES_PER_SEGMENT + in_file;
                let block = u32::try_from(block).unwrap_or(u32::MAX);
                if let PageCheck::Mismatch { .. } = check_page(page, block, spec.start_lsn) {
                    page_errors.push(u32::try_from(in_file).unwrap_or(u32::MAX));
                }
            }
        }
        comp.write_all(chunk).map_err(io_err)?;
        size += filled as u64;
        filled = read_full(&mut file, &mut buf).map_err(|e| Error::io("unable to read", src, e))?;
    }
    let enc = comp.finish().map_err(io_err)?;
    let sink = enc.finish().map_err(io_err)?;
    let stored_size = sink.count;
    sink.inner.finish()?;
    Ok(Some(Stored {
        size,
        checksum: hasher.finalize().to_hex().to_string(),
        stored_size,
        page_errors,
    }))
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
    let sealed = pgbr_crypto::encrypt_to_vec(codec.cipher, codec.key.as_ref(), &compressed)
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
    dest: &mut File,
    dest_path: &Path,
    handle: &tokio::runtime::Handle,
) -> Result<(u64, String)> {
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
    Ok((size, hasher.finalize().to_hex().to_string()))
}

/// BLAKE3 hex and size of a local file (delta restore compares them with the manifest).
pub(crate) fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    loop {
        let n = read_full(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hasher.finalize().to_hex().to_string()))
}
