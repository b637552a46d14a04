//! One destination file: how a restore treats a file already there (`--delta`, `--force`),
//! what the workers share to fetch its bytes, how it is opened, and how it is checked and put in
//! place once written.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pgbr_manifest::{Checksum, FileEntry};

use super::apply::{Owner, PG_CONTROL};
use super::plan::file_mode;
use crate::error::{Error, Result};
use crate::layout;
use crate::pipeline::{self, Codec};

/// How a restore treats files already in the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Overwrite {
    /// The destination was empty: write every file.
    Fresh,
    /// `--delta`, as pgBackRest's: keep each file whose contents are the backup's (its
    /// checksum; for a block-mapped file, each block's hash, rewriting only the blocks that
    /// differ). With `trust_size_time` (`--delta --force`), keep each file whose size and
    /// modification time match without reading it.
    Delta {
        /// Size and time decide, not contents.
        trust_size_time: bool,
    },
    /// `--force` alone: rewrite every file.
    All,
}

impl Overwrite {
    /// The treatment `--delta` and `--force` ask for.
    pub fn from_flags(delta: bool, force: bool) -> Overwrite {
        match (delta, force) {
            (true, trust_size_time) => Overwrite::Delta { trust_size_time },
            (false, true) => Overwrite::All,
            (false, false) => Overwrite::Fresh,
        }
    }

    /// Whether files already in place are compared by their contents.
    pub fn by_contents(self) -> bool {
        self == Overwrite::Delta {
            trust_size_time: false,
        }
    }
}

/// What every restore worker shares.
pub(super) struct RestoreContext {
    /// Which of the `process-max` workers are busy: with one idle, a file may use two cores.
    pub busy: pipeline::Busy,
    pub storage: pgbr_storage::Storage,
    /// `backup/<stanza>`.
    pub stanza_dir: String,
    /// The backup being restored.
    pub label: String,
    /// How each backup involved (this one and those it references) stored its bytes.
    pub codecs: BTreeMap<String, Codec>,
    pub overwrite: Overwrite,
    pub owner: Owner,
    pub handle: tokio::runtime::Handle,
}

impl RestoreContext {
    pub fn backup_dir(&self, reference: Option<&str>) -> String {
        layout::label_dir(&self.stanza_dir, reference.unwrap_or(&self.label))
    }

    pub fn codec(&self, reference: Option<&str>) -> Result<Codec> {
        let label = reference.unwrap_or(&self.label);
        self.codecs.get(label).cloned().ok_or_else(|| {
            Error::Corrupt(format!(
                "backup {} references backup {label}, which is not in its reference list",
                self.label
            ))
        })
    }

    fn blocks_object(&self, f: &FileEntry, reference: Option<&str>) -> String {
        layout::blocks(&self.backup_dir(reference), &f.target, &f.name)
    }

    /// Fetches blocks `range` of block-mapped `f` (its block map `map`) into `file` (at `path`),
    /// each at its place, feeding them to `hasher` in order (see [`pipeline::fetch_blocks`]).
    /// Returns the bytes written.
    pub fn fetch_blocks(
        &self,
        f: &FileEntry,
        map: &pgbr_manifest::BlockMapRef,
        range: std::ops::Range<usize>,
        file: &File,
        path: &Path,
        hasher: Option<&mut blake3::Hasher>,
    ) -> Result<u64> {
        let blocks = blocks_in(f, map, &range)?;
        pipeline::fetch_blocks(
            &self.storage,
            blocks,
            range.start,
            u64::from(map.block_size),
            &|r| self.blocks_object(f, r),
            &|r| self.codec(r),
            &|| self.busy.spare_core(),
            file,
            path,
            hasher,
            &self.handle,
        )
    }
}

/// The modification time `f` had when it was backed up.
pub(super) fn modified_time(f: &FileEntry) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(f.mtime).unwrap_or(0))
}

/// Blocks `range` of `f`'s block map `map`.
pub(super) fn blocks_in<'m>(
    f: &FileEntry,
    map: &'m pgbr_manifest::BlockMapRef,
    range: &std::ops::Range<usize>,
) -> Result<&'m [pgbr_manifest::BlockRef]> {
    map.blocks.get(range.clone()).ok_or_else(|| {
        Error::Internal(format!(
            "{}: blocks {range:?} of {}",
            f.name,
            map.blocks.len()
        ))
    })
}

/// Gives the file at `path` the mode and modification time `f` had.
fn set_mode_and_time(path: &Path, f: &FileEntry) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(file_mode(f.mode)))
        .map_err(|e| Error::io("unable to set the mode of", path, e))?;
    let file = File::options()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("unable to open", path, e))?;
    file.set_modified(modified_time(f))
        .map_err(|e| Error::io("unable to set the time of", path, e))
}

fn mismatch(f: &FileEntry, size: u64, checked: &Checked) -> Error {
    let checksum = match checked {
        Checked::Whole(checksum) => format!("checksum {checksum}, expected {}", f.checksum),
        Checked::ByBlocks => "every block matches its hash".into(),
        Checked::Sha1 => "its SHA-1 matches pgBackRest's manifest".into(),
    };
    Error::Corrupt(format!(
        "{}/{}: restored contents do not match the manifest (size {size}, expected {}; {checksum}); the backup is damaged",
        f.target, f.name, f.size
    ))
}

/// `--delta`: whether `dest` already holds `f` (then only its mode and time are set): same
/// size, and same checksum (same modification time with `--delta --force`).
pub(super) fn already_current(f: &FileEntry, dest: &Path, ctx: &RestoreContext) -> Result<bool> {
    already_current_by(f, dest, ctx, |path| {
        pipeline::hash_file(path).is_ok_and(|(_, sum)| sum == f.checksum)
    })
}

/// [`already_current`], with the contents compared by `same_contents` (pgBackRest's backups
/// have a SHA-1 where pgbr's have a BLAKE3).
pub(super) fn already_current_by(
    f: &FileEntry,
    dest: &Path,
    ctx: &RestoreContext,
    same_contents: impl FnOnce(&Path) -> bool,
) -> Result<bool> {
    let Overwrite::Delta { trust_size_time } = ctx.overwrite else {
        return Ok(false);
    };
    let Ok(meta) = fs::symlink_metadata(dest) else {
        return Ok(false);
    };
    let same = meta.is_file()
        && meta.len() == f.size
        && if trust_size_time {
            meta.modified().ok() == Some(modified_time(f))
        } else {
            same_contents(dest)
        };
    if same {
        set_mode_and_time(dest, f)?;
    }
    Ok(same)
}

/// Where a file is written before it is renamed into place.
pub(super) fn temporary_name(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".pgbr.tmp");
    PathBuf::from(name)
}

/// A destination file open for writing.
pub(super) struct Opened {
    pub file: File,
    /// Where the bytes go: the destination itself, or a temporary name it takes when whole.
    pub path: PathBuf,
    /// Whether `path` is renamed onto the destination once the file is whole and checked.
    pub rename: bool,
}

impl Opened {
    /// Opens the file already at `path` to read and write it in place (see [`Opened::rename`]).
    pub fn existing(path: &Path, rename: bool) -> Result<Opened> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("unable to open", path, e))?;
        Ok(Opened {
            file,
            path: path.to_path_buf(),
            rename,
        })
    }
}

/// Opens the file `f` is restored into at `dest`. A file replacing one at the destination is
/// written under a temporary name and renamed, so no partial file ever stands where a whole one
/// was. A file new to the destination (all of them in a fresh restore) is written under its own
/// name: half the directory operations. pg_control always waits under its temporary name until
/// every other file is durable (see `PG_CONTROL`), so an interrupted restore is never a cluster
/// PostgreSQL would start.
pub(super) fn open_destination(f: &FileEntry, dest: &Path) -> Result<Opened> {
    let is_pg_control = f.target == "pg_data" && f.name == PG_CONTROL;
    let create = |path: &Path, new: bool| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .create_new(new)
            .truncate(!new)
            .mode(0o600)
            .open(path)
    };
    if !is_pg_control {
        match create(dest, true) {
            Ok(file) => {
                return Ok(Opened {
                    file,
                    path: dest.to_path_buf(),
                    rename: false,
                })
            }
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(Error::io("unable to create", dest, e))
            }
            Err(_) => {}
        }
    }
    let path = temporary_name(dest);
    match create(&path, false) {
        Ok(file) => Ok(Opened {
            file,
            path,
            rename: !is_pg_control,
        }),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(Error::io("unable to create", &path, e))
        }
    }
}

/// How a restored file was checked.
pub(super) enum Checked {
    /// Its bytes hash to this checksum (the manifest's must be the same).
    Whole(Checksum),
    /// Each of its blocks was checked against its hash in the block map: a file compared and
    /// rewritten in place block by block, whose blocks kept were hashed already.
    ByBlocks,
    /// Its SHA-1 was checked against a pgBackRest manifest's by the caller.
    Sha1,
}

/// Checks that the file written to `opened` is `f` (`size` bytes, checked as `checked` says),
/// gives it its mode, time and owner, and its name.
pub(super) fn complete_file(
    f: &FileEntry,
    dest: &Path,
    opened: &Opened,
    size: u64,
    checked: &Checked,
    ctx: &RestoreContext,
) -> Result<()> {
    let right = match checked {
        Checked::Whole(checksum) => size == f.size && *checksum == f.checksum,
        Checked::ByBlocks | Checked::Sha1 => size == f.size,
    };
    if !right {
        return Err(mismatch(f, size, checked));
    }
    let (file, path) = (&opened.file, &opened.path);
    file.set_permissions(fs::Permissions::from_mode(file_mode(f.mode)))
        .map_err(|e| Error::io("unable to set the mode of", path, e))?;
    file.set_modified(modified_time(f))
        .map_err(|e| Error::io("unable to set the time of", path, e))?;
    // Made durable all at once (syncfs) before the recovery settings are written; the disk
    // starts on it now.
    pgbr_storage::posix::start_writeback(file, 0, 0);
    if let Some((uid, gid)) = ctx.owner {
        std::os::unix::fs::fchown(file, Some(uid), Some(gid))
            .map_err(|e| Error::io("unable to set the owner of", path, e))?;
    }
    if opened.rename {
        fs::rename(path, dest).map_err(|e| Error::io("unable to rename into place", dest, e))?;
    }
    Ok(())
}
