//! Helpers shared by the unit tests of several modules.

use pgbr_manifest::{BackupSummary, BackupType};

/// A backup.info entry for tests: `start`..`start + 10`, WAL `wal`, database 1.
pub(crate) fn summary(
    label: &str,
    t: BackupType,
    prior: Option<&str>,
    start: i64,
    wal: &str,
) -> BackupSummary {
    BackupSummary {
        label: label.into(),
        backup_type: t,
        prior: prior.map(str::to_string),
        references: prior.map(|p| vec![p.to_string()]).unwrap_or_default(),
        timestamp_start: start,
        timestamp_stop: start + 10,
        lsn_start: "0/0".into(),
        lsn_stop: "0/0".into(),
        wal_start: wal.into(),
        wal_stop: wal.into(),
        timeline: 1,
        db_id: 1,
        size_original: 0,
        size_stored: 0,
        file_count: 0,
        page_errors: 0,
        compress_type: Some(pgbr_manifest::Compression::Zst),
        manifest_checksum: None,
        size_delta: None,
        size_repo: None,
        backrest_version: None,
    }
}

/// A configuration file holding `text`, in a directory removed when the first value drops.
pub(crate) fn write_conf(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pgbr.conf");
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

/// Command-line flags as [`Config::load`](crate::config::Config::load) takes them.
pub(crate) fn flags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}
