//! What `verify` reports: counts of what it read, and each problem with the object it is in.

use serde::Serialize;

/// One bad (or noteworthy) object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object (repository path), or for a WAL gap the first missing segment's name.
    pub object: String,
    /// What is wrong.
    pub message: String,
}

/// What `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The stanza.
    pub stanza: String,
    /// The repository.
    pub repo: String,
    /// `true` when no problem was found.
    pub ok: bool,
    /// Info files and copies read.
    pub info_files_checked: u64,
    /// Backups whose manifest was read.
    pub backups_checked: u64,
    /// Backup files read and checked.
    pub files_checked: u64,
    /// Archived WAL files read and checked.
    pub wal_checked: u64,
    /// Stored bytes read.
    pub bytes_read: u64,
    /// Everything wrong; each names its object.
    pub errors: Vec<Problem>,
    /// Not wrong, but worth knowing (an interrupted backup, a backup missing from backup.info).
    pub notes: Vec<Problem>,
}

impl VerifyReport {
    pub(super) fn error(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem {
            object: object.into(),
            message: message.into(),
        });
    }
    pub(super) fn note(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.notes.push(Problem {
            object: object.into(),
            message: message.into(),
        });
    }
}
