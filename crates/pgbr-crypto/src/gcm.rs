//! AES-256-GCM segmented stream (the STREAM construction).
//!
//! Layout:
//!
//! ```text
//! header   = "PGBRGCM1" (8 bytes) || salt (32 random bytes) || nonce prefix (7 random bytes)
//! subkey   = BLAKE3-keyed(key = data key, "pgbr-gcm-stream-subkey-v1" || salt), 32 bytes
//! segment  = AES-256-GCM(subkey, plaintext of up to 64 KiB) || tag (16 bytes)
//! nonce(i) = nonce prefix (7) || i as u32 big-endian (4) || last flag (1: 1 for the final segment, else 0)
//! ```
//!
//! Every stream is encrypted under its own subkey, derived from the repository-wide data key and
//! the stream's random salt, so nonces never need to be unique across streams: two streams share
//! a subkey only if their 256-bit salts collide (the random nonce prefix is kept as defence in
//! depth). The whole header (magic, salt and nonce prefix) is the associated data of every
//! segment, and the salt also selects the subkey, so changing any of it fails authentication.
//!
//! Every segment but the last holds exactly 64 KiB of plaintext; the last holds less (possibly
//! nothing) and is sealed with the last flag set, so a stream cut at any point, reordered, spliced
//! or extended fails to authenticate.

use std::io::{self, Read, Write};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use zeroize::{Zeroize, Zeroizing};

use crate::key::fill_random;
use crate::{DataKey, Error};

/// Magic bytes opening every AES-256-GCM stream.
const MAGIC: &[u8; 8] = b"PGBRGCM1";
/// Length of the random per-stream salt the subkey is derived from.
const SALT_LEN: usize = 32;
/// Length of the random nonce prefix.
const PREFIX_LEN: usize = 7;
/// Length of the stream header: magic, salt, nonce prefix.
const HEADER_LEN: usize = MAGIC.len() + SALT_LEN + PREFIX_LEN;
/// Offset of the nonce prefix in the header.
const PREFIX_AT: usize = MAGIC.len() + SALT_LEN;
/// Domain separation for the subkey derivation; hashed before the salt.
const SUBKEY_CONTEXT: &[u8] = b"pgbr-gcm-stream-subkey-v1";
/// Plaintext bytes per (non-final) segment.
const SEGMENT_LEN: usize = 64 * 1024;
/// Length of a GCM tag.
const TAG_LEN: usize = 16;

/// The cipher of one stream: AES-256-GCM under the subkey derived from `key` and the salt in
/// `header`. The subkey and the hash state are zeroized before returning.
fn cipher_for(key: &DataKey, header: &[u8; HEADER_LEN]) -> Aes256Gcm {
    let mut hasher = blake3::Hasher::new_keyed(key.as_bytes());
    hasher.update(SUBKEY_CONTEXT);
    hasher.update(&header[MAGIC.len()..PREFIX_AT]);
    let mut hash = hasher.finalize();
    hasher.zeroize();
    let subkey = Zeroizing::new(*hash.as_bytes());
    hash.zeroize();
    Aes256Gcm::new((&*subkey).into())
}

fn nonce_for(header: &[u8; HEADER_LEN], index: u64, last: bool) -> Result<[u8; 12], Error> {
    let index = u32::try_from(index).map_err(|_| Error::TooLong)?;
    let mut nonce = [0u8; 12];
    nonce[..PREFIX_LEN].copy_from_slice(&header[PREFIX_AT..]);
    nonce[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    Ok(nonce)
}

/// Read until `buf` is full or the input ends; returns the number of bytes read.
pub(crate) fn read_full<R: Read>(inner: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match inner.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn poisoned() -> io::Error {
    io::Error::other("encrypted stream is unusable after an earlier error")
}

/// Encrypts everything written to it as an AES-256-GCM segmented stream into `inner`.
///
/// Buffers at most one segment (64 KiB). [`GcmWriter::finish`] must be called: it writes the final
/// segment. A writer dropped without `finish` leaves a stream that readers reject as truncated.
/// `flush` flushes `inner` but cannot flush a partial segment.
pub struct GcmWriter<W: Write> {
    inner: W,
    cipher: Aes256Gcm,
    header: [u8; HEADER_LEN],
    segment_len: usize,
    /// Plaintext of the current segment; capacity for it plus a tag.
    buf: Vec<u8>,
    /// Index of the current segment.
    index: u64,
    failed: bool,
}

impl<W: Write> GcmWriter<W> {
    /// Start a stream: writes the header (with a fresh random salt and nonce prefix) to `inner`.
    pub fn new(key: &DataKey, inner: W) -> io::Result<Self> {
        Self::with_segment_len(key, inner, SEGMENT_LEN)
    }

    pub(crate) fn with_segment_len(
        key: &DataKey,
        inner: W,
        segment_len: usize,
    ) -> io::Result<Self> {
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        fill_random(&mut header[MAGIC.len()..])?;
        Self::with_header(key, inner, segment_len, header)
    }

    /// Start a stream with the given header (magic, salt, nonce prefix).
    fn with_header(
        key: &DataKey,
        mut inner: W,
        segment_len: usize,
        header: [u8; HEADER_LEN],
    ) -> io::Result<Self> {
        let cipher = cipher_for(key, &header);
        inner.write_all(&header)?;
        Ok(GcmWriter {
            inner,
            cipher,
            header,
            segment_len,
            buf: Vec::with_capacity(segment_len + TAG_LEN),
            index: 0,
            failed: false,
        })
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        let result = self.seal_inner(last);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn seal_inner(&mut self, last: bool) -> io::Result<()> {
        // A non-final segment must leave an index for the final one.
        if !last && self.index >= u64::from(u32::MAX) {
            return Err(Error::TooLong.into());
        }
        let nonce = nonce_for(&self.header, self.index, last)?;
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &self.header, &mut self.buf)
            .map_err(|_| Error::Encrypt)?;
        self.buf.extend_from_slice(&tag);
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Write the final segment, flush, and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.failed {
            return Err(poisoned());
        }
        self.seal(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for GcmWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(poisoned());
        }
        let n = data.len().min(self.segment_len - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        // Seal a full segment at once: the final segment is always shorter than a full one.
        if self.buf.len() == self.segment_len {
            self.seal(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(poisoned());
        }
        self.inner.flush()
    }
}

#[derive(Debug)]
enum ReadState {
    /// The header has not been read yet.
    Header,
    /// Reading segments.
    Segments,
    /// The final segment has been verified and returned (or is being returned).
    Done,
    /// An error happened: `Some` for a crate error (returned again), `None` for an I/O error.
    Failed(Option<Error>),
}

/// Decrypts an AES-256-GCM segmented stream read from `inner`.
///
/// Bytes of a segment are returned only after its tag verified. Authentication failures,
/// truncation and trailing data are reported as `io::Error`s of kind `InvalidData` wrapping an
/// [`Error`] (see [`Error::from_io`]); after an error every further read fails.
pub struct GcmReader<R: Read> {
    inner: R,
    /// The data key, until the header is read and the stream's cipher derived from it.
    key: Option<DataKey>,
    /// The stream's cipher, once the header is read.
    cipher: Option<Aes256Gcm>,
    header: [u8; HEADER_LEN],
    segment_len: usize,
    /// Holds one sealed segment; after verification `buf[start..end]` is unread plaintext.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    index: u64,
    state: ReadState,
}

impl<R: Read> GcmReader<R> {
    /// A reader decrypting `inner` with `key`. Nothing is read until the first `read`.
    pub fn new(key: &DataKey, inner: R) -> Self {
        Self::with_segment_len(key, inner, SEGMENT_LEN)
    }

    pub(crate) fn with_segment_len(key: &DataKey, inner: R, segment_len: usize) -> Self {
        GcmReader {
            inner,
            key: Some(key.clone()),
            cipher: None,
            header: [0u8; HEADER_LEN],
            segment_len,
            buf: Vec::new(),
            start: 0,
            end: 0,
            index: 0,
            state: ReadState::Header,
        }
    }

    fn read_header(&mut self) -> io::Result<()> {
        let n = read_full(&mut self.inner, &mut self.header)?;
        let magic_len = n.min(MAGIC.len());
        if self.header[..magic_len] != MAGIC[..magic_len] {
            return Err(Error::NotEncrypted.into());
        }
        if n < HEADER_LEN {
            return Err(Error::Truncated.into());
        }
        // Taking the key drops (and zeroizes) the reader's copy: only the subkey is needed now.
        let Some(key) = self.key.take() else {
            return Err(poisoned());
        };
        self.cipher = Some(cipher_for(&key, &self.header));
        self.buf = vec![0u8; self.segment_len + TAG_LEN];
        self.state = ReadState::Segments;
        Ok(())
    }

    /// Read, verify and decrypt the next segment into `buf[start..end]`.
    fn next_segment(&mut self) -> io::Result<()> {
        if let ReadState::Header = self.state {
            self.read_header()?;
        }
        let Some(cipher) = &self.cipher else {
            return Err(poisoned());
        };
        let full = self.segment_len + TAG_LEN;
        let n = read_full(&mut self.inner, &mut self.buf[..full])?;
        if n < TAG_LEN {
            return Err(Error::Truncated.into());
        }
        let last = n < full;
        let nonce = nonce_for(&self.header, self.index, last)?;
        let (ciphertext, tag) = self.buf[..n].split_at_mut(n - TAG_LEN);
        let verified = cipher.decrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            &self.header,
            ciphertext,
            Tag::from_slice(tag),
        );
        if verified.is_err() {
            return Err(Error::Authentication {
                segment: self.index,
            }
            .into());
        }
        if last {
            let mut probe = [0u8; 1];
            if read_full(&mut self.inner, &mut probe)? != 0 {
                return Err(Error::TrailingData.into());
            }
            self.state = ReadState::Done;
        }
        self.index += 1;
        self.start = 0;
        self.end = n - TAG_LEN;
        Ok(())
    }
}

impl<R: Read> Read for GcmReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.start < self.end {
                let n = out.len().min(self.end - self.start);
                out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
                self.start += n;
                return Ok(n);
            }
            if out.is_empty() {
                return Ok(0);
            }
            match &self.state {
                ReadState::Done => return Ok(0),
                ReadState::Failed(Some(e)) => return Err(e.clone().into()),
                ReadState::Failed(None) => return Err(poisoned()),
                ReadState::Header | ReadState::Segments => {}
            }
            if let Err(e) = self.next_segment() {
                // Never expose anything from a segment that did not verify.
                self.start = 0;
                self.end = 0;
                self.buf.fill(0);
                self.state = ReadState::Failed(Error::from_io(&e).cloned());
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: usize = 32;

    fn key() -> DataKey {
        DataKey::from_bytes([42; 32])
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn seal(plain: &[u8], seg: usize) -> Vec<u8> {
        let mut w = GcmWriter::with_segment_len(&key(), Vec::new(), seg).expect("new");
        for chunk in plain.chunks(7) {
            w.write_all(chunk).expect("write");
        }
        w.finish().expect("finish")
    }

    fn open(sealed: &[u8], seg: usize) -> io::Result<Vec<u8>> {
        let mut r = GcmReader::with_segment_len(&key(), sealed, seg);
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    fn crate_error(e: &io::Error) -> Error {
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        Error::from_io(e).cloned().expect("crate error inside")
    }

    #[test]
    fn layout_and_round_trip() {
        for len in [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 3 * SEG + 5] {
            let plain = data(len);
            let sealed = seal(&plain, SEG);
            assert_eq!(&sealed[..8], b"PGBRGCM1");
            let segments = len / SEG + 1;
            assert_eq!(
                sealed.len(),
                HEADER_LEN + len + segments * TAG_LEN,
                "len {len}"
            );
            assert_eq!(open(&sealed, SEG).expect("open"), plain);
        }
    }

    #[test]
    fn real_segment_size_exact_boundary() {
        let plain = data(SEGMENT_LEN);
        let mut w = GcmWriter::new(&key(), Vec::new()).expect("new");
        w.write_all(&plain).expect("write");
        let sealed = w.finish().expect("finish");
        // One full segment plus an empty final one.
        assert_eq!(sealed.len(), HEADER_LEN + SEGMENT_LEN + 2 * TAG_LEN);
        let mut out = Vec::new();
        GcmReader::new(&key(), &sealed[..])
            .read_to_end(&mut out)
            .expect("open");
        assert_eq!(out, plain);
    }

    #[test]
    fn salt_and_nonce_prefix_are_random() {
        assert_eq!(HEADER_LEN, 47);
        let (a, b) = (seal(b"x", SEG), seal(b"x", SEG));
        assert_ne!(a[8..40], b[8..40], "salt");
        assert_ne!(a[40..47], b[40..47], "nonce prefix");
    }

    fn header(salt: u8, prefix: u8) -> [u8; HEADER_LEN] {
        let mut h = [prefix; HEADER_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8..40].fill(salt);
        h
    }

    fn seal_with_header(plain: &[u8], header: [u8; HEADER_LEN]) -> Vec<u8> {
        let mut w = GcmWriter::with_header(&key(), Vec::new(), SEG, header).expect("new");
        w.write_all(plain).expect("write");
        w.finish().expect("finish")
    }

    #[test]
    fn subkey_derivation_is_pinned() {
        // Build a stream by hand from the documented format and check that the reader opens it.
        let header = header(7, 9);
        let mut msg = SUBKEY_CONTEXT.to_vec();
        msg.extend_from_slice(&[7; SALT_LEN]);
        let subkey = blake3::keyed_hash(key().as_bytes(), &msg);
        let cipher = Aes256Gcm::new(subkey.as_bytes().into());
        let mut sealed = header.to_vec();
        for (i, (chunk, last)) in [
            (&b"0123456789abcdef0123456789abcdef"[..], false),
            (b"tail", true),
        ]
        .into_iter()
        .enumerate()
        {
            let mut buf = chunk.to_vec();
            let nonce = nonce_for(&header, i as u64, last).expect("nonce");
            assert_eq!(nonce[..7], [9; 7]);
            let tag = cipher
                .encrypt_in_place_detached(Nonce::from_slice(&nonce), &header, &mut buf)
                .expect("seal");
            sealed.extend_from_slice(&buf);
            sealed.extend_from_slice(&tag);
        }
        assert_eq!(
            open(&sealed, SEG).expect("open"),
            b"0123456789abcdef0123456789abcdeftail"
        );
        // And the writer produces exactly these bytes.
        assert_eq!(
            seal_with_header(b"0123456789abcdef0123456789abcdeftail", header),
            sealed
        );
    }

    #[test]
    fn streams_with_the_same_nonce_prefix_use_different_keys() {
        let plain = data(3 * SEG + 3);
        let a = seal_with_header(&plain, header(1, 5));
        let b = seal_with_header(&plain, header(2, 5));
        // Same nonces, same plaintext: only distinct subkeys make the ciphertexts differ.
        assert_eq!(a.len(), b.len());
        for (x, y) in a[HEADER_LEN..]
            .chunks(SEG + TAG_LEN)
            .zip(b[HEADER_LEN..].chunks(SEG + TAG_LEN))
        {
            assert_ne!(x, y);
        }
        // The data key itself never encrypts a segment.
        let raw = Aes256Gcm::new(key().as_bytes().into());
        let header = header(1, 5);
        let nonce = nonce_for(&header, 0, false).expect("nonce");
        let mut seg0 = plain[..SEG].to_vec();
        raw.encrypt_in_place_detached(Nonce::from_slice(&nonce), &header, &mut seg0)
            .expect("seal");
        assert_ne!(seg0[..], a[HEADER_LEN..HEADER_LEN + SEG]);
    }

    #[test]
    fn salt_or_prefix_change_fails_authentication() {
        let sealed = seal(&data(2 * SEG + 3), SEG);
        for i in MAGIC.len()..HEADER_LEN {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let err = open(&bad, SEG).expect_err("header tampering must fail");
            assert_eq!(
                crate_error(&err),
                Error::Authentication { segment: 0 },
                "byte {i}"
            );
        }
        // A segment moved under another stream's header fails too.
        let other = seal(&data(2 * SEG + 3), SEG);
        let mut moved = other[..HEADER_LEN].to_vec();
        moved.extend_from_slice(&sealed[HEADER_LEN..]);
        let err = open(&moved, SEG).expect_err("foreign header");
        assert_eq!(crate_error(&err), Error::Authentication { segment: 0 });
    }

    #[test]
    fn any_single_byte_change_is_detected() {
        for len in [0, 5, SEG, 2 * SEG + 3] {
            let sealed = seal(&data(len), SEG);
            for i in 0..sealed.len() {
                for flip in [0x01, 0x80] {
                    let mut bad = sealed.clone();
                    bad[i] ^= flip;
                    let err = open(&bad, SEG).expect_err("tampering must fail");
                    let err = crate_error(&err);
                    if i < MAGIC.len() {
                        assert_eq!(err, Error::NotEncrypted);
                    } else {
                        // Salt, nonce prefix or a segment: the first affected segment fails.
                        let segment = i.saturating_sub(HEADER_LEN) / (SEG + TAG_LEN);
                        assert_eq!(
                            err,
                            Error::Authentication {
                                segment: segment as u64
                            },
                            "len {len} byte {i}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn any_truncation_is_detected() {
        for len in [0, 5, SEG, 2 * SEG + 3] {
            let sealed = seal(&data(len), SEG);
            for cut in 0..sealed.len() {
                let err = open(&sealed[..cut], SEG).expect_err("truncation must fail");
                crate_error(&err);
            }
        }
        let sealed = seal(&data(2 * SEG), SEG);
        let boundary = HEADER_LEN + 2 * (SEG + TAG_LEN);
        let err = open(&sealed[..boundary], SEG).expect_err("missing final segment");
        assert_eq!(crate_error(&err), Error::Truncated);
    }

    #[test]
    fn extension_is_detected() {
        let sealed = seal(&data(SEG + 3), SEG);
        for extra in [&b"x"[..], &[0u8; TAG_LEN][..], &sealed[HEADER_LEN..]] {
            let mut bad = sealed.clone();
            bad.extend_from_slice(extra);
            let err = open(&bad, SEG).expect_err("extension must fail");
            // Appended bytes become part of what is read as the final segment, which then
            // fails authentication (as a final or, once full-size, as a non-final segment).
            assert_eq!(crate_error(&err), Error::Authentication { segment: 1 });
        }
    }

    #[test]
    fn reordered_or_spliced_segments_are_detected() {
        let sealed = seal(&data(3 * SEG + 3), SEG);
        let s = SEG + TAG_LEN;
        let seg = |i: usize| &sealed[HEADER_LEN + i * s..HEADER_LEN + (i + 1) * s];
        let mut swapped = sealed[..HEADER_LEN].to_vec();
        for i in [1, 0, 2] {
            swapped.extend_from_slice(seg(i));
        }
        swapped.extend_from_slice(&sealed[HEADER_LEN + 3 * s..]);
        let err = open(&swapped, SEG).expect_err("swap must fail");
        assert_eq!(crate_error(&err), Error::Authentication { segment: 0 });

        // Dropping a middle segment.
        let mut dropped = sealed[..HEADER_LEN + s].to_vec();
        dropped.extend_from_slice(&sealed[HEADER_LEN + 2 * s..]);
        let err = open(&dropped, SEG).expect_err("drop must fail");
        assert_eq!(crate_error(&err), Error::Authentication { segment: 1 });

        // A segment from another stream under the same key.
        let other = seal(&data(3 * SEG + 3), SEG);
        let mut spliced = sealed.clone();
        spliced[HEADER_LEN + s..HEADER_LEN + 2 * s]
            .copy_from_slice(&other[HEADER_LEN + s..HEADER_LEN + 2 * s]);
        let err = open(&spliced, SEG).expect_err("splice must fail");
        assert_eq!(crate_error(&err), Error::Authentication { segment: 1 });
    }

    #[test]
    fn wrong_key_and_wrong_format() {
        let sealed = seal(&data(10), SEG);
        let mut r = GcmReader::with_segment_len(&DataKey::from_bytes([1; 32]), &sealed[..], SEG);
        let err = r.read_to_end(&mut Vec::new()).expect_err("wrong key");
        assert_eq!(crate_error(&err), Error::Authentication { segment: 0 });
        // Errors are sticky.
        let err = r.read(&mut [0u8; 4]).expect_err("still failing");
        assert_eq!(crate_error(&err), Error::Authentication { segment: 0 });

        let err = open(b"Salted__12345678abcdefgh", SEG).expect_err("not ours");
        assert_eq!(crate_error(&err), Error::NotEncrypted);
        let err = open(b"", SEG).expect_err("empty");
        assert_eq!(crate_error(&err), Error::Truncated);
    }

    #[test]
    fn only_verified_plaintext_is_returned() {
        let plain = data(3 * SEG + 3);
        let mut sealed = seal(&plain, SEG);
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        let mut r = GcmReader::with_segment_len(&key(), &sealed[..], SEG);
        let mut got = Vec::new();
        let mut buf = [0u8; 5];
        let err = loop {
            match r.read(&mut buf) {
                Ok(0) => panic!("must not reach a clean end"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(crate_error(&err), Error::Authentication { segment: 3 });
        assert_eq!(got, plain[..3 * SEG]);
    }

    #[test]
    fn counter_limit() {
        let header = [0u8; HEADER_LEN];
        assert!(nonce_for(&header, u64::from(u32::MAX), true).is_ok());
        assert_eq!(
            nonce_for(&header, u64::from(u32::MAX) + 1, true),
            Err(Error::TooLong)
        );
    }
}
