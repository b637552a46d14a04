//! Where everything lives: every key of the repository the engine reads, writes, lists or
//! deletes is named here, and nowhere else, as are the names of the local lock, stop and spool
//! files that more than one module builds.
//!
//! A repository holds, per stanza:
//!
//! ```text
//! backup/<stanza>/backup.info(.copy)        the committed backups
//! backup/<stanza>/backup.lock(.<id>)         the stanza's claim (and takeover markers)
//! backup/<stanza>/<label>/backup.manifest(.copy, .inprogress)
//! backup/<stanza>/<label>/<target>/<name><ext>     a file stored whole
//! backup/<stanza>/<label>/<target>/<name>.blk      a file's blocks
//! backup/<stanza>/<label>/bundle/<id>              small files packed together
//! archive/<stanza>/archive.info(.copy)
//! archive/<stanza>/<archive id>/<timeline history file>-<checksum><ext>
//! archive/<stanza>/<archive id>/<first 16 of the name>/<WAL file>-<checksum><ext>
//! ```
//!
//! Directories are returned without a trailing `/`; [`under`] makes the prefix that lists or
//! deletes what is inside one (a bare `backup/main` would match `backup/main2/` too).

use std::path::{Path, PathBuf};

/// Suffix of the second copy of every critical metadata file.
pub const COPY_SUFFIX: &str = ".copy";
/// File name of a backup's manifest.
pub const MANIFEST_FILE: &str = "backup.manifest";
/// File name of the manifest of a backup still running (or interrupted): what it stored so far,
/// so that the next backup can resume it.
pub const INPROGRESS_FILE: &str = "backup.manifest.inprogress";
/// File name of the stanza's claim in the repository (see [`crate::claim`]).
pub const CLAIM_FILE: &str = "backup.lock";
/// Top directory of every stanza's backups.
const BACKUP_ROOT: &str = "backup";
/// Top directory of every stanza's WAL archive.
const ARCHIVE_ROOT: &str = "archive";

/// The prefix of every key inside directory `dir`.
pub fn under(dir: &str) -> String {
    format!("{dir}/")
}

/// The prefix under which each stanza has its backup directory (listed to find the stanzas).
pub fn stanzas() -> String {
    under(BACKUP_ROOT)
}

/// The last segment of a directory key as listings return it (`backup/main/<label>/`).
pub fn last_segment(dir: &str) -> &str {
    dir.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// `path`'s second copy.
pub fn copy_of(path: &str) -> String {
    format!("{path}{COPY_SUFFIX}")
}

/// `backup/<stanza>`: the stanza's backups, its backup.info and its claim.
pub fn stanza_backup_dir(stanza: &str) -> String {
    format!("{BACKUP_ROOT}/{stanza}")
}

/// `archive/<stanza>`: the stanza's WAL archive and its archive.info.
pub fn stanza_archive_dir(stanza: &str) -> String {
    format!("{ARCHIVE_ROOT}/{stanza}")
}

/// The directory of backup `label` inside `stanza_dir` (a [`stanza_backup_dir`]).
pub fn label_dir(stanza_dir: &str, label: &str) -> String {
    format!("{stanza_dir}/{label}")
}

/// `backup/<stanza>/<label>`.
pub fn backup_dir(stanza: &str, label: &str) -> String {
    label_dir(&stanza_backup_dir(stanza), label)
}

/// The committed manifest in the backup directory `backup_dir`.
pub fn manifest(backup_dir: &str) -> String {
    format!("{backup_dir}/{MANIFEST_FILE}")
}

/// The in-progress manifest in the backup directory `backup_dir`.
pub fn inprogress(backup_dir: &str) -> String {
    format!("{backup_dir}/{INPROGRESS_FILE}")
}

/// A file stored whole.
pub fn whole(backup_dir: &str, target: &str, name: &str, ext: &str) -> String {
    format!("{backup_dir}/{target}/{name}{ext}")
}

/// A block-mapped file's blocks stored by one backup.
pub fn blocks(backup_dir: &str, target: &str, name: &str) -> String {
    format!("{backup_dir}/{target}/{name}.blk")
}

/// A bundle of small files.
pub fn bundle(backup_dir: &str, id: u64) -> String {
    format!("{backup_dir}/bundle/{id}")
}

/// `backup/<stanza>/backup.info`.
pub fn backup_info(stanza: &str) -> String {
    format!("{}/backup.info", stanza_backup_dir(stanza))
}

/// `archive/<stanza>/archive.info`.
pub fn archive_info(stanza: &str) -> String {
    format!("{}/archive.info", stanza_archive_dir(stanza))
}

/// `backup/<stanza>/backup.lock`: the stanza's claim, held by the `backup`, `expire` or stanza
/// command that runs on it (on any host).
pub fn claim(stanza: &str) -> String {
    format!("{}/{CLAIM_FILE}", stanza_backup_dir(stanza))
}

/// `backup/<stanza>/backup.lock.<id>`: the marker of the takeover of the stale claim `id`.
pub fn claim_takeover(stanza: &str, id: &str) -> String {
    format!("{}.{id}", claim(stanza))
}

/// `archive/<stanza>/<archive id>`: the WAL of one database of the stanza's history.
pub fn archive_id_dir(stanza: &str, archive_id: &str) -> String {
    format!("{}/{archive_id}", stanza_archive_dir(stanza))
}

/// The directory WAL file `name` lives in under `archive_id_dir`: timeline history files at its
/// top, the others under the first 16 characters of their name (timeline and log number).
pub fn wal_dir(archive_id_dir: &str, name: &str, is_history: bool) -> String {
    match name.get(..16) {
        Some(log) if !is_history => format!("{archive_id_dir}/{log}"),
        _ => archive_id_dir.to_string(),
    }
}

/// A WAL file stored in `wal_dir`: its name, its checksum, the codec's extension.
pub fn wal_object(
    wal_dir: &str,
    name: &str,
    checksum: &dyn std::fmt::Display,
    ext: &str,
) -> String {
    format!("{wal_dir}/{name}-{checksum}{ext}")
}

/// Where a WAL file is written before its checksum (and so its name) is known.
pub fn wal_pending(wal_dir: &str, name: &str) -> String {
    format!("{wal_dir}/{name}.pending")
}

/// Ends the name of a stanza's local lock file.
const LOCK_SUFFIX: &str = ".lock";

/// The local lock file of `stanza` in `lock_path`.
pub fn lock_file(lock_path: &Path, stanza: &str) -> PathBuf {
    lock_path.join(format!("{stanza}{LOCK_SUFFIX}"))
}

/// Where `archive-push` leaves its last failure for `check` and `backup` to show (removed when a
/// push succeeds): PostgreSQL keeps the error only in its log.
pub fn push_error_file(lock_path: &Path, stanza: &str) -> PathBuf {
    lock_path.join(format!("{stanza}.archive-push.error"))
}

/// The stanza whose local lock file is named `file_name`, if it is one.
pub fn stanza_of_lock_file(file_name: &str) -> Option<&str> {
    file_name.strip_suffix(LOCK_SUFFIX)
}

/// The spool file that reports WAL file `name` pushed.
pub fn spool_ok(name: &str) -> String {
    format!("{name}.ok")
}

/// The spool file that reports why pushing WAL file `name` failed.
pub fn spool_error(name: &str) -> String {
    format!("{name}.error")
}
