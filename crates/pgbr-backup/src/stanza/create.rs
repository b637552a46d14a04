//! `stanza-create`.

use pgbr_crypto::{CipherType, DataKey, WrappedKey};
use pgbr_manifest::{ArchiveInfo, BackupInfo, CipherInfo, DbHistory};
use pgbr_storage::Storage;

use super::{first_object_under, only_one_info, save_info_files, ClusterAndInfo, Write};
use crate::config::{PgOptions, RepoOptions};
use crate::error::{Error, Result};
use crate::layout;
use crate::repo::{self, with_stanza_claimed};

/// What `stanza-create` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StanzaCreated {
    /// New info files were written.
    Created {
        /// The cluster recorded.
        db: DbHistory,
    },
    /// The stanza already existed for this very cluster; nothing changed.
    AlreadyExists {
        /// The cluster on record.
        db: DbHistory,
    },
    /// pgBackRest wrote the repository's stanza: pgbr reads it and leaves it as it is (new
    /// backups and WAL go to the other repositories).
    PgBackRest,
}

impl StanzaCreated {
    /// One line saying what happened to `stanza` in repository `repo`.
    pub fn describe(&self, repo: &str, stanza: &str) -> String {
        match self {
            StanzaCreated::Created { db } => format!(
                "{repo}: stanza '{stanza}' created for system {} (PostgreSQL {})",
                db.system_id, db.pg_version
            ),
            StanzaCreated::AlreadyExists { .. } => format!(
                "{repo}: stanza '{stanza}' already exists for this cluster; nothing changed"
            ),
            StanzaCreated::PgBackRest => format!(
                "{repo}: stanza '{stanza}' is pgBackRest's: pgbr reads it (info, verify, restore, archive-get) and leaves it as it is"
            ),
        }
    }
}

/// Creates `stanza` in the repository for the cluster `pg` describes (which must be running).
///
/// Refuses a repository whose stanza belongs to another cluster, and a stanza directory that holds
/// files but no info files (something else lives there). A stanza-create killed between its info
/// files is finished, and a copy an interrupted write left missing or stale is written again.
/// Claims the stanza in the repository while it works (see [`crate::claim`]).
pub async fn create(
    repo_opts: &RepoOptions,
    stanza: &str,
    pg: &PgOptions,
) -> Result<StanzaCreated> {
    if repo::is_backrest_stanza(&repo::open_storage(repo_opts)?, stanza).await? {
        return Ok(StanzaCreated::PgBackRest);
    }
    with_stanza_claimed(repo_opts, stanza, "stanza-create", || {
        create_claimed(repo_opts, stanza, pg)
    })
    .await
}

async fn create_claimed(
    repo_opts: &RepoOptions,
    stanza: &str,
    pg: &PgOptions,
) -> Result<StanzaCreated> {
    let ClusterAndInfo {
        system_id,
        pg_version,
        storage,
        name,
        archive,
        backup,
    } = ClusterAndInfo::read(repo_opts, stanza, pg).await?;
    let wanted = DbHistory {
        db_id: 1,
        system_id,
        pg_version,
    };
    match (archive, backup) {
        (Some(archive), backup) => {
            let current = existing_cluster(repo_opts, stanza, &name, &archive, &wanted, pg)?;
            finish_existing(&storage, stanza, &name, archive, backup, &current).await?;
            Ok(StanzaCreated::AlreadyExists { db: current })
        }
        (None, None) => {
            for dir in [
                layout::stanza_archive_dir(stanza),
                layout::stanza_backup_dir(stanza),
            ] {
                if let Some(obj) = first_object_under(&storage, &dir).await? {
                    return Err(Error::Corrupt(format!(
                        "{name}: stanza '{stanza}' has no info files but its directory is not empty ({}); move those files away or use another repository",
                        obj.path
                    )));
                }
            }
            let cipher = new_cipher_info(repo_opts)?;
            let archive = ArchiveInfo {
                stanza: stanza.to_string(),
                db_history: vec![wanted.clone()],
                cipher: cipher.clone(),
            };
            let backup = empty_backup_info(&archive);
            save_info_files(
                &storage,
                stanza,
                (&archive, Write::Replace),
                (&backup, Write::Replace),
                || {
                    crate::failpoints::crash_point!("stanza-create::after-archive-info");
                },
            )
            .await?;
            Ok(StanzaCreated::Created { db: wanted })
        }
        (None, Some(_)) => Err(only_one_info(&name, stanza)),
    }
}

/// Finishes a stanza-create killed between its two info files (unless backup.info was lost from
/// a stanza in use: then it is damaged), and writes again a copy an interrupted write left
/// missing or stale.
async fn finish_existing(
    storage: &Storage,
    stanza: &str,
    name: &str,
    archive: ArchiveInfo,
    backup: Option<BackupInfo>,
    current: &DbHistory,
) -> Result<()> {
    let backup = match backup {
        Some(backup) => {
            if backup.current_db().map(|d| d.system_id) != Some(current.system_id) {
                return Err(Error::Corrupt(format!(
                    "{name}: backup.info and archive.info of stanza '{stanza}' disagree on the cluster"
                )));
            }
            backup
        }
        None => {
            let in_use = first_object_under(storage, &layout::stanza_backup_dir(stanza)).await?;
            if archive.db_history.len() != 1 || in_use.is_some() {
                return Err(only_one_info(name, stanza));
            }
            empty_backup_info(&archive)
        }
    };
    save_info_files(
        storage,
        stanza,
        (&archive, Write::Heal),
        (&backup, Write::Heal),
        || {},
    )
    .await
}

/// The cluster an existing stanza records, checked against the running one (`wanted`) and the
/// passphrase: stanza-create never takes over another cluster's stanza, nor leaves one its key
/// does not unlock.
fn existing_cluster(
    repo_opts: &RepoOptions,
    stanza: &str,
    name: &str,
    archive: &ArchiveInfo,
    wanted: &DbHistory,
    pg: &PgOptions,
) -> Result<DbHistory> {
    let current = archive.current_db().cloned().ok_or_else(|| {
        Error::Corrupt(format!(
            "{name}: archive.info of stanza '{stanza}' lists no database"
        ))
    })?;
    if current.system_id != wanted.system_id || current.pg_version != wanted.pg_version {
        return Err(Error::ClusterMismatch(format!(
            "{name}: stanza '{stanza}' belongs to database system {} (PostgreSQL {}), not to the cluster in {} (system {}, PostgreSQL {}); use another stanza or repository",
            current.system_id,
            current.pg_version,
            pg.path.display(),
            wanted.system_id,
            wanted.pg_version
        )));
    }
    repo::unlock(repo_opts, name, &archive.cipher)?;
    Ok(current)
}

fn new_cipher_info(opts: &RepoOptions) -> Result<CipherInfo> {
    if opts.cipher_type == CipherType::None {
        return Ok(CipherInfo {
            cipher_type: pgbr_manifest::Cipher::None,
            wrapped_key: None,
        });
    }
    let pass = opts.cipher_pass.as_ref().ok_or_else(|| {
        Error::config(format!(
            "option '{}-cipher-pass' is required when '{}-cipher-type' is {}",
            opts.name(),
            opts.name(),
            opts.cipher_type
        ))
    })?;
    let key = DataKey::generate();
    let wrapped = WrappedKey::wrap(pass.expose(), &key).map_err(|source| Error::Crypto {
        context: "wrapping the stanza's data key".into(),
        source,
    })?;
    Ok(CipherInfo {
        cipher_type: crate::codecs::cipher(opts.cipher_type),
        wrapped_key: Some(
            serde_json::to_value(&wrapped)
                .map_err(|e| Error::Internal(format!("serializing the wrapped key: {e}")))?,
        ),
    })
}

/// The backup.info of a new stanza: the cluster history and cipher of its archive.info, no backup.
fn empty_backup_info(archive: &ArchiveInfo) -> BackupInfo {
    BackupInfo {
        stanza: archive.stanza.clone(),
        db_history: archive.db_history.clone(),
        cipher: archive.cipher.clone(),
        backups: Vec::new(),
    }
}
