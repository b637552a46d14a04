//! Blocking reads for threads outside the runtime: [`BlockingReader`] and ranged reads.

use std::fmt;
use std::io;
use std::ops::Range;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use tokio::runtime::Handle;

use crate::{Error, Storage};

impl Storage {
    /// A [`std::io::Read`] adapter of [`Storage::get_stream`] for threads outside the
    /// runtime. The object is opened now: a missing object is [`Error::NotFound`] here.
    ///
    /// Do not call it (or read from it) inside an async task: `Handle::block_on` panics there.
    ///
    /// A local repository's file is read directly, in the caller's buffer sizes: the object
    /// store's stream comes in 8 KiB pieces, each handed over between threads.
    pub fn blocking_reader(&self, path: &str, handle: Handle) -> Result<BlockingReader, Error> {
        if let Some(local) = &self.local {
            let (file, _) = local.open(path)?;
            return Ok(BlockingReader {
                stream: None,
                file: Some(file),
                chunk: Bytes::new(),
                handle,
            });
        }
        let stream = handle.block_on(self.get_stream(path))?;
        Ok(BlockingReader {
            stream: Some(stream),
            file: None,
            chunk: Bytes::new(),
            handle,
        })
    }

    /// [`Storage::get_range`] for threads outside the runtime (see [`Storage::blocking_reader`]).
    ///
    /// A local repository's file is read by the calling thread with one positioned read: the
    /// object store would hand each read to its blocking pool and back, two thread switches
    /// per call, which is most of the cost of reading the small runs of an incremental's blocks.
    pub fn get_range_blocking(
        &self,
        path: &str,
        range: Range<u64>,
        handle: &Handle,
    ) -> Result<Bytes, Error> {
        let Some(local) = &self.local else {
            return handle.block_on(self.get_range(path, range));
        };
        use std::os::unix::fs::FileExt;
        let length =
            usize::try_from(range_len(path, &range)?).map_err(|_| invalid_range(path, &range))?;
        let (file, file_path) = local.open(path)?;
        let mut buf = vec![0u8; length];
        match file.read_exact_at(&mut buf, range.start) {
            Ok(()) => Ok(Bytes::from(buf)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let end = file.metadata().map_or(range.end, |m| m.len());
                Err(past_the_end(path, &range, end))
            }
            Err(e) => Err(Error::io(&file_path, e)),
        }
    }
}

/// A blocking [`std::io::Read`] over an object's stream (see [`Storage::blocking_reader`]).
pub struct BlockingReader {
    stream: Option<BoxStream<'static, Result<Bytes, Error>>>,
    /// A local repository's file, read directly instead of `stream`.
    pub(crate) file: Option<std::fs::File>,
    chunk: Bytes,
    handle: Handle,
}

impl fmt::Debug for BlockingReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingReader")
            .field("buffered", &self.chunk.len())
            .field("done", &(self.stream.is_none() && self.file.is_none()))
            .finish()
    }
}

impl io::Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(file) = self.file.as_mut() {
            return file.read(buf);
        }
        while self.chunk.is_empty() {
            let Some(stream) = self.stream.as_mut() else {
                return Ok(0);
            };
            match self.handle.block_on(stream.next()) {
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(e.into()),
                None => {
                    self.stream = None;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// The length of `range`, a range of `path`; an error if it ends before it starts.
pub(crate) fn range_len(path: &str, range: &Range<u64>) -> Result<u64, Error> {
    range
        .end
        .checked_sub(range.start)
        .ok_or_else(|| invalid_range(path, range))
}

fn invalid_range(path: &str, range: &Range<u64>) -> Error {
    Error::InvalidPath {
        path: path.to_string(),
        reason: format!("invalid range {}..{}", range.start, range.end),
    }
}

/// The error for a ranged read of `path` that found the object ending at `end`.
pub(crate) fn past_the_end(path: &str, range: &Range<u64>, end: u64) -> Error {
    Error::InvalidPath {
        path: path.to_string(),
        reason: format!(
            "range {}..{} reaches past the end of the object (at byte {end} or before)",
            range.start, range.end
        ),
    }
}
