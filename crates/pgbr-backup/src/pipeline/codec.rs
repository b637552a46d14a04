//! The codec chain: how stored bytes are compressed and encrypted, and read back.
//!
//! Streams go through [`Encoder`] (compress → encrypt → count) and [`decode_object`] (count →
//! decrypt → decompress → hash); pieces held in memory (blocks, bundled files) through [`seal`]
//! and [`unseal`]. Backup, restore and verify all read stored bytes back through these, so a
//! stored object means the same thing to each of them.

use std::io::{self, Read, Write};

use pgbr_crypto::{CipherType, DataKey, DecryptReader, EncryptWriter};
use pgbr_manifest::Checksum;
use pgbr_storage::{CompressType, CompressWriter, DecompressReader, Storage};

use super::{read_full, CHUNK};
use crate::error::{Error, Result};

/// How stored bytes are encoded.
#[derive(Clone)]
pub(crate) struct Codec {
    pub compress_type: CompressType,
    pub level: i32,
    pub cipher: CipherType,
    pub key: Option<DataKey>,
    /// Extra compression threads for one stream (zstd only; 0 = none).
    pub workers: u32,
}

impl Codec {
    /// The codec to read back what was stored with `compress_type` and `cipher` (level and
    /// workers only matter when encoding).
    pub(crate) fn for_reading(
        compress_type: CompressType,
        cipher: CipherType,
        key: Option<&DataKey>,
    ) -> Codec {
        Codec {
            compress_type,
            level: 0,
            cipher,
            key: key.cloned(),
            workers: 0,
        }
    }
}

/// Counts the stored bytes that pass through: written by [`Encoder`], read by
/// [`decode_object`].
struct Counting<T> {
    inner: T,
    count: u64,
}

impl<T> Counting<T> {
    fn new(inner: T) -> Self {
        Counting { inner, count: 0 }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// The encode chain of one stream: compresses, encrypts, and writes to a sink, counting the
/// stored bytes.
pub(crate) struct Encoder<W: Write> {
    inner: CompressWriter<EncryptWriter<Counting<W>>>,
}

impl<W: Write> Encoder<W> {
    /// A stream encoded with `codec` into `sink`.
    pub(crate) fn new(codec: &Codec, sink: W) -> io::Result<Self> {
        let enc = EncryptWriter::new(codec.cipher, codec.key.as_ref(), Counting::new(sink))?;
        let inner =
            CompressWriter::with_workers(codec.compress_type, codec.level, codec.workers, enc)?;
        Ok(Encoder { inner })
    }

    /// Encodes all of `data`.
    pub(crate) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(data)
    }

    /// Ends the stream; hands back the sink and the stored bytes written to it.
    pub(crate) fn finish(self) -> io::Result<(W, u64)> {
        let enc = self.inner.finish()?;
        let sink = enc.finish()?;
        Ok((sink.inner, sink.count))
    }
}

/// What [`decode_object`] read and gave.
pub(crate) struct Decoded {
    /// Bytes of plaintext.
    pub size: u64,
    /// BLAKE3 of the plaintext.
    pub checksum: Checksum,
    /// Stored bytes read.
    pub stored: u64,
}

/// Where [`decode_object`] stopped; each caller words these its own way.
pub(crate) enum DecodeError {
    /// The object could not be opened.
    Open(Error),
    /// Its bytes could not be read on, decrypted or decompressed.
    Decode(io::Error),
    /// The consumer of the plaintext failed.
    Sink(Error),
}

/// The decode chain of one stream: reads `object`, decrypts and decompresses it with `codec`,
/// hashes the plaintext and hands it to `each` in pieces of up to [`CHUNK`] bytes.
pub(crate) fn decode_object(
    storage: &Storage,
    object: &str,
    codec: &Codec,
    handle: &tokio::runtime::Handle,
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> std::result::Result<Decoded, DecodeError> {
    let raw = storage
        .blocking_reader(object, handle.clone())
        .map_err(|e| DecodeError::Open(e.into()))?;
    let mut raw = Counting::new(raw);
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    {
        let dec = DecryptReader::new(codec.cipher, codec.key.as_ref(), &mut raw)
            .map_err(DecodeError::Decode)?;
        let mut plain =
            DecompressReader::new(codec.compress_type, dec).map_err(DecodeError::Decode)?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            // A storage failure surfaces as io::Error too, and is reported as one.
            let n = read_full(&mut plain, &mut buf).map_err(DecodeError::Decode)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            each(&buf[..n]).map_err(DecodeError::Sink)?;
            size += n as u64;
        }
    }
    Ok(Decoded {
        size,
        checksum: Checksum::from(hasher.finalize()),
        stored: raw.count,
    })
}

/// Compresses then encrypts one piece of data held in memory.
pub(crate) fn seal(codec: &Codec, data: &[u8]) -> io::Result<Vec<u8>> {
    let compressed = pgbr_storage::compress_to_vec(codec.compress_type, codec.level, data)?;
    pgbr_crypto::encrypt_owned(codec.cipher, codec.key.as_ref(), compressed)
}

/// Decrypts then decompresses one piece stored with [`seal`].
pub(crate) fn unseal(codec: &Codec, data: &[u8]) -> io::Result<Vec<u8>> {
    let compressed = pgbr_crypto::decrypt_borrowed(codec.cipher, codec.key.as_ref(), data)?;
    pgbr_storage::decompress_to_vec(codec.compress_type, &compressed)
}

/// A coder for decoding deltas (its level only matters when encoding).
pub(crate) fn delta_decoder<'b>() -> Result<pgbr_storage::DeltaCoder<'b>> {
    pgbr_storage::DeltaCoder::new(3).map_err(|e| Error::Internal(format!("delta decoder: {e}")))
}

/// Opens a piece stored delta-coded against `base` (at most `max_size` bytes).
pub(crate) fn unseal_delta<'b>(
    codec: &Codec,
    coder: &mut pgbr_storage::DeltaCoder<'b>,
    base: &'b [u8],
    data: &[u8],
    max_size: usize,
) -> io::Result<Vec<u8>> {
    let delta = pgbr_crypto::decrypt_borrowed(codec.cipher, codec.key.as_ref(), data)?;
    coder.decode_at_most(base, &delta, max_size)
}

/// Opens one sealed piece that starts at `offset` in `object`; errors name both.
pub(crate) fn open_piece(
    codec: &Codec,
    object: &str,
    offset: u64,
    piece: &[u8],
) -> Result<Vec<u8>> {
    unseal(codec, piece).map_err(|e| {
        Error::Corrupt(format!(
            "{object} (bytes {offset}..{}): cannot be read back ({e}); the stored data is damaged or the key is wrong",
            offset + piece.len() as u64
        ))
    })
}
