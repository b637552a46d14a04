//! S3 (and S3-compatible stores): pgBackRest's `repo1-s3-*` options.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::client::HttpConnector;

use super::{
    build_error, check_name, client_options, config_error, endpoint_url, finish, normalize_prefix,
    redact, retry_config, UriStyle,
};
use crate::{Error, Storage};

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

/// The S3 endpoint for the bucket in host style: `scheme://<bucket>.<host>[:port][/path]`.
pub(super) fn s3_host_style_endpoint(endpoint: &str, bucket: &str) -> String {
    let url = endpoint_url(endpoint);
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{bucket}.{rest}"),
        None => url,
    }
}

pub(super) fn s3_with<C: HttpConnector>(
    o: &S3Options,
    connector: Option<C>,
) -> Result<Storage, Error> {
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
