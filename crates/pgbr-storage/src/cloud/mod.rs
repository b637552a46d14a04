//! [`Storage`] constructors for S3, Azure Blob and GCS, configured with pgBackRest's option
//! vocabulary (`repo1-s3-bucket`, `repo1-s3-key-secret`, `repo1-azure-key-type`, ...).
//!
//! Every cloud storage:
//!
//! * is rooted at its `prefix` (the repository path inside the bucket or container) through
//!   `object_store`'s [`PrefixStore`], so [`Storage`] keys are relative to it;
//! * retries transient failures (5xx, 429, 408, connection errors, timeouts of idempotent
//!   requests) with exponential backoff and jitter: at most [`MAX_RETRIES`] retries, none
//!   started after [`RETRY_TIMEOUT`];
//! * is described as `s3:<bucket>/<prefix>`, `azure:<account>/<container>/<prefix>` or
//!   `gcs:<bucket>/<prefix>`: descriptions, `Debug` output of the options and errors carry no
//!   keys, secrets or tokens.
//!
//! Each backend's options and builder are in a file of their own (`s3`, `azure`, `gcs`); this
//! module holds what they share.
//!
//! Credentials travel only as request signatures or headers; `object_store` drops the URL
//! from error messages of requests whose URL carries a secret (Azure SAS tokens).

use std::path::Path as FsPath;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::client::HttpConnector;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, Certificate, ClientOptions, ObjectStore, RetryConfig};

use crate::{Error, Storage};

mod azure;
mod gcs;
mod s3;
#[cfg(test)]
mod tests;

use azure::azure_with;
pub use azure::{AzureKeyType, AzureOptions};
use gcs::gcs_with;
pub use gcs::{GcsKeyType, GcsOptions};
use s3::s3_with;
pub use s3::S3Options;

/// Retries of one request after its first attempt.
pub const MAX_RETRIES: usize = 5;
/// No retry starts later than this after the first attempt of a request.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(120);
/// Time limit of one HTTP request (pgBackRest's `io-timeout` default).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit to establish a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const REDACTED: &str = "<redacted>";

/// How S3 requests address the bucket (`repo1-s3-uri-style`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UriStyle {
    /// `https://<bucket>.<endpoint>/<key>` (virtual-hosted style, the default).
    #[default]
    Host,
    /// `https://<endpoint>/<bucket>/<key>`.
    Path,
}

/// An option value that is not one of the accepted words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid value '{value}' (expected one of: {expected})")]
pub struct ParseOptionError {
    value: String,
    expected: &'static str,
}

fn parse_word<T: Copy>(
    s: &str,
    table: &[(&str, T)],
    expected: &'static str,
) -> Result<T, ParseOptionError> {
    table
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(s))
        .map(|(_, v)| *v)
        .ok_or_else(|| ParseOptionError {
            value: s.to_string(),
            expected,
        })
}

impl FromStr for UriStyle {
    type Err = ParseOptionError;
    /// `host` or `path`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(
            s,
            &[("host", UriStyle::Host), ("path", UriStyle::Path)],
            "host, path",
        )
    }
}

fn redact<T>(v: &Option<T>) -> Option<&'static str> {
    v.as_ref().map(|_| REDACTED)
}

/// The retry policy of every cloud storage.
pub(crate) fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    }
}

fn config_error(storage: &str, message: impl Into<String>) -> Error {
    Error::Config {
        storage: storage.to_string(),
        message: message.into(),
    }
}

fn build_error(storage: &str, source: object_store::Error) -> Error {
    Error::Store {
        path: storage.to_string(),
        source,
    }
}

/// Normalizes a repository prefix: `/`, `` → root; `/pgbr/` → `pgbr`.
fn normalize_prefix(storage: &str, prefix: &str) -> Result<Path, Error> {
    let trimmed = prefix.trim_matches('/');
    if trimmed
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
        && !trimmed.is_empty()
    {
        return Err(config_error(
            storage,
            format!("invalid repository path '{prefix}': empty, '.' or '..' segment"),
        ));
    }
    Path::parse(trimmed)
        .map_err(|e| config_error(storage, format!("invalid repository path '{prefix}': {e}")))
}

fn check_name(storage: &str, what: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.contains('/') {
        return Err(config_error(
            storage,
            format!("{what} must be a non-empty name without '/'"),
        ));
    }
    Ok(())
}

/// Client options shared by the backends: timeouts, plain HTTP for `http://` endpoints,
/// TLS verification and extra root certificates.
fn client_options(
    storage: &str,
    endpoint: Option<&str>,
    verify_tls: bool,
    ca_file: Option<&FsPath>,
) -> Result<ClientOptions, Error> {
    let mut opts = ClientOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT);
    if endpoint.is_some_and(|e| {
        e.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    }) {
        opts = opts.with_allow_http(true);
    }
    if !verify_tls {
        opts = opts.with_allow_invalid_certificates(true);
    }
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).map_err(|e| Error::io(ca, e))?;
        let certs = Certificate::from_pem_bundle(&pem)
            .map_err(|e| config_error(storage, format!("CA file '{}': {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(config_error(
                storage,
                format!("CA file '{}' holds no PEM certificate", ca.display()),
            ));
        }
        for cert in certs {
            opts = opts.with_root_certificate(cert);
        }
    }
    Ok(opts)
}

/// `https://` in front of a bare host; no trailing '/'.
fn endpoint_url(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    if e.contains("://") {
        e.to_string()
    } else {
        format!("https://{e}")
    }
}

fn finish(store: Arc<dyn ObjectStore>, prefix: Path, description: String) -> Storage {
    let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    };
    Storage::from_object_store(store, description)
}

impl Storage {
    /// An S3 (or S3-compatible) repository. Nothing is sent before the first request.
    pub fn s3(o: &S3Options) -> Result<Storage, Error> {
        s3_with(o, None::<object_store::client::ReqwestConnector>)
    }

    /// [`Storage::s3`] with the HTTP client made by `connector` (for example
    /// `object_store`'s `SpawnedReqwestConnector`, or a
    /// [`FaultyHttpConnector`](crate::FaultyHttpConnector) in tests). Requests through the
    /// connector are retried as usual.
    pub fn s3_with_http_connector(
        o: &S3Options,
        connector: impl HttpConnector,
    ) -> Result<Storage, Error> {
        s3_with(o, Some(connector))
    }

    /// An Azure Blob repository. Nothing is sent before the first request.
    pub fn azure(o: &AzureOptions) -> Result<Storage, Error> {
        azure_with(o, None::<object_store::client::ReqwestConnector>)
    }

    /// [`Storage::azure`] with the HTTP client made by `connector`.
    pub fn azure_with_http_connector(
        o: &AzureOptions,
        connector: impl HttpConnector,
    ) -> Result<Storage, Error> {
        azure_with(o, Some(connector))
    }

    /// A Google Cloud Storage repository. A service account file is read now; nothing is
    /// sent before the first request.
    pub fn gcs(o: &GcsOptions) -> Result<Storage, Error> {
        gcs_with(o, None::<object_store::client::ReqwestConnector>)
    }

    /// [`Storage::gcs`] with the HTTP client made by `connector`.
    pub fn gcs_with_http_connector(
        o: &GcsOptions,
        connector: impl HttpConnector,
    ) -> Result<Storage, Error> {
        gcs_with(o, Some(connector))
    }
}
