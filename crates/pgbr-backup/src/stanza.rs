//! `stanza-create`: record the cluster's identity (and, when encrypted, a new wrapped data key) in
//! the repository, so that every later command can tell its cluster from another.

use pgbr_crypto::{CipherType, DataKey, WrappedKey};
use pgbr_manifest::{ArchiveInfo, BackupInfo, CipherInfo, DbHistory};

use crate::config::{PgOptions, RepoOptions};
use crate::error::{Error, Result};
use crate::repo::{self, archive_info_path, backup_info_path, describe, load_twice, save_twice};

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
}

/// Creates `stanza` in the repository for the cluster `pg` describes (which must be running).
///
/// Refuses a repository whose stanza belongs to another cluster, and a stanza directory that holds
/// files but no info files (something else lives there).
pub async fn create(
    repo_opts: &RepoOptions,
    stanza: &str,
    pg: &PgOptions,
) -> Result<StanzaCreated> {
    let (session, ident, control) = crate::pg::connect_checked(pg).await?;
    session.close().await;
    let pg_version = ident.major();
    if control.pg_major_version() != Some(pg_version) {
        return Err(Error::ClusterMismatch(format!(
            "pg_control in {} is not from PostgreSQL {pg_version}, the version the server reports",
            pg.path.display()
        )));
    }
    let storage = repo::open_storage(repo_opts)?;
    let name = describe(repo_opts, &storage);
    let archive = load_twice(&storage, &archive_info_path(stanza), |b| {
        ArchiveInfo::from_bytes(b).map_err(|source| Error::Manifest {
            context: format!("{name}: archive.info"),
            source,
        })
    })
    .await?;
    let backup = load_twice(&storage, &backup_info_path(stanza), |b| {
        BackupInfo::from_bytes(b).map_err(|source| Error::Manifest {
            context: format!("{name}: backup.info"),
            source,
        })
    })
    .await?;
    let wanted = DbHistory {
        db_id: 1,
        system_id: ident.system_id,
        pg_version,
    };
    match (archive, backup) {
        (Some(a), Some(b)) => {
            let current = a.current_db().cloned().ok_or_else(|| {
                Error::Corrupt(format!("{name}: archive.info of stanza '{stanza}' lists no database"))
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
            // The key must unlock, and the cipher must match, or later commands would fail.
            repo::unlock(repo_opts, &name, &a.cipher)?;
            if b.current_db().map(|d| d.system_id) != Some(current.system_id) {
                return Err(Error::Corrupt(format!(
                    "{name}: backup.info and archive.info of stanza '{stanza}' disagree on the cluster"
                )));
            }
            Ok(StanzaCreated::AlreadyExists { db: current })
        }
        (None, None) => {
            for prefix in [format!("archive/{stanza}/"), format!("backup/{stanza}/")] {
                if let Some(obj) = storage.list(&prefix).await?.into_iter().next() {
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
            let backup = BackupInfo {
                stanza: stanza.to_string(),
                db_history: vec![wanted.clone()],
                cipher,
                backups: Vec::new(),
            };
            let manifest_err = |source| Error::Manifest {
                context: "info file".into(),
                source,
            };
            save_twice(&storage, &archive_info_path(stanza), archive.to_bytes().map_err(manifest_err)?)
                .await?;
            save_twice(&storage, &backup_info_path(stanza), backup.to_bytes().map_err(manifest_err)?)
                .await?;
            Ok(StanzaCreated::Created { db: wanted })
        }
        _ => Err(Error::Corrupt(format!(
            "{name}: stanza '{stanza}' has only one of archive.info and backup.info; the repository is damaged"
        ))),
    }
}

fn new_cipher_info(opts: &RepoOptions) -> Result<CipherInfo> {
    if opts.cipher_type == CipherType::None {
        return Ok(CipherInfo {
            cipher_type: CipherType::None.to_string(),
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
        cipher_type: opts.cipher_type.to_string(),
        wrapped_key: Some(
            serde_json::to_value(&wrapped)
                .map_err(|e| Error::Internal(format!("serializing the wrapped key: {e}")))?,
        ),
    })
}
