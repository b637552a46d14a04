//! Keys and encrypted streams for pgbr. This crate knows nothing about files or repositories.
//!
//! - [`DataKey`]: a random 256-bit key that encrypts a repository's data. It is stored only
//!   wrapped, as a [`WrappedKey`]: sealed with AES-256-GCM under a key derived from the repository
//!   passphrase with Argon2id. Changing the passphrase re-wraps the key
//!   ([`WrappedKey::rewrap`]); data is not rewritten.
//! - [`GcmWriter`]/[`GcmReader`]: AES-256-GCM as a segmented stream (64 KiB segments, STREAM
//!   construction), the default. Each stream is encrypted under its own subkey, derived with
//!   keyed BLAKE3 from the data key and a random salt in the stream header, so nonces never
//!   repeat across streams under one data key. Truncation, reordering, splicing and tampering are
//!   all detected, and plaintext is only ever returned after its segment authenticated.
//! - [`CbcWriter`]/[`CbcReader`]: AES-256-CBC in OpenSSL's `Salted__` format, as pgBackRest
//!   writes it. It authenticates nothing: verify checksums of the plaintext after decrypting.
//! - [`EncryptWriter`]/[`DecryptReader`]: one switch over [`CipherType`], plus
//!   [`encrypt_to_vec`]/[`decrypt_to_vec`] for small buffers ([`encrypt_owned`]/
//!   [`decrypt_borrowed`] copy nothing without a cipher). For AES-256-CBC the OpenSSL
//!   passphrase derived from a [`DataKey`] is its lowercase hex string (64 ASCII bytes).
//!
//! Key material is zeroized on drop and never appears in `Debug` output or errors. Stream errors
//! are `io::Error`s wrapping an [`Error`]; [`Error::from_io`] recovers it.
//!
//! # Example
//!
//! ```
//! use std::io::{Read, Write};
//! use pgbr_crypto::{CipherType, DataKey, DecryptReader, EncryptWriter, WrappedKey};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Stanza creation: a fresh data key, stored wrapped under the passphrase.
//! let key = DataKey::generate();
//! let wrapped = WrappedKey::wrap(b"repository passphrase", &key)?;
//!
//! // Later: unwrap it and encrypt a stream.
//! let key = wrapped.unwrap(b"repository passphrase")?;
//! let mut writer = EncryptWriter::new(CipherType::Aes256Gcm, Some(&key), Vec::new())?;
//! writer.write_all(b"base/1/1259 contents")?;
//! let stored: Vec<u8> = writer.finish()?;
//!
//! // And decrypt it.
//! let mut reader = DecryptReader::new(CipherType::Aes256Gcm, Some(&key), &stored[..])?;
//! let mut plain = Vec::new();
//! reader.read_to_end(&mut plain)?;
//! assert_eq!(plain, b"base/1/1259 contents");
//!
//! // A wrong passphrase is an error, never a wrong key.
//! assert!(matches!(wrapped.unwrap(b"guess"), Err(pgbr_crypto::Error::WrongPassphrase)));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod cbc;
mod error;
mod gcm;
mod key;
mod stream;

pub use cbc::{CbcReader, CbcWriter};
pub use error::Error;
pub use gcm::{GcmReader, GcmWriter};
pub use key::{DataKey, WrappedKey};
pub use stream::{
    decrypt_borrowed, decrypt_to_vec, encrypt_owned, encrypt_to_vec, CipherType, DecryptReader,
    EncryptWriter,
};
