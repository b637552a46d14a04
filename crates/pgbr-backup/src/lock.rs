//! The per-stanza exclusive lock that `backup`, `expire` and `stanza-create` hold while they change
//! a repository.
//!
//! The lock is `<lock-path>/<stanza>.lock`, taken with `flock(LOCK_EX | LOCK_NB)` and holding the
//! holder's pid. The kernel releases an flock when its holder dies (even by `kill -9`), so a stale
//! lock file of a dead process is simply taken over; a live holder makes a second command fail at
//! once with [`Error::Locked`] naming its pid. `archive-push` and `archive-get` take no lock: every
//! archive write is an atomic put of a name that holds the content's checksum.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Default of the `lock-path` option.
pub const DEFAULT_LOCK_PATH: &str = "/tmp/pgbr";

/// A held stanza lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Takes the exclusive lock on `stanza` in directory `lock_path` (created if missing), or fails
    /// at once with [`Error::Locked`] naming the holder's pid.
    pub fn acquire(lock_path: &Path, stanza: &str) -> Result<Lock> {
        std::fs::create_dir_all(lock_path)
            .map_err(|e| Error::io("unable to create lock directory", lock_path, e))?;
        let path = lock_path.join(format!("{stanza}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(&path)
            .map_err(|e| Error::io("unable to open lock file", &path, e))?;
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = text.trim();
                return Err(Error::Locked(format!(
                    "another pgbr process (pid {}) holds the lock on stanza '{stanza}' (lock file {}); wait for it to finish",
                    if holder.is_empty() { "unknown" } else { holder },
                    path.display()
                )));
            }
            return Err(Error::io("unable to lock", &path, err));
        }
        let write_pid = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(format!("{}\n", std::process::id()).as_bytes())?;
            f.sync_data()
        };
        write_pid(&mut file).map_err(|e| Error::io("unable to write lock file", &path, e))?;
        Ok(Lock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Empty the file so a reader never names a pid that no longer holds it; the flock itself is
        // released when the descriptor closes.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_naming_the_holder_and_drop_releases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Lock::acquire(dir.path(), "main").expect("first");
        let e = Lock::acquire(dir.path(), "main").expect_err("second");
        assert_eq!(e.exit_code(), 13);
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("stanza 'main'"), "{msg}");
        assert!(msg.contains("main.lock"), "{msg}");
        // Another stanza is independent.
        let _other = Lock::acquire(dir.path(), "other").expect("other stanza");
        drop(first);
        let _again = Lock::acquire(dir.path(), "main").expect("after release");
    }

    #[test]
    fn stale_lock_file_without_holder_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("main.lock"), "999999999\n").expect("write");
        let lock = Lock::acquire(dir.path(), "main").expect("take over");
        let text = std::fs::read_to_string(lock.path()).expect("read");
        assert_eq!(text.trim(), std::process::id().to_string());
    }
}
