//! `pgbr`: the reference command line for the pgbr engine. It parses arguments, sets up logging,
//! calls one `pgbr-backup` function and prints the result; nothing else lives here.

mod args;
mod render;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use pgbr_backup::archive::PushOutcome;
use pgbr_backup::archive_async::{self, AsyncOptions, PushStatus};
use pgbr_backup::config::Config;
use pgbr_backup::options::Command;
use pgbr_backup::stanza::{StanzaCreated, StanzaDeleted, StanzaUpgraded};
use pgbr_backup::{exit, multi, Error, Progress, Repository};

/// Sends engine progress to the log.
struct LogProgress;

impl Progress for LogProgress {
    fn start(&self, total_bytes: u64, files: u64) {
        tracing::info!("{files} files, {total_bytes} bytes to process");
    }
    fn file_done(&self, name: &str, bytes: u64) {
        tracing::debug!("done {name} ({bytes} bytes)");
    }
    fn message(&self, text: &str) {
        tracing::info!("{text}");
    }
}

fn init_logging(level: &str) {
    let filter = match level {
        "off" => "off",
        "error" => "error",
        "warn" => "warn",
        "info" => "info",
        "detail" | "debug" => "debug",
        _ => "trace",
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "off,pgbr={filter},pgbr_backup={filter},pgbr_storage={filter}"
        )))
        .try_init();
}

/// Tunes glibc's malloc for `command`; called before any other thread exists.
///
/// - At most one arena per CPU (glibc allows eight per CPU): buffers allocated on the runtime's
///   I/O threads and freed on the workers otherwise fragment across many arenas. Restore of
///   1.7 GB peaked at 47 MB with the default and 30 MB with this, at the same speed.
/// - Backup allocates buffers of every size for every file. glibc maps a large buffer on its
///   own, but after freeing one it raises that threshold to the buffer's size, so later buffers
///   of up to 32 MiB come from the arenas and fragment them: backing up 121k files peaked at
///   113-118 MB (73 MB of live heap) with the default and 92-93 MB with the threshold held at
///   256 KiB, and the 1.7 GB backup at 28-29 MB against 23-25 MB, as fast. Restore is left
///   alone: mapping its multi-megabyte ranged reads each time cost 10% more time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc(command: Command) {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cpus.max(2)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
        if command == Command::Backup {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc(_command: Command) {}

fn main() -> ExitCode {
    // The fault tests' failpoints (`pgbr_backup::failpoints`), from the FAILPOINTS environment
    // variable: only in a build with the `failpoints` feature (the test suite's); in any other
    // build this reads nothing.
    #[allow(clippy::let_unit_value)]
    let _failpoints = pgbr_backup::failpoints_from_env!();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = match args::parse(argv.clone()) {
        Ok(p) => p,
        Err(e) => {
            // clap renders help and version itself; a usage error is one line, like every other
            // error (clap's own rendering adds usage and tip lines).
            if !e.use_stderr() {
                let _ = e.print();
                return ExitCode::from(exit::SUCCESS);
            }
            if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return ExitCode::from(exit::CONFIG);
            }
            eprintln!("pgbr: ERROR: {}", args::error_line(&e, &argv));
            return ExitCode::from(exit::CONFIG);
        }
    };
    tune_malloc(parsed.command);
    if parsed.command == Command::Version {
        println!("pgbr {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let env = match pgbr_backup::config::env_vars() {
        Ok(env) => env,
        Err(e) => return fail(parsed.command, &e),
    };
    let config = match Config::load(parsed.command, &parsed.flags, env) {
        Ok(c) => c,
        Err(e) => return fail(parsed.command, &e),
    };
    init_logging(&config.log_level);
    for w in &config.options.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let e = Error::Internal(format!("unable to start the async runtime: {e}"));
            return fail(parsed.command, &e);
        }
    };
    match runtime.block_on(run(&config, &parsed.positional)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(parsed.command, &e),
    }
}

fn fail(command: Command, e: &Error) -> ExitCode {
    eprintln!("pgbr: ERROR: {e}");
    ExitCode::from(e.exit_code_for(command))
}

/// An error writing the command's output (stdout closed, disk full).
fn output_error(e: std::io::Error) -> Error {
    Error::Io {
        action: "unable to write the output to",
        path: "standard output".into(),
        source: e,
    }
}

/// `archive-push` with `archive-async=y`, of a file PostgreSQL marked ready: make sure a worker
/// runs, and wait (at most `archive-timeout`) until it reports the file pushed to every repository.
async fn push_async(
    config: &Config,
    spool: &AsyncOptions,
    wal_path: &Path,
    name: &str,
) -> Result<u8, Error> {
    let stanza = config.stanza()?;
    let timeout = config.archive_timeout();
    let started = std::time::Instant::now();
    let mut spawned: Option<std::time::Instant> = None;
    loop {
        match archive_async::take_push_status(spool, stanza, name)? {
            PushStatus::Pushed => return Ok(0),
            PushStatus::Dropped(why) => {
                tracing::error!(
                    "{name} DROPPED, NOT ARCHIVED: {why}. The archive now has a gap: point-in-time recovery past it is impossible until the next backup. Find out why the repository is not keeping up."
                );
                return Ok(0);
            }
            PushStatus::Failed(why) => {
                return Err(Error::Internal(format!(
                    "asynchronous archive-push of {name} failed: {why} (the next archive-push tries again)"
                )))
            }
            PushStatus::Pending => {}
        }
        // A worker just started may not hold its lock yet: give it a second before another.
        let recently = spawned.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(1));
        if !recently && !archive_async::push_worker_running(spool, stanza)? {
            let wal_dir = wal_path.parent().unwrap_or(Path::new("."));
            spawn_worker(
                config,
                spool,
                Command::ArchivePushAsync,
                &[wal_dir.display().to_string()],
            )?;
            spawned = Some(std::time::Instant::now());
        }
        if started.elapsed() > timeout {
            return Err(Error::ArchiveTimeout(format!(
                "asynchronous archive-push of {name} did not finish within archive-timeout ({:.0}s); the worker logs to {}",
                timeout.as_secs_f64(),
                worker_log(spool, stanza, Command::ArchivePushAsync).display()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Starts a prefetch of the segments after `name` (best effort: recovery goes on without it).
fn start_prefetch(config: &Config, name: &str, fetched: &Path) {
    let Some(spool) = config.archive_async() else {
        return;
    };
    let mut header = [0u8; 64];
    let size = std::fs::File::open(fetched)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut header))
        .ok()
        .and_then(|n| pgbr_backup::wal::LongPageHeader::parse(&header[..n]).ok())
        .map(|h| h.segment_size);
    let running = config
        .stanza()
        .ok()
        .map(|stanza| archive_async::prefetch_worker_running(&spool, stanza).unwrap_or(false))
        .unwrap_or(false);
    if running {
        return;
    }
    if let Some(size) = size {
        if let Err(e) = spawn_worker(
            config,
            &spool,
            Command::ArchiveGetAsync,
            &[name.to_string(), size.to_string()],
        ) {
            tracing::warn!("unable to start the archive-get prefetch worker: {e}");
        }
    }
}

/// Where a background worker running `command` for `stanza` logs.
fn worker_log(spool: &AsyncOptions, stanza: &str, command: Command) -> std::path::PathBuf {
    spool
        .stanza_dir(stanza)
        .join(format!("{}.log", command.name()))
}

/// Starts this binary detached as `command`, with the same options, logging into the spool.
fn spawn_worker(
    config: &Config,
    spool: &AsyncOptions,
    command: Command,
    args: &[String],
) -> Result<(), Error> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("unable to find the pgbr executable: {e}")))?;
    let stanza = config.stanza()?;
    let dir = spool.stanza_dir(stanza);
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        action: "unable to create spool directory",
        path: dir.clone(),
        source: e,
    })?;
    let log_path = worker_log(spool, stanza, command);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::Io {
            action: "unable to open worker log",
            path: log_path.clone(),
            source: e,
        })?;
    let mut cmd = std::process::Command::new(exe);
    for (name, value) in config.options.command_line_values() {
        let secret = pgbr_backup::options::OptionName::parse(&name).is_some_and(|n| n.def.secret);
        if secret {
            // Never on a command line (ps shows it): the worker reads it from its environment.
            cmd.env(
                format!("PGBR_{}", name.to_ascii_uppercase().replace('-', "_")),
                value,
            );
        } else if name != "stanza" {
            cmd.arg(format!("--{name}={value}"));
        }
    }
    cmd.arg(format!("--stanza={stanza}"))
        .arg("--log-level-console=info")
        .arg(command.name())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        // Its own process group: signals meant for PostgreSQL's archiver do not reach it.
        .process_group(0);
    cmd.spawn()
        .map_err(|e| Error::Internal(format!("unable to start {}: {e}", command.name())))?;
    Ok(())
}

/// `backup`, then `expire` (as after every successful backup), on `repo`, which holds the
/// stanza's lock and claim.
async fn backup_then_expire(
    config: &Config,
    repo: &mut Repository,
    opts: &pgbr_backup::config::BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<u8, Error> {
    let report = pgbr_backup::backup::run(repo, &config.pg()?, opts, progress).await?;
    for label in &report.removed_incomplete {
        tracing::warn!("removed incomplete backup {label}");
    }
    if let Some(m) = &report.type_changed {
        tracing::warn!("{m}");
    }
    if let Some(n) = report.resumed_files {
        tracing::info!(
            "backup {} resumed an interrupted attempt: {n} stored file(s) verified and reused",
            report.label
        );
    }
    // Expire after every successful backup, still under the backup's lock and claim.
    let expired = pgbr_backup::expire::run(repo, &config.expire()?).await?;
    for w in &expired.warnings {
        tracing::warn!("{w}");
    }
    for line in render::expire_text(&expired).lines() {
        tracing::info!("{line}");
    }
    if report.page_errors > 0 {
        tracing::warn!(
            "backup {} found {} page(s) failing their checksum; 'pgbr info' lists the files",
            report.label,
            report.page_errors
        );
    }
    tracing::info!(
        "backup {} complete: {} files, {} bytes, {} stored",
        report.label,
        report.file_count,
        report.size_original,
        report.size_stored
    );
    Ok(0)
}

async fn run(config: &Config, positional: &[String]) -> Result<u8, Error> {
    let progress: Arc<dyn Progress> = Arc::new(LogProgress);
    if matches!(
        config.command,
        Command::ArchivePush
            | Command::ArchiveGet
            | Command::ArchivePushAsync
            | Command::ArchiveGetAsync
    ) {
        // WAL commands take no lock, but a stopped stanza moves no WAL (`pgbr stop`).
        pgbr_backup::lock::check_not_stopped(&config.lock_path(), config.stanza()?)?;
    }
    match config.command {
        Command::Stop | Command::Start => stop_start(config),
        Command::StanzaUpgrade => {
            let stanza = config.stanza()?;
            // In every repository (or --repo).
            for repo in config.repos()? {
                let name = multi::label(&repo);
                match pgbr_backup::stanza::upgrade(&repo, stanza, &config.pg()?, &config.lock_path())
                    .await?
                {
                    StanzaUpgraded::Upgraded { from, to } => println!(
                        "{name}: stanza '{stanza}' upgraded: db-id {} (system {}, PostgreSQL {}) is now current; db-id {} (system {}, PostgreSQL {}) stays for its backups and WAL",
                        to.db_id, to.system_id, to.pg_version, from.db_id, from.system_id, from.pg_version
                    ),
                    StanzaUpgraded::AlreadyUpToDate { db } => println!(
                        "{name}: stanza '{stanza}' is already up to date (db-id {}, system {}, PostgreSQL {}); nothing changed",
                        db.db_id, db.system_id, db.pg_version
                    ),
                }
            }
            Ok(0)
        }
        Command::StanzaDelete => {
            let stanza = config.stanza()?;
            let opts = pgbr_backup::stanza::DeleteOptions {
                lock_path: config.lock_path(),
                pg_path: config.options.get("pg1-path").map(std::path::PathBuf::from),
                force: config.options.get_bool("force"),
            };
            for repo in config.repos()? {
                let name = multi::label(&repo);
                match pgbr_backup::stanza::delete(&repo, stanza, &opts).await? {
                    StanzaDeleted::Deleted { objects } => {
                        println!("{name}: stanza '{stanza}' deleted ({objects} objects removed)")
                    }
                    StanzaDeleted::NotFound => {
                        println!("{name}: stanza '{stanza}' does not exist; nothing to delete")
                    }
                }
            }
            Ok(0)
        }
        Command::ArchivePushAsync => {
            let spool = config.archive_async().ok_or_else(|| {
                Error::Config("archive-push-async runs only with archive-async=y".into())
            })?;
            let [wal_dir] = positional else {
                return Err(Error::Config(
                    "archive-push-async takes one argument, the directory of the WAL files".into(),
                ));
            };
            // Every repository takes every file; one that does not open fails them.
            let stanza = config.stanza()?;
            let mut repos = Vec::new();
            let mut unavailable = Vec::new();
            for r in config.repos()? {
                match Repository::open(&r, stanza).await {
                    Ok(repo) => repos.push(repo),
                    Err(e) => unavailable.push(format!("{}: {e}", multi::label(&r))),
                }
            }
            let drained = archive_async::drain_ready(
                &repos,
                &unavailable,
                &config.archive_push()?,
                &spool,
                Path::new(wal_dir),
                std::time::Duration::from_secs(5),
            )
            .await;
            let report = match drained {
                Ok(report) => report,
                Err(e) => {
                    // The archive-push waiting would otherwise wait out archive-timeout.
                    archive_async::report_worker_failure(&spool, stanza, &e.to_string())?;
                    return Err(e);
                }
            };
            tracing::info!(
                "pushed {} WAL file(s), {} failed, {} dropped",
                report.pushed,
                report.failed,
                report.dropped
            );
            Ok(0)
        }
        Command::ArchiveGetAsync => {
            let spool = config.archive_async().ok_or_else(|| {
                Error::Config("archive-get-async runs only with archive-async=y".into())
            })?;
            let [name, size] = positional else {
                return Err(Error::Config(
                    "archive-get-async takes a WAL name and a segment size".into(),
                ));
            };
            let size: u64 = size
                .parse()
                .map_err(|_| Error::Config(format!("invalid segment size '{size}'")))?;
            let repo = open_first(config).await?;
            let report = archive_async::prefetch(&repo, name, size, &spool).await?;
            tracing::info!(
                "prefetched {} segment(s), {} not in the archive yet",
                report.fetched,
                report.missing
            );
            Ok(0)
        }
        Command::Check => {
            let repo = Repository::open(&config.default_repo()?, config.stanza()?).await?;
            let report =
                pgbr_backup::check::run(&repo, &config.pg()?, config.archive_timeout()).await?;
            println!(
                "check: stanza '{}' ok: WAL segment {} reached {} in {:.1}s",
                repo.stanza(),
                report.wal_segment,
                repo.name(),
                report.waited.as_secs_f64()
            );
            Ok(0)
        }
        Command::StanzaCreate => {
            let stanza = config.stanza()?;
            let _lock = pgbr_backup::lock::Lock::acquire(&config.lock_path(), stanza)?;
            // In every repository.
            for index in config.repo_indexes() {
                let repo = config.repo(index)?;
                let name = multi::label(&repo);
                match pgbr_backup::stanza::create(&repo, stanza, &config.pg()?).await? {
                    StanzaCreated::Created { db } => tracing::info!(
                        "{name}: stanza '{stanza}' created for system {} (PostgreSQL {})",
                        db.system_id,
                        db.pg_version
                    ),
                    StanzaCreated::AlreadyExists { .. } => {
                        tracing::info!(
                            "{name}: stanza '{stanza}' already exists for this cluster; nothing changed"
                        )
                    }
                }
            }
            Ok(0)
        }
        Command::ArchivePush => {
            let [wal] = positional else {
                return Err(Error::Config(
                    "archive-push takes one argument, the WAL file's path (%p)".into(),
                ));
            };
            let push = config.archive_push()?;
            let path = push.wal_path(Path::new(wal))?;
            if let Some(spool) = config.archive_async() {
                let name = path.file_name().and_then(|n| n.to_str());
                match name {
                    Some(name) if archive_async::is_marked_ready(&path) => {
                        return push_async(config, &spool, &path, name).await;
                    }
                    // Not handed over by PostgreSQL's archiver: no worker would find it.
                    _ => tracing::info!(
                        "{wal} is not marked ready for archiving (archive_status/<name>.ready beside it): pushed now, not by the asynchronous worker"
                    ),
                }
            }
            let repos = config.repos()?;
            let report = multi::push_all(&repos, config.stanza()?, &path, &push).await;
            for (repo, outcome) in &report.stored {
                if *outcome == PushOutcome::AlreadyArchived {
                    tracing::warn!(
                        "{repo}: {wal} is already in the archive with the same contents; nothing written"
                    );
                }
            }
            if report.failed.is_empty() {
                return Ok(0);
            }
            if repos.len() == 1 {
                // One repository: its error as it is.
                if let Some((_, e)) = report.failed.into_iter().next() {
                    return Err(e);
                }
                return Ok(0);
            }
            // Several: name each repository that failed and fail, so PostgreSQL retries;
            // repositories that already hold the file are not written again.
            let mut code = 0;
            for (repo, e) in &report.failed {
                if code == 0 {
                    code = e.exit_code_for(Command::ArchivePush);
                }
                eprintln!("pgbr: ERROR: {repo}: {e}");
            }
            for (repo, _) in &report.stored {
                eprintln!("pgbr: INFO: {repo}: {wal} is archived");
            }
            Ok(code)
        }
        Command::ArchiveGet => {
            let [name, dest] = positional else {
                return Err(Error::Config(
                    "archive-get takes two arguments, the WAL file name (%f) and the destination (%p)".into(),
                ));
            };
            // The first repository that holds the file serves it.
            let spool = config.archive_async();
            let repos = config.repos()?;
            let report = multi::get_first(
                &repos,
                config.stanza()?,
                name,
                Path::new(dest),
                spool.as_ref(),
            )
            .await;
            if let Some(from) = &report.found {
                for (repo, e) in &report.failed {
                    tracing::warn!("{repo}: {e}; {name} was read from {from}");
                }
                if spool.is_some() {
                    start_prefetch(config, name, Path::new(dest));
                }
                return Ok(0);
            }
            if report.failed.is_empty() {
                tracing::info!("{name} is not in the archive");
                return Ok(exit::ARCHIVE_GET_NOT_FOUND);
            }
            if repos.len() == 1 {
                if let Some((_, e)) = report.failed.into_iter().next() {
                    return Err(e);
                }
                return Ok(exit::ARCHIVE_GET_FAILED);
            }
            for (repo, e) in &report.failed {
                eprintln!("pgbr: ERROR: {repo}: {e}");
            }
            eprintln!(
                "pgbr: ERROR: {name} is in no repository that answered, and a repository that failed may hold it"
            );
            Ok(exit::ARCHIVE_GET_FAILED)
        }
        Command::Backup => {
            let mut repo = Repository::open(&config.default_repo()?, config.stanza()?).await?;
            // The backup and the expire after it run under one claim of the stanza.
            let opts = config.backup()?;
            repo.lock(&opts.lock_path)?;
            repo.claim("backup").await?;
            let result = backup_then_expire(config, &mut repo, &opts, progress).await;
            if let Err(e) = repo.release_claim().await {
                tracing::warn!("{e}; the next command takes the claim over");
            }
            result
        }
        Command::Restore => {
            let mut opts = config.restore()?;
            // `--repo`, else the first repository that opens and holds a backup.
            let (repo, skipped) =
                multi::open_for_restore(&config.repos()?, config.stanza()?, opts.set.as_deref())
                    .await?;
            for (name, e) in &skipped {
                tracing::warn!("{name} passed over: {e}");
            }
            tracing::info!("restoring from {}", repo.name());
            opts.restore_command = Some(restore_command(config)?);
            let report = pgbr_backup::restore::run(&repo, &opts, progress).await?;
            for w in &report.warnings {
                tracing::warn!("{w}");
            }
            tracing::info!(
                "restore of {} complete: {} files written ({} bytes), {} unchanged, {} removed",
                report.label,
                report.files_written,
                report.bytes_written,
                report.files_unchanged,
                report.entries_removed
            );
            Ok(0)
        }
        Command::Info => {
            let mut reports = info_all(config).await?;
            if let Some(set) = config.options.get("set") {
                reports = pgbr_backup::info::only_set(reports, &set)?;
            }
            let text = if config.options.get("output").as_deref() == Some("json") {
                serde_json::to_string_pretty(&reports)
                    .map_err(|e| Error::Internal(format!("rendering JSON: {e}")))?
            } else {
                render::info_text(&reports)
            };
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").map_err(output_error)?;
            Ok(0)
        }
        Command::Expire => {
            let mut repo = Repository::open(&config.default_repo()?, config.stanza()?).await?;
            let report = pgbr_backup::expire::run(&mut repo, &config.expire()?).await?;
            for w in &report.warnings {
                tracing::warn!("{w}");
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", render::expire_text(&report)).map_err(output_error)?;
            Ok(0)
        }
        Command::Verify => {
            let repo = Repository::open(&config.default_repo()?, config.stanza()?).await?;
            let report = pgbr_backup::verify::run(&repo, &config.verify()?, progress).await?;
            let text = if config.options.get("output").as_deref() == Some("json") {
                serde_json::to_string_pretty(&report)
                    .map_err(|e| Error::Internal(format!("rendering JSON: {e}")))?
            } else {
                render::verify_text(&report)
            };
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").map_err(output_error)?;
            if report.ok {
                Ok(0)
            } else {
                eprintln!(
                    "pgbr: ERROR: verify found {} problem(s) in stanza '{}'",
                    report.errors.len(),
                    report.stanza
                );
                Ok(exit::VERIFY_FAILED)
            }
        }
        Command::Version => Ok(0),
    }
}

/// `stop` and `start`: write or remove the stop file of `--stanza` (without it: every stanza).
fn stop_start(config: &Config) -> Result<u8, Error> {
    let lock_path = config.lock_path();
    let stanza = config.stanza.as_deref();
    let (what, flag) = match stanza {
        Some(s) => (format!("stanza '{s}'"), format!(" --stanza={s}")),
        None => ("all stanzas".to_string(), String::new()),
    };
    if config.command == Command::Stop {
        let force = config.options.get_bool("force");
        let report = pgbr_backup::lock::stop(&lock_path, stanza, force)?;
        if report.already_stopped {
            tracing::warn!(
                "stop file {} already exists for {what}",
                report.stop_file.display()
            );
        }
        for (s, pid) in &report.terminated {
            println!("terminated pgbr process {pid} holding the lock on stanza '{s}'");
        }
        println!("{what} stopped: run 'pgbr{flag} start' to allow commands again");
    } else {
        if !pgbr_backup::lock::start(&lock_path, stanza)? {
            tracing::warn!("stop file does not exist for {what}; nothing to start");
        }
        if let Some(s) = stanza {
            if pgbr_backup::lock::is_stopped(&lock_path, s) {
                tracing::warn!("all stanzas are still stopped: run 'pgbr start'");
            }
        }
        println!("{what} started");
    }
    Ok(0)
}

/// `info` of every repository (or of `--repo`): one report per stanza and repository, repo1's
/// first. With several repositories, one that fails is reported as an error entry; the command
/// fails only when every repository does.
async fn info_all(config: &Config) -> Result<Vec<pgbr_backup::info::StanzaReport>, Error> {
    let repos = config.repos()?;
    if let [only] = repos.as_slice() {
        return pgbr_backup::info::collect(only, config.stanza.as_deref()).await;
    }
    let mut out = Vec::new();
    let mut first_error = None;
    let mut any_ok = false;
    for r in &repos {
        match pgbr_backup::info::collect(r, config.stanza.as_deref()).await {
            Ok(reports) => {
                any_ok = true;
                out.extend(reports);
            }
            Err(e) => {
                out.push(pgbr_backup::info::StanzaReport {
                    name: config.stanza.clone().unwrap_or_default(),
                    repo: multi::label(r),
                    status: "error".into(),
                    message: Some(e.to_string()),
                    cipher: r.cipher_type.to_string(),
                    db: Vec::new(),
                    archive: Vec::new(),
                    backups: Vec::new(),
                    page_errors: Vec::new(),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if !any_ok => Err(e),
        _ => Ok(out),
    }
}

/// The first repository that opens (for the archive-get prefetch worker).
async fn open_first(config: &Config) -> Result<Repository, Error> {
    let mut first_error = None;
    for r in config.repos()? {
        match Repository::open(&r, config.stanza()?).await {
            Ok(repo) => return Ok(repo),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| Error::Config("no repository is configured".into())))
}

/// The `restore_command` a restored cluster runs: this binary, the same configuration.
fn restore_command(config: &Config) -> Result<String, Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("unable to find the pgbr executable: {e}")))?;
    let mut parts = vec![shell_quote(&exe.display().to_string())];
    for f in config.archive_get_flags() {
        parts.push(shell_quote(&f));
    }
    parts.push(shell_quote(&format!("--stanza={}", config.stanza()?)));
    parts.push("archive-get %f \"%p\"".into());
    Ok(parts.join(" "))
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_=./:,@%+".contains(&b))
    {
        s.to_string()
    } else {
        format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$")
                .replace('`', "\\`")
        )
    }
}
