//! `restore`: write a backup into a data directory (and its tablespaces), verifying every file's
//! checksum before it takes its name, then set the cluster up to recover from the archive.
//!
//! A restore touches only its destinations, and only when the safety model allows it
//! (`destination`): each destination is absent, empty, or — with `--delta`/`--force` — a
//! directory of the backup's own cluster that no running server uses. The manifest read is the
//! one `backup.info` committed for the backup asked for. Every change (removals, directories,
//! links, each file's place) is planned and checked (`plan`) before the first one is made.
//!
//! Work is shared by `process-max` workers, largest first: a file on its own, the files of one
//! bundle (one read of it), or a 64 MiB part of a big file, so that the biggest files of a
//! cluster do not leave one core working alone at the end (`write`, `parts`). A file restored
//! in parts is checked as a whole too: its BLAKE3 checksum is merged from the parts' subtrees.

mod apply;
mod backrest;
mod configured;
mod destination;
mod file;
mod live;
mod parts;
mod plan;
mod select;
mod settings;
mod write;

use std::fs;
use std::sync::Arc;

use crate::config::RestoreOptions;
use crate::error::{Error, Result};
use crate::pipeline;
use crate::progress::Progress;
use crate::recovery::RecoveryTarget;
use crate::repo::Repository;

pub use configured::from_config;
pub use select::choose_backup;
pub(crate) use select::usable_for;

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RestoreReport {
    /// The backup restored.
    pub label: String,
    /// Files written.
    pub files_written: u64,
    /// Bytes written to them.
    pub bytes_written: u64,
    /// Files already identical (delta restore) and left alone.
    pub files_unchanged: u64,
    /// Files and directories removed because the backup does not have them (delta/force).
    pub entries_removed: u64,
    /// Problems accepted with `--force` (e.g. a gap in the archive).
    pub warnings: Vec<String>,
}

/// Restores a backup of `repo` as `opts` says.
pub async fn run(
    repo: &Repository,
    opts: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    run_with_archives(repo, &[], opts, progress).await
}

/// As [`run`], where the restored cluster's `restore_command` reads the archives of `also` as
/// well as `repo`'s (`archive-get` over several repositories): the WAL recovery needs may be
/// in any of them.
pub async fn run_with_archives(
    repo: &Repository,
    also: &[Repository],
    opts: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    // What: the backup, its manifest as committed, and how its bytes (and those of the backups
    // it references) are stored.
    let target = &opts.recovery.target;
    let label = choose_backup(repo, opts.set.as_deref(), target)?;
    select::check_target_reachable(repo, &label, target)?;
    let (manifest, source) = load(repo, &label).await?;
    let manifest = Arc::new(manifest);
    let codecs = match &source {
        Source::Pgbr => write::codecs(repo, &manifest).await?,
        Source::Backrest(_) => Default::default(),
    };
    // Where, and whether pgbr may write there; whether recovery can reach the target.
    let dests = destination::destinations(&manifest, opts)?;
    let found = destination::check(&manifest, &dests, opts, &live::running_clusters())?;
    let warnings = select::check_archive(repo, also, &manifest, target, opts.force).await?;
    // Every change, checked before the first.
    let plan = Arc::new(plan::Plan::new(&manifest, &dests, &found, &plan::Disk)?);
    // With --type=preserve the destination's own recovery configuration survives the restore.
    let preserved = if *target == RecoveryTarget::Preserve {
        settings::preserve_recovery_files(&opts.pg_path)?
    } else {
        Vec::new()
    };
    progress.message(&format!("restore {label}: pre-flight checks passed"));

    let owner = apply::restore_owner(&opts.pg_path);
    plan.mark(&destination::marker_text(&manifest), owner)?;
    crate::failpoints::crash_point!("restore::after-mark");
    if found["pg_data"].has_old_entries() {
        plan.remove_old_control()?;
    }
    let entries_removed = plan.remove()?;
    crate::failpoints::crash_point!("restore::after-remove-extras");
    plan.make_directories_and_links(owner)?;
    let ctx = Arc::new(file::RestoreContext {
        storage: repo.storage().clone(),
        stanza_dir: crate::layout::stanza_backup_dir(repo.stanza()),
        label: label.clone(),
        codecs,
        overwrite: file::Overwrite::from_flags(opts.delta, opts.force),
        owner,
        handle: tokio::runtime::Handle::current(),
        busy: pipeline::Busy::new(opts.process_max),
    });
    let written = match &source {
        Source::Pgbr => {
            write::restore_files(&manifest, &plan, ctx, opts.process_max, &progress).await?
        }
        Source::Backrest(backup) => {
            backrest::restore_files(&manifest, backup, &plan, ctx, opts.process_max, &progress)
                .await?
        }
    };

    // The recovery settings and tablespace_map (from the actual destinations: PostgreSQL
    // recreates the pg_tblspc links from it) go in before the cluster can start at all.
    crate::failpoints::crash_point!("restore::before-recovery-settings");
    let pg_root = &plan.dests["pg_data"];
    settings::write_tablespace_map(&manifest, &plan.dests, owner)?;
    let restore_command = opts
        .restore_command
        .clone()
        .unwrap_or_else(|| format!("pgbr --stanza={} archive-get %f \"%p\"", repo.stanza()));
    if *target == RecoveryTarget::Preserve {
        for (path, contents) in preserved {
            pgbr_storage::posix::write_file_durable(&path, &contents, 0o600)?;
            apply::chown(&path, owner)?;
        }
    } else {
        settings::write_recovery_settings(pg_root, &restore_command, &opts.recovery, owner)?;
    }
    // Every file durable before anything tells PostgreSQL the restore is complete: one syncfs
    // per destination filesystem instead of an fsync per file.
    for dest in plan.dests.values() {
        pgbr_storage::posix::sync_filesystem(dest)?;
    }
    crate::failpoints::crash_point!("restore::before-pg-control");
    // Only now does the cluster become startable.
    let pg_control = pg_root.join(apply::PG_CONTROL);
    let staged = file::temporary_name(&pg_control);
    if staged.exists() {
        fs::rename(&staged, &pg_control)
            .map_err(|e| Error::io("unable to rename into place", &pg_control, e))?;
        if let Some(dir) = pg_control.parent() {
            pgbr_storage::posix::sync_dir(dir)?;
        }
    }
    plan.sync_directories()?;
    plan.unmark()?;
    progress.message(&format!(
        "restore {label}: {} files written ({} bytes), {} unchanged",
        written.files, written.bytes, written.unchanged
    ));
    Ok(RestoreReport {
        label,
        files_written: written.files,
        bytes_written: written.bytes,
        files_unchanged: written.unchanged,
        entries_removed,
        warnings,
    })
}

/// Whose format the backup restored is in.
enum Source {
    /// pgbr's: the manifest says everything.
    Pgbr,
    /// pgBackRest's: its SHA-1s and where it stored each file.
    Backrest(Arc<backrest::BackrestSource>),
}

/// The manifest of backup `label`, as committed, in pgbr's terms.
async fn load(repo: &Repository, label: &str) -> Result<(pgbr_manifest::Manifest, Source)> {
    if !repo.is_backrest() {
        return Ok((repo.load_manifest(label).await?, Source::Pgbr));
    }
    let (manifest, source) = backrest::load(repo, label).await?;
    Ok((manifest, Source::Backrest(Arc::new(source))))
}
