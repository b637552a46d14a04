//! The crate's error type and its mapping onto `std::io::Error`.

use std::io;

/// Everything that can go wrong while handling keys or encrypted streams.
///
/// No variant ever carries key material, passphrases or plaintext.
///
/// Streams ([`GcmReader`](crate::GcmReader), [`CbcReader`](crate::CbcReader), ...) report failures
/// as `io::Error`s whose inner error is one of these; [`Error::from_io`] gets it back.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The passphrase does not unwrap the data key (its authentication tag did not verify).
    #[error("wrong passphrase: the repository data key could not be unwrapped")]
    WrongPassphrase,
    /// A segment of an AES-256-GCM stream failed authentication.
    #[error(
        "encrypted data failed authentication at segment {segment}: \
         wrong key, or the data is corrupt, tampered with, truncated or reordered"
    )]
    Authentication {
        /// Index of the failing segment, counting from 0.
        segment: u64,
    },
    /// The encrypted data ends early (e.g. no final segment, or a partial block).
    #[error("encrypted data is truncated")]
    Truncated,
    /// An AES-256-GCM stream continues after its final segment.
    #[error("encrypted data continues after its final segment")]
    TrailingData,
    /// An AES-256-GCM stream would need more segments than its 32-bit counter allows.
    #[error("encrypted stream too long (more than 2^32 segments)")]
    TooLong,
    /// CBC padding check failed after decryption.
    #[error("wrong passphrase or corrupt data (bad padding)")]
    BadPadding,
    /// The data does not begin with the header of the expected cipher format.
    #[error("data is not encrypted in the expected format (header missing)")]
    NotEncrypted,
    /// A cipher name that is not one of the accepted values.
    #[error("unknown cipher type '{value}': expected one of none, aes-256-gcm, aes-256-cbc")]
    UnknownCipher {
        /// The rejected value.
        value: String,
    },
    /// A cipher other than `none` was requested without a key.
    #[error("cipher {cipher} needs a key, but none was given")]
    MissingKey {
        /// The requested cipher (its `Display` form).
        cipher: String,
    },
    /// The key-derivation function failed or its parameters are unsupported.
    #[error("key derivation failed: {0}")]
    Kdf(String),
    /// A wrapped key's fields are malformed (bad hex, wrong lengths).
    #[error("malformed wrapped key: {0}")]
    MalformedKey(String),
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
    /// Encryption itself failed (should not happen with valid lengths).
    #[error("encryption failed")]
    Encrypt,
}

impl Error {
    /// The `io::ErrorKind` this error is reported with inside an `io::Error`.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::MissingKey { .. } | Error::UnknownCipher { .. } => io::ErrorKind::InvalidInput,
            Error::Random(_) | Error::Encrypt | Error::TooLong => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidData,
        }
    }

    /// The crate error inside an `io::Error` returned by this crate's streams, if any.
    ///
    /// ```
    /// use pgbr_crypto::{decrypt_to_vec, CipherType, DataKey, Error};
    /// let key = DataKey::generate();
    /// let err = decrypt_to_vec(CipherType::Aes256Gcm, Some(&key), b"not encrypted").unwrap_err();
    /// assert_eq!(Error::from_io(&err), Some(&Error::NotEncrypted));
    /// ```
    pub fn from_io(err: &io::Error) -> Option<&Error> {
        err.get_ref().and_then(|e| e.downcast_ref::<Error>())
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.io_kind(), e)
    }
}
