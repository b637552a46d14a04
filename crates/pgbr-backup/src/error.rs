//! The engine's one error type. Every message names the thing it is about (option, file, stanza,
//! repository) and, where there is one, what to do.

use std::path::PathBuf;

use crate::options::Command;

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
    /// A command over several repositories failed in some of them (`archive-push` to each,
    /// `archive-get` from the first that answers): what it means, and each repository's error.
    #[error("{summary}: {}", each_failure(failures))]
    InRepositories {
        /// What the failures mean for the command as a whole.
        summary: String,
        /// (repository, its error), in repository order; never empty.
        failures: Vec<(String, Error)>,
    },
}

impl Error {
    /// The error of a command over `repositories` repositories that failed in `failures` (never
    /// empty): with one repository and one failure, that error as it is; otherwise
    /// [`Error::InRepositories`] with `summary`.
    pub(crate) fn in_repositories(
        mut failures: Vec<(String, Error)>,
        repositories: usize,
        summary: impl FnOnce() -> String,
    ) -> Error {
        if repositories == 1 && failures.len() == 1 {
            if let Some((_, e)) = failures.pop() {
                return e;
            }
        }
        Error::InRepositories {
            summary: summary(),
            failures,
        }
    }
}

/// `repo1: why; repo2: why`.
pub(crate) fn each_failure(failures: &[(String, Error)]) -> String {
    let each: Vec<String> = failures.iter().map(|(r, e)| format!("{r}: {e}")).collect();
    each.join("; ")
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
        i32::from(self.code())
    }

    /// The exit code of `command` failing with this error: [`exit::ARCHIVE_GET_FAILED`] for
    /// `archive-get` (whatever the cause, so that recovery stops rather than take a broken
    /// repository for the end of the archive), [`exit::VERIFY_FAILED`] for `verify` finding
    /// corrupt data it cannot even list in a report (both copies of an info file bad), else
    /// [`Error::exit_code`].
    pub fn exit_code_for(&self, command: Command) -> u8 {
        match command {
            Command::ArchiveGet => exit::ARCHIVE_GET_FAILED,
            Command::Verify if self.code() == exit::CORRUPT => exit::VERIFY_FAILED,
            _ => self.code(),
        }
    }

    fn code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::CONFIG,
            Error::StanzaMissing { .. } => exit::STANZA_MISSING,
            Error::ClusterMismatch(_) => exit::ANOTHER_CLUSTER,
            // WAL of another system or PostgreSQL version is another cluster's, not damage.
            Error::Wal {
                source:
                    pgbr_wal::Error::SystemIdMismatch { .. }
                    | pgbr_wal::Error::WalVersionMismatch { .. },
                ..
            } => exit::ANOTHER_CLUSTER,
            Error::WrongPassphrase { .. } | Error::Crypto { .. } => exit::CIPHER,
            Error::Corrupt(_) | Error::Manifest { .. } | Error::Wal { .. } => exit::CORRUPT,
            Error::ArchiveDuplicate(_) => exit::ARCHIVE_DUPLICATE,
            Error::ArchiveTimeout(_) => exit::ARCHIVE_TIMEOUT,
            Error::RestoreTarget(_) | Error::BackupMissing(_) => exit::REFUSED,
            Error::Postgres { .. } => exit::POSTGRES,
            Error::Io { .. } | Error::Storage(_) => exit::IO,
            Error::Internal(_) => exit::INTERNAL,
            Error::Locked(_) => exit::LOCKED,
            Error::Stopped(_) => exit::STOPPED,
            Error::InRepositories { failures, .. } => {
                failures.first().map_or(exit::INTERNAL, |(_, e)| e.code())
            }
        }
    }
}

/// The exit codes of the `pgbr` command line, each documented in the README's "Exit codes"
/// table. This module is the one place that says which number means what: the CLI takes every
/// code from here, through [`Error::exit_code_for`] or these constants.
pub mod exit {
    /// Success.
    pub const SUCCESS: u8 = 0;
    /// `archive-get`: the file is not in the archive (PostgreSQL then ends recovery, or waits).
    pub const ARCHIVE_GET_NOT_FOUND: u8 = 1;
    /// A missing, unknown or invalid option, or a bad command line.
    pub const CONFIG: u8 = 2;
    /// The stanza does not exist in the repository.
    pub const STANZA_MISSING: u8 = 3;
    /// The cluster (or its WAL) is not the one the stanza was created for.
    pub const ANOTHER_CLUSTER: u8 = 4;
    /// Wrong passphrase, or an encryption error.
    pub const CIPHER: u8 = 5;
    /// Corrupt data: a file or object failed its checksum, or does not parse.
    pub const CORRUPT: u8 = 6;
    /// The WAL file is already archived with different contents.
    pub const ARCHIVE_DUPLICATE: u8 = 7;
    /// WAL did not reach the archive (or the standby did not replay it) in time.
    pub const ARCHIVE_TIMEOUT: u8 = 8;
    /// The restore target, or the backup set asked for, is refused.
    pub const REFUSED: u8 = 9;
    /// PostgreSQL refused, or could not be reached.
    pub const POSTGRES: u8 = 10;
    /// Local I/O or repository storage failed.
    pub const IO: u8 = 11;
    /// Internal error (a bug).
    pub const INTERNAL: u8 = 12;
    /// Another pgbr process holds the stanza's lock.
    pub const LOCKED: u8 = 13;
    /// `verify` found problems.
    pub const VERIFY_FAILED: u8 = 14;
    /// The stanza is stopped (`pgbr stop`), or `stanza-delete` of a stanza that is not.
    pub const STOPPED: u8 = 15;
    /// `archive-get` failed for any reason but "not found": above 125, so that PostgreSQL
    /// stops recovery instead of taking a broken repository for the end of the archive.
    pub const ARCHIVE_GET_FAILED: u8 = 126;
}

/// Shorthand for the engine's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Internal errors cannot be caused from outside (they are bugs, or a runtime that does
    /// not start): their mapping is tested here, the others against the binary
    /// (`crates/pgbr-cli/tests/exit_codes.rs`).
    #[test]
    fn internal_errors_exit_12_whatever_the_command_but_archive_get() {
        let e = Error::Internal("a worker panicked".into());
        assert_eq!(e.exit_code(), 12);
        assert_eq!(e.exit_code_for(Command::Backup), exit::INTERNAL);
        assert_eq!(e.exit_code_for(Command::Verify), exit::INTERNAL);
        assert_eq!(e.exit_code_for(Command::ArchiveGet), 126);
    }

    #[test]
    fn corrupt_data_is_a_verify_finding() {
        let e = Error::Corrupt("backup.info and its copy are damaged".into());
        assert_eq!(e.exit_code_for(Command::Info), exit::CORRUPT);
        assert_eq!(e.exit_code_for(Command::Verify), exit::VERIFY_FAILED);
    }

    #[test]
    fn wal_of_another_system_or_version_is_another_cluster() {
        let wal = |source| Error::Wal {
            context: "pg_wal/000000010000000000000001".into(),
            source,
        };
        let other = wal(pgbr_wal::Error::SystemIdMismatch {
            expected: 1,
            found: 2,
        });
        assert_eq!(other.exit_code(), 4);
        let version = wal(pgbr_wal::Error::WalVersionMismatch {
            expected: 15,
            found: 16,
            magic: 0xD113,
        });
        assert_eq!(version.exit_code(), 4);
        let garbage = wal(pgbr_wal::Error::UnknownWalMagic { magic: 0 });
        assert_eq!(garbage.exit_code(), 6);
    }
}
