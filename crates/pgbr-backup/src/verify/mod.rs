//! `verify`: read every object of a stanza's repository and check it against what covers it.
//!
//! - `backup.info`, `archive.info` and each `.copy`: each copy on its own (envelope, format,
//!   self-checksum, content), and that both info files describe the same clusters.
//! - Every backup directory: each manifest copy on its own (decryption, then the manifest's
//!   self-checksum and rules); every file the manifest lists, read from the backup that holds it,
//!   decrypted (for AES-256-GCM, authenticated), decompressed, and compared with the manifest's size
//!   and BLAKE3 checksum.
//! - Every archived WAL file against the checksum in its name, and WAL continuity per archive id
//!   and timeline from the oldest backup's start to the newest segment.
//!
//! Objects are read on `process-max` workers. Problems are collected, not raised: the report names
//! each bad object, and [`VerifyReport::ok`] says whether there was any. Verify takes no lock; run
//! it when no `expire` runs, or an object removed under it shows up as missing.

use std::sync::Arc;

use crate::config::VerifyOptions;
use crate::error::Result;
use crate::progress::Progress;
use crate::repo::Repository;

mod archive;
mod backrest;
mod backups;
mod continuity;
mod info_files;
mod jobs;
mod manifests;
mod report;

pub use report::{Problem, VerifyReport};

/// Verifies the stanza `repo` holds.
pub async fn run(
    repo: &Repository,
    opts: &VerifyOptions,
    progress: Arc<dyn Progress>,
) -> Result<VerifyReport> {
    if repo.is_backrest() {
        return backrest::run(repo, opts, progress).await;
    }
    let mut report = VerifyReport {
        stanza: repo.stanza().to_string(),
        repo: repo.name(),
        ..Default::default()
    };
    info_files::check(repo, &mut report).await?;
    let mut checker = jobs::Checker::new(repo, opts.process_max, progress);
    let summaries = backups::check(&mut checker, &mut report).await?;
    let segments = archive::check(&mut checker, &mut report).await?;
    let sizes = checker.add_to(&mut report);
    continuity::check(repo, opts, &summaries, segments, &sizes, &mut report);
    report.ok = report.errors.is_empty();
    Ok(report)
}
