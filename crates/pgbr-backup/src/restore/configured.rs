//! `restore` as `pgbr` runs it from a [`Config`]: the repository chosen among several, and the
//! restored cluster's `restore_command` pointing back at them.

use std::path::Path;
use std::sync::Arc;

use super::RestoreReport;
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;

/// Restores from `--repo`, or else from the first repository that opens and holds the backup
/// asked for (each repository passed over is named in the report's warnings). The restored
/// cluster's `restore_command` runs `exe` (`archive-get` with this configuration's repositories).
pub async fn from_config(
    config: &Config,
    exe: &Path,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    let mut opts = config.restore()?;
    let (repo, passed_over) = crate::multi::open_for_restore(
        &config.repos()?,
        config.stanza()?,
        opts.set.as_deref(),
        &opts.recovery.target,
    )
    .await?;
    progress.message(&format!("restoring from {}", repo.name()));
    opts.restore_command = Some(crate::command_line::restore_command(config, exe)?);
    // archive-get reads every configured repository (whatever --repo chose the backup); those
    // that do not open are left out here as there.
    let others = config.repos_besides(repo.opts.index)?;
    let (also, _) = crate::multi::open_all(&others, config.stanza()?).await;
    let mut report = super::run_with_archives(&repo, &also, &opts, progress).await?;
    let passed_over = passed_over
        .iter()
        .map(|(name, e)| format!("{name} passed over: {e}"));
    report.warnings.splice(0..0, passed_over);
    Ok(report)
}
