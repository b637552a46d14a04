//! `check`: is this stanza ready to take backups? The configuration loads, the repository opens
//! (and its key unlocks), the server is the stanza's cluster, archiving is on and runs pgbr, and a
//! forced WAL switch reaches the repository within `archive-timeout`.

use std::path::Path;
use std::time::{Duration, Instant};

use pgbr_manifest::DbHistory;
use pgbr_wal::ControlFile;

use crate::archive;
use crate::config::PgOptions;
use crate::error::{Error, Result};
use crate::pg::PgSession;
use crate::repo::Repository;

/// What `check` saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// The WAL segment switched to and found in the archive.
    pub wal_segment: String,
    /// How long it took to arrive.
    pub waited: Duration,
}

/// Connects to the cluster `pg` describes and checks that it is the stanza's current database
/// (system identifier and major version, from the server and from its pg_control).
pub(crate) async fn connect_stanza_cluster(
    repo: &Repository,
    pg: &PgOptions,
) -> Result<(PgSession, ControlFile, DbHistory)> {
    let db = repo.current_db()?.clone();
    let (session, ident, control) = crate::pg::connect_checked(pg).await?;
    if ident.in_recovery {
        session.close().await;
        return Err(Error::Config(format!(
            "the server in {} ({}, port {}) is a standby: backup and check need the primary there; to copy the files from a standby, set {} to the primary and pg2-path/pg2-port to the standby, and pass --backup-standby",
            pg.option("path"),
            pg.path.display(),
            pg.port,
            pg.option("path")
        )));
    }
    if ident.system_id != db.system_id || ident.major() != db.pg_version {
        return Err(Error::ClusterMismatch(format!(
            "the cluster in {} (system {}, PostgreSQL {}) is not the one stanza '{}' was created for (system {}, PostgreSQL {})",
            pg.path.display(),
            ident.system_id,
            ident.major(),
            repo.stanza(),
            db.system_id,
            db.pg_version
        )));
    }
    Ok((session, control, db))
}

/// Runs the checks; the first failure is the error, naming what is wrong. `lock_path` is where
/// `archive-push` records its failures (`lock-path`), shown when the WAL does not arrive.
pub async fn run(
    repo: &Repository,
    pg: &PgOptions,
    lock_path: &Path,
    timeout: Duration,
) -> Result<CheckReport> {
    // pgbr never archives into a repository pgBackRest wrote: the WAL would never arrive.
    repo.refuse_backrest("check")?;
    let (session, _, _) = connect_stanza_cluster(repo, pg).await?;
    let mode = session.setting("archive_mode").await?;
    if mode == "off" {
        return Err(Error::config(format!(
            "archive_mode is off on the cluster in {}: set archive_mode = on and archive_command = 'pgbr --stanza={} archive-push %p', then restart PostgreSQL",
            pg.path.display(),
            repo.stanza()
        )));
    }
    let command = session.setting("archive_command").await?;
    if !command.contains("pgbr")
        || !command.contains("archive-push")
        || !command.contains(repo.stanza())
    {
        return Err(Error::config(format!(
            "archive_command is '{command}': it must run 'pgbr --stanza={} archive-push %p'",
            repo.stanza()
        )));
    }
    let started = Instant::now();
    let segment = session.switch_wal().await?;
    // The session stays open while waiting: on a timeout, pg_stat_archiver says why.
    let arrived = loop {
        if archive::find(repo, &segment).await?.is_some() {
            break Ok(CheckReport {
                wal_segment: segment,
                waited: started.elapsed(),
            });
        }
        if started.elapsed() >= timeout {
            break Err(Error::ArchiveTimeout(format!(
                "WAL segment {segment} did not reach {} within archive-timeout ({:.0}s); {}",
                repo.name(),
                timeout.as_secs_f64(),
                why_not_archived(&session, lock_path, repo.stanza()).await
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    session.close().await;
    arrived
}

/// Why WAL may not have reached the archive: what pg_stat_archiver says, and the error
/// `archive-push` last recorded in `lock_path` (otherwise it is only in PostgreSQL's log).
pub(crate) async fn why_not_archived(
    session: &PgSession,
    lock_path: &Path,
    stanza: &str,
) -> String {
    let archiver = session.archiver_status().await;
    match crate::archive::client::last_push_failure(lock_path, stanza) {
        Some((error, age)) => format!(
            "{archiver}; archive-push's last error ({:.0}s ago): {error}",
            age.as_secs_f64()
        ),
        None => format!("{archiver}; PostgreSQL's log has archive_command's error"),
    }
}
