//! Reading an archived WAL file back: verified against its checksum, into memory or a file.

use std::path::{Path, PathBuf};

use super::{find_for, ArchivedWal, GetOutcome};
use crate::error::{Error, Result};
use crate::repo::Repository;

/// Reads an archived WAL file, decrypted, decompressed and verified against its checksum.
pub async fn read(repo: &Repository, wal: &ArchivedWal) -> Result<Vec<u8>> {
    let raw = repo.storage().get(&wal.path).await?;
    if wal.backrest_compress.is_some() {
        let mut plain = Vec::new();
        let pass = repo.backrest().and_then(|k| k.archive_pass.as_deref());
        backrest_copy(&repo.name(), pass, wal, &raw[..], &mut plain)?;
        return Ok(plain);
    }
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
async fn fetch_into(repo: &Repository, wal: &ArchivedWal, dest: &Path) -> Result<()> {
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
    let archive_pass = repo.backrest().and_then(|k| k.archive_pass.clone());
    let wal = wal.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut file = std::fs::File::create(&tmp_task)
            .map_err(|e| Error::io("unable to write", &tmp_task, e))?;
        if wal.backrest_compress.is_some() {
            let stored = storage.blocking_reader(&object, handle.clone())?;
            let mut out = std::io::BufWriter::new(&mut file);
            backrest_copy(&name, archive_pass.as_deref(), &wal, stored, &mut out)?;
            std::io::Write::flush(&mut out).map_err(|e| Error::io("unable to write", &tmp_task, e))?;
            drop(out);
            return std::fs::rename(&tmp_task, &dest_owned)
                .map_err(|e| Error::io("unable to rename into place", &dest_owned, e));
        }
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

/// Decrypts and decompresses a WAL file pgBackRest archived from `stored` into `out`, checked
/// against the SHA-1 in its name.
fn backrest_copy(
    repo_name: &str,
    pass: Option<&str>,
    wal: &ArchivedWal,
    stored: impl std::io::Read + Send,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let compress = wal
        .backrest_compress
        .unwrap_or(pgbr_manifest::pgbackrest::BackrestCompress::None);
    let mut reader = crate::repo::decode_reader(stored, pass, compress)?;
    let (_, sum) = crate::repo::sha1_copy(&mut reader, out).map_err(|e| {
        Error::Corrupt(format!(
            "{repo_name}: {} cannot be read back ({e}); the archived file is damaged",
            wal.path
        ))
    })?;
    let actual = hex::encode(sum);
    // A timeline history file has no checksum in pgBackRest's archive.
    if !wal.checksum.is_empty() && actual != wal.checksum {
        return Err(Error::Corrupt(format!(
            "{repo_name}: {} does not match its SHA-1 (found {actual}); the archived file is damaged",
            wal.path
        )));
    }
    Ok(())
}

/// (system id, major version) of the cluster in the current directory, if it is a data directory.
pub(crate) fn local_cluster() -> Option<(u64, u32)> {
    let bytes = std::fs::read("global/pg_control").ok()?;
    let control = pgbr_wal::ControlFile::parse(&bytes).ok()?;
    Some((control.system_identifier, control.pg_major_version()?))
}
