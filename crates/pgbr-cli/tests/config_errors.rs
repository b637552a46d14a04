//! Configuration errors against the real binary (no PostgreSQL is needed: every case fails, or
//! finds no stanza, before a server would be reached):
//! - the value of a secret option never shows on stdout or stderr, at any log level, however
//!   the file, the environment or the command line is malformed;
//! - an error about the file names the file, the line and the option, never the line itself;
//! - an option set twice in a section of the file is refused (as in pgBackRest);
//! - every option Debian's pgBackRest 2.45 documents (`pgbackrest help`, the oracle) is pgbr's,
//!   ignored with a warning or refused as not supported, and `PGBACKREST_*` variables work.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::assert_fails;

/// The secret every case hides somewhere.
const MARKER: &str = "Mk7-s3cr3t-9Qz";

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Writes configuration `name`: `[global]` with a repository and lock directory of this
    /// directory's own, then `text`.
    fn config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let text = text
            .replace(
                "@REPO@",
                &self.dir.path().join("repo").display().to_string(),
            )
            .replace(
                "@LOCK@",
                &self.dir.path().join("lock").display().to_string(),
            );
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn pgbr(&self, config: &Path, args: &[&str], env: &[(&str, OsString)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pgbr"));
        c.arg(format!("--config={}", config.display()))
            .args(args)
            .current_dir(self.dir.path());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PGBR_") {
                c.env_remove(k);
            }
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run pgbr")
    }
}

/// Fails if `MARKER` shows in `out`.
fn assert_hidden(out: &Output, what: &str) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains(MARKER),
            "{what}: the secret shows on {stream}:\n{text}"
        );
    }
}

const GLOBAL: &str = "[global]\nrepo1-path=@REPO@\nlock-path=@LOCK@\n";

/// Commands each malformed input is given to: they read the configuration in different ways
/// (every repository, the WAL path and compression, the server's options).
const COMMANDS: &[&[&str]] = &[
    &["--stanza=main", "info"],
    &["--stanza=main", "info", "--output=json"],
    &[
        "--stanza=main",
        "archive-push",
        "/nonexistent/000000010000000000000001",
    ],
    &["--stanza=main", "backup"],
    &["--stanza=main", "verify"],
];

#[test]
fn secrets_never_show_whatever_the_malformed_input() {
    let d = Dir::new();
    let m = MARKER;
    // Malformed configuration files (the line number the error must name, when it is one line).
    let files: Vec<(String, Option<usize>)> = vec![
        (format!("{GLOBAL}repo1-cipher-pass {m}\n"), Some(4)),
        (format!("{GLOBAL}repo1-cipher-pass:{m}\n"), Some(4)),
        (format!("{GLOBAL}repo1-cipher-pass {m}=x\n"), Some(4)),
        (format!("{GLOBAL}repo1-cipher-pass:{m}=x\n"), Some(4)),
        (format!("{GLOBAL}repo1-cipher-pass=\"{m}\n"), Some(4)),
        (format!("{GLOBAL}repo1-cipher-pass=\n{m}\n"), Some(5)),
        (format!("{GLOBAL}repo1-azure-key=abc\n{m}==\n"), Some(5)),
        (format!("{GLOBAL}{m}\n"), Some(4)),
        (format!("{GLOBAL}=\"{m}\"\n"), Some(4)),
        (format!("repo1-cipher-pass={m}\n{GLOBAL}"), Some(1)),
        (format!("[global\nrepo1-cipher-pass={m}\n"), Some(1)),
        (
            format!("{GLOBAL}repo1-cipher-pass={m}\nrepo1-cipher-pass={m}x\n"),
            Some(5),
        ),
        (
            format!("{GLOBAL}repo1-cipher-type=aes-256-gcm\nrepo1-cipher-pass={m}\nrepo1-cipher-type=rot13\n"),
            Some(6),
        ),
        (format!("{GLOBAL}repo1-cipher-pass={m}\n[main:nocommand]\nprocess-max=2\n"), Some(6)),
        // Object stores: missing companions, bad keys, a key file that is not there, and one
        // that cannot be reached (its requests are retried and logged at trace level).
        (format!("{GLOBAL}repo2-type=s3\nrepo2-s3-key={m}\n"), None),
        (
            format!("{GLOBAL}repo2-type=s3\nrepo2-s3-bucket=b\nrepo2-s3-key={m}\n"),
            None,
        ),
        (
            format!("{GLOBAL}repo2-type=s3\nrepo2-s3-bucket=b\nrepo2-s3-key-secret={m}\nrepo2-s3-token={m}\n"),
            None,
        ),
        (
            format!("{GLOBAL}repo2-type=azure\nrepo2-azure-account=a\nrepo2-azure-container=c\nrepo2-azure-key={m}!!\nrepo2-azure-endpoint=http://127.0.0.1:1\n"),
            None,
        ),
        (
            format!("{GLOBAL}repo2-type=azure\nrepo2-azure-account=a\nrepo2-azure-container=c\nrepo2-azure-key-type=sas\nrepo2-azure-key=%ff{m}\nrepo2-azure-endpoint=http://127.0.0.1:1\n"),
            None,
        ),
        (
            format!("{GLOBAL}repo2-type=gcs\nrepo2-gcs-bucket=b\nrepo2-gcs-key=/nonexistent/{m}.json\n"),
            None,
        ),
        (
            format!("{GLOBAL}repo2-type=gcs\nrepo2-gcs-bucket=b\nrepo2-gcs-key-type=auto\nrepo2-gcs-key={m}\n"),
            None,
        ),
        (
            format!("{GLOBAL}repo2-type=s3\nrepo2-s3-bucket=b\nrepo2-s3-key={m}\nrepo2-s3-key-secret={m}\nrepo2-s3-token={m}\nrepo2-s3-endpoint=http://127.0.0.1:1\nrepo2-s3-uri-style=path\n"),
            None,
        ),
    ];
    for (i, (text, line)) in files.iter().enumerate() {
        let conf = d.config(&format!("case{i}.conf"), text);
        for args in COMMANDS {
            // Object store cases retry their requests: once, at the most talkative level.
            let levels: &[&str] = match line {
                Some(_) => &["trace", "info", "error"],
                None => &["trace"],
            };
            for level in levels {
                let mut all = args.to_vec();
                let flag = format!("--log-level-console={level}");
                all.push(&flag);
                let out = d.pgbr(&conf, &all, &[]);
                let what = format!("file case {i} {text:?}, {all:?}");
                assert_hidden(&out, &what);
                if let Some(line) = line {
                    assert_fails(
                        &out,
                        2,
                        &[&format!("{} line {line}:", conf.display())],
                        &what,
                    );
                }
            }
        }
    }

    // The environment: a value that is not UTF-8 (std's own reading panics and prints it), a
    // mistyped variable, an empty secret, and a key without its secret.
    let conf = d.config("env.conf", GLOBAL);
    let mut not_utf8 = m.as_bytes().to_vec();
    not_utf8.push(0xff);
    let envs: Vec<Vec<(&str, OsString)>> = vec![
        vec![("PGBR_REPO1_CIPHER_PASS", OsString::from_vec(not_utf8))],
        vec![("PGBR_REPO1_CIPHER_PAS", m.into())],
        vec![("PGBR_REPO1_CIPHER_PASS", "".into())],
        vec![
            ("PGBR_REPO2_TYPE", "s3".into()),
            ("PGBR_REPO2_S3_BUCKET", "b".into()),
            ("PGBR_REPO2_S3_KEY", m.into()),
        ],
    ];
    for env in &envs {
        for args in COMMANDS {
            let mut all = args.to_vec();
            all.push("--log-level-console=trace");
            let out = d.pgbr(&conf, &all, env);
            assert_hidden(&out, &format!("environment {env:?}, {all:?}"));
        }
    }
    let out = d.pgbr(&conf, &["--stanza=main", "info"], &envs[0]);
    assert_fails(&out, 2, &["PGBR_REPO1_CIPHER_PASS", "UTF-8"], "non-UTF-8");

    // The command line: a passphrase with a space, or starting with '-', a mistyped option.
    let spaced = format!("--repo1-cipher-pass=two {m}");
    let split = ["--repo1-cipher-pass=two", m];
    let dashed = format!("-{m}");
    let ddashed = format!("--{m}");
    let typo = format!("--repo1-cipher-pas={m}");
    let lines: Vec<Vec<&str>> = vec![
        vec!["--stanza=main", "info", &spaced],
        vec!["--stanza=main", "info", split[0], split[1]],
        vec!["--stanza=main", split[0], split[1], "info"],
        vec!["--stanza=main", "info", "--repo1-cipher-pass", &dashed],
        vec!["--stanza=main", "info", "--repo1-cipher-pass", &ddashed],
        vec!["--stanza=main", "info", &typo],
        vec![
            "--stanza=main",
            "info",
            "--repo2-s3-key-secret",
            m,
            "--bogus",
        ],
        vec!["--stanza=main", "info", "--repo1-cipher-pass=", m],
    ];
    for args in &lines {
        for level in ["trace", "warn"] {
            let mut all = args.clone();
            let flag = format!("--log-level-console={level}");
            all.push(&flag);
            let out = d.pgbr(&conf, &all, &[]);
            assert_hidden(&out, &format!("command line {all:?}"));
        }
    }
    let out = d.pgbr(&conf, &lines[1], &[]);
    assert_fails(&out, 2, &["--repo1-cipher-pass"], "unquoted passphrase");
}

#[test]
fn an_option_set_twice_in_a_section_exits_2_naming_file_line_section_and_option() {
    let d = Dir::new();
    let conf = d.config(
        "twice.conf",
        &format!("{GLOBAL}process-max=2\n[main]\npg1-path=/pg\n[global]\nprocess-max=4\n"),
    );
    for args in [&["--stanza=main", "info"][..], &["--stanza=main", "backup"]] {
        let out = d.pgbr(&conf, args, &[]);
        assert_fails(
            &out,
            2,
            &[
                &format!("{} line 8:", conf.display()),
                "'process-max'",
                "[global]",
                "line 4",
            ],
            &format!("{args:?}"),
        );
    }
    // A secret set twice: named, not shown.
    let conf = d.config(
        "twice-secret.conf",
        &format!("{GLOBAL}[main]\nrepo1-cipher-pass={MARKER}\nrepo1-cipher-pass={MARKER}2\n"),
    );
    let out = d.pgbr(&conf, &["--stanza=main", "info"], &[]);
    assert_fails(
        &out,
        2,
        &["line 6:", "'repo1-cipher-pass'", "[main]", "line 5"],
        "secret twice",
    );
    assert_hidden(&out, "secret twice");
    // The same option in [global] and in the stanza's section is precedence, not a duplicate;
    // a list option (tablespace-map) takes every line.
    let conf = d.config(
        "layers.conf",
        &format!("{GLOBAL}process-max=2\n[main]\nprocess-max=3\n[global:restore]\ntablespace-map=1=/a\ntablespace-map=2=/b\n"),
    );
    let out = d.pgbr(&conf, &["--stanza=main", "info"], &[]);
    assert_fails(&out, 3, &["'main'"], "layers: stanza missing, config fine");
    let out = d.pgbr(&conf, &["--stanza=main", "restore"], &[]);
    assert_fails(
        &out,
        2,
        &["pg1-path"],
        "restore reads both tablespace-map lines",
    );
}

/// Every option `pgbackrest help <command>` lists (Debian's pgBackRest 2.45, the oracle): the
/// option `name` as a configuration file writes it (`repo-path` as `repo1-path`).
fn pgbackrest_options() -> Vec<String> {
    let help = |args: &[&str]| {
        let out = Command::new("pgbackrest")
            .args(args)
            .output()
            .expect("pgbackrest is not installed: run .ci/run, which installs it");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let overview = help(&["help"]);
    let commands: Vec<String> = overview
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(
        commands.len() > 10,
        "no commands in pgbackrest help:\n{overview}"
    );
    let mut names: Vec<String> = commands
        .iter()
        .flat_map(|c| {
            help(&["help", c])
                .lines()
                .filter_map(|l| l.strip_prefix("  --"))
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .map(|n| match (n.strip_prefix("repo-"), n.strip_prefix("pg-")) {
            (Some(rest), _) => format!("repo1-{rest}"),
            (None, Some(rest)) => format!("pg1-{rest}"),
            _ => n,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A pgBackRest configuration file as it is: each option pgBackRest documents is pgbr's, or
/// ignored with a warning that says why, or refused as "not supported by pgbr (yet)"; never an
/// "unknown option". Sections of pgBackRest commands pgbr lacks are ignored.
#[test]
fn every_pgbackrest_option_is_known_ignored_or_refused() {
    let d = Dir::new();
    let names = pgbackrest_options();
    assert!(names.len() > 100, "{names:?}");
    let (mut ignored, mut refused) = (0, 0);
    for name in &names {
        if ["config", "stanza"].contains(&name.as_str()) {
            continue;
        }
        let conf = d.config(
            "pgbackrest.conf",
            &format!(
                "{GLOBAL}[global:server]\ntls-server-port=8432\n[main]\n{name}=not-a-default\n"
            ),
        );
        let out = d.pgbr(&conf, &["--stanza=main", "info"], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("unknown option"), "{name}: {err}");
        assert!(!err.contains("not a pgbr command"), "{name}: {err}");
        if err.contains(&format!("pgBackRest option '{name}' is ignored by pgbr: ")) {
            ignored += 1;
            // On to the repository, which holds no stanza.
            assert_eq!(out.status.code(), Some(3), "{name}: {err}");
        } else if err.contains(&format!(
            "pgBackRest option '{name}' is not supported by pgbr (yet)"
        )) {
            refused += 1;
            assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        }
    }
    assert!(
        ignored > 20 && refused > 20,
        "{ignored} ignored, {refused} refused"
    );
}

/// pgBackRest's variables and flags: `PGBACKREST_*` stands for `PGBR_*` (which wins when both
/// are set), and a pgBackRest flag pgbr does not implement is warned about or refused.
#[test]
fn pgbackrest_variables_and_flags() {
    let d = Dir::new();
    let conf = d.config("pgbr.conf", "[global]\nlock-path=@LOCK@\n");
    let repo = d.dir.path().join("repo-from-env");
    let env = [("PGBACKREST_REPO1_PATH", repo.clone().into_os_string())];
    // The repository holds no stanza: the error names the repository the variable set.
    let out = d.pgbr(&conf, &["--stanza=main", "info"], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&repo.display().to_string()), "{err}");
    let both = [
        ("PGBACKREST_REPO1_PATH", OsString::from("/elsewhere")),
        ("PGBR_REPO1_PATH", repo.clone().into_os_string()),
    ];
    let out = d.pgbr(&conf, &["--stanza=main", "info"], &both);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&repo.display().to_string()), "{err}");
    assert!(err.contains("PGBACKREST_REPO1_PATH is ignored"), "{err}");

    // Repository indexes go up to 256, as in pgBackRest, and need not follow each other.
    let conf = d.config(
        "many.conf",
        &format!(
            "{GLOBAL}repo200-path={}\n",
            d.dir.path().join("r200").display()
        ),
    );
    let out = d.pgbr(&conf, &["--stanza=main", "--repo=200", "info"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist in repo200 (posix:"), "{err}");

    let conf = d.config("flags.conf", GLOBAL);
    let out = d.pgbr(
        &conf,
        &["--stanza=main", "--log-path=/var/log/x", "info"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("pgBackRest option 'log-path' is ignored by pgbr"),
        "{err}"
    );
    for flags in [&["--no-online"][..], &["--repo1-host", "backup.example"]] {
        let mut args = vec!["--stanza=main", "backup"];
        args.extend_from_slice(flags);
        let out = d.pgbr(&conf, &args, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(
            err.contains("is not supported by pgbr (yet)"),
            "{flags:?}: {err}"
        );
    }
    let out = d.pgbr(
        &conf,
        &[
            "--stanza=main",
            "backup",
            "--online",
            "--no-archive-check",
            "--pg1-port=1",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("online"), "--online is what pgbr does: {err}");
}
