//! The raw option values of one invocation: the configuration file, `PGBR_*` variables and flags
//! merged in pgBackRest's order, each checked against the [option registry](crate::options).
//! A value not given anywhere reads as its registry default, so the registry is the one place a
//! default is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// Adds `warning`, unless it is `None` or already there (an option set in several places
    /// warns once).
    fn warn_once(&mut self, warning: Option<String>) {
        if let Some(w) = warning {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
    }

    /// For `name`, an option pgbr does not have: when pgBackRest has it, warns (once) or fails
    /// with `error(message)` as [`options::foreign_verdict`] says, and answers true; false when
    /// pgBackRest has no such option either.
    fn take_foreign(
        &mut self,
        name: &str,
        value: &str,
        error: impl FnOnce(String) -> Error,
    ) -> Result<bool, Error> {
        match options::foreign_verdict(name, value) {
            Some(verdict) => {
                self.warn_once(verdict.map_err(error)?);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Merges the configuration file, `env` (pass [`crate::config::env_vars`]) and `flags` (name without
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
        let env: Vec<(String, String)> = env.into_iter().collect();
        for (var, value) in &env {
            // pgBackRest's variables are aliases of pgbr's, which win when both are set.
            let (rest, alias) = match (var.strip_prefix("PGBR_"), var.strip_prefix("PGBACKREST_")) {
                (Some(rest), _) => (rest, false),
                (None, Some(rest)) => (rest, true),
                (None, None) => continue,
            };
            if alias && env.iter().any(|(v, _)| *v == format!("PGBR_{rest}")) {
                opts.warnings
                    .push(format!("{var} is ignored: PGBR_{rest} is set too"));
                continue;
            }
            let name = rest.to_ascii_lowercase().replace('_', "-");
            let Some(n) = OptionName::parse(&name) else {
                let from_var = |m| Error::config(format!("{m} (from environment variable {var})"));
                if !opts.take_foreign(&name, value, from_var)? {
                    opts.warnings.push(format!(
                        "environment variable {var} is not a pgbr option; ignored"
                    ));
                }
                continue;
            };
            check_value(n.def, &name, value)
                .map_err(|m| Error::config(format!("{m} (from environment variable {var})")))?;
            if applies(n.def, command) {
                env_values.push((name, value.clone(), var.clone()));
            }
        }
        let mut flag_values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in flags {
            let Some(n) = OptionName::parse(name) else {
                if !opts.take_foreign(name, value, Error::config)? {
                    return Err(Error::config(format!("unknown option '--{name}'")));
                }
                continue;
            };
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
            None => (PathBuf::from(opts.value::<String>("config")?), false),
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
                if options::FOREIGN_COMMANDS.contains(&cmd) {
                    self.warn_once(Some(format!(
                        "section [{section}] is ignored: pgbr has no '{cmd}' command (pgBackRest has)"
                    )));
                    continue;
                }
                if Command::from_name(cmd).is_none() {
                    return Err(at(format!(
                        "section [{section}]: '{cmd}' is not a pgbr command"
                    )));
                }
            }
            let Some(n) = OptionName::parse(&key) else {
                if self.take_foreign(&key, &value, |m| at(format!("section [{section}]: {m}")))? {
                    continue;
                }
                return Err(at(match config_file::showable_name(&key) {
                    Some(k) => format!("section [{section}]: unknown option '{k}'"),
                    None => format!(
                        "section [{section}]: unknown option (its name is not shown: it is not an option name and may be part of a value)"
                    ),
                }));
            };
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

    /// The value of an option that may be unset (no default), parsed.
    pub(crate) fn parsed<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.get(name).and_then(|v| v.parse().ok())
    }

    /// The value of an option the registry gives a default, parsed. Values were checked against
    /// their kind when loaded, so an error here is a bug: a registry entry without its default,
    /// or a kind that admits what `T` does not.
    pub(crate) fn value<T: std::str::FromStr>(&self, name: &str) -> Result<T, Error> {
        self.value_with(name, |v| v.parse().ok())
    }

    /// [`Options::value`] with its own parser.
    pub(crate) fn value_with<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, Error> {
        let v = self.get(name).ok_or_else(|| {
            Error::Internal(format!("option '{name}' has neither a value nor a default"))
        })?;
        parse(&v).ok_or_else(|| {
            Error::Internal(format!("option '{name}': a checked value does not parse"))
        })
    }

    /// A size option (`archive-get-queue-max`, `repo1-bundle-size`) with a default, in bytes.
    pub(crate) fn size(&self, name: &str) -> Result<u64, Error> {
        self.value_with(name, parse_size)
    }
}
