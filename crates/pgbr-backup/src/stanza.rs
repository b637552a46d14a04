//! `stanza-create`: record the cluster's identity (and, when encrypted, a new wrapped data key) in
//! the repository, so that every later command can tell its cluster from another.
//! `stanza-upgrade`: record the cluster's new identity after `pg_upgrade` (a new database history
//! entry, so new WAL goes to a new archive id while old backups stay listed and restorable).
//! `stanza-delete`: remove a stopped stanza and everything it holds.

use std::path::Path;

use pgbr_crypto::{CipherType, DataKey, WrappedKey};
use pgbr_manifest::{ArchiveInfo, BackupInfo, CipherInfo, DbHistory};
use pgbr_storage::Storage;

use crate::claim::with_stanza_claimed;
pub use crate::config::DeleteOptions;
use crate::config::{PgOptions, RepoOptions};
use crate::error::{Error, Result};
use crate::layout;
use crate::repo::{self, describe, load_twice, save_twice};

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
/// files but no info files (something else lives there). A stanza-create killed between its info
/// files is finished, and a copy an interrupted write left missing or stale is written again.
/// Claims the stanza in the repository while it works (see [`crate::claim`]).
pub async fn create(
    repo_opts: &RepoOptions,
    stanza: &str,
    pg: &PgOptions,
) -> Result<StanzaCreated> {
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
        (Some(a), backup) => {
            let current = existing_cluster(repo_opts, stanza, &name, &a, &wanted, pg)?;
            let manifest_err = manifest_err("info file");
            let Some(b) = backup else {
                // Killed between its two info files: the stanza-create is finished, unless
                // backup.info was lost from a stanza in use (then it is damaged).
                // The stanza's claim (this command's) does not make it in use.
                let in_use = storage
                    .list(&layout::under(&layout::stanza_backup_dir(stanza)))
                    .await?
                    .into_iter()
                    .find(|o| {
                        !crate::claim::is_claim_name(o.path.rsplit('/').next().unwrap_or_default())
                    });
                if a.db_history.len() != 1 || in_use.is_some() {
                    return Err(only_one_info(&name, stanza));
                }
                let backup = BackupInfo {
                    stanza: stanza.to_string(),
                    db_history: a.db_history.clone(),
                    cipher: a.cipher.clone(),
                    backups: Vec::new(),
                };
                heal_twice(
                    &storage,
                    &layout::archive_info(stanza),
                    a.to_bytes().map_err(&manifest_err)?,
                )
                .await?;
                save_twice(
                    &storage,
                    &layout::backup_info(stanza),
                    backup.to_bytes().map_err(&manifest_err)?,
                )
                .await?;
                return Ok(StanzaCreated::Created { db: current });
            };
            if b.current_db().map(|d| d.system_id) != Some(current.system_id) {
                return Err(Error::Corrupt(format!(
                    "{name}: backup.info and archive.info of stanza '{stanza}' disagree on the cluster"
                )));
            }
            // A copy an interrupted write left missing or stale is written again.
            heal_twice(
                &storage,
                &layout::archive_info(stanza),
                a.to_bytes().map_err(&manifest_err)?,
            )
            .await?;
            heal_twice(
                &storage,
                &layout::backup_info(stanza),
                b.to_bytes().map_err(&manifest_err)?,
            )
            .await?;
            Ok(StanzaCreated::AlreadyExists { db: current })
        }
        (None, None) => {
            for dir in [
                layout::stanza_archive_dir(stanza),
                layout::stanza_backup_dir(stanza),
            ] {
                let prefix = layout::under(&dir);
                // The stanza's claim (this command's) is no stranger.
                let strangers = storage.list(&prefix).await?.into_iter().filter(|o| {
                    !crate::claim::is_claim_name(o.path.rsplit('/').next().unwrap_or_default())
                });
                if let Some(obj) = strangers.into_iter().next() {
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
            save_twice(
                &storage,
                &layout::archive_info(stanza),
                archive.to_bytes().map_err(manifest_err)?,
            )
            .await?;
            crate::failpoints::crash_point!("stanza-create::after-archive-info");
            save_twice(
                &storage,
                &layout::backup_info(stanza),
                backup.to_bytes().map_err(manifest_err)?,
            )
            .await?;
            Ok(StanzaCreated::Created { db: wanted })
        }
        (None, Some(_)) => Err(only_one_info(&name, stanza)),
    }
}

fn only_one_info(name: &str, stanza: &str) -> Error {
    Error::Corrupt(format!(
        "{name}: stanza '{stanza}' has only one of archive.info and backup.info; the repository is damaged"
    ))
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

/// What `stanza-upgrade` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StanzaUpgraded {
    /// A new database history entry was appended to archive.info and backup.info.
    Upgraded {
        /// The cluster the stanza backed up until now.
        from: DbHistory,
        /// The cluster recorded now (the stanza's current database).
        to: DbHistory,
    },
    /// The stanza already records this cluster; nothing changed.
    AlreadyUpToDate {
        /// The cluster on record.
        db: DbHistory,
    },
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

/// `stanza-upgrade`: after `pg_upgrade` (or when the stanza's cluster was replaced), records the
/// cluster `pg` describes (which must be running) as the stanza's new current database: a history
/// entry with `db_id` one above the highest so far is appended to `archive.info` and then to
/// `backup.info` (each written twice). New WAL then goes to archive id `<version>-<db_id>`; the
/// old backups and WAL stay where they are, listed and restorable.
///
/// Takes the stanza lock in `lock_path` (refused while the stanza is stopped) and claims the
/// stanza in the repository. A stanza that already records this cluster is
/// [`StanzaUpgraded::AlreadyUpToDate`]; an upgrade interrupted between the two info files is
/// completed.
pub async fn upgrade(
    repo_opts: &RepoOptions,
    stanza: &str,
    pg: &PgOptions,
    lock_path: &Path,
) -> Result<StanzaUpgraded> {
    let _lock = crate::lock::Lock::acquire(lock_path, stanza)?;
    with_stanza_claimed(repo_opts, stanza, "stanza-upgrade", || {
        upgrade_claimed(repo_opts, stanza, pg)
    })
    .await
}

async fn upgrade_claimed(
    repo_opts: &RepoOptions,
    stanza: &str,
    pg: &PgOptions,
) -> Result<StanzaUpgraded> {
    let found = ClusterAndInfo::read(repo_opts, stanza, pg).await?;
    let (system_id, pg_version) = (found.system_id, found.pg_version);
    let (storage, name) = (found.storage, found.name);
    let (Some(mut archive), Some(mut backup)) = (found.archive, found.backup) else {
        return Err(Error::StanzaMissing {
            stanza: stanza.to_string(),
            repo: name,
        });
    };
    // The key must unlock: an upgrade must not make the stanza unusable.
    repo::unlock(repo_opts, &name, &archive.cipher)?;
    let same = |d: &DbHistory| d.system_id == system_id && d.pg_version == pg_version;
    let lists_nothing = || {
        Error::Corrupt(format!(
            "{name}: an info file of stanza '{stanza}' lists no database"
        ))
    };
    let archive_current = archive.current_db().cloned().ok_or_else(lists_nothing)?;
    let backup_current = backup.current_db().cloned().ok_or_else(lists_nothing)?;
    let archive_bytes = |a: &ArchiveInfo| {
        a.to_bytes()
            .map_err(manifest_err(&format!("{name}: archive.info")))
    };
    if same(&archive_current) && same(&backup_current) {
        // A copy an interrupted upgrade left stale is written again.
        heal_twice(
            &storage,
            &layout::archive_info(stanza),
            archive_bytes(&archive)?,
        )
        .await?;
        let bytes = backup
            .to_bytes()
            .map_err(manifest_err(&format!("{name}: backup.info")))?;
        heal_twice(&storage, &layout::backup_info(stanza), bytes).await?;
        return Ok(StanzaUpgraded::AlreadyUpToDate {
            db: archive_current,
        });
    }
    // One info file may already hold the new entry (an interrupted upgrade): reuse its id.
    let from = if same(&archive_current) {
        backup_current.clone()
    } else {
        archive_current.clone()
    };
    let db_id = if same(&archive_current) {
        archive_current.db_id
    } else if same(&backup_current) {
        backup_current.db_id
    } else {
        archive
            .db_history
            .iter()
            .chain(&backup.db_history)
            .map(|d| d.db_id)
            .max()
            .unwrap_or(0)
            + 1
    };
    let to = DbHistory {
        db_id,
        system_id,
        pg_version,
    };
    if !same(&archive_current) {
        archive.db_history.push(to.clone());
        save_twice(
            &storage,
            &layout::archive_info(stanza),
            archive_bytes(&archive)?,
        )
        .await?;
    } else {
        heal_twice(
            &storage,
            &layout::archive_info(stanza),
            archive_bytes(&archive)?,
        )
        .await?;
    }
    crate::failpoints::crash_point!("stanza-upgrade::after-archive-info");
    if !same(&backup_current) {
        backup.db_history.push(to.clone());
        let bytes = backup
            .to_bytes()
            .map_err(manifest_err(&format!("{name}: backup.info")))?;
        save_twice(&storage, &layout::backup_info(stanza), bytes).await?;
    }
    Ok(StanzaUpgraded::Upgraded { from, to })
}

/// Refuses to record a backup while a stanza-upgrade is unfinished (archive.info names a
/// cluster backup.info does not): backup.info would list a backup of a database its history
/// lacks, and no command could read it any more.
pub(crate) fn check_upgrade_finished(repo: &repo::Repository) -> Result<()> {
    let (archive, backup) = (
        repo.archive_info().current_db(),
        repo.backup_info().current_db(),
    );
    if archive == backup {
        return Ok(());
    }
    let describe = |d: Option<&DbHistory>| {
        d.map_or("no database".to_string(), |d| {
            format!("db-id {} (system {})", d.db_id, d.system_id)
        })
    };
    Err(Error::ClusterMismatch(format!(
        "{}: stanza '{}': archive.info records {} but backup.info {}: a stanza-upgrade was interrupted; run 'pgbr --stanza={} stanza-upgrade' to finish it",
        repo.name(),
        repo.stanza(),
        describe(archive),
        describe(backup),
        repo.stanza()
    )))
}

/// What `stanza-delete` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StanzaDeleted {
    /// The stanza was removed; `objects` objects were deleted.
    Deleted {
        /// Objects deleted (info files included).
        objects: u64,
    },
    /// The repository holds nothing of the stanza.
    NotFound,
}

/// `stanza-delete`: removes `archive/<stanza>/` and `backup/<stanza>/` from the repository.
///
/// The stanza must be stopped (`pgbr stop`; [`Error::Stopped`] otherwise) and, unless
/// `opts.force`, PostgreSQL must not run in `opts.pg_path` (its `postmaster.pid` must not exist).
/// Takes the stanza lock and claims the stanza in the repository, so no backup or expire runs
/// meanwhile, on this host or another. The four info files go first
/// (`archive.info`, its copy, `backup.info`, its copy), so an interrupted delete leaves a stanza
/// every command reports as missing, never half a stanza; then every other object; a second
/// `stanza-delete` finishes an interrupted one. The key is not needed.
pub async fn delete(
    repo_opts: &RepoOptions,
    stanza: &str,
    opts: &DeleteOptions,
) -> Result<StanzaDeleted> {
    if !crate::lock::is_stopped(&opts.lock_path, stanza) {
        return Err(Error::Stopped(format!(
            "stanza '{stanza}' is not stopped: run 'pgbr --stanza={stanza} stop' before stanza-delete (stop file {} does not exist)",
            crate::lock::stop_file(&opts.lock_path, Some(stanza)).display()
        )));
    }
    if let (Some(path), false) = (&opts.pg_path, opts.force) {
        let pid = path.join("postmaster.pid");
        if pid.exists() {
            return Err(Error::RestoreTarget(format!(
                "PostgreSQL appears to be running in {} ({} exists): stop it before deleting stanza '{stanza}', or pass --force",
                path.display(),
                pid.display()
            )));
        }
    }
    let _lock = crate::lock::Lock::acquire_stopped(&opts.lock_path, stanza)?;
    with_stanza_claimed(repo_opts, stanza, "stanza-delete", || {
        delete_claimed(repo_opts, stanza)
    })
    .await
}

async fn delete_claimed(repo_opts: &RepoOptions, stanza: &str) -> Result<StanzaDeleted> {
    let storage = repo::open_storage(repo_opts)?;
    // This command's own claim goes with the stanza's objects, but is not one of them.
    let claim = u64::from(storage.exists(&layout::claim(stanza)).await?);
    let mut objects = 0u64;
    for info in [layout::archive_info(stanza), layout::backup_info(stanza)] {
        for path in [info.clone(), layout::copy_of(&info)] {
            if storage.exists(&path).await? {
                storage.delete(&path).await?;
                objects += 1;
            }
        }
    }
    crate::failpoints::crash_point!("stanza-delete::after-info");
    let (backup_dir, archive_dir) = (
        layout::stanza_backup_dir(stanza),
        layout::stanza_archive_dir(stanza),
    );
    objects += storage.delete_prefix(&layout::under(&backup_dir)).await?;
    crate::failpoints::crash_point!("stanza-delete::after-backup-dir");
    objects += storage.delete_prefix(&layout::under(&archive_dir)).await?;
    let objects = objects.saturating_sub(claim);
    if repo_opts.repo_type == crate::config::RepoType::Posix {
        // Object deletion leaves the (now empty) directories of a local repository behind.
        for dir in [backup_dir, archive_dir] {
            let path = Path::new(&repo_opts.path).join(dir);
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("unable to remove directory", &path, e)),
            }
        }
    }
    Ok(if objects == 0 {
        StanzaDeleted::NotFound
    } else {
        StanzaDeleted::Deleted { objects }
    })
}
