//! `backup` as the `pgbr` command runs it: the backup, then `expire`, so that retention is
//! applied after every successful backup, under one lock and one claim of the stanza (no other
//! host's command slips in between the two).

use std::sync::Arc;

use crate::backup::{self, BackupReport};
use crate::config::{BackupOptions, ExpireOptions, PgOptions};
use crate::error::Result;
use crate::expire::{self, ExpireReport};
use crate::progress::Progress;
use crate::repo::Repository;

/// What [`run`] did: the backup taken and what the expire after it removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupExpireReport {
    /// The backup.
    pub backup: BackupReport,
    /// The expire that followed it; `None` with `expire-auto=n`.
    pub expire: Option<ExpireReport>,
}

/// Takes a backup of `pg` into `repo` ([`backup::run`]) and then, unless `opts.expire_auto` is
/// off, applies the retention of `expire_opts` ([`expire::run`]), holding the stanza's lock and claim across both. A backup
/// that fails expires nothing.
///
/// The backup's notices (interrupted backups removed, type changed, resumed) are logged as soon
/// as the backup ends, so that they are not lost when the expire after it fails.
pub async fn run(
    repo: &mut Repository,
    pg: &PgOptions,
    opts: &BackupOptions,
    expire_opts: &ExpireOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupExpireReport> {
    repo.lock(&opts.lock_path)?;
    repo.claim("backup").await?;
    let result = async {
        let backup = backup::run(repo, pg, opts, progress).await?;
        log_notices(&backup);
        let expire = if opts.expire_auto {
            Some(expire::run(repo, expire_opts).await?)
        } else {
            None
        };
        Ok(BackupExpireReport { backup, expire })
    }
    .await;
    if let Err(e) = repo.release_claim().await {
        tracing::warn!("{e}; the next command takes the claim over");
    }
    result
}

/// Logs what the user should know of `backup` beyond its result.
fn log_notices(backup: &BackupReport) {
    for label in &backup.removed_incomplete {
        tracing::warn!("removed incomplete backup {label}");
    }
    if let Some(m) = &backup.type_changed {
        tracing::warn!("{m}");
    }
    if let Some(n) = backup.resumed_files {
        tracing::info!(
            "backup {} resumed an interrupted attempt: {n} stored file(s) verified and reused",
            backup.label
        );
    }
}
