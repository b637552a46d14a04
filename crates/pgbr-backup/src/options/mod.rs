//! The option registry: every option pgbr knows, its kind, default and which commands take it.
//!
//! Names follow pgBackRest where the concept is the same, so a pgBackRest user's configuration reads
//! the same here. Indexed options (`repo1-path`, `pg2-port`) are registered once under their
//! un-indexed name (`repo-path`, `pg-port`) and resolved with [`OptionName::parse`].
//!
//! The registry is the one place an option's default is written: an unset option reads as its
//! default ([`crate::config::Options::get`]), and the typed option structs' `Default`s are mapped
//! from those values.

mod command;
mod pgbackrest;
mod registry;
#[cfg(test)]
mod tests;

pub use command::Command;
pub use pgbackrest::{
    foreign, foreign_flags, foreign_verdict, Foreign, FOREIGN_BOOLEANS, FOREIGN_COMMANDS,
    FOREIGN_OPTIONS,
};
pub use registry::OPTIONS;

/// What values an option takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptionKind {
    /// `y`/`n` in files and the environment; `--name` / `--no-name` on the command line.
    Bool,
    /// A whole number within the bounds.
    Int {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// A number of seconds, fractions allowed, within the bounds.
    Seconds {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// Free text.
    Text,
    /// An absolute path.
    Path,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// A size in bytes, with an optional KB/MB/GB/TB suffix (powers of 1024).
    Size,
    /// Free text, given any number of times.
    List,
}

/// Which family of indexed options an option belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexed {
    /// Not indexed.
    No,
    /// `repo<N>-...`, N in 1..=[`MAX_REPO`].
    Repo,
    /// `pg<N>-...`, N in 1..=[`MAX_PG`].
    Pg,
}

impl Indexed {
    /// The family's highest index ([`MAX_REPO`], [`MAX_PG`]); 0 for no family.
    pub fn max_index(self) -> u32 {
        match self {
            Indexed::No => 0,
            Indexed::Repo => MAX_REPO,
            Indexed::Pg => MAX_PG,
        }
    }
}

/// Highest repository index accepted (`repo1`..`repo256`, as in pgBackRest; the indexes in use
/// need not follow each other).
pub const MAX_REPO: u32 = 256;
/// Highest PostgreSQL host index accepted (`pg1`..`pg256`, as in pgBackRest).
pub const MAX_PG: u32 = 256;

/// Where an option may be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// In the configuration file, the environment and on the command line.
    Anywhere,
    /// Only in the environment and on the command line (e.g. `--config`, `--stanza`).
    CommandLine,
}

/// The definition of one option.
#[derive(Clone, Copy, Debug)]
pub struct OptionDef {
    /// Un-indexed name, e.g. `repo-path` for `repo1-path`.
    pub name: &'static str,
    /// Accepted values.
    pub kind: OptionKind,
    /// Value when none is given, if any.
    pub default: Option<&'static str>,
    /// Indexed family.
    pub indexed: Indexed,
    /// Where it may be given.
    pub scope: Scope,
    /// Never printed (passphrases, keys).
    pub secret: bool,
    /// Commands that take it; empty means every command.
    pub commands: &'static [Command],
    /// One line of help.
    pub help: &'static str,
}

/// An option name as written, split into its definition and index.
#[derive(Clone, Copy, Debug)]
pub struct OptionName {
    /// The option's definition.
    pub def: &'static OptionDef,
    /// The index for `repo<N>-`/`pg<N>-` options; 0 otherwise.
    pub index: u32,
}

impl OptionName {
    /// Looks `name` up (`repo2-path`, `compress-type`); `None` when pgbr has no such option.
    pub fn parse(name: &str) -> Option<OptionName> {
        if let Some((kind, index, base)) = split_index(name) {
            let max = if kind == Indexed::Repo {
                MAX_REPO
            } else {
                MAX_PG
            };
            if index > max {
                return None;
            }
            return OPTIONS
                .iter()
                .find(|d| d.indexed == kind && d.name == base)
                .map(|def| OptionName { def, index });
        }
        OPTIONS
            .iter()
            .find(|d| d.indexed == Indexed::No && d.name == name)
            .map(|def| OptionName { def, index: 0 })
    }

    /// The name as written (`repo1-path`).
    pub fn full_name(&self) -> String {
        full_name(self.def, self.index)
    }
}

/// An indexed name split: `repo3-path` -> (`Repo`, 3, `repo-path`), `pg2-port` -> (`Pg`, 2,
/// `pg-port`). `None` for a name of no family, or an index that is empty or starts with 0;
/// the family's highest index is the caller's to check.
pub fn split_index(name: &str) -> Option<(Indexed, u32, String)> {
    [("repo", Indexed::Repo), ("pg", Indexed::Pg)]
        .into_iter()
        .find_map(|(prefix, kind)| {
            let (digits, tail) = name.strip_prefix(prefix)?.split_once('-')?;
            if digits.is_empty() || digits.starts_with('0') {
                return None;
            }
            let index = digits.parse().ok()?;
            Some((kind, index, format!("{prefix}-{tail}")))
        })
}

/// The written name of `def` at `index` (`repo-path`, 2 -> `repo2-path`).
pub fn full_name(def: &OptionDef, index: u32) -> String {
    match def.indexed {
        Indexed::No => def.name.to_string(),
        Indexed::Repo => format!("repo{index}{}", &def.name["repo".len()..]),
        Indexed::Pg => format!("pg{index}{}", &def.name["pg".len()..]),
    }
}

/// Every option name a command line may carry, indexed ones expanded (`repo1-path` ..
/// `repo256-path`).
pub fn all_full_names() -> Vec<(String, &'static OptionDef)> {
    let (repos, pgs): (Vec<u32>, Vec<u32>) = ((1..=MAX_REPO).collect(), (1..=MAX_PG).collect());
    full_names_for(&repos, &pgs)
}

/// The option names of [`all_full_names`] of the repository indexes `repos` and the server
/// indexes `pgs` (those beyond [`MAX_REPO`] / [`MAX_PG`] left out; every option of no family): what a command line naming a few indexes
/// needs, without formatting every index of every family.
pub fn full_names_for(repos: &[u32], pgs: &[u32]) -> Vec<(String, &'static OptionDef)> {
    let mut out = Vec::new();
    for d in OPTIONS {
        let indexes = match d.indexed {
            Indexed::No => {
                out.push((d.name.to_string(), d));
                continue;
            }
            Indexed::Repo => repos,
            Indexed::Pg => pgs,
        };
        let max = d.indexed.max_index();
        let valid = indexes.iter().filter(|&&i| (1..=max).contains(&i));
        out.extend(valid.map(|&i| (full_name(d, i), d)));
    }
    out
}
