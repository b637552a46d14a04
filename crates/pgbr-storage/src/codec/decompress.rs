//! [`DecompressReader`]: bytes read from it are decompressed from the reader it wraps, with
//! truncated or corrupt input an error.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use super::{corrupt, CompressType};

/// Wraps the compressed source and remembers whether it failed or reached its end, so
/// decoder errors can be told apart from source errors and silent truncation detected.
struct Tracked<R> {
    inner: R,
    /// The last error came from the source itself (pass it through unchanged).
    source_failed: bool,
    /// The source returned end-of-file for a non-empty read.
    eof: bool,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.eof = true;
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.source_failed = true;
                }
                Err(e)
            }
        }
    }
}

impl<R> Tracked<R> {
    fn new(inner: R) -> Self {
        Tracked {
            inner,
            source_failed: false,
            eof: false,
        }
    }
}

/// A streaming decompressor reading compressed bytes from `inner`.
///
/// Corrupt, truncated, or trailing data is reported as an [`io::ErrorKind::InvalidData`]
/// error (never a panic, never a silently short stream). Errors of the source reader itself
/// are passed through unchanged.
pub struct DecompressReader<R: Read> {
    inner: ReaderInner<R>,
    done: bool,
}

enum ReaderInner<R: Read> {
    None(R),
    Zst(zstd::stream::read::Decoder<'static, BufReader<Tracked<R>>>),
    Gz(flate2::bufread::GzDecoder<BufReader<Tracked<R>>>),
    Lz4(Box<lz4_flex::frame::FrameDecoder<Tracked<R>>>),
}

impl<R: Read> fmt::Debug for DecompressReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecompressReader")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl<R: Read> DecompressReader<R> {
    /// Starts decoding a stream of `kind` from `inner`.
    pub fn new(kind: CompressType, inner: R) -> io::Result<Self> {
        let inner = match kind {
            CompressType::None => ReaderInner::None(inner),
            CompressType::Zst => {
                let buf = BufReader::with_capacity(128 * 1024, Tracked::new(inner));
                let mut dec = zstd::stream::read::Decoder::with_buffer(buf)?;
                // Stored data never uses windows above 128 MiB (level 22 uses 64 MiB);
                // bounds the memory a hostile stream can demand.
                dec.window_log_max(27)?;
                ReaderInner::Zst(dec)
            }
            CompressType::Gz => ReaderInner::Gz(flate2::bufread::GzDecoder::new(
                BufReader::with_capacity(64 * 1024, Tracked::new(inner)),
            )),
            CompressType::Lz4 => ReaderInner::Lz4(Box::new(lz4_flex::frame::FrameDecoder::new(
                Tracked::new(inner),
            ))),
        };
        Ok(DecompressReader { inner, done: false })
    }

    /// The codec of this stream.
    pub fn kind(&self) -> CompressType {
        match self.inner {
            ReaderInner::None(_) => CompressType::None,
            ReaderInner::Zst(_) => CompressType::Zst,
            ReaderInner::Gz(_) => CompressType::Gz,
            ReaderInner::Lz4(_) => CompressType::Lz4,
        }
    }

    fn tracked_mut(&mut self) -> Option<&mut Tracked<R>> {
        match &mut self.inner {
            ReaderInner::None(_) => None,
            ReaderInner::Zst(d) => Some(d.get_mut().get_mut()),
            ReaderInner::Gz(d) => Some(d.get_mut().get_mut()),
            ReaderInner::Lz4(d) => Some(d.get_mut()),
        }
    }

    /// Maps an error of the decoder: source errors pass through, the rest is corruption.
    fn map_err(&mut self, e: io::Error) -> io::Error {
        let kind = self.kind();
        if e.kind() == io::ErrorKind::Interrupted {
            return e;
        }
        match self.tracked_mut() {
            Some(t) if t.source_failed => {
                t.source_failed = false;
                e
            }
            Some(_) => corrupt(kind, e),
            None => e,
        }
    }

    /// Called when the decoder reports the end of its stream: rejects truncation and
    /// trailing bytes.
    fn check_end(&mut self) -> io::Result<()> {
        let kind = self.kind();
        match &mut self.inner {
            ReaderInner::None(_) => Ok(()),
            // zstd reports an incomplete frame itself; anything after the last frame is
            // parsed as another frame and fails there.
            ReaderInner::Zst(_) => Ok(()),
            ReaderInner::Gz(d) => {
                // GzDecoder validated the trailer (CRC and size); it stops after one member.
                let rest = d.get_mut().fill_buf()?;
                if rest.is_empty() {
                    Ok(())
                } else {
                    Err(corrupt(kind, "trailing data after the end of the stream"))
                }
            }
            ReaderInner::Lz4(d) => {
                // lz4_flex returns Ok(0) when its source ends at a block boundary, and also
                // when a frame ends properly: only the latter leaves the source unread.
                let t = d.get_mut();
                if t.eof {
                    return Err(corrupt(kind, "unexpected end of input"));
                }
                let mut probe = [0u8; 1];
                loop {
                    match t.inner.read(&mut probe) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {
                            return Err(corrupt(kind, "trailing data after the end of the frame"))
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

impl<R: Read> Read for DecompressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let res = match &mut self.inner {
            ReaderInner::None(r) => return r.read(buf),
            ReaderInner::Zst(d) => d.read(buf),
            ReaderInner::Gz(d) => d.read(buf),
            ReaderInner::Lz4(d) => d.read(buf),
        };
        match res {
            Ok(0) => {
                self.check_end()?;
                self.done = true;
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) => Err(self.map_err(e)),
        }
    }
}
