//! Streaming writes: [`ObjectWriter`] (async, multipart beyond one part) and [`BlockingWriter`]
//! (for threads outside the runtime; a local repository's file written directly).

use std::fmt;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{PutMultipartOptions, WriteMultipart};
use tokio::runtime::Handle;

use crate::{Error, Storage};

impl Storage {
    /// A streaming writer for `path` with bounded memory. Nothing is visible at `path` until
    /// [`ObjectWriter::finish`] succeeds; [`ObjectWriter::abort`] or dropping the writer
    /// leaves nothing visible.
    pub fn writer(&self, path: &str) -> ObjectWriter {
        ObjectWriter {
            storage: self.clone(),
            path: path.to_string(),
            state: WriterState::Buffer(Vec::new()),
            written: 0,
        }
    }

    /// A [`std::io::Write`] adapter of [`Storage::writer`] for threads outside the runtime
    /// (such as `spawn_blocking` workers): each call runs on `handle` with `block_on`.
    ///
    /// Do not use it from inside an async task: `Handle::block_on` panics there.
    ///
    /// A local repository's object is written directly by the calling thread, with the same
    /// publication (staging file, fsync, rename, directory fsync) and modes as
    /// [`Storage::writer`]'s, and its writeback starts while it is written.
    pub fn blocking_writer(&self, path: &str, handle: Handle) -> BlockingWriter {
        let local = match &self.local {
            Some(local) => local
                .file_of(path)
                .map(|file| crate::local::LocalObjectWriter::new(Arc::clone(local), file)),
            None => {
                return BlockingWriter {
                    target: Target::Store(self.writer(path)),
                    handle,
                }
            }
        };
        BlockingWriter {
            target: match local {
                Ok(w) => Target::Local(w),
                Err(e) => Target::Invalid(e),
            },
            handle,
        }
    }
}

enum WriterState {
    /// Everything written so far fits in one part.
    Buffer(Vec<u8>),
    /// A multipart upload is under way.
    Multipart(Box<WriteMultipart>),
    /// Finished, aborted, or failed.
    Closed,
}

/// A streaming object upload (see [`Storage::writer`]).
///
/// It buffers up to the part size; beyond that it streams parts of a multipart upload, with
/// at most the configured number of parts in flight. If a write fails the writer is closed
/// and the partial upload is aborted; later calls return [`Error::WriterClosed`].
pub struct ObjectWriter {
    storage: Storage,
    path: String,
    state: WriterState,
    written: u64,
}

impl fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            WriterState::Buffer(_) => "buffer",
            WriterState::Multipart(_) => "multipart",
            WriterState::Closed => "closed",
        };
        f.debug_struct("ObjectWriter")
            .field("path", &self.path)
            .field("state", &state)
            .field("written", &self.written)
            .finish()
    }
}

impl ObjectWriter {
    /// Key of the object being written.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `data` to the object.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        match self.write_inner(data).await {
            Ok(()) => {
                self.written += data.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.close_and_abort();
                Err(e)
            }
        }
    }

    async fn write_inner(&mut self, data: &[u8]) -> Result<(), Error> {
        let part_size = self.storage.part_size;
        let concurrency = self.storage.upload_concurrency;
        if let WriterState::Buffer(buf) = &mut self.state {
            if buf.len() + data.len() <= part_size {
                buf.extend_from_slice(data);
                return Ok(());
            }
            let key = crate::keys::object_key(&self.path)?;
            let buffered = std::mem::take(buf);
            let upload = self
                .storage
                .store
                .put_multipart_opts(&key, PutMultipartOptions::default())
                .await
                .map_err(|e| Error::store(&self.path, e))?;
            let mut mp = WriteMultipart::new_with_chunk_size(upload, part_size);
            mp.write(&buffered);
            self.state = WriterState::Multipart(Box::new(mp));
        }
        match &mut self.state {
            WriterState::Multipart(mp) => {
                for chunk in data.chunks(part_size) {
                    mp.wait_for_capacity(concurrency)
                        .await
                        .map_err(|e| Error::store(&self.path, e))?;
                    mp.write(chunk);
                }
                Ok(())
            }
            WriterState::Buffer(_) | WriterState::Closed => Err(Error::WriterClosed {
                path: self.path.clone(),
            }),
        }
    }

    /// Aborts a multipart upload in the background (if any) and closes the writer.
    fn close_and_abort(&mut self) {
        if let WriterState::Multipart(mp) = std::mem::replace(&mut self.state, WriterState::Closed)
        {
            if let Ok(handle) = Handle::try_current() {
                handle.spawn(async move {
                    let _ = mp.abort().await;
                });
            }
            // Without a runtime the upload is dropped: local staging files are removed by
            // their own drop, remote stores expire incomplete uploads.
        }
    }

    /// Completes the object, making it visible at its key; returns the bytes written.
    pub async fn finish(mut self) -> Result<u64, Error> {
        let state = std::mem::replace(&mut self.state, WriterState::Closed);
        match state {
            WriterState::Buffer(buf) => self.storage.put(&self.path, Bytes::from(buf)).await?,
            WriterState::Multipart(mp) => {
                mp.finish().await.map_err(|e| Error::store(&self.path, e))?;
                self.storage.fix_local_perms(&self.path).await?;
            }
            WriterState::Closed => {
                return Err(Error::WriterClosed {
                    path: self.path.clone(),
                })
            }
        }
        Ok(self.written)
    }

    /// Abandons the object: nothing becomes visible at its key and uploaded parts are
    /// discarded.
    pub async fn abort(mut self) -> Result<(), Error> {
        match std::mem::replace(&mut self.state, WriterState::Closed) {
            WriterState::Multipart(mp) => mp.abort().await.map_err(|e| Error::store(&self.path, e)),
            WriterState::Buffer(_) | WriterState::Closed => Ok(()),
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        self.close_and_abort();
    }
}

/// A blocking [`std::io::Write`] adapter of [`ObjectWriter`] (see [`Storage::blocking_writer`]).
///
/// Call [`BlockingWriter::finish`] to publish the object; dropping it abandons the object.
#[derive(Debug)]
pub struct BlockingWriter {
    target: Target,
    handle: Handle,
}

#[derive(Debug)]
enum Target {
    Store(ObjectWriter),
    Local(crate::local::LocalObjectWriter),
    /// The object's path was refused; writes and `finish` fail with this error.
    Invalid(Error),
    Closed,
}

impl BlockingWriter {
    /// Completes the object; returns the bytes written.
    pub fn finish(mut self) -> Result<u64, Error> {
        match std::mem::replace(&mut self.target, Target::Closed) {
            Target::Store(w) => self.handle.block_on(w.finish()),
            Target::Local(w) => w.finish(),
            Target::Invalid(e) => Err(e),
            Target::Closed => Err(Error::WriterClosed {
                path: String::new(),
            }),
        }
    }

    /// Completes the object under `path` instead of the name it was opened with (which never
    /// becomes visible); returns the bytes written. Only a local repository's writer can: any
    /// other is abandoned and this is an error.
    pub fn finish_as(mut self, path: &str) -> Result<u64, Error> {
        match std::mem::replace(&mut self.target, Target::Closed) {
            Target::Local(w) => w.finish_as(path),
            Target::Store(w) => {
                let _ = self.handle.block_on(w.abort());
                Err(Error::InvalidPath {
                    path: path.to_string(),
                    reason: "only a local repository's object can be published under another name"
                        .to_string(),
                })
            }
            Target::Invalid(e) => Err(e),
            Target::Closed => Err(Error::WriterClosed {
                path: path.to_string(),
            }),
        }
    }

    /// Abandons the object.
    pub fn abort(mut self) -> Result<(), Error> {
        match std::mem::replace(&mut self.target, Target::Closed) {
            Target::Store(w) => self.handle.block_on(w.abort()),
            Target::Local(w) => w.abort(),
            Target::Invalid(_) | Target::Closed => Ok(()),
        }
    }
}

impl io::Write for BlockingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.target {
            Target::Store(w) => self.handle.block_on(w.write(buf))?,
            Target::Local(w) => {
                if let Err(e) = w.write_all(buf) {
                    // Like a failed store write: the object is abandoned.
                    self.target = Target::Closed;
                    return Err(e);
                }
            }
            Target::Invalid(e) => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            }
            Target::Closed => {
                return Err(io::Error::other(
                    "blocking writer already finished or aborted",
                ))
            }
        }
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(|_| ())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
