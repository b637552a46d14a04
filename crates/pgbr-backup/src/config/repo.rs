//! The typed options of a PostgreSQL host (`pg<N>-*`) and of a repository (`repo<N>-*`).

use std::path::PathBuf;

use pgbr_crypto::CipherType;
use pgbr_storage::{AzureOptions, GcsOptions, S3Options};

use super::{registry_default, Config};
use crate::options::Command;

/// How to reach a PostgreSQL cluster (the `pg<N>-*` options: `pg1-*` for the cluster backed up,
/// `pg2-*` for the standby of `backup-standby`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgOptions {
    /// The N of `pg<N>-*`, so that messages name the options of this host.
    pub index: u32,
    /// Data directory.
    pub path: PathBuf,
    /// Port.
    pub port: u16,
    /// Unix socket directory.
    pub socket_path: PathBuf,
    /// User to connect as.
    pub user: String,
    /// Database to connect to.
    pub database: String,
}

impl PgOptions {
    /// Options for a cluster in `path` (`pg1`) with every connection option at its default.
    pub fn new(path: impl Into<PathBuf>) -> PgOptions {
        registry_default(Config::unconfigured(Command::Backup).pg_at(1, path.into()))
    }

    /// `pg<N>-<name>` for this host, e.g. `pg2-port`, for messages.
    pub fn option(&self, name: &str) -> String {
        format!("pg{}-{name}", self.index)
    }
}

/// The kind of storage behind a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoType {
    /// A local (or mounted) filesystem.
    Posix,
    /// Amazon S3 or an S3-compatible object store.
    S3,
    /// Azure Blob storage.
    Azure,
    /// Google Cloud Storage.
    Gcs,
}

impl std::fmt::Display for RepoType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RepoType::Posix => "posix",
            RepoType::S3 => "s3",
            RepoType::Azure => "azure",
            RepoType::Gcs => "gcs",
        })
    }
}

/// The object store settings of a cloud repository (their `Debug` output hides every secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudOptions {
    /// `repo<N>-s3-*`.
    S3(S3Options),
    /// `repo<N>-azure-*`.
    Azure(AzureOptions),
    /// `repo<N>-gcs-*`.
    Gcs(GcsOptions),
}

/// A passphrase that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a passphrase.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The passphrase's bytes, for key derivation only.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One repository (the `repo<N>-*` options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoOptions {
    /// The N of `repo<N>`.
    pub index: u32,
    /// Storage type.
    pub repo_type: RepoType,
    /// Path (prefix for object stores).
    pub path: String,
    /// Encryption.
    pub cipher_type: CipherType,
    /// Passphrase; required when `cipher_type` is not `None`.
    pub cipher_pass: Option<Secret>,
    /// The object store settings when `repo_type` is S3, Azure or GCS (their `prefix` is
    /// `path`); `None` for posix.
    pub cloud: Option<CloudOptions>,
}

impl RepoOptions {
    /// An unencrypted posix repository at `path`.
    pub fn posix(path: impl Into<String>) -> RepoOptions {
        RepoOptions {
            index: 1,
            repo_type: RepoType::Posix,
            path: path.into(),
            cipher_type: CipherType::None,
            cipher_pass: None,
            cloud: None,
        }
    }

    /// An unencrypted repository in an object store; `path` comes from the options' prefix.
    pub fn cloud(cloud: CloudOptions) -> RepoOptions {
        let (repo_type, path) = match &cloud {
            CloudOptions::S3(o) => (RepoType::S3, o.prefix.clone()),
            CloudOptions::Azure(o) => (RepoType::Azure, o.prefix.clone()),
            CloudOptions::Gcs(o) => (RepoType::Gcs, o.prefix.clone()),
        };
        RepoOptions {
            index: 1,
            repo_type,
            path,
            cipher_type: CipherType::None,
            cipher_pass: None,
            cloud: Some(cloud),
        }
    }

    /// The same repository as `repo<index>`.
    pub fn with_index(mut self, index: u32) -> RepoOptions {
        self.index = index;
        self
    }

    /// The same repository, encrypted with `cipher` under `passphrase`.
    pub fn with_cipher(mut self, cipher: CipherType, passphrase: impl Into<String>) -> RepoOptions {
        self.cipher_type = cipher;
        self.cipher_pass = Some(Secret::new(passphrase));
        self
    }

    /// `repo1`, `repo2`, ... for messages.
    pub fn name(&self) -> String {
        format!("repo{}", self.index)
    }
}
