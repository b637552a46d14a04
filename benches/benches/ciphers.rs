//! Encrypt and decrypt MB/s of AES-256-GCM (segmented stream) and AES-256-CBC (OpenSSL
//! `Salted__`), on 8 MiB.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgbr_benches::relation_data;
use pgbr_crypto::{decrypt_to_vec, encrypt_to_vec, CipherType, DataKey};

const SIZE: usize = 8 * 1024 * 1024;

fn ciphers(c: &mut Criterion) {
    // Stored bytes are compressed first, so ciphers mostly see high-entropy input; the cipher's
    // speed does not depend on it anyway.
    let data = relation_data(SIZE, 43);
    let key = DataKey::from_bytes([7u8; 32]);
    let ciphers = [CipherType::Aes256Gcm, CipherType::Aes256Cbc];

    let mut group = c.benchmark_group("encrypt");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    for cipher in ciphers {
        group.bench_with_input(BenchmarkId::from_parameter(cipher), &data, |b, d| {
            b.iter(|| encrypt_to_vec(cipher, Some(&key), d).expect("encrypt"))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decrypt");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    for cipher in ciphers {
        let sealed = encrypt_to_vec(cipher, Some(&key), &data).expect("encrypt");
        group.bench_with_input(BenchmarkId::from_parameter(cipher), &sealed, |b, s| {
            b.iter(|| decrypt_to_vec(cipher, Some(&key), s).expect("decrypt"))
        });
    }
    group.finish();
}

criterion_group!(benches, ciphers);
criterion_main!(benches);
