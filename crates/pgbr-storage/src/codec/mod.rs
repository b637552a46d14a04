//! Streaming codecs of stored bytes: zstd, gzip, lz4 (frame format) and none.

mod compress;
mod decompress;
mod delta;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

pub use compress::CompressWriter;
pub use decompress::DecompressReader;
use delta::zstd_piece;
pub use delta::DeltaCoder;

/// Compression applied to stored bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CompressType {
    /// Stored as is.
    None,
    /// Zstandard (the default), extension `.zst`.
    #[default]
    Zst,
    /// gzip (deflate), extension `.gz`.
    Gz,
    /// LZ4 frame format, extension `.lz4`.
    Lz4,
}

/// Every accepted spelling, in the order error messages list them.
const ACCEPTED: &str = "none, zst, gz, lz4";

impl CompressType {
    /// All codecs.
    pub const ALL: [CompressType; 4] = [
        CompressType::None,
        CompressType::Zst,
        CompressType::Gz,
        CompressType::Lz4,
    ];

    /// File name extension of stored objects, with the dot (`""` for [`CompressType::None`]).
    pub fn extension(self) -> &'static str {
        match self {
            CompressType::None => "",
            CompressType::Zst => ".zst",
            CompressType::Gz => ".gz",
            CompressType::Lz4 => ".lz4",
        }
    }

    /// The level used when none is configured: zstd 3, gzip 6, lz4 1, none 0.
    ///
    /// `lz4_flex` has no compression levels; the lz4 level is accepted and ignored.
    pub fn default_level(self) -> i32 {
        match self {
            CompressType::None => 0,
            CompressType::Zst => 3,
            CompressType::Gz => 6,
            CompressType::Lz4 => 1,
        }
    }

    /// The name used in configuration and on the command line (`none`, `zst`, `gz`, `lz4`).
    pub fn name(self) -> &'static str {
        match self {
            CompressType::None => "none",
            CompressType::Zst => "zst",
            CompressType::Gz => "gz",
            CompressType::Lz4 => "lz4",
        }
    }
}

impl fmt::Display for CompressType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error returned when parsing an unknown compression type name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseCompressTypeError {
    value: String,
}

impl fmt::Display for ParseCompressTypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid compress type '{}' (accepted values: {ACCEPTED})",
            self.value
        )
    }
}

impl std::error::Error for ParseCompressTypeError {}

impl FromStr for CompressType {
    type Err = ParseCompressTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(CompressType::None),
            "zst" => Ok(CompressType::Zst),
            "gz" => Ok(CompressType::Gz),
            "lz4" => Ok(CompressType::Lz4),
            other => Err(ParseCompressTypeError {
                value: other.to_string(),
            }),
        }
    }
}

pub(crate) fn invalid_level(kind: CompressType, level: i32, range: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("invalid {kind} compression level {level} (accepted: {range})"),
    )
}

/// Compresses `data` in one go.
///
/// zstd reuses one compression context per thread, so sealing many small pieces (blocks,
/// bundled files) does not pay a context set-up each; the frame carries its content size.
pub fn compress_to_vec(kind: CompressType, level: i32, data: &[u8]) -> io::Result<Vec<u8>> {
    if kind == CompressType::Zst {
        return zstd_piece::compress(level, data);
    }
    let mut w = CompressWriter::new(kind, level, Vec::with_capacity(data.len() / 2 + 64))?;
    w.write_all(data)?;
    w.finish()
}

/// Decompresses `data` in one go (truncated or corrupt input is
/// [`io::ErrorKind::InvalidData`]).
///
/// A single zstd frame that states its content size is decoded with a per-thread context
/// straight into a buffer of that size; anything else is streamed.
pub fn decompress_to_vec(kind: CompressType, data: &[u8]) -> io::Result<Vec<u8>> {
    if kind == CompressType::Zst {
        if let Some(out) = zstd_piece::decompress(data)? {
            return Ok(out);
        }
    }
    let mut out = Vec::with_capacity(data.len().saturating_mul(2));
    DecompressReader::new(kind, data)?.read_to_end(&mut out)?;
    Ok(out)
}

pub(crate) fn corrupt(kind: CompressType, what: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt or truncated {kind} stream: {what}"),
    )
}
