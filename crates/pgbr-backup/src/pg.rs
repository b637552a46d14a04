//! Talking to PostgreSQL: one tokio-postgres session, the cluster's identity, and the non-exclusive
//! `pg_backup_start`/`pg_backup_stop` pair, which must run on the same session.
//!
//! This is the one module that knows which server major runs and what SQL that major takes: a
//! session learns the major when it connects and refuses one outside [`pgbr_wal::PG_MAJORS`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use pgbr_wal::{ControlFile, Lsn, PG_MAJORS};
use tokio_postgres::{Client, NoTls};

use crate::config::PgOptions;
use crate::error::{Error, Result};

/// An open session to the cluster being backed up.
pub(crate) struct PgSession {
    client: Client,
    task: tokio::task::JoinHandle<()>,
    where_: String,
    /// The server's major version (12, ..., 18).
    major: u32,
}

/// What the server says about itself.
#[derive(Clone, Debug)]
pub(crate) struct ServerIdentity {
    pub system_id: u64,
    pub version_num: u32,
    pub data_directory: PathBuf,
    /// The server is a standby (in recovery).
    pub in_recovery: bool,
}

impl ServerIdentity {
    pub fn major(&self) -> u32 {
        self.version_num / 10000
    }
}

/// What `pg_backup_stop` returns.
pub(crate) struct BackupStop {
    pub lsn: Lsn,
    pub label_file: String,
    pub tablespace_map: Option<String>,
}

/// One row of a WAL summary: a block of a relation fork modified, or (`is_limit`) the fork cut
/// to `block` blocks (a truncation; 0 when created or dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SummarizedBlock {
    pub tablespace: u32,
    pub database: u32,
    pub relfilenode: u32,
    pub fork: u8,
    pub block: u32,
    pub is_limit: bool,
}

/// A tablespace as the catalog lists it.
#[derive(Clone, Debug)]
pub(crate) struct Tablespace {
    pub oid: u32,
    pub name: String,
}

impl PgSession {
    /// Connects to the server `pg` names, which must run a supported major.
    pub async fn connect(pg: &PgOptions) -> Result<PgSession> {
        let session = PgSession::connect_any(pg).await?;
        if !PG_MAJORS.contains(&session.major) {
            let err = unsupported_major(session.major, &session.where_);
            session.close().await;
            return Err(err);
        }
        Ok(session)
    }

    /// Connects to the server `pg` names, whatever its major.
    async fn connect_any(pg: &PgOptions) -> Result<PgSession> {
        let where_ = format!(
            "PostgreSQL at {} port {} ({}, {})",
            pg.socket_path.display(),
            pg.port,
            pg.option("socket-path"),
            pg.option("port")
        );
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&pg.socket_path)
            .port(pg.port)
            .user(&pg.user)
            .dbname(&pg.database)
            .application_name("pgbr")
            .connect_timeout(Duration::from_secs(10));
        let (client, connection) = cfg
            .connect(NoTls)
            .await
            .map_err(|e| Error::pg(format!("unable to connect to {where_}"), e))?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("PostgreSQL connection closed: {e}");
            }
        });
        let mut session = PgSession {
            client,
            task,
            where_,
            major: 0,
        };
        let version: i32 = session
            .client
            .query_one("select current_setting('server_version_num')::int4", &[])
            .await
            .map_err(|e| session.fail("unable to read the server's version", e))?
            .get(0);
        session.major = version.max(0) as u32 / 10000;
        Ok(session)
    }

    fn fail(&self, what: &str, e: tokio_postgres::Error) -> Error {
        Error::pg(format!("{what} on {}", self.where_), e)
    }

    pub async fn identity(&self) -> Result<ServerIdentity> {
        let row = self
            .client
            .query_one(
                "select (select system_identifier from pg_control_system())::text, \
                 current_setting('server_version_num')::int4, current_setting('data_directory'), \
                 pg_is_in_recovery()",
                &[],
            )
            .await
            .map_err(|e| self.fail("unable to read the cluster's identity", e))?;
        let sysid: String = row.get(0);
        let version: i32 = row.get(1);
        let dir: String = row.get(2);
        Ok(ServerIdentity {
            system_id: sysid.parse().map_err(|_| Error::Postgres {
                context: self.where_.clone(),
                message: format!("unexpected system identifier '{sysid}'"),
            })?,
            version_num: version as u32,
            data_directory: PathBuf::from(dir),
            in_recovery: row.get(3),
        })
    }

    pub async fn setting(&self, name: &str) -> Result<String> {
        let row = self
            .client
            .query_one("select current_setting($1)", &[&name])
            .await
            .map_err(|e| self.fail(&format!("unable to read setting {name}"), e))?;
        Ok(row.get(0))
    }

    /// Starts a non-exclusive backup: `pg_backup_start(label, fast)` from PostgreSQL 15,
    /// `pg_start_backup(label, fast, false)` before. Returns the start LSN, its WAL file name and
    /// timeline.
    pub async fn backup_start(&self, label: &str, fast: bool) -> Result<(Lsn, String, u32)> {
        let (sql, function) = if self.major >= 15 {
            (
                "select lsn::text, pg_walfile_name(lsn) from pg_backup_start($1, $2) as lsn",
                "pg_backup_start",
            )
        } else {
            (
                "select lsn::text, pg_walfile_name(lsn) from pg_start_backup($1, $2, false) as lsn",
                "pg_start_backup",
            )
        };
        let row = self
            .client
            .query_one(sql, &[&label, &fast])
            .await
            .map_err(|e| self.fail(&format!("{function} failed"), e))?;
        let lsn: String = row.get(0);
        let wal: String = row.get(1);
        let lsn = parse_lsn(&lsn)?;
        let timeline = u32::from_str_radix(wal.get(0..8).unwrap_or("1"), 16).unwrap_or(1);
        Ok((lsn, wal, timeline))
    }

    /// Stops the backup this session started, without waiting for its WAL to be archived (pgbr
    /// waits for the archive itself, with a timeout): `pg_backup_stop(false)` from PostgreSQL 15,
    /// `pg_stop_backup(false, false)` (non-exclusive, no wait) before; both return the stop LSN,
    /// the backup_label and the tablespace_map.
    pub async fn backup_stop(&self) -> Result<BackupStop> {
        let (sql, function) = if self.major >= 15 {
            (
                "select lsn::text, labelfile, spcmapfile from pg_backup_stop(false)",
                "pg_backup_stop",
            )
        } else {
            (
                "select lsn::text, labelfile, spcmapfile from pg_stop_backup(false, false)",
                "pg_stop_backup",
            )
        };
        let row = self
            .client
            .query_one(sql, &[])
            .await
            .map_err(|e| self.fail(&format!("{function} failed"), e))?;
        let lsn: String = row.get(0);
        let spc: Option<String> = row.get(2);
        Ok(BackupStop {
            lsn: parse_lsn(&lsn)?,
            label_file: row.get(1),
            tablespace_map: spc.filter(|s| !s.is_empty()),
        })
    }

    /// What `pg_stat_archiver` says about the archiver's failures, for an error about WAL that
    /// did not reach the archive: the cause itself is only in PostgreSQL's log.
    pub async fn archiver_status(&self) -> String {
        let row = self
            .client
            .query_one(
                "select failed_count, last_failed_wal, last_failed_time::text, \
                 last_archived_wal, last_archived_time::text from pg_stat_archiver",
                &[],
            )
            .await;
        let row = match row {
            Ok(row) => row,
            Err(e) => return format!("pg_stat_archiver could not be read ({e})"),
        };
        let failed: i64 = row.get(0);
        let last_failed: Option<String> = row.get(1);
        let failed_at: Option<String> = row.get(2);
        let archived: Option<String> = row.get(3);
        let archived_at: Option<String> = row.get(4);
        let archived = match (archived, archived_at) {
            (Some(wal), Some(at)) => format!("last archived {wal} at {at}"),
            _ => "nothing archived yet".to_string(),
        };
        match (failed, last_failed, failed_at) {
            (0, _, _) | (_, None, _) => {
                format!("pg_stat_archiver: no failures, {archived}")
            }
            (n, Some(wal), at) => format!(
                "pg_stat_archiver: archive_command failed {n} time(s), last on {wal} at {}, {archived}",
                at.as_deref().unwrap_or("an unknown time")
            ),
        }
    }

    /// The WAL file holding `lsn` (the one before it, at a segment boundary).
    pub async fn walfile_name(&self, lsn: Lsn) -> Result<String> {
        let row = self
            .client
            .query_one(
                "select pg_walfile_name($1::text::pg_lsn)",
                &[&lsn.to_string()],
            )
            .await
            .map_err(|e| self.fail("pg_walfile_name failed", e))?;
        Ok(row.get(0))
    }

    /// Writes a restore point (so there is WAL to switch away from) and switches to a new WAL
    /// segment; returns the name of the segment just finished.
    pub async fn switch_wal(&self) -> Result<String> {
        self.client
            .query_one("select pg_create_restore_point('pgbr archive check')", &[])
            .await
            .map_err(|e| self.fail("pg_create_restore_point failed", e))?;
        let row = self
            .client
            .query_one("select pg_walfile_name(pg_switch_wal())", &[])
            .await
            .map_err(|e| self.fail("pg_switch_wal failed", e))?;
        Ok(row.get(0))
    }

    /// Waits until this standby has replayed WAL up to `lsn` and made a restartpoint there (a
    /// backup copies a standby's files only once everything before the backup's start on the
    /// primary is on the standby's disk).
    pub async fn wait_replay(&self, lsn: Lsn, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let row = self
                .client
                .query_one(
                    "select pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn()::text, '0/0')",
                    &[],
                )
                .await
                .map_err(|e| self.fail("unable to read the standby's replay position", e))?;
            let in_recovery: bool = row.get(0);
            if !in_recovery {
                return Err(Error::config(format!(
                    "backup-standby=y, but {} is not a standby (it is not in recovery): pg2-* must name a standby of the primary in pg1-*",
                    self.where_
                )));
            }
            let replayed = parse_lsn(&row.get::<_, String>(1))?;
            if replayed >= lsn {
                // Replayed is not enough: what the standby replayed before the backup's start may
                // still sit in its buffers. A restartpoint at or after the start flushes it.
                self.client
                    .batch_execute("checkpoint")
                    .await
                    .map_err(|e| self.fail("checkpoint on the standby failed", e))?;
                let row = self
                    .client
                    .query_one("select redo_lsn::text from pg_control_checkpoint()", &[])
                    .await
                    .map_err(|e| self.fail("unable to read the standby's checkpoint", e))?;
                if parse_lsn(&row.get::<_, String>(0))? >= lsn {
                    return Ok(());
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::ArchiveTimeout(format!(
                    "the standby {} has replayed WAL only to {replayed}, not yet to the backup's start {lsn}, after {:.0}s (archive-timeout): is it streaming from the primary?",
                    self.where_,
                    timeout.as_secs_f64()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn tablespaces(&self) -> Result<Vec<Tablespace>> {
        let rows = self
            .client
            .query(
                "select oid::int8, spcname::text from pg_tablespace \
                 where spcname not in ('pg_default', 'pg_global') order by oid",
                &[],
            )
            .await
            .map_err(|e| self.fail("unable to list tablespaces", e))?;
        Ok(rows
            .iter()
            .map(|r| Tablespace {
                oid: r.get::<_, i64>(0) as u32,
                name: r.get(1),
            })
            .collect())
    }

    /// The server's major version (12, ..., 18).
    pub fn major(&self) -> u32 {
        self.major
    }

    /// How far the WAL summarizer has summarized (PostgreSQL 17+): its timeline and LSN; `None`
    /// when it does not run.
    pub async fn summarized_to(&self) -> Result<Option<(u32, Lsn)>> {
        let row = self
            .client
            .query_one(
                "select summarized_tli::int8, summarized_lsn::text, summarizer_pid is not null \
                 from pg_get_wal_summarizer_state()",
                &[],
            )
            .await
            .map_err(|e| self.fail("unable to read the WAL summarizer's state", e))?;
        let running: bool = row.get(2);
        let tli: i64 = row.get(0);
        let lsn: String = row.get(1);
        Ok(running.then_some((tli as u32, parse_lsn(&lsn)?)))
    }

    /// The server's page size and the blocks of one relation segment file (compile-time sizes
    /// of the server: 8 KiB and 131072 unless built otherwise).
    pub async fn relation_layout(&self) -> Result<(u64, u64)> {
        let row = self
            .client
            .query_one(
                "select current_setting('block_size')::int8, \
                 (select setting::int8 from pg_settings where name = 'segment_size')",
                &[],
            )
            .await
            .map_err(|e| self.fail("unable to read the server's block and segment sizes", e))?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }

    /// The WAL summaries of timeline `tli` (PostgreSQL 17+): each one's start and end LSN,
    /// ordered by start.
    pub async fn wal_summaries(&self, tli: u32) -> Result<Vec<(Lsn, Lsn)>> {
        let rows = self
            .client
            .query(
                "select start_lsn::text, end_lsn::text from pg_available_wal_summaries() \
                 where tli = $1",
                &[&i64::from(tli)],
            )
            .await
            .map_err(|e| self.fail("unable to list the WAL summaries", e))?;
        let mut summaries = rows
            .iter()
            .map(|r| Ok((parse_lsn(r.get(0))?, parse_lsn(r.get(1))?)))
            .collect::<Result<Vec<_>>>()?;
        summaries.sort_unstable();
        Ok(summaries)
    }

    /// What the WAL summary of timeline `tli` from `start` to `end` records: per relation fork,
    /// the blocks modified and the limit blocks (truncation, creation, drop).
    pub async fn wal_summary_contents(
        &self,
        tli: u32,
        (start, end): (Lsn, Lsn),
    ) -> Result<Vec<SummarizedBlock>> {
        let rows = self
            .client
            .query(
                "select reltablespace::int8, reldatabase::int8, relfilenode::int8, \
                 relforknumber::int4, relblocknumber::int8, is_limit_block \
                 from pg_wal_summary_contents($1, $2::text::pg_lsn, $3::text::pg_lsn)",
                &[&i64::from(tli), &start.to_string(), &end.to_string()],
            )
            .await
            .map_err(|e| self.fail("unable to read a WAL summary", e))?;
        Ok(rows
            .iter()
            .map(|r| SummarizedBlock {
                tablespace: r.get::<_, i64>(0) as u32,
                database: r.get::<_, i64>(1) as u32,
                relfilenode: r.get::<_, i64>(2) as u32,
                fork: r.get::<_, i32>(3) as u8,
                block: r.get::<_, i64>(4) as u32,
                is_limit: r.get(5),
            })
            .collect())
    }

    pub async fn close(self) {
        drop(self.client);
        let _ = self.task.await;
    }
}

/// The error for a server whose major version pgbr does not support.
fn unsupported_major(major: u32, where_: &str) -> Error {
    Error::Postgres {
        context: where_.to_string(),
        message: format!(
            "PostgreSQL {major} is not supported: pgbr supports PostgreSQL {} to {}",
            PG_MAJORS.start(),
            PG_MAJORS.end()
        ),
    }
}

fn parse_lsn(s: &str) -> Result<Lsn> {
    s.parse().map_err(|_| Error::Postgres {
        context: "PostgreSQL".into(),
        message: format!("unexpected LSN '{s}'"),
    })
}

/// Reads and checks `global/pg_control` under `data_dir` (`pg<index>-path`).
pub(crate) fn read_control(data_dir: &Path, index: u32) -> Result<ControlFile> {
    let path = data_dir.join("global/pg_control");
    let bytes = std::fs::read(&path).map_err(|e| {
        let action = match index {
            1 => "unable to read the control file (is pg1-path a PostgreSQL data directory?)",
            2 => "unable to read the control file (is pg2-path a PostgreSQL data directory?)",
            _ => "unable to read the control file (is pg<N>-path a PostgreSQL data directory?)",
        };
        Error::io(action, &path, e)
    })?;
    ControlFile::parse(&bytes).map_err(|source| Error::Wal {
        context: format!("{}", path.display()),
        source,
    })
}

/// Connects, and checks that the server and `pg<N>-path` are the same cluster.
pub(crate) async fn connect_checked(
    pg: &PgOptions,
) -> Result<(PgSession, ServerIdentity, ControlFile)> {
    let control = match read_control(&pg.path, pg.index) {
        Ok(control) => control,
        // A pg_control pgbr cannot read may be a major it does not support: say that, if the
        // server confirms it (connect refuses such a server).
        Err(
            e @ Error::Wal {
                source: pgbr_wal::Error::UnsupportedControlVersion { .. },
                ..
            },
        ) => {
            if let Ok(session) = PgSession::connect_any(pg).await {
                let (major, where_) = (session.major, session.where_.clone());
                session.close().await;
                if !PG_MAJORS.contains(&major) {
                    return Err(unsupported_major(major, &where_));
                }
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let session = PgSession::connect(pg).await?;
    let ident = session.identity().await?;
    if ident.system_id != control.system_identifier {
        let (path, port) = (pg.option("path"), pg.option("port"));
        return Err(Error::ClusterMismatch(format!(
            "{path} {} holds database system {} but the server at port {} is system {}: {path} and {port} must name the same cluster",
            pg.path.display(),
            control.system_identifier,
            pg.port,
            ident.system_id
        )));
    }
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if canon(&ident.data_directory) != canon(&pg.path) {
        return Err(Error::ClusterMismatch(format!(
            "{} is {} but the server at port {} runs from {}",
            pg.option("path"),
            pg.path.display(),
            pg.port,
            ident.data_directory.display()
        )));
    }
    Ok((session, ident, control))
}
