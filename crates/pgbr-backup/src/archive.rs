//! `archive-push` and `archive-get`: PostgreSQL's `archive_command` and `restore_command`.
//!
//! A WAL file is stored as `archive/<stanza>/<pg>-<db-id>/<TTTTTTTTLLLLLLLL>/<name>-<blake3><ext>`
//! (history files directly under `<pg>-<db-id>/`). The checksum in the name is of the plaintext, so a
//! second push of the same file is recognised whatever the cipher, and a read is verified against it.

use std::path::{Path, PathBuf};

use pgbr_manifest::ArchiveInfo;
use pgbr_storage::{CompressType, ObjectInfo};
use pgbr_wal::WalFileName;

use crate::config::ArchivePushOptions;
use crate::error::{Error, Result};
use crate::layout;
use crate::repo::Repository;

/// What `archive-push` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// The file was stored.
    Stored {
        /// Bytes written to the repository.
        stored_bytes: u64,
    },
    /// The same file (same checksum) was already in the archive; nothing was written.
    AlreadyArchived,
}

/// What `archive-get` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetOutcome {
    /// The file was written to the destination.
    Found,
    /// The archive does not hold the file (normal at the end of recovery).
    NotFound,
}

/// A WAL file as it sits in the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedWal {
    /// Object path.
    pub path: String,
    /// BLAKE3 hex of the plaintext.
    pub checksum: String,
    /// Codec of the stored bytes.
    pub compress_type: CompressType,
    /// Stored size.
    pub size: u64,
}

fn classify(name: &str) -> Result<WalFileName> {
    pgbr_wal::classify(name).ok_or_else(|| {
        Error::config(format!(
            "'{name}' is not a WAL segment, partial segment, backup history or timeline history file name"
        ))
    })
}

/// The directory (under the archive id) a WAL file lives in.
fn wal_dir(repo: &Repository, archive_id: &str, name: &str) -> Result<String> {
    let is_history = matches!(classify(name)?, WalFileName::History(_));
    Ok(layout::wal_dir(
        &layout::archive_id_dir(repo.stanza(), archive_id),
        name,
        is_history,
    ))
}

/// Splits `<name>-<checksum><ext>` into checksum and codec.
pub(crate) fn parse_stored_name(
    object_name: &str,
    wal_name: &str,
) -> Option<(String, CompressType)> {
    let rest = object_name.strip_prefix(wal_name)?.strip_prefix('-')?;
    let (checksum, ext) = rest.split_at(rest.find('.').unwrap_or(rest.len()));
    if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let kind = [
        CompressType::None,
        CompressType::Zst,
        CompressType::Gz,
        CompressType::Lz4,
    ]
    .into_iter()
    .find(|k| k.extension() == ext)?;
    Some((checksum.to_string(), kind))
}

/// Finds `wal_name` in the archive, newest archive id first.
pub async fn find(repo: &Repository, wal_name: &str) -> Result<Option<ArchivedWal>> {
    find_for(repo, wal_name, None).await
}

/// As [`find`], but when `cluster` (system id, PostgreSQL major version) is given and the
/// stanza's history lists it, only in that cluster's archive ids: after `stanza-upgrade` the
/// cluster restored from an old backup must not be served the new cluster's WAL of the same name.
pub async fn find_for(
    repo: &Repository,
    wal_name: &str,
    cluster: Option<(u64, u32)>,
) -> Result<Option<ArchivedWal>> {
    let mut dbs = repo.archive_info().db_history.clone();
    if let Some((system_id, pg_version)) = cluster {
        let is_it =
            |d: &pgbr_manifest::DbHistory| d.system_id == system_id && d.pg_version == pg_version;
        if dbs.iter().any(is_it) {
            dbs.retain(is_it);
        }
    }
    dbs.sort_by_key(|d| std::cmp::Reverse(d.db_id));
    for db in dbs {
        let dir = wal_dir(repo, &ArchiveInfo::archive_id(&db), wal_name)?;
        let (_, objects) = repo.storage().list_dir(&dir).await?;
        if let Some(found) = pick(&objects, wal_name) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn pick(objects: &[ObjectInfo], wal_name: &str) -> Option<ArchivedWal> {
    objects.iter().find_map(|o| {
        let file = o.path.rsplit('/').next()?;
        let (checksum, compress_type) = parse_stored_name(file, wal_name)?;
        Some(ArchivedWal {
            path: o.path.clone(),
            checksum,
            compress_type,
            size: o.size,
        })
    })
}

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
    let path = opts.wal_path(wal_path)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::config(format!("'{}' does not name a WAL file", path.display())))?
        .to_string();
    let kind = classify(&name)?;
    let read_err = |e| Error::io("unable to read WAL file", &path, e);
    let mut file = std::fs::File::open(&path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let mut head = vec![0u8; len.min(8192) as usize];
    std::io::Read::read_exact(&mut file, &mut head).map_err(read_err)?;
    let db = repo.current_db()?.clone();
    if matches!(kind, WalFileName::Segment(_) | WalFileName::Partial(_)) {
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
    }
    drop(file);
    let archive_id = ArchiveInfo::archive_id(&db);
    let dir = wal_dir(repo, &archive_id, &name)?;
    let (_, objects) = repo.storage().list_dir(&dir).await?;
    let ext = opts.compress.compress_type.extension();
    let codec = crate::pipeline::Codec {
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
    };
    let existing = pick(&objects, &name);
    // Nothing to compare with, and a local object can take its name at the end: one pass reads,
    // hashes and stores the file, then names it by its checksum. Otherwise the checksum comes
    // first (to compare, or because an object store's name is fixed before the upload) and the
    // file is streamed twice, so memory stays small whatever the segment size.
    let two_pass = if existing.is_none() && repo.storage().is_local() {
        None
    } else {
        let checksum = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || crate::pipeline::hash_file(&path))
                .await
                .map_err(|e| Error::Internal(format!("hashing task failed: {e}")))?
                .map_err(read_err)?
                .1
        };
        if let Some(existing) = existing {
            if existing.checksum == checksum {
                return Ok(PushOutcome::AlreadyArchived);
            }
            return Err(Error::ArchiveDuplicate(format!(
                "WAL file {name} is already in {} with different contents (checksum {}, this file {checksum}); nothing was overwritten. Check that no other cluster archives to stanza '{}'",
                repo.name(),
                existing.checksum,
                repo.stanza()
            )));
        }
        Some((layout::wal_object(&dir, &name, &checksum, ext), checksum))
    };
    crate::failpoints::crash_point!("archive-push::before-put");
    let stored = {
        let (storage, path) = (repo.storage().clone(), path.clone());
        let handle = tokio::runtime::Handle::current();
        let object = two_pass.as_ref().map(|(object, _)| object.clone());
        let (dir, name) = (dir.clone(), name.clone());
        tokio::task::spawn_blocking(move || {
            let name_of =
                |checksum: &pgbr_manifest::Checksum| layout::wal_object(&dir, &name, checksum, ext);
            let pending = layout::wal_pending(&dir, &name);
            let to = match &object {
                Some(object) => crate::pipeline::Publish::At(object),
                None => crate::pipeline::Publish::Named {
                    pending: &pending,
                    name_of: &name_of,
                },
            };
            crate::pipeline::store_file(&path, &storage, to, &codec, None, &handle)
        })
        .await
        .map_err(|e| Error::Internal(format!("archive task failed: {e}")))??
    };
    let Some(stored) = stored else {
        return Err(Error::io(
            "unable to read WAL file",
            &path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    };
    if let Some((object, checksum)) = two_pass {
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

/// Reads an archived WAL file, decrypted, decompressed and verified against its checksum.
pub async fn read(repo: &Repository, wal: &ArchivedWal) -> Result<Vec<u8>> {
    let raw = repo.storage().get(&wal.path).await?;
    let compressed = repo.unseal(&raw, &wal.path)?;
    let plain = pgbr_storage::decompress_to_vec(wal.compress_type, &compressed).map_err(|e| {
        Error::Corrupt(format!(
            "{}: {} cannot be decompressed: {e}",
            repo.name(),
            wal.path
        ))
    })?;
    let actual = blake3::hash(&plain).to_hex().to_string();
    if actual != wal.checksum {
        return Err(Error::Corrupt(format!(
            "{}: {} does not match its checksum (found {actual}); the archived file is damaged",
            repo.name(),
            wal.path
        )));
    }
    Ok(plain)
}

/// Fetches `wal_name` into `dest` (written to a temporary name, then renamed).
///
/// PostgreSQL runs `restore_command` in the data directory: when the stanza's history lists
/// several clusters (after `stanza-upgrade`), the one whose `global/pg_control` is there chooses
/// the archive ids searched (see [`find_for`]).
pub async fn get(repo: &Repository, wal_name: &str, dest: &Path) -> Result<GetOutcome> {
    let cluster = if repo.archive_info().db_history.len() > 1 {
        local_cluster()
    } else {
        None
    };
    let Some(wal) = find_for(repo, wal_name, cluster).await? else {
        return Ok(GetOutcome::NotFound);
    };
    fetch_into(repo, &wal, dest).await?;
    Ok(GetOutcome::Found)
}

/// Streams an archived WAL file into `dest` (decrypt, decompress, checksum on the way, in bounded
/// memory): written under a temporary name and renamed only once it verified. Not fsynced:
/// PostgreSQL reads it at once, and after a crash recovery simply fetches it again.
pub(crate) async fn fetch_into(repo: &Repository, wal: &ArchivedWal, dest: &Path) -> Result<()> {
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(".pgbr.tmp");
    let tmp = PathBuf::from(tmp);
    let codec = crate::pipeline::Codec {
        compress_type: wal.compress_type,
        level: 0,
        cipher: repo.cipher(),
        key: repo.key().cloned(),
        workers: 0,
    };
    let (storage, object, name) = (repo.storage().clone(), wal.path.clone(), repo.name());
    let (want, dest_owned) = (wal.checksum.clone(), dest.to_path_buf());
    let handle = tokio::runtime::Handle::current();
    let tmp_task = tmp.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut file = std::fs::File::create(&tmp_task)
            .map_err(|e| Error::io("unable to write", &tmp_task, e))?;
        let (_, actual) =
            crate::pipeline::fetch_to_file(&storage, &object, &codec, &mut file, &tmp_task, &handle)?;
        if actual != want {
            return Err(Error::Corrupt(format!(
                "{name}: {object} does not match its checksum (found {actual}); the archived file is damaged"
            )));
        }
        std::fs::rename(&tmp_task, &dest_owned)
            .map_err(|e| Error::io("unable to rename into place", &dest_owned, e))
    })
    .await
    .map_err(|e| Error::Internal(format!("archive-get task failed: {e}")))?;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// (system id, major version) of the cluster in the current directory, if it is a data directory.
pub(crate) fn local_cluster() -> Option<(u64, u32)> {
    let bytes = std::fs::read("global/pg_control").ok()?;
    let control = pgbr_wal::ControlFile::parse(&bytes).ok()?;
    Some((control.system_identifier, control.pg_major_version()?))
}

/// Every full WAL segment the archive holds, as (timeline, segment number), across archive ids.
pub async fn archived_segments(
    repo: &Repository,
    segment_size: u64,
) -> Result<std::collections::BTreeSet<(u32, u64)>> {
    let mut out = std::collections::BTreeSet::new();
    for db in &repo.archive_info().db_history {
        let prefix = layout::under(&layout::archive_id_dir(
            repo.stanza(),
            &ArchiveInfo::archive_id(db),
        ));
        for o in repo.storage().list(&prefix).await? {
            let file = o.path.rsplit('/').next().unwrap_or_default();
            let Some(name) = file.get(..24) else { continue };
            if file.as_bytes().get(24) != Some(&b'-') {
                continue;
            }
            if let Ok(seg) = pgbr_wal::Segment::parse(name, segment_size) {
                out.insert((seg.timeline, seg.number));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_parse() {
        let sum = "a".repeat(64);
        let wal = "000000010000000000000003";
        assert_eq!(
            parse_stored_name(&format!("{wal}-{sum}.zst"), wal),
            Some((sum.clone(), CompressType::Zst))
        );
        assert_eq!(
            parse_stored_name(&format!("{wal}-{sum}"), wal),
            Some((sum.clone(), CompressType::None))
        );
        assert_eq!(
            parse_stored_name(&format!("{wal}.partial-{sum}.gz"), wal),
            None
        );
        assert_eq!(parse_stored_name(&format!("{wal}-{sum}.bad"), wal), None);
        assert_eq!(parse_stored_name(&format!("{wal}-abc.zst"), wal), None);
    }
}
