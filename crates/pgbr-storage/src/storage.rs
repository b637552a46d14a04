//! [`Storage`]: the repository storage API over `object_store`.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    WriteMultipart,
};
use tokio::runtime::Handle;

use crate::Error;

/// Default size of one upload part, and of the in-memory buffer of an [`ObjectWriter`].
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Part size of [`Storage::local`]: a local write gains nothing from bigger parts, and each
/// writer holds up to `(concurrency + 1)` of them in memory.
pub const LOCAL_PART_SIZE: usize = 1024 * 1024;
/// Default number of parts an [`ObjectWriter`] uploads concurrently.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 2;

/// One stored object, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key of the object ('/'-separated, relative to the storage root).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

impl From<ObjectMeta> for ObjectInfo {
    fn from(meta: ObjectMeta) -> Self {
        ObjectInfo {
            path: meta.location.to_string(),
            size: meta.size,
        }
    }
}

/// A repository storage: an [`ObjectStore`] plus a description for messages.
///
/// Keys are '/'-separated relative paths such as `backup/main/backup.info`; they must not
/// start with '/', contain empty segments, `.` or `..`. Cloning is cheap (shared store).
///
/// # Local repositories and permissions
///
/// [`Storage::local`] creates the root directory with mode 0750 if it is missing. Every
/// object written through this API is then set to mode 0640 and any directory between the
/// root and it loses its group-write and "other" bits, whatever the process umask. While an
/// object is being written its staging file (`<key>#<n>`, invisible to [`Storage::list`])
/// has the umask's mode, and so has an object for the instant between its publication and
/// the `chmod`: the 0750 root is what keeps other users out at those moments, so a
/// pre-existing root should be 0750 too (it is not changed).
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    description: Arc<str>,
    part_size: usize,
    upload_concurrency: usize,
    /// Set when this is a local repository: its files are read and written directly.
    local: Option<Arc<crate::local::LocalRepo>>,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("description", &self.description)
            .field("part_size", &self.part_size)
            .field("upload_concurrency", &self.upload_concurrency)
            .finish_non_exhaustive()
    }
}

fn task_error(path: &str, e: tokio::task::JoinError) -> Error {
    Error::Task {
        path: path.to_string(),
        message: e.to_string(),
    }
}

impl Storage {
    /// A storage over any object store. `description` names it in messages (for example
    /// `s3:bucket/prefix`); it must not contain credentials.
    pub fn from_object_store(store: Arc<dyn ObjectStore>, description: String) -> Storage {
        Storage {
            store,
            description: description.into(),
            part_size: DEFAULT_PART_SIZE,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            local: None,
        }
    }

    /// An in-memory storage (for tests); description `memory`.
    pub fn memory() -> Storage {
        Storage::from_object_store(Arc::new(InMemory::new()), "memory".to_string())
    }

    /// A local (posix) repository rooted at `root`, created with mode 0750 if missing.
    ///
    /// Writes are durable when they return (files and directories fsynced), publication is
    /// atomic (staging file + rename), and deleting the last object of a directory removes
    /// the emptied directories (never the root). See the type's documentation for file
    /// permissions.
    pub fn local(root: &FsPath) -> Result<Storage, Error> {
        match std::fs::metadata(root) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(Error::io(
                    root,
                    io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(crate::local::LOCAL_DIR_MODE)
                    .create(root)
                    .map_err(|e| Error::io(root, e))?;
                std::fs::set_permissions(
                    root,
                    std::fs::Permissions::from_mode(crate::local::LOCAL_DIR_MODE),
                )
                .map_err(|e| Error::io(root, e))?;
                if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                    crate::posix::sync_dir(parent)?;
                }
            }
            Err(e) => return Err(Error::io(root, e)),
        }
        let canonical = std::fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
        let store = LocalFileSystem::new_with_prefix(&canonical)
            .map_err(|source| Error::Store {
                path: root.display().to_string(),
                source,
            })?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        let store = Arc::new(store);
        let mut storage = Storage::from_object_store(
            Arc::clone(&store) as Arc<dyn ObjectStore>,
            format!("posix:{}", canonical.display()),
        );
        storage.local = Some(Arc::new(crate::local::LocalRepo {
            fs: store,
            root: canonical,
        }));
        storage.part_size = LOCAL_PART_SIZE;
        Ok(storage)
    }

    /// Sets the part size of [`ObjectWriter`]s (default 8 MiB, [`LOCAL_PART_SIZE`] for
    /// [`Storage::local`]; minimum 1 byte): objects up
    /// to this size are written with a single put, larger ones as a multipart upload of
    /// parts this size. S3 requires parts of at least 5 MiB.
    pub fn with_part_size(mut self, part_size: usize) -> Storage {
        self.part_size = part_size.max(1);
        self
    }

    /// Sets how many parts an [`ObjectWriter`] uploads at once (default 2, minimum 1).
    /// A writer holds at most about `(concurrency + 1) * part_size` bytes.
    pub fn with_upload_concurrency(mut self, concurrency: usize) -> Storage {
        self.upload_concurrency = concurrency.max(1);
        self
    }

    /// Whether this is a local (posix) repository ([`Storage::local`]), whose
    /// [`BlockingWriter`]s can publish under a name chosen at the end
    /// ([`BlockingWriter::finish_as`]).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// The description used in messages, such as `posix:/var/lib/pgbr` or `memory`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Reads a whole object; [`Error::NotFound`] if it does not exist.
    pub async fn get(&self, path: &str) -> Result<Bytes, Error> {
        let key = crate::keys::object_key(path)?;
        let res = self
            .store
            .get(&key)
            .await
            .map_err(|e| Error::store(path, e))?;
        res.bytes().await.map_err(|e| Error::store(path, e))
    }

    /// Reads a whole object, `None` if it does not exist.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Bytes>, Error> {
        match self.get(path).await {
            Ok(b) => Ok(Some(b)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads `range` of an object. The range must lie within the object.
    pub async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, Error> {
        let key = crate::keys::object_key(path)?;
        let wanted = range_len(path, &range)?;
        if wanted == 0 {
            // Still report a missing object.
            self.store
                .head(&key)
                .await
                .map_err(|e| Error::store(path, e))?;
            return Ok(Bytes::new());
        }
        let bytes = self
            .store
            .get_range(&key, range.clone())
            .await
            .map_err(|e| Error::store(path, e))?;
        // Some stores answer a range past the end with what there is.
        if bytes.len() as u64 != wanted {
            return Err(past_the_end(path, &range, range.start + bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// Streams an object chunk by chunk; [`Error::NotFound`] if it does not exist.
    pub async fn get_stream(
        &self,
        path: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, Error>>, Error> {
        let key = crate::keys::object_key(path)?;
        let res = self
            .store
            .get(&key)
            .await
            .map_err(|e| Error::store(path, e))?;
        let owned = path.to_string();
        Ok(res
            .into_stream()
            .map_err(move |e| Error::store(&owned, e))
            .boxed())
    }

    /// Writes a whole object atomically: readers see the old or the new object, never part.
    pub async fn put(&self, path: &str, data: Bytes) -> Result<(), Error> {
        let key = crate::keys::object_key(path)?;
        self.store
            .put_opts(&key, PutPayload::from(data), PutOptions::default())
            .await
            .map_err(|e| Error::store(path, e))?;
        self.fix_local_perms(path).await
    }

    /// Writes an object only if none exists at `path`; `Ok(false)` if one already did
    /// (and it is left unchanged).
    pub async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<bool, Error> {
        let key = crate::keys::object_key(path)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from(data), opts)
            .await
        {
            Ok(_) => {
                self.fix_local_perms(path).await?;
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(Error::store(path, e)),
        }
    }

    /// Size of an object, `None` if it does not exist.
    pub async fn head(&self, path: &str) -> Result<Option<ObjectInfo>, Error> {
        let key = crate::keys::object_key(path)?;
        match self.store.head(&key).await {
            Ok(meta) => Ok(Some(meta.into())),
            Err(e) if crate::error::is_absent(&e) => Ok(None),
            Err(e) => Err(Error::store(path, e)),
        }
    }

    /// Whether an object exists at `path`.
    pub async fn exists(&self, path: &str) -> Result<bool, Error> {
        Ok(self.head(path).await?.is_some())
    }

    /// Every object under `prefix` (recursively, by whole segments: `a/b` holds `a/b/c`
    /// but not `a/bc`), sorted by key. A missing prefix gives an empty list.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, Error> {
        let key = crate::keys::prefix_key(prefix)?;
        let key = (!key.as_ref().is_empty()).then_some(key);
        let mut out: Vec<ObjectInfo> = match self
            .store
            .list(key.as_ref())
            .map_ok(ObjectInfo::from)
            .try_collect()
            .await
        {
            Ok(v) => v,
            Err(e) if crate::error::is_absent(&e) => Vec::new(),
            Err(e) => return Err(Error::store(prefix, e)),
        };
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// One level under `prefix`: the names (last segment only) of its "subdirectories" and
    /// the objects directly in it (full keys), both sorted. A missing prefix gives empty
    /// lists.
    pub async fn list_dir(&self, prefix: &str) -> Result<(Vec<String>, Vec<ObjectInfo>), Error> {
        let key = crate::keys::prefix_key(prefix)?;
        let key = (!key.as_ref().is_empty()).then_some(key);
        let res = match self.store.list_with_delimiter(key.as_ref()).await {
            Ok(r) => r,
            Err(e) if crate::error::is_absent(&e) => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(Error::store(prefix, e)),
        };
        let mut dirs: Vec<String> = res
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        dirs.sort();
        dirs.dedup();
        let mut objects: Vec<ObjectInfo> = res.objects.into_iter().map(ObjectInfo::from).collect();
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((dirs, objects))
    }

    /// Deletes an object; deleting a missing object succeeds.
    pub async fn delete(&self, path: &str) -> Result<(), Error> {
        let key = crate::keys::object_key(path)?;
        match self.store.delete(&key).await {
            Ok(()) => Ok(()),
            Err(e) if crate::error::is_absent(&e) => Ok(()),
            Err(e) => Err(Error::store(path, e)),
        }
    }

    /// Deletes every object under `prefix` (as [`Storage::list`] sees them) and returns how
    /// many were deleted. The empty prefix (everything) is refused.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, Error> {
        let key = crate::keys::prefix_key(prefix)?;
        if key.as_ref().is_empty() {
            return Err(Error::InvalidPath {
                path: prefix.to_string(),
                reason: "refusing to delete the whole storage".to_string(),
            });
        }
        let objects = self.list(prefix).await?;
        let mut locations = Vec::with_capacity(objects.len());
        for o in &objects {
            locations.push(crate::keys::object_key(&o.path)?);
        }
        let mut results = self
            .store
            .delete_stream(futures::stream::iter(locations.into_iter().map(Ok)).boxed());
        let mut deleted = 0u64;
        while let Some(res) = results.next().await {
            match res {
                Ok(_) => deleted += 1,
                Err(e) if crate::error::is_absent(&e) => {}
                Err(e) => return Err(Error::store(prefix, e)),
            }
        }
        // Listing skips the staging files a killed writer leaves (`<name>#<digits>`), so the
        // deletes above leave them, and the directories holding them, behind.
        self.remove_staging_below(prefix, true).await?;
        Ok(deleted)
    }

    /// Removes what writers killed mid-write left below `prefix` (the staging files
    /// `<name>#<digits>` of a local repository, in every directory under it) and returns how
    /// many were removed; objects and directories stay. Only for a prefix nobody writes to
    /// meanwhile: a live writer's staging file would go too. Other stores keep no such files.
    pub async fn remove_abandoned_below(&self, prefix: &str) -> Result<u64, Error> {
        self.remove_staging_below(prefix, false).await
    }

    /// The staging files below `prefix` of a local repository (and, with `remove_empty_dirs`,
    /// the directories left empty) go; how many files went.
    async fn remove_staging_below(
        &self,
        prefix: &str,
        remove_empty_dirs: bool,
    ) -> Result<u64, Error> {
        let Some(local) = &self.local else {
            return Ok(0);
        };
        let key = crate::keys::prefix_key(prefix)?;
        let dir = local
            .fs
            .path_to_filesystem(&key)
            .map_err(|e| Error::store(prefix, e))?;
        let local = Arc::clone(local);
        tokio::task::spawn_blocking(move || {
            crate::local::remove_staging_files(&local.root, &dir, remove_empty_dirs)
        })
        .await
        .map_err(|e| task_error(prefix, e))?
    }

    /// Removes what writers killed mid-write left in directory `dir` for objects whose names
    /// start with one of `prefixes`, and returns how many were removed.
    ///
    /// A local writer stages an object as `<name>#<digits>` and renames it when done; a killed
    /// one leaves the staging file, which listing skips and so nothing else ever removes. A
    /// caller deleting objects one by one (as `expire` deletes WAL) passes their names here.
    /// Only staging files go, never an object; other stores keep no such files (nothing to do).
    pub async fn remove_abandoned(&self, dir: &str, prefixes: &[String]) -> Result<u64, Error> {
        let Some(local) = &self.local else {
            return Ok(0);
        };
        if prefixes.is_empty() {
            return Ok(0);
        }
        let key = crate::keys::prefix_key(dir)?;
        let path = local
            .fs
            .path_to_filesystem(&key)
            .map_err(|e| Error::store(dir, e))?;
        let prefixes = prefixes.to_vec();
        tokio::task::spawn_blocking(move || crate::local::remove_abandoned(&path, &prefixes))
            .await
            .map_err(|e| task_error(dir, e))?
    }

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

    /// Gives a just-written local object mode 0640 and strips group-write and "other" bits
    /// from the directories between it and the root.
    async fn fix_local_perms(&self, key: &str) -> Result<(), Error> {
        let Some(local) = self.local.clone() else {
            return Ok(());
        };
        let file = local.root.join(key);
        let owned = key.to_string();
        tokio::task::spawn_blocking(move || crate::local::fix_perms_blocking(&local.root, &file))
            .await
            .map_err(|e| task_error(&owned, e))?
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

/// A blocking [`std::io::Read`] over an object's stream (see [`Storage::blocking_reader`]).
pub struct BlockingReader {
    stream: Option<BoxStream<'static, Result<Bytes, Error>>>,
    /// A local repository's file, read directly instead of `stream`.
    file: Option<std::fs::File>,
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
fn range_len(path: &str, range: &Range<u64>) -> Result<u64, Error> {
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
fn past_the_end(path: &str, range: &Range<u64>, end: u64) -> Error {
    Error::InvalidPath {
        path: path.to_string(),
        reason: format!(
            "range {}..{} reaches past the end of the object (at byte {end} or before)",
            range.start, range.end
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FaultyStore, RequestKind};
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;

    #[allow(dead_code)]
    mod contract {
        include!("../tests/support/contract.rs");
    }
    use contract::{exercise, list_paths, pattern};

    #[tokio::test]
    async fn memory_storage_operations() {
        let s = Storage::memory();
        assert_eq!(s.description(), "memory");
        exercise(&s).await;
    }

    #[tokio::test]
    async fn local_storage_operations() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let s = Storage::local(&root).unwrap();
        assert!(s.description().starts_with("posix:/"));
        exercise(&s).await;
    }

    async fn writer_streams_large_objects(s: Storage) {
        let s = s.with_part_size(1024 * 1024);
        let data = pattern(20 * 1024 * 1024 + 123);
        let mut w = s.writer("big/object");
        for chunk in data.chunks(100_003) {
            w.write(chunk).await.unwrap();
        }
        assert!(!s.exists("big/object").await.unwrap());
        assert!(s.list("big").await.unwrap().is_empty());
        assert_eq!(w.finish().await.unwrap(), data.len() as u64);
        assert_eq!(s.get("big/object").await.unwrap(), data);

        // Abort after going multipart: nothing visible, old object untouched.
        let mut w = s.writer("big/object");
        w.write(&data[..3 * 1024 * 1024]).await.unwrap();
        w.abort().await.unwrap();
        assert_eq!(
            s.head("big/object").await.unwrap().unwrap().size,
            data.len() as u64
        );

        let mut w = s.writer("big/aborted");
        w.write(&data[..5 * 1024 * 1024]).await.unwrap();
        w.abort().await.unwrap();
        let mut w = s.writer("big/dropped");
        w.write(&data[..5 * 1024 * 1024]).await.unwrap();
        drop(w);
        let mut w = s.writer("big/small-dropped");
        w.write(b"tiny").await.unwrap();
        drop(w);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let listed = s.list("big").await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");

        // Small objects are a single put.
        let mut w = s.writer("small");
        w.write(b"abc").await.unwrap();
        w.write(b"").await.unwrap();
        assert_eq!(w.finish().await.unwrap(), 3);
        assert_eq!(s.get("small").await.unwrap(), Bytes::from_static(b"abc"));
    }

    use std::time::Duration;

    #[tokio::test]
    async fn writer_streams_large_objects_memory() {
        writer_streams_large_objects(Storage::memory()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writer_streams_large_objects_local() {
        let dir = tempfile::tempdir().unwrap();
        writer_streams_large_objects(Storage::local(dir.path()).unwrap()).await;
        // No staging files left behind.
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir.path().join("big")).unwrap() {
            names.push(e.unwrap().file_name().into_string().unwrap());
        }
        assert_eq!(names, ["object"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_blocking_reader_reads_files_directly() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::local(dir.path()).unwrap();
        let data = pattern(3 * 1024 * 1024 + 5);
        let keys = ["d/plain.zst", "d/with space+and%percent.txt"];
        for key in keys {
            s.put(key, Bytes::from(data.clone())).await.unwrap();
        }
        // A leftover staging file of a killed upload is invisible to list (and so to verify).
        std::fs::write(dir.path().join("d/plain.zst#7"), b"partial").unwrap();
        let listed = list_paths(&s, "d/").await;
        assert_eq!(listed.len(), 2, "{listed:?}");
        let handle = Handle::current();
        let s2 = s.clone();
        tokio::task::spawn_blocking(move || {
            for key in keys {
                let mut r = s2.blocking_reader(key, handle.clone()).unwrap();
                assert!(r.file.is_some(), "a local object is read as a file");
                let mut back = Vec::new();
                r.read_to_end(&mut back).unwrap();
                assert_eq!(back, data, "{key}");
            }
            assert!(matches!(
                s2.blocking_reader("d/missing", handle),
                Err(Error::NotFound { .. })
            ));
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_writer_and_reader_in_spawn_blocking() {
        let dir = tempfile::tempdir().unwrap();
        for s in [Storage::memory(), Storage::local(dir.path()).unwrap()] {
            let s = s.with_part_size(256 * 1024);
            let data = pattern(1024 * 1024 + 7);
            let handle = Handle::current();
            let (s2, d2) = (s.clone(), data.clone());
            let n = tokio::task::spawn_blocking(move || {
                let mut w = s2.blocking_writer("blk/file", handle.clone());
                for c in d2.chunks(10_000) {
                    w.write_all(c).unwrap();
                }
                let n = w.finish().unwrap();

                let mut r = s2.blocking_reader("blk/file", handle.clone()).unwrap();
                let mut back = Vec::new();
                r.read_to_end(&mut back).unwrap();
                assert_eq!(back, d2);

                let err = s2
                    .blocking_reader("blk/missing", handle.clone())
                    .unwrap_err();
                assert!(err.is_not_found() && err.to_string().contains("blk/missing"));

                let mut w = s2.blocking_writer("blk/aborted", handle);
                w.write_all(&d2).unwrap();
                w.abort().unwrap();
                n
            })
            .await
            .unwrap();
            assert_eq!(n, data.len() as u64);
            assert!(!s.exists("blk/aborted").await.unwrap());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_repository_files_are_not_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("new/repo");
        // A permissive umask must not matter.
        let old = unsafe { libc::umask(0o002) };
        let s = Storage::local(&root).unwrap();
        s.put("a/b/c/file", Bytes::from_static(b"x")).await.unwrap();
        assert!(s
            .put_if_absent("a/d/file2", Bytes::from_static(b"y"))
            .await
            .unwrap());
        let s = s.with_part_size(1024);
        let mut w = s.writer("a/e/big");
        w.write(&pattern(10_000)).await.unwrap();
        w.finish().await.unwrap();
        unsafe { libc::umask(old) };

        let mode = |p: &FsPath| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&root), 0o750);
        for f in ["a/b/c/file", "a/d/file2", "a/e/big"] {
            assert_eq!(mode(&root.join(f)), 0o640, "{f}");
        }
        for d in ["a", "a/b", "a/b/c", "a/d", "a/e"] {
            assert_eq!(mode(&root.join(d)) & 0o027, 0, "{d}");
        }
    }

    #[tokio::test]
    async fn faulty_store_fails_exactly_the_nth_request() {
        let faulty = Arc::new(FaultyStore::new(InMemory::new()).fail_nth(RequestKind::Put, 2));
        let s = Storage::from_object_store(faulty.clone(), "faulty".into());
        let b = Bytes::from_static(b"data");
        s.put("p1", b.clone()).await.unwrap();
        let err = s.put("p2", b.clone()).await.unwrap_err();
        assert!(err.to_string().contains("injected fault"), "{err}");
        assert!(err.to_string().contains("p2"), "{err}");
        s.put("p3", b.clone()).await.unwrap();
        assert_eq!(faulty.requests(RequestKind::Put), 3);
        assert_eq!(faulty.injected_failures(), 1);
        assert!(!s.exists("p2").await.unwrap());
        assert_eq!(faulty.requests(RequestKind::Head), 1);

        faulty.set_fail_first(RequestKind::List, 1);
        assert!(s.list("").await.is_err());
        assert_eq!(s.list("").await.unwrap().len(), 2);

        faulty.set_fail_nth(RequestKind::Get, 1);
        assert!(s.get("p1").await.is_err());
        assert_eq!(s.get("p1").await.unwrap(), b);

        faulty.set_truncate_gets(Some(2));
        assert_eq!(s.get("p1").await.unwrap(), Bytes::from_static(b"da"));
        faulty.clear_faults();

        faulty.set_fail_nth(
            RequestKind::Delete,
            faulty.requests(RequestKind::Delete) + 1,
        );
        assert!(s.delete("p1").await.is_err());
        assert!(s.exists("p1").await.unwrap());
        s.delete("p1").await.unwrap();
        assert!(!s.exists("p1").await.unwrap());
    }

    #[tokio::test]
    async fn faulty_multipart_part_failure_leaves_nothing() {
        let faulty =
            Arc::new(FaultyStore::new(InMemory::new()).fail_nth(RequestKind::Multipart, 3));
        let s = Storage::from_object_store(faulty.clone(), "faulty".into())
            .with_part_size(1024)
            .with_upload_concurrency(1);
        let mut w = s.writer("obj");
        let mut failed = false;
        for c in pattern(20_000).chunks(500) {
            if let Err(e) = w.write(c).await {
                assert!(e.to_string().contains("injected fault"), "{e}");
                failed = true;
                break;
            }
        }
        let finished = w.finish().await;
        assert!(failed || finished.is_err());
        assert!(!s.exists("obj").await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn faulty_store_delays() {
        let faulty = FaultyStore::new(InMemory::new()).with_delay(Duration::from_secs(5));
        let s = Storage::from_object_store(Arc::new(faulty), "slow".into());
        let start = tokio::time::Instant::now();
        s.put("x", Bytes::new()).await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(5));
    }
}
