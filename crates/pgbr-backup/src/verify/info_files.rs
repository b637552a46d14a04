//! `backup.info`, `archive.info` and each `.copy`: each copy on its own (envelope, format,
//! self-checksum, content), and that both info files describe the same clusters.

use pgbr_manifest::{ArchiveInfo, BackupInfo};

use super::report::VerifyReport;
use crate::error::Result;
use crate::layout;
use crate::repo::Repository;

/// Reads and checks the info files of the stanza `repo` holds.
pub(super) async fn check(repo: &Repository, report: &mut VerifyReport) -> Result<()> {
    let storage = repo.storage();
    let stanza = repo.stanza();
    let mut backup_infos = Vec::new();
    let mut archive_infos = Vec::new();
    for base in [layout::backup_info(stanza), layout::archive_info(stanza)] {
        for path in [base.clone(), layout::copy_of(&base)] {
            report.info_files_checked += 1;
            match storage.get_opt(&path).await? {
                None => report.error(&path, "missing"),
                Some(bytes) => {
                    report.bytes_read += bytes.len() as u64;
                    let parsed = if base.ends_with("backup.info") {
                        BackupInfo::from_bytes(&bytes).map(|b| backup_infos.push(b))
                    } else {
                        ArchiveInfo::from_bytes(&bytes).map(|a| archive_infos.push(a))
                    };
                    if let Err(e) = parsed {
                        report.error(&path, format!("does not verify: {e}"));
                    }
                }
            }
        }
    }
    if backup_infos.len() == 2 && backup_infos[0] != backup_infos[1] {
        report.note(
        layout::backup_info(stanza),
        "differs from its copy (an update was interrupted between the two writes); the next backup or expire rewrites both",
    );
    }
    let (backup_dbs, archive_dbs) = (
        &repo.backup_info().db_history,
        &repo.archive_info().db_history,
    );
    if archive_dbs.len() == backup_dbs.len() + 1 && archive_dbs.starts_with(backup_dbs) {
        report.error(
        layout::backup_info(stanza),
        format!(
            "lacks the database archive.info records last: a stanza-upgrade was interrupted; run 'pgbr --stanza={stanza} stanza-upgrade' to finish it"
        ),
    );
    } else if backup_dbs != archive_dbs || repo.backup_info().cipher != repo.archive_info().cipher {
        report.error(
            layout::backup_info(stanza),
            "backup.info and archive.info describe different clusters or ciphers",
        );
    }
    Ok(())
}
