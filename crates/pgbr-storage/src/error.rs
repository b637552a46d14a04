//! The crate's error type.

use std::io;

/// Errors of this crate. Every message names the object key or file path it is about.
///
/// Messages never contain credentials: they carry object keys, file paths, storage
/// descriptions (such as `posix:/var/lib/pgbr`) and the underlying error.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The object (or file) does not exist.
    #[error("'{path}' not found")]
    NotFound {
        /// Key of the missing object.
        path: String,
    },
    /// The object store failed.
    #[error("storage error on '{path}': {source}")]
    Store {
        /// Key (or prefix) the request was about.
        path: String,
        /// The underlying object store error.
        source: object_store::Error,
    },
    /// A local file system operation failed.
    #[error("I/O error on '{path}': {source}")]
    Io {
        /// File or directory the operation was about.
        path: String,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The key is not a valid relative object key.
    #[error("invalid object key '{path}': {reason}")]
    InvalidPath {
        /// The rejected key.
        path: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An [`ObjectWriter`](crate::ObjectWriter) was used after it failed or was closed.
    #[error("writer for '{path}' is closed (an earlier write failed or it was finished)")]
    WriterClosed {
        /// Key of the object being written.
        path: String,
    },
    /// Stored bytes did not decode.
    #[error("corrupt data in '{path}': {source}")]
    Corrupt {
        /// Key or file whose bytes failed to decode.
        path: String,
        /// The decoding error.
        source: io::Error,
    },
    /// A storage configuration is invalid (names the storage, never a credential).
    #[error("invalid configuration of storage '{storage}': {message}")]
    Config {
        /// Description of the storage, such as `s3:bucket/pgbr`.
        storage: String,
        /// What is wrong.
        message: String,
    },
    /// A background task (blocking file work) failed to run.
    #[error("background task for '{path}' failed: {message}")]
    Task {
        /// Key or file the task worked on.
        path: String,
        /// What went wrong (panic or cancellation).
        message: String,
    },
}

impl Error {
    /// Builds the error for an object store failure on `path`, mapping "not found".
    ///
    /// A missing bucket or container is *not* "not found": object stores answer 404 for
    /// both, but only a missing object may read as "absent" (archive-get relies on it).
    pub(crate) fn store(path: &str, source: object_store::Error) -> Error {
        match source {
            object_store::Error::NotFound { .. } if missing_bucket(&source) => Error::Store {
                path: path.to_string(),
                source,
            },
            object_store::Error::NotFound { .. } => Error::NotFound {
                path: path.to_string(),
            },
            source => Error::Store {
                path: path.to_string(),
                source,
            },
        }
    }

    /// Builds an I/O error naming a local path.
    pub(crate) fn io(path: &std::path::Path, source: io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// True if this error means "the object does not exist".
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound { .. } => true,
            Error::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// Whether an object store error means "this object (or prefix) is absent".
pub(crate) fn is_absent(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. }) && !missing_bucket(err)
}

/// Whether a "not found" error is about the bucket or container rather than the object
/// (S3's and GCS's `NoSuchBucket`, Azure's `ContainerNotFound`).
fn missing_bucket(err: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        let text = e.to_string();
        if text.contains("NoSuchBucket") || text.contains("ContainerNotFound") {
            return true;
        }
        source = e.source();
    }
    false
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match &err {
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::Io { source, .. } => source.kind(),
            Error::Corrupt { .. } => io::ErrorKind::InvalidData,
            Error::InvalidPath { .. } | Error::Config { .. } => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}
