//! `stanza-delete`.

use std::path::Path;

use super::DeleteOptions;
use crate::config::RepoOptions;
use crate::error::{Error, Result};
use crate::layout;
use crate::repo::{self, with_stanza_claimed};

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

impl StanzaDeleted {
    /// One line saying what happened to `stanza` in repository `repo`.
    pub fn describe(&self, repo: &str, stanza: &str) -> String {
        match self {
            StanzaDeleted::Deleted { objects } => {
                format!("{repo}: stanza '{stanza}' deleted ({objects} objects removed)")
            }
            StanzaDeleted::NotFound => {
                format!("{repo}: stanza '{stanza}' does not exist; nothing to delete")
            }
        }
    }
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
