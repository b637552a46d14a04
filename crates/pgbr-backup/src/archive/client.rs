//! `archive-push` and `archive-get` as PostgreSQL's `archive_command` and `restore_command` run
//! them, from a [`Config`] ([`push`], [`get`]), and the client side of asynchronous archiving
//! ([`super::spool`]): `archive-push` hands a WAL file PostgreSQL marked ready to a
//! background push worker and waits for its report ([`push_async`]); `archive-get`, having
//! served a segment, starts a prefetch worker ([`start_prefetch`]); and the two worker commands
//! themselves, [`push_worker`] and [`prefetch_worker`].
//!
//! A worker is a process of its own (it outlives the `archive-push` or `archive-get` that
//! PostgreSQL runs), started from the executable the caller names, by default the running one
//! (see [`crate::command_line::worker`]); that executable must run [`push_worker`] for
//! `archive-push-async` and [`prefetch_worker`] for `archive-get-async`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::spool::{self, AsyncOptions, PushStatus};
use super::{DrainReport, PrefetchReport};
use super::{GetFirstReport, GetOutcome, PushAllReport, PushOutcome};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::multi;
use crate::options::Command;
use crate::repo::Repository;

/// How long an idle push worker waits for more WAL before it exits.
const PUSH_WORKER_IDLE: Duration = Duration::from_secs(5);

/// What the push worker did with a WAL file [`push`] handed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsyncPushed {
    /// Every repository holds it.
    Pushed,
    /// Not archived, yet reported archived to PostgreSQL: more WAL waited than
    /// `archive-push-queue-max`. The archive has a gap. The text says how much waited.
    Dropped(String),
}

/// What [`push`] did.
#[derive(Debug)]
pub enum Pushed {
    /// The push worker took the file.
    Async(AsyncPushed),
    /// This process pushed it to every repository; the caller must fail (so PostgreSQL retries)
    /// when `report.failed` is not empty.
    Direct {
        /// What each repository did.
        report: PushAllReport,
        /// How many repositories there are.
        repositories: usize,
    },
}

impl Pushed {
    /// How `archive-push` of the WAL file `wal` ends: the notices to show when PostgreSQL may
    /// take the file as archived; otherwise the error to fail with, so that PostgreSQL retries
    /// (with one repository, its error as it is; with several, [`Error::InRepositories`] naming
    /// each that failed: those that hold the file are not written again by the retry).
    pub fn verdict(self, wal: &Path) -> Result<Vec<PushNotice>> {
        let name = wal.file_name().unwrap_or_default().to_string_lossy();
        let (report, repositories) = match self {
            Pushed::Async(AsyncPushed::Pushed) => return Ok(Vec::new()),
            Pushed::Async(AsyncPushed::Dropped(why)) => {
                return Ok(vec![PushNotice::Dropped {
                    wal: name.into_owned(),
                    why,
                }])
            }
            Pushed::Direct {
                report,
                repositories,
            } => (report, repositories),
        };
        let held: Vec<&str> = report.stored.iter().map(|(r, _)| r.as_str()).collect();
        if report.failed.is_empty() {
            let notices = report
                .stored
                .iter()
                .filter(|(_, o)| *o == PushOutcome::AlreadyArchived);
            return Ok(notices
                .map(|(repo, _)| PushNotice::AlreadyArchived {
                    repo: repo.clone(),
                    wal: name.to_string(),
                })
                .collect());
        }
        let summary = || {
            if held.is_empty() {
                format!("{name} is not archived")
            } else {
                format!("{name} is archived in {} only", held.join(", "))
            }
        };
        Err(Error::in_repositories(report.failed, repositories, summary))
    }
}

/// What `archive-push` tells the user of a file PostgreSQL may take as archived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushNotice {
    /// The repository already held the same file; nothing was written there.
    AlreadyArchived {
        /// The repository.
        repo: String,
        /// The WAL file's name.
        wal: String,
    },
    /// Dropped by the push worker ([`AsyncPushed::Dropped`]): the archive has a gap.
    Dropped {
        /// The WAL file's name.
        wal: String,
        /// How much WAL waited.
        why: String,
    },
}

impl std::fmt::Display for PushNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushNotice::AlreadyArchived { repo, wal } => write!(
                f,
                "{repo}: {wal} is already in the archive with the same contents; nothing written"
            ),
            PushNotice::Dropped { wal, why } => write!(
                f,
                "{wal} DROPPED, NOT ARCHIVED: {why}. The archive now has a gap: point-in-time recovery past it is impossible until the next backup. Find out why the repository is not keeping up."
            ),
        }
    }
}

/// Fails when the stanza is stopped (`pgbr stop`): the WAL commands take no lock, but a stopped
/// stanza moves no WAL.
fn check_not_stopped(config: &Config) -> Result<()> {
    crate::lock::check_not_stopped(&config.lock_path(), config.stanza()?)
}

/// `archive-push` of the WAL file `wal` (PostgreSQL's `%p`): with `archive-async=y`, a file
/// PostgreSQL marked ready goes through the push worker ([`push_async`], started from `exe`,
/// `None` for the running executable); any other file is pushed by this process, to every
/// repository ([`super::push_all`]).
pub async fn push(config: &Config, exe: Option<&Path>, wal: &Path) -> Result<Pushed> {
    let pushed = push_now(config, exe, wal).await;
    record_push_failure(config, wal, &pushed);
    pushed
}

/// Records the failure of `pushed` (or its success: the record is removed) where `check` and
/// `backup` find it ([`crate::layout::push_error_file`]). Best effort: archiving does not fail
/// for want of a record.
fn record_push_failure(config: &Config, wal: &Path, pushed: &Result<Pushed>) {
    let failure = match pushed {
        Err(e) => Some(e.to_string()),
        Ok(Pushed::Direct { report, .. }) if !report.failed.is_empty() => {
            Some(crate::error::each_failure(&report.failed))
        }
        Ok(_) => None,
    };
    let Ok(stanza) = config.stanza() else {
        return;
    };
    let path = crate::layout::push_error_file(&config.lock_path(), stanza);
    match failure {
        Some(why) => {
            let _ = std::fs::create_dir_all(config.lock_path());
            let _ = std::fs::write(&path, format!("{}: {why}", wal.display()));
        }
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The failure `archive-push` last recorded for `stanza` in `lock_path`, and how long ago.
pub(crate) fn last_push_failure(lock_path: &Path, stanza: &str) -> Option<(String, Duration)> {
    let path = crate::layout::push_error_file(lock_path, stanza);
    let text = std::fs::read_to_string(&path).ok()?;
    let age = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default();
    Some((text.trim().to_string(), age))
}

async fn push_now(config: &Config, exe: Option<&Path>, wal: &Path) -> Result<Pushed> {
    check_not_stopped(config)?;
    let opts = config.archive_push()?;
    let path = opts.wal_path(wal)?;
    if let Some(spool) = config.archive_async() {
        match path.file_name().and_then(|n| n.to_str()) {
            Some(name) if spool::is_marked_ready(&path) => {
                let pushed = push_async(config, &spool, exe, &path, name).await?;
                return Ok(Pushed::Async(pushed));
            }
            // Not handed over by PostgreSQL's archiver: no worker would find it.
            _ => tracing::info!(
                "{} is not marked ready for archiving (archive_status/<name>.ready beside it): pushed now, not by the asynchronous worker",
                wal.display()
            ),
        }
    }
    let repos = config.repos()?;
    let report = super::push_all(&repos, config.stanza()?, &path, &opts).await;
    Ok(Pushed::Direct {
        report,
        repositories: repos.len(),
    })
}

/// What [`get`] found.
#[derive(Debug)]
pub struct Got {
    /// Where the file came from, and the repositories that failed.
    pub report: GetFirstReport,
    /// How many repositories there are.
    pub repositories: usize,
}

impl Got {
    /// How `archive-get` of `wal_name` ends: found, or not in the archive (every repository
    /// answered that it does not hold it); otherwise the error to fail with, so that recovery
    /// stops rather than end early: a repository that could not answer may hold the file (with
    /// one repository, its error as it is; with several, [`Error::InRepositories`]).
    pub fn verdict(self, wal_name: &str) -> Result<GetOutcome> {
        if let Ok(outcome) = self.report.outcome() {
            return Ok(outcome);
        }
        let summary = || {
            format!(
                "{wal_name} is in no repository that answered, and a repository that failed may hold it"
            )
        };
        Err(Error::in_repositories(
            self.report.failed,
            self.repositories,
            summary,
        ))
    }
}

/// `archive-get` of `wal_name` (PostgreSQL's `%f`) into `dest` (`%p`): from the spool when the
/// prefetch worker fetched it, else from the first repository that holds it
/// ([`super::get_first`]). When the file was found, the repositories that failed on the way are
/// logged, and with `archive-async=y` a prefetch worker is started ([`start_prefetch`], from
/// `exe`, `None` for the running executable).
pub async fn get(config: &Config, exe: Option<&Path>, wal_name: &str, dest: &Path) -> Result<Got> {
    check_not_stopped(config)?;
    let spool = config.archive_async();
    let repos = config.repos()?;
    let report = super::get_first(&repos, config.stanza()?, wal_name, dest, spool.as_ref()).await;
    if let Some(from) = &report.found {
        for (repo, e) in &report.failed {
            tracing::warn!("{repo}: {e}; {wal_name} was read from {from}");
        }
        if spool.is_some() {
            start_prefetch(config, exe, wal_name, dest);
        }
    }
    Ok(Got {
        report,
        repositories: repos.len(),
    })
}

/// `archive-push` with `archive-async=y` of `wal_path` (named `name`), a file PostgreSQL marked
/// ready ([`spool::is_marked_ready`]): makes sure a push worker runs (started from
/// `exe`, `None` for the running executable), and waits, at most `archive-timeout`, until it reports the file.
pub async fn push_async(
    config: &Config,
    spool: &AsyncOptions,
    exe: Option<&Path>,
    wal_path: &Path,
    name: &str,
) -> Result<AsyncPushed> {
    let stanza = config.stanza()?;
    let timeout = config.archive_timeout();
    let started = Instant::now();
    let mut spawned: Option<Instant> = None;
    loop {
        match spool::take_push_status(spool, stanza, name)? {
            PushStatus::Pushed => return Ok(AsyncPushed::Pushed),
            PushStatus::Dropped(why) => return Ok(AsyncPushed::Dropped(why)),
            PushStatus::Failed(why) => {
                return Err(Error::Internal(format!(
                    "asynchronous archive-push of {name} failed: {why} (the next archive-push tries again)"
                )))
            }
            PushStatus::Pending => {}
        }
        // A worker just started may not hold its lock yet: give it a second before another.
        let recently = spawned.is_some_and(|at| at.elapsed() < Duration::from_secs(1));
        if !recently && !spool::push_worker_running(spool, stanza)? {
            let wal_dir = wal_path.parent().unwrap_or(Path::new("."));
            let args = [wal_dir.display().to_string()];
            spawn(config, exe, spool, Command::ArchivePushAsync, &args)?;
            spawned = Some(Instant::now());
        }
        if started.elapsed() > timeout {
            return Err(Error::ArchiveTimeout(format!(
                "asynchronous archive-push of {name} did not finish within archive-timeout ({:.0}s); the worker logs to {}",
                timeout.as_secs_f64(),
                log_path(spool, stanza, Command::ArchivePushAsync).display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// After `archive-get` served `name` into `fetched`: starts a prefetch worker (from `exe`,
/// `None` for the running executable) for
/// the segments after it, unless one runs or asynchronous archiving is off. Best effort:
/// recovery goes on without it, so a failure is only logged.
pub fn start_prefetch(config: &Config, exe: Option<&Path>, name: &str, fetched: &Path) {
    let Some(spool) = config.archive_async() else {
        return;
    };
    let mut header = [0u8; 64];
    let size = std::fs::File::open(fetched)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut header))
        .ok()
        .and_then(|n| pgbr_wal::LongPageHeader::parse(&header[..n]).ok())
        .map(|h| h.segment_size);
    let running = config
        .stanza()
        .ok()
        .map(|stanza| spool::prefetch_worker_running(&spool, stanza).unwrap_or(false))
        .unwrap_or(false);
    if running {
        return;
    }
    if let Some(size) = size {
        let args = [name.to_string(), size.to_string()];
        if let Err(e) = spawn(config, exe, &spool, Command::ArchiveGetAsync, &args) {
            tracing::warn!("unable to start the archive-get prefetch worker: {e}");
        }
    }
}

/// Where the background worker running `command` for `stanza` logs.
pub fn log_path(spool: &AsyncOptions, stanza: &str, command: Command) -> PathBuf {
    spool
        .stanza_dir(stanza)
        .join(format!("{}.log", command.name()))
}

/// Starts `exe` (`None`: the running executable) detached as the worker `command`, with
/// `config`'s options, logging into the spool.
fn spawn(
    config: &Config,
    exe: Option<&Path>,
    spool: &AsyncOptions,
    command: Command,
    args: &[String],
) -> Result<()> {
    let exe = match exe {
        Some(exe) => exe.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| Error::Internal(format!("unable to find the pgbr executable: {e}")))?,
    };
    let stanza = config.stanza()?;
    let dir = spool.stanza_dir(stanza);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io("unable to create spool directory", &dir, e))?;
    let log_path = log_path(spool, stanza, command);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io("unable to open worker log", &log_path, e))?;
    crate::command_line::worker(config, &exe, command, args)?
        .stderr(log)
        // Its own process group: signals meant for PostgreSQL's archiver do not reach it.
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Internal(format!("unable to start {}: {e}", command.name())))?;
    Ok(())
}

/// The push worker (`archive-push-async`): pushes every WAL file in `wal_dir` marked ready to
/// every repository, until none has come for a while. Every repository takes every file; one
/// that does not open fails them. A failure of the worker as a whole is reported into the
/// spool, so that the `archive-push` waiting for it fails at once rather than at
/// `archive-timeout`.
pub async fn push_worker(config: &Config, wal_dir: &Path) -> Result<DrainReport> {
    check_not_stopped(config)?;
    let spool = config
        .archive_async()
        .ok_or_else(|| Error::Config("archive-push-async runs only with archive-async=y".into()))?;
    let stanza = config.stanza()?;
    let (repos, unavailable) = multi::open_all(&config.repos()?, stanza).await;
    let repos = super::repos::writable(repos);
    let push = config.archive_push()?;
    let drained = super::drain_ready(
        &repos,
        &unavailable,
        &push,
        &spool,
        wal_dir,
        PUSH_WORKER_IDLE,
    )
    .await;
    if let Err(e) = &drained {
        spool::report_worker_failure(&spool, stanza, &e.to_string())?;
    }
    drained
}

/// The prefetch worker (`archive-get-async`): fetches the segments after `wal_name` (of
/// `segment_size` bytes) into the spool, from the first repository that opens.
pub async fn prefetch_worker(
    config: &Config,
    wal_name: &str,
    segment_size: u64,
) -> Result<PrefetchReport> {
    check_not_stopped(config)?;
    let spool = config
        .archive_async()
        .ok_or_else(|| Error::Config("archive-get-async runs only with archive-async=y".into()))?;
    let repo: Repository = multi::open_first(&config.repos()?, config.stanza()?).await?;
    super::prefetch(&repo, wal_name, segment_size, &spool).await
}
