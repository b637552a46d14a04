//! Configuration: the INI file, `PGBR_*` environment variables and command-line flags, merged the way
//! pgBackRest merges them, checked against the [option registry](crate::options) and turned into the
//! typed option structs the commands take.
//!
//! Precedence, lowest first: `[global]`, `[global:<command>]`, `[<stanza>]`, `[<stanza>:<command>]`,
//! then `PGBR_<OPTION>` variables, then flags. Embedders and the CLI call [`Config::load`] so both read
//! the same file the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgbr_crypto::CipherType;
use pgbr_manifest::BackupType;
use pgbr_storage::{
    AzureKeyType, AzureOptions, CompressType, GcsKeyType, GcsOptions, S3Options, UriStyle,
};

use crate::config_file;
use crate::error::Error;
use crate::options::{self, Command, OptionDef, OptionKind, OptionName, Scope};

/// Where a value came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A section of the configuration file.
    File {
        /// The file.
        path: PathBuf,
        /// The section, e.g. `global` or `main:backup`.
        section: String,
    },
    /// A `PGBR_*` environment variable.
    Env(String),
    /// A command-line flag.
    CommandLine,
    /// The option's default.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File { path, section } => write!(f, "{} [{section}]", path.display()),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::CommandLine => f.write_str("command line"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// The raw, validated option values of one invocation (before they become typed structs).
/// Its `Debug` output shows no value of a secret option.
#[derive(Clone, Default)]
pub struct Options {
    values: BTreeMap<String, (Vec<String>, Source)>,
    /// Warnings met while loading (e.g. an unknown `PGBR_*` variable); the caller should log them.
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<&str, (Vec<&str>, &Source)> = self
            .values
            .iter()
            .map(|(name, (values, source))| {
                let secret = OptionName::parse(name).is_some_and(|n| n.def.secret);
                let values = values
                    .iter()
                    .map(|v| if secret { "<redacted>" } else { v.as_str() })
                    .collect();
                (name.as_str(), (values, source))
            })
            .collect();
        f.debug_struct("Options")
            .field("values", &shown)
            .field("warnings", &self.warnings)
            .finish()
    }
}

pub use crate::config_file::env_vars;

/// Checks one value against its option's kind; the error names the option and where it came from.
pub(crate) fn check_value(def: &OptionDef, name: &str, value: &str) -> Result<(), String> {
    let bad = |what: &str| {
        if def.secret {
            // Never shown, however malformed (an error may end up in a log).
            return Err(format!(
                "invalid value for option '{name}' (not shown: it is secret): {what}"
            ));
        }
        Err(format!(
            "invalid value '{value}' for option '{name}': {what}"
        ))
    };
    match def.kind {
        OptionKind::Bool => match value {
            "y" | "n" => Ok(()),
            _ => bad("must be y or n"),
        },
        OptionKind::Int { min, max } => match value.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(()),
            _ => bad(&format!("must be a whole number from {min} to {max}")),
        },
        OptionKind::Seconds { min, max } => match value.parse::<f64>() {
            Ok(v) if v >= min && v <= max => Ok(()),
            _ => bad(&format!("must be a number of seconds from {min} to {max}")),
        },
        OptionKind::Path => {
            if value.starts_with('/') {
                Ok(())
            } else {
                bad("must be an absolute path")
            }
        }
        OptionKind::Choice(choices) => {
            if choices.contains(&value) {
                Ok(())
            } else {
                bad(&format!("must be one of {}", choices.join(", ")))
            }
        }
        OptionKind::Size => match parse_size(value) {
            Some(_) => Ok(()),
            None => bad("must be a size such as 512MB, 4GB or a number of bytes"),
        },
        OptionKind::Text | OptionKind::List => {
            if value.is_empty() {
                bad("must not be empty")
            } else {
                Ok(())
            }
        }
    }
}

/// Parses a size: bytes, or a number with KB, MB, GB or TB (powers of 1024; case-insensitive,
/// the B optional, KiB, MiB, GiB and TiB too, as pgBackRest writes its defaults).
pub fn parse_size(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    fn unit(v: &str) -> Option<(&str, u64)> {
        let (i, c) = v.char_indices().last()?;
        let shift = match c {
            'k' => 10,
            'm' => 20,
            'g' => 30,
            't' => 40,
            _ => return None,
        };
        Some((&v[..i], 1u64 << shift))
    }
    let (digits, mult) = match v.strip_suffix('i').and_then(unit) {
        Some(binary) => binary,
        None => unit(v).unwrap_or((v, 1)),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult)
}

fn applies(def: &OptionDef, command: Command) -> bool {
    def.commands.is_empty() || def.commands.contains(&command)
}

impl Options {
    /// Merges the configuration file, `env` (pass [`env_vars`]) and `flags` (name without
    /// `--`, value; booleans as `y`/`n`) for `command`.
    ///
    /// Unknown options and bad values in flags or in the file are errors naming the option and its
    /// source; flags that do not apply to `command` are errors; file and environment options that
    /// do not apply to `command` are ignored (a `[global]` section serves every command).
    pub fn load(
        command: Command,
        flags: &[(String, String)],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Options, Error> {
        let mut opts = Options::default();
        let mut env_values: Vec<(String, String, String)> = Vec::new();
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("PGBR_") else {
                continue;
            };
            let name = rest.to_ascii_lowercase().replace('_', "-");
            match OptionName::parse(&name) {
                Some(n) => {
                    check_value(n.def, &name, &value).map_err(|m| {
                        Error::config(format!("{m} (from environment variable {var})"))
                    })?;
                    if applies(n.def, command) {
                        env_values.push((name, value, var));
                    }
                }
                None => opts.warnings.push(format!(
                    "environment variable {var} is not a pgbr option; ignored"
                )),
            }
        }
        let mut flag_values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in flags {
            let n = OptionName::parse(name)
                .ok_or_else(|| Error::config(format!("unknown option '--{name}'")))?;
            if !applies(n.def, command) {
                return Err(Error::config(format!(
                    "option '--{name}' is not valid for command '{command}'"
                )));
            }
            check_value(n.def, name, value).map_err(Error::config)?;
            flag_values
                .entry(name.clone())
                .or_default()
                .push(value.clone());
        }

        let lookup = |name: &str| -> Option<String> {
            flag_values
                .get(name)
                .and_then(|v| v.last().cloned())
                .or_else(|| {
                    env_values
                        .iter()
                        .rev()
                        .find(|e| e.0 == name)
                        .map(|e| e.1.clone())
                })
        };
        let stanza = lookup("stanza");
        let (config_path, explicit) = match lookup("config") {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from("/etc/pgbr/pgbr.conf"), false),
        };
        if config_path.exists() || explicit {
            opts.load_file(&config_path, command, stanza.as_deref())?;
            opts.values.insert(
                "config".into(),
                (
                    vec![config_path.display().to_string()],
                    if explicit {
                        Source::CommandLine
                    } else {
                        Source::Default
                    },
                ),
            );
        }
        for (name, value, var) in env_values {
            let entry = opts
                .values
                .entry(name)
                .or_insert((Vec::new(), Source::Default));
            if !matches!(entry.1, Source::Env(_)) {
                entry.0.clear();
            }
            entry.0.push(value);
            entry.1 = Source::Env(var);
        }
        for (name, values) in flag_values {
            opts.values.insert(name, (values, Source::CommandLine));
        }
        Ok(opts)
    }

    fn load_file(
        &mut self,
        path: &Path,
        command: Command,
        stanza: Option<&str>,
    ) -> Result<(), Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "unable to read configuration file {}: {e}",
                path.display()
            ))
        })?;
        // Sections that apply, lowest precedence first.
        let mut wanted = vec!["global".to_string(), format!("global:{command}")];
        if let Some(s) = stanza {
            wanted.push(s.to_string());
            wanted.push(format!("{s}:{command}"));
        }
        let mut layered: Vec<(usize, String, String, String)> = Vec::new();
        // (section, option) -> the line that set it: an option set twice in a section is an
        // error (as in pgBackRest), unless it is a list.
        let mut first_line: BTreeMap<(String, String), usize> = BTreeMap::new();
        for entry in config_file::parse(path, &text)? {
            let config_file::Entry {
                section,
                key,
                value,
                line,
            } = entry;
            let at = |what: String| config_file::line_error(path, line, what);
            if let Some((_, cmd)) = section.split_once(':') {
                if Command::from_name(cmd).is_none() {
                    return Err(at(format!(
                        "section [{section}]: '{cmd}' is not a pgbr command"
                    )));
                }
            }
            let n = OptionName::parse(&key).ok_or_else(|| {
                at(match config_file::showable_name(&key) {
                    Some(k) => format!("section [{section}]: unknown option '{k}'"),
                    None => format!(
                        "section [{section}]: unknown option (its name is not shown: it is not an option name and may be part of a value)"
                    ),
                })
            })?;
            if n.def.scope == Scope::CommandLine {
                return Err(at(format!(
                    "section [{section}]: option '{key}' is only accepted on the command line or in the environment"
                )));
            }
            check_value(n.def, &key, &value)
                .map_err(|m| at(format!("section [{section}]: {m}")))?;
            if let Some(first) = first_line.insert((section.clone(), key.clone()), line) {
                if n.def.kind != OptionKind::List {
                    return Err(at(format!(
                        "option '{key}' is set twice in section [{section}] (also on line {first}): keep one"
                    )));
                }
            }
            let rank = wanted.iter().position(|w| *w == section);
            if let Some(rank) = rank {
                if applies(n.def, command) {
                    layered.push((rank, section, key, value));
                }
            }
        }
        layered.sort_by_key(|l| l.0);
        for (_, section, key, value) in layered {
            let source = Source::File {
                path: path.to_path_buf(),
                section,
            };
            let entry = self
                .values
                .entry(key)
                .or_insert((Vec::new(), source.clone()));
            if entry.1 != source {
                entry.0.clear();
                entry.1 = source;
            }
            entry.0.push(value);
        }
        Ok(())
    }

    /// The value of option `name` (full name, e.g. `repo1-path`), or its default.
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some((v, _)) = self.values.get(name) {
            return v.last().cloned();
        }
        OptionName::parse(name).and_then(|n| n.def.default.map(str::to_string))
    }

    /// Whether option `name` was given anywhere (not just defaulted).
    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Where the value of `name` came from.
    pub fn source(&self, name: &str) -> Source {
        self.values
            .get(name)
            .map(|(_, s)| s.clone())
            .unwrap_or(Source::Default)
    }

    /// The options given on the command line, as `(name, value)` pairs (for handing the same
    /// settings to a process pgbr starts itself).
    pub fn command_line_values(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, (values, source)) in &self.values {
            if *source == Source::CommandLine {
                for v in values {
                    out.push((name.clone(), v.clone()));
                }
            }
        }
        out
    }

    /// Every value of a repeatable option.
    pub fn get_list(&self, name: &str) -> Vec<String> {
        self.values
            .get(name)
            .map(|(v, _)| v.clone())
            .unwrap_or_default()
    }

    /// The value of `name`, or an error saying it is required.
    pub fn require(&self, name: &str, command: Command) -> Result<String, Error> {
        self.get(name).ok_or_else(|| {
            Error::config(format!(
                "command '{command}' requires option '{name}': set it in the configuration file, as PGBR_{}, or as --{name}",
                name.to_ascii_uppercase().replace('-', "_")
            ))
        })
    }

    /// A boolean option (`y`/`n`, already validated).
    pub fn get_bool(&self, name: &str) -> bool {
        self.get(name).as_deref() == Some("y")
    }

    fn parsed<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.get(name).and_then(|v| v.parse().ok())
    }
}

/// How to reach a PostgreSQL cluster (the `pg<N>-*` options: `pg1-*` for the cluster backed up,
/// `pg2-*` for the standby of `backup-standby`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgOptions {
    /// The N of `pg<N>-*`, so that messages name the options of this host.
    pub index: u32,
    /// Data directory.
    pub path: PathBuf,
    /// Port.
    pub port: u16,
    /// Unix socket directory.
    pub socket_path: PathBuf,
    /// User to connect as.
    pub user: String,
    /// Database to connect to.
    pub database: String,
}

impl PgOptions {
    /// Options for a cluster in `path` (`pg1`) with every connection option at its default.
    pub fn new(path: impl Into<PathBuf>) -> PgOptions {
        PgOptions {
            index: 1,
            path: path.into(),
            port: 5432,
            socket_path: PathBuf::from("/var/run/postgresql"),
            user: "postgres".into(),
            database: "postgres".into(),
        }
    }

    /// `pg<N>-<name>` for this host, e.g. `pg2-port`, for messages.
    pub fn option(&self, name: &str) -> String {
        format!("pg{}-{name}", self.index)
    }
}

/// The kind of storage behind a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoType {
    /// A local (or mounted) filesystem.
    Posix,
    /// Amazon S3 or an S3-compatible object store.
    S3,
    /// Azure Blob storage.
    Azure,
    /// Google Cloud Storage.
    Gcs,
}

impl std::fmt::Display for RepoType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RepoType::Posix => "posix",
            RepoType::S3 => "s3",
            RepoType::Azure => "azure",
            RepoType::Gcs => "gcs",
        })
    }
}

/// The object store settings of a cloud repository (their `Debug` output hides every secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudOptions {
    /// `repo<N>-s3-*`.
    S3(S3Options),
    /// `repo<N>-azure-*`.
    Azure(AzureOptions),
    /// `repo<N>-gcs-*`.
    Gcs(GcsOptions),
}

/// A passphrase that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a passphrase.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The passphrase's bytes, for key derivation only.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One repository (the `repo<N>-*` options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoOptions {
    /// The N of `repo<N>`.
    pub index: u32,
    /// Storage type.
    pub repo_type: RepoType,
    /// Path (prefix for object stores).
    pub path: String,
    /// Encryption.
    pub cipher_type: CipherType,
    /// Passphrase; required when `cipher_type` is not `None`.
    pub cipher_pass: Option<Secret>,
    /// The object store settings when `repo_type` is S3, Azure or GCS (their `prefix` is
    /// `path`); `None` for posix.
    pub cloud: Option<CloudOptions>,
}

impl RepoOptions {
    /// An unencrypted posix repository at `path`.
    pub fn posix(path: impl Into<String>) -> RepoOptions {
        RepoOptions {
            index: 1,
            repo_type: RepoType::Posix,
            path: path.into(),
            cipher_type: CipherType::None,
            cipher_pass: None,
            cloud: None,
        }
    }

    /// An unencrypted repository in an object store; `path` comes from the options' prefix.
    pub fn cloud(cloud: CloudOptions) -> RepoOptions {
        let (repo_type, path) = match &cloud {
            CloudOptions::S3(o) => (RepoType::S3, o.prefix.clone()),
            CloudOptions::Azure(o) => (RepoType::Azure, o.prefix.clone()),
            CloudOptions::Gcs(o) => (RepoType::Gcs, o.prefix.clone()),
        };
        RepoOptions {
            index: 1,
            repo_type,
            path,
            cipher_type: CipherType::None,
            cipher_pass: None,
            cloud: Some(cloud),
        }
    }

    /// The same repository as `repo<index>`.
    pub fn with_index(mut self, index: u32) -> RepoOptions {
        self.index = index;
        self
    }

    /// The same repository, encrypted with `cipher` under `passphrase`.
    pub fn with_cipher(mut self, cipher: CipherType, passphrase: impl Into<String>) -> RepoOptions {
        self.cipher_type = cipher;
        self.cipher_pass = Some(Secret::new(passphrase));
        self
    }

    /// `repo1`, `repo2`, ... for messages.
    pub fn name(&self) -> String {
        format!("repo{}", self.index)
    }
}

/// Compression settings for stored files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressOptions {
    /// Codec.
    pub compress_type: CompressType,
    /// Level.
    pub level: i32,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            compress_type: CompressType::Zst,
            level: CompressType::Zst.default_level(),
        }
    }
}

/// Options of the `backup` command.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupOptions {
    /// full, diff or incr.
    pub backup_type: BackupType,
    /// Compression.
    pub compress: CompressOptions,
    /// Parallel workers.
    pub process_max: usize,
    /// Ask PostgreSQL for an immediate checkpoint.
    pub start_fast: bool,
    /// Wait until the WAL the backup needs is in the archive.
    pub archive_check: bool,
    /// Also store that WAL inside the backup.
    pub archive_copy: bool,
    /// How long to wait for the WAL.
    pub archive_timeout: Duration,
    /// Directory of the stanza lock files (`lock-path`); `backup` takes the lock itself.
    pub lock_path: PathBuf,
    /// Compare files with the prior backup by checksum instead of size and modification time.
    pub delta: bool,
    /// Pack small files into bundle objects (`None`: one object per file). On by default: one
    /// object per small file is what makes clusters of many relations slow to back up.
    pub bundle: Option<BundleOptions>,
    /// `backup-standby`: copy files from this standby (the `pg2-*` options) once it has replayed
    /// past the backup's start; the primary (`pg1-*`) still starts and stops the backup.
    pub standby: Option<PgOptions>,
}

/// Bundling of small files (`repo1-bundle*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleOptions {
    /// Target size of a bundle object.
    pub size: u64,
    /// Files smaller than this are bundled.
    pub limit: u64,
}

impl Default for BundleOptions {
    /// 20 MiB bundles of files under 2 MiB, as `repo1-bundle-size`/`-limit` default.
    fn default() -> Self {
        BundleOptions {
            size: 20 << 20,
            limit: 2 << 20,
        }
    }
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            backup_type: BackupType::Full,
            compress: CompressOptions::default(),
            process_max: 1,
            start_fast: false,
            archive_check: true,
            archive_copy: false,
            archive_timeout: Duration::from_secs(60),
            lock_path: PathBuf::from(crate::lock::DEFAULT_LOCK_PATH),
            delta: false,
            bundle: Some(BundleOptions::default()),
            standby: None,
        }
    }
}

/// Options of the `restore` command.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RestoreOptions {
    /// Where to restore the data directory.
    pub pg_path: PathBuf,
    /// The backup to restore; `None` picks the latest.
    pub set: Option<String>,
    /// Rewrite only files that differ from the backup (size and checksum).
    pub delta: bool,
    /// Restore over a non-empty directory, rewriting every file.
    pub force: bool,
    /// Tablespace destinations by OID or name.
    pub tablespace_map: BTreeMap<String, PathBuf>,
    /// Parallel workers.
    pub process_max: usize,
    /// Command line that `restore_command` runs, with `%f` and `%p` left for PostgreSQL.
    pub restore_command: Option<String>,
    /// Recovery target and how to reach it.
    pub recovery: crate::recovery::RecoveryOptions,
}

/// What `repo-retention-full` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RetentionFullType {
    /// Keep that many full backups.
    #[default]
    Count,
    /// Keep full backups for that many days (and the newest one older than that, so the whole
    /// window stays recoverable).
    Time,
}

/// Options of `expire` (also run after every successful backup).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpireOptions {
    /// `repo-retention-full`: full backups (or days) to keep; `None` keeps every full backup.
    pub retention_full: Option<u32>,
    /// `repo-retention-full-type`.
    pub retention_full_type: RetentionFullType,
    /// `repo-retention-diff`: differential backups to keep; `None` keeps them with their full.
    pub retention_diff: Option<u32>,
    /// `repo-retention-archive`: backups of `retention_archive_type` whose WAL stays for
    /// point-in-time recovery; `None` follows `retention_full` (type full) or `retention_diff`.
    pub retention_archive: Option<u32>,
    /// `repo-retention-archive-type`: full, diff or incr.
    pub retention_archive_type: BackupType,
    /// `--set`: expire this backup (and what depends on it) instead of applying retention.
    pub set: Option<String>,
    /// `--force`: allow `--set` to expire the newest full backup.
    pub force: bool,
    /// `--dry-run`: report, remove nothing.
    pub dry_run: bool,
    /// Directory of the stanza lock files.
    pub lock_path: PathBuf,
}

impl Default for ExpireOptions {
    fn default() -> Self {
        ExpireOptions {
            retention_full: None,
            retention_full_type: RetentionFullType::Count,
            retention_diff: None,
            retention_archive: None,
            retention_archive_type: BackupType::Full,
            set: None,
            force: false,
            dry_run: false,
            lock_path: PathBuf::from(crate::lock::DEFAULT_LOCK_PATH),
        }
    }
}

/// Options of `verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Parallel workers.
    pub process_max: usize,
    /// The retention options: WAL continuity is checked from the oldest backup whose WAL expire
    /// keeps for point-in-time recovery (older backups only need their own start..stop WAL).
    pub retention: ExpireOptions,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            process_max: 1,
            retention: ExpireOptions::default(),
        }
    }
}

/// Options of `archive-push`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ArchivePushOptions {
    /// Compression.
    pub compress: CompressOptions,
    /// The data directory relative WAL paths are resolved against (PostgreSQL passes `pg_wal/...`).
    pub pg_path: Option<PathBuf>,
    /// Threads one segment's compression may use (`process-max`; 0 or 1: the calling thread).
    pub process_max: usize,
}

impl ArchivePushOptions {
    /// The WAL file `wal` names. PostgreSQL runs `archive_command` in its data directory and
    /// passes `%p` relative to it (`pg_wal/...`), so a relative path is resolved against
    /// `pg_path`, which must be set and be the current directory (as pgBackRest requires):
    /// otherwise pgbr would archive another cluster's file, or fail to find one, under a
    /// misleading message.
    pub fn wal_path(&self, wal: &Path) -> Result<PathBuf, Error> {
        if wal.is_absolute() {
            return Ok(wal.to_path_buf());
        }
        let Some(pg) = &self.pg_path else {
            return Err(Error::config(format!(
                "archive-push was given the relative WAL path {} but option 'pg1-path' is not set: set pg1-path to the data directory of the cluster that archives (PostgreSQL runs archive_command there; is %f passed instead of %p?)",
                wal.display()
            )));
        };
        let cwd = std::env::current_dir()
            .and_then(std::fs::canonicalize)
            .map_err(|e| Error::io("unable to read the current directory", ".", e))?;
        if std::fs::canonicalize(pg).ok().as_deref() != Some(cwd.as_path()) {
            return Err(Error::config(format!(
                "archive-push was given the relative WAL path {} in directory {}, but pg1-path is {}: PostgreSQL runs archive_command in its data directory, so pg1-path must be {} (fix pg1-path in this stanza's configuration, or make this cluster archive to its own stanza)",
                wal.display(),
                cwd.display(),
                pg.display(),
                cwd.display()
            )));
        }
        Ok(pg.join(wal))
    }
}

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
        let log_level = options
            .get("log-level-console")
            .unwrap_or_else(|| "warn".into());
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

    /// `pg1-*`, with `pg1-path` required.
    pub fn pg(&self) -> Result<PgOptions, Error> {
        self.pg_host(1)
    }

    /// `pg<index>-*`, with `pg<index>-path` required.
    pub fn pg_host(&self, index: u32) -> Result<PgOptions, Error> {
        let o = &self.options;
        let name = |s: &str| format!("pg{index}-{s}");
        Ok(PgOptions {
            index,
            path: PathBuf::from(o.require(&name("path"), self.command)?),
            port: o.parsed(&name("port")).unwrap_or(5432),
            socket_path: PathBuf::from(
                o.get(&name("socket-path"))
                    .unwrap_or_else(|| "/var/run/postgresql".into()),
            ),
            user: o.get(&name("user")).unwrap_or_else(|| "postgres".into()),
            database: o
                .get(&name("database"))
                .unwrap_or_else(|| "postgres".into()),
        })
    }

    /// `repo<index>-*`.
    pub fn repo(&self, index: u32) -> Result<RepoOptions, Error> {
        let o = &self.options;
        let name = |s: &str| format!("repo{index}-{s}");
        let cipher_type: CipherType = o
            .get(&name("cipher-type"))
            .unwrap_or_else(|| "none".into())
            .parse()
            .map_err(|_| {
                Error::config(format!(
                    "invalid value for option '{}'",
                    name("cipher-type")
                ))
            })?;
        let cipher_pass = o.get(&name("cipher-pass")).map(Secret::new);
        if cipher_type != CipherType::None && cipher_pass.is_none() {
            return Err(Error::config(format!(
                "option '{}' is required when '{}' is {cipher_type}: set it in the configuration file or as PGBR_REPO{index}_CIPHER_PASS",
                name("cipher-pass"),
                name("cipher-type")
            )));
        }
        let path = o
            .get(&name("path"))
            .unwrap_or_else(|| "/var/lib/pgbr".into());
        let (repo_type, cloud) = self.cloud_options(index, &path)?;
        Ok(RepoOptions {
            index,
            repo_type,
            path,
            cipher_type,
            cipher_pass,
            cloud,
        })
    }

    /// The storage settings of `repo<index>` (`repo<index>-type` and its type's options).
    fn cloud_options(
        &self,
        index: u32,
        path: &str,
    ) -> Result<(RepoType, Option<CloudOptions>), Error> {
        let o = &self.options;
        let name = |s: &str| format!("repo{index}-{s}");
        let kind = o.get(&name("type")).unwrap_or_else(|| "posix".into());
        let required = |opt: &str| -> Result<String, Error> {
            let full = name(opt);
            o.get(&full).ok_or_else(|| {
                Error::config(format!(
                    "option '{full}' is required when '{}' is {kind}: set it in the configuration file, as PGBR_{}, or as --{full}",
                    name("type"),
                    full.to_ascii_uppercase().replace('-', "_")
                ))
            })
        };
        let needs = |opt: &str, with: &str| {
            Error::config(format!(
                "option '{}' is required with '{}'",
                name(opt),
                name(with)
            ))
        };
        let verify_tls = o.get(&name("storage-verify-tls")).as_deref() != Some("n");
        let ca_file = o.get(&name("storage-ca-file")).map(PathBuf::from);
        let prefix = path.to_string();
        Ok(match kind.as_str() {
            "s3" => {
                let bucket = required("s3-bucket")?;
                let key = o.get(&name("s3-key"));
                let key_secret = o.get(&name("s3-key-secret"));
                let token = o.get(&name("s3-token"));
                match (&key, &key_secret) {
                    (Some(_), None) => return Err(needs("s3-key-secret", "s3-key")),
                    (None, Some(_)) => return Err(needs("s3-key", "s3-key-secret")),
                    (None, None) if token.is_some() => return Err(needs("s3-key", "s3-token")),
                    _ => {}
                }
                let uri_style = match o.get(&name("s3-uri-style")).as_deref() {
                    Some("path") => UriStyle::Path,
                    _ => UriStyle::Host,
                };
                (
                    RepoType::S3,
                    Some(CloudOptions::S3(S3Options {
                        bucket,
                        endpoint: o.get(&name("s3-endpoint")),
                        region: o.get(&name("s3-region")).unwrap_or_default(),
                        key,
                        key_secret,
                        token,
                        uri_style,
                        verify_tls,
                        ca_file,
                        prefix,
                    })),
                )
            }
            "azure" => {
                let account = required("azure-account")?;
                let container = required("azure-container")?;
                let key_type = match o.get(&name("azure-key-type")).as_deref() {
                    Some("sas") => AzureKeyType::Sas,
                    _ => AzureKeyType::Shared,
                };
                let key = o.get(&name("azure-key"));
                if key.is_none() && key_type == AzureKeyType::Sas {
                    return Err(needs("azure-key", "azure-key-type"));
                }
                (
                    RepoType::Azure,
                    Some(CloudOptions::Azure(AzureOptions {
                        account,
                        container,
                        key,
                        key_type,
                        endpoint: o.get(&name("azure-endpoint")),
                        verify_tls,
                        ca_file,
                        prefix,
                    })),
                )
            }
            "gcs" => {
                let bucket = required("gcs-bucket")?;
                let key_type = match o.get(&name("gcs-key-type")).as_deref() {
                    Some("token") => GcsKeyType::Token,
                    Some("auto") => GcsKeyType::Auto,
                    _ => GcsKeyType::Service,
                };
                let key = o.get(&name("gcs-key"));
                match (key_type, &key) {
                    (GcsKeyType::Auto, Some(_)) => {
                        return Err(Error::config(format!(
                            "option '{}' must not be set when '{}' is auto",
                            name("gcs-key"),
                            name("gcs-key-type")
                        )))
                    }
                    (GcsKeyType::Service | GcsKeyType::Token, None) => {
                        return Err(Error::config(format!(
                            "option '{}' is required unless '{}' is auto",
                            name("gcs-key"),
                            name("gcs-key-type")
                        )))
                    }
                    _ => {}
                }
                (
                    RepoType::Gcs,
                    Some(CloudOptions::Gcs(GcsOptions {
                        bucket,
                        key: key.map(PathBuf::from),
                        key_type,
                        endpoint: o.get(&name("gcs-endpoint")),
                        verify_tls,
                        ca_file,
                        prefix,
                    })),
                )
            }
            _ => (RepoType::Posix, None),
        })
    }

    /// The repositories configured: `repo1` always, `repo<N>` when `repo<N>-path` or
    /// `repo<N>-type` is set.
    pub fn repo_indexes(&self) -> Vec<u32> {
        (1..=options::MAX_REPO)
            .filter(|&i| {
                i == 1
                    || self.options.is_set(&format!("repo{i}-path"))
                    || self.options.is_set(&format!("repo{i}-type"))
            })
            .collect()
    }

    /// The repository `--repo` chose, if it was given (an error if that repository is not
    /// configured).
    pub fn selected_repo(&self) -> Result<Option<u32>, Error> {
        let Some(n) = self.options.parsed::<u32>("repo") else {
            return Ok(None);
        };
        if !self.repo_indexes().contains(&n) {
            return Err(Error::config(format!(
                "option 'repo' is {n} but repository repo{n} is not configured: set 'repo{n}-path' or 'repo{n}-type'"
            )));
        }
        Ok(Some(n))
    }

    /// The one repository a command works on: `--repo`, else `repo1`.
    pub fn default_repo(&self) -> Result<RepoOptions, Error> {
        self.repo(self.selected_repo()?.unwrap_or(1))
    }

    /// The repositories a command works on, in order: only `--repo` when given, else every
    /// configured repository.
    pub fn repos(&self) -> Result<Vec<RepoOptions>, Error> {
        match self.selected_repo()? {
            Some(n) => Ok(vec![self.repo(n)?]),
            None => self
                .repo_indexes()
                .into_iter()
                .map(|i| self.repo(i))
                .collect(),
        }
    }

    /// `compress-type` and `compress-level`.
    pub fn compress(&self) -> Result<CompressOptions, Error> {
        let o = &self.options;
        let compress_type: CompressType = o
            .get("compress-type")
            .unwrap_or_else(|| "zst".into())
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

    fn process_max(&self) -> usize {
        self.options.parsed("process-max").unwrap_or(1)
    }

    /// The `backup` command's options.
    pub fn backup(&self) -> Result<BackupOptions, Error> {
        let o = &self.options;
        let backup_type = match o.get("type") {
            // pgBackRest's default: incremental, which becomes full when there is no prior.
            None => BackupType::Incr,
            Some(t) => t.parse().map_err(|_| {
                Error::config(format!(
                    "invalid value '{t}' for option 'type': backup takes full, diff or incr"
                ))
            })?,
        };
        let secs: f64 = o.parsed("archive-timeout").unwrap_or(60.0);
        Ok(BackupOptions {
            backup_type,
            compress: self.compress()?,
            process_max: self.process_max(),
            start_fast: o.get_bool("start-fast"),
            archive_check: o.get_bool("archive-check"),
            archive_copy: o.get_bool("archive-copy"),
            archive_timeout: Duration::from_secs_f64(secs),
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
            bundle: o.get_bool("repo1-bundle").then(|| BundleOptions {
                size: o
                    .get("repo1-bundle-size")
                    .and_then(|v| parse_size(&v))
                    .unwrap_or(BundleOptions::default().size),
                limit: o
                    .get("repo1-bundle-limit")
                    .and_then(|v| parse_size(&v))
                    .unwrap_or(BundleOptions::default().limit),
            }),
        })
    }

    /// The `restore` command's options; `restore_command` is left for the caller to fill in.
    pub fn restore(&self) -> Result<RestoreOptions, Error> {
        let o = &self.options;
        let kind = o.get("type").unwrap_or_else(|| "default".into());
        let recovery = crate::recovery::RecoveryOptions {
            target: crate::recovery::RecoveryTarget::parse(&kind, o.get("target").as_deref())?,
            action: match o.get("target-action").as_deref() {
                None => None,
                Some("pause") => Some(crate::recovery::TargetAction::Pause),
                Some("promote") => Some(crate::recovery::TargetAction::Promote),
                Some(_) => Some(crate::recovery::TargetAction::Shutdown),
            },
            exclusive: o.get_bool("target-exclusive"),
            timeline: o.get("target-timeline"),
        };
        recovery.validate()?;
        let mut tablespace_map = BTreeMap::new();
        for entry in o.get_list("tablespace-map") {
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
        Ok(RestoreOptions {
            pg_path: PathBuf::from(o.require("pg1-path", self.command)?),
            set: o.get("set"),
            delta: o.get_bool("delta"),
            force: o.get_bool("force"),
            tablespace_map,
            process_max: self.process_max(),
            restore_command: None,
            recovery,
        })
    }

    /// `lock-path`.
    pub fn lock_path(&self) -> PathBuf {
        PathBuf::from(
            self.options
                .get("lock-path")
                .unwrap_or_else(|| crate::lock::DEFAULT_LOCK_PATH.into()),
        )
    }

    /// The `expire` options (for `expire`, and for the expire that follows a `backup`).
    pub fn expire(&self) -> Result<ExpireOptions, Error> {
        let o = &self.options;
        // The retention of the repository the command works on (`--repo`, else repo1).
        let n = self.selected_repo()?.unwrap_or(1);
        let r = |s: &str| format!("repo{n}-{s}");
        let retention_full_type = match o.get(&r("retention-full-type")).as_deref() {
            Some("time") => RetentionFullType::Time,
            _ => RetentionFullType::Count,
        };
        let retention_archive_type = match o.get(&r("retention-archive-type")).as_deref() {
            Some("diff") => BackupType::Diff,
            Some("incr") => BackupType::Incr,
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
    pub fn archive_async(&self) -> Option<crate::archive_async::AsyncOptions> {
        let o = &self.options;
        if !o.get_bool("archive-async") {
            return None;
        }
        Some(crate::archive_async::AsyncOptions {
            spool_path: PathBuf::from(
                o.get("spool-path")
                    .unwrap_or_else(|| "/var/spool/pgbr".into()),
            ),
            process_max: self.process_max(),
            push_queue_max: o.get("archive-push-queue-max").and_then(|v| parse_size(&v)),
            get_queue_max: o
                .get("archive-get-queue-max")
                .and_then(|v| parse_size(&v))
                .unwrap_or(128 << 20),
        })
    }

    /// How long to wait for WAL to reach the archive (`archive-timeout`).
    pub fn archive_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.options.parsed("archive-timeout").unwrap_or(60.0))
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

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_take_binary_and_short_units_alike() {
        for (text, want) in [
            ("4096", Some(4096)),
            ("12b", Some(12)),
            ("256k", Some(256 << 10)),
            ("256KB", Some(256 << 10)),
            ("256KiB", Some(256 << 10)),
            ("20MiB", Some(20 << 20)),
            (" 2 mb ", Some(2 << 20)),
            ("1GiB", Some(1 << 30)),
            ("1ti", Some(1 << 40)),
            ("1i", None),
            ("1ib", None),
            ("MiB", None),
            ("1.5MiB", None),
            ("-1k", None),
            ("99999999999999T", None),
        ] {
            assert_eq!(super::parse_size(text), want, "{text:?}");
        }
    }

    use super::*;
    use crate::test_support::{flags, write_conf};

    #[test]
    fn precedence_file_then_env_then_flags() {
        let (_d, path) = write_conf(
            "[global]\nrepo1-path=/g\nprocess-max=2\ncompress-type=gz\n[global:backup]\nprocess-max=3\n[main]\nrepo1-path=/s\n[main:backup]\nstart-fast=y\n",
        );
        let p = path.display().to_string();
        let c = Config::load(
            Command::Backup,
            &flags(&[("config", &p), ("stanza", "main"), ("compress-type", "lz4")]),
            vec![("PGBR_PROCESS_MAX".into(), "4".into())],
        )
        .expect("load");
        assert_eq!(c.options.get("repo1-path").as_deref(), Some("/s"));
        assert_eq!(c.options.get("process-max").as_deref(), Some("4"));
        assert_eq!(c.options.get("compress-type").as_deref(), Some("lz4"));
        assert!(c.options.get_bool("start-fast"));
        // another command does not see [main:backup]
        let r = Config::load(
            Command::Restore,
            &flags(&[("config", &p), ("stanza", "main")]),
            vec![],
        )
        .expect("load");
        assert!(!r.options.is_set("start-fast"));
        assert_eq!(r.options.get("process-max").as_deref(), Some("2"));
    }

    #[test]
    fn unknown_and_bad_options_name_themselves() {
        let (_d, path) = write_conf("[global]\nrepo1-pth=/x\n");
        let p = path.display().to_string();
        let e = Config::load(
            Command::Backup,
            &flags(&[("config", &p), ("stanza", "main")]),
            vec![],
        )
        .expect_err("unknown");
        assert!(e.to_string().contains("repo1-pth"), "{e}");
        let e = Config::load(
            Command::Backup,
            &flags(&[("stanza", "main"), ("process-max", "0")]),
            vec![],
        )
        .expect_err("bad");
        assert!(e.to_string().contains("process-max"), "{e}");
        let e = Config::load(
            Command::Backup,
            &flags(&[("stanza", "main"), ("tablespace-map", "1=/x")]),
            vec![],
        )
        .expect_err("wrong command");
        assert!(e.to_string().contains("tablespace-map"), "{e}");
        let e = Config::load(Command::Backup, &flags(&[]), vec![]).expect_err("no stanza");
        assert!(e.to_string().contains("stanza"), "{e}");
        let e = Config::load(
            Command::Backup,
            &flags(&[("stanza", "main"), ("config", "/nonexistent/pgbr.conf")]),
            vec![],
        )
        .expect_err("missing config");
        assert!(e.to_string().contains("/nonexistent/pgbr.conf"), "{e}");
    }

    #[test]
    fn missing_pg_path_and_cipher_pass_are_named() {
        let c = Config::load(
            Command::Backup,
            &flags(&[("stanza", "main"), ("repo1-cipher-type", "aes-256-gcm")]),
            vec![],
        )
        .expect("load");
        let e = c.pg().expect_err("pg1-path");
        assert!(e.to_string().contains("pg1-path"), "{e}");
        let e = c.repo(1).expect_err("pass");
        assert!(e.to_string().contains("repo1-cipher-pass"), "{e}");
        let c = Config::load(
            Command::Backup,
            &flags(&[("stanza", "main"), ("repo1-cipher-type", "aes-256-gcm")]),
            vec![("PGBR_REPO1_CIPHER_PASS".into(), "s3cret".into())],
        )
        .expect("load");
        let r = c.repo(1).expect("repo");
        assert!(!format!("{r:?}").contains("s3cret"));
    }

    #[test]
    fn tablespace_map_is_repeatable() {
        let c = Config::load(
            Command::Restore,
            &flags(&[
                ("stanza", "main"),
                ("pg1-path", "/restore"),
                ("tablespace-map", "16385=/ts1"),
                ("tablespace-map", "big=/ts2"),
            ]),
            vec![],
        )
        .expect("load");
        let r = c.restore().expect("restore");
        assert_eq!(r.tablespace_map.len(), 2);
        assert_eq!(r.tablespace_map["big"], PathBuf::from("/ts2"));
    }
    #[test]
    fn object_store_repositories_and_repository_selection() {
        let (_d, path) = write_conf(
            "[global]\nrepo1-path=/local\nrepo3-type=s3\nrepo3-s3-bucket=b\nrepo3-s3-key=AKID\nrepo3-s3-key-secret=topsecret\nrepo3-s3-uri-style=path\nrepo3-path=/pgbr\n",
        );
        let p = path.display().to_string();
        let c = Config::load(
            Command::Backup,
            &flags(&[("config", &p), ("stanza", "main")]),
            vec![],
        )
        .expect("load");
        assert_eq!(c.repo_indexes(), vec![1, 3]);
        assert_eq!(c.default_repo().expect("repo1").index, 1);
        let r3 = c.repo(3).expect("repo3");
        assert_eq!(r3.repo_type, RepoType::S3);
        match &r3.cloud {
            Some(CloudOptions::S3(o)) => {
                assert_eq!(o.bucket, "b");
                assert_eq!(o.prefix, "/pgbr");
                assert_eq!(o.uri_style, UriStyle::Path);
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{r3:?}").contains("topsecret"));
        let c = Config::load(
            Command::Backup,
            &flags(&[("config", &p), ("stanza", "main"), ("repo", "2")]),
            vec![],
        )
        .expect("load");
        let e = c.default_repo().expect_err("repo2 is not configured");
        assert!(e.to_string().contains("repo2"), "{e}");
        let c = Config::load(
            Command::Backup,
            &flags(&[("stanza", "main"), ("repo1-type", "azure")]),
            vec![],
        )
        .expect("load");
        let e = c.repo(1).expect_err("account");
        assert!(e.to_string().contains("repo1-azure-account"), "{e}");
    }
}
