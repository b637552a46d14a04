//! The stanza commands as `pgbr` runs them from a [`Config`]: `stanza-create` in every
//! configured repository, `stanza-upgrade` and `stanza-delete` in every repository (or
//! `--repo`). Each calls `each` with a repository's label and outcome as soon as that
//! repository is done, so a caller reports the repositories done before one that fails.

use super::{DeleteOptions, StanzaCreated, StanzaDeleted, StanzaUpgraded};
use crate::config::Config;
use crate::error::Result;
use crate::lock::Lock;
use crate::multi::label;
use crate::stanza;

/// `stanza-create` in every configured repository, holding the stanza's lock throughout.
pub async fn create(config: &Config, mut each: impl FnMut(&str, StanzaCreated)) -> Result<()> {
    let stanza = config.stanza()?;
    let _lock = Lock::acquire(&config.lock_path(), stanza)?;
    for index in config.repo_indexes() {
        let repo = config.repo(index)?;
        each(
            &label(&repo),
            stanza::create(&repo, stanza, &config.pg()?).await?,
        );
    }
    Ok(())
}

/// `stanza-upgrade` in every repository (or `--repo`).
pub async fn upgrade(config: &Config, mut each: impl FnMut(&str, StanzaUpgraded)) -> Result<()> {
    let stanza = config.stanza()?;
    for repo in config.repos()? {
        let upgraded = stanza::upgrade(&repo, stanza, &config.pg()?, &config.lock_path()).await?;
        each(&label(&repo), upgraded);
    }
    Ok(())
}

/// `stanza-delete` in every repository (or `--repo`), with [`delete_options`].
pub async fn delete(config: &Config, mut each: impl FnMut(&str, StanzaDeleted)) -> Result<()> {
    let stanza = config.stanza()?;
    let opts = delete_options(config);
    for repo in config.repos()? {
        each(&label(&repo), stanza::delete(&repo, stanza, &opts).await?);
    }
    Ok(())
}

/// The `stanza-delete` options of `config`: `lock-path`, `pg1-path` and `force`.
pub fn delete_options(config: &Config) -> DeleteOptions {
    DeleteOptions {
        lock_path: config.lock_path(),
        pg_path: config.options.get("pg1-path").map(Into::into),
        force: config.options.get_bool("force"),
    }
}
