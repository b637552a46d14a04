//! Page checksum verification (pages/s) on 1024 pseudo heap pages, and block hashing (MB/s).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgbr_benches::{relation_data, BACKUP_START_LSN};
use pgbr_manifest::{block_hash, check_page, page_checksum, PageCheck, PAGE_SIZE};

const PAGES: usize = 1024;

fn pages(c: &mut Criterion) {
    let data = relation_data(PAGES * PAGE_SIZE, 44);
    let mut group = c.benchmark_group("pages");
    group.throughput(Throughput::Elements(PAGES as u64));
    group.bench_function("page_checksum", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for (i, page) in data.chunks_exact(PAGE_SIZE).enumerate() {
                acc = acc.wrapping_add(u32::from(page_checksum(black_box(page), i as u32)));
            }
            acc
        })
    });
    group.bench_function("check_page", |b| {
        b.iter(|| {
            let mut bad = 0usize;
            for (i, page) in data.chunks_exact(PAGE_SIZE).enumerate() {
                if let PageCheck::Mismatch { .. } =
                    check_page(black_box(page), i as u32, BACKUP_START_LSN)
                {
                    bad += 1;
                }
            }
            assert_eq!(bad, 0);
            bad
        })
    });
    group.finish();

    let mut group = c.benchmark_group("block_hash");
    group.throughput(Throughput::Bytes(data.len() as u64));
    for block in [PAGE_SIZE, 128 * 1024, 1024 * 1024] {
        group.bench_with_input(BenchmarkId::from_parameter(block), &block, |b, &block| {
            b.iter(|| {
                data.chunks(block)
                    .map(|c| block_hash(black_box(c)))
                    .collect::<Vec<_>>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pages);
criterion_main!(benches);
