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

use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::reader::{past_the_end, range_len};
use crate::Error;

/// Default size of one upload part, and of the in-memory buffer of an [`crate::ObjectWriter`].
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Part size of [`Storage::local`]: a local write gains nothing from bigger parts, and each
/// writer holds up to `(concurrency + 1)` of them in memory.
pub const LOCAL_PART_SIZE: usize = 1024 * 1024;
/// Default number of parts an [`crate::ObjectWriter`] uploads concurrently.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 2;

/// One stored object, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key of the object ('/'-separated, relative to the storage root).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was last written, Unix seconds (as the store reports it).
    pub modified: i64,
}

impl From<ObjectMeta> for ObjectInfo {
    fn from(meta: ObjectMeta) -> Self {
        ObjectInfo {
            path: meta.location.to_string(),
            size: meta.size,
            modified: meta.last_modified.timestamp(),
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
    pub(crate) store: Arc<dyn ObjectStore>,
    description: Arc<str>,
    pub(crate) part_size: usize,
    pub(crate) upload_concurrency: usize,
    /// Set when this is a local repository: its files are read and written directly.
    pub(crate) local: Option<Arc<crate::local::LocalRepo>>,
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

    /// Sets the part size of [`crate::ObjectWriter`]s (default 8 MiB, [`LOCAL_PART_SIZE`] for
    /// [`Storage::local`]; minimum 1 byte): objects up
    /// to this size are written with a single put, larger ones as a multipart upload of
    /// parts this size. S3 requires parts of at least 5 MiB.
    pub fn with_part_size(mut self, part_size: usize) -> Storage {
        self.part_size = part_size.max(1);
        self
    }

    /// Sets how many parts an [`crate::ObjectWriter`] uploads at once (default 2, minimum 1).
    /// A writer holds at most about `(concurrency + 1) * part_size` bytes.
    pub fn with_upload_concurrency(mut self, concurrency: usize) -> Storage {
        self.upload_concurrency = concurrency.max(1);
        self
    }

    /// Whether this is a local (posix) repository ([`Storage::local`]), whose
    /// [`crate::BlockingWriter`]s can publish under a name chosen at the end
    /// ([`crate::BlockingWriter::finish_as`]).
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

    /// Gives a just-written local object mode 0640 and strips group-write and "other" bits
    /// from the directories between it and the root.
    pub(crate) async fn fix_local_perms(&self, key: &str) -> Result<(), Error> {
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

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
