//! [`CompressWriter`]: bytes written to it are compressed into the writer it wraps.

use std::fmt;
use std::io::{self, Write};

use super::{invalid_level, CompressType};

/// A streaming compressor: bytes written to it are compressed into `inner`.
///
/// Call [`CompressWriter::finish`] to write the end of the stream; dropping it without
/// finishing leaves a truncated stream that [`super::DecompressReader`] rejects.
pub struct CompressWriter<W: Write> {
    inner: WriterInner<W>,
}

enum WriterInner<W: Write> {
    None(W),
    Zst(zstd::stream::write::Encoder<'static, W>),
    Gz(flate2::write::GzEncoder<W>),
    Lz4(Box<lz4_flex::frame::FrameEncoder<KeepError<W>>>),
}

/// Hands lz4_flex only the kind of an inner writer's error and keeps the error itself:
/// lz4_flex 0.11 panics converting an `io::Error` that carries a message it did not create.
struct KeepError<W> {
    inner: W,
    error: Option<io::Error>,
}

impl<W: Write> KeepError<W> {
    fn keep(&mut self, e: io::Error) -> io::Error {
        let kind = e.kind();
        self.error = Some(e);
        io::Error::from(kind)
    }

    /// The inner writer's own error if there was one, else `e`.
    fn take(&mut self, e: io::Error) -> io::Error {
        self.error.take().unwrap_or(e)
    }
}

impl<W: Write> Write for KeepError<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.keep(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| self.keep(e))
    }
}

impl<W: Write> fmt::Debug for CompressWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompressWriter")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl<W: Write> CompressWriter<W> {
    /// Starts a stream of `kind` at `level` (see [`CompressType::default_level`]).
    ///
    /// Levels: zstd accepts its whole range (negative "fast" levels up to 22), gzip 0..=9;
    /// lz4 and none ignore the level. An out-of-range level is an
    /// [`io::ErrorKind::InvalidInput`] error.
    pub fn new(kind: CompressType, level: i32, inner: W) -> io::Result<Self> {
        Self::with_workers(kind, level, 0, inner)
    }

    /// As [`CompressWriter::new`], compressing on `workers` extra threads where the codec can
    /// (zstd; 0 = in the calling thread). For one big stream, such as a WAL segment, that a
    /// caller cannot split across its own workers.
    pub fn with_workers(
        kind: CompressType,
        level: i32,
        workers: u32,
        inner: W,
    ) -> io::Result<Self> {
        let inner = match kind {
            CompressType::None => WriterInner::None(inner),
            CompressType::Zst => {
                let range = zstd::compression_level_range();
                if !range.contains(&level) {
                    return Err(invalid_level(
                        kind,
                        level,
                        &format!("{}..={}", range.start(), range.end()),
                    ));
                }
                let mut enc = zstd::stream::write::Encoder::new(inner, level)?;
                enc.include_checksum(true)?;
                if workers > 0 {
                    enc.multithread(workers)?;
                    // zstd's default job for level 3 is 8 MiB per worker; 1 MiB jobs keep the
                    // memory of a multithreaded stream near that of a single-threaded one.
                    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(1 << 20))?;
                    // Each job first indexes the end of the previous one so that it can refer
                    // to it: by default an eighth of the window, a quarter of a 1 MiB job at
                    // level 3. A 64th costs less and compresses WAL no worse: 64 segments push
                    // 4-8% faster and come out 0.03% smaller (benches/compare.sh's data).
                    enc.set_parameter(zstd::stream::raw::CParameter::OverlapSizeLog(3))?;
                }
                WriterInner::Zst(enc)
            }
            CompressType::Gz => {
                let level = u32::try_from(level)
                    .ok()
                    .filter(|l| *l <= 9)
                    .ok_or_else(|| invalid_level(kind, level, "0..=9"))?;
                WriterInner::Gz(flate2::write::GzEncoder::new(
                    inner,
                    flate2::Compression::new(level),
                ))
            }
            CompressType::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new().content_checksum(true);
                WriterInner::Lz4(Box::new(lz4_flex::frame::FrameEncoder::with_frame_info(
                    info,
                    KeepError { inner, error: None },
                )))
            }
        };
        Ok(CompressWriter { inner })
    }

    /// The codec of this stream.
    pub fn kind(&self) -> CompressType {
        match self.inner {
            WriterInner::None(_) => CompressType::None,
            WriterInner::Zst(_) => CompressType::Zst,
            WriterInner::Gz(_) => CompressType::Gz,
            WriterInner::Lz4(_) => CompressType::Lz4,
        }
    }

    /// Writes the end of the stream and returns the inner writer (not flushed further).
    pub fn finish(self) -> io::Result<W> {
        match self.inner {
            WriterInner::None(w) => Ok(w),
            WriterInner::Zst(enc) => enc.finish(),
            WriterInner::Gz(enc) => enc.finish(),
            WriterInner::Lz4(mut enc) => match enc.try_finish() {
                Ok(()) => Ok(enc.into_inner().inner),
                Err(e) => Err(enc.get_mut().take(io::Error::other(e))),
            },
        }
    }
}

impl<W: Write> Write for CompressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            WriterInner::None(w) => w.write(buf),
            WriterInner::Zst(w) => w.write(buf),
            WriterInner::Gz(w) => w.write(buf),
            WriterInner::Lz4(w) => w.write(buf).map_err(|e| w.get_mut().take(e)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            WriterInner::None(w) => w.flush(),
            WriterInner::Zst(w) => w.flush(),
            WriterInner::Gz(w) => w.flush(),
            WriterInner::Lz4(w) => w.flush().map_err(|e| w.get_mut().take(e)),
        }
    }
}
