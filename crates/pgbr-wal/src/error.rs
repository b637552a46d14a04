//! The error type of this crate.

/// Everything that can go wrong while reading PostgreSQL's WAL, control-file and label formats.
///
/// Every variant names the thing that was being read and, where there is one, the value that
/// was expected next to the value that was found, so that the message can be shown to a DBA
/// as is.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A string that should have been an LSN (`16/B374D848`) was not.
    #[error("invalid LSN {input:?}: expected two hexadecimal numbers of at most 8 digits separated by '/', e.g. 16/B374D848")]
    InvalidLsn {
        /// The text that failed to parse.
        input: String,
    },

    /// A WAL segment size that PostgreSQL does not allow.
    #[error(
        "invalid WAL segment size {size} bytes: it must be a power of two between 1 MiB and 1 GiB"
    )]
    InvalidSegmentSize {
        /// The size that was given.
        size: u64,
    },

    /// A name that should have been a WAL segment name was not.
    #[error("invalid WAL segment name {name:?}: {reason}")]
    InvalidSegmentName {
        /// The name that failed to parse.
        name: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The input ended before the structure being read was complete.
    #[error("{what} is truncated: it needs at least {needed} bytes but only {found} are present")]
    TooShort {
        /// What was being read (e.g. "WAL page header", "pg_control").
        what: &'static str,
        /// How many bytes are needed.
        needed: usize,
        /// How many bytes were available.
        found: usize,
    },

    /// The first page of a WAL file does not carry the long page header every segment starts with.
    #[error("WAL file does not start with a long page header (xlp_info is {info:#06X}, the XLP_LONG_HEADER flag {flag:#06X} is not set): this is not the start of a WAL segment")]
    NotLongHeader {
        /// The `xlp_info` field that was found.
        info: u16,
        /// The flag that was expected in it.
        flag: u16,
    },

    /// The WAL page magic does not belong to any PostgreSQL version this crate knows.
    #[error("WAL page magic {magic:#06X} does not match any supported PostgreSQL version ({} to {}): the file is not WAL, or was written by an unsupported version", crate::PG_MAJORS.start(), crate::PG_MAJORS.end())]
    UnknownWalMagic {
        /// The magic number that was found.
        magic: u16,
    },

    /// The WAL was written by a different PostgreSQL major version than expected.
    #[error("WAL segment was written by PostgreSQL {found} (page magic {magic:#06X}); the stanza is for PostgreSQL {expected}")]
    WalVersionMismatch {
        /// The major version the stanza expects.
        expected: u32,
        /// The major version the WAL page magic stands for.
        found: u32,
        /// The page magic that was read.
        magic: u16,
    },

    /// The WAL belongs to a different database system (cluster).
    #[error("WAL segment belongs to database system {found}; the stanza is for {expected}")]
    SystemIdMismatch {
        /// The system identifier the stanza expects.
        expected: u64,
        /// The system identifier in the WAL segment header.
        found: u64,
    },

    /// The size of a WAL file disagrees with the segment size recorded in its header.
    #[error("WAL segment is {found} bytes long but its header says segments are {expected} bytes")]
    SegmentSizeMismatch {
        /// The segment size from the header.
        expected: u64,
        /// The actual length of the file.
        found: u64,
    },

    /// A header field holds a value that cannot be right.
    #[error("{what} has an invalid {field}: found {found}, expected {expected}")]
    InvalidField {
        /// The structure being read.
        what: &'static str,
        /// The field that is wrong.
        field: &'static str,
        /// What was expected (a value or a description of allowed values).
        expected: String,
        /// What was found.
        found: String,
    },

    /// The CRC of `pg_control` does not match its contents.
    #[error("pg_control checksum mismatch: the file stores CRC {stored:#010X} but its contents give {computed:#010X}; the file is corrupt or was written by an unsupported platform")]
    ControlCrcMismatch {
        /// The CRC stored in the file.
        stored: u32,
        /// The CRC computed over the file.
        computed: u32,
    },

    /// `pg_control` is in a format this crate does not know.
    #[error("unsupported pg_control version {found}: supported versions are 1201 (PostgreSQL 12), 1300 (PostgreSQL 13 to 16), 1700 (PostgreSQL 17) and 1800 (PostgreSQL 18)")]
    UnsupportedControlVersion {
        /// The `pg_control_version` that was found.
        found: u32,
    },

    /// A timeline history file could not be parsed.
    #[error("invalid timeline history for timeline {timeline}, line {line}: {reason}")]
    InvalidHistory {
        /// The timeline whose history was being read.
        timeline: u32,
        /// The 1-based line number of the problem (0 for the file as a whole).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A `backup_label` could not be parsed.
    #[error("invalid backup_label: {reason}")]
    InvalidBackupLabel {
        /// What is wrong with it.
        reason: String,
    },

    /// A required line is missing from a `backup_label`.
    #[error("invalid backup_label: the required line {field:?} is missing")]
    MissingBackupLabelField {
        /// The key of the missing line, e.g. `START WAL LOCATION`.
        field: &'static str,
    },
}
