//! `pgbr`: the reference command line for the pgbr engine. It parses arguments, sets up logging,
//! calls one `pgbr-backup` function and prints the result; nothing else lives here.

mod args;
mod render;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use pgbr_backup::archive::{GetOutcome, PushOutcome};
use pgbr_backup::config::Config;
use pgbr_backup::options::Command;
use pgbr_backup::stanza::StanzaCreated;
use pgbr_backup::{Error, Progress, Repository};

/// Exit code of `archive-get` when the file is not in the archive (PostgreSQL then ends recovery
/// or keeps waiting, as it should).
const EXIT_NOT_FOUND: u8 = 1;
/// Exit code of `archive-get` on any other failure: above 125, so PostgreSQL stops recovery with
/// an error instead of taking a broken repository for the end of the archive.
const EXIT_ARCHIVE_GET_FAILED: u8 = 126;

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
    let parsed = match args::parse(std::env::args_os()) {
        Ok(p) => p,
        Err(e) => {
            // clap renders help, version and usage errors itself.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if parsed.command == Command::Version {
        println!("pgbr {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(parsed.command, &parsed.flags, std::env::vars()) {
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
            eprintln!("pgbr: ERROR: unable to start the async runtime: {e}");
            return ExitCode::from(12);
        }
    };
    match runtime.block_on(run(&config, &parsed.positional)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(parsed.command, &e),
    }
}

fn fail(command: Command, e: &Error) -> ExitCode {
    eprintln!("pgbr: ERROR: {e}");
    if command == Command::ArchiveGet {
        return ExitCode::from(EXIT_ARCHIVE_GET_FAILED);
    }
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
}

async fn run(config: &Config, positional: &[String]) -> Result<u8, Error> {
    let progress: Arc<dyn Progress> = Arc::new(LogProgress);
    match config.command {
        Command::StanzaCreate => {
            let stanza = config.stanza()?;
            match pgbr_backup::stanza::create(&config.repo(1)?, stanza, &config.pg()?).await? {
                StanzaCreated::Created { db } => tracing::info!(
                    "stanza '{stanza}' created for system {} (PostgreSQL {})",
                    db.system_id,
                    db.pg_version
                ),
                StanzaCreated::AlreadyExists { .. } => {
                    tracing::info!(
                        "stanza '{stanza}' already exists for this cluster; nothing changed"
                    )
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
            let repo = Repository::open(&config.repo(1)?, config.stanza()?).await?;
            let outcome =
                pgbr_backup::archive::push(&repo, Path::new(wal), &config.archive_push()?).await?;
            if outcome == PushOutcome::AlreadyArchived {
                tracing::warn!(
                    "{wal} is already in the archive with the same contents; nothing written"
                );
            }
            Ok(0)
        }
        Command::ArchiveGet => {
            let [name, dest] = positional else {
                return Err(Error::Config(
                    "archive-get takes two arguments, the WAL file name (%f) and the destination (%p)".into(),
                ));
            };
            let repo = Repository::open(&config.repo(1)?, config.stanza()?).await?;
            match pgbr_backup::archive::get(&repo, name, Path::new(dest)).await? {
                GetOutcome::Found => Ok(0),
                GetOutcome::NotFound => {
                    tracing::info!("{name} is not in the archive");
                    Ok(EXIT_NOT_FOUND)
                }
            }
        }
        Command::Backup => {
            let mut repo = Repository::open(&config.repo(1)?, config.stanza()?).await?;
            let report =
                pgbr_backup::backup::run(&mut repo, &config.pg()?, &config.backup()?, progress)
                    .await?;
            for label in &report.removed_incomplete {
                tracing::warn!("removed incomplete backup {label}");
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
        Command::Restore => {
            let repo = Repository::open(&config.repo(1)?, config.stanza()?).await?;
            let mut opts = config.restore()?;
            opts.restore_command = Some(restore_command(config)?);
            let report = pgbr_backup::restore::run(&repo, &opts, progress).await?;
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
            let reports =
                pgbr_backup::info::collect(&config.repo(1)?, config.stanza.as_deref()).await?;
            let text = if config.options.get("output").as_deref() == Some("json") {
                serde_json::to_string_pretty(&reports)
                    .map_err(|e| Error::Internal(format!("rendering JSON: {e}")))?
            } else {
                render::info_text(&reports)
            };
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").map_err(|e| Error::Internal(format!("writing output: {e}")))?;
            Ok(0)
        }
        Command::Version => Ok(0),
    }
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
