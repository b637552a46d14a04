//! Repository storage and stored-byte codecs for pgbr.
//!
//! This crate is the one place where pgbr touches repository bytes:
//!
//! * [`Storage`] is a small, backend-neutral API over [`object_store`]: a local (posix)
//!   repository that is durable when a call returns, an in-memory store for tests, or any
//!   other [`object_store::ObjectStore`]; [`Storage::s3`], [`Storage::azure`] and
//!   [`Storage::gcs`] build S3, Azure Blob and GCS repositories from pgBackRest's options
//!   ([`S3Options`], [`AzureOptions`], [`GcsOptions`]), with retries. It offers whole-object and
//!   ranged reads, streaming reads, atomic puts, create-only puts, listing, deletion, and a
//!   bounded-memory streaming [`ObjectWriter`] (with blocking adapters, [`BlockingWriter`] and
//!   [`BlockingReader`], for worker threads).
//! * [`CompressWriter`] / [`DecompressReader`] are the streaming codecs of stored bytes
//!   ([`CompressType`]: zstd, gzip, lz4 frame, none). Corrupt or truncated input is an
//!   [`std::io::ErrorKind::InvalidData`] error, never a panic and never a silent short read.
//! * [`FaultyStore`] wraps any object store and injects failures, truncated reads and delays,
//!   for tests.
//! * [`posix`] holds the database-side file helpers: walking a data directory, durable file
//!   writes, directory fsync.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use pgbr_storage::{compress_to_vec, decompress_to_vec, CompressType, Storage};
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let storage = Storage::memory();
//!     let kind = CompressType::default();
//!     let stored = compress_to_vec(kind, kind.default_level(), b"hello, repository")?;
//!     let key = format!("backup/main/backup.info{}", kind.extension());
//!     storage.put(&key, Bytes::from(stored)).await?;
//!
//!     let listed = storage.list("backup/main").await?;
//!     assert_eq!(listed.len(), 1);
//!     assert_eq!(listed[0].path, "backup/main/backup.info.zst");
//!
//!     let bytes = storage.get(&key).await?;
//!     assert_eq!(decompress_to_vec(kind, &bytes)?, b"hello, repository");
//!     assert!(!storage.put_if_absent(&key, Bytes::from_static(b"x")).await?);
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod cloud;
mod codec;
mod error;
mod fault;
mod keys;
mod local;
pub mod posix;
mod reader;
mod storage;
mod writer;

pub use cloud::{
    AzureKeyType, AzureOptions, GcsKeyType, GcsOptions, ParseOptionError, S3Options, UriStyle,
    CONNECT_TIMEOUT, MAX_RETRIES, REQUEST_TIMEOUT, RETRY_TIMEOUT,
};
pub use codec::{
    compress_to_vec, decompress_to_vec, CompressType, CompressWriter, DecompressReader, DeltaCoder,
    ParseCompressTypeError,
};
pub use error::Error;
pub use fault::{FaultyHttpConnector, FaultyStore, RequestKind};

pub use reader::BlockingReader;
pub use storage::{
    ObjectInfo, Storage, DEFAULT_PART_SIZE, DEFAULT_UPLOAD_CONCURRENCY, LOCAL_PART_SIZE,
};
pub use writer::{BlockingWriter, ObjectWriter};

/// Re-export of the `object_store` crate this API is built on, so callers can build
/// backends with the exact same version.
pub use object_store;
