//! The mapping of the `repo<N>-*` options: which repositories are configured, and each one's
//! storage and encryption.

use std::path::PathBuf;

use pgbr_crypto::CipherType;
use pgbr_storage::{AzureKeyType, AzureOptions, GcsKeyType, GcsOptions, S3Options, UriStyle};

use crate::config::{CloudOptions, Config, Options, RepoOptions, RepoType, Secret};
use crate::error::Error;
use crate::options;

impl Config {
    /// `repo<index>-*`.
    pub fn repo(&self, index: u32) -> Result<RepoOptions, Error> {
        let o = &self.options;
        let name = |s: &str| format!("repo{index}-{s}");
        let cipher_type: CipherType =
            o.value::<String>(&name("cipher-type"))?
                .parse()
                .map_err(|_| {
                    Error::config(format!(
                        "invalid value for option '{}'",
                        name("cipher-type")
                    ))
                })?;
        let cipher_pass = o.get(&name("cipher-pass")).map(Secret::new);
        if cipher_type != CipherType::None && cipher_pass.is_none() {
            return Err(Error::config(format!(
                "option '{}' is required when '{}' is {cipher_type}: set it in the configuration file or as PGBR_REPO{index}_CIPHER_PASS",
                name("cipher-pass"),
                name("cipher-type")
            )));
        }
        let path: String = o.value(&name("path"))?;
        let (repo_type, cloud) = self.cloud_options(index, &path)?;
        Ok(RepoOptions {
            index,
            repo_type,
            path,
            cipher_type,
            cipher_pass,
            cloud,
        })
    }

    /// The storage settings of `repo<index>` (`repo<index>-type` and its type's options).
    fn cloud_options(
        &self,
        index: u32,
        path: &str,
    ) -> Result<(RepoType, Option<CloudOptions>), Error> {
        let repo = RepoValues {
            options: &self.options,
            index,
            kind: self.options.value(&format!("repo{index}-type"))?,
        };
        Ok(match repo.kind.as_str() {
            "s3" => (RepoType::S3, Some(CloudOptions::S3(repo.s3(path)?))),
            "azure" => (
                RepoType::Azure,
                Some(CloudOptions::Azure(repo.azure(path)?)),
            ),
            "gcs" => (RepoType::Gcs, Some(CloudOptions::Gcs(repo.gcs(path)?))),
            _ => (RepoType::Posix, None),
        })
    }

    /// The repositories configured: `repo1` always, `repo<N>` when `repo<N>-path` or
    /// `repo<N>-type` is set.
    pub fn repo_indexes(&self) -> Vec<u32> {
        (1..=options::MAX_REPO)
            .filter(|&i| {
                i == 1
                    || self.options.is_set(&format!("repo{i}-path"))
                    || self.options.is_set(&format!("repo{i}-type"))
            })
            .collect()
    }

    /// Every configured repository but repo`index`, whatever `--repo` chose.
    pub fn repos_besides(&self, index: u32) -> Result<Vec<RepoOptions>, Error> {
        self.repo_indexes()
            .into_iter()
            .filter(|&i| i != index)
            .map(|i| self.repo(i))
            .collect()
    }

    /// The repository `--repo` chose, if it was given (an error if that repository is not
    /// configured).
    pub fn selected_repo(&self) -> Result<Option<u32>, Error> {
        let Some(n) = self.options.parsed::<u32>("repo") else {
            return Ok(None);
        };
        if !self.repo_indexes().contains(&n) {
            return Err(Error::config(format!(
                "option 'repo' is {n} but repository repo{n} is not configured: set 'repo{n}-path' or 'repo{n}-type'"
            )));
        }
        Ok(Some(n))
    }

    /// The one repository a command works on: `--repo`, else `repo1`.
    pub fn default_repo(&self) -> Result<RepoOptions, Error> {
        self.repo(self.selected_repo()?.unwrap_or(1))
    }

    /// The repositories a command works on, in order: only `--repo` when given, else every
    /// configured repository.
    pub fn repos(&self) -> Result<Vec<RepoOptions>, Error> {
        match self.selected_repo()? {
            Some(n) => Ok(vec![self.repo(n)?]),
            None => self
                .repo_indexes()
                .into_iter()
                .map(|i| self.repo(i))
                .collect(),
        }
    }
}

/// The `repo<index>-*` values of one repository of type `kind`, for the object store settings.
struct RepoValues<'a> {
    options: &'a Options,
    index: u32,
    kind: String,
}

impl RepoValues<'_> {
    /// `repo<index>-<opt>`.
    fn name(&self, opt: &str) -> String {
        format!("repo{}-{opt}", self.index)
    }

    fn get(&self, opt: &str) -> Option<String> {
        self.options.get(&self.name(opt))
    }

    /// An option the repository's type requires.
    fn required(&self, opt: &str) -> Result<String, Error> {
        let full = self.name(opt);
        self.options.get(&full).ok_or_else(|| {
            Error::config(format!(
                "option '{full}' is required when '{}' is {}: set it in the configuration file, as PGBR_{}, or as --{full}",
                self.name("type"),
                self.kind,
                full.to_ascii_uppercase().replace('-', "_")
            ))
        })
    }

    /// The error of `opt` missing although `with` is set.
    fn needs(&self, opt: &str, with: &str) -> Error {
        Error::config(format!(
            "option '{}' is required with '{}'",
            self.name(opt),
            self.name(with)
        ))
    }

    fn verify_tls(&self) -> bool {
        self.get("storage-verify-tls").as_deref() != Some("n")
    }

    fn ca_file(&self) -> Option<PathBuf> {
        self.get("storage-ca-file").map(PathBuf::from)
    }

    /// `repo<index>-s3-*`.
    fn s3(&self, prefix: &str) -> Result<S3Options, Error> {
        let bucket = self.required("s3-bucket")?;
        let key = self.get("s3-key");
        let key_secret = self.get("s3-key-secret");
        let token = self.get("s3-token");
        match (&key, &key_secret) {
            (Some(_), None) => return Err(self.needs("s3-key-secret", "s3-key")),
            (None, Some(_)) => return Err(self.needs("s3-key", "s3-key-secret")),
            (None, None) if token.is_some() => return Err(self.needs("s3-key", "s3-token")),
            _ => {}
        }
        let uri_style = match self.get("s3-uri-style").as_deref() {
            Some("path") => UriStyle::Path,
            _ => UriStyle::Host,
        };
        Ok(S3Options {
            bucket,
            endpoint: self.get("s3-endpoint"),
            region: self.get("s3-region").unwrap_or_default(),
            key,
            key_secret,
            token,
            uri_style,
            verify_tls: self.verify_tls(),
            ca_file: self.ca_file(),
            prefix: prefix.to_string(),
        })
    }

    /// `repo<index>-azure-*`.
    fn azure(&self, prefix: &str) -> Result<AzureOptions, Error> {
        let account = self.required("azure-account")?;
        let container = self.required("azure-container")?;
        let key_type = match self.get("azure-key-type").as_deref() {
            Some("sas") => AzureKeyType::Sas,
            _ => AzureKeyType::Shared,
        };
        let key = self.get("azure-key");
        if key.is_none() && key_type == AzureKeyType::Sas {
            return Err(self.needs("azure-key", "azure-key-type"));
        }
        Ok(AzureOptions {
            account,
            container,
            key,
            key_type,
            endpoint: self.get("azure-endpoint"),
            uri_style: match self.get("azure-uri-style").as_deref() {
                Some("host") => Some(UriStyle::Host),
                Some("path") => Some(UriStyle::Path),
                _ => None,
            },
            verify_tls: self.verify_tls(),
            ca_file: self.ca_file(),
            prefix: prefix.to_string(),
        })
    }

    /// `repo<index>-gcs-*`.
    fn gcs(&self, prefix: &str) -> Result<GcsOptions, Error> {
        let bucket = self.required("gcs-bucket")?;
        let key_type = match self.get("gcs-key-type").as_deref() {
            Some("token") => GcsKeyType::Token,
            Some("auto") => GcsKeyType::Auto,
            _ => GcsKeyType::Service,
        };
        let key = self.get("gcs-key");
        match (key_type, &key) {
            (GcsKeyType::Auto, Some(_)) => {
                return Err(Error::config(format!(
                    "option '{}' must not be set when '{}' is auto",
                    self.name("gcs-key"),
                    self.name("gcs-key-type")
                )))
            }
            (GcsKeyType::Service | GcsKeyType::Token, None) => {
                return Err(Error::config(format!(
                    "option '{}' is required unless '{}' is auto",
                    self.name("gcs-key"),
                    self.name("gcs-key-type")
                )))
            }
            _ => {}
        }
        Ok(GcsOptions {
            bucket,
            key: key.map(PathBuf::from),
            key_type,
            endpoint: self.get("gcs-endpoint"),
            verify_tls: self.verify_tls(),
            ca_file: self.ca_file(),
            prefix: prefix.to_string(),
        })
    }
}
