//! Command-line parsing: clap, built from the engine's option registry so every option the engine
//! knows is accepted (`--repo2-path`, `--no-start-fast`) and nothing else is.

use std::collections::BTreeSet;
use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches};
use pgbr_backup::options::{
    foreign_flags, full_names_for, Command, Indexed, OptionDef, OptionKind, OptionName,
};

/// A parsed command line.
pub struct Parsed {
    pub command: Command,
    /// `(option, value)` for every flag given; booleans as `y`/`n`.
    pub flags: Vec<(String, String)>,
    pub positional: Vec<String>,
}

/// What of the parser [`build`] builds. clap copies every global option into every subcommand it
/// builds, which costs milliseconds of start-up per call (paid by each `archive-push` and
/// `archive-get` PostgreSQL runs): only what a command line can use is built.
struct Scope<'a> {
    /// Just these subcommands; `None`: all of them.
    commands: Option<&'a [Command]>,
    /// The options built, with their definitions: those help shows (see [`shown`]), and those
    /// of the `repo<N>-`/`pg<N>-` families a word of the command line names.
    options: Vec<(String, &'static OptionDef)>,
    /// pgBackRest options pgbr does not implement that the command line names (the engine
    /// warns about or refuses each), and whether each is a boolean.
    foreign: Vec<(String, bool)>,
}

/// The family of an indexed option's name: `repo3-path` -> `("repo", 3)`.
fn family_of(name: &str) -> Option<(&'static str, u32)> {
    ["repo", "pg"].into_iter().find_map(|family| {
        let rest = name.strip_prefix(family)?;
        let (digits, _) = rest.split_once('-')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((family, digits.parse().ok()?))
    })
}

/// Whether help shows option `name` (of `def`): an option of no family, or of repo1 or pg1.
fn shown(name: &str, def: &OptionDef) -> bool {
    def.indexed == Indexed::No || name.starts_with("repo1-") || name.starts_with("pg1-")
}

fn build(scope: &Scope) -> clap::Command {
    let mut cmd = clap::Command::new("pgbr")
        .version(env!("CARGO_PKG_VERSION"))
        .about("PostgreSQL backup and restore")
        .after_help("Options may also be set in the configuration file ([global], [global:<command>], [<stanza>], [<stanza>:<command>]) or as PGBR_<OPTION> environment variables.")
        .subcommand_required(true)
        .arg_required_else_help(true);
    for (name, def) in &scope.options {
        let arg = Arg::new(name.clone())
            .long(name.clone())
            .global(true)
            .help(def.help)
            .hide(!shown(name, def));
        // A passphrase may start with '-': taken as the value, not as another option (which
        // clap's error would then show).
        let arg = arg.allow_hyphen_values(def.secret);
        let arg = match def.kind {
            OptionKind::Bool => arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("y")
                .value_parser(["y", "n"]),
            OptionKind::List => arg.action(ArgAction::Append).value_name("VALUE"),
            _ => arg.num_args(1).value_name("VALUE"),
        };
        cmd = cmd.arg(arg);
        if def.kind == OptionKind::Bool {
            let no = format!("no-{name}");
            cmd = cmd.arg(
                Arg::new(no.clone())
                    .long(no)
                    .global(true)
                    .action(ArgAction::SetTrue)
                    .hide(true)
                    .conflicts_with(name),
            );
        }
    }
    for (name, boolean) in &scope.foreign {
        let arg = Arg::new(name.clone())
            .long(name.clone())
            .global(true)
            .hide(true);
        cmd = cmd.arg(if *boolean {
            arg.num_args(0..=1)
                .require_equals(true)
                .default_missing_value("y")
        } else {
            arg.num_args(1).allow_hyphen_values(true)
        });
        if *boolean {
            let no = format!("no-{name}");
            cmd = cmd.arg(
                Arg::new(no.clone())
                    .long(no)
                    .global(true)
                    .hide(true)
                    .action(ArgAction::SetTrue),
            );
        }
    }
    for c in Command::ALL {
        if scope.commands.is_some_and(|only| !only.contains(&c)) {
            continue;
        }
        let mut sub = clap::Command::new(c.name())
            .about(c.summary())
            .hide(c.is_internal());
        match c {
            Command::ArchiveGetAsync => {
                sub = sub
                    .arg(Arg::new("wal-name").required(true))
                    .arg(Arg::new("segment-size").required(true));
            }
            Command::ArchivePushAsync => {
                sub = sub.arg(Arg::new("wal-dir").required(true));
            }
            Command::ArchivePush => {
                sub = sub.arg(
                    Arg::new("wal-path")
                        .required(true)
                        .help("WAL file to archive (%p)"),
                );
            }
            Command::ArchiveGet => {
                sub = sub
                    .arg(
                        Arg::new("wal-name")
                            .required(true)
                            .help("WAL file name (%f)"),
                    )
                    .arg(
                        Arg::new("destination")
                            .required(true)
                            .help("where to write it (%p)"),
                    );
            }
            _ => {}
        }
        cmd = cmd.subcommand(sub);
    }
    cmd
}

/// Parses `args` (including the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, clap::Error> {
    let args: Vec<OsString> = args.into_iter().collect();
    // Every word that names a command may be the command (or an option's value, which clap
    // decides): building just those gives the same result as building all of them. With none
    // (help, or a mistyped command), all are built so that clap can list or suggest them.
    let named: Vec<Command> = Command::ALL
        .iter()
        .copied()
        .filter(|c| args.iter().skip(1).any(|a| a.to_str() == Some(c.name())))
        .collect();
    // Options of repositories and servers other than the first are built when a word names
    // their family (`--repo2-path`, `--no-pg3-...`, a mistyped `--repo2-pth` too, so that clap
    // suggests within it): the same result as building them all.
    let families: BTreeSet<_> = args
        .iter()
        .skip(1)
        .filter_map(|a| {
            let option = a.to_str()?.strip_prefix("--")?;
            let option = option.strip_prefix("no-").unwrap_or(option);
            family_of(option.split('=').next().unwrap_or(option))
        })
        .collect();
    // repo1 and pg1 (which help shows) and the indexes the command line names.
    let indexes = |prefix| {
        let named = families.iter().filter(|(f, i)| *f == prefix && *i != 1);
        std::iter::once(1)
            .chain(named.map(|(_, i)| *i))
            .collect::<Vec<u32>>()
    };
    let options = full_names_for(&indexes("repo"), &indexes("pg"));
    let foreign = foreign_flags(args.iter().skip(1).filter_map(|a| a.to_str()));
    let scope = Scope {
        commands: (!named.is_empty()).then_some(named.as_slice()),
        options,
        foreign,
    };
    let matches = build(&scope).try_get_matches_from(args)?;
    let Some((name, sub)) = matches.subcommand() else {
        return Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand));
    };
    let command = Command::from_name(name)
        .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidSubcommand))?;
    let mut flags = Vec::new();
    for (opt, def) in &scope.options {
        collect(sub, opt, def.kind, &mut flags);
        if def.kind == OptionKind::Bool {
            let no = format!("no-{opt}");
            if sub.value_source(&no) == Some(ValueSource::CommandLine) && sub.get_flag(&no) {
                flags.push((opt.clone(), "n".into()));
            }
        }
    }
    for (name, boolean) in &scope.foreign {
        collect(sub, name, OptionKind::Text, &mut flags);
        let no = format!("no-{name}");
        if *boolean && sub.value_source(&no) == Some(ValueSource::CommandLine) && sub.get_flag(&no)
        {
            flags.push((name.clone(), "n".into()));
        }
    }
    let positional = match command {
        Command::ArchivePush => vec![value(sub, "wal-path")],
        Command::ArchiveGet => vec![value(sub, "wal-name"), value(sub, "destination")],
        Command::ArchiveGetAsync => vec![value(sub, "wal-name"), value(sub, "segment-size")],
        Command::ArchivePushAsync => vec![value(sub, "wal-dir")],
        _ => Vec::new(),
    };
    Ok(Parsed {
        command,
        flags,
        positional,
    })
}

/// The secret option (`--repo1-cipher-pass`, ...) named on the command line `args`, if any.
fn secret_option(args: &[OsString]) -> Option<String> {
    args.iter().skip(1).find_map(|a| {
        let name = a.to_str()?.strip_prefix("--")?;
        let name = name.split_once('=').map_or(name, |(n, _)| n);
        OptionName::parse(name)
            .filter(|n| n.def.secret)
            .map(|_| format!("--{name}"))
    })
}

/// The one line that says what is wrong with the command line `args`, from clap's error `e`.
/// clap's message may quote an argument; when the line holds a secret option, that argument
/// may be (part of) the secret (`--repo1-cipher-pass=two words`), so only the kind of error is
/// said.
pub fn error_line(e: &clap::Error, args: &[OsString]) -> String {
    if let Some(option) = secret_option(args) {
        let what = e.kind().as_str().unwrap_or("invalid command line");
        return format!(
            "{what}; the arguments are not shown because the command line holds secret option '{option}' (quote a value with spaces; better, set secrets in the configuration file or as PGBR_* variables) (see 'pgbr --help')"
        );
    }
    let text = e.to_string();
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    format!("{first} (see 'pgbr --help')")
}

fn value(m: &ArgMatches, id: &str) -> String {
    m.get_one::<String>(id).cloned().unwrap_or_default()
}

fn collect(m: &ArgMatches, id: &str, _kind: OptionKind, out: &mut Vec<(String, String)>) {
    if m.value_source(id) != Some(ValueSource::CommandLine) {
        return;
    }
    if let Some(values) = m.get_many::<String>(id) {
        for v in values {
            out.push((id.to_string(), v.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Parsed, clap::Error> {
        parse(
            std::iter::once("pgbr")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    #[test]
    fn options_before_and_after_the_command() {
        let r = p(&[
            "--stanza=main",
            "backup",
            "--type",
            "full",
            "--start-fast",
            "--repo2-path=/r2",
        ])
        .expect("parse");
        assert_eq!(r.command, Command::Backup);
        assert!(r.flags.contains(&("stanza".into(), "main".into())));
        assert!(r.flags.contains(&("type".into(), "full".into())));
        assert!(r.flags.contains(&("start-fast".into(), "y".into())));
        assert!(r.flags.contains(&("repo2-path".into(), "/r2".into())));
    }

    #[test]
    fn negated_booleans_and_positionals() {
        let r = p(&[
            "--stanza=main",
            "--no-archive-check",
            "archive-get",
            "000000010000000000000001",
            "pg_wal/RECOVERYXLOG",
        ])
        .expect("parse");
        assert_eq!(r.command, Command::ArchiveGet);
        assert!(r.flags.contains(&("archive-check".into(), "n".into())));
        assert_eq!(
            r.positional,
            vec!["000000010000000000000001", "pg_wal/RECOVERYXLOG"]
        );
    }

    #[test]
    fn unknown_option_is_refused() {
        let e = p(&["--stanza=main", "backup", "--repo1-pth=/x"])
            .err()
            .expect("error");
        assert!(e.to_string().contains("repo1-pth"), "{e}");
    }

    #[test]
    fn a_command_name_as_an_option_value_is_the_value() {
        // Only the commands named on the line are built: "info" must still be read as the
        // stanza here, and "backup" as the command.
        let r = p(&["--stanza", "info", "backup"]).expect("parse");
        assert_eq!(r.command, Command::Backup);
        assert!(r.flags.contains(&("stanza".into(), "info".into())));
        let r = p(&["--stanza", "backup", "info"]).expect("parse");
        assert_eq!(r.command, Command::Info);
        assert!(r.flags.contains(&("stanza".into(), "backup".into())));
    }

    #[test]
    fn a_mistyped_or_missing_command_is_refused_with_the_commands_listed() {
        let e = p(&["--stanza=main", "bakup"]).err().expect("error");
        assert!(e.to_string().contains("backup"), "{e}");
        let e = p(&["--stanza=main"]).err().expect("error");
        let help = e.to_string();
        for c in Command::ALL.iter().filter(|c| !c.is_internal()) {
            assert!(help.contains(c.name()), "{} missing from: {help}", c.name());
        }
    }

    #[test]
    fn options_of_other_repositories_and_servers_are_accepted_and_suggested() {
        let r = p(&[
            "--stanza=main",
            "--repo3-path",
            "/r3",
            "--no-repo2-bundle",
            "backup",
            "--pg8-port=5433",
        ])
        .expect("parse");
        assert!(r.flags.contains(&("repo3-path".into(), "/r3".into())));
        assert!(r.flags.contains(&("repo2-bundle".into(), "n".into())));
        assert!(r.flags.contains(&("pg8-port".into(), "5433".into())));
        // A mistyped option of repo4 is refused, and the right one suggested.
        let e = p(&["--stanza=main", "backup", "--repo4-pth=/x"])
            .err()
            .expect("error");
        assert!(e.to_string().contains("repo4-path"), "{e}");
        // As in pgBackRest, up to repo256; beyond it there is nothing to accept.
        assert!(p(&["--stanza=main", "backup", "--repo256-path=/x"]).is_ok());
        assert!(p(&["--stanza=main", "backup", "--repo257-path=/x"]).is_err());
    }

    #[test]
    fn errors_of_a_command_line_holding_a_secret_do_not_show_its_arguments() {
        let secret = "Zebra-s3cr3t";
        for args in [
            vec!["--stanza=main", "info", "--repo1-cipher-pass=two", secret],
            vec![
                "--stanza=main",
                "info",
                "--repo2-s3-key-secret",
                "x",
                secret,
            ],
            vec![
                "--stanza=main",
                "--repo1-cipher-pass=x",
                "info",
                &format!("--{secret}"),
            ],
        ] {
            let argv: Vec<OsString> = std::iter::once("pgbr")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect();
            let e = parse(argv.clone()).err().expect("error");
            let line = error_line(&e, &argv);
            assert!(!line.contains(secret), "{line}");
            assert!(line.contains("secret option '--repo"), "{line}");
        }
        // A passphrase starting with '-' is the value.
        let r = p(&["--stanza=main", "info", "--repo1-cipher-pass", "-dash"]).expect("parse");
        assert!(r
            .flags
            .contains(&("repo1-cipher-pass".into(), "-dash".into())));
    }

    #[test]
    fn repeated_list_option() {
        let r = p(&[
            "restore",
            "--tablespace-map=1=/a",
            "--tablespace-map",
            "2=/b",
        ])
        .expect("parse");
        let maps: Vec<_> = r.flags.iter().filter(|f| f.0 == "tablespace-map").collect();
        assert_eq!(maps.len(), 2);
    }
}
