//! Manifest save (`to_bytes`) and load (`from_bytes`, which verifies the checksum and every name)
//! for 1,000,000 files: seconds per call, and the peak heap bytes of one call, measured with a
//! counting global allocator and printed before criterion runs. Then the load of the manifest as
//! a repository stores it (zstd): decompressed whole then `from_bytes`, against `from_reader`
//! on the decompressor (the text never held).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pgbr_benches::{big_manifest, CountingAlloc};
use pgbr_manifest::Manifest;
use pgbr_storage::{CompressType, DecompressReader};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const FILES: usize = 1_000_000;

fn peak_of<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let base = CountingAlloc::reset_peak();
    let start = Instant::now();
    let out = f();
    let secs = start.elapsed().as_secs_f64();
    let peak = CountingAlloc::peak() - base;
    println!(
        "manifest {what} ({FILES} files): {secs:.2} s, peak {peak} bytes ({:.1} MiB) above the {:.1} MiB already allocated",
        peak as f64 / 1048576.0,
        base as f64 / 1048576.0
    );
    out
}

fn manifest(c: &mut Criterion) {
    let manifest = peak_of("build", || big_manifest(FILES));
    let bytes = peak_of("to_bytes", || manifest.to_bytes().expect("to_bytes"));
    println!(
        "manifest size: {} bytes ({} per file)",
        bytes.len(),
        bytes.len() / FILES
    );
    let loaded = peak_of("from_bytes", || {
        Manifest::from_bytes(&bytes).expect("from_bytes")
    });
    assert_eq!(loaded.files.len(), FILES);
    drop(loaded);
    let stored = pgbr_storage::compress_to_vec(CompressType::Zst, 3, &bytes).expect("compress");
    let whole = peak_of("decompress + from_bytes", || {
        let text = pgbr_storage::decompress_to_vec(CompressType::Zst, &stored).expect("decompress");
        Manifest::from_bytes(&text).expect("from_bytes")
    });
    drop(whole);
    let streamed = peak_of("from_reader (zstd stream)", || {
        let text = DecompressReader::new(CompressType::Zst, &stored[..]).expect("decompressor");
        Manifest::from_reader(text).expect("from_reader")
    });
    assert_eq!(streamed.files.len(), FILES);
    drop(streamed);

    let mut group = c.benchmark_group("manifest_1m_files");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("to_bytes", |b| {
        b.iter(|| manifest.to_bytes().expect("to_bytes"))
    });
    group.bench_function("from_bytes", |b| {
        b.iter(|| Manifest::from_bytes(&bytes).expect("from_bytes"))
    });
    group.bench_function("from_reader", |b| {
        b.iter(|| Manifest::from_reader(&bytes[..]).expect("from_reader"))
    });
    group.finish();
}

criterion_group!(benches, manifest);
criterion_main!(benches);
