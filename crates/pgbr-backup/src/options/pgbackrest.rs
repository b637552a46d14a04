//! pgBackRest's options that pgbr does not implement, and what pgbr does with each when a
//! configuration (a pgBackRest configuration file, `PGBACKREST_*` variables, flags) carries it:
//! ignore it with a warning where that is safe (its own log files, its remote-process model,
//! tuning knobs of its protocol), or refuse it where ignoring it would do something else than the
//! user asked (a remote host, a restore mapping, an encryption setting). A refused option set to
//! the value that is pgbr's behaviour anyway is accepted: it changes nothing.
//!
//! Every option pgBackRest 2.45 documents (`pgbackrest help <command>`) is either in pgbr's
//! registry or here; `tests/config_errors.rs` checks that against the installed pgBackRest.

/// What pgbr does with a pgBackRest option it does not implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Foreign {
    /// Accepted with one warning, which gives the reason it is safe.
    Ignored(&'static str),
    /// Refused ("not supported by pgbr (yet)"), unless its value is the one given, which is
    /// what pgbr does anyway.
    Refused(Option<&'static str>),
}

use Foreign::{Ignored, Refused};

const LOGS: Foreign = Ignored("pgbr logs to stderr only, at log-level-console");
const REMOTE: Foreign = Ignored("pgbr runs no remote processes");
const TIMEOUTS: Foreign = Ignored("pgbr uses its own network timeouts");
const SERVER: Foreign = Ignored("it configures pgBackRest's server command, which pgbr lacks");
const LISTING: Foreign = Ignored("it only shapes the output of a pgBackRest command");
const BLOCKS: Foreign = Ignored("pgbr always stores files of 1 MiB or more as 64 KiB blocks");

/// pgBackRest 2.45's options pgbr does not implement, by un-indexed name (`repo-host` stands
/// for `repo1-host` ... `repo256-host`, `pg-host` for `pg1-host` ...).
pub const FOREIGN_OPTIONS: &[(&str, Foreign)] = &[
    ("annotation", Refused(None)),
    (
        "archive-header-check",
        Ignored("pgbr always checks WAL headers"),
    ),
    (
        "archive-missing-retry",
        Ignored("pgbr's archive-get looks in the repositories on every call"),
    ),
    ("archive-mode", Refused(Some("preserve"))),
    (
        "archive-mode-check",
        Ignored("backup checks archive_mode unless --no-archive-check"),
    ),
    ("buffer-size", Ignored("pgbr sizes its own buffers")),
    (
        "checksum-page",
        Ignored("pgbr checks page checksums whenever the cluster has them"),
    ),
    ("cmd", REMOTE),
    ("cmd-ssh", REMOTE),
    (
        "compress",
        Ignored("deprecated by pgBackRest; compress-type decides"),
    ),
    ("compress-level-network", REMOTE),
    ("config-include-path", Refused(None)),
    ("config-path", Refused(None)),
    ("db-exclude", Refused(None)),
    ("db-include", Refused(None)),
    ("db-timeout", TIMEOUTS),
    ("exclude", Refused(None)),
    ("filter", LISTING),
    ("ignore-missing", LISTING),
    ("io-timeout", TIMEOUTS),
    ("link-all", Refused(Some("n"))),
    ("link-map", Refused(None)),
    ("log-level-file", LOGS),
    ("log-level-stderr", LOGS),
    ("log-path", LOGS),
    ("log-subprocess", LOGS),
    ("log-timestamp", LOGS),
    (
        "manifest-save-threshold",
        Ignored("pgbr records a backup's progress every few seconds"),
    ),
    (
        "neutral-umask",
        Ignored("pgbr sets the mode of everything it writes"),
    ),
    ("online", Refused(Some("y"))),
    ("pg-host", Refused(None)),
    ("pg-host-ca-file", Refused(None)),
    ("pg-host-ca-path", Refused(None)),
    ("pg-host-cert-file", Refused(None)),
    ("pg-host-cmd", Refused(None)),
    ("pg-host-config", Refused(None)),
    ("pg-host-config-include-path", Refused(None)),
    ("pg-host-config-path", Refused(None)),
    ("pg-host-key-file", Refused(None)),
    ("pg-host-port", Refused(None)),
    ("pg-host-type", Refused(None)),
    ("pg-host-user", Refused(None)),
    ("protocol-timeout", TIMEOUTS),
    ("raw", LISTING),
    ("recovery-option", Refused(None)),
    ("recurse", LISTING),
    ("repo-block", BLOCKS),
    ("repo-block-age-map", BLOCKS),
    ("repo-block-checksum-size-map", BLOCKS),
    ("repo-block-size-map", BLOCKS),
    ("repo-block-size-super", BLOCKS),
    ("repo-block-size-super-full", BLOCKS),
    (
        "repo-hardlink",
        Ignored("pgbr references unchanged files instead of linking them"),
    ),
    ("repo-host", Refused(None)),
    ("repo-host-ca-file", Refused(None)),
    ("repo-host-ca-path", Refused(None)),
    ("repo-host-cert-file", Refused(None)),
    ("repo-host-cmd", Refused(None)),
    ("repo-host-config", Refused(None)),
    ("repo-host-config-include-path", Refused(None)),
    ("repo-host-config-path", Refused(None)),
    ("repo-host-key-file", Refused(None)),
    ("repo-host-port", Refused(None)),
    ("repo-host-type", Refused(None)),
    ("repo-host-user", Refused(None)),
    (
        "repo-retention-history",
        Ignored("pgbr keeps no history of expired backups' manifests"),
    ),
    ("repo-s3-key-type", Refused(Some("shared"))),
    ("repo-s3-kms-key-id", Refused(None)),
    ("repo-s3-role", Refused(None)),
    ("repo-storage-ca-path", Refused(None)),
    ("repo-storage-host", Refused(None)),
    ("repo-storage-port", Refused(None)),
    (
        "repo-storage-upload-chunk-size",
        Ignored("pgbr's object store client picks its part size"),
    ),
    (
        "resume",
        Ignored("pgbr always resumes an interrupted backup, reusing only files that verify"),
    ),
    ("sck-keep-alive", TIMEOUTS),
    ("sort", LISTING),
    (
        "stop-auto",
        Ignored("it applies to PostgreSQL before 9.6 only"),
    ),
    ("tablespace-map-all", Refused(None)),
    ("tcp-keep-alive-count", TIMEOUTS),
    ("tcp-keep-alive-idle", TIMEOUTS),
    ("tcp-keep-alive-interval", TIMEOUTS),
    ("tls-server-address", SERVER),
    ("tls-server-auth", SERVER),
    ("tls-server-ca-file", SERVER),
    ("tls-server-cert-file", SERVER),
    ("tls-server-key-file", SERVER),
    ("tls-server-port", SERVER),
    ("verbose", LISTING),
];

/// pgBackRest 2.45's commands pgbr does not have: a configuration section for one of them
/// (`[global:server]`) is ignored with a warning, as pgbr never runs it.
pub const FOREIGN_COMMANDS: &[&str] = &[
    "annotate",
    "help",
    "repo-get",
    "repo-ls",
    "server",
    "server-ping",
];

/// The options of [`FOREIGN_OPTIONS`] that are booleans: on a command line, `--<name>` alone
/// means `y` and `--no-<name>` means `n`.
pub const FOREIGN_BOOLEANS: &[&str] = &[
    "archive-header-check",
    "archive-mode-check",
    "checksum-page",
    "compress",
    "ignore-missing",
    "link-all",
    "log-subprocess",
    "log-timestamp",
    "neutral-umask",
    "online",
    "raw",
    "recurse",
    "repo-block",
    "repo-hardlink",
    "resume",
    "sck-keep-alive",
    "stop-auto",
    "verbose",
];

/// The pgBackRest option `name` (as written: `repo2-host`, `log-path`) pgbr does not implement:
/// its un-indexed name and what pgbr does with it. `None` when it is no such option.
pub fn foreign(name: &str) -> Option<(&'static str, Foreign)> {
    let base = unindexed(name).unwrap_or_else(|| name.to_string());
    FOREIGN_OPTIONS
        .iter()
        .find(|(n, _)| *n == base)
        .map(|&(n, what)| (n, what))
}

/// The pgBackRest options pgbr does not implement that the command-line `words` name
/// (`--log-path=x`, `--no-online`; `repo2-host` as it is written), each with whether it is a
/// boolean ([`FOREIGN_BOOLEANS`]): what a command-line parser must accept so that the
/// configuration warns about or refuses each.
pub fn foreign_flags<'a>(words: impl Iterator<Item = &'a str>) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    for word in words.filter_map(|w| w.strip_prefix("--")) {
        let written = word.split('=').next().unwrap_or(word);
        let name = match written.strip_prefix("no-") {
            Some(rest) if foreign(written).is_none() => rest,
            _ => written,
        };
        let Some((base, _)) = foreign(name) else {
            continue;
        };
        if super::OptionName::parse(name).is_none() && !out.iter().any(|(n, _)| n == name) {
            out.push((name.to_string(), FOREIGN_BOOLEANS.contains(&base)));
        }
    }
    out
}

/// `repo2-host` -> `repo-host`, `pg3-host-user` -> `pg-host-user`; `None` for a name of no
/// family (or an index above [`super::MAX_REPO`] / [`super::MAX_PG`], pgBackRest's too).
fn unindexed(name: &str) -> Option<String> {
    let (kind, index, base) = super::split_index(name)?;
    (index <= kind.max_index()).then_some(base)
}

/// What to do with the pgBackRest option `name` pgbr does not implement, set to `value`: the
/// warning to log when it is ignored (`Ok(None)` when its value changes nothing), or the error
/// message when it is refused. `None` when `name` is no pgBackRest option either.
pub fn foreign_verdict(name: &str, value: &str) -> Option<Result<Option<String>, String>> {
    let (_, what) = foreign(name)?;
    Some(match what {
        Ignored(why) => Ok(Some(format!(
            "pgBackRest option '{name}' is ignored by pgbr: {why}"
        ))),
        Refused(Some(same)) if value == same => Ok(None),
        Refused(_) => Err(format!(
            "pgBackRest option '{name}' is not supported by pgbr (yet); remove it, or see the README's list of pgBackRest options pgbr does not implement"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_names_find_their_family() {
        assert_eq!(foreign("repo2-host").map(|f| f.0), Some("repo-host"));
        assert_eq!(
            foreign("repo256-host-user").map(|f| f.0),
            Some("repo-host-user")
        );
        assert_eq!(foreign("pg3-host").map(|f| f.0), Some("pg-host"));
        assert_eq!(foreign("log-path").map(|f| f.0), Some("log-path"));
        assert!(foreign("repo257-host").is_none());
        assert!(foreign("repo02-host").is_none());
        assert!(foreign("no-such-option").is_none());
    }

    #[test]
    fn flags_name_foreign_options_and_their_kind() {
        let words = [
            "backup",
            "--no-online",
            "--repo2-host=x",
            "--log-path",
            "/l",
            "--type=full",
        ];
        assert_eq!(
            foreign_flags(words.into_iter()),
            vec![
                ("online".to_string(), true),
                ("repo2-host".to_string(), false),
                ("log-path".to_string(), false)
            ]
        );
    }

    #[test]
    fn verdicts() {
        let warned = foreign_verdict("log-path", "/var/log/pgbackrest").expect("known");
        assert!(warned
            .expect("ignored")
            .expect("a warning")
            .contains("log-path"));
        assert_eq!(foreign_verdict("online", "y"), Some(Ok(None)));
        let refused = foreign_verdict("online", "n")
            .expect("known")
            .expect_err("refused");
        assert!(refused.contains("pgBackRest option 'online' is not supported by pgbr (yet)"));
        assert!(foreign_verdict("repo1-host", "backup-host")
            .expect("known")
            .is_err());
        assert_eq!(foreign_verdict("stanza", "main"), None);
    }

    #[test]
    fn no_option_is_both_pgbrs_and_foreign() {
        for (name, _) in FOREIGN_OPTIONS {
            let indexed = name
                .strip_prefix("repo-")
                .map(|r| format!("repo1-{r}"))
                .or_else(|| name.strip_prefix("pg-").map(|r| format!("pg1-{r}")))
                .unwrap_or_else(|| name.to_string());
            assert!(
                super::super::OptionName::parse(&indexed).is_none(),
                "{name}"
            );
        }
    }
}
