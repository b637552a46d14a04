//! An opened repository: its storage, the stanza's info files and the unlocked data key.
//!
//! Layout (docs/format.md): `archive/<stanza>/archive.info`, `archive/<stanza>/<pg>-<db-id>/...`,
//! `backup/<stanza>/backup.info`, `backup/<stanza>/<label>/backup.manifest` and the backup's files.
//! Every info file and manifest is written twice (`name`, then `name.copy`); readers take the first
//! copy that verifies.

use bytes::Bytes;
use pgbr_crypto::{CipherType, DataKey, WrappedKey};
use pgbr_manifest::{ArchiveInfo, BackupInfo, CipherInfo, DbHistory, Manifest};
use pgbr_storage::{CompressType, Storage};

use crate::config::{CloudOptions, RepoOptions, RepoType};
use crate::error::{Error, Result};
use crate::lock::Lock;

/// Suffix of the second copy of every critical metadata file.
pub const COPY_SUFFIX: &str = ".copy";
/// File name of a backup's manifest.
pub const MANIFEST_FILE: &str = "backup.manifest";
/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// zstd level of stored manifests.
const MANIFEST_LEVEL: i32 = 3;
/// File name of the manifest of a backup still running (or interrupted): what it stored so far,
/// so that the next backup can resume it.
pub const INPROGRESS_FILE: &str = "backup.manifest.inprogress";

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
    for candidate in [path.to_string(), format!("{path}{COPY_SUFFIX}")] {
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
    storage.put(&format!("{path}{COPY_SUFFIX}"), bytes).await?;
    Ok(())
}

/// A repository opened for one stanza, with its key unlocked.
#[derive(Debug)]
pub struct Repository {
    pub(crate) storage: Storage,
    pub(crate) opts: RepoOptions,
    pub(crate) stanza: String,
    pub(crate) key: Option<DataKey>,
    pub(crate) backup_info: BackupInfo,
    pub(crate) archive_info: ArchiveInfo,
    /// The stanza lock, once a command that changes the repository has taken it.
    pub(crate) lock: Option<Lock>,
}

impl Repository {
    /// A copy for a concurrent task: same storage, stanza and key, without the stanza lock (the
    /// original keeps holding it).
    pub(crate) fn task_handle(&self) -> Repository {
        Repository {
            storage: self.storage.clone(),
            opts: self.opts.clone(),
            stanza: self.stanza.clone(),
            key: self.key.clone(),
            backup_info: self.backup_info.clone(),
            archive_info: self.archive_info.clone(),
            lock: None,
        }
    }

    /// Opens `stanza` in the repository `opts` describes: reads both info files and unlocks the
    /// data key with the passphrase.
    pub async fn open(opts: &RepoOptions, stanza: &str) -> Result<Repository> {
        let storage = open_storage(opts)?;
        Self::open_with(storage, opts, stanza).await
    }

    /// As [`Repository::open`], on storage the caller built (an object store, a test double).
    pub async fn open_with(
        storage: Storage,
        opts: &RepoOptions,
        stanza: &str,
    ) -> Result<Repository> {
        let repo_name = describe(opts, &storage);
        let backup_info = load_twice(&storage, &backup_info_path(stanza), |b| {
            BackupInfo::from_bytes(b).map_err(|source| Error::Manifest {
                context: format!("{repo_name}: backup.info of stanza '{stanza}'"),
                source,
            })
        })
        .await?;
        let archive_info = load_twice(&storage, &archive_info_path(stanza), |b| {
            ArchiveInfo::from_bytes(b).map_err(|source| Error::Manifest {
                context: format!("{repo_name}: archive.info of stanza '{stanza}'"),
                source,
            })
        })
        .await?;
        let (Some(backup_info), Some(archive_info)) = (backup_info, archive_info) else {
            return Err(Error::StanzaMissing {
                stanza: stanza.to_string(),
                repo: repo_name,
            });
        };
        let key = unlock(opts, &repo_name, &archive_info.cipher)?;
        Ok(Repository {
            storage,
            opts: opts.clone(),
            stanza: stanza.to_string(),
            key,
            backup_info,
            archive_info,
            lock: None,
        })
    }

    /// Takes the stanza's exclusive lock in `lock_path` (see [`crate::lock`]) unless this handle
    /// already holds it; it is held until the handle is dropped. `backup` and `expire` call this
    /// themselves, so an embedder cannot forget it.
    pub fn lock(&mut self, lock_path: &std::path::Path) -> Result<()> {
        if self.lock.is_none() {
            self.lock = Some(Lock::acquire(lock_path, &self.stanza)?);
        }
        Ok(())
    }

    /// Whether this handle holds the stanza's lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// The storage behind the repository.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The stanza.
    pub fn stanza(&self) -> &str {
        &self.stanza
    }

    /// The stanza's backup list and cluster history.
    pub fn backup_info(&self) -> &BackupInfo {
        &self.backup_info
    }

    /// How each backup listed in backup.info compressed its files, by label (from the
    /// summaries, so without loading manifests); backups recorded without it are left out.
    pub(crate) fn compress_types(&self) -> std::collections::BTreeMap<String, CompressType> {
        self.backup_info
            .backups
            .iter()
            .filter_map(|b| Some((b.label.clone(), b.compress_type.as_deref()?.parse().ok()?)))
            .collect()
    }

    /// The stanza's archive identity.
    pub fn archive_info(&self) -> &ArchiveInfo {
        &self.archive_info
    }

    /// `repo1 (posix:/path)`, for messages.
    pub fn name(&self) -> String {
        describe(&self.opts, &self.storage)
    }

    /// The repository's cipher.
    pub fn cipher(&self) -> CipherType {
        self.opts.cipher_type
    }

    pub(crate) fn key(&self) -> Option<&DataKey> {
        self.key.as_ref()
    }

    /// The cluster the stanza currently backs up.
    pub fn current_db(&self) -> Result<&DbHistory> {
        self.archive_info.current_db().ok_or_else(|| {
            Error::Corrupt(format!(
                "{}: archive.info of stanza '{}' lists no database",
                self.name(),
                self.stanza
            ))
        })
    }

    /// Encrypts metadata with the repository's cipher (without one, `plain` is returned as it
    /// is: a manifest of many files is tens of megabytes, not worth a copy).
    pub(crate) fn seal(&self, plain: Vec<u8>) -> Result<Vec<u8>> {
        pgbr_crypto::encrypt_owned(self.cipher(), self.key(), plain)
            .map_err(|e| Error::Internal(format!("encrypting metadata: {e}")))
    }

    /// Decrypts metadata (`data` itself without a cipher); `what` names the object in the
    /// error.
    pub(crate) fn unseal<'d>(
        &self,
        data: &'d [u8],
        what: &str,
    ) -> Result<std::borrow::Cow<'d, [u8]>> {
        pgbr_crypto::decrypt_borrowed(self.cipher(), self.key(), data).map_err(|e| {
            Error::Corrupt(format!("{}: {what} cannot be decrypted: {e}", self.name()))
        })
    }

    /// The directory of backup `label`.
    pub fn backup_path(&self, label: &str) -> String {
        format!("backup/{}/{label}", self.stanza)
    }

    /// Decrypts, decompresses and parses a stored manifest; `what` names it in errors.
    ///
    /// Manifests are stored compressed with zstd (a big one is mostly block maps, which shrink
    /// about threefold); one that starts with `{` is read as it is. The text is parsed as it is
    /// decompressed ([`Manifest::from_reader`]), never held whole: a manifest of 1,000,000
    /// files loads in 0.7 s and 224 MiB this way, against 1.6 s and 678 MiB decompressed whole
    /// (`cargo bench --bench manifest`).
    pub(crate) fn open_manifest(&self, raw: &[u8], what: &str) -> Result<Manifest> {
        let plain = self.unseal(raw, what)?;
        let loaded = if plain.starts_with(&ZSTD_MAGIC) {
            let text = pgbr_storage::DecompressReader::new(CompressType::Zst, &plain[..]).map_err(
                |e| {
                    Error::Corrupt(format!(
                        "{}: {what} cannot be decompressed: {e}",
                        self.name()
                    ))
                },
            )?;
            Manifest::from_reader(text)
        } else {
            Manifest::from_bytes(&plain)
        };
        loaded.map_err(|source| Error::Manifest {
            context: format!("{}: {what}", self.name()),
            source,
        })
    }

    /// Serializes, compresses and encrypts a manifest for storing (see
    /// [`Repository::open_manifest`]).
    fn close_manifest(&self, manifest: &Manifest, what: &str) -> Result<Vec<u8>> {
        // Serialized straight into the compressor: a manifest of many files is never held
        // uncompressed.
        let compress_err = |e| Error::Internal(format!("compressing the {what}: {e}"));
        let w = pgbr_storage::CompressWriter::new(CompressType::Zst, MANIFEST_LEVEL, Vec::new())
            .map_err(compress_err)?;
        let w = manifest.write_to(w).map_err(|source| Error::Manifest {
            context: what.to_string(),
            source,
        })?;
        let compressed = w.finish().map_err(compress_err)?;
        self.seal(compressed)
    }

    /// Loads and verifies the manifest of backup `label` (first copy that verifies).
    pub async fn load_manifest(&self, label: &str) -> Result<Manifest> {
        let path = format!("{}/{MANIFEST_FILE}", self.backup_path(label));
        let name = self.name();
        let m = load_twice(&self.storage, &path, |raw| {
            self.open_manifest(raw, &format!("manifest of backup {label}"))
        })
        .await?;
        m.ok_or_else(|| {
            Error::BackupMissing(format!(
                "{name}: backup {label} has no manifest (it is not a complete backup)"
            ))
        })
    }

    /// Writes `manifest` for backup `label`: this commits the backup.
    pub(crate) async fn save_manifest(&self, label: &str, manifest: &Manifest) -> Result<u64> {
        let sealed = self.close_manifest(manifest, &format!("manifest of backup {label}"))?;
        let len = sealed.len() as u64;
        let path = format!("{}/{MANIFEST_FILE}", self.backup_path(label));
        save_twice(&self.storage, &path, sealed).await?;
        Ok(len * 2)
    }

    /// Finishes the commit of backup `label`, which a killed backup left committed (a manifest
    /// copy verifies) but not listed: the manifest copy not written yet is written from the
    /// other, and the in-progress manifest goes.
    pub(crate) async fn finish_commit(&self, label: &str) -> Result<()> {
        let path = format!("{}/{MANIFEST_FILE}", self.backup_path(label));
        let copy = format!("{path}{COPY_SUFFIX}");
        match (
            self.storage.get_opt(&path).await?,
            self.storage.get_opt(&copy).await?,
        ) {
            (Some(b), None) => self.storage.put(&copy, b).await?,
            (None, Some(b)) => self.storage.put(&path, b).await?,
            _ => {}
        }
        let inprogress = format!("{}/{INPROGRESS_FILE}", self.backup_path(label));
        if self.storage.exists(&inprogress).await? {
            self.storage.delete(&inprogress).await?;
        }
        Ok(())
    }

    /// Writes the in-progress manifest of backup `label` (not a commit: see [`INPROGRESS_FILE`]).
    pub(crate) async fn save_inprogress(&self, label: &str, manifest: &Manifest) -> Result<()> {
        let sealed =
            self.close_manifest(manifest, &format!("in-progress manifest of backup {label}"))?;
        let path = format!("{}/{INPROGRESS_FILE}", self.backup_path(label));
        self.storage.put(&path, Bytes::from(sealed)).await?;
        Ok(())
    }

    /// Reads the in-progress manifest of an interrupted backup; `None` if it is absent or does not
    /// verify (such a backup cannot be resumed).
    pub(crate) async fn load_inprogress(&self, label: &str) -> Result<Option<Manifest>> {
        let path = format!("{}/{INPROGRESS_FILE}", self.backup_path(label));
        let Some(raw) = self.storage.get_opt(&path).await? else {
            return Ok(None);
        };
        Ok(self.open_manifest(&raw, "in-progress manifest").ok())
    }

    /// Writes backup.info.
    pub(crate) async fn save_backup_info(&self) -> Result<()> {
        let bytes = self
            .backup_info
            .to_bytes()
            .map_err(|source| Error::Manifest {
                context: "backup.info".into(),
                source,
            })?;
        save_twice(&self.storage, &backup_info_path(&self.stanza), bytes).await
    }
}

/// `backup/<stanza>/backup.info`.
pub fn backup_info_path(stanza: &str) -> String {
    format!("backup/{stanza}/backup.info")
}

/// `archive/<stanza>/archive.info`.
pub fn archive_info_path(stanza: &str) -> String {
    format!("archive/{stanza}/archive.info")
}

/// Unlocks the stanza's data key with the repository passphrase.
pub(crate) fn unlock(
    opts: &RepoOptions,
    repo_name: &str,
    cipher: &CipherInfo,
) -> Result<Option<DataKey>> {
    let stored: CipherType = cipher.cipher_type.parse().map_err(|_| {
        Error::Corrupt(format!(
            "{repo_name}: unknown cipher '{}' in the stanza's info files",
            cipher.cipher_type
        ))
    })?;
    if stored != opts.cipher_type {
        return Err(Error::config(format!(
            "{repo_name}: option '{}-cipher-type' is {} but the stanza was created with {stored}",
            opts.name(),
            opts.cipher_type
        )));
    }
    if stored == CipherType::None {
        return Ok(None);
    }
    let pass = opts.cipher_pass.as_ref().ok_or_else(|| {
        Error::config(format!(
            "option '{}-cipher-pass' is required: {repo_name} is encrypted",
            opts.name()
        ))
    })?;
    let wrapped: WrappedKey = cipher
        .wrapped_key
        .clone()
        .ok_or_else(|| Error::Corrupt(format!("{repo_name}: the stanza's info files hold no key")))
        .and_then(|v| {
            serde_json::from_value(v).map_err(|e| {
                Error::Corrupt(format!(
                    "{repo_name}: the stanza's wrapped key is invalid: {e}"
                ))
            })
        })?;
    match wrapped.unwrap(pass.expose()) {
        Ok(k) => Ok(Some(k)),
        Err(pgbr_crypto::Error::WrongPassphrase) => Err(Error::WrongPassphrase {
            repo: repo_name.to_string(),
            index: opts.index,
        }),
        Err(source) => Err(Error::Crypto {
            context: format!("{repo_name}: unlocking the stanza's key"),
            source,
        }),
    }
}
