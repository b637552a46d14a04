//! Where an archived WAL file is and what its object name says: `<name>-<blake3><ext>`.

use pgbr_manifest::pgbackrest::BackrestCompress;
use pgbr_manifest::ArchiveInfo;
use pgbr_storage::{CompressType, ObjectInfo};
use pgbr_wal::WalFileName;

use super::ArchivedWal;
use crate::error::{Error, Result};
use crate::layout;
use crate::repo::Repository;

/// What kind of WAL file `name` names; an error naming it if none.
pub(super) fn classify(name: &str) -> Result<WalFileName> {
    pgbr_wal::classify(name).ok_or_else(|| {
        Error::config(format!(
            "'{name}' is not a WAL segment, partial segment, backup history or timeline history file name"
        ))
    })
}

/// The directory (under the archive id) a WAL file lives in.
pub(super) fn wal_dir(repo: &Repository, archive_id: &str, name: &str) -> Result<String> {
    let is_history = matches!(classify(name)?, WalFileName::History(_));
    Ok(layout::wal_dir(
        &layout::archive_id_dir(repo.stanza(), archive_id),
        name,
        is_history,
    ))
}

/// Splits `<name>-<checksum><ext>`, the checksum `hex_digits` hex digits long, into checksum and
/// extension.
fn split_stored_name<'o>(
    object_name: &'o str,
    wal_name: &str,
    hex_digits: usize,
) -> Option<(&'o str, &'o str)> {
    let rest = object_name.strip_prefix(wal_name)?.strip_prefix('-')?;
    let (checksum, ext) = rest.split_at(rest.find('.').unwrap_or(rest.len()));
    if checksum.len() != hex_digits || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((checksum, ext))
}

/// Splits `<name>-<blake3><ext>` into checksum and codec.
pub(crate) fn parse_stored_name(
    object_name: &str,
    wal_name: &str,
) -> Option<(String, CompressType)> {
    let (checksum, ext) = split_stored_name(object_name, wal_name, 64)?;
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
        let found = if repo.is_backrest() {
            pick_backrest(&objects, wal_name)
        } else {
            pick(&objects, wal_name)
        };
        if let Some(found) = found {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The stored object of `wal_name` among `objects`, if any.
pub(super) fn pick(objects: &[ObjectInfo], wal_name: &str) -> Option<ArchivedWal> {
    objects.iter().find_map(|o| {
        let file = o.path.rsplit('/').next()?;
        let (checksum, compress_type) = parse_stored_name(file, wal_name)?;
        Some(ArchivedWal {
            path: o.path.clone(),
            checksum,
            compress_type,
            size: o.size,
            backrest_compress: None,
        })
    })
}

/// The object pgBackRest stored `wal_name` as among `objects`, if any: `<name>-<sha1><ext>`, or a
/// timeline history file under its own name (uncompressed, with no checksum to check).
fn pick_backrest(objects: &[ObjectInfo], wal_name: &str) -> Option<ArchivedWal> {
    objects.iter().find_map(|o| {
        let file = o.path.rsplit('/').next()?;
        let found = |checksum: &str, compress| ArchivedWal {
            path: o.path.clone(),
            checksum: checksum.to_ascii_lowercase(),
            compress_type: CompressType::None,
            size: o.size,
            backrest_compress: Some(compress),
        };
        if file == wal_name && matches!(pgbr_wal::classify(wal_name), Some(WalFileName::History(_)))
        {
            return Some(found("", BackrestCompress::None));
        }
        let (checksum, compress) = parse_backrest_name(file, wal_name)?;
        Some(found(&checksum, compress))
    })
}

/// Splits pgBackRest's `<name>-<sha1><ext>` into the SHA-1 (40 lowercase hex digits) and the
/// compression.
pub(crate) fn parse_backrest_name(
    object_name: &str,
    wal_name: &str,
) -> Option<(String, BackrestCompress)> {
    let (checksum, ext) = split_stored_name(object_name, wal_name, 40)?;
    Some((
        checksum.to_ascii_lowercase(),
        BackrestCompress::from_extension(ext)?,
    ))
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
