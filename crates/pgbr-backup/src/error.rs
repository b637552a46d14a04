//! The engine's one error type. Every message names the thing it is about (option, file, stanza,
//! repository) and, where there is one, what to do.

use std::path::PathBuf;

/// Everything a pgbr command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A missing, unknown or invalid option.
    #[error("{0}")]
    Config(String),
    /// The stanza has not been created in this repository.
    #[error("stanza '{stanza}' does not exist in {repo}: run 'pgbr --stanza={stanza} stanza-create' first")]
    StanzaMissing {
        /// The stanza.
        stanza: String,
        /// The repository (`repo1 (posix:/var/lib/pgbr)`).
        repo: String,
    },
    /// The cluster is not the one the stanza was created for.
    #[error("{0}")]
    ClusterMismatch(String),
    /// The repository's passphrase did not unlock its key.
    #[error("{repo}: the repository passphrase (repo{index}-cipher-pass) is wrong: it does not unlock the stanza's key")]
    WrongPassphrase {
        /// The repository.
        repo: String,
        /// Its index.
        index: u32,
    },
    /// A file or object failed its checksum or authentication.
    #[error("{0}")]
    Corrupt(String),
    /// A WAL file is already archived with different contents.
    #[error("{0}")]
    ArchiveDuplicate(String),
    /// The WAL a backup needs did not reach the archive in time.
    #[error("{0}")]
    ArchiveTimeout(String),
    /// The restore target is not usable (not empty, a running cluster, ...).
    #[error("{0}")]
    RestoreTarget(String),
    /// No backup matches the request.
    #[error("{0}")]
    BackupMissing(String),
    /// PostgreSQL refused or could not be reached.
    #[error("{context}: {message}")]
    Postgres {
        /// What pgbr was doing.
        context: String,
        /// PostgreSQL's or the client's message.
        message: String,
    },
    /// Local file I/O failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What pgbr was doing (e.g. "unable to read").
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The repository storage failed.
    #[error(transparent)]
    Storage(#[from] pgbr_storage::Error),
    /// A manifest or info file is invalid.
    #[error("{context}: {source}")]
    Manifest {
        /// Which file.
        context: String,
        /// The cause.
        source: pgbr_manifest::Error,
    },
    /// A WAL or control file is invalid.
    #[error("{context}: {source}")]
    Wal {
        /// Which file.
        context: String,
        /// The cause.
        source: pgbr_wal::Error,
    },
    /// Encryption failed.
    #[error("{context}: {source}")]
    Crypto {
        /// Which object.
        context: String,
        /// The cause.
        source: pgbr_crypto::Error,
    },
    /// A background task failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
    /// Another pgbr process holds the stanza's lock.
    #[error("{0}")]
    Locked(String),
    /// The stanza (or every stanza) is stopped by `pgbr stop`, or `stanza-delete` was asked for a
    /// stanza that is not stopped.
    #[error("{0}")]
    Stopped(String),
}

impl Error {
    pub(crate) fn config(message: String) -> Error {
        Error::Config(message)
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn pg(context: impl Into<String>, err: tokio_postgres::Error) -> Error {
        let message = match err.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => {
                let mut m = err.to_string();
                let mut src = std::error::Error::source(&err);
                while let Some(s) = src {
                    m.push_str(": ");
                    m.push_str(&s.to_string());
                    src = s.source();
                }
                m
            }
        };
        Error::Postgres {
            context: context.into(),
            message,
        }
    }

    /// The process exit code the CLI uses for this error (documented in the README).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => 2,
            Error::StanzaMissing { .. } => 3,
            Error::ClusterMismatch(_) => 4,
            Error::WrongPassphrase { .. } | Error::Crypto { .. } => 5,
            Error::Corrupt(_) | Error::Manifest { .. } | Error::Wal { .. } => 6,
            Error::ArchiveDuplicate(_) => 7,
            Error::ArchiveTimeout(_) => 8,
            Error::RestoreTarget(_) | Error::BackupMissing(_) => 9,
            Error::Postgres { .. } => 10,
            Error::Io { .. } | Error::Storage(_) => 11,
            Error::Internal(_) => 12,
            Error::Locked(_) => 13,
            Error::Stopped(_) => 15,
        }
    }
}

/// Shorthand for the engine's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
