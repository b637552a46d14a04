//! Posix helpers for the database side: walking a data directory and durable file writes.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// What a directory entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File {
        /// Size in bytes when it was examined.
        size: u64,
    },
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink {
        /// The link's target, as stored in the link.
        target: PathBuf,
    },
}

/// One entry found by [`walk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the walked root, '/'-separated (never empty: the root itself is not
    /// an entry).
    pub rel_path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (including setuid/setgid/sticky), without the file type.
    pub mode: u32,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

fn is_vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// Lists everything under `root`, sorted by `rel_path`.
///
/// Symlinks are reported, not followed. `skip(rel_path, kind)` returning true excludes the
/// entry and, for a directory, its whole subtree. Entries that vanish while the walk runs
/// (PostgreSQL drops files during a backup) are silently left out. Special files (sockets,
/// FIFOs, devices) are left out. Names that are not UTF-8 are an error. Errors name the
/// path they are about.
pub fn walk(root: &Path, skip: &dyn Fn(&str, &EntryKind) -> bool) -> Result<Vec<Entry>, Error> {
    let md = fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if !md.is_dir() {
        return Err(Error::io(
            root,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let mut out = Vec::new();
    // (absolute dir, its rel path)
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if is_vanished(&e) && !rel_dir.is_empty() => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for item in rd {
            let item = match item {
                Ok(i) => i,
                Err(e) if is_vanished(&e) => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            let path = item.path();
            let name = item.file_name();
            let Some(name) = name.to_str() else {
                return Err(Error::io(
                    &path,
                    io::Error::new(io::ErrorKind::InvalidData, "file name is not UTF-8"),
                ));
            };
            let rel = if rel_dir.is_empty() {
                name.to_string()
            } else {
                format!("{rel_dir}/{name}")
            };
            let md = match fs::symlink_metadata(&path) {
                Ok(md) => md,
                Err(e) if is_vanished(&e) => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            let ft = md.file_type();
            let kind = if ft.is_file() {
                EntryKind::File { size: md.len() }
            } else if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_symlink() {
                match fs::read_link(&path) {
                    Ok(target) => EntryKind::Symlink { target },
                    Err(e) if is_vanished(&e) => continue,
                    Err(e) => return Err(Error::io(&path, e)),
                }
            } else {
                continue;
            };
            if skip(&rel, &kind) {
                continue;
            }
            if kind == EntryKind::Dir {
                stack.push((path, rel.clone()));
            }
            out.push(Entry {
                rel_path: rel,
                kind,
                mode: md.mode() & 0o7777,
                mtime: md.mtime(),
                uid: md.uid(),
                gid: md.gid(),
            });
        }
    }
    out.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(out)
}

/// Flushes a directory's entries to disk (fsync on the directory).
pub fn sync_dir(path: &Path) -> Result<(), Error> {
    let dir = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    dir.sync_all().map_err(|e| Error::io(path, e))
}

/// Flushes everything written to the filesystem holding `path` (Linux `syncfs`): one call instead
/// of an fsync per file, for a restore that writes thousands of files. Write errors of any file on
/// that filesystem since it was opened are reported here.
pub fn sync_filesystem(path: &Path) -> Result<(), Error> {
    use std::os::unix::io::AsRawFd;
    let dir = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: syncfs takes a valid open descriptor, which `dir` holds for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(Error::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `sync_file_range(2)` of `len` bytes of `file` from `offset` (0: to the end) with `flags`;
/// errors ignored (the callers are hints, and a later fsync or syncfs is the guarantee).
fn sync_range(file: &fs::File, offset: u64, len: u64, flags: libc::c_uint) {
    use std::os::unix::io::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range takes a valid open descriptor, which `file` holds for the call;
    // it reads no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, flags);
    }
}

/// `posix_fadvise(2)` of `len` bytes of `file` from `offset` (0: to the end); errors ignored
/// (advice a file system does not take changes nothing but speed).
fn advise(file: &fs::File, offset: u64, len: u64, advice: libc::c_int) {
    use std::os::unix::io::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: posix_fadvise takes a valid open descriptor, which `file` holds for the call; it
    // reads no memory of ours.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset, len, advice);
    }
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` (0: to the end) to
/// disk, without waiting. Best effort and not a durability guarantee: it only lets the disk
/// work while the caller goes on, so that a later [`sync_filesystem`] or fsync has little
/// left to wait for. Errors are ignored (an unsupported file system just writes back later).
pub fn start_writeback(file: &fs::File, offset: u64, len: u64) {
    sync_range(file, offset, len, libc::SYNC_FILE_RANGE_WRITE);
}

/// Waits until the kernel has written `len` bytes of `file` from `offset` (written earlier, and
/// started with [`start_writeback`]) to disk, then lets it drop those pages from the page cache.
/// Best effort, errors ignored, and not a durability guarantee (no metadata, no disk cache
/// flush: a later [`sync_filesystem`] or fsync still makes the file durable).
///
/// A writer of gigabytes calls it on what it wrote a little while before (so the wait is
/// usually over already): its page cache footprint stays a few megabytes, the pages it frees
/// are the ones its next writes reuse, and the page cache other processes rely on is not
/// evicted by data nobody is about to read. Fresh pages are not free: on a virtual machine
/// whose free memory goes back to the host, each one the kernel hands out again costs a fault
/// on the host.
pub fn drop_written(file: &fs::File, offset: u64, len: u64) {
    sync_range(
        file,
        offset,
        len,
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
    );
    advise(file, offset, len, libc::POSIX_FADV_DONTNEED);
}

/// Reserves disk space for `file` to be `len` bytes long, as one allocation, before it is
/// written (`fallocate`): the file system then maps the blocks once instead of reserving them
/// page by page as they are written, and the file lies in few extents. The file's size becomes
/// `len`. Best effort: a file system that cannot preallocate just allocates as it is written.
pub fn preallocate(file: &fs::File, len: u64) {
    use std::os::unix::io::AsRawFd;
    let Ok(len) = i64::try_from(len) else {
        return;
    };
    // SAFETY: fallocate takes a valid open descriptor, which `file` holds for the call; it
    // reads no memory of ours.
    unsafe {
        libc::fallocate(file.as_raw_fd(), 0, 0, len);
    }
}

/// Asks the kernel to start reading all of `file` into the page cache, without waiting for the
/// data, so that a later read finds it there. Reading many small files one after another waits
/// on the disk once per file; asking for the next ones ahead keeps several reads in flight.
/// Best effort: errors (a file system that ignores the hint) are ignored.
pub fn will_need(file: &fs::File) {
    advise(file, 0, 0, libc::POSIX_FADV_WILLNEED);
}

/// Writes `data` to `path` with permission bits `mode` (exactly, whatever the umask),
/// durably and atomically: a temporary file in the same directory is written and fsynced,
/// renamed over `path`, and the directory fsynced.
pub fn write_file_durable(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    let name = path.file_name().ok_or_else(|| {
        Error::io(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".pgbr-tmp.{}", std::process::id()));
    let tmp = parent.join(tmp_name);

    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode & 0o7777)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all(data).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn preallocated_file_written_out_of_order_and_dropped_keeps_its_bytes() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let len = 3 * 1024 * 1024 + 100;
        preallocate(&file, len);
        assert_eq!(file.metadata().unwrap().len(), len);
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let half = (len / 2) as usize;
        // The second half first, as a later part may finish before an earlier one.
        file.write_all_at(&data[half..], half as u64).unwrap();
        start_writeback(&file, half as u64, len - half as u64);
        file.write_all_at(&data[..half], 0).unwrap();
        start_writeback(&file, 0, half as u64);
        drop_written(&file, half as u64, len - half as u64);
        drop_written(&file, 0, half as u64);
        drop(file);
        assert_eq!(fs::read(&path).unwrap(), data);
    }

    #[test]
    fn walk_reports_files_dirs_symlinks_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("base/1")).unwrap();
        fs::create_dir_all(root.join("pg_wal")).unwrap();
        fs::write(root.join("PG_VERSION"), b"15\n").unwrap();
        fs::write(root.join("base/1/1234"), vec![0u8; 8192]).unwrap();
        fs::write(root.join("pg_wal/000000010000000000000001"), b"x").unwrap();
        fs::create_dir_all(root.join("pg_tblspc")).unwrap();
        symlink("/somewhere/else", root.join("pg_tblspc/16384")).unwrap();
        fs::set_permissions(root.join("PG_VERSION"), fs::Permissions::from_mode(0o600)).unwrap();

        let entries = walk(root, &|rel, _| rel == "pg_wal").unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.rel_path.as_str()).collect();
        assert_eq!(
            names,
            [
                "PG_VERSION",
                "base",
                "base/1",
                "base/1/1234",
                "pg_tblspc",
                "pg_tblspc/16384"
            ]
        );
        assert_eq!(entries[0].kind, EntryKind::File { size: 3 });
        assert_eq!(entries[0].mode, 0o600);
        assert!(entries[0].mtime > 0);
        assert_eq!(entries[1].kind, EntryKind::Dir);
        assert_eq!(
            entries[5].kind,
            EntryKind::Symlink {
                target: PathBuf::from("/somewhere/else")
            }
        );
    }

    #[test]
    fn walk_skips_vanished_files_and_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("d")).unwrap();
        fs::create_dir_all(root.join("gone/sub")).unwrap();
        for i in 0..20 {
            fs::write(root.join(format!("d/f{i}")), b"x").unwrap();
        }
        fs::write(root.join("gone/sub/f"), b"x").unwrap();
        let r = root.clone();
        let entries = walk(&root, &move |rel, kind| {
            if rel.starts_with("d/") {
                // The first file seen in d drops every other one, as PostgreSQL might.
                for i in 0..20 {
                    let p = r.join(format!("d/f{i}"));
                    if format!("d/f{i}") != rel {
                        let _ = fs::remove_file(p);
                    }
                }
            }
            if rel == "gone" && *kind == EntryKind::Dir {
                fs::remove_dir_all(r.join("gone")).unwrap();
            }
            false
        })
        .unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.rel_path.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(names[0], "d");
        assert!(names[1].starts_with("d/f"));
        assert_eq!(names[2], "gone");
    }

    #[test]
    fn walk_errors_name_the_path() {
        let err = walk(Path::new("/nonexistent/pgdata"), &|_, _| false).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pgdata"), "{err}");
    }

    #[test]
    fn write_file_durable_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("postgresql.auto.conf");
        write_file_durable(&p, b"one", 0o600).unwrap();
        write_file_durable(&p, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        sync_dir(dir.path()).unwrap();
        let err = write_file_durable(&dir.path().join("no/such/dir/f"), b"x", 0o600).unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
