//! The per-stanza exclusive lock that `backup`, `expire` and `stanza-create` hold while they change
//! a repository.
//!
//! The lock is `<lock-path>/<stanza>.lock`, taken with `flock(LOCK_EX | LOCK_NB)` and holding the
//! holder's pid. The kernel releases an flock when its holder dies (even by `kill -9`), so a stale
//! lock file of a dead process is simply taken over; a live holder makes a second command fail at
//! once with [`Error::Locked`] naming its pid. `archive-push` and `archive-get` take no lock: every
//! archive write is an atomic put of a name that holds the content's checksum.
//!
//! `pgbr stop` writes a stop file, `<lock-path>/<stanza>.stop` (or `<lock-path>/all.stop` for every
//! stanza), and `pgbr start` removes it. While it exists, [`check_not_stopped`] fails with
//! [`Error::Stopped`] (exit 15): [`Lock::acquire`] calls it, so `backup`, `expire`, `stanza-create`
//! and `stanza-upgrade` refuse, and `archive-push`/`archive-get` call it before they start.
//! `stanza-delete` requires the stanza to be stopped and takes the lock with
//! [`Lock::acquire_stopped`].

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A held stanza lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Takes the exclusive lock on `stanza` in directory `lock_path` (created if missing), or fails
    /// at once with [`Error::Locked`] naming the holder's pid, or with [`Error::Stopped`] when the
    /// stanza is stopped (see [`check_not_stopped`]).
    pub fn acquire(lock_path: &Path, stanza: &str) -> Result<Lock> {
        check_not_stopped(lock_path, stanza)?;
        Self::acquire_stopped(lock_path, stanza)
    }

    /// As [`Lock::acquire`], without the stop-file check: for `stanza-delete`, which requires the
    /// stanza to be stopped.
    pub fn acquire_stopped(lock_path: &Path, stanza: &str) -> Result<Lock> {
        std::fs::create_dir_all(lock_path)
            .map_err(|e| Error::io("unable to create lock directory", lock_path, e))?;
        let path = crate::layout::lock_file(lock_path, stanza);
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

/// The stop file of `stanza`, or of every stanza (`all.stop`) when `stanza` is `None`.
pub fn stop_file(lock_path: &Path, stanza: Option<&str>) -> PathBuf {
    lock_path.join(format!("{}.stop", stanza.unwrap_or("all")))
}

/// Whether `stanza` is stopped, by its own stop file or by `all.stop`.
pub fn is_stopped(lock_path: &Path, stanza: &str) -> bool {
    stop_file(lock_path, Some(stanza)).exists() || stop_file(lock_path, None).exists()
}

/// Fails with [`Error::Stopped`] (exit 15) when `pgbr stop` stopped `stanza` or every stanza.
/// Every command that changes the repository or moves WAL calls it before it starts.
pub fn check_not_stopped(lock_path: &Path, stanza: &str) -> Result<()> {
    if stop_file(lock_path, Some(stanza)).exists() {
        return Err(Error::Stopped(format!(
            "stanza '{stanza}' is stopped: run 'pgbr --stanza={stanza} start'"
        )));
    }
    if stop_file(lock_path, None).exists() {
        return Err(Error::Stopped(format!(
            "all stanzas are stopped (stanza '{stanza}' too): run 'pgbr start'"
        )));
    }
    Ok(())
}

/// What `stop` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// The stop file.
    pub stop_file: PathBuf,
    /// The stop file existed already (nothing new was stopped).
    pub already_stopped: bool,
    /// With `force`: (stanza, pid) of each running pgbr process that was sent SIGTERM.
    pub terminated: Vec<(String, u32)>,
}

/// `pgbr stop`: writes the stop file of `stanza` (`None`: every stanza). With `force`, also sends
/// SIGTERM to every pgbr process holding the lock of that stanza (every stanza) and waits up to
/// ten seconds for the locks to be released.
pub fn stop(lock_path: &Path, stanza: Option<&str>, force: bool) -> Result<StopReport> {
    std::fs::create_dir_all(lock_path)
        .map_err(|e| Error::io("unable to create lock directory", lock_path, e))?;
    let file = stop_file(lock_path, stanza);
    let already_stopped = file.exists();
    if !already_stopped {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&file)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("unable to write stop file", &file, e))?;
    }
    let mut report = StopReport {
        stop_file: file,
        already_stopped,
        terminated: Vec::new(),
    };
    if !force {
        return Ok(report);
    }
    let stanzas: Vec<String> = match stanza {
        Some(s) => vec![s.to_string()],
        None => std::fs::read_dir(lock_path)
            .map_err(|e| Error::io("unable to list lock directory", lock_path, e))?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                crate::layout::stanza_of_lock_file(&name).map(str::to_string)
            })
            .collect(),
    };
    for s in stanzas {
        if let Some(pid) = holder(lock_path, &s)? {
            // SAFETY: kill(2) with a pid read from the lock file; no memory is passed.
            let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::ESRCH) {
                    return Err(Error::Locked(format!(
                        "unable to terminate pgbr process {pid} holding the lock on stanza '{s}': {err}"
                    )));
                }
            }
            report.terminated.push((s, pid));
        }
    }
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(10) {
        let mut any = false;
        for (s, _) in &report.terminated {
            any |= holder(lock_path, s)?.is_some();
        }
        if !any {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(report)
}

/// `pgbr start`: removes the stop file of `stanza` (`None`: `all.stop`). Returns whether it
/// existed.
pub fn start(lock_path: &Path, stanza: Option<&str>) -> Result<bool> {
    let file = stop_file(lock_path, stanza);
    match std::fs::remove_file(&file) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("unable to remove stop file", &file, e)),
    }
}

/// What `stop` or `start` tells the user: warnings, and the lines of its result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Told {
    /// Warnings (the stanza was already stopped, ...).
    pub warnings: Vec<String>,
    /// The result, one line each.
    pub lines: Vec<String>,
}

/// `pgbr stop` (`stop`, with `force`) or `pgbr start` of `stanza` (`None`: every stanza): runs
/// [`stop`] or [`start`] and says what happened.
pub fn stop_or_start(
    lock_path: &Path,
    stanza: Option<&str>,
    stop_it: bool,
    force: bool,
) -> Result<Told> {
    let (what, flag) = match stanza {
        Some(s) => (format!("stanza '{s}'"), format!(" --stanza={s}")),
        None => ("all stanzas".to_string(), String::new()),
    };
    let mut told = Told::default();
    if stop_it {
        let report = stop(lock_path, stanza, force)?;
        if report.already_stopped {
            let file = report.stop_file.display();
            told.warnings
                .push(format!("stop file {file} already exists for {what}"));
        }
        for (s, pid) in &report.terminated {
            told.lines.push(format!(
                "terminated pgbr process {pid} holding the lock on stanza '{s}'"
            ));
        }
        told.lines.push(format!(
            "{what} stopped: run 'pgbr{flag} start' to allow commands again"
        ));
    } else {
        if !start(lock_path, stanza)? {
            told.warnings.push(format!(
                "stop file does not exist for {what}; nothing to start"
            ));
        }
        if stanza.is_some_and(|s| is_stopped(lock_path, s)) {
            told.warnings
                .push("all stanzas are still stopped: run 'pgbr start'".into());
        }
        told.lines.push(format!("{what} started"));
    }
    Ok(told)
}

/// The pid of the live process holding `stanza`'s lock, if any.
pub fn holder(lock_path: &Path, stanza: &str) -> Result<Option<u32>> {
    let path = crate::layout::lock_file(lock_path, stanza);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("unable to open lock file", &path, e)),
    };
    // A shared, non-blocking probe: it fails only while an exclusive holder lives.
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        // SAFETY: as above.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        return Ok(None);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(Error::io("unable to probe lock", &path, err));
    }
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    Ok(text.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_refuses_the_lock_and_start_releases_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = stop(dir.path(), Some("main"), false).expect("stop");
        assert!(!r.already_stopped);
        assert!(dir.path().join("main.stop").exists());
        let e = Lock::acquire(dir.path(), "main").expect_err("stopped");
        assert_eq!(e.exit_code(), 15);
        assert_eq!(
            e.to_string(),
            "stanza 'main' is stopped: run 'pgbr --stanza=main start'"
        );
        // Another stanza is not stopped; stanza-delete's lock ignores the stop file.
        let other = Lock::acquire(dir.path(), "other").expect("other");
        assert_eq!(
            holder(dir.path(), "other").expect("probe"),
            Some(std::process::id())
        );
        drop(other);
        assert_eq!(holder(dir.path(), "other").expect("probe"), None);
        drop(Lock::acquire_stopped(dir.path(), "main").expect("stopped lock"));
        assert!(
            stop(dir.path(), Some("main"), false)
                .expect("again")
                .already_stopped
        );
        assert!(start(dir.path(), Some("main")).expect("start"));
        assert!(!start(dir.path(), Some("main")).expect("start again"));
        drop(Lock::acquire(dir.path(), "main").expect("started"));
        // all.stop stops every stanza.
        stop(dir.path(), None, false).expect("stop all");
        assert!(dir.path().join("all.stop").exists());
        let e = check_not_stopped(dir.path(), "other").expect_err("all");
        assert!(e.to_string().contains("run 'pgbr start'"), "{e}");
        assert!(is_stopped(dir.path(), "main"));
        assert!(start(dir.path(), None).expect("start all"));
        check_not_stopped(dir.path(), "other").expect("started");
    }

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
