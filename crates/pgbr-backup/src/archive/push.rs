//! Pushing one WAL file into one repository.

use std::path::Path;

use pgbr_manifest::{ArchiveInfo, Checksum, DbHistory};
use pgbr_wal::WalFileName;

use super::stored::{classify, pick, wal_dir};
use super::{ArchivedWal, PushOutcome};
use crate::config::ArchivePushOptions;
use crate::error::{Error, Result};
use crate::layout;
use crate::pipeline::{Codec, Publish};
use crate::repo::Repository;

/// Pushes the WAL file at `wal_path` (relative paths resolve against `opts.pg_path`).
///
/// Segments are checked first: the page header must carry this stanza's system identifier and
/// PostgreSQL version. A file already archived with the same checksum succeeds without writing; one
/// archived with other contents is an error, and nothing is overwritten.
pub async fn push(
    repo: &Repository,
    wal_path: &Path,
    opts: &ArchivePushOptions,
) -> Result<PushOutcome> {
    repo.refuse_backrest("archive-push")?;
    let path = opts.wal_path(wal_path)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::config(format!("'{}' does not name a WAL file", path.display())))?
        .to_string();
    let db = repo.current_db()?.clone();
    check_belongs(repo, &path, classify(&name)?, &db)?;
    let dir = wal_dir(repo, &ArchiveInfo::archive_id(&db), &name)?;
    let (_, objects) = repo.storage().list_dir(&dir).await?;
    let ext = opts.compress.compress_type.extension();
    // Nothing to compare with, and a local object can take its name at the end: one pass reads,
    // hashes and stores the file, then names it by its checksum. Otherwise the checksum comes
    // first (to compare, or because an object store's name is fixed before the upload) and the
    // file is streamed twice, so memory stays small whatever the segment size.
    let existing = pick(&objects, &name);
    let named_first = if existing.is_none() && repo.storage().is_local() {
        None
    } else {
        let checksum = hash(&path).await?;
        if let Some(existing) = existing {
            return same_or_refuse(repo, &name, &existing, &checksum);
        }
        Some((layout::wal_object(&dir, &name, &checksum, ext), checksum))
    };
    crate::failpoints::crash_point!("archive-push::before-put");
    let stored = store(
        repo,
        &path,
        &dir,
        &name,
        ext,
        named_first.as_ref(),
        codec(repo, opts),
    )
    .await?;
    if let Some((object, checksum)) = named_first {
        if stored.checksum != checksum {
            // The file changed between the two reads: what was stored does not match its name.
            repo.storage().delete(&object).await?;
            return Err(Error::Corrupt(format!(
                "{} changed while it was being archived; nothing was kept (PostgreSQL will retry)",
                path.display()
            )));
        }
    }
    crate::failpoints::crash_point!("archive-push::after-put");
    Ok(PushOutcome::Stored {
        stored_bytes: stored.stored_size,
    })
}

fn read_error(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io("unable to read WAL file", path, e)
}

/// Checks that a segment (or partial one) at `path` was written by the stanza's cluster `db`
/// and, when complete, is as long as its header says.
fn check_belongs(repo: &Repository, path: &Path, kind: WalFileName, db: &DbHistory) -> Result<()> {
    if !matches!(kind, WalFileName::Segment(_) | WalFileName::Partial(_)) {
        return Ok(());
    }
    let mut file = std::fs::File::open(path).map_err(read_error(path))?;
    let len = file.metadata().map_err(read_error(path))?.len();
    let mut head = vec![0u8; len.min(8192) as usize];
    std::io::Read::read_exact(&mut file, &mut head).map_err(read_error(path))?;
    let header =
        pgbr_wal::validate_segment(&head, db.system_id, db.pg_version).map_err(|source| {
            Error::Wal {
                context: format!(
                    "{} cannot be archived in stanza '{}' (system {}, PostgreSQL {})",
                    path.display(),
                    repo.stanza(),
                    db.system_id,
                    db.pg_version
                ),
                source,
            }
        })?;
    if matches!(kind, WalFileName::Segment(_)) && len != u64::from(header.segment_size) {
        return Err(Error::Corrupt(format!(
            "{} is {len} bytes but its header says segments are {} bytes: not a complete WAL segment",
            path.display(),
            header.segment_size
        )));
    }
    Ok(())
}

/// The checksum of the file at `path`, read off the async runtime.
async fn hash(path: &Path) -> Result<Checksum> {
    let owned = path.to_path_buf();
    let hashed = tokio::task::spawn_blocking(move || crate::pipeline::hash_file(&owned))
        .await
        .map_err(|e| Error::Internal(format!("hashing task failed: {e}")))?;
    Ok(hashed.map_err(read_error(path))?.1)
}

/// A second push of an archived file: success when it is the same file, otherwise an error that
/// overwrites nothing.
fn same_or_refuse(
    repo: &Repository,
    name: &str,
    existing: &ArchivedWal,
    checksum: &Checksum,
) -> Result<PushOutcome> {
    if existing.checksum == *checksum {
        return Ok(PushOutcome::AlreadyArchived);
    }
    Err(Error::ArchiveDuplicate(format!(
        "WAL file {name} is already in {} with different contents (checksum {}, this file {checksum}); nothing was overwritten. Check that no other cluster archives to stanza '{}'",
        repo.name(),
        existing.checksum,
        repo.stanza()
    )))
}

fn codec(repo: &Repository, opts: &ArchivePushOptions) -> Codec {
    Codec {
        compress_type: opts.compress.compress_type,
        level: opts.compress.level,
        cipher: repo.cipher(),
        key: repo.key().cloned(),
        // One big stream: with process-max > 1, zstd compresses it on that many threads.
        workers: if opts.process_max > 1 {
            u32::try_from(opts.process_max).unwrap_or(2)
        } else {
            0
        },
    }
}

/// Stores the file at `path` under its final object name: `named_first` when the checksum was
/// computed beforehand, otherwise named by the checksum found while storing.
async fn store(
    repo: &Repository,
    path: &Path,
    dir: &str,
    name: &str,
    ext: &'static str,
    named_first: Option<&(String, Checksum)>,
    codec: Codec,
) -> Result<crate::pipeline::Stored> {
    let (storage, owned_path) = (repo.storage().clone(), path.to_path_buf());
    let handle = tokio::runtime::Handle::current();
    let object = named_first.map(|(object, _)| object.clone());
    let (dir, name) = (dir.to_string(), name.to_string());
    let stored = tokio::task::spawn_blocking(move || {
        let name_of = |checksum: &Checksum| layout::wal_object(&dir, &name, checksum, ext);
        let pending = layout::wal_pending(&dir, &name);
        let to = match &object {
            Some(object) => Publish::At(object),
            None => Publish::Named {
                pending: &pending,
                name_of: &name_of,
            },
        };
        crate::pipeline::store_file(&owned_path, &storage, to, &codec, None, &handle)
    })
    .await
    .map_err(|e| Error::Internal(format!("archive task failed: {e}")))??;
    stored.ok_or_else(|| {
        Error::io(
            "unable to read WAL file",
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })
}
