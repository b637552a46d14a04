//! An opened repository: its storage, the stanza's info files and the unlocked data key.
//!
//! Layout (docs/format.md): `archive/<stanza>/archive.info`, `archive/<stanza>/<pg>-<db-id>/...`,
//! `backup/<stanza>/backup.info`, `backup/<stanza>/<label>/backup.manifest` and the backup's files.
//! Every info file and manifest is written twice (`name`, then `name.copy`); readers take the first
//! copy that verifies.

use bytes::Bytes;
use pgbr_crypto::{CipherType, DataKey, WrappedKey};
use pgbr_manifest::{
    ArchiveInfo, BackupInfo, BackupSummary, Checksum, CipherInfo, DbHistory, Manifest,
};
use pgbr_storage::{CompressType, Storage};

use crate::claim::object::Claim;
use crate::codecs;
use crate::config::{CloudOptions, RepoOptions, RepoType};
use crate::error::{Error, Result};
use crate::layout;
use crate::lock::Lock;

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// zstd level of stored manifests.
const MANIFEST_LEVEL: i32 = 3;

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
    /// The stanza's claim in the repository, once such a command has taken it.
    pub(crate) claim: Option<Claim>,
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
            claim: None,
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
        let backup_info = load_twice(&storage, &layout::backup_info(stanza), |b| {
            BackupInfo::from_bytes(b).map_err(|source| Error::Manifest {
                context: format!("{repo_name}: backup.info of stanza '{stanza}'"),
                source,
            })
        })
        .await?;
        let archive_info = load_twice(&storage, &layout::archive_info(stanza), |b| {
            ArchiveInfo::from_bytes(b).map_err(|source| Error::Manifest {
                context: format!("{repo_name}: archive.info of stanza '{stanza}'"),
                source,
            })
        })
        .await?;
        let (backup_info, archive_info) = match (backup_info, archive_info) {
            (Some(backup), Some(archive)) => (backup, archive),
            (None, None) => {
                return Err(Error::StanzaMissing {
                    stanza: stanza.to_string(),
                    repo: repo_name,
                })
            }
            // One info file without the other is a damaged stanza, not a missing one.
            (backup, _) => {
                let (missing, present) = match backup {
                    None => (layout::backup_info(stanza), layout::archive_info(stanza)),
                    Some(_) => (layout::archive_info(stanza), layout::backup_info(stanza)),
                };
                return Err(Error::Corrupt(format!(
                    "{repo_name}: {missing} is missing (and its copy) while {present} exists: stanza '{stanza}' is damaged, or its stanza-create or stanza-delete was interrupted. Run 'pgbr --stanza={stanza} stanza-create' to finish creating it, or stanza-delete to finish deleting it"
                )));
            }
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
            claim: None,
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

    /// Claims the stanza in the repository for `command` (see [`crate::claim`]) unless this
    /// handle already holds the claim; returns whether it took it now. The claim is held until
    /// [`Repository::release_claim`]. `backup` and `expire` call this themselves (and release
    /// what they took); a caller running both under one claim takes it first.
    pub async fn claim(&mut self, command: &str) -> Result<bool> {
        if self.claim.is_some() {
            return Ok(false);
        }
        let name = self.name();
        self.claim = Some(Claim::take(&self.storage, &name, &self.stanza, command).await?);
        Ok(true)
    }

    /// Removes the stanza's claim this handle holds, if any.
    pub async fn release_claim(&mut self) -> Result<()> {
        match self.claim.take() {
            Some(c) => c.release().await,
            None => Ok(()),
        }
    }

    /// Whether this handle holds the stanza's claim.
    pub fn is_claimed(&self) -> bool {
        self.claim.is_some()
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
            .filter_map(|b| Some((b.label.clone(), codecs::compress_type(b.compress_type?))))
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
        layout::backup_dir(&self.stanza, label)
    }

    /// Decrypts, decompresses and parses a stored manifest; `what` names it in errors.
    ///
    /// Manifests are stored compressed with zstd (a big one is mostly block maps, which shrink
    /// about threefold); one that starts with `{` is read as it is. The text is parsed as it is
    /// decompressed ([`Manifest::from_reader`]), never held whole: a manifest of 1,000,000
    /// files loads in 0.7 s and 224 MiB this way, against 1.6 s and 678 MiB decompressed whole
    /// (`cargo bench --bench manifest`).
    pub(crate) fn open_manifest(&self, raw: &[u8], what: &str) -> Result<Manifest> {
        self.open_manifest_with_checksum(raw, what).map(|(m, _)| m)
    }

    /// [`Repository::open_manifest`], also returning the manifest's checksum (the one
    /// `backup.info` records for a committed backup).
    pub(crate) fn open_manifest_with_checksum(
        &self,
        raw: &[u8],
        what: &str,
    ) -> Result<(Manifest, Checksum)> {
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
            Manifest::from_reader_with_checksum(text)
        } else {
            Manifest::from_bytes_with_checksum(&plain)
        };
        loaded.map_err(|source| Error::Manifest {
            context: format!("{}: {what}", self.name()),
            source,
        })
    }

    /// Serializes, compresses and encrypts a manifest for storing (see
    /// [`Repository::open_manifest`]); also returns the manifest's checksum.
    fn close_manifest(&self, manifest: &Manifest, what: &str) -> Result<(Vec<u8>, Checksum)> {
        // Serialized straight into the compressor: a manifest of many files is never held
        // uncompressed.
        let compress_err = |e| Error::Internal(format!("compressing the {what}: {e}"));
        let w = pgbr_storage::CompressWriter::new(CompressType::Zst, MANIFEST_LEVEL, Vec::new())
            .map_err(compress_err)?;
        let (w, checksum) =
            manifest
                .write_to_with_checksum(w)
                .map_err(|source| Error::Manifest {
                    context: what.to_string(),
                    source,
                })?;
        let compressed = w.finish().map_err(compress_err)?;
        Ok((self.seal(compressed)?, checksum))
    }

    /// Loads and verifies the manifest of backup `label` (first copy that verifies). For a
    /// backup listed in `backup.info`, a copy verifies only if it is the manifest committed
    /// under that label (see [`check_bound`]): a restore never reads another backup's files
    /// for the one asked for.
    pub async fn load_manifest(&self, label: &str) -> Result<Manifest> {
        self.load_manifest_with_checksum(label)
            .await
            .map(|(m, _)| m)
    }

    /// [`Repository::load_manifest`], also returning the manifest's checksum.
    pub(crate) async fn load_manifest_with_checksum(
        &self,
        label: &str,
    ) -> Result<(Manifest, Checksum)> {
        let path = layout::manifest(&self.backup_path(label));
        let name = self.name();
        let listed = self.backup_info.backup(label);
        let m = load_twice(&self.storage, &path, |raw| {
            let what = format!("manifest of backup {label}");
            let (m, checksum) = self.open_manifest_with_checksum(raw, &what)?;
            match listed {
                Some(summary) => check_bound(&self.backup_info, summary, &m, &checksum)
                    .map_err(|why| {
                        Error::Corrupt(format!(
                            "{name}: the manifest in {path} is not the one committed as backup {label}: {why}. The backup's directory was replaced or damaged; run 'pgbr verify', restore another backup with --set"
                        ))
                    })?,
                None if m.backup.label != label => {
                    return Err(Error::Corrupt(format!(
                        "{name}: {path} is the manifest of backup {}, not {label}",
                        m.backup.label
                    )))
                }
                None => {}
            }
            Ok((m, checksum))
        })
        .await?;
        m.ok_or_else(|| {
            Error::BackupMissing(format!(
                "{name}: backup {label} has no manifest (it is not a complete backup)"
            ))
        })
    }

    /// Writes `manifest` for backup `label`: this commits the backup. Returns the bytes written
    /// and the manifest's checksum (for its `backup.info` entry).
    pub(crate) async fn save_manifest(
        &self,
        label: &str,
        manifest: &Manifest,
    ) -> Result<(u64, Checksum)> {
        let (sealed, checksum) =
            self.close_manifest(manifest, &format!("manifest of backup {label}"))?;
        let len = sealed.len() as u64;
        let path = layout::manifest(&self.backup_path(label));
        save_twice(&self.storage, &path, sealed).await?;
        Ok((len * 2, checksum))
    }

    /// Finishes the commit of backup `label`, which a killed backup left committed (a manifest
    /// copy verifies) but not listed: the manifest copy not written yet is written from the
    /// other, and the in-progress manifest goes.
    pub(crate) async fn finish_commit(&self, label: &str) -> Result<()> {
        let path = layout::manifest(&self.backup_path(label));
        let copy = layout::copy_of(&path);
        match (
            self.storage.get_opt(&path).await?,
            self.storage.get_opt(&copy).await?,
        ) {
            (Some(b), None) => self.storage.put(&copy, b).await?,
            (None, Some(b)) => self.storage.put(&path, b).await?,
            _ => {}
        }
        let inprogress = layout::inprogress(&self.backup_path(label));
        if self.storage.exists(&inprogress).await? {
            self.storage.delete(&inprogress).await?;
        }
        Ok(())
    }

    /// Writes the in-progress manifest of backup `label` (not a commit: see [`layout::INPROGRESS_FILE`]).
    pub(crate) async fn save_inprogress(&self, label: &str, manifest: &Manifest) -> Result<()> {
        let (sealed, _) =
            self.close_manifest(manifest, &format!("in-progress manifest of backup {label}"))?;
        let path = layout::inprogress(&self.backup_path(label));
        self.storage.put(&path, Bytes::from(sealed)).await?;
        Ok(())
    }

    /// Reads the in-progress manifest of an interrupted backup; `None` if it is absent or does not
    /// verify (such a backup cannot be resumed).
    pub(crate) async fn load_inprogress(&self, label: &str) -> Result<Option<Manifest>> {
        let path = layout::inprogress(&self.backup_path(label));
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
        save_twice(&self.storage, &layout::backup_info(&self.stanza), bytes).await
    }
}

/// Whether manifest `m` (checksum `checksum`) is the one committed as `summary` in `info`:
/// same label, type, prior, references and database, the database's cluster, and the
/// checksum `backup.info` recorded (entries written before it was recorded have none). The
/// error says what differs.
pub(crate) fn check_bound(
    info: &BackupInfo,
    summary: &BackupSummary,
    m: &Manifest,
    checksum: &Checksum,
) -> std::result::Result<(), String> {
    let b = &m.backup;
    if b.label != summary.label {
        return Err(format!("it is the manifest of backup {}", b.label));
    }
    let differs = |what: &str, found: String, listed: String| {
        Err(format!(
            "its {what} is {found}, backup.info records {listed}"
        ))
    };
    if b.backup_type != summary.backup_type {
        return differs(
            "type",
            b.backup_type.to_string(),
            summary.backup_type.to_string(),
        );
    }
    if b.prior != summary.prior {
        let show = |p: &Option<String>| p.clone().unwrap_or_else(|| "none".into());
        return differs("prior backup", show(&b.prior), show(&summary.prior));
    }
    if b.references != summary.references {
        return differs(
            "list of referenced backups",
            b.references.join(","),
            summary.references.join(","),
        );
    }
    if b.db_id != summary.db_id {
        return differs("db-id", b.db_id.to_string(), summary.db_id.to_string());
    }
    if let Some(db) = info.db_history.iter().find(|d| d.db_id == b.db_id) {
        if (b.system_id, b.pg_version) != (db.system_id, db.pg_version) {
            return differs(
                "cluster",
                format!("system {} PostgreSQL {}", b.system_id, b.pg_version),
                format!("system {} PostgreSQL {}", db.system_id, db.pg_version),
            );
        }
    }
    match &summary.manifest_checksum {
        Some(recorded) if recorded != checksum => {
            differs("checksum", checksum.to_string(), recorded.to_string())
        }
        _ => Ok(()),
    }
}

/// Unlocks the stanza's data key with the repository passphrase.
pub(crate) fn unlock(
    opts: &RepoOptions,
    repo_name: &str,
    cipher: &CipherInfo,
) -> Result<Option<DataKey>> {
    let stored = codecs::cipher_type(cipher.cipher_type);
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

#[cfg(test)]
mod tests {
    use super::*;
    use pgbr_manifest::{new_label, BackupType, PathEntry, Target};

    fn manifest(label: &str, files_note: &str) -> Manifest {
        let mut m = Manifest {
            targets: vec![Target {
                name: "pg_data".into(),
                path: "/var/lib/postgresql/15/main".into(),
                tablespace_oid: None,
                tablespace_name: None,
            }],
            paths: vec![PathEntry {
                target: "pg_data".into(),
                name: String::new(),
                mode: 0o700,
            }],
            ..Manifest::default()
        };
        m.backup.label = label.into();
        m.backup.backup_type = BackupType::Full;
        m.backup.db_id = 1;
        m.backup.system_id = 7;
        m.backup.pg_version = 15;
        m.backup.backup_label = files_note.into();
        m
    }

    fn repository() -> Repository {
        let db = DbHistory {
            db_id: 1,
            system_id: 7,
            pg_version: 15,
        };
        let cipher = CipherInfo {
            cipher_type: pgbr_manifest::Cipher::None,
            wrapped_key: None,
        };
        Repository {
            storage: Storage::memory(),
            opts: RepoOptions::posix("/test"),
            stanza: "main".into(),
            key: None,
            backup_info: BackupInfo {
                stanza: "main".into(),
                db_history: vec![db.clone()],
                cipher: cipher.clone(),
                backups: Vec::new(),
            },
            archive_info: ArchiveInfo {
                stanza: "main".into(),
                db_history: vec![db],
                cipher,
            },
            lock: None,
            claim: None,
        }
    }

    #[tokio::test]
    async fn a_manifest_is_read_only_as_the_one_committed_under_its_label() {
        let mut repo = repository();
        let (a, b) = (
            new_label(BackupType::Full, None, 1_795_641_390),
            new_label(BackupType::Full, None, 1_795_645_000),
        );
        let committed = manifest(&a, "as committed");
        let (_, checksum) = repo.save_manifest(&a, &committed).await.expect("save");
        repo.backup_info
            .backups
            .push(BackupSummary::from_manifest(&committed, checksum));
        assert_eq!(repo.load_manifest(&a).await.expect("load"), committed);

        // Another manifest under the same label, valid in itself: its checksum differs.
        repo.save_manifest(&a, &manifest(&a, "replaced"))
            .await
            .expect("save");
        let err = repo.load_manifest(&a).await.expect_err("replaced");
        assert!(
            matches!(&err, Error::Corrupt(m) if m.contains("not the one committed") && m.contains("checksum")),
            "{err}"
        );
        // An entry written before checksums were recorded is checked on the rest.
        repo.backup_info.backups[0].manifest_checksum = None;
        repo.load_manifest(&a).await.expect("no checksum recorded");
        // Another backup's manifest under this label.
        repo.save_manifest(&a, &manifest(&b, "another"))
            .await
            .expect("save");
        let err = repo.load_manifest(&a).await.expect_err("another backup's");
        assert!(
            matches!(&err, Error::Corrupt(m) if m.contains(&format!("manifest of backup {b}"))),
            "{err}"
        );
        // A manifest of another cluster under the same label and database.
        let mut other = manifest(&a, "as committed");
        other.backup.system_id = 8;
        repo.save_manifest(&a, &other).await.expect("save");
        let err = repo.load_manifest(&a).await.expect_err("another cluster's");
        assert!(
            matches!(&err, Error::Corrupt(m) if m.contains("system 8")),
            "{err}"
        );
    }
}
