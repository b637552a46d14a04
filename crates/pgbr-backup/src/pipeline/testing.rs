//! What the pipeline's tests share.

use pgbr_crypto::CipherType;
use pgbr_storage::CompressType;

use super::Codec;

/// zstd level 3, no encryption.
pub(super) fn codec() -> Codec {
    Codec {
        compress_type: CompressType::Zst,
        level: 3,
        cipher: CipherType::None,
        key: None,
        workers: 0,
    }
}

/// A runtime for the blocking storage calls under test.
pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt")
}
