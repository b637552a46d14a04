//! pgBackRest's `backup.info` and `archive.info`, read into pgbr's [`BackupInfo`] and
//! [`ArchiveInfo`] (which the engine's commands already work with), plus what only pgBackRest's
//! files hold: the sub-passphrase of an encrypted repository.

use serde::Deserialize;

use super::ini::{decode, Ini};
use crate::{
    ArchiveInfo, BackupInfo, BackupSummary, BackupType, Cipher, CipherInfo, DbHistory, Error,
};

/// What pgBackRest's `backup.info` says, in pgbr's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackrestBackupInfo {
    /// The backup list and cluster history.
    pub info: BackupInfo,
    /// The passphrase each backup's manifest is encrypted with (`[cipher] cipher-pass`), for an
    /// encrypted repository.
    pub cipher_pass: Option<String>,
}

/// What pgBackRest's `archive.info` says, in pgbr's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackrestArchiveInfo {
    /// The cluster history (which names the archive ids).
    pub info: ArchiveInfo,
    /// The passphrase each archived file is encrypted with, for an encrypted repository.
    pub cipher_pass: Option<String>,
}

/// One `[backup:current]` value.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Current {
    backrest_version: Option<String>,
    backup_archive_start: Option<String>,
    backup_archive_stop: Option<String>,
    backup_info_repo_size: u64,
    backup_info_repo_size_delta: u64,
    backup_info_size: u64,
    backup_info_size_delta: u64,
    backup_lsn_start: Option<String>,
    backup_lsn_stop: Option<String>,
    backup_prior: Option<String>,
    #[serde(default)]
    backup_reference: Vec<String>,
    backup_timestamp_start: i64,
    backup_timestamp_stop: i64,
    backup_type: BackupType,
    db_id: u32,
}

/// The major version in pgBackRest's `db-version` (`"15"`); `None` for 9.x and older, which pgbr
/// does not restore (their history entries are left out).
fn major(version: &str) -> Option<u32> {
    version.parse().ok()
}

/// The timeline in a WAL segment name (its first 8 hex digits); 0 if there is none.
fn timeline_of(segment: &str) -> u32 {
    segment
        .get(..8)
        .and_then(|t| u32::from_str_radix(t, 16).ok())
        .unwrap_or(0)
}

fn cipher_of(pass: &Option<String>) -> CipherInfo {
    CipherInfo {
        cipher_type: if pass.is_some() {
            Cipher::Aes256Cbc
        } else {
            Cipher::None
        },
        wrapped_key: None,
    }
}

/// Reads the `[db:history]` entries with `system_key` naming the system identifier (pgBackRest
/// calls it `db-system-id` in `backup.info` and `db-id` in `archive.info`).
fn history(ini: &Ini, system_key: &str, what: &str) -> Result<Vec<DbHistory>, Error> {
    let mut out = Vec::new();
    for (id, raw) in ini
        .section("db:history")
        .map(|s| &s.entries[..])
        .unwrap_or_default()
    {
        let entry: serde_json::Map<String, serde_json::Value> =
            decode(raw, &format!("{what} [db:history] {id}"))?;
        let bad = |reason: &str| Error::invalid(format!("{what} [db:history] {id}"), reason);
        let db_id = id.parse().map_err(|_| bad("the id is not a number"))?;
        let system_id = entry
            .get(system_key)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("no system identifier"))?;
        let version = entry
            .get("db-version")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad("no db-version"))?;
        if let Some(pg_version) = major(version) {
            out.push(DbHistory {
                db_id,
                system_id,
                pg_version,
            });
        }
    }
    Ok(out)
}

fn load(bytes: &[u8], what: &str) -> Result<Ini, Error> {
    let ini = Ini::parse(bytes, what)?;
    ini.verify(what)?;
    Ok(ini)
}

impl BackrestBackupInfo {
    /// Reads pgBackRest's `backup.info` of `stanza` (decrypted): syntax, format and checksum
    /// checked, then every backup and history entry.
    pub fn parse(bytes: &[u8], stanza: &str) -> Result<BackrestBackupInfo, Error> {
        let what = "pgBackRest backup.info";
        let ini = load(bytes, what)?;
        let db_history = history(&ini, "db-system-id", what)?;
        let mut backups = Vec::new();
        for (label, raw) in ini
            .section("backup:current")
            .map(|s| &s.entries[..])
            .unwrap_or_default()
        {
            let c: Current = decode(raw, &format!("{what} backup {label}"))?;
            let wal_start = c.backup_archive_start.unwrap_or_default();
            backups.push(BackupSummary {
                label: label.clone(),
                backup_type: c.backup_type,
                prior: c.backup_prior,
                references: c.backup_reference,
                timestamp_start: c.backup_timestamp_start,
                timestamp_stop: c.backup_timestamp_stop,
                lsn_start: c.backup_lsn_start.unwrap_or_default(),
                lsn_stop: c.backup_lsn_stop.unwrap_or_default(),
                timeline: timeline_of(&wal_start),
                wal_start,
                wal_stop: c.backup_archive_stop.unwrap_or_default(),
                db_id: c.db_id,
                size_original: c.backup_info_size,
                size_stored: c.backup_info_repo_size_delta,
                file_count: 0,
                page_errors: 0,
                compress_type: None,
                manifest_checksum: None,
                size_delta: Some(c.backup_info_size_delta),
                size_repo: Some(c.backup_info_repo_size),
                backrest_version: Some(c.backrest_version.unwrap_or_default()),
            });
        }
        let cipher_pass: Option<String> = ini.get("cipher", "cipher-pass")?;
        let info = BackupInfo {
            stanza: stanza.to_string(),
            db_history,
            cipher: cipher_of(&cipher_pass),
            backups,
        };
        info.validate()?;
        Ok(BackrestBackupInfo { info, cipher_pass })
    }
}

impl BackrestArchiveInfo {
    /// Reads pgBackRest's `archive.info` of `stanza` (decrypted).
    pub fn parse(bytes: &[u8], stanza: &str) -> Result<BackrestArchiveInfo, Error> {
        let what = "pgBackRest archive.info";
        let ini = load(bytes, what)?;
        let cipher_pass: Option<String> = ini.get("cipher", "cipher-pass")?;
        let info = ArchiveInfo {
            stanza: stanza.to_string(),
            db_history: history(&ini, "db-id", what)?,
            cipher: cipher_of(&cipher_pass),
        };
        info.validate()?;
        Ok(BackrestArchiveInfo { info, cipher_pass })
    }
}

/// Whether `bytes` (decrypted) look like a pgBackRest info file or manifest rather than pgbr's.
pub fn is_backrest_text(bytes: &[u8]) -> bool {
    bytes.starts_with(b"[backrest]\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_checksum(body: &str) -> String {
        Ini::parse(body.as_bytes(), "t").unwrap().render()
    }

    #[test]
    fn a_backup_list_reads_into_pgbrs_terms() {
        let text = with_checksum(concat!(
            "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n",
            "[backup:current]\n",
            "20261207-230614F={\"backrest-format\":5,\"backrest-version\":\"2.45\",\"backup-archive-start\":\"000000020000000000000003\",\"backup-archive-stop\":\"000000020000000000000003\",\"backup-error\":false,\"backup-info-repo-size\":5427520,\"backup-info-repo-size-delta\":5427520,\"backup-info-size\":29857466,\"backup-info-size-delta\":29857466,\"backup-lsn-start\":\"0/3000028\",\"backup-lsn-stop\":\"0/3000100\",\"backup-timestamp-start\":1796684774,\"backup-timestamp-stop\":1796684775,\"backup-type\":\"full\",\"db-id\":2,\"option-archive-check\":true}\n",
            "20261207-230614F_20261207-230616D={\"backup-info-repo-size\":5,\"backup-info-repo-size-delta\":2,\"backup-info-size\":9,\"backup-info-size-delta\":3,\"backup-prior\":\"20261207-230614F\",\"backup-reference\":[\"20261207-230614F\"],\"backup-timestamp-start\":1796684776,\"backup-timestamp-stop\":1796684778,\"backup-type\":\"diff\",\"db-id\":2}\n\n",
            "[cipher]\ncipher-pass=\"sub\"\n\n",
            "[db]\ndb-id=2\ndb-system-id=77\ndb-version=\"15\"\n\n",
            "[db:history]\n1={\"db-catalog-version\":1,\"db-control-version\":1,\"db-system-id\":76,\"db-version\":\"9.6\"}\n2={\"db-catalog-version\":202209061,\"db-control-version\":1300,\"db-system-id\":77,\"db-version\":\"15\"}\n",
        ));
        let read = BackrestBackupInfo::parse(text.as_bytes(), "main").unwrap();
        assert_eq!(read.cipher_pass.as_deref(), Some("sub"));
        assert_eq!(read.info.cipher.cipher_type, Cipher::Aes256Cbc);
        assert_eq!(
            read.info.db_history,
            vec![DbHistory {
                db_id: 2,
                system_id: 77,
                pg_version: 15
            }]
        );
        let full = &read.info.backups[0];
        assert_eq!(
            (full.timeline, full.size_original, full.size_repo),
            (2, 29857466, Some(5427520))
        );
        let diff = &read.info.backups[1];
        assert_eq!(diff.references, vec!["20261207-230614F".to_string()]);
        assert_eq!(diff.backup_type, BackupType::Diff);
    }

    #[test]
    fn an_archive_info_names_the_system_id_db_id() {
        let text = with_checksum("[backrest]\nbackrest-format=5\n\n[db:history]\n1={\"db-id\":7716702285593999242,\"db-version\":\"15\"}\n");
        let read = BackrestArchiveInfo::parse(text.as_bytes(), "main").unwrap();
        assert_eq!(ArchiveInfo::archive_id(&read.info.db_history[0]), "15-1");
        assert_eq!(read.info.db_history[0].system_id, 7716702285593999242);
        assert_eq!(read.cipher_pass, None);
    }
}
