//! Manifests in the repository: sealed (compressed, encrypted) and opened, loaded only as the
//! one committed under their label, and the backup list that commits them.

use bytes::Bytes;
use pgbr_manifest::{BackupInfo, BackupSummary, Checksum, Manifest};
use pgbr_storage::CompressType;

use super::{load_twice, save_twice, Repository};
use crate::error::{Error, Result};
use crate::layout;

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// zstd level of stored manifests.
const MANIFEST_LEVEL: i32 = 3;

impl Repository {
    /// Decrypts, decompresses and parses a stored manifest; `what` names it in errors.
    ///
    /// Manifests are stored compressed with zstd (a big one is mostly block maps, which shrink
    /// about threefold); one that starts with `{` is read as it is. The text is parsed as it is
    /// decompressed ([`Manifest::from_reader`]), never held whole: a manifest of 1,000,000
    /// files loads in 0.7 s and 224 MiB this way, against 1.6 s and 678 MiB decompressed whole
    /// (`cargo bench --bench manifest`).
    pub(crate) fn open_manifest(&self, raw: &[u8], what: &str) -> Result<Manifest> {
        self.open_manifest_with_checksum(raw, what).map(|(m, _)| m)
    }

    /// [`Repository::open_manifest`], also returning the manifest's checksum (the one
    /// `backup.info` records for a committed backup).
    pub(crate) fn open_manifest_with_checksum(
        &self,
        raw: &[u8],
        what: &str,
    ) -> Result<(Manifest, Checksum)> {
        let plain = self.unseal(raw, what)?;
        let loaded = if plain.starts_with(&ZSTD_MAGIC) {
            let text = pgbr_storage::DecompressReader::new(CompressType::Zst, &plain[..]).map_err(
                |e| {
                    Error::Corrupt(format!(
                        "{}: {what} cannot be decompressed: {e}",
                        self.name()
                    ))
                },
            )?;
            Manifest::from_reader_with_checksum(text)
        } else {
            Manifest::from_bytes_with_checksum(&plain)
        };
        loaded.map_err(|source| Error::Manifest {
            context: format!("{}: {what}", self.name()),
            source,
        })
    }

    /// Serializes, compresses and encrypts a manifest for storing (see
    /// [`Repository::open_manifest`]); also returns the manifest's checksum.
    fn close_manifest(&self, manifest: &Manifest, what: &str) -> Result<(Vec<u8>, Checksum)> {
        // Serialized straight into the compressor: a manifest of many files is never held
        // uncompressed.
        let compress_err = |e| Error::Internal(format!("compressing the {what}: {e}"));
        let w = pgbr_storage::CompressWriter::new(CompressType::Zst, MANIFEST_LEVEL, Vec::new())
            .map_err(compress_err)?;
        let (w, checksum) =
            manifest
                .write_to_with_checksum(w)
                .map_err(|source| Error::Manifest {
                    context: what.to_string(),
                    source,
                })?;
        let compressed = w.finish().map_err(compress_err)?;
        Ok((self.seal(compressed)?, checksum))
    }

    /// Loads and verifies the manifest of backup `label` (first copy that verifies). For a
    /// backup listed in `backup.info`, a copy verifies only if it is the manifest committed
    /// under that label (see `check_bound`): a restore never reads another backup's files
    /// for the one asked for.
    pub async fn load_manifest(&self, label: &str) -> Result<Manifest> {
        self.load_manifest_with_checksum(label)
            .await
            .map(|(m, _)| m)
    }

    /// [`Repository::load_manifest`], also returning the manifest's checksum.
    pub(crate) async fn load_manifest_with_checksum(
        &self,
        label: &str,
    ) -> Result<(Manifest, Checksum)> {
        let path = layout::manifest(&self.backup_path(label));
        let name = self.name();
        let listed = self.backup_info.backup(label);
        let m = load_twice(&self.storage, &path, |raw| {
            let what = format!("manifest of backup {label}");
            let (m, checksum) = self.open_manifest_with_checksum(raw, &what)?;
            match listed {
                Some(summary) => check_bound(&self.backup_info, summary, &m, &checksum)
                    .map_err(|why| {
                        Error::Corrupt(format!(
                            "{name}: the manifest in {path} is not the one committed as backup {label}: {why}. The backup's directory was replaced or damaged; run 'pgbr verify', restore another backup with --set"
                        ))
                    })?,
                None if m.backup.label != label => {
                    return Err(Error::Corrupt(format!(
                        "{name}: {path} is the manifest of backup {}, not {label}",
                        m.backup.label
                    )))
                }
                None => {}
            }
            Ok((m, checksum))
        })
        .await?;
        m.ok_or_else(|| {
            Error::BackupMissing(format!(
                "{name}: backup {label} has no manifest (it is not a complete backup)"
            ))
        })
    }

    /// Writes `manifest` for backup `label`: this commits the backup. Returns the bytes written
    /// and the manifest's checksum (for its `backup.info` entry).
    pub(crate) async fn save_manifest(
        &self,
        label: &str,
        manifest: &Manifest,
    ) -> Result<(u64, Checksum)> {
        let (sealed, checksum) =
            self.close_manifest(manifest, &format!("manifest of backup {label}"))?;
        let len = sealed.len() as u64;
        let path = layout::manifest(&self.backup_path(label));
        save_twice(&self.storage, &path, sealed).await?;
        Ok((len * 2, checksum))
    }

    /// Finishes the commit of backup `label`, which a killed backup left committed (a manifest
    /// copy verifies) but not listed: the manifest copy not written yet is written from the
    /// other, and the in-progress manifest goes.
    pub(crate) async fn finish_commit(&self, label: &str) -> Result<()> {
        let path = layout::manifest(&self.backup_path(label));
        let copy = layout::copy_of(&path);
        match (
            self.storage.get_opt(&path).await?,
            self.storage.get_opt(&copy).await?,
        ) {
            (Some(b), None) => self.storage.put(&copy, b).await?,
            (None, Some(b)) => self.storage.put(&path, b).await?,
            _ => {}
        }
        let inprogress = layout::inprogress(&self.backup_path(label));
        if self.storage.exists(&inprogress).await? {
            self.storage.delete(&inprogress).await?;
        }
        Ok(())
    }

    /// Writes the in-progress manifest of backup `label` (not a commit: see [`layout::INPROGRESS_FILE`]).
    pub(crate) async fn save_inprogress(&self, label: &str, manifest: &Manifest) -> Result<()> {
        let (sealed, _) =
            self.close_manifest(manifest, &format!("in-progress manifest of backup {label}"))?;
        let path = layout::inprogress(&self.backup_path(label));
        self.storage.put(&path, Bytes::from(sealed)).await?;
        Ok(())
    }

    /// Reads the in-progress manifest of an interrupted backup; `None` if it is absent or does not
    /// verify (such a backup cannot be resumed).
    pub(crate) async fn load_inprogress(&self, label: &str) -> Result<Option<Manifest>> {
        let path = layout::inprogress(&self.backup_path(label));
        let Some(raw) = self.storage.get_opt(&path).await? else {
            return Ok(None);
        };
        Ok(self.open_manifest(&raw, "in-progress manifest").ok())
    }

    /// Writes backup.info.
    pub(crate) async fn save_backup_info(&self) -> Result<()> {
        let bytes = self
            .backup_info
            .to_bytes()
            .map_err(|source| Error::Manifest {
                context: "backup.info".into(),
                source,
            })?;
        save_twice(&self.storage, &layout::backup_info(&self.stanza), bytes).await
    }
}

/// Whether manifest `m` (checksum `checksum`) is the one committed as `summary` in `info`:
/// same label, type, prior, references and database, the database's cluster, and the
/// checksum `backup.info` recorded (entries written before it was recorded have none). The
/// error says what differs.
pub(crate) fn check_bound(
    info: &BackupInfo,
    summary: &BackupSummary,
    m: &Manifest,
    checksum: &Checksum,
) -> std::result::Result<(), String> {
    let b = &m.backup;
    if b.label != summary.label {
        return Err(format!("it is the manifest of backup {}", b.label));
    }
    let differs = |what: &str, found: String, listed: String| {
        Err(format!(
            "its {what} is {found}, backup.info records {listed}"
        ))
    };
    if b.backup_type != summary.backup_type {
        return differs(
            "type",
            b.backup_type.to_string(),
            summary.backup_type.to_string(),
        );
    }
    if b.prior != summary.prior {
        let show = |p: &Option<String>| p.clone().unwrap_or_else(|| "none".into());
        return differs("prior backup", show(&b.prior), show(&summary.prior));
    }
    if b.references != summary.references {
        return differs(
            "list of referenced backups",
            b.references.join(","),
            summary.references.join(","),
        );
    }
    if b.db_id != summary.db_id {
        return differs("db-id", b.db_id.to_string(), summary.db_id.to_string());
    }
    if let Some(db) = info.db_history.iter().find(|d| d.db_id == b.db_id) {
        if (b.system_id, b.pg_version) != (db.system_id, db.pg_version) {
            return differs(
                "cluster",
                format!("system {} PostgreSQL {}", b.system_id, b.pg_version),
                format!("system {} PostgreSQL {}", db.system_id, db.pg_version),
            );
        }
    }
    match &summary.manifest_checksum {
        Some(recorded) if recorded != checksum => {
            differs("checksum", checksum.to_string(), recorded.to_string())
        }
        _ => Ok(()),
    }
}
