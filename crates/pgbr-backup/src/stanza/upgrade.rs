//! `stanza-upgrade`.

use std::path::Path;

use pgbr_manifest::DbHistory;

use super::{save_info_files, ClusterAndInfo, Write};
use crate::config::{PgOptions, RepoOptions};
use crate::error::{Error, Result};
use crate::repo::{self, with_stanza_claimed};

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
    /// pgBackRest wrote the repository's stanza: pgbr leaves it as it is (its backups stay
    /// restorable for the cluster they were taken of).
    PgBackRest,
}

impl StanzaUpgraded {
    /// One line saying what happened to `stanza` in repository `repo`.
    pub fn describe(&self, repo: &str, stanza: &str) -> String {
        match self {
            StanzaUpgraded::Upgraded { from, to } => format!(
                "{repo}: stanza '{stanza}' upgraded: db-id {} (system {}, PostgreSQL {}) is now current; db-id {} (system {}, PostgreSQL {}) stays for its backups and WAL",
                to.db_id, to.system_id, to.pg_version, from.db_id, from.system_id, from.pg_version
            ),
            StanzaUpgraded::AlreadyUpToDate { db } => format!(
                "{repo}: stanza '{stanza}' is already up to date (db-id {}, system {}, PostgreSQL {}); nothing changed",
                db.db_id, db.system_id, db.pg_version
            ),
            StanzaUpgraded::PgBackRest => format!(
                "{repo}: stanza '{stanza}' is pgBackRest's: left as it is (its backups stay restorable for the cluster they were taken of)"
            ),
        }
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
    if repo::is_backrest_stanza(&repo::open_storage(repo_opts)?, stanza).await? {
        return Ok(StanzaUpgraded::PgBackRest);
    }
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
    if same(&archive_current) && same(&backup_current) {
        // A copy an interrupted upgrade left stale is written again.
        let (archive, backup) = ((&archive, Write::Heal), (&backup, Write::Heal));
        save_info_files(&storage, stanza, archive, backup, || {}).await?;
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
    // Each file gains the new entry unless it has it already, in which case it is healed.
    let add_to = |history: &mut Vec<DbHistory>, current: &DbHistory| {
        if same(current) {
            Write::Heal
        } else {
            history.push(to.clone());
            Write::Replace
        }
    };
    let archive_how = add_to(&mut archive.db_history, &archive_current);
    let backup_how = add_to(&mut backup.db_history, &backup_current);
    save_info_files(
        &storage,
        stanza,
        (&archive, archive_how),
        (&backup, backup_how),
        || {
            crate::failpoints::crash_point!("stanza-upgrade::after-archive-info");
        },
    )
    .await?;
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
