//! How a backup's files are stored, as the metadata names it: [`Compression`] and [`Cipher`].
//!
//! The names are those of the storage and crypto crates' codec types (`zst`, `aes-256-gcm`, ...);
//! this crate defines its own enums because the lower crates do not depend on each other. The
//! engine maps between the two in one place, so no reader parses these names again.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The compression of a backup's stored files (`compress_type` in the manifest and in
/// `backup.info`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Stored as is (`"none"`).
    #[default]
    #[serde(rename = "none")]
    None,
    /// Zstandard (`"zst"`).
    #[serde(rename = "zst")]
    Zst,
    /// gzip (`"gz"`).
    #[serde(rename = "gz")]
    Gz,
    /// LZ4 frame format (`"lz4"`).
    #[serde(rename = "lz4")]
    Lz4,
}

impl Compression {
    /// Every compression, in the order messages list them.
    pub const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Zst,
        Compression::Gz,
        Compression::Lz4,
    ];

    /// The name the metadata stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zst => "zst",
            Compression::Gz => "gz",
            Compression::Lz4 => "lz4",
        }
    }
}

/// The cipher of a backup's stored files (`cipher_type` in the manifest and the info files).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Cipher {
    /// Not encrypted (`"none"`).
    #[default]
    #[serde(rename = "none")]
    None,
    /// AES-256-GCM (`"aes-256-gcm"`).
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    /// AES-256-CBC (`"aes-256-cbc"`).
    #[serde(rename = "aes-256-cbc")]
    Aes256Cbc,
}

impl Cipher {
    /// Every cipher, in the order messages list them.
    pub const ALL: [Cipher; 3] = [Cipher::None, Cipher::Aes256Gcm, Cipher::Aes256Cbc];

    /// The name the metadata stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Cipher::None => "none",
            Cipher::Aes256Gcm => "aes-256-gcm",
            Cipher::Aes256Cbc => "aes-256-cbc",
        }
    }
}

/// `Display` (the stored name) and `FromStr` (from it) for both enums.
macro_rules! named {
    ($ty:ident, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                $ty::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let names: Vec<&str> = $ty::ALL.iter().map(|v| v.as_str()).collect();
                        Error::invalid($what, format!("{s:?} is not one of {}", names.join(", ")))
                    })
            }
        }
    };
}

named!(Compression, "compression");
named!(Cipher, "cipher");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialized_strings() {
        for c in Compression::ALL {
            let json = serde_json::to_string(&c).expect("serialize");
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(c.as_str().parse::<Compression>().expect("parse"), c);
        }
        for c in Cipher::ALL {
            let json = serde_json::to_string(&c).expect("serialize");
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(c.as_str().parse::<Cipher>().expect("parse"), c);
        }
        assert!("bz2".parse::<Compression>().is_err());
        assert!(serde_json::from_str::<Cipher>("\"aes-128\"").is_err());
    }
}
