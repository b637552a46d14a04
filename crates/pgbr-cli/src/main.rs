//! `pgbr`: the reference command line for the pgbr engine. It parses arguments, sets up logging,
//! calls one `pgbr-backup` function and prints the result; nothing else lives here.

mod args;
mod render;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use pgbr_backup::archive::client::{self as archive_client, PushNotice};
use pgbr_backup::archive::GetOutcome;
use pgbr_backup::config::Config;
use pgbr_backup::options::Command;
use pgbr_backup::{backup_expire, exit, multi, stanza};
use pgbr_backup::{Error, Progress, Repository};

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
    pgbr_backup::process::tune_allocator(parsed.command);
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

/// Writes `text` and a newline to standard output.
fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| Error::Io {
        action: "unable to write the output to",
        path: "standard output".into(),
        source: e,
    })
}

/// With `--output=json`, `json`; with `--output=pgbr-json`, `pgbr_json`; else `text`.
fn json_or(
    config: &Config,
    json: impl FnOnce() -> serde_json::Result<String>,
    pgbr_json: impl FnOnce() -> serde_json::Result<String>,
    text: impl FnOnce() -> String,
) -> Result<String, Error> {
    let rendered = match config.options.get("output").as_deref() {
        Some("json") => json(),
        Some("pgbr-json") => pgbr_json(),
        Some("prometheus") => {
            return Err(Error::Config(
                "option 'output': prometheus is info's (--output=text, json or pgbr-json here)"
                    .into(),
            ))
        }
        _ => return Ok(text()),
    };
    rendered.map_err(|e| Error::Internal(format!("rendering JSON: {e}")))
}

/// This binary: what a restored cluster's `restore_command` runs.
fn exe() -> Result<PathBuf, Error> {
    std::env::current_exe()
        .map_err(|e| Error::Internal(format!("unable to find the pgbr executable: {e}")))
}

/// The repository the single-repository commands work on: `--repo`, else repo1.
async fn open_default(config: &Config) -> Result<Repository, Error> {
    Repository::open(&config.default_repo()?, config.stanza()?).await
}

async fn run(config: &Config, positional: &[String]) -> Result<u8, Error> {
    let progress: Arc<dyn Progress> = Arc::new(LogProgress);
    match (config.command, positional) {
        (Command::Stop | Command::Start, _) => stop_start(config),
        (Command::StanzaCreate | Command::StanzaUpgrade | Command::StanzaDelete, _) => {
            stanza_command(config).await
        }
        (Command::ArchivePush, [wal]) => archive_push(config, wal).await,
        (Command::ArchiveGet, [name, dest]) => archive_get(config, name, Path::new(dest)).await,
        (Command::ArchivePushAsync, [wal_dir]) => {
            let r = archive_client::push_worker(config, Path::new(wal_dir)).await?;
            let (pushed, failed, dropped) = (r.pushed, r.failed, r.dropped);
            tracing::info!("pushed {pushed} WAL file(s), {failed} failed, {dropped} dropped");
            Ok(0)
        }
        (Command::ArchiveGetAsync, [name, size]) => {
            let size: u64 = size
                .parse()
                .map_err(|_| Error::Config(format!("invalid segment size '{size}'")))?;
            let r = archive_client::prefetch_worker(config, name, size).await?;
            let (fetched, missing) = (r.fetched, r.missing);
            tracing::info!("prefetched {fetched} segment(s), {missing} not in the archive yet");
            Ok(0)
        }
        (Command::Check, _) => {
            let repo = open_default(config).await?;
            let report = pgbr_backup::check::run(
                &repo,
                &config.pg()?,
                &config.lock_path(),
                config.archive_timeout(),
            )
            .await?;
            println!(
                "check: stanza '{}' ok: WAL segment {} reached {} in {:.1}s",
                repo.stanza(),
                report.wal_segment,
                repo.name(),
                report.waited.as_secs_f64()
            );
            Ok(0)
        }
        (Command::Backup, _) => {
            let mut repo = open_default(config).await?;
            let opts = config.backup()?;
            let (pg, expire) = (config.pg()?, multi::expire_options(config, &repo).await?);
            let r = backup_expire::run(&mut repo, &pg, &opts, &expire, progress).await?;
            log_backup(&r);
            Ok(0)
        }
        (Command::Restore, _) => restore(config, progress).await,
        (Command::Info, _) => {
            let mut reports = multi::info_all(&config.repos()?, config.stanza.as_deref()).await?;
            if let Some(set) = config.options.get("set") {
                reports = pgbr_backup::info::only_set(reports, &set)?;
            }
            // pgBackRest's schema, which monitoring parses; pgbr's own with pgbr-json.
            let lock_path = config.lock_path();
            let held =
                |s: &str| pgbr_backup::lock::holder(&lock_path, s).is_ok_and(|p| p.is_some());
            let json = || {
                serde_json::to_string_pretty(&pgbr_backup::info::pgbackrest_json(&reports, &held))
            };
            if config.options.get("output").as_deref() == Some("prometheus") {
                print(&pgbr_backup::info::prometheus_text(&reports))?;
                return Ok(0);
            }
            let own = || serde_json::to_string_pretty(&reports);
            print(&json_or(config, json, own, || render::info_text(&reports))?)?;
            Ok(0)
        }
        (Command::Expire, _) => {
            let mut repo = open_default(config).await?;
            let opts = multi::expire_options(config, &repo).await?;
            let report = pgbr_backup::expire::run(&mut repo, &opts).await?;
            for w in &report.warnings {
                tracing::warn!("{w}");
            }
            print(&render::expire_text(&report))?;
            Ok(0)
        }
        (Command::Verify, _) => {
            let repo = open_default(config).await?;
            let report = pgbr_backup::verify::run(&repo, &config.verify()?, progress).await?;
            let json = || serde_json::to_string_pretty(&report);
            print(&json_or(config, json, json, || {
                render::verify_text(&report)
            })?)?;
            if report.ok {
                return Ok(0);
            }
            let (problems, stanza) = (report.errors.len(), &report.stanza);
            eprintln!("pgbr: ERROR: verify found {problems} problem(s) in stanza '{stanza}'");
            Ok(exit::VERIFY_FAILED)
        }
        (Command::Version, _) => Ok(0),
        // clap gives each WAL command the arguments it takes.
        (command, _) => Err(Error::Internal(format!(
            "{} was given the wrong number of arguments",
            command.name()
        ))),
    }
}

/// `stanza-create`, `stanza-upgrade` and `stanza-delete`, which run in every repository.
async fn stanza_command(config: &Config) -> Result<u8, Error> {
    let stanza = config.stanza()?;
    match config.command {
        Command::StanzaCreate => {
            stanza::all::create(config, |repo, r| {
                tracing::info!("{}", r.describe(repo, stanza))
            })
            .await
        }
        Command::StanzaUpgrade => {
            stanza::all::upgrade(config, |repo, r| println!("{}", r.describe(repo, stanza))).await
        }
        Command::StanzaDelete => {
            stanza::all::delete(config, |repo, r| println!("{}", r.describe(repo, stanza))).await
        }
        _ => Ok(()),
    }?;
    Ok(0)
}

/// `restore`, from `--repo` or else the first repository that opens and holds a backup.
async fn restore(config: &Config, progress: Arc<dyn Progress>) -> Result<u8, Error> {
    let r = pgbr_backup::restore::from_config(config, &exe()?, progress).await?;
    for w in &r.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(
        "restore of {} complete: {} files written ({} bytes), {} unchanged, {} removed",
        r.label,
        r.files_written,
        r.bytes_written,
        r.files_unchanged,
        r.entries_removed
    );
    Ok(0)
}

/// Logs what `backup` and the expire after it did.
fn log_backup(r: &backup_expire::BackupExpireReport) {
    if let Some(expire) = &r.expire {
        for w in &expire.warnings {
            tracing::warn!("{w}");
        }
        for line in render::expire_text(expire).lines() {
            tracing::info!("{line}");
        }
    }
    let b = &r.backup;
    if b.page_errors > 0 {
        tracing::warn!(
            "backup {} found {} page(s) failing their checksum; 'pgbr info' lists the files",
            b.label,
            b.page_errors
        );
    }
    tracing::info!(
        "backup {} complete: {} files, {} bytes, {} stored, {} read",
        b.label,
        b.file_count,
        b.size_original,
        b.size_stored,
        b.bytes_read
    );
}

/// `archive-push` of the WAL file `wal`.
async fn archive_push(config: &Config, wal: &str) -> Result<u8, Error> {
    let pushed = archive_client::push(config, None, Path::new(wal)).await?;
    for notice in pushed.verdict(Path::new(wal))? {
        match notice {
            PushNotice::Dropped { .. } => tracing::error!("{notice}"),
            PushNotice::AlreadyArchived { .. } => tracing::warn!("{notice}"),
        }
    }
    Ok(exit::SUCCESS)
}

/// `archive-get` of `name` into `dest`: from the first repository that holds it.
async fn archive_get(config: &Config, name: &str, dest: &Path) -> Result<u8, Error> {
    let got = archive_client::get(config, None, name, dest).await?;
    match got.verdict(name)? {
        GetOutcome::Found => Ok(exit::SUCCESS),
        GetOutcome::NotFound => {
            tracing::info!("{name} is not in the archive");
            Ok(exit::ARCHIVE_GET_NOT_FOUND)
        }
    }
}

/// `stop` and `start`: write or remove the stop file of `--stanza` (without it: every stanza).
fn stop_start(config: &Config) -> Result<u8, Error> {
    let stop = config.command == Command::Stop;
    let force = stop && config.options.get_bool("force");
    let told = pgbr_backup::lock::stop_or_start(
        &config.lock_path(),
        config.stanza.as_deref(),
        stop,
        force,
    )?;
    for w in &told.warnings {
        tracing::warn!("{w}");
    }
    print(&told.lines.join("\n"))?;
    Ok(0)
}
