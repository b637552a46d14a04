//! The per-file backup pipeline on an in-memory store: read in 1 MiB chunks → BLAKE3 → page
//! check → zstd 3 → (AES-256-GCM) → streaming put, on 1, 2 and 4 workers, as pgbr's backup
//! runs it. Throughput is the total over all workers; MB/s per worker is that divided by the
//! worker count (printed at the end).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgbr_benches::{relation_data, store_relation, Codec};
use pgbr_crypto::{CipherType, DataKey};
use pgbr_storage::{CompressType, Storage};

/// 16 relation files of 2 MiB each.
const FILES: usize = 16;
const FILE_SIZE: usize = 2 * 1024 * 1024;

fn run(files: &[Vec<u8>], workers: usize, codec: &Codec, rt: &tokio::runtime::Runtime) -> u64 {
    let storage = Storage::memory();
    let next = AtomicUsize::new(0);
    let stored = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(data) = files.get(i) else { break };
                let n = store_relation(
                    data,
                    &storage,
                    &format!("backup/main/pg_data/base/1/{}", 16384 + i),
                    codec,
                    rt.handle(),
                )
                .expect("store");
                stored.fetch_add(n as usize, Ordering::Relaxed);
            });
        }
    });
    stored.into_inner() as u64
}

fn pipeline(c: &mut Criterion) {
    let files: Vec<Vec<u8>> = (0..FILES)
        .map(|i| relation_data(FILE_SIZE, 100 + i as u64))
        .collect();
    let total = (FILES * FILE_SIZE) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let codecs = [
        (
            "zst3",
            Codec {
                compress: CompressType::Zst,
                level: 3,
                cipher: CipherType::None,
                key: None,
            },
        ),
        (
            "zst3-gcm",
            Codec {
                compress: CompressType::Zst,
                level: 3,
                cipher: CipherType::Aes256Gcm,
                key: Some(DataKey::from_bytes([9u8; 32])),
            },
        ),
    ];
    let mut summary = Vec::new();
    let mut group = c.benchmark_group("backup_pipeline");
    group.throughput(Throughput::Bytes(total));
    group.sample_size(10);
    for (name, codec) in &codecs {
        for workers in [1usize, 2, 4] {
            group.bench_with_input(BenchmarkId::new(*name, workers), &workers, |b, &w| {
                b.iter(|| run(&files, w, codec, &rt))
            });
            // one extra timed run for the per-worker summary line
            let start = Instant::now();
            run(&files, workers, codec, &rt);
            let mbs = total as f64 / 1e6 / start.elapsed().as_secs_f64();
            summary.push(format!(
                "backup_pipeline {name} workers {workers}: {mbs:.0} MB/s total, {:.0} MB/s per worker",
                mbs / workers as f64
            ));
        }
    }
    group.finish();
    for line in summary {
        println!("{line}");
    }
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
