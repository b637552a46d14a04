//! The stanza commands.
//!
//! `stanza-create` ([`create`]): record the cluster's identity (and, when encrypted, a new wrapped
//! data key) in the repository, so that every later command can tell its cluster from another.
//! `stanza-upgrade` ([`upgrade`]): record the cluster's new identity after `pg_upgrade` (a new
//! database history entry, so new WAL goes to a new archive id while old backups stay listed and
//! restorable). `stanza-delete` ([`delete`]): remove a stopped stanza and everything it holds.
//! [`all`] runs them from a [`crate::config::Config`] over every repository.

pub mod all;
mod create;
mod delete;
mod upgrade;

pub use crate::config::DeleteOptions;
pub use create::{create, StanzaCreated};
pub use delete::{delete, StanzaDeleted};
pub(crate) use upgrade::check_upgrade_finished;
pub use upgrade::{upgrade, StanzaUpgraded};

use pgbr_manifest::{ArchiveInfo, BackupInfo};
use pgbr_storage::{ObjectInfo, Storage};

use crate::config::{PgOptions, RepoOptions};
use crate::error::{Error, Result};
use crate::layout;
use crate::repo::{self, describe, load_twice, save_twice};

fn only_one_info(name: &str, stanza: &str) -> Error {
    Error::Corrupt(format!(
        "{name}: stanza '{stanza}' has only one of archive.info and backup.info; the repository is damaged"
    ))
}

/// Writes `path` and its copy again unless both hold exactly `bytes`: a write killed between
/// the two leaves the copy missing or stale, and nothing else would ever rewrite it.
async fn heal_twice(storage: &Storage, path: &str, bytes: Vec<u8>) -> Result<()> {
    let copy = layout::copy_of(path);
    let holds = |found: Option<bytes::Bytes>| found.is_some_and(|b| b[..] == bytes[..]);
    if holds(storage.get_opt(path).await?) && holds(storage.get_opt(&copy).await?) {
        return Ok(());
    }
    tracing::warn!("{path} or its copy was missing or stale (an interrupted write): written again");
    save_twice(storage, path, bytes).await
}

fn manifest_err(what: &str) -> impl Fn(pgbr_manifest::Error) -> Error + '_ {
    move |source| Error::Manifest {
        context: what.to_string(),
        source,
    }
}

/// What stanza-create and stanza-upgrade both start from: the running cluster's identity (checked
/// against its pg_control) and the stanza's info files as the repository holds them.
struct ClusterAndInfo {
    system_id: u64,
    pg_version: u32,
    storage: Storage,
    /// The repository, as error messages name it.
    name: String,
    archive: Option<ArchiveInfo>,
    backup: Option<BackupInfo>,
}

impl ClusterAndInfo {
    async fn read(repo_opts: &RepoOptions, stanza: &str, pg: &PgOptions) -> Result<Self> {
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
        let archive = load_twice(&storage, &layout::archive_info(stanza), |b| {
            ArchiveInfo::from_bytes(b).map_err(manifest_err(&format!("{name}: archive.info")))
        })
        .await?;
        let backup = load_twice(&storage, &layout::backup_info(stanza), |b| {
            BackupInfo::from_bytes(b).map_err(manifest_err(&format!("{name}: backup.info")))
        })
        .await?;
        Ok(Self {
            system_id: ident.system_id,
            pg_version,
            storage,
            name,
            archive,
            backup,
        })
    }
}

/// The first object under the stanza's directory `dir` other than the stanza's claim (the
/// running command's own), if any.
async fn first_object_under(storage: &Storage, dir: &str) -> Result<Option<ObjectInfo>> {
    let objects = storage.list(&layout::under(dir)).await?;
    Ok(objects
        .into_iter()
        .find(|o| !crate::claim::is_claim_name(o.path.rsplit('/').next().unwrap_or_default())))
}

/// How [`save_info_files`] writes one info file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Replaces the file and its copy.
    Replace,
    /// Leaves the file and its copy as they are when both hold these bytes, else writes them
    /// again ([`heal_twice`]).
    Heal,
}

/// Writes both info files of a stanza, `archive.info` first, each as `how` says;
/// `between_files` runs between the two (a test's crash point).
async fn save_info_files(
    storage: &Storage,
    stanza: &str,
    (archive, archive_how): (&ArchiveInfo, Write),
    (backup, backup_how): (&BackupInfo, Write),
    between_files: impl FnOnce(),
) -> Result<()> {
    let err = manifest_err("info file");
    let archive_bytes = archive.to_bytes().map_err(&err)?;
    let backup_bytes = backup.to_bytes().map_err(&err)?;
    let write = |key: String, bytes: Vec<u8>, how: Write| async move {
        match how {
            Write::Replace => save_twice(storage, &key, bytes).await,
            Write::Heal => heal_twice(storage, &key, bytes).await,
        }
    };
    write(layout::archive_info(stanza), archive_bytes, archive_how).await?;
    between_files();
    write(layout::backup_info(stanza), backup_bytes, backup_how).await
}
