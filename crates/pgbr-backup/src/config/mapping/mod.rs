//! The mapping from raw option values to the typed option structs, one method of [`Config`] per
//! struct. Values were checked against their kind when loaded and an unset option reads as its
//! registry default, so the mapping only interprets: it holds no default of its own.

mod repo;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pgbr_manifest::BackupType;
use pgbr_storage::CompressType;

use super::recovery::{RecoveryOptions, RecoveryTarget, TargetAction};
use super::{
    registry_default, ArchivePushOptions, AsyncOptions, BackupOptions, BundleOptions,
    CompressOptions, Config, ExpireOptions, PgOptions, RestoreOptions, RetentionFullType, Source,
    VerifyOptions,
};
use crate::error::Error;
use crate::options::{self, Command};

impl Config {
    /// `pg1-*`, with `pg1-path` required.
    pub fn pg(&self) -> Result<PgOptions, Error> {
        self.pg_host(1)
    }

    /// `pg<index>-*`, with `pg<index>-path` required.
    pub fn pg_host(&self, index: u32) -> Result<PgOptions, Error> {
        let path = self
            .options
            .require(&format!("pg{index}-path"), self.command)?;
        self.pg_at(index, PathBuf::from(path))
    }

    /// `pg<index>-*` for the cluster in `path`.
    pub(crate) fn pg_at(&self, index: u32, path: PathBuf) -> Result<PgOptions, Error> {
        let o = &self.options;
        let name = |s: &str| format!("pg{index}-{s}");
        Ok(PgOptions {
            index,
            path,
            port: o.value(&name("port"))?,
            socket_path: o.value(&name("socket-path"))?,
            user: o.value(&name("user"))?,
            database: o.value(&name("database"))?,
        })
    }

    /// `compress-type` and `compress-level`.
    pub fn compress(&self) -> Result<CompressOptions, Error> {
        let o = &self.options;
        let compress_type: CompressType = o
            .value::<String>("compress-type")?
            .parse()
            .map_err(|_| Error::config("invalid value for option 'compress-type'".into()))?;
        let level = match o.parsed::<i32>("compress-level") {
            None => compress_type.default_level(),
            Some(l) => {
                let max = match compress_type {
                    CompressType::Zst => 19,
                    CompressType::Gz => 9,
                    CompressType::Lz4 | CompressType::None => 0,
                };
                if l > max {
                    return Err(Error::config(format!(
                        "invalid value '{l}' for option 'compress-level': compress-type={compress_type} takes 0 to {max}"
                    )));
                }
                l
            }
        };
        Ok(CompressOptions {
            compress_type,
            level,
        })
    }

    /// `process-max`.
    pub(crate) fn process_max(&self) -> usize {
        registry_default(self.options.value("process-max"))
    }

    /// The `backup` command's options.
    pub fn backup(&self) -> Result<BackupOptions, Error> {
        let o = &self.options;
        let backup_type = match o.get("type") {
            // pgBackRest's default: incremental, which becomes full when there is no prior.
            // (`type` has no registry default: restore reads the same option differently.)
            None => BackupType::Incr,
            Some(t) => t.parse().map_err(|_| {
                Error::config(format!(
                    "invalid value '{t}' for option 'type': backup takes full, diff or incr"
                ))
            })?,
        };
        Ok(BackupOptions {
            backup_type,
            compress: self.compress()?,
            process_max: self.process_max(),
            start_fast: o.get_bool("start-fast"),
            expire_auto: o.get_bool("expire-auto"),
            archive_check: o.get_bool("archive-check"),
            archive_copy: o.get_bool("archive-copy"),
            archive_timeout: self.archive_timeout(),
            lock_path: self.lock_path(),
            delta: o.get_bool("delta"),
            standby: if o.get_bool("backup-standby") {
                Some(self.pg_host(2).map_err(|_| {
                    Error::config(
                        "backup-standby=y requires the standby's options: pg2-path (and pg2-port, pg2-socket-path)".into(),
                    )
                })?)
            } else {
                None
            },
            bundle: match o.get_bool("repo1-bundle") {
                true => Some(self.bundle_sizes(1)?),
                false => None,
            },
        })
    }

    /// `repo<index>-bundle-size` and `repo<index>-bundle-limit`.
    pub(crate) fn bundle_sizes(&self, index: u32) -> Result<BundleOptions, Error> {
        Ok(BundleOptions {
            size: self.options.size(&format!("repo{index}-bundle-size"))?,
            limit: self.options.size(&format!("repo{index}-bundle-limit"))?,
        })
    }

    /// The `restore` command's options; `restore_command` is left for the caller to fill in.
    pub fn restore(&self) -> Result<RestoreOptions, Error> {
        let o = &self.options;
        Ok(RestoreOptions {
            pg_path: PathBuf::from(o.require("pg1-path", self.command)?),
            set: o.get("set"),
            delta: o.get_bool("delta"),
            force: o.get_bool("force"),
            tablespace_map: self.tablespace_map()?,
            process_max: self.process_max(),
            restore_command: None,
            recovery: self.recovery()?,
        })
    }

    /// `type` (of a restore), `target` and the `target-*` options.
    fn recovery(&self) -> Result<RecoveryOptions, Error> {
        let o = &self.options;
        // `type` has no registry default: backup reads the same option differently.
        let kind = o.get("type").unwrap_or_else(|| "default".into());
        let recovery = RecoveryOptions {
            target: RecoveryTarget::parse(&kind, o.get("target").as_deref())?,
            action: match o.get("target-action").as_deref() {
                None => None,
                Some("pause") => Some(TargetAction::Pause),
                Some("promote") => Some(TargetAction::Promote),
                Some(_) => Some(TargetAction::Shutdown),
            },
            exclusive: o.get_bool("target-exclusive"),
            timeline: o.get("target-timeline"),
        };
        recovery.validate()?;
        Ok(recovery)
    }

    /// Every `tablespace-map` entry, by OID or name.
    fn tablespace_map(&self) -> Result<BTreeMap<String, PathBuf>, Error> {
        let mut tablespace_map = BTreeMap::new();
        for entry in self.options.get_list("tablespace-map") {
            let (key, path) = entry.split_once('=').ok_or_else(|| {
                Error::config(format!(
                    "invalid value '{entry}' for option 'tablespace-map': use OID=PATH or NAME=PATH"
                ))
            })?;
            if key.is_empty() || !path.starts_with('/') {
                return Err(Error::config(format!(
                    "invalid value '{entry}' for option 'tablespace-map': use OID=PATH or NAME=PATH with an absolute PATH"
                )));
            }
            tablespace_map.insert(key.to_string(), PathBuf::from(path));
        }
        Ok(tablespace_map)
    }

    /// `lock-path`.
    pub fn lock_path(&self) -> PathBuf {
        registry_default(self.options.value("lock-path"))
    }

    /// The `expire` options (for `expire`, and for the expire that follows a `backup`).
    pub fn expire(&self) -> Result<ExpireOptions, Error> {
        let o = &self.options;
        // The retention of the repository the command works on (`--repo`, else repo1).
        let n = self.selected_repo()?.unwrap_or(1);
        let r = |s: &str| format!("repo{n}-{s}");
        let retention_full_type = match o.value::<String>(&r("retention-full-type"))?.as_str() {
            "time" => RetentionFullType::Time,
            _ => RetentionFullType::Count,
        };
        let retention_archive_type = match o.value::<String>(&r("retention-archive-type"))?.as_str()
        {
            "diff" => BackupType::Diff,
            "incr" => BackupType::Incr,
            _ => BackupType::Full,
        };
        let (set, force, dry_run) = if self.command == Command::Expire {
            (o.get("set"), o.get_bool("force"), o.get_bool("dry-run"))
        } else {
            (None, false, false)
        };
        Ok(ExpireOptions {
            retention_full: o.parsed(&r("retention-full")),
            retention_full_type,
            retention_diff: o.parsed(&r("retention-diff")),
            retention_archive: o.parsed(&r("retention-archive")),
            retention_archive_type,
            set,
            force,
            dry_run,
            lock_path: self.lock_path(),
            keep_wal_from: None,
        })
    }

    /// The `verify` options.
    pub fn verify(&self) -> Result<VerifyOptions, Error> {
        Ok(VerifyOptions {
            process_max: self.process_max(),
            retention: self.expire()?,
        })
    }

    /// The `archive-push` command's options.
    pub fn archive_push(&self) -> Result<ArchivePushOptions, Error> {
        Ok(ArchivePushOptions {
            compress: self.compress()?,
            pg_path: self.options.get("pg1-path").map(PathBuf::from),
            process_max: self.process_max(),
        })
    }

    /// Asynchronous archiving settings, or `None` when `archive-async` is off.
    pub fn archive_async(&self) -> Option<AsyncOptions> {
        let o = &self.options;
        if !o.get_bool("archive-async") {
            return None;
        }
        Some(AsyncOptions {
            spool_path: registry_default(o.value("spool-path")),
            process_max: self.process_max(),
            push_queue_max: o
                .get("archive-push-queue-max")
                .and_then(|v| super::parse_size(&v)),
            get_queue_max: registry_default(o.size("archive-get-queue-max")),
        })
    }

    /// How long to wait for WAL to reach the archive (`archive-timeout`).
    pub fn archive_timeout(&self) -> Duration {
        Duration::from_secs_f64(registry_default(self.options.value("archive-timeout")))
    }

    /// The options that must be repeated on `restore_command` for `archive-get` to find the same
    /// repository: the configuration file and any repository option that did not come from it.
    pub fn archive_get_flags(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(c) = self.options.get("config") {
            if self.options.source("config") == Source::CommandLine {
                out.push(format!("--config={c}"));
            }
        }
        for (name, def) in options::all_full_names() {
            if def.indexed != options::Indexed::Repo || def.secret {
                continue;
            }
            if matches!(
                self.options.source(&name),
                Source::CommandLine | Source::Env(_)
            ) {
                if let Some(v) = self.options.get(&name) {
                    out.push(format!("--{name}={v}"));
                }
            }
        }
        out
    }
}
