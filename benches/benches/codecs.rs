//! Compress and decompress MB/s of each codec at its default level (zstd 3, gzip 6, lz4), on
//! 8 MiB of pseudo PostgreSQL relation pages (partly compressible).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgbr_benches::relation_data;
use pgbr_storage::{compress_to_vec, decompress_to_vec, CompressType};

const SIZE: usize = 8 * 1024 * 1024;

fn codecs(c: &mut Criterion) {
    let data = relation_data(SIZE, 42);
    let kinds = [CompressType::Zst, CompressType::Gz, CompressType::Lz4];
    let mut group = c.benchmark_group("compress");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    for kind in kinds {
        let level = kind.default_level();
        let stored = compress_to_vec(kind, level, &data).expect("compress");
        eprintln!(
            "{kind} level {level}: {} -> {} bytes (ratio {:.2})",
            data.len(),
            stored.len(),
            data.len() as f64 / stored.len() as f64
        );
        group.bench_with_input(BenchmarkId::new(kind.name(), level), &data, |b, d| {
            b.iter(|| compress_to_vec(kind, level, d).expect("compress"))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decompress");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    for kind in kinds {
        let level = kind.default_level();
        let stored = compress_to_vec(kind, level, &data).expect("compress");
        group.bench_with_input(BenchmarkId::new(kind.name(), level), &stored, |b, s| {
            b.iter(|| decompress_to_vec(kind, s).expect("decompress"))
        });
    }
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
