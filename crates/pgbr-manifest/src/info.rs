//! Stanza-level info files: `backup.info` and `archive.info`.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::envelope;
use crate::label::parse_label;
use crate::{BackupType, Checksum, Cipher, Compression, Error, FileEntry, Manifest};

/// Version of the info file formats this build reads and writes.
pub const INFO_FORMAT: u32 = 2;

const BACKUP_KIND: &str = "backup.info";
const ARCHIVE_KIND: &str = "archive.info";

/// One PostgreSQL cluster identity the stanza has backed up. A new entry is
/// added by `stanza-upgrade` (new major version or new cluster).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DbHistory {
    /// Stanza-local id, counting from 1.
    pub db_id: u32,
    /// The cluster's system identifier.
    pub system_id: u64,
    /// PostgreSQL major version, e.g. 15.
    pub pg_version: u32,
}

/// The repository's encryption settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct CipherInfo {
    /// Cipher of stored files.
    pub cipher_type: Cipher,
    /// The wrapped data key, as opaque JSON produced by pgbr-crypto. Its
    /// object keys are written sorted. `Some(Value::Null)` is written as
    /// `null` and so reads back as `None`.
    #[serde(serialize_with = "envelope::sorted_json")]
    pub wrapped_key: Option<serde_json::Value>,
}

/// What `backup.info` records about one backup.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackupSummary {
    /// The backup label.
    pub label: String,
    /// Full, diff or incr.
    pub backup_type: BackupType,
    /// Label of the backup it is based on.
    pub prior: Option<String>,
    /// Labels of earlier backups it references.
    pub references: Vec<String>,
    /// Start time, unix seconds.
    pub timestamp_start: i64,
    /// Stop time, unix seconds.
    pub timestamp_stop: i64,
    /// Start LSN.
    pub lsn_start: String,
    /// Stop LSN.
    pub lsn_stop: String,
    /// First WAL segment needed.
    pub wal_start: String,
    /// Last WAL segment needed.
    pub wal_stop: String,
    /// Timeline.
    pub timeline: u32,
    /// Database id (see [`DbHistory`]).
    pub db_id: u32,
    /// Total size of the files backed up.
    pub size_original: u64,
    /// Total size this backup stored.
    pub size_stored: u64,
    /// Number of files.
    pub file_count: u64,
    /// Number of pages that failed checksum verification.
    pub page_errors: u64,
    /// How the backup's files are compressed (its manifest's `compress_type`), so that a later
    /// backup can read blocks of it as delta bases without loading its manifest.
    pub compress_type: Option<Compression>,
    /// The checksum of the backup's manifest as committed (the one its envelope records): a
    /// manifest read later must have it, so that one replaced by another backup's (a copied
    /// directory, a tampered repository) is refused. Absent in entries written before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_checksum: Option<Checksum>,
    /// Bytes of the files this backup stored itself (not referencing an earlier backup's copy):
    /// pgBackRest's `info.delta`. Absent in entries written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_delta: Option<u64>,
    /// Bytes in the repository that a restore of this backup reads, its references' included:
    /// pgBackRest's `info.repository.size`. Absent in entries written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_repo: Option<u64>,
    /// For a backup pgBackRest took (a repository pgbr reads): the version that wrote it, e.g.
    /// `2.45`. Never written by pgbr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backrest_version: Option<String>,
}

impl BackupSummary {
    /// Summarizes a manifest for `backup.info`; `manifest_checksum` is the manifest's checksum
    /// as stored ([`Manifest::write_to_with_checksum`], [`Manifest::from_reader_with_checksum`]).
    pub fn from_manifest(m: &Manifest, manifest_checksum: Checksum) -> BackupSummary {
        let b = &m.backup;
        BackupSummary {
            label: b.label.clone(),
            backup_type: b.backup_type,
            prior: b.prior.clone(),
            references: b.references.clone(),
            timestamp_start: b.timestamp_start,
            timestamp_stop: b.timestamp_stop,
            lsn_start: b.lsn_start.clone(),
            lsn_stop: b.lsn_stop.clone(),
            wal_start: b.wal_start.clone(),
            wal_stop: b.wal_stop.clone(),
            timeline: b.timeline,
            db_id: b.db_id,
            size_original: b.size_original,
            size_stored: b.size_stored,
            file_count: m.files.len() as u64,
            page_errors: m.files.iter().map(|f| f.page_errors.len() as u64).sum(),
            compress_type: Some(b.compress_type),
            manifest_checksum: Some(manifest_checksum),
            size_delta: Some(
                m.files
                    .iter()
                    .filter(|f| f.reference.is_none())
                    .fold(0u64, |sum, f| sum.saturating_add(f.size)),
            ),
            size_repo: Some(
                m.files
                    .iter()
                    .map(FileEntry::repo_size)
                    .fold(0u64, u64::saturating_add),
            ),
            backrest_version: None,
        }
    }
}

/// `backup.info`: the stanza's database history, cipher and backup list.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackupInfo {
    /// Stanza name.
    pub stanza: String,
    /// Every cluster identity the stanza has had.
    pub db_history: Vec<DbHistory>,
    /// Encryption settings.
    pub cipher: CipherInfo,
    /// Committed backups, oldest first.
    pub backups: Vec<BackupSummary>,
}

/// `archive.info`: the stanza's database history and cipher, which decide
/// the archive ids WAL is stored under.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ArchiveInfo {
    /// Stanza name.
    pub stanza: String,
    /// Every cluster identity the stanza has had.
    pub db_history: Vec<DbHistory>,
    /// Encryption settings.
    pub cipher: CipherInfo,
}

fn validate_stanza(stanza: &str) -> Result<(), Error> {
    let bad = |reason: &str| Err(Error::invalid(format!("stanza name {stanza:?}"), reason));
    if stanza.is_empty() {
        return bad("it is empty");
    }
    if stanza == "." || stanza == ".." {
        return bad("it is '.' or '..'");
    }
    if stanza
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return bad("it contains '/', '\\' or a control character");
    }
    Ok(())
}

fn validate_history(stanza: &str, history: &[DbHistory]) -> Result<HashSet<u32>, Error> {
    let mut ids = HashSet::new();
    for db in history {
        if !ids.insert(db.db_id) {
            return Err(Error::invalid(
                format!("database history of stanza {stanza}"),
                format!("db-id {} is listed twice", db.db_id),
            ));
        }
    }
    Ok(ids)
}

fn current(history: &[DbHistory]) -> Option<&DbHistory> {
    history.iter().max_by_key(|db| db.db_id)
}

impl BackupInfo {
    /// Serializes to the info file format:
    /// `{"format":2,"kind":"backup.info","content":{...},"checksum":"..."}`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        envelope::write_kind(INFO_FORMAT, BACKUP_KIND, self)
    }

    /// Loads `backup.info`: checks format, kind and checksum, then that the
    /// stanza name is usable, db-ids are unique, backup labels are valid,
    /// unique and agree with their types, and every backup's db-id is in the
    /// history.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        let info: BackupInfo = envelope::read_kind(b, INFO_FORMAT, BACKUP_KIND)?;
        info.validate()?;
        Ok(info)
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        validate_stanza(&self.stanza)?;
        let ids = validate_history(&self.stanza, &self.db_history)?;
        let mut labels = HashSet::new();
        for backup in &self.backups {
            let (ty, _) = parse_label(&backup.label)?;
            if ty != backup.backup_type {
                return Err(Error::invalid(
                    format!("backup {}", backup.label),
                    format!(
                        "the label says {ty} but backup_type is {}",
                        backup.backup_type
                    ),
                ));
            }
            if !labels.insert(backup.label.as_str()) {
                return Err(Error::invalid(
                    format!("backup list of stanza {}", self.stanza),
                    format!("backup {} is listed twice", backup.label),
                ));
            }
            for r in backup.prior.iter().chain(&backup.references) {
                parse_label(r)?;
            }
            if !ids.contains(&backup.db_id) {
                return Err(Error::UnknownDb {
                    label: backup.label.clone(),
                    db_id: backup.db_id,
                });
            }
        }
        Ok(())
    }

    /// The current cluster identity: the history entry with the highest db-id.
    pub fn current_db(&self) -> Option<&DbHistory> {
        current(&self.db_history)
    }

    /// Finds a backup by label.
    pub fn backup(&self, label: &str) -> Option<&BackupSummary> {
        self.backups.iter().find(|b| b.label == label)
    }
}

impl ArchiveInfo {
    /// Serializes to the info file format:
    /// `{"format":2,"kind":"archive.info","content":{...},"checksum":"..."}`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        envelope::write_kind(INFO_FORMAT, ARCHIVE_KIND, self)
    }

    /// Loads `archive.info`: checks format, kind and checksum, then that the
    /// stanza name is usable and db-ids are unique.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        let info: ArchiveInfo = envelope::read_kind(b, INFO_FORMAT, ARCHIVE_KIND)?;
        info.validate()?;
        Ok(info)
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        validate_stanza(&self.stanza)?;
        validate_history(&self.stanza, &self.db_history).map(|_| ())
    }

    /// The current cluster identity: the history entry with the highest db-id.
    pub fn current_db(&self) -> Option<&DbHistory> {
        current(&self.db_history)
    }

    /// The archive id WAL of `db` is stored under, `<pg_version>-<db_id>`,
    /// e.g. `15-1`, as pgBackRest names it.
    pub fn archive_id(db: &DbHistory) -> String {
        format!("{}-{}", db.pg_version, db.db_id)
    }
}
