//! Shared helpers of pgbr's criterion benchmarks (`benches/benches/*.rs`): realistic input data
//! (pseudo PostgreSQL heap pages with valid checksums), a manifest of many files, a counting
//! global allocator for peak-memory figures, and the per-file backup pipeline over an in-memory
//! store.
//!
//! Run them with `cargo bench -p pgbr-benches` (add `-- --quick` for a short run). The
//! side-by-side comparison with pgBackRest is `benches/compare.sh`.
#![deny(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use pgbr_crypto::{CipherType, DataKey, EncryptWriter};
use pgbr_manifest::{
    check_page, new_label, page_checksum, BackupMeta, BackupType, FileEntry, Manifest, PageCheck,
    PathEntry, Target, PAGE_SIZE,
};
use pgbr_storage::{CompressType, CompressWriter, Storage};

/// A small deterministic PRNG (SplitMix64), so every run benchmarks the same bytes.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The LSN written into generated pages; use a larger `backup_start_lsn` with
/// [`check_page`] so that the checksum is actually computed.
pub const PAGE_LSN_BASE: u64 = 0x0000_0001_0000_0000;

/// A backup start LSN after every generated page's LSN.
pub const BACKUP_START_LSN: u64 = 0x0000_00FF_0000_0000;

const WORDS: &[&str] = &[
    "postgres",
    "backup",
    "restore",
    "archive",
    "segment",
    "checkpoint",
    "replica",
    "customer",
    "order",
    "shipped",
    "pending",
    "invoice",
    "amount",
    "europe",
    "account",
    "balance",
    "teller",
    "branch",
    "history",
    "filler",
    "the",
    "of",
    "and",
    "a",
    "to",
];

/// One pseudo PostgreSQL heap page, `block_number` within its relation: a 24-byte page header
/// (LSN, checksum, `pd_lower`/`pd_upper`/`pd_special`, page size and layout version), line
/// pointers, free space (zeroes) and tuples growing down from the end. Each tuple has a 23-byte
/// heap tuple header, an integer key, 8 random bytes, 32 random hex digits (an md5 column) and a
/// run of words from a small vocabulary: so the page is partly compressible, like real tables.
/// The page checksum is valid.
pub fn pseudo_page(rng: &mut Rng, block_number: u32) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    let lsn = PAGE_LSN_BASE + u64::from(block_number) * 0x100;
    page[0..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
    page[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
    // pd_flags 0, pd_pagesize_version = 8192 | 4, pd_prune_xid 0
    page[18..20].copy_from_slice(&(8192u16 | 4).to_le_bytes());
    // fill between 40% and 100% of the page
    let fill = PAGE_SIZE * (40 + rng.below(61) as usize) / 100;
    let mut lower = 24usize;
    let mut upper = PAGE_SIZE;
    let mut key = u64::from(block_number) * 64;
    loop {
        let mut tuple = Vec::with_capacity(200);
        // t_xmin, t_xmax, t_cid, t_ctid (6), t_infomask2, t_infomask, t_hoff
        tuple.extend_from_slice(&(1000 + block_number).to_le_bytes());
        tuple.extend_from_slice(&0u32.to_le_bytes());
        tuple.extend_from_slice(&0u32.to_le_bytes());
        tuple.extend_from_slice(&block_number.to_le_bytes());
        tuple.extend_from_slice(&((lower - 24) as u16 / 4 + 1).to_le_bytes());
        tuple.extend_from_slice(&4u16.to_le_bytes());
        tuple.extend_from_slice(&0x0902u16.to_le_bytes());
        tuple.push(24);
        tuple.push(0); // pad to t_hoff
        key += 1;
        tuple.extend_from_slice(&key.to_le_bytes());
        tuple.extend_from_slice(&rng.next_u64().to_le_bytes());
        for _ in 0..2 {
            let r = rng.next_u64();
            for i in 0..16 {
                tuple.push(b"0123456789abcdef"[((r >> (i * 4)) & 15) as usize]);
            }
        }
        let words = 4 + rng.below(16);
        for _ in 0..words {
            tuple.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
            tuple.push(b' ');
        }
        let len = (tuple.len() + 7) & !7;
        tuple.resize(len, 0);
        if upper - len < lower + 4 || PAGE_SIZE - (upper - len) > fill {
            break;
        }
        upper -= len;
        page[upper..upper + len].copy_from_slice(&tuple);
        // line pointer: lp_off:15, lp_flags:2 (1 = normal), lp_len:15
        let lp = (upper as u32) | (1 << 15) | ((len as u32) << 17);
        page[lower..lower + 4].copy_from_slice(&lp.to_le_bytes());
        lower += 4;
    }
    page[12..14].copy_from_slice(&(lower as u16).to_le_bytes());
    page[14..16].copy_from_slice(&(upper as u16).to_le_bytes());
    page[16..18].copy_from_slice(&(PAGE_SIZE as u16).to_le_bytes());
    let sum = page_checksum(&page, block_number);
    page[8..10].copy_from_slice(&sum.to_le_bytes());
    page
}

/// `bytes` (rounded up to whole pages) of pseudo relation data: [`pseudo_page`]s numbered from 0,
/// with one page in 32 left all-zero (allocated, never written), as relation files have.
pub fn relation_data(bytes: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let pages = bytes.div_ceil(PAGE_SIZE);
    let mut out = Vec::with_capacity(pages * PAGE_SIZE);
    for block in 0..pages as u32 {
        if block % 32 == 31 {
            out.resize(out.len() + PAGE_SIZE, 0);
        } else {
            out.extend_from_slice(&pseudo_page(&mut rng, block));
        }
    }
    out
}

/// A full-backup manifest of `files` relation files spread over databases and relations,
/// each file with a checksum, size, mtime and mode, as a cluster with that many files gives.
pub fn big_manifest(files: usize) -> Manifest {
    let label = new_label(BackupType::Full, None, 1_795_641_390);
    let mut paths = vec![
        PathEntry {
            target: "pg_data".into(),
            name: String::new(),
            mode: 0o700,
        },
        PathEntry {
            target: "pg_data".into(),
            name: "base".into(),
            mode: 0o700,
        },
    ];
    let dbs = 1 + files / 100_000;
    for db in 0..dbs {
        paths.push(PathEntry {
            target: "pg_data".into(),
            name: format!("base/{}", 16384 + db),
            mode: 0o700,
        });
    }
    let mut rng = Rng::new(7);
    let files = (0..files)
        .map(|i| {
            let db = 16384 + i % dbs;
            let rel = 20000 + i / dbs / 3;
            let name = match (i / dbs) % 3 {
                0 => format!("base/{db}/{rel}"),
                1 => format!("base/{db}/{rel}_fsm"),
                _ => format!("base/{db}/{rel}_vm"),
            };
            let size = rng.below(1 << 17) * 8192;
            let mut checksum = [0u8; 32];
            for part in checksum.chunks_mut(8) {
                part.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            let checksum = pgbr_manifest::Checksum(checksum);
            FileEntry {
                target: "pg_data".into(),
                name: name.into(),
                size,
                mtime: 1_795_641_000 - rng.below(86_400 * 365) as i64,
                mode: 0o600,
                checksum,
                reference: None,
                stored_size: size / 3,
                bundle: None,
                block_map: None,
                page_errors: vec![],
            }
        })
        .collect();
    Manifest {
        backup: BackupMeta {
            label,
            backup_type: BackupType::Full,
            pg_version: 15,
            system_id: 7_301_234_567_890_123_456,
            db_id: 1,
            timeline: 1,
            checksums_enabled: true,
            compress_type: pgbr_manifest::Compression::Zst,
            compress_level: 3,
            cipher_type: pgbr_manifest::Cipher::None,
            ..BackupMeta::default()
        },
        targets: vec![Target {
            name: "pg_data".into(),
            path: "/var/lib/postgresql/15/main".into(),
            tablespace_oid: None,
            tablespace_name: None,
        }],
        paths,
        links: vec![],
        files,
    }
}

/// A global allocator that counts live bytes and their high-water mark. Install it in a bench
/// with `#[global_allocator] static A: CountingAlloc = CountingAlloc;`, then bracket the
/// measured work with [`CountingAlloc::reset_peak`] and [`CountingAlloc::peak`].
#[derive(Debug)]
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl CountingAlloc {
    /// Bytes currently allocated.
    pub fn live() -> usize {
        LIVE.load(Ordering::Relaxed)
    }

    /// Sets the high-water mark to what is allocated now; returns that.
    pub fn reset_peak() -> usize {
        let now = LIVE.load(Ordering::Relaxed);
        PEAK.store(now, Ordering::Relaxed);
        now
    }

    /// The high-water mark of allocated bytes since the last [`CountingAlloc::reset_peak`].
    pub fn peak() -> usize {
        PEAK.load(Ordering::Relaxed)
    }

    fn added(n: usize) {
        let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

// SAFETY: every call forwards to the system allocator unchanged; the counters are only
// bookkeeping.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::added(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::added(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                Self::added(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// How the pipeline encodes stored bytes.
#[derive(Clone, Debug)]
pub struct Codec {
    /// Compression.
    pub compress: CompressType,
    /// Compression level.
    pub level: i32,
    /// Cipher.
    pub cipher: CipherType,
    /// Data key (required unless `cipher` is none).
    pub key: Option<DataKey>,
}

/// Read size of pgbr's backup pipeline (`pgbr-backup`'s `CHUNK`).
pub const CHUNK: usize = 1024 * 1024;

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

/// Stores one relation file the way pgbr's backup workers do: in [`CHUNK`] pieces, BLAKE3 of the
/// plaintext, page check of every page, compress, encrypt, streaming put to `storage`. Returns
/// the stored size. Call it from a thread outside the runtime of `handle`.
pub fn store_relation(
    data: &[u8],
    storage: &Storage,
    object: &str,
    codec: &Codec,
    handle: &tokio::runtime::Handle,
) -> io::Result<u64> {
    let mut hasher = blake3::Hasher::new();
    let sink = Counting {
        inner: storage.blocking_writer(object, handle.clone()),
        count: 0,
    };
    let enc = EncryptWriter::new(codec.cipher, codec.key.as_ref(), sink)?;
    let mut comp = CompressWriter::new(codec.compress, codec.level, enc)?;
    let mut errors = 0u32;
    for (c, chunk) in data.chunks(CHUNK).enumerate() {
        hasher.update(chunk);
        let first = (c * CHUNK / PAGE_SIZE) as u32;
        for (i, page) in chunk.chunks_exact(PAGE_SIZE).enumerate() {
            if let PageCheck::Mismatch { .. } = check_page(page, first + i as u32, BACKUP_START_LSN)
            {
                errors += 1;
            }
        }
        comp.write_all(chunk)?;
    }
    let sink = comp.finish()?.finish()?;
    let stored = sink.count;
    sink.inner.finish().map_err(io::Error::other)?;
    std::hint::black_box((hasher.finalize(), errors));
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_pages_verify_and_compress_partly() {
        let data = relation_data(64 * PAGE_SIZE, 1);
        for (i, page) in data.chunks_exact(PAGE_SIZE).enumerate() {
            let r = check_page(page, i as u32, BACKUP_START_LSN);
            assert!(
                matches!(r, PageCheck::Valid | PageCheck::New),
                "page {i}: {r:?}"
            );
        }
        let z = pgbr_storage::compress_to_vec(CompressType::Zst, 3, &data).unwrap();
        let ratio = data.len() as f64 / z.len() as f64;
        assert!((1.3..10.0).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn big_manifest_is_valid() {
        let m = big_manifest(1000);
        m.validate().unwrap();
        assert_eq!(Manifest::from_bytes(&m.to_bytes().unwrap()).unwrap(), m);
    }
}
