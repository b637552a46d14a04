//! An opened repository: its storage, the stanza's info files and the unlocked data key.
//!
//! Layout (docs/format.md): `archive/<stanza>/archive.info`, `archive/<stanza>/<pg>-<db-id>/...`,
//! `backup/<stanza>/backup.info`, `backup/<stanza>/<label>/backup.manifest` and the backup's files.
//! Every info file and manifest is written twice (`name`, then `name.copy`); readers take the first
//! copy that verifies.

mod backrest;
mod key;
mod manifests;
mod storage;
#[cfg(test)]
mod tests;

use pgbr_crypto::{CipherType, DataKey};
use pgbr_manifest::{ArchiveInfo, BackupInfo, DbHistory};
use pgbr_storage::{CompressType, Storage};

use crate::claim::Claim;
use crate::codecs;
use crate::config::RepoOptions;
use crate::error::{Error, Result};
use crate::layout;
use crate::lock::Lock;

pub(crate) use backrest::{
    decode_reader, decrypt as backrest_decrypt, is_backrest_stanza, sha1_copy, stored_at,
    BackrestKeys,
};
pub(crate) use key::unlock;
pub(crate) use manifests::check_bound;
pub use storage::open_storage;
pub(crate) use storage::{describe, load_twice, save_twice};

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
    /// Set when pgBackRest wrote the repository: its passphrases (see [`backrest`]).
    pub(crate) backrest: Option<BackrestKeys>,
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
            backrest: self.backrest.clone(),
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
        // pgBackRest's info files stand where pgbr's do: `None` for one of those.
        let backup_info = load_twice(&storage, &layout::backup_info(stanza), |b| {
            if backrest::is_backrest(b) {
                return Ok(None);
            }
            BackupInfo::from_bytes(b)
                .map(Some)
                .map_err(|source| Error::Manifest {
                    context: format!("{repo_name}: backup.info of stanza '{stanza}'"),
                    source,
                })
        })
        .await?;
        if matches!(backup_info, Some(None)) {
            return Self::open_backrest(storage, opts, stanza, repo_name).await;
        }
        let backup_info = backup_info.flatten();
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
            backrest: None,
        })
    }

    async fn open_backrest(
        storage: Storage,
        opts: &RepoOptions,
        stanza: &str,
        repo_name: String,
    ) -> Result<Repository> {
        let Some((backup, archive)) =
            backrest::open_infos(&storage, opts, &repo_name, stanza).await?
        else {
            return Err(Error::StanzaMissing {
                stanza: stanza.to_string(),
                repo: repo_name,
            });
        };
        Ok(Repository {
            storage,
            opts: opts.clone(),
            stanza: stanza.to_string(),
            key: None,
            backup_info: backup.info,
            archive_info: archive.info,
            lock: None,
            claim: None,
            backrest: Some(BackrestKeys {
                backup_pass: backup.cipher_pass,
                archive_pass: archive.cipher_pass,
            }),
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
        self.refuse_backrest(command)?;
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

    /// Releases the claim this handle took for a command (`took`) that ends with `result`: a
    /// claim that cannot be removed is left for the next command to take over, with a warning.
    pub(crate) async fn release_claim_if<T>(&mut self, took: bool, result: Result<T>) -> Result<T> {
        if took {
            if let Some(claim) = self.claim.take() {
                claim.release_or_warn().await;
            }
        }
        result
    }
}

/// Runs `run` with `stanza` claimed in the repository `repo_opts` describes (for `command`), then
/// releases the claim: the stanza commands, which work without a [`Repository`].
pub(crate) async fn with_stanza_claimed<T, F>(
    repo_opts: &RepoOptions,
    stanza: &str,
    command: &str,
    run: impl FnOnce() -> F,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let storage = open_storage(repo_opts)?;
    let repo = describe(repo_opts, &storage);
    backrest::refuse_written_by_backrest(&storage, &repo, stanza, command).await?;
    let claim = Claim::take(&storage, &repo, stanza, command).await?;
    let result = run().await;
    claim.release_or_warn().await;
    result
}
