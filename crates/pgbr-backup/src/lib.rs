//! The pgbr engine: every pgbr command is a function here, composed from the lower crates
//! (`pgbr-manifest`, `pgbr-storage`, `pgbr-crypto`, `pgbr-wal`).
//!
//! The modules read as the command list: [`stanza`] (`stanza-create`, `stanza-upgrade`,
//! `stanza-delete`), [`backup`] (full, diff, incr; block-level incrementals, bundles, resume,
//! backup from a standby), [`restore`] (with the [`recovery`] targets), [`archive`] (`archive-push`,
//! `archive-get`; with the spool of asynchronous archiving), [`check`], [`info`],
//! [`expire`] and [`verify`]; [`lock`] is the per-stanza lock (and the stop files) that `backup`,
//! `expire` and the stanza commands hold, and [`claim`] the stanza's claim in the repository that
//! they hold as well, which keeps hosts sharing a repository apart; [`multi`] spreads
//! `archive-push` and `info` over every repository and picks the repository `archive-get` and
//! `restore` read from. [`config`] reads pgBackRest-style
//! configuration (INI file, `PGBR_*` environment, flags) into the typed option structs those
//! functions take, so an embedder reads the same file the same way the CLI does.
//!
//! Some commands are more than one of those functions, and the `pgbr` binary runs them as these
//! modules do, so an embedder gets the same: [`backup_expire`] (`backup`, then `expire`, as after
//! every backup), [`archive::client`] (`archive-push` from a [`config::Config`], through the
//! asynchronous worker; starting and running the workers), [`restore::from_config`] (the
//! repository to restore from, among several, and the restored cluster's `restore_command`),
//! [`stanza::all`] (the stanza commands in every repository) and [`command_line`] (the
//! `restore_command` of a restored cluster and the workers' command lines). Long commands
//! report through a [`Progress`] the caller implements; the library never prints. [`process`] holds
//! the allocator tuning a program running these commands makes once, first thing. [`failpoints`]
//! lists the crash points of the fault tests, which exist only in a build with the `failpoints`
//! feature (off by default).
//!
//! ```no_run
//! use std::sync::Arc;
//! use pgbr_backup::{backup, config::{BackupOptions, PgOptions, RepoOptions}, NoProgress, Repository};
//!
//! # async fn run() -> Result<(), pgbr_backup::Error> {
//! let repo_opts = RepoOptions::posix("/var/lib/pgbr");
//! let mut repo = Repository::open(&repo_opts, "main").await?;
//! let mut pg = PgOptions::new("/var/lib/postgresql/15/main");
//! pg.port = 5432;
//! let report = backup::run(&mut repo, &pg, &BackupOptions::default(), Arc::new(NoProgress)).await?;
//! println!("backup {} stored {} bytes", report.label, report.size_stored);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod archive;
pub mod backup;
pub mod backup_expire;
pub mod check;
pub mod claim;
mod codecs;
pub mod command_line;
pub mod config;
mod config_file;
mod error;
mod exclude;
pub mod expire;
pub mod failpoints;
pub mod info;
mod layout;
pub mod lock;
pub mod multi;
pub mod options;
mod pg;
mod pipeline;
pub mod process;
mod progress;
mod repo;
pub mod restore;
pub mod stanza;
#[cfg(test)]
mod test_support;
pub mod verify;

pub use config::recovery;
pub use error::{exit, Error, Result};
pub use progress::{NoProgress, Progress};
pub use repo::{open_storage, Repository};

/// The re-exported lower crates, so embedders use the same versions.
pub use pgbr_crypto as crypto;
pub use pgbr_manifest as manifest;
pub use pgbr_storage as storage;
pub use pgbr_wal as wal;
