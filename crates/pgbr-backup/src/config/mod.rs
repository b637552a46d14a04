//! Configuration: the INI file, `PGBR_*` environment variables and command-line flags, merged the way
//! pgBackRest merges them, checked against the [option registry](crate::options) and turned into the
//! typed option structs the commands take.
//!
//! Precedence, lowest first: `[global]`, `[global:<command>]`, `[<stanza>]`, `[<stanza>:<command>]`,
//! then `PGBR_<OPTION>` variables (pgBackRest's `PGBACKREST_<OPTION>` stand for them), then flags.
//! Embedders and the CLI call [`Config::load`] so both read the same file the same way. The options
//! of a pgBackRest configuration that pgbr does not implement are warned about or refused as
//! [`crate::options::foreign_verdict`] says.
//!
//! The module has three parts: [`Options`] (in `values`) loads and checks the raw values; the typed
//! option structs each command takes live in one file per command group (`repo`, `backup`,
//! `restore` with [`recovery`], `expire`, `archive`, `stanza`); `mapping` turns the raw values
//! into those structs. Every default is the [registry](crate::options)'s: a typed struct's
//! `Default` is what the mapping gives when nothing is configured.

mod archive;
mod backup;
mod expire;
mod mapping;
pub mod recovery;
mod repo;
mod restore;
mod stanza;
#[cfg(test)]
mod tests;
mod values;

pub use archive::{ArchivePushOptions, AsyncOptions};
pub use backup::{BackupOptions, BundleOptions, CompressOptions};
pub use expire::{ExpireOptions, RetentionFullType, VerifyOptions};
pub use repo::{CloudOptions, PgOptions, RepoOptions, RepoType, Secret};
pub use restore::RestoreOptions;
pub use stanza::DeleteOptions;
pub use values::{parse_size, Options, Source};

pub use crate::config_file::env_vars;
#[cfg(test)]
pub(crate) use values::check_value;

use crate::error::Error;
use crate::options::Command;

/// The typed configuration of one invocation.
#[derive(Clone, Debug)]
pub struct Config {
    /// The command.
    pub command: Command,
    /// The stanza, when given.
    pub stanza: Option<String>,
    /// The raw option values, for anything the typed fields do not cover.
    pub options: Options,
    /// `log-level-console`.
    pub log_level: String,
}

impl Config {
    /// Loads and merges every source (see the module docs) for `command`.
    pub fn load(
        command: Command,
        flags: &[(String, String)],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Error> {
        let options = Options::load(command, flags, env)?;
        let stanza = options.get("stanza");
        if command.needs_stanza() && stanza.is_none() {
            return Err(Error::config(format!(
                "command '{command}' requires option 'stanza': pass --stanza=NAME"
            )));
        }
        if let Some(s) = &stanza {
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                || s.starts_with('.')
            {
                return Err(Error::config(format!(
                    "invalid stanza name '{s}': use letters, digits, '-', '_' and '.'"
                )));
            }
        }
        let log_level = options.value("log-level-console")?;
        Ok(Config {
            command,
            stanza,
            options,
            log_level,
        })
    }

    /// The stanza (commands that need one are refused at load without it).
    pub fn stanza(&self) -> Result<&str, Error> {
        self.stanza
            .as_deref()
            .ok_or_else(|| Error::config("option 'stanza' is required: pass --stanza=NAME".into()))
    }

    /// The configuration of `command` when nothing is configured: every option at its registry
    /// default. The typed structs' `Default`s are mapped from it.
    pub(crate) fn unconfigured(command: Command) -> Config {
        Config {
            command,
            stanza: None,
            options: Options::default(),
            log_level: registry_default(Options::default().value("log-level-console")),
        }
    }
}

/// The typed value mapped from the registry defaults alone. Those defaults are constants, each
/// checked against its option's kind by a test, so mapping them cannot fail unless the registry
/// itself is wrong; a panic then names the bug.
pub(crate) fn registry_default<T>(mapped: Result<T, Error>) -> T {
    match mapped {
        Ok(v) => v,
        Err(e) => panic!("the option registry's defaults do not map to typed options: {e}"),
    }
}
