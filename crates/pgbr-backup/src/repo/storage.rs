//! The storage behind a repository, and the twice-written info files on it.

use bytes::Bytes;
use pgbr_storage::Storage;

use crate::config::{CloudOptions, RepoOptions, RepoType};
use crate::error::{Error, Result};
use crate::layout;

/// Opens the storage behind `opts` (creating a posix repository's directory if needed).
pub fn open_storage(opts: &RepoOptions) -> Result<Storage> {
    match opts.repo_type {
        RepoType::Posix => {
            if !opts.path.starts_with('/') {
                return Err(Error::config(format!(
                    "option '{}-path' must be an absolute path, not '{}'",
                    opts.name(),
                    opts.path
                )));
            }
            Ok(Storage::local(std::path::Path::new(&opts.path))?)
        }
        RepoType::S3 | RepoType::Azure | RepoType::Gcs => {
            let cloud = opts.cloud.as_ref().ok_or_else(|| {
                Error::config(format!(
                    "{}: '{}-type' is {} but no object store options were given",
                    opts.name(),
                    opts.name(),
                    opts.repo_type
                ))
            })?;
            open_cloud(cloud).map_err(|e| match e {
                // A bad setting is a configuration error (exit 2); the message names the
                // storage, never a credential.
                pgbr_storage::Error::Config { .. } => {
                    Error::config(format!("{}: {e}", opts.name()))
                }
                e => Error::Storage(e),
            })
        }
    }
}

fn open_cloud(cloud: &CloudOptions) -> std::result::Result<Storage, pgbr_storage::Error> {
    #[cfg(feature = "failpoints")]
    if let Some(c) = test_fault_connector() {
        // Failpoints (test builds only): injected 503s, through the storage's own retry layer.
        return match cloud {
            CloudOptions::S3(o) => Storage::s3_with_http_connector(o, c),
            CloudOptions::Azure(o) => Storage::azure_with_http_connector(o, c),
            CloudOptions::Gcs(o) => Storage::gcs_with_http_connector(o, c),
        };
    }
    match cloud {
        CloudOptions::S3(o) => Storage::s3(o),
        CloudOptions::Azure(o) => Storage::azure(o),
        CloudOptions::Gcs(o) => Storage::gcs(o),
    }
}

/// The fault injection of the tests (failpoints, see [`crate::failpoints`]):
/// `storage::http-fail-first=return(K)` fails the first `K` HTTP requests of every method
/// (transient: the retries absorb it); `storage::http-fail-after=return(N)` fails every `PUT`
/// after the first `N` (permanent: the retries exhaust).
#[cfg(feature = "failpoints")]
fn test_fault_connector() -> Option<pgbr_storage::FaultyHttpConnector> {
    let (first, after) = (
        crate::failpoints::number("storage::http-fail-first"),
        crate::failpoints::number("storage::http-fail-after"),
    );
    if first.is_none() && after.is_none() {
        return None;
    }
    let c = pgbr_storage::FaultyHttpConnector::new().fail_first(first.unwrap_or(0));
    Some(match after {
        Some(n) => c.fail_after("PUT", n),
        None => c,
    })
}

/// Describes a repository for messages: `repo1 (posix:/var/lib/pgbr)`.
pub(crate) fn describe(opts: &RepoOptions, storage: &Storage) -> String {
    format!("{} ({})", opts.name(), storage.description())
}

/// Reads `path`, falling back to `path.copy`; `parse` decides whether a copy verifies.
/// `Ok(None)` when neither exists; an error when copies exist but none verifies.
pub(crate) async fn load_twice<T>(
    storage: &Storage,
    path: &str,
    mut parse: impl FnMut(&[u8]) -> Result<T>,
) -> Result<Option<T>> {
    let mut first_error = None;
    let mut found_any = false;
    for candidate in [path.to_string(), layout::copy_of(path)] {
        match storage.get_opt(&candidate).await? {
            None => continue,
            Some(bytes) => {
                found_any = true;
                match parse(&bytes) {
                    Ok(v) => return Ok(Some(v)),
                    Err(e) => {
                        if first_error.is_none() {
                            first_error = Some(e);
                        }
                    }
                }
            }
        }
    }
    match first_error {
        Some(e) if found_any => Err(e),
        _ => Ok(None),
    }
}

/// Writes `path` and then `path.copy`.
pub(crate) async fn save_twice(storage: &Storage, path: &str, bytes: Vec<u8>) -> Result<()> {
    let bytes = Bytes::from(bytes);
    storage.put(path, bytes.clone()).await?;
    crate::failpoints::crash_point!("repo::before-copy");
    storage.put(&layout::copy_of(path), bytes).await?;
    Ok(())
}
