//! Helpers shared by several fuzz targets.
#![allow(dead_code)]

use std::io::{self, Read};

/// A reader that hands out its bytes in short, uneven pieces, as a decompressor or a network
/// stream may: parsers that buffer must not depend on full reads.
pub struct Trickle<'a> {
    data: &'a [u8],
    reads: usize,
}

impl<'a> Trickle<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Trickle { data, reads: 0 }
    }
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        // Mostly short reads, now and then a long one (so that big buffers fill up too).
        let want = if self.reads.is_multiple_of(5) {
            64 * 1024
        } else {
            self.reads * 7 % 13 + 1
        };
        let n = want.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// How a fuzz input asks to damage a sealed stream.
#[derive(Debug, Clone, Copy)]
pub enum Tamper {
    /// Cut the stream at this offset.
    Truncate(usize),
    /// Flip one bit of the byte at this offset.
    Flip(usize, u8),
    /// Append one byte.
    Append(u8),
    /// Remove `len` bytes at this offset.
    Remove(usize, usize),
}

/// A plaintext and a way to damage its sealed form, both taken from a fuzz input: the first
/// byte picks the damage, the next four its position, the next two the plaintext length (in
/// units of 3 bytes, so up to 192 KiB: up to three 64 KiB segments or chunks), the rest is the
/// plaintext's repeated pattern.
pub struct TamperCase {
    /// The plaintext to seal.
    pub plain: Vec<u8>,
    op: u8,
    pos: usize,
}

impl TamperCase {
    /// Reads a case from `data`; `None` when it is too short.
    pub fn parse(data: &[u8]) -> Option<TamperCase> {
        let (head, pattern) = data.split_first_chunk::<7>()?;
        let pos = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let len = usize::from(u16::from_le_bytes([head[5], head[6]])) * 3;
        let mut plain = Vec::with_capacity(len);
        if pattern.is_empty() {
            plain.resize(len, 0);
        }
        while plain.len() < len {
            let n = pattern.len().min(len - plain.len());
            plain.extend_from_slice(&pattern[..n]);
        }
        Some(TamperCase {
            plain,
            op: head[0],
            pos,
        })
    }

    /// The damage to apply to a sealed stream of `len` bytes (never empty).
    pub fn tamper(&self, len: usize) -> Tamper {
        let at = self.pos % len;
        match self.op % 4 {
            0 => Tamper::Truncate(at),
            1 => Tamper::Flip(at, 1 << (self.op / 4 % 8)),
            2 => Tamper::Append(self.op),
            _ => Tamper::Remove(at, (self.pos >> 24).max(1).min(len - at)),
        }
    }
}

/// `sealed` damaged as `tamper` says.
pub fn apply(sealed: &[u8], tamper: Tamper) -> Vec<u8> {
    let mut out = sealed.to_vec();
    match tamper {
        Tamper::Truncate(at) => out.truncate(at),
        Tamper::Flip(at, bit) => out[at] ^= bit,
        Tamper::Append(byte) => out.push(byte),
        Tamper::Remove(at, len) => {
            out.drain(at..at + len);
        }
    }
    out
}

/// What became of a damaged stream: the damage, what the reader returned, and how it ended.
pub struct Damaged {
    /// The damage done.
    pub tamper: Tamper,
    /// Length of the damaged stream.
    pub len: usize,
    /// What the reader returned before the end or its error.
    pub read: Vec<u8>,
    /// How reading ended.
    pub result: io::Result<usize>,
}

/// Seals `case.plain` with `seal`, checks that `open` (reading in short pieces) gives it back,
/// then damages the sealed stream as the case says and reads it again with `open`.
pub fn open_damaged(
    case: &TamperCase,
    seal: impl Fn(&[u8]) -> Vec<u8>,
    open: impl for<'a> Fn(Trickle<'a>) -> Box<dyn Read + 'a>,
) -> Damaged {
    let sealed = seal(&case.plain);
    let mut plain = Vec::new();
    open(Trickle::new(&sealed))
        .read_to_end(&mut plain)
        .expect("own stream decrypts in short reads");
    assert!(plain == case.plain, "own stream decrypts to its plaintext");

    let tamper = case.tamper(sealed.len());
    let damaged = apply(&sealed, tamper);
    let mut read = Vec::new();
    let result = open(Trickle::new(&damaged)).read_to_end(&mut read);
    Damaged {
        tamper,
        len: damaged.len(),
        read,
        result,
    }
}
