//! Named failpoints for the fault tests: places where a test makes a command crash, wait or
//! meet a fault, to prove what a `kill -9` (or a slow or failing repository) at that point
//! leaves behind.
//!
//! They exist only in a build with the `failpoints` feature (the `fail` crate's failpoints),
//! which the test suite turns on and nothing else does: without it every failpoint expands to
//! nothing, so no environment can change what the engine does. With it, the `pgbr` binary
//! configures them from the `FAILPOINTS` environment variable ([`crate::failpoints_from_env!`]),
//! in the `fail` crate's syntax: `FAILPOINTS='backup::before-commit=return'` crashes a backup
//! just before it commits; `backup::copy-file=30*off->return` crashes it at the 31st file;
//! `restore::copy-file=sleep(5)` slows every restored file down by 5 ms.
//!
//! A crash point configured with `return` sends the process SIGKILL, exactly like `kill -9`: no
//! destructor runs, nothing is flushed, locks are released by the kernel. `sleep(ms)`, `delay`,
//! `pause` and `panic` work on every point as the `fail` crate describes.
//!
//! Names are `<command>::<place>`; [`ALL`] lists every one, so tests can go through them all.

/// Every failpoint, by name.
///
/// Crash points (`return` sends SIGKILL):
/// - `backup::after-label`: the label is chosen, before `pg_backup_start`.
/// - `backup::after-inprogress`: the in-progress manifest (the backup's first object) is stored.
/// - `backup::copy-file`: before each file (or bundle) is stored; `N*off->return` crashes
///   mid-copy.
/// - `backup::after-files`: every file is stored, before `pg_backup_stop`.
/// - `backup::before-commit`: `backup_label` (and the WAL with `archive-copy`) is stored, the
///   manifest is not.
/// - `backup::after-commit`: the manifest (both copies) is stored, backup.info not updated.
/// - `backup::after-backup-info`: backup.info lists the backup; the expire that follows a
///   backup has not run.
/// - `repo::before-copy`: an info file or manifest is written, its `.copy` is not (any command
///   that writes one; `N*off->return` picks the write).
/// - `restore::after-mark`: the marker of a restore in progress is in every destination,
///   nothing else has changed.
/// - `restore::after-remove-extras`: `--delta`/`--force` removed the old `pg_control` and what
///   the backup does not have.
/// - `restore::copy-file`: before each file, bundle or part is restored.
/// - `restore::before-recovery-settings`: every file is written, the recovery settings
///   (`postgresql.auto.conf`, `recovery.signal`) are not.
/// - `restore::before-pg-control`: every file and the recovery settings are durable,
///   `global/pg_control` not yet renamed into place.
/// - `expire::after-backup-info`: backup.info no longer lists the expired backups.
/// - `expire::after-manifest`: after each expired backup's manifest is removed.
/// - `expire::after-directory`: after each expired backup's directory is removed.
/// - `expire::after-wal`: after each expired WAL file is removed.
/// - `archive-push::before-put`: the segment is checked, before it is stored in a repository
///   (each repository: `1*off->return` crashes at the second).
/// - `archive-push::after-put`: the segment is stored in a repository (in the asynchronous
///   worker: mid-push, before the report).
/// - `archive-push-async::after-report`: the worker reported a segment pushed.
/// - `stanza-create::after-archive-info`: archive.info is written, backup.info is not.
/// - `stanza-upgrade::after-archive-info`: archive.info holds the new cluster, backup.info not.
/// - `stanza-delete::after-info`: the four info files are removed, nothing else.
/// - `stanza-delete::after-backup-dir`: `backup/<stanza>/` is removed, `archive/<stanza>/` not.
///
/// Other failpoints:
/// - `backup::lose-snapshot-entries` (`return`): the progress record loses the entries lent to
///   a snapshot, as a bug there would.
/// - `storage::http-fail-first` (`return(K)`): an object store's first `K` HTTP requests of
///   every method fail with a 503 (transient: the retries absorb it).
/// - `storage::http-fail-after` (`return(N)`): every `PUT` after the first `N` fails with a 503
///   (permanent: the retries exhaust).
pub const ALL: &[&str] = &[
    "backup::after-label",
    "backup::after-inprogress",
    "backup::copy-file",
    "backup::after-files",
    "backup::before-commit",
    "backup::after-commit",
    "backup::after-backup-info",
    "backup::lose-snapshot-entries",
    "repo::before-copy",
    "restore::after-mark",
    "restore::after-remove-extras",
    "restore::copy-file",
    "restore::before-pg-control",
    "restore::before-recovery-settings",
    "expire::after-backup-info",
    "expire::after-manifest",
    "expire::after-directory",
    "expire::after-wal",
    "archive-push::before-put",
    "archive-push::after-put",
    "archive-push-async::after-report",
    "stanza-create::after-archive-info",
    "stanza-upgrade::after-archive-info",
    "stanza-delete::after-info",
    "stanza-delete::after-backup-dir",
    "storage::http-fail-first",
    "storage::http-fail-after",
];

/// The `fail` crate's scenario, for the binary's `main` (see [`failpoints_from_env!`]).
#[cfg(feature = "failpoints")]
pub use fail::FailScenario;

/// In a build with the `failpoints` feature: configures the failpoints from the `FAILPOINTS`
/// environment variable and returns the guard that keeps them configured (hold it for the
/// life of the process). Without the feature it reads nothing and returns `()`. Only the
/// `pgbr` binary's `main` calls it.
#[cfg(feature = "failpoints")]
#[macro_export]
macro_rules! failpoints_from_env {
    () => {
        $crate::failpoints::FailScenario::setup()
    };
}

/// See the documentation of the other definition (a build with the `failpoints` feature).
#[cfg(not(feature = "failpoints"))]
#[macro_export]
macro_rules! failpoints_from_env {
    () => {
        ()
    };
}

/// A crash point (see [`ALL`]): with `return`, the process dies of SIGKILL here.
#[cfg(feature = "failpoints")]
macro_rules! crash_point {
    ($name:literal) => {
        ::fail::fail_point!($name, |_| $crate::failpoints::crash($name))
    };
}

/// A crash point (see [`ALL`]); nothing without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
macro_rules! crash_point {
    ($name:literal) => {};
}

pub(crate) use crash_point;

/// Kills this process as `kill -9` would: no destructor, no flush.
#[cfg(feature = "failpoints")]
pub(crate) fn crash(name: &str) -> ! {
    tracing::error!("failpoint {name}: SIGKILL");
    // SAFETY: getpid and kill have no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL to oneself is delivered before kill returns; abort is the fallback.
    std::process::abort()
}

/// Whether failpoint `name` is configured to `return` (a behaviour a test asks for, not a
/// crash). Always false without the `failpoints` feature.
#[cfg(feature = "failpoints")]
pub(crate) fn triggered(name: &str) -> bool {
    fail::fail_point!(name, |_| true);
    false
}

/// Without the `failpoints` feature nothing is ever triggered.
#[cfg(not(feature = "failpoints"))]
pub(crate) fn triggered(_name: &str) -> bool {
    false
}

/// The argument of failpoint `name` configured as `return(N)`, as a number.
#[cfg(feature = "failpoints")]
pub(crate) fn number(name: &str) -> Option<u64> {
    fail::fail_point!(name, |arg: Option<String>| arg
        .and_then(|a| a.trim().parse().ok()));
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every failpoint named in the engine's sources is in [`super::ALL`], and every name there
    /// is used: the list tests iterate over is the real one.
    #[test]
    fn every_failpoint_in_the_sources_is_listed_and_every_listed_one_exists() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut used = BTreeSet::new();
        // The sources, command folders included.
        let mut files = Vec::new();
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("src") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        for path in files {
            if path.file_name().is_some_and(|n| n == "failpoints.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for (at, _) in text.match_indices("crash_point!(\"") {
                let rest = &text[at + "crash_point!(\"".len()..];
                used.insert(rest[..rest.find('"').expect("closing quote")].to_string());
            }
            for call in ["failpoints::triggered(\"", "failpoints::number(\""] {
                for (at, _) in text.match_indices(call) {
                    let rest = &text[at + call.len()..];
                    used.insert(rest[..rest.find('"').expect("closing quote")].to_string());
                }
            }
        }
        let listed: BTreeSet<String> = super::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(used, listed, "failpoints in the sources vs failpoints::ALL");
        for name in super::ALL {
            let (command, place) = name.split_once("::").expect("<command>::<place>");
            assert!(!command.is_empty() && !place.is_empty(), "{name}");
        }
    }
}
