//! The session with the cluster: connecting (and checking it is the stanza's cluster, archiving
//! its WAL), then `pg_backup_start`, and from a standby the wait for it to replay that far.

use std::path::Path;

use pgbr_manifest::DbHistory;
use pgbr_wal::{ControlFile, Lsn};

use super::plan::Plan;
use crate::config::{BackupOptions, PgOptions};
use crate::error::{Error, Result};
use crate::pg::{PgSession, Tablespace};
use crate::progress::Progress;
use crate::repo::Repository;

/// The stanza's current database, and a session with the cluster that is it.
pub(super) async fn connect(
    repo: &Repository,
    pg: &PgOptions,
    opts: &BackupOptions,
) -> Result<(PgSession, ControlFile, DbHistory)> {
    crate::stanza::check_upgrade_finished(repo)?;
    let (session, control, db) = crate::check::connect_stanza_cluster(repo, pg)
        .await
        .map_err(|e| match e {
            Error::ClusterMismatch(m) => {
                Error::ClusterMismatch(format!("{m}; run stanza-create for a new stanza"))
            }
            e => e,
        })?;
    if opts.archive_check {
        let mode = session.setting("archive_mode").await?;
        if mode == "off" {
            return Err(Error::config(
                "archive_mode is off on the cluster: a backup cannot be restored without its WAL. Set archive_mode=on and archive_command to 'pgbr ... archive-push %p', or pass --no-archive-check to take it anyway".into(),
            ));
        }
    }
    Ok((session, control, db))
}

/// Where the backup starts in the WAL, and where its files are read.
pub(super) struct Started {
    pub lsn_start: Lsn,
    pub wal_start: String,
    pub timeline: u32,
    pub tablespaces: Vec<Tablespace>,
    /// The cluster the files are copied from: the primary, or the standby.
    pub source: PgOptions,
    /// The cluster has page checksums.
    pub checksums: bool,
    pub segment_size: u64,
}

impl Started {
    /// From a standby: the primary's data directory, where the configuration at the top of the
    /// data directory is read (it is not replicated).
    pub fn primary_root<'p>(&self, pg: &'p PgOptions) -> Option<&'p Path> {
        (self.source.path != pg.path).then_some(pg.path.as_path())
    }
}

/// Runs `pg_backup_start` on `session` and, backing up from a standby, waits for the standby to
/// replay past the start.
pub(super) async fn start(
    session: &PgSession,
    pg: &PgOptions,
    opts: &BackupOptions,
    plan: &Plan,
    db: &DbHistory,
    control: &ControlFile,
    progress: &dyn Progress,
) -> Result<Started> {
    let label = &plan.label;
    progress.message(&format!(
        "backup {label} ({}{}): starting (pg_backup_start)",
        plan.backup_type,
        plan.prior_label
            .as_deref()
            .map(|p| format!(" on {p}"))
            .unwrap_or_default()
    ));
    let (lsn_start, wal_start, timeline) = session.backup_start(label, opts.start_fast).await?;
    let tablespaces = session.tablespaces().await?;
    let source = match &opts.standby {
        None => pg.clone(),
        Some(standby) => {
            let (sb, sb_ident, _) = crate::pg::connect_checked(standby).await?;
            if sb_ident.system_id != db.system_id {
                return Err(Error::ClusterMismatch(format!(
                    "the standby in {} ({}) is database system {}, not the primary's {}",
                    standby.path.display(),
                    standby.option("path"),
                    sb_ident.system_id,
                    db.system_id
                )));
            }
            progress.message(&format!(
                "backup {label}: waiting for the standby to replay to {lsn_start}"
            ));
            sb.wait_replay(lsn_start, opts.archive_timeout).await?;
            sb.close().await;
            standby.clone()
        }
    };
    Ok(Started {
        lsn_start,
        wal_start,
        timeline,
        tablespaces,
        source,
        checksums: control.checksums_enabled(),
        segment_size: u64::from(control.wal_segment_size),
    })
}
