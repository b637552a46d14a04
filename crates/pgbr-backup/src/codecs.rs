//! The one mapping between the engine's codec types ([`CompressType`], [`CipherType`]) and the
//! names the repository's metadata stores them under ([`Compression`], [`Cipher`]). The matches
//! are exhaustive both ways, so a codec added to one side and not the other does not compile.

use pgbr_crypto::CipherType;
use pgbr_manifest::{Cipher, Compression};
use pgbr_storage::CompressType;

/// The codec of files the metadata says are stored with `c`.
pub(crate) fn compress_type(c: Compression) -> CompressType {
    match c {
        Compression::None => CompressType::None,
        Compression::Zst => CompressType::Zst,
        Compression::Gz => CompressType::Gz,
        Compression::Lz4 => CompressType::Lz4,
    }
}

/// What the metadata records for files stored with `c`.
pub(crate) fn compression(c: CompressType) -> Compression {
    match c {
        CompressType::None => Compression::None,
        CompressType::Zst => Compression::Zst,
        CompressType::Gz => Compression::Gz,
        CompressType::Lz4 => Compression::Lz4,
    }
}

/// The cipher of files the metadata says are stored with `c`.
pub(crate) fn cipher_type(c: Cipher) -> CipherType {
    match c {
        Cipher::None => CipherType::None,
        Cipher::Aes256Gcm => CipherType::Aes256Gcm,
        Cipher::Aes256Cbc => CipherType::Aes256Cbc,
    }
}

/// What the metadata records for files stored with `c`.
pub(crate) fn cipher(c: CipherType) -> Cipher {
    match c {
        CipherType::None => Cipher::None,
        CipherType::Aes256Gcm => Cipher::Aes256Gcm,
        CipherType::Aes256Cbc => Cipher::Aes256Cbc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_are_the_codec_names() {
        for c in CompressType::ALL {
            assert_eq!(compression(c).as_str(), c.name());
            assert_eq!(compress_type(compression(c)), c);
        }
        for c in [
            CipherType::None,
            CipherType::Aes256Gcm,
            CipherType::Aes256Cbc,
        ] {
            assert_eq!(cipher(c).as_str(), c.as_str());
            assert_eq!(cipher_type(cipher(c)), c);
        }
    }
}
