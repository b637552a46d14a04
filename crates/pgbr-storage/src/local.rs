//! Streaming writes of a local repository's objects, done directly on the file system.
//!
//! [`crate::Storage::local`] publishes objects the way its object store does (a staging file
//! `<name>#<digits>` beside the object, fsynced, renamed over it, the directory fsynced; new
//! parent directories fsynced too; then the repository's modes), but a worker thread that streams
//! a big object writes the staging file itself instead of handing every part to the runtime. That
//! also lets it start the disk writing while it goes on (`sync_file_range` per written MiB), so
//! the fsync at the end has little left to wait for.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::Error;

/// Mode of repository files on a local repository.
pub(crate) const LOCAL_FILE_MODE: u32 = 0o640;
/// Mode of the repository root directory created by [`Storage::local`].
pub(crate) const LOCAL_DIR_MODE: u32 = 0o750;

/// Bytes written between two requests to start writeback.
const WRITEBACK_EVERY: u64 = 1024 * 1024;

/// A local repository: its object store (which names its files) and its root directory.
#[derive(Debug)]
pub(crate) struct LocalRepo {
    pub(crate) fs: Arc<object_store::local::LocalFileSystem>,
    pub(crate) root: PathBuf,
}

impl LocalRepo {
    /// The file of the object `path`.
    pub(crate) fn file_of(&self, path: &str) -> Result<PathBuf, Error> {
        let key = crate::keys::object_key(path)?;
        self.fs
            .path_to_filesystem(&key)
            .map_err(|e| Error::store(path, e))
    }

    /// The object `path` opened for reading, with its file; [`Error::NotFound`] if it does not
    /// exist.
    pub(crate) fn open(&self, path: &str) -> Result<(File, PathBuf), Error> {
        let file_path = self.file_of(path)?;
        match File::open(&file_path) {
            Ok(file) => Ok((file, file_path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound {
                path: path.to_string(),
            }),
            Err(e) => Err(Error::io(&file_path, e)),
        }
    }
}

/// One object of a local repository being written (see the module documentation).
///
/// Nothing is visible at the object's name before [`LocalObjectWriter::finish`]; dropping the
/// writer (or [`LocalObjectWriter::abort`]) removes the staging file.
#[derive(Debug)]
pub(crate) struct LocalObjectWriter {
    repo: Arc<LocalRepo>,
    target: PathBuf,
    staging: Option<(File, PathBuf)>,
    written: u64,
    /// Bytes already handed to writeback.
    flushed: u64,
}

impl LocalObjectWriter {
    /// A writer of the object at `target`, a file inside `repo`. The staging file is created at
    /// the first write.
    pub(crate) fn new(repo: Arc<LocalRepo>, target: PathBuf) -> Self {
        Self {
            repo,
            target,
            staging: None,
            written: 0,
            flushed: 0,
        }
    }

    /// Appends `data` to the object.
    pub(crate) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.staging.is_none() {
            self.staging = Some(create_staging(&self.target)?);
        }
        let Some((file, _)) = self.staging.as_mut() else {
            return Err(io::Error::other("local object writer has no staging file"));
        };
        file.write_all(data)?;
        self.written += data.len() as u64;
        if self.written - self.flushed >= WRITEBACK_EVERY {
            crate::posix::start_writeback(file, self.flushed, self.written - self.flushed);
            self.flushed = self.written;
        }
        Ok(())
    }

    /// Makes the object durable and visible at its name; returns the bytes written.
    pub(crate) fn finish(mut self) -> Result<u64, Error> {
        let target = self.target.clone();
        self.publish_at(&target)
    }

    /// Makes the object durable and visible under the object name `path` (in the same
    /// directory as the name it was opened with, so the rename stays atomic).
    pub(crate) fn finish_as(mut self, path: &str) -> Result<u64, Error> {
        let target = self.repo.file_of(path)?;
        if target.parent() != self.target.parent() {
            return Err(Error::InvalidPath {
                path: path.to_string(),
                reason: format!(
                    "not in the directory of {}, where the object was written",
                    self.target.display()
                ),
            });
        }
        self.publish_at(&target)
    }

    fn publish_at(&mut self, target: &Path) -> Result<u64, Error> {
        let (file, staging) = match self.staging.take() {
            Some(s) => s,
            None => create_staging(&self.target).map_err(|e| Error::io(&self.target, e))?,
        };
        // From here on a failure must still remove the staging file.
        let published = publish(file, &staging, target);
        if published.is_err() {
            let _ = fs::remove_file(&staging);
        }
        published?;
        fix_perms_blocking(&self.repo.root, target)?;
        Ok(self.written)
    }

    /// Abandons the object: the staging file is removed, nothing becomes visible.
    pub(crate) fn abort(mut self) -> Result<(), Error> {
        match self.staging.take() {
            Some((file, staging)) => {
                drop(file);
                match fs::remove_file(&staging) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Error::io(&staging, e)),
                }
            }
            None => Ok(()),
        }
    }
}

impl Drop for LocalObjectWriter {
    fn drop(&mut self) {
        if let Some((file, staging)) = self.staging.take() {
            drop(file);
            let _ = fs::remove_file(staging);
        }
    }
}

/// Whether `name` is a staging file's name: `<object name>#<digits>`.
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the staging files in `dir` (not below it) of objects whose names start with one of
/// `prefixes` (see [`crate::Storage::remove_abandoned`]); a missing directory holds none.
pub(crate) fn remove_abandoned(dir: &Path, prefixes: &[String]) -> Result<u64, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(object) = name
            .to_str()
            .filter(|n| is_staging_name(n))
            .and_then(|n| n.rsplit_once('#'))
            .map(|(object, _)| object)
        else {
            continue;
        };
        if !prefixes.iter().any(|p| object.starts_with(p.as_str())) {
            continue;
        }
        let path = entry.path();
        if entry.file_type().map_err(|e| Error::io(&path, e))?.is_dir() {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    if removed > 0 {
        crate::posix::sync_dir(dir)?;
    }
    Ok(removed)
}

/// Removes the staging files below `dir` (a directory inside the repository `root`, or nothing)
/// and returns how many; with `remove_empty_dirs`, then the directories from `dir` down that are
/// left empty (never `root`), as after the objects below a prefix were deleted.
pub(crate) fn remove_staging_files(
    root: &Path,
    dir: &Path,
    remove_empty_dirs: bool,
) -> Result<u64, Error> {
    if dir == root || !dir.starts_with(root) {
        return Ok(0);
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut files = 0;
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            files += remove_staging_files(root, &path, remove_empty_dirs)?;
        } else if entry.file_name().to_str().is_some_and(is_staging_name) {
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed = true;
                    files += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
    }
    // Only an empty directory goes (a concurrent writer's new file keeps it).
    if remove_empty_dirs {
        match fs::remove_dir(dir) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => {}
        }
    }
    if removed {
        crate::posix::sync_dir(if remove_empty_dirs {
            dir.parent().unwrap_or(dir)
        } else {
            dir
        })?;
    }
    Ok(files)
}

/// fsync, close, rename over `target`, fsync of the directory.
fn publish(file: File, staging: &Path, target: &Path) -> Result<(), Error> {
    file.sync_all().map_err(|e| Error::io(staging, e))?;
    drop(file);
    fs::rename(staging, target).map_err(|e| Error::io(target, e))?;
    if let Some(dir) = target.parent() {
        crate::posix::sync_dir(dir)?;
    }
    Ok(())
}

/// Creates a new staging file `<target>#<digits>` (a name the object store's listing skips),
/// creating missing parent directories durably.
fn create_staging(target: &Path) -> io::Result<(File, PathBuf)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut made_dirs = false;
    loop {
        let mut name = target.as_os_str().to_os_string();
        name.push(format!(
            "#{}{:06}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed) % 1_000_000
        ));
        let staging = PathBuf::from(name);
        let opened = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(LOCAL_FILE_MODE)
                .open(&staging)
        };
        match opened {
            Ok(file) => return Ok((file, staging)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !made_dirs => {
                create_parent_dirs(target)?;
                made_dirs = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates the missing directories above `target` and fsyncs each of them and the first one
/// that existed (whose entries changed), so the new entries are durable.
fn create_parent_dirs(target: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(parent) = target.parent() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an object path has no parent directory",
        ));
    };
    let mut first_existing = parent;
    while !first_existing.exists() {
        match first_existing.parent() {
            Some(p) => first_existing = p,
            None => break,
        }
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(LOCAL_DIR_MODE)
        .create(parent)?;
    let mut dir = parent;
    loop {
        File::open(dir)?.sync_all()?;
        if dir == first_existing {
            return Ok(());
        }
        match dir.parent() {
            Some(p) => dir = p,
            None => return Ok(()),
        }
    }
}

/// Gives a repository file its mode, and takes group-write and every access for others off
/// its parent directories up to `root`.
pub(crate) fn fix_perms_blocking(root: &Path, file: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(LOCAL_FILE_MODE))
        .map_err(|e| Error::io(file, e))?;
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) {
            break;
        }
        let md = std::fs::symlink_metadata(d).map_err(|e| Error::io(d, e))?;
        let mode = md.permissions().mode() & 0o7777;
        if mode & 0o027 != 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode & !0o027))
                .map_err(|e| Error::io(d, e))?;
        }
        dir = d.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use crate::Storage;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// A runtime, a temporary directory and a local repository in it.
    fn local_repo() -> (tokio::runtime::Runtime, tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::local(dir.path()).expect("local");
        (runtime(), dir, storage)
    }

    /// Writes `data` as the object `path` through a blocking writer.
    fn write_object(rt: &tokio::runtime::Runtime, storage: &Storage, path: &str, data: &[u8]) {
        let mut w = storage.blocking_writer(path, rt.handle().clone());
        w.write_all(data).expect("write");
        w.finish().expect("finish");
    }

    /// Every file and directory below `dir`, relative, with its mode.
    fn tree(dir: &std::path::Path) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir") {
                let e = e.expect("entry");
                let md = e.metadata().expect("metadata");
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .expect("prefix")
                    .display()
                    .to_string();
                out.push((rel, md.permissions().mode() & 0o7777));
                if md.is_dir() {
                    stack.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_streamed_object_appears_whole_with_the_repository_modes_and_no_staging_file() {
        let (rt, dir, storage) = local_repo();
        let data: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
        let mut w = storage.blocking_writer("a/b/c/object", rt.handle().clone());
        for piece in data.chunks(100_000) {
            w.write_all(piece).expect("write");
        }
        // Not visible before finish.
        assert!(!dir.path().join("a/b/c/object").exists());
        assert_eq!(w.finish().expect("finish"), data.len() as u64);
        assert_eq!(rt.block_on(storage.get("a/b/c/object")).expect("get"), data);
        assert_eq!(
            tree(dir.path()),
            vec![
                ("a".to_string(), 0o750),
                ("a/b".to_string(), 0o750),
                ("a/b/c".to_string(), 0o750),
                ("a/b/c/object".to_string(), 0o640),
            ]
        );

        // Replacing it publishes the new content at once.
        let mut w = storage.blocking_writer("a/b/c/object", rt.handle().clone());
        w.write_all(b"new").expect("write");
        assert_eq!(rt.block_on(storage.get("a/b/c/object")).expect("get"), data);
        w.finish().expect("finish");
        assert_eq!(
            rt.block_on(storage.get("a/b/c/object")).expect("get"),
            b"new".to_vec()
        );

        // An empty object still is an object.
        let w = storage.blocking_writer("a/empty", rt.handle().clone());
        assert_eq!(w.finish().expect("finish"), 0);
        assert_eq!(
            rt.block_on(storage.get("a/empty")).expect("get"),
            Vec::<u8>::new()
        );
        assert_eq!(tree(dir.path()).len(), 5);
    }

    #[test]
    fn an_object_can_be_published_under_a_name_chosen_at_the_end() {
        let (rt, dir, storage) = local_repo();
        assert!(storage.is_local());
        let mut w = storage.blocking_writer("wal/seg.pending", rt.handle().clone());
        w.write_all(b"segment bytes").expect("write");
        assert_eq!(w.finish_as("wal/seg-abc.zst").expect("finish_as"), 13);
        assert_eq!(
            tree(dir.path()),
            vec![
                ("wal".to_string(), 0o750),
                ("wal/seg-abc.zst".to_string(), 0o640)
            ]
        );
        // Another directory would not be an atomic rename: refused, nothing left.
        let mut w = storage.blocking_writer("wal/seg.pending", rt.handle().clone());
        w.write_all(b"x").expect("write");
        assert!(w.finish_as("other/seg-abc.zst").is_err());
        assert_eq!(tree(dir.path()).len(), 2);
        // Only a local repository can do this.
        let memory = Storage::memory();
        assert!(!memory.is_local());
        let mut w = memory.blocking_writer("a/pending", rt.handle().clone());
        w.write_all(b"x").expect("write");
        assert!(w.finish_as("a/final").is_err());
        assert!(rt.block_on(memory.list("a")).expect("list").is_empty());
    }

    #[test]
    fn an_abandoned_object_leaves_nothing_behind() {
        let (rt, dir, storage) = local_repo();
        let mut w = storage.blocking_writer("d/aborted", rt.handle().clone());
        w.write_all(&[7u8; 4096]).expect("write");
        w.abort().expect("abort");
        let mut w = storage.blocking_writer("d/dropped", rt.handle().clone());
        w.write_all(&[7u8; 4096]).expect("write");
        drop(w);
        assert_eq!(tree(dir.path()), vec![("d".to_string(), 0o750)]);
        assert!(rt.block_on(storage.list("d")).expect("list").is_empty());
    }

    #[test]
    fn deleting_a_prefix_also_removes_staging_files_a_killed_writer_left() {
        let (rt, dir, storage) = local_repo();
        write_object(&rt, &storage, "backup/x/a/object", b"done");
        write_object(&rt, &storage, "backup/y/kept", b"kept");
        // What a killed writer leaves: a staging file the listing does not show, plus one whose
        // name only looks like it (not all digits after '#'), which is an object.
        std::fs::create_dir_all(dir.path().join("backup/x/b")).expect("mkdir");
        std::fs::write(dir.path().join("backup/x/b/object#1234"), b"partial").expect("staging");
        std::fs::write(dir.path().join("backup/y/other#12ab"), b"object").expect("object");
        std::fs::write(dir.path().join("backup/y/left#99"), b"partial").expect("staging");
        assert_eq!(
            rt.block_on(storage.list("backup/x")).expect("list").len(),
            1
        );

        assert_eq!(
            rt.block_on(storage.delete_prefix("backup/x/"))
                .expect("delete"),
            1
        );
        assert!(
            !dir.path().join("backup/x").exists(),
            "{:?}",
            tree(dir.path())
        );
        // Another prefix keeps everything, its own staging file included.
        assert!(dir.path().join("backup/y/left#99").exists());
        assert!(dir.path().join("backup/y/other#12ab").exists());
        assert!(dir.path().join("backup/y/kept").exists());
        assert!(crate::local::is_staging_name("a#1"));
        assert!(!crate::local::is_staging_name("a#1b"));
        assert!(!crate::local::is_staging_name("a#"));
    }

    #[test]
    fn abandoned_staging_files_of_the_named_objects_are_removed_and_nothing_else() {
        let (rt, dir, storage) = local_repo();
        write_object(&rt, &storage, "wal/0001-sum.zst", b"archived");
        write_object(&rt, &storage, "wal/0003-sum.zst", b"archived");
        let wal = dir.path().join("wal");
        for name in [
            "0001.pending#4242000001",
            "0001-sum.zst#4242000002",
            "0002.pending#4242000003",
            "0001-other#12ab",
        ] {
            std::fs::write(wal.join(name), b"partial").expect("staging");
        }
        std::fs::create_dir(wal.join("0001.d#77")).expect("a directory");
        let prefixes = vec!["0001".to_string(), "0003".to_string()];
        assert_eq!(
            rt.block_on(storage.remove_abandoned("wal", &prefixes))
                .expect("remove"),
            2
        );
        let mut left: Vec<String> = std::fs::read_dir(&wal)
            .expect("read")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "0001-other#12ab",
                "0001-sum.zst",
                "0001.d#77",
                "0002.pending#4242000003",
                "0003-sum.zst"
            ]
        );
        // Nothing named, a missing directory, another store: nothing to do.
        assert_eq!(
            rt.block_on(storage.remove_abandoned("wal", &[]))
                .expect("none"),
            0
        );
        assert_eq!(
            rt.block_on(storage.remove_abandoned("nowhere", &prefixes))
                .expect("missing"),
            0
        );
        let memory = Storage::memory();
        assert_eq!(
            rt.block_on(memory.remove_abandoned("wal", &prefixes))
                .expect("memory"),
            0
        );
    }

    #[test]
    fn abandoned_staging_files_below_a_prefix_are_removed_and_objects_and_dirs_stay() {
        let (rt, dir, storage) = local_repo();
        write_object(&rt, &storage, "backup/x/pg_data/big.blk", b"done");
        write_object(&rt, &storage, "backup/y/kept", b"kept");
        let x = dir.path().join("backup/x");
        std::fs::create_dir_all(x.join("pg_data/base/5")).expect("mkdir");
        for name in [
            "pg_data/big.blk#17",
            "pg_data/base/5/1.blk#4",
            "pg_data/x#1b",
        ] {
            std::fs::write(x.join(name), b"partial").expect("staging");
        }
        std::fs::write(dir.path().join("backup/y/left#9"), b"partial").expect("staging");
        assert_eq!(
            rt.block_on(storage.remove_abandoned_below("backup/x/"))
                .expect("remove"),
            2
        );
        assert!(x.join("pg_data/big.blk").exists());
        assert!(
            x.join("pg_data/x#1b").exists(),
            "an object whose name looks alike"
        );
        assert!(x.join("pg_data/base/5").is_dir(), "directories stay");
        assert!(!x.join("pg_data/base/5/1.blk#4").exists());
        assert!(
            dir.path().join("backup/y/left#9").exists(),
            "another prefix"
        );
        let memory = Storage::memory();
        assert_eq!(
            rt.block_on(memory.remove_abandoned_below("backup/x/"))
                .expect("memory"),
            0
        );
    }

    #[test]
    fn a_path_outside_the_repository_is_refused() {
        let (rt, dir, storage) = local_repo();
        let mut w = storage.blocking_writer("../escape", rt.handle().clone());
        assert!(w.write_all(b"x").is_err());
        assert!(w.finish().is_err());
        let w = storage.blocking_writer("", rt.handle().clone());
        assert!(w.finish().is_err());
        assert!(tree(dir.path()).is_empty());
        assert!(!dir.path().parent().expect("parent").join("escape").exists());
    }
}
