//! [`DeltaCoder`], and the per-thread zstd contexts of small pieces.

use std::fmt;
use std::io;

use super::{corrupt, invalid_level, CompressType};

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
pub(super) mod zstd_piece {
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

    pub(in crate::codec) fn compress(level: i32, data: &[u8]) -> io::Result<Vec<u8>> {
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
    pub(in crate::codec) fn decompress(data: &[u8]) -> io::Result<Option<Vec<u8>>> {
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
