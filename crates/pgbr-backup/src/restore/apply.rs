//! Carrying out a checked [`Plan`]: markers, removals, directories and links. The files
//! themselves are written by the workers (`write`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::destination::MARKER;
use super::plan::{Kind, Plan};
use crate::error::{Error, Result};

/// Who restored files belong to: `None` keeps the restoring user's.
pub(super) type Owner = Option<(u32, u32)>;

/// The file restored last: it takes its name only after every other file is durable.
pub(super) const PG_CONTROL: &str = "global/pg_control";

impl Plan {
    /// Writes `marker` at the top of every destination (created if absent) before anything
    /// else changes: from here on, an interrupted restore leaves destinations that a later
    /// `--delta` restore of the same cluster takes up again, and that nothing else mistakes
    /// for a cluster.
    pub fn mark(&self, marker: &str, owner: Owner) -> Result<()> {
        for dest in self.dests.values() {
            if fs::symlink_metadata(dest).is_err() {
                create_dir_all_mode(dest, owner)?;
            }
            let path = dest.join(MARKER);
            pgbr_storage::posix::write_file_durable(&path, marker.as_bytes(), 0o600)?;
            chown(&path, owner)?;
        }
        Ok(())
    }

    /// Removes the markers once the restore is complete and durable.
    pub fn unmark(&self) -> Result<()> {
        for dest in self.dests.values() {
            let path = dest.join(MARKER);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("unable to remove", &path, e))
                }
                _ => pgbr_storage::posix::sync_dir(dest)?,
            }
        }
        Ok(())
    }

    /// Removes the old `global/pg_control` of a data directory being rewritten: until the
    /// restore completes (the backup's takes its place last), the directory is not a cluster
    /// PostgreSQL would start, so an interruption never leaves a startable mix of old and new
    /// files.
    pub fn remove_old_control(&self) -> Result<()> {
        let control = self.dests["pg_data"].join(PG_CONTROL);
        match fs::remove_file(&control) {
            Ok(()) => match control.parent() {
                Some(dir) => Ok(pgbr_storage::posix::sync_dir(dir)?),
                None => Ok(()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("unable to remove", &control, e)),
        }
    }

    /// Removes what the backup does not have; returns how many entries.
    pub fn remove(&self) -> Result<u64> {
        let mut removed = 0;
        for (path, kind) in &self.removals {
            let r = match kind {
                Kind::Dir => fs::remove_dir_all(path),
                Kind::File | Kind::Link => fs::remove_file(path),
            };
            match r {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("unable to remove", path, e)),
            }
        }
        Ok(removed)
    }

    /// Creates the directories (parents first) with their modes, then the links.
    pub fn make_directories_and_links(&self, owner: Owner) -> Result<()> {
        for (path, mode) in &self.directories {
            match fs::create_dir(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("unable to create directory", path, e)),
            }
            fs::set_permissions(path, fs::Permissions::from_mode(*mode))
                .map_err(|e| Error::io("unable to set the mode of", path, e))?;
            chown(path, owner)?;
        }
        for (link, to) in &self.links {
            replace_symlink(link, to, owner)?;
        }
        Ok(())
    }

    /// Makes the directory entries durable (the files are, by then).
    pub fn sync_directories(&self) -> Result<()> {
        for (path, _) in &self.directories {
            pgbr_storage::posix::sync_dir(path)?;
        }
        Ok(())
    }
}

fn replace_symlink(link: &Path, to: &Path, owner: Owner) -> Result<()> {
    if let Ok(meta) = fs::symlink_metadata(link) {
        if meta.file_type().is_symlink() {
            if fs::read_link(link).ok().as_deref() == Some(to) {
                return Ok(());
            }
            fs::remove_file(link).map_err(|e| Error::io("unable to replace link", link, e))?;
        } else {
            return Err(Error::RestoreTarget(format!(
                "{} exists and is not a link; remove it or restore into an empty directory",
                link.display()
            )));
        }
    }
    std::os::unix::fs::symlink(to, link)
        .map_err(|e| Error::io("unable to create link", link, e))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(link, Some(uid), Some(gid))
            .map_err(|e| Error::io("unable to set the owner of", link, e))?;
    }
    Ok(())
}

fn create_dir_all_mode(dir: &Path, owner: Owner) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("unable to create directory", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("unable to set the mode of", dir, e))?;
    chown(dir, owner)
}

/// The owner of a restored cluster: the restoring user's, or when run as root, the owner of the
/// destination (or of its parent when it does not exist yet), so that the server's user owns
/// what it will run on.
pub(super) fn restore_owner(pg_path: &Path) -> Owner {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let probe = if pg_path.exists() {
        pg_path.to_path_buf()
    } else {
        pg_path.parent()?.to_path_buf()
    };
    let m = fs::metadata(probe).ok()?;
    Some((m.uid(), m.gid()))
}

pub(super) fn chown(path: &Path, owner: Owner) -> Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| Error::io("unable to set the owner of", path, e))?;
    }
    Ok(())
}
