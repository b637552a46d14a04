//! Azure Blob: pgBackRest's `repo1-azure-*` options.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::client::HttpConnector;

use super::{
    build_error, check_name, client_options, endpoint_url, finish, normalize_prefix, parse_word,
    redact, retry_config, ParseOptionError, UriStyle,
};
use crate::{Error, Storage};

/// Kind of `repo1-azure-key` (`repo1-azure-key-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AzureKeyType {
    /// A storage account shared key (base64).
    #[default]
    Shared,
    /// A shared access signature (the query string, with or without the leading `?`).
    Sas,
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

/// Hosts of Azure's public clouds, where only host style addresses an account.
const AZURE_CLOUD_HOSTS: &[&str] = &[
    ".core.windows.net",
    ".core.chinacloudapi.cn",
    ".core.usgovcloudapi.net",
];

/// The Azure account URL for `endpoint` in `style` (see [`AzureOptions::uri_style`]).
pub(super) fn azure_account_url(endpoint: &str, account: &str, style: Option<UriStyle>) -> String {
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

pub(super) fn azure_with<C: HttpConnector>(
    o: &AzureOptions,
    connector: Option<C>,
) -> Result<Storage, Error> {
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
