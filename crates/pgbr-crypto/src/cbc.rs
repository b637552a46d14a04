//! AES-256-CBC in OpenSSL's `Salted__` format, as written by pgBackRest and
//! `openssl enc -aes-256-cbc -md sha1`.
//!
//! Layout: `"Salted__"` || salt (8 random bytes) || AES-256-CBC(plaintext, PKCS#7 padding), with key
//! and IV from `EVP_BytesToKey(SHA-1, 1 iteration, passphrase, salt)`. Nothing is authenticated:
//! a wrong passphrase is usually caught by the padding check, corruption mostly is not.

use std::io::{self, Read, Write};

use aes::cipher::inout::InOutBuf;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use crate::gcm::read_full;
use crate::key::fill_random;
use crate::Error;

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

/// Magic bytes of OpenSSL's salted format.
const MAGIC: &[u8; 8] = b"Salted__";
const SALT_LEN: usize = 8;
const HEADER_LEN: usize = MAGIC.len() + SALT_LEN;
const BLOCK: usize = 16;
const KEY_LEN: usize = 32;
/// Bytes processed per batch.
const CHUNK: usize = 64 * 1024;

/// OpenSSL's `EVP_BytesToKey` with SHA-1 and one iteration: key (32 bytes) and IV (16 bytes).
fn bytes_to_key(passphrase: &[u8], salt: &[u8]) -> Zeroizing<[u8; KEY_LEN + BLOCK]> {
    let mut out = Zeroizing::new([0u8; KEY_LEN + BLOCK]);
    let mut filled = 0;
    let mut prev: Option<Zeroizing<[u8; 20]>> = None;
    while filled < out.len() {
        let mut h = Sha1::new();
        if let Some(p) = &prev {
            h.update(&p[..]);
        }
        h.update(passphrase);
        h.update(salt);
        let digest = Zeroizing::new(<[u8; 20]>::from(h.finalize()));
        let n = (out.len() - filled).min(digest.len());
        out[filled..filled + n].copy_from_slice(&digest[..n]);
        filled += n;
        prev = Some(digest);
    }
    out
}

fn encryptor(passphrase: &[u8], salt: &[u8]) -> Encryptor {
    let kiv = bytes_to_key(passphrase, salt);
    Encryptor::new(kiv[..KEY_LEN].into(), kiv[KEY_LEN..].into())
}

fn decryptor(passphrase: &[u8], salt: &[u8]) -> Decryptor {
    let kiv = bytes_to_key(passphrase, salt);
    Decryptor::new(kiv[..KEY_LEN].into(), kiv[KEY_LEN..].into())
}

fn poisoned() -> io::Error {
    io::Error::other("encrypted stream is unusable after an earlier error")
}

/// Encrypts everything written to it with AES-256-CBC in OpenSSL's `Salted__` format.
///
/// [`CbcWriter::finish`] must be called: it writes the padded last block.
pub struct CbcWriter<W: Write> {
    inner: W,
    cipher: Encryptor,
    /// Pending plaintext (fewer than 16 bytes between writes), then the batch being encrypted.
    buf: Vec<u8>,
    failed: bool,
}

impl<W: Write> CbcWriter<W> {
    /// Start a stream: writes `"Salted__"` and a fresh random salt to `inner`.
    pub fn new(passphrase: &[u8], mut inner: W) -> io::Result<Self> {
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        fill_random(&mut header[MAGIC.len()..])?;
        inner.write_all(&header)?;
        Ok(CbcWriter {
            cipher: encryptor(passphrase, &header[MAGIC.len()..]),
            inner,
            buf: Vec::with_capacity(CHUNK + BLOCK),
            failed: false,
        })
    }

    /// Encrypt the whole blocks of `buf`, write them, and keep the partial tail.
    fn encrypt_whole_blocks(&mut self) -> io::Result<()> {
        let whole = self.buf.len() / BLOCK * BLOCK;
        let (blocks, _) = InOutBuf::from(&mut self.buf[..whole]).into_chunks();
        self.cipher.encrypt_blocks_inout_mut(blocks);
        if let Err(e) = self.inner.write_all(&self.buf[..whole]) {
            self.failed = true;
            return Err(e);
        }
        self.buf.drain(..whole);
        Ok(())
    }

    /// Pad and write the last block, flush, and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.failed {
            return Err(poisoned());
        }
        let pad = BLOCK - self.buf.len() % BLOCK;
        self.buf.extend(std::iter::repeat_n(pad as u8, pad));
        self.encrypt_whole_blocks()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for CbcWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(poisoned());
        }
        let n = data.len().min(CHUNK);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= BLOCK {
            self.encrypt_whole_blocks()?;
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
    Header,
    Body,
    Done,
    Failed(Option<Error>),
}

/// Decrypts AES-256-CBC data in OpenSSL's `Salted__` format.
///
/// Missing header: [`Error::NotEncrypted`]; bad padding (usually a wrong passphrase):
/// [`Error::BadPadding`]; a length that is not whole blocks: [`Error::Truncated`]. All are
/// `io::Error`s of kind `InvalidData` (see [`Error::from_io`]). The last block is held back until
/// the end of the input is seen, so padding is never returned as data.
pub struct CbcReader<R: Read> {
    inner: R,
    passphrase: Zeroizing<Vec<u8>>,
    cipher: Option<Decryptor>,
    /// Ciphertext read but not yet decrypted.
    input: Vec<u8>,
    /// Decrypted plaintext; `out[start..]` is unread.
    out: Vec<u8>,
    start: usize,
    state: ReadState,
}

impl<R: Read> CbcReader<R> {
    /// A reader decrypting `inner` with `passphrase`. Nothing is read until the first `read`.
    pub fn new(passphrase: &[u8], inner: R) -> Self {
        CbcReader {
            inner,
            passphrase: Zeroizing::new(passphrase.to_vec()),
            cipher: None,
            input: Vec::new(),
            out: Vec::new(),
            start: 0,
            state: ReadState::Header,
        }
    }

    fn read_header(&mut self) -> io::Result<()> {
        let mut header = [0u8; HEADER_LEN];
        let n = read_full(&mut self.inner, &mut header)?;
        if n < HEADER_LEN || &header[..MAGIC.len()] != MAGIC {
            return Err(Error::NotEncrypted.into());
        }
        self.cipher = Some(decryptor(&self.passphrase, &header[MAGIC.len()..]));
        self.passphrase = Zeroizing::new(Vec::new());
        self.input = Vec::with_capacity(CHUNK + 2 * BLOCK);
        self.out = Vec::with_capacity(CHUNK + 2 * BLOCK);
        self.state = ReadState::Body;
        Ok(())
    }

    /// Decrypt the next batch into `out`.
    fn next_batch(&mut self) -> io::Result<()> {
        if let ReadState::Header = self.state {
            self.read_header()?;
        }
        // Keep one block back until the end is seen: it carries the padding.
        let have = self.input.len();
        self.input.resize(CHUNK + BLOCK, 0);
        let n = read_full(&mut self.inner, &mut self.input[have..])?;
        self.input.truncate(have + n);
        let eof = self.input.len() < CHUNK + BLOCK;
        let len = self.input.len();
        let ready = if eof {
            if len == 0 || len % BLOCK != 0 {
                return Err(Error::Truncated.into());
            }
            len
        } else {
            (len / BLOCK - 1) * BLOCK
        };
        let Some(cipher) = self.cipher.as_mut() else {
            return Err(poisoned());
        };
        self.out.clear();
        self.out.extend_from_slice(&self.input[..ready]);
        self.input.drain(..ready);
        let (blocks, _) = InOutBuf::from(&mut self.out[..]).into_chunks();
        cipher.decrypt_blocks_inout_mut(blocks);
        if eof {
            let pad = usize::from(self.out[ready - 1]);
            let padding_ok = (1..=BLOCK).contains(&pad)
                && self.out[ready - pad..]
                    .iter()
                    .all(|&b| usize::from(b) == pad);
            if !padding_ok {
                self.out.clear();
                return Err(Error::BadPadding.into());
            }
            self.out.truncate(ready - pad);
            self.state = ReadState::Done;
        }
        self.start = 0;
        Ok(())
    }
}

impl<R: Read> Read for CbcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.start < self.out.len() {
                let n = buf.len().min(self.out.len() - self.start);
                buf[..n].copy_from_slice(&self.out[self.start..self.start + n]);
                self.start += n;
                return Ok(n);
            }
            if buf.is_empty() {
                return Ok(0);
            }
            match &self.state {
                ReadState::Done => return Ok(0),
                ReadState::Failed(Some(e)) => return Err(e.clone().into()),
                ReadState::Failed(None) => return Err(poisoned()),
                ReadState::Header | ReadState::Body => {}
            }
            if let Err(e) = self.next_batch() {
                self.out.clear();
                self.start = 0;
                self.state = ReadState::Failed(Error::from_io(&e).cloned());
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    fn seal(pass: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut w = CbcWriter::new(pass, Vec::new()).expect("new");
        for chunk in plain.chunks(5) {
            w.write_all(chunk).expect("write");
        }
        w.finish().expect("finish")
    }

    fn open(pass: &[u8], sealed: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        CbcReader::new(pass, sealed).read_to_end(&mut out)?;
        Ok(out)
    }

    fn crate_error(e: &io::Error) -> Error {
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        Error::from_io(e).cloned().expect("crate error inside")
    }

    #[test]
    fn evp_bytes_to_key_sha1_known_answer() {
        // openssl enc -aes-256-cbc -md sha1 -pass pass:password -S 0102030405060708 -P
        let kiv = bytes_to_key(b"password", &[1, 2, 3, 4, 5, 6, 7, 8]);
        let d1 = Sha1::digest(b"password\x01\x02\x03\x04\x05\x06\x07\x08");
        assert_eq!(kiv[..20], d1[..]);
        let mut h = Sha1::new();
        h.update(d1);
        h.update(b"password\x01\x02\x03\x04\x05\x06\x07\x08");
        assert_eq!(kiv[20..40], h.finalize()[..]);
    }

    #[test]
    fn round_trip_and_layout() {
        for len in [
            0,
            1,
            15,
            16,
            17,
            CHUNK - 1,
            CHUNK,
            CHUNK + 15,
            CHUNK + 16,
            3 * CHUNK + 7,
        ] {
            let plain = data(len);
            let sealed = seal(b"pw", &plain);
            assert_eq!(&sealed[..8], b"Salted__");
            assert_eq!(sealed.len(), HEADER_LEN + (len / BLOCK + 1) * BLOCK);
            assert_eq!(open(b"pw", &sealed).expect("open"), plain, "len {len}");
        }
    }

    #[test]
    fn wrong_passphrase_is_mostly_detected() {
        let mut detected = 0;
        for i in 0..64 {
            let sealed = seal(b"right", &data(100 + i));
            match open(b"wrong", &sealed) {
                Err(e) => {
                    assert_eq!(crate_error(&e), Error::BadPadding);
                    assert!(e.to_string().contains("wrong passphrase or corrupt data"));
                    detected += 1;
                }
                Ok(out) => assert_ne!(out, data(100 + i)),
            }
        }
        assert!(detected >= 56, "only {detected}/64 detected");
    }

    #[test]
    fn bad_framing() {
        for bad in [
            &b""[..],
            b"Salted_",
            b"Salted__1234567",
            b"PGBRGCM1xxxxxxxxxxxxxxxxxxxxxxxx",
        ] {
            let err = open(b"pw", bad).expect_err("no header");
            assert_eq!(crate_error(&err), Error::NotEncrypted);
        }
        let sealed = seal(b"pw", &data(40));
        for cut in [HEADER_LEN, HEADER_LEN + 1, sealed.len() - 1] {
            let err = open(b"pw", &sealed[..cut]).expect_err("truncated");
            assert_eq!(crate_error(&err), Error::Truncated);
        }
    }
}
