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
//! Credentials travel only as request signatures or headers; `object_store` drops the URL
//! from error messages of requests whose URL carries a secret (Azure SAS tokens).

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::client::HttpConnector;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, Certificate, ClientOptions, ObjectStore, RetryConfig};

use crate::{Error, Storage};

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

/// Kind of `repo1-azure-key` (`repo1-azure-key-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AzureKeyType {
    /// A storage account shared key (base64).
    #[default]
    Shared,
    /// A shared access signature (the query string, with or without the leading `?`).
    Sas,
}

/// Kind of `repo1-gcs-key` (`repo1-gcs-key-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GcsKeyType {
    /// `key` is a service account JSON key file (the default).
    #[default]
    Service,
    /// `key` is an OAuth bearer token itself, as in pgBackRest (not a file name).
    Token,
    /// Application default credentials or the instance's service account; `key` must be unset.
    Auto,
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

impl FromStr for AzureKeyType {
    type Err = ParseOptionError;
    /// `shared` or `sas`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(
            s,
            &[("shared", AzureKeyType::Shared), ("sas", AzureKeyType::Sas)],
            "shared, sas",
        )
    }
}

impl FromStr for GcsKeyType {
    type Err = ParseOptionError;
    /// `service`, `token` or `auto`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(
            s,
            &[
                ("service", GcsKeyType::Service),
                ("token", GcsKeyType::Token),
                ("auto", GcsKeyType::Auto),
            ],
            "service, token, auto",
        )
    }
}

/// An S3 (or S3-compatible) repository: pgBackRest's `repo1-s3-*` options.
///
/// Without `key`, credentials come from the environment and the instance role
/// (`AmazonS3Builder::from_env` semantics: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, web identity, ECS/EC2 instance metadata).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Options {
    /// Bucket name (`repo1-s3-bucket`).
    pub bucket: String,
    /// Endpoint URL such as `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`
    /// (`repo1-s3-endpoint`); a bare host means `https://`. `None`: AWS's endpoint for the
    /// region.
    pub endpoint: Option<String>,
    /// Region (`repo1-s3-region`); empty: from the environment, else `us-east-1`.
    pub region: String,
    /// Access key id (`repo1-s3-key`).
    pub key: Option<String>,
    /// Secret access key (`repo1-s3-key-secret`); required with `key`.
    pub key_secret: Option<String>,
    /// Session token (`repo1-s3-token`).
    pub token: Option<String>,
    /// Bucket addressing (`repo1-s3-uri-style`).
    pub uri_style: UriStyle,
    /// Verify the server's TLS certificate (`repo1-storage-verify-tls`).
    pub verify_tls: bool,
    /// PEM file of extra trusted root certificates (`repo1-storage-ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Repository path inside the bucket (`repo1-path`), such as `/` or `/pgbr`.
    pub prefix: String,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            bucket: String::new(),
            endpoint: None,
            region: String::new(),
            key: None,
            key_secret: None,
            token: None,
            uri_style: UriStyle::Host,
            verify_tls: true,
            ca_file: None,
            prefix: "/".to_string(),
        }
    }
}

fn redact<T>(v: &Option<T>) -> Option<&'static str> {
    v.as_ref().map(|_| REDACTED)
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("key", &redact(&self.key))
            .field("key_secret", &redact(&self.key_secret))
            .field("token", &redact(&self.token))
            .field("uri_style", &self.uri_style)
            .field("verify_tls", &self.verify_tls)
            .field("ca_file", &self.ca_file)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// An Azure Blob repository: pgBackRest's `repo1-azure-*` options.
///
/// Without `key`, credentials come from the environment (`MicrosoftAzureBuilder::from_env`
/// semantics: `AZURE_STORAGE_*` variables, workload or managed identity).
#[derive(Clone, PartialEq, Eq)]
pub struct AzureOptions {
    /// Storage account (`repo1-azure-account`).
    pub account: String,
    /// Container (`repo1-azure-container`).
    pub container: String,
    /// Shared key or SAS token (`repo1-azure-key`).
    pub key: Option<String>,
    /// Kind of `key` (`repo1-azure-key-type`).
    pub key_type: AzureKeyType,
    /// Blob service URL (`repo1-azure-endpoint`), such as `http://127.0.0.1:10000` for
    /// Azurite, addressed as `uri_style` says. `None`: `https://<account>.blob.core.windows.net`.
    pub endpoint: Option<String>,
    /// How `endpoint` names the account (`repo1-azure-uri-style`): host style
    /// (`<account>.<endpoint host>`, as Azure itself) or path style (`<endpoint>/<account>`, as
    /// Azurite and Azure Stack). `None`: host style when the endpoint's host already starts
    /// with `<account>.` or is one of Azure's public clouds (`*.core.windows.net`, ...), path
    /// style otherwise.
    pub uri_style: Option<UriStyle>,
    /// Verify the server's TLS certificate (`repo1-storage-verify-tls`).
    pub verify_tls: bool,
    /// PEM file of extra trusted root certificates (`repo1-storage-ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Repository path inside the container (`repo1-path`).
    pub prefix: String,
}

impl Default for AzureOptions {
    fn default() -> Self {
        AzureOptions {
            account: String::new(),
            container: String::new(),
            key: None,
            key_type: AzureKeyType::Shared,
            endpoint: None,
            uri_style: None,
            verify_tls: true,
            ca_file: None,
            prefix: "/".to_string(),
        }
    }
}

impl fmt::Debug for AzureOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureOptions")
            .field("account", &self.account)
            .field("container", &self.container)
            .field("key", &redact(&self.key))
            .field("key_type", &self.key_type)
            .field("endpoint", &self.endpoint)
            .field("verify_tls", &self.verify_tls)
            .field("ca_file", &self.ca_file)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// A Google Cloud Storage repository: pgBackRest's `repo1-gcs-*` options.
#[derive(Clone, PartialEq, Eq)]
pub struct GcsOptions {
    /// Bucket name (`repo1-gcs-bucket`).
    pub bucket: String,
    /// Service account key file ([`GcsKeyType::Service`]) or the token itself
    /// ([`GcsKeyType::Token`]) (`repo1-gcs-key`).
    pub key: Option<PathBuf>,
    /// Kind of `key` (`repo1-gcs-key-type`).
    pub key_type: GcsKeyType,
    /// Base URL of the service (`repo1-gcs-endpoint`), such as `http://127.0.0.1:4443`;
    /// `None`: the service account file's `gcs_base_url`, else Google's.
    pub endpoint: Option<String>,
    /// Verify the server's TLS certificate (`repo1-storage-verify-tls`).
    pub verify_tls: bool,
    /// PEM file of extra trusted root certificates (`repo1-storage-ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Repository path inside the bucket (`repo1-path`).
    pub prefix: String,
}

impl Default for GcsOptions {
    fn default() -> Self {
        GcsOptions {
            bucket: String::new(),
            key: None,
            key_type: GcsKeyType::Service,
            endpoint: None,
            verify_tls: true,
            ca_file: None,
            prefix: "/".to_string(),
        }
    }
}

impl fmt::Debug for GcsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key: &dyn fmt::Debug = match (&self.key, self.key_type) {
            (Some(_), GcsKeyType::Token) => &Some(REDACTED),
            (key, _) => key,
        };
        f.debug_struct("GcsOptions")
            .field("bucket", &self.bucket)
            .field("key", key)
            .field("key_type", &self.key_type)
            .field("endpoint", &self.endpoint)
            .field("verify_tls", &self.verify_tls)
            .field("ca_file", &self.ca_file)
            .field("prefix", &self.prefix)
            .finish()
    }
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

/// The S3 endpoint for the bucket in host style: `scheme://<bucket>.<host>[:port][/path]`.
fn s3_host_style_endpoint(endpoint: &str, bucket: &str) -> String {
    let url = endpoint_url(endpoint);
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{bucket}.{rest}"),
        None => url,
    }
}

/// Hosts of Azure's public clouds, where only host style addresses an account.
const AZURE_CLOUD_HOSTS: &[&str] = &[
    ".core.windows.net",
    ".core.chinacloudapi.cn",
    ".core.usgovcloudapi.net",
];

/// The Azure account URL for `endpoint` in `style` (see [`AzureOptions::uri_style`]).
fn azure_account_url(endpoint: &str, account: &str, style: Option<UriStyle>) -> String {
    let url = endpoint_url(endpoint);
    let (scheme, host) = url.split_once("://").unwrap_or(("https", url.as_str()));
    let host_name = host
        .split(['/', ':'])
        .next()
        .unwrap_or(host)
        .to_ascii_lowercase();
    let named = host_name.starts_with(&format!("{}.", account.to_ascii_lowercase()));
    let style = style.unwrap_or(
        if named
            || AZURE_CLOUD_HOSTS
                .iter()
                .any(|c| format!(".{host_name}").ends_with(c))
        {
            UriStyle::Host
        } else {
            UriStyle::Path
        },
    );
    match style {
        UriStyle::Host if named => url,
        UriStyle::Host => format!("{scheme}://{account}.{host}"),
        UriStyle::Path => format!("{url}/{account}"),
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

fn s3_with<C: HttpConnector>(o: &S3Options, connector: Option<C>) -> Result<Storage, Error> {
    let prefix = normalize_prefix("s3", &o.prefix)?;
    let description = format!("s3:{}/{}", o.bucket, prefix);
    check_name(&description, "the S3 bucket", &o.bucket)?;
    let mut b = match (&o.key, &o.key_secret) {
        (Some(key), Some(secret)) => {
            let mut b = AmazonS3Builder::new()
                .with_access_key_id(key)
                .with_secret_access_key(secret);
            if let Some(token) = &o.token {
                b = b.with_token(token);
            }
            b
        }
        (None, None) if o.token.is_none() => AmazonS3Builder::from_env(),
        (None, None) => {
            return Err(config_error(
                &description,
                "an S3 token needs a key and a key secret",
            ))
        }
        (Some(_), None) => return Err(config_error(&description, "an S3 key needs a key secret")),
        (None, Some(_)) => return Err(config_error(&description, "an S3 key secret needs a key")),
    };
    b = b.with_bucket_name(&o.bucket);
    if !o.region.is_empty() {
        b = b.with_region(&o.region);
    }
    let endpoint = o.endpoint.as_deref().map(|e| match o.uri_style {
        UriStyle::Host => s3_host_style_endpoint(e, &o.bucket),
        UriStyle::Path => endpoint_url(e),
    });
    if let Some(e) = &endpoint {
        b = b.with_endpoint(e);
    }
    b = b
        .with_virtual_hosted_style_request(o.uri_style == UriStyle::Host)
        .with_client_options(client_options(
            &description,
            endpoint.as_deref(),
            o.verify_tls,
            o.ca_file.as_deref(),
        )?)
        .with_retry(retry_config());
    if let Some(c) = connector {
        b = b.with_http_connector(c);
    }
    let store = b.build().map_err(|e| build_error(&description, e))?;
    Ok(finish(Arc::new(store), prefix, description))
}

fn azure_with<C: HttpConnector>(o: &AzureOptions, connector: Option<C>) -> Result<Storage, Error> {
    let prefix = normalize_prefix("azure", &o.prefix)?;
    let description = format!("azure:{}/{}/{}", o.account, o.container, prefix);
    check_name(&description, "the Azure account", &o.account)?;
    check_name(&description, "the Azure container", &o.container)?;
    let mut b = match &o.key {
        Some(key) => {
            let b = MicrosoftAzureBuilder::new();
            match o.key_type {
                AzureKeyType::Shared => b.with_access_key(key),
                AzureKeyType::Sas => b.with_config(AzureConfigKey::SasKey, key),
            }
        }
        None => MicrosoftAzureBuilder::from_env(),
    };
    b = b.with_account(&o.account).with_container_name(&o.container);
    let endpoint = o
        .endpoint
        .as_deref()
        .map(|e| azure_account_url(e, &o.account, o.uri_style));
    if let Some(e) = &endpoint {
        b = b.with_endpoint(e.clone());
    }
    b = b
        .with_client_options(client_options(
            &description,
            endpoint.as_deref(),
            o.verify_tls,
            o.ca_file.as_deref(),
        )?)
        .with_retry(retry_config());
    if let Some(c) = connector {
        b = b.with_http_connector(c);
    }
    let store = b.build().map_err(|e| build_error(&description, e))?;
    Ok(finish(Arc::new(store), prefix, description))
}

fn gcs_with<C: HttpConnector>(o: &GcsOptions, connector: Option<C>) -> Result<Storage, Error> {
    let prefix = normalize_prefix("gcs", &o.prefix)?;
    let description = format!("gcs:{}/{}", o.bucket, prefix);
    check_name(&description, "the GCS bucket", &o.bucket)?;
    let mut b = match (o.key_type, &o.key) {
        (GcsKeyType::Service, Some(file)) => {
            // object_store's error would name the file, and repo-gcs-key is a secret option.
            std::fs::File::open(file).map_err(|e| {
                config_error(
                    &description,
                    format!("unable to open the service account key file of repo-gcs-key (its name is not shown: the option is secret): {e}"),
                )
            })?;
            let file = file
                .to_str()
                .ok_or_else(|| config_error(&description, "the GCS key file name is not UTF-8"))?;
            GoogleCloudStorageBuilder::new().with_service_account_path(file)
        }
        (GcsKeyType::Token, Some(token)) => {
            let token = token
                .to_str()
                .ok_or_else(|| config_error(&description, "the GCS token is not UTF-8"))?;
            GoogleCloudStorageBuilder::new().with_bearer_token(token)
        }
        (GcsKeyType::Auto, None) => GoogleCloudStorageBuilder::from_env(),
        (GcsKeyType::Service | GcsKeyType::Token, None) => {
            return Err(config_error(
                &description,
                "GCS key types 'service' and 'token' need a key",
            ))
        }
        (GcsKeyType::Auto, Some(_)) => {
            return Err(config_error(
                &description,
                "GCS key type 'auto' takes no key",
            ))
        }
    };
    b = b.with_bucket_name(&o.bucket);
    let endpoint = o.endpoint.as_deref().map(endpoint_url);
    if let Some(e) = &endpoint {
        b = b.with_base_url(e);
    }
    b = b
        .with_client_options(client_options(
            &description,
            endpoint.as_deref(),
            o.verify_tls,
            o.ca_file.as_deref(),
        )?)
        .with_retry(retry_config());
    if let Some(c) = connector {
        b = b.with_http_connector(c);
    }
    let store = b.build().map_err(|e| build_error(&description, e))?;
    Ok(finish(Arc::new(store), prefix, description))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn option_words_parse() {
        assert_eq!("path".parse::<UriStyle>().unwrap(), UriStyle::Path);
        assert_eq!("HOST".parse::<UriStyle>().unwrap(), UriStyle::Host);
        assert_eq!("sas".parse::<AzureKeyType>().unwrap(), AzureKeyType::Sas);
        assert_eq!("token".parse::<GcsKeyType>().unwrap(), GcsKeyType::Token);
        let err = "virtual".parse::<UriStyle>().unwrap_err().to_string();
        assert!(
            err.contains("virtual") && err.contains("host, path"),
            "{err}"
        );
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            s3_host_style_endpoint("http://127.0.0.1:9000/", "b"),
            "http://b.127.0.0.1:9000"
        );
        assert_eq!(
            s3_host_style_endpoint("s3.eu-west-1.amazonaws.com", "b"),
            "https://b.s3.eu-west-1.amazonaws.com"
        );
        let url = |e, style| azure_account_url(e, "acct", style);
        // Unset: path style for an emulator, host style for Azure's clouds or a named host.
        assert_eq!(
            url("http://127.0.0.1:10000", None),
            "http://127.0.0.1:10000/acct"
        );
        assert_eq!(
            url("https://acct.blob.core.windows.net/", None),
            "https://acct.blob.core.windows.net"
        );
        // pgBackRest's usual endpoint, without the account: host style, as pgBackRest does.
        assert_eq!(
            url("blob.core.windows.net", None),
            "https://acct.blob.core.windows.net"
        );
        assert_eq!(
            url("blob.core.chinacloudapi.cn", None),
            "https://acct.blob.core.chinacloudapi.cn"
        );
        // Set: as asked.
        assert_eq!(
            url("http://127.0.0.1:10000", Some(UriStyle::Host)),
            "http://acct.127.0.0.1:10000"
        );
        assert_eq!(
            url("https://stack.example:443", Some(UriStyle::Path)),
            "https://stack.example:443/acct"
        );
        assert_eq!(
            url("stack.example", Some(UriStyle::Host)),
            "https://acct.stack.example"
        );
    }

    #[test]
    fn prefixes() {
        for (p, want) in [("/", ""), ("", ""), ("/pgbr", "pgbr"), ("/a/b/", "a/b")] {
            assert_eq!(normalize_prefix("s3", p).unwrap().as_ref(), want, "{p}");
        }
        for bad in ["/a//b", "/a/../b", "/./a"] {
            assert!(normalize_prefix("s3", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_and_descriptions() {
        let o = S3Options {
            bucket: "bkt".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            region: "us-east-1".into(),
            key: Some("AKIDEXAMPLE".into()),
            key_secret: Some(SECRET.into()),
            token: Some("session-token-secret".into()),
            uri_style: UriStyle::Path,
            prefix: "/pgbr".into(),
            ..S3Options::default()
        };
        let s = Storage::s3(&o).unwrap();
        assert_eq!(s.description(), "s3:bkt/pgbr");
        for text in [format!("{o:?}"), format!("{s:?}")] {
            for secret in [SECRET, "AKIDEXAMPLE", "session-token-secret"] {
                assert!(!text.contains(secret), "{text}");
            }
        }

        let a = AzureOptions {
            account: "acct".into(),
            container: "c".into(),
            key: Some("c2VjcmV0LWtleQ==".into()),
            ..AzureOptions::default()
        };
        assert!(!format!("{a:?}").contains("c2VjcmV0LWtleQ=="));
        assert_eq!(Storage::azure(&a).unwrap().description(), "azure:acct/c/");
        // A key that is not base64 is refused without being echoed.
        let bad = AzureOptions {
            key: Some(format!("{SECRET}!!")),
            ..a.clone()
        };
        let err = Storage::azure(&bad).unwrap_err().to_string();
        assert!(!err.contains(SECRET), "{err}");

        let g = GcsOptions {
            bucket: "g".into(),
            key: Some(PathBuf::from("ya29.token-secret")),
            key_type: GcsKeyType::Token,
            prefix: "/r".into(),
            ..GcsOptions::default()
        };
        assert!(!format!("{g:?}").contains("token-secret"));
        assert_eq!(Storage::gcs(&g).unwrap().description(), "gcs:g/r");
    }

    #[test]
    fn bad_configurations_are_refused() {
        let base = S3Options {
            bucket: "b".into(),
            region: "us-east-1".into(),
            ..S3Options::default()
        };
        let half = S3Options {
            key: Some("k".into()),
            ..base.clone()
        };
        let err = Storage::s3(&half).unwrap_err().to_string();
        assert!(err.contains("key secret"), "{err}");
        let nobucket = S3Options {
            bucket: String::new(),
            ..base.clone()
        };
        assert!(Storage::s3(&nobucket).is_err());

        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let with_ca = S3Options {
            ca_file: Some(ca.clone()),
            ..base.clone()
        };
        let err = Storage::s3(&with_ca).unwrap_err().to_string();
        assert!(err.contains("ca.pem"), "{err}");
        let missing = S3Options {
            ca_file: Some(dir.path().join("missing.pem")),
            ..base
        };
        let err = Storage::s3(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");

        let g = GcsOptions {
            bucket: "g".into(),
            key_type: GcsKeyType::Auto,
            key: Some("x".into()),
            ..GcsOptions::default()
        };
        assert!(Storage::gcs(&g).is_err());
    }
}
