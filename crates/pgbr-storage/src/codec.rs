//! Streaming codecs of stored bytes: zstd, gzip, lz4 (frame format) and none.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::str::FromStr;

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

fn invalid_level(kind: CompressType, level: i32, range: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("invalid {kind} compression level {level} (accepted: {range})"),
    )
}

/// A streaming compressor: bytes written to it are compressed into `inner`.
///
/// Call [`CompressWriter::finish`] to write the end of the stream; dropping it without
/// finishing leaves a truncated stream that [`DecompressReader`] rejects.
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

fn corrupt(kind: CompressType, what: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt or truncated {kind} stream: {what}"),
    )
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

/// Delta coding of a piece against an earlier version of it: a zstd frame compressed with the
/// earlier version (the *base*) as a raw-content prefix, so that what the two share costs a few
/// bytes of back-references. Decoding needs the very same base bytes.
///
/// One coder serves many pieces (its tables are set up once); each base must outlive it.
///
/// ```
/// use pgbr_storage::DeltaCoder;
///
/// let base = vec![7u8; 65536];
/// let mut new = base.clone();
/// new[1000..1010].copy_from_slice(b"0123456789");
/// let mut coder = DeltaCoder::new(3)?;
/// let delta = coder.encode(&base, &new)?;
/// assert!(delta.len() < 100);
/// assert_eq!(coder.decode(&base, &delta)?, new);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct DeltaCoder<'b> {
    level: i32,
    compressor: Option<zstd::zstd_safe::CCtx<'b>>,
    decompressor: Option<zstd::zstd_safe::DCtx<'b>>,
}

impl fmt::Debug for DeltaCoder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeltaCoder")
            .field("level", &self.level)
            .finish()
    }
}

impl<'b> DeltaCoder<'b> {
    /// A coder that compresses at zstd `level`.
    pub fn new(level: i32) -> io::Result<Self> {
        let range = zstd::compression_level_range();
        if !range.contains(&level) {
            return Err(invalid_level(
                CompressType::Zst,
                level,
                &format!("{}..={}", range.start(), range.end()),
            ));
        }
        Ok(Self {
            level,
            compressor: None,
            decompressor: None,
        })
    }

    /// `data` as one zstd frame (with its content size and a checksum) that refers to `base`.
    pub fn encode(&mut self, base: &'b [u8], data: &[u8]) -> io::Result<Vec<u8>> {
        use zstd::zstd_safe::{CCtx, CParameter, ResetDirective};
        let zerr = |code| io::Error::other(zstd::zstd_safe::get_error_name(code));
        let level = self.level;
        let ctx = match &mut self.compressor {
            Some(ctx) => ctx,
            none => {
                let mut ctx =
                    CCtx::try_create().ok_or_else(|| io::Error::other("out of memory"))?;
                ctx.set_parameter(CParameter::CompressionLevel(level))
                    .map_err(zerr)?;
                ctx.set_parameter(CParameter::ChecksumFlag(true))
                    .map_err(zerr)?;
                none.insert(ctx)
            }
        };
        ctx.reset(ResetDirective::SessionOnly).map_err(zerr)?;
        ctx.set_pledged_src_size(Some(data.len() as u64))
            .map_err(zerr)?;
        ctx.ref_prefix(base).map_err(zerr)?;
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
        match ctx.compress2(&mut out, data) {
            Ok(_) => Ok(out),
            Err(code) => {
                // A failed frame can leave the context mid-way: start afresh next time.
                self.compressor = None;
                Err(zerr(code))
            }
        }
    }

    /// The bytes [`DeltaCoder::encode`] coded against `base`. A frame that does not state its
    /// size, states more than `max_size`, or does not decode with this base is
    /// [`io::ErrorKind::InvalidData`].
    pub fn decode_at_most(
        &mut self,
        base: &'b [u8],
        delta: &[u8],
        max_size: usize,
    ) -> io::Result<Vec<u8>> {
        use zstd::zstd_safe::{DCtx, ResetDirective};
        let single_frame = zstd::zstd_safe::find_frame_compressed_size(delta) == Ok(delta.len());
        let size = match zstd::zstd_safe::get_frame_content_size(delta) {
            Ok(Some(n)) if single_frame && n <= max_size as u64 => n as usize,
            _ => {
                return Err(corrupt(
                    CompressType::Zst,
                    format!("not a delta frame of at most {max_size} bytes"),
                ))
            }
        };
        let ctx = match &mut self.decompressor {
            Some(ctx) => ctx,
            none => {
                none.insert(DCtx::try_create().ok_or_else(|| io::Error::other("out of memory"))?)
            }
        };
        let zerr = |code| corrupt(CompressType::Zst, zstd::zstd_safe::get_error_name(code));
        ctx.reset(ResetDirective::SessionOnly).map_err(zerr)?;
        ctx.ref_prefix(base).map_err(zerr)?;
        let mut out = Vec::with_capacity(size);
        match ctx.decompress(&mut out, delta) {
            Ok(n) if n == size => Ok(out),
            Ok(n) => Err(corrupt(
                CompressType::Zst,
                format!("{n} bytes where the delta frame states {size}"),
            )),
            Err(code) => {
                self.decompressor = None;
                Err(zerr(code))
            }
        }
    }

    /// [`DeltaCoder::decode_at_most`] with a limit of 64 MiB.
    pub fn decode(&mut self, base: &'b [u8], delta: &[u8]) -> io::Result<Vec<u8>> {
        self.decode_at_most(base, delta, 64 * 1024 * 1024)
    }
}

/// Per-thread zstd contexts for one-shot pieces.
mod zstd_piece {
    use std::cell::RefCell;
    use std::io;

    use zstd::bulk::{Compressor, Decompressor};
    use zstd::stream::raw::{CParameter, DParameter};

    /// Largest content size decoded in one buffer; bigger frames are streamed.
    const MAX_ONE_SHOT: u64 = 64 * 1024 * 1024;

    thread_local! {
        static COMPRESSOR: RefCell<Option<(i32, Compressor<'static>)>> = const { RefCell::new(None) };
        static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
    }

    pub(super) fn compress(level: i32, data: &[u8]) -> io::Result<Vec<u8>> {
        let range = zstd::compression_level_range();
        if !range.contains(&level) {
            return Err(super::invalid_level(
                super::CompressType::Zst,
                level,
                &format!("{}..={}", range.start(), range.end()),
            ));
        }
        COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            let ctx = match &mut *slot {
                Some((l, ctx)) if *l == level => ctx,
                other => {
                    let mut ctx = Compressor::new(level)?;
                    ctx.set_parameter(CParameter::ChecksumFlag(true))?;
                    &mut other.insert((level, ctx)).1
                }
            };
            ctx.compress(data)
        })
    }

    /// `Ok(None)`: not a single frame with a stated size; the caller streams it instead.
    pub(super) fn decompress(data: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let single_frame = zstd::zstd_safe::find_frame_compressed_size(data) == Ok(data.len());
        let size = match zstd::zstd_safe::get_frame_content_size(data) {
            Ok(Some(n)) if single_frame && n <= MAX_ONE_SHOT => n as usize,
            _ => return Ok(None),
        };
        DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            let ctx = match &mut *slot {
                Some(ctx) => ctx,
                other => {
                    let mut ctx = Decompressor::new()?;
                    ctx.set_parameter(DParameter::WindowLogMax(27))?;
                    other.insert(ctx)
                }
            };
            let mut out = Vec::with_capacity(size);
            match ctx.decompress_to_buffer(data, &mut out) {
                Ok(n) if n == size => Ok(Some(out)),
                Ok(n) => Err(super::corrupt(
                    super::CompressType::Zst,
                    format!("{n} bytes where the frame states {size}"),
                )),
                Err(e) => {
                    // A failed decode can leave the context mid-frame: start afresh next time.
                    *slot = None;
                    Err(super::corrupt(super::CompressType::Zst, e))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_destination_is_an_error_with_its_message_for_every_codec() {
        /// Accepts `room` bytes, then fails with a message of its own.
        struct Full {
            room: usize,
        }
        impl Write for Full {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if buf.len() > self.room {
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "disk full on test",
                    ));
                }
                self.room -= buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data: Vec<u8> = (0..2_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for kind in CompressType::ALL {
            let mut w = CompressWriter::new(kind, kind.default_level(), Full { room: 1000 })
                .expect("writer");
            let err = match w.write_all(&data) {
                Err(e) => e,
                Ok(()) => w.finish().map(|_| ()).expect_err("the destination is full"),
            };
            assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{kind:?}: {err}");
            assert!(
                err.to_string().contains("disk full on test"),
                "{kind:?}: {err}"
            );
        }
    }

    #[test]
    fn a_failing_source_is_an_error_with_its_message_for_every_codec() {
        /// Gives `good` bytes, then fails with a message of its own.
        struct Broken {
            good: Vec<u8>,
            at: usize,
        }
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.at >= self.good.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "link down on test",
                    ));
                }
                let n = buf.len().min(self.good.len() - self.at).min(100);
                buf[..n].copy_from_slice(&self.good[self.at..self.at + n]);
                self.at += n;
                Ok(n)
            }
        }
        let data: Vec<u8> = (0..500_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for kind in CompressType::ALL {
            let stream = compress_to_vec(kind, kind.default_level(), &data).expect("compress");
            let good = stream[..stream.len() / 2].to_vec();
            let mut r = DecompressReader::new(kind, Broken { good, at: 0 }).expect("reader");
            let err = r
                .read_to_end(&mut Vec::new())
                .expect_err("the source breaks");
            assert!(
                err.to_string().contains("link down on test"),
                "{kind:?}: {err}"
            );
        }
    }

    #[test]
    fn zstd_pieces_reuse_contexts_and_survive_bad_input() {
        let page: Vec<u8> = (0..8192u32).map(|i| (i % 97) as u8).collect();
        for level in [3, 1, 3, 19] {
            let piece = compress_to_vec(CompressType::Zst, level, &page).expect("compress");
            assert!(matches!(
                zstd::zstd_safe::get_frame_content_size(&piece),
                Ok(Some(n)) if n == page.len() as u64
            ));
            assert_eq!(
                decompress_to_vec(CompressType::Zst, &piece).expect("decompress"),
                page
            );
        }
        let piece = compress_to_vec(CompressType::Zst, 3, &page).expect("compress");
        let mut bad = piece.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        assert!(decompress_to_vec(CompressType::Zst, &bad).is_err());
        assert!(decompress_to_vec(CompressType::Zst, &piece[..piece.len() - 1]).is_err());
        let mut trailing = piece.clone();
        trailing.push(0);
        assert!(decompress_to_vec(CompressType::Zst, &trailing).is_err());
        // The context is usable after a failure.
        assert_eq!(
            decompress_to_vec(CompressType::Zst, &piece).expect("decompress"),
            page
        );
        // A streamed frame (no content size) and two frames in a row still decode.
        let streamed = {
            let mut w = CompressWriter::new(CompressType::Zst, 3, Vec::new()).expect("writer");
            w.write_all(&page).expect("write");
            w.finish().expect("finish")
        };
        let mut two = streamed.clone();
        two.extend_from_slice(&piece);
        let mut both = page.clone();
        both.extend_from_slice(&page);
        assert_eq!(
            decompress_to_vec(CompressType::Zst, &streamed).expect("streamed"),
            page
        );
        assert_eq!(
            decompress_to_vec(CompressType::Zst, &two).expect("two frames"),
            both
        );
        assert!(compress_to_vec(CompressType::Zst, 99, &page).is_err());
    }

    #[test]
    fn multithreaded_zstd_round_trips_and_reads_as_one_stream() {
        let data: Vec<u8> = (0..5_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        let mut w =
            CompressWriter::with_workers(CompressType::Zst, 3, 2, Vec::new()).expect("writer");
        for chunk in data.chunks(300_000) {
            w.write_all(chunk).expect("write");
        }
        let compressed = w.finish().expect("finish");
        assert!(compressed.len() < data.len() / 4, "{}", compressed.len());
        assert_eq!(
            decompress_to_vec(CompressType::Zst, &compressed).expect("decompress"),
            data
        );
        // Other codecs ignore the worker count.
        let mut w = CompressWriter::with_workers(CompressType::Gz, 6, 2, Vec::new()).expect("gz");
        w.write_all(&data[..1000]).expect("write");
        let gz = w.finish().expect("finish");
        assert_eq!(
            decompress_to_vec(CompressType::Gz, &gz).expect("gunzip"),
            &data[..1000]
        );
    }
    use proptest::prelude::*;

    fn sample(len: usize) -> Vec<u8> {
        // Half compressible, half pseudo-random.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|i| {
                if (i / 4096) % 2 == 0 {
                    (i % 251) as u8
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }
            })
            .collect()
    }

    fn compress_chunked(kind: CompressType, data: &[u8], chunks: &[usize]) -> Vec<u8> {
        let mut w = CompressWriter::new(kind, kind.default_level(), Vec::new()).unwrap();
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunks
                .get(i % chunks.len().max(1))
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            w.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
            i += 1;
        }
        w.finish().unwrap()
    }

    fn read_chunked(kind: CompressType, data: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        let mut r = DecompressReader::new(kind, data)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk.max(1)];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn names_extensions_levels() {
        for kind in CompressType::ALL {
            assert_eq!(kind.to_string().parse::<CompressType>(), Ok(kind));
        }
        assert_eq!(CompressType::default(), CompressType::Zst);
        assert_eq!(CompressType::Gz.extension(), ".gz");
        assert_eq!(CompressType::None.extension(), "");
        assert_eq!(CompressType::Zst.default_level(), 3);
        let err = "bz2".parse::<CompressType>().unwrap_err().to_string();
        assert!(
            err.contains("bz2") && err.contains("none, zst, gz, lz4"),
            "{err}"
        );
    }

    #[test]
    fn invalid_levels_are_errors() {
        let e = CompressWriter::new(CompressType::Gz, 10, Vec::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(CompressWriter::new(CompressType::Gz, -1, Vec::new()).is_err());
        assert!(CompressWriter::new(CompressType::Zst, 23, Vec::new()).is_err());
        assert!(CompressWriter::new(CompressType::Lz4, 99, Vec::new()).is_ok());
    }

    #[test]
    fn large_round_trip_every_codec() {
        let data = sample(3 * 1024 * 1024 + 17);
        for kind in CompressType::ALL {
            let c = compress_chunked(kind, &data, &[1, 70_000, 3, 1 << 20]);
            assert_eq!(read_chunked(kind, &c, 8191).unwrap(), data, "{kind}");
            assert_eq!(decompress_to_vec(kind, &c).unwrap(), data, "{kind}");
        }
    }

    #[test]
    fn empty_round_trip_every_codec() {
        for kind in CompressType::ALL {
            let c = compress_to_vec(kind, kind.default_level(), b"").unwrap();
            assert_eq!(decompress_to_vec(kind, &c).unwrap(), b"", "{kind}");
        }
    }

    fn assert_truncations_rejected(kind: CompressType, data: &[u8]) {
        let c = compress_to_vec(kind, kind.default_level(), data).unwrap();
        let step = (c.len() / 2000).max(1);
        let mut cut = 0;
        while cut < c.len() {
            let err = decompress_to_vec(kind, &c[..cut]).expect_err(&format!(
                "{kind}: truncation to {cut} of {} accepted",
                c.len()
            ));
            assert_eq!(
                err.kind(),
                io::ErrorKind::InvalidData,
                "{kind} cut {cut}: {err}"
            );
            cut += step;
        }
        // The last byte, and trailing garbage.
        assert!(
            decompress_to_vec(kind, &c[..c.len() - 1]).is_err(),
            "{kind}"
        );
        let mut extra = c.clone();
        extra.extend_from_slice(b"garbage");
        let err = decompress_to_vec(kind, &extra).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{kind}: {err}");
    }

    #[test]
    fn truncated_streams_rejected() {
        for kind in [CompressType::Zst, CompressType::Gz, CompressType::Lz4] {
            assert_truncations_rejected(kind, b"");
            assert_truncations_rejected(kind, b"hello world");
            // Several lz4 blocks (64 KiB each), so cuts land on block boundaries.
            assert_truncations_rejected(kind, &sample(300 * 1024));
        }
    }

    #[test]
    fn lz4_truncated_at_block_boundary_rejected() {
        let data = sample(200 * 1024);
        let c = compress_to_vec(CompressType::Lz4, 1, &data).unwrap();
        // Find every position where a prefix decodes "cleanly" by lz4_flex alone and make
        // sure we reject it.
        for cut in 0..c.len() {
            let mut plain = Vec::new();
            let plain_ok = lz4_flex::frame::FrameDecoder::new(&c[..cut])
                .read_to_end(&mut plain)
                .is_ok();
            if plain_ok {
                assert!(
                    decompress_to_vec(CompressType::Lz4, &c[..cut]).is_err(),
                    "{cut}"
                );
            }
        }
    }

    #[test]
    fn source_errors_pass_through() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "boom"))
            }
        }
        for kind in CompressType::ALL {
            let err = DecompressReader::new(kind, Failing)
                .unwrap()
                .read_to_end(&mut Vec::new())
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{kind}");
        }
    }

    fn kind_strategy() -> impl Strategy<Value = CompressType> {
        prop::sample::select(CompressType::ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip(kind in kind_strategy(),
                      data in prop::collection::vec(any::<u8>(), 0..100_000),
                      chunks in prop::collection::vec(1usize..20_000, 1..8),
                      read_chunk in 1usize..100_000) {
            let c = compress_chunked(kind, &data, &chunks);
            prop_assert_eq!(read_chunked(kind, &c, read_chunk).unwrap(), data);
        }

        #[test]
        fn delta_round_trip_and_wrong_base(base in prop::collection::vec(any::<u8>(), 0..70_000),
                                           edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..20),
                                           grow in 0usize..5000,
                                           pieces in 1usize..4) {
            let mut new = base.clone();
            new.extend((0..grow).map(|i| i as u8));
            for (pos, byte) in &edits {
                if !new.is_empty() {
                    let p = pos % new.len();
                    new[p] ^= byte | 1;
                }
            }
            // One coder for several pieces, as the pipeline uses it.
            let mut coder = DeltaCoder::new(3).unwrap();
            for _ in 0..pieces {
                let delta = coder.encode(&base, &new).unwrap();
                prop_assert_eq!(&coder.decode(&base, &delta).unwrap(), &new);
                prop_assert!(coder.decode_at_most(&base, &delta, new.len().saturating_sub(1)).is_err() || new.is_empty());
                if base.len() > 64 && !edits.is_empty() {
                    // Another base never silently gives other bytes.
                    let mut other = base.clone();
                    other[base.len() / 2] ^= 0x55;
                    let decoded = DeltaCoder::new(3).unwrap().decode(&other, &delta);
                    match decoded {
                        Ok(out) => prop_assert_eq!(&out, &new),
                        Err(e) => prop_assert_eq!(e.kind(), io::ErrorKind::InvalidData),
                    }
                }
            }
            if base.len() >= 8192 && edits.len() <= 4 && grow == 0 {
                let delta = coder.encode(&base, &new).unwrap();
                prop_assert!(delta.len() < 400, "{} bytes for {} edits", delta.len(), edits.len());
            }
        }

        #[test]
        fn round_trip_large(kind in kind_strategy(),
                            seed in prop::collection::vec(any::<u8>(), 1..64),
                            len in (1usize << 20)..(1usize << 20) + 300_000,
                            chunks in prop::collection::vec(1usize..300_000, 1..4)) {
            let data: Vec<u8> = seed.iter().cycle().take(len).enumerate()
                .map(|(i, b)| b.wrapping_add((i / 997) as u8)).collect();
            let c = compress_chunked(kind, &data, &chunks);
            prop_assert_eq!(decompress_to_vec(kind, &c).unwrap(), data);
        }

        #[test]
        fn arbitrary_input_never_panics(kind in kind_strategy(),
                                        data in prop::collection::vec(any::<u8>(), 0..4096)) {
            let _ = decompress_to_vec(kind, &data);
        }

        #[test]
        fn corrupted_byte_never_panics(kind in kind_strategy(),
                                       data in prop::collection::vec(any::<u8>(), 0..20_000),
                                       pos in any::<prop::sample::Index>(),
                                       flip in 1u8..=255) {
            let mut c = compress_to_vec(kind, kind.default_level(), &data).unwrap();
            let i = pos.index(c.len());
            c[i] ^= flip;
            if let Ok(out) = decompress_to_vec(kind, &c) {
                // Only bytes outside checksummed content (e.g. gzip header mtime) may
                // change without detection; the content must then be intact.
                if kind != CompressType::None {
                    prop_assert_eq!(out, data);
                }
            }
        }
    }
}
