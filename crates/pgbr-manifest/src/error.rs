//! The crate's one error type.

/// Everything that can go wrong reading, writing or validating pgbr metadata.
///
/// Every variant names the thing it is about (the file name, label, target or
/// field) so that the message alone tells a DBA what to look at.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not valid JSON, or do not have the expected shape.
    #[error("pgbr metadata is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),

    /// The stream the metadata is read from failed (a decompressor that found corrupt input).
    #[error("cannot read pgbr metadata: {0}")]
    Read(#[source] std::io::Error),

    /// The file was written in a format version this build does not read.
    #[error(
        "unsupported metadata format version {found} (this pgbr reads version {supported}); \
         a newer pgbr probably wrote it"
    )]
    UnsupportedFormat {
        /// The version found in the file.
        found: u64,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// The self-checksum does not match the content: the file is corrupt or was edited.
    #[error("metadata checksum mismatch: file says {expected}, content hashes to {found} (file is corrupt or was edited)")]
    ChecksumMismatch {
        /// The checksum recorded in the file.
        expected: String,
        /// The checksum computed from the content.
        found: String,
    },

    /// A path, file or link name that could escape its target directory.
    #[error("unsafe name {name:?}: {reason}")]
    UnsafeName {
        /// The offending name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A target (pg_data or tablespace) whose name or path is not acceptable.
    #[error("bad target {name:?}: {reason}")]
    BadTarget {
        /// The target name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// An entry refers to a target the manifest does not list.
    #[error("entry refers to unknown target {name:?}")]
    UnknownTarget {
        /// The unknown target name.
        name: String,
    },

    /// The same name appears twice in one target (as file, path or link).
    #[error("duplicate entry {name:?} in target {target:?}")]
    Duplicate {
        /// The target holding the duplicate.
        target: String,
        /// The duplicated name.
        name: String,
    },

    /// An entry lies below a file or a symbolic link of the same target, so
    /// restoring it would write through that link or clash with that file.
    #[error("entry {name:?} in target {target:?} lies below {parent:?}, which is not a directory")]
    NotADirectory {
        /// The target.
        target: String,
        /// The entry name.
        name: String,
        /// The ancestor that is a file or a link.
        parent: String,
    },

    /// A backup label that is not `YYYYMMDD-HHMMSSF` or `<full>_YYYYMMDD-HHMMSSD|I`.
    #[error(
        "invalid backup label {label:?} (expected YYYYMMDD-HHMMSSF or <full>_YYYYMMDD-HHMMSSD|I)"
    )]
    BadLabel {
        /// The offending label.
        label: String,
    },

    /// A file or block refers to a backup that is not in the manifest's `references`.
    #[error("entry {name:?} in target {target:?} references backup {reference:?}, which is not listed in the manifest's references")]
    UnknownReference {
        /// The target of the entry.
        target: String,
        /// The entry name.
        name: String,
        /// The referenced backup label.
        reference: String,
    },

    /// A backup refers to a database id that is not in the stanza's history.
    #[error(
        "backup {label} refers to db-id {db_id}, which is not in the stanza's database history"
    )]
    UnknownDb {
        /// The backup label.
        label: String,
        /// The unknown database id.
        db_id: u32,
    },

    /// An info file of another kind was given (e.g. archive.info read as backup.info).
    #[error("wrong metadata kind: expected {expected}, found {found}")]
    WrongKind {
        /// The kind the caller asked for.
        expected: String,
        /// The kind recorded in the file.
        found: String,
    },

    /// Any other inconsistency; `what` names the field or entry, `reason` says what is wrong.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field or entry concerned.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
