//! Google Cloud Storage: pgBackRest's `repo1-gcs-*` options.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use object_store::client::HttpConnector;
use object_store::gcp::GoogleCloudStorageBuilder;

use super::{
    build_error, check_name, client_options, config_error, endpoint_url, finish, normalize_prefix,
    parse_word, retry_config, ParseOptionError, REDACTED,
};
use crate::{Error, Storage};

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

pub(super) fn gcs_with<C: HttpConnector>(
    o: &GcsOptions,
    connector: Option<C>,
) -> Result<Storage, Error> {
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
