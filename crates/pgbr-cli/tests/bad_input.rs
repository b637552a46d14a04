//! Bad input against real PostgreSQL 15 clusters: a wrong passphrase, missing, unknown and invalid
//! options, an unknown stanza, an unreachable database, another cluster, and a restore target that
//! must not be touched. Every case checks the exit code (README, "Exit codes"), that stderr is one
//! line naming the culprit, and that nothing changed (repository or target directory, byte for
//! byte).
//!
//! One fixture (two clusters, one encrypted repository with one backup) serves every test; the tests
//! take turns so that a snapshot of the repository is never disturbed by another test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard, OnceLock};

use common::{
    as_pg, assert_fails, assert_unchanged, chown_pg, config_text, free_port, snapshot, Cluster,
    Scratch, Snapshot,
};

const PASS: &str = "correct horse battery staple";
const WRONG_PASS: &str = "WRONG-zebra-passphrase-9417";

struct Fixture {
    scratch: Scratch,
    a: Cluster,
    b: Cluster,
    repo: PathBuf,
    /// Encrypted repository, stanza `main` created for cluster A, which has one backup.
    conf: PathBuf,
    /// The same with a wrong passphrase.
    wrong_conf: PathBuf,
    /// A WAL segment of cluster A (a copy, owned by the PostgreSQL user).
    segment_a: PathBuf,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

fn config(scratch: &Scratch, repo: &Path, pass: &str, a: &Cluster) -> String {
    config_text(
        scratch,
        &format!(
            "repo1-path={}\nrepo1-cipher-type=aes-256-gcm\nrepo1-cipher-pass={pass}\nprocess-max=2\nstart-fast=y\n",
            repo.display()
        ),
        "main",
        a,
    )
}

impl Fixture {
    fn new() -> Fixture {
        let scratch = Scratch::new();
        let mut a = Cluster::init(&scratch, "a");
        let mut b = Cluster::init(&scratch, "b");
        a.configure("");
        b.configure("");
        a.start();
        b.start();
        for c in [&a, &b] {
            common::stop_at_exit(&c.data);
        }
        common::remove_at_exit(&scratch);
        let repo = scratch.mkdir("repo");
        let conf = scratch.write_config("pgbr.conf", &config(&scratch, &repo, PASS, &a));
        let wrong_conf =
            scratch.write_config("wrong.conf", &config(&scratch, &repo, WRONG_PASS, &a));
        a.psql(
            "create table t as select g as id, md5(g::text) as v from generate_series(1, 5000) g",
        );
        let wal_dir = scratch.mkdir("wal-a");
        let segment_a = common::copy_first_segment(&a.data.join("pg_wal"), &wal_dir);
        scratch.pgbr_ok(&conf, &["--stanza=main", "stanza-create"]);
        // archive_mode is off here: these tests never start a restored cluster.
        scratch.pgbr_ok(
            &conf,
            &[
                "--stanza=main",
                "backup",
                "--type=full",
                "--no-archive-check",
            ],
        );
        Fixture {
            scratch,
            a,
            b,
            repo,
            conf,
            wrong_conf,
            segment_a,
        }
    }
}

/// The shared fixture, and the turn of the calling test.
fn fixture() -> (&'static Fixture, MutexGuard<'static, ()>) {
    common::shared(&FIXTURE, &SERIAL, Fixture::new)
}

/// Runs pgbr as the PostgreSQL user with extra environment variables.
fn pgbr_env(scratch: &Scratch, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = as_pg(&scratch.pgbr);
    c.arg(format!("--config={}", config.display())).args(args);
    c.env_remove("PGBR_REPO1_CIPHER_PASS");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run pgbr")
}

fn assert_secret_absent(out: &Output, secret: &str, what: &str) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains(secret),
            "{what}: the passphrase appears on {stream}: {text}"
        );
    }
}

/// A command refused for a wrong passphrase: exit 5 naming the option, neither passphrase on
/// stdout or stderr, the repository as `before`.
fn assert_wrong_pass_refused(f: &Fixture, out: &Output, what: &str, before: &Snapshot) {
    assert_fails(out, 5, &["repo1-cipher-pass"], what);
    assert_secret_absent(out, WRONG_PASS, what);
    assert_secret_absent(out, PASS, what);
    assert_unchanged(
        before,
        &snapshot(&f.repo),
        &format!("repository after {what}"),
    );
}

#[test]
fn wrong_passphrase_exits_5_writes_nothing_and_is_never_echoed() {
    let (f, _turn) = fixture();
    let seg = f.segment_a.display().to_string();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("archive-push", vec!["--stanza=main", "archive-push", &seg]),
        ("backup", vec!["--stanza=main", "backup", "--type=full"]),
        ("info", vec!["--stanza=main", "info"]),
        (
            "info --output=json",
            vec!["--stanza=main", "info", "--output=json"],
        ),
    ];
    for (what, args) in &cases {
        // The wrong passphrase from the configuration file ...
        let before = snapshot(&f.repo);
        let out = f.scratch.pgbr(&f.wrong_conf, args);
        assert_wrong_pass_refused(f, &out, &format!("{what} (file)"), &before);
        // ... and from the environment, which overrides the (right) one in the file.
        let out = pgbr_env(
            &f.scratch,
            &f.conf,
            args,
            &[("PGBR_REPO1_CIPHER_PASS", WRONG_PASS)],
        );
        assert_wrong_pass_refused(f, &out, &format!("{what} (env)"), &before);
    }
}

#[test]
fn backup_without_pg1_path_exits_2_naming_it() {
    let (f, _turn) = fixture();
    let text = config(&f.scratch, &f.repo, PASS, &f.a)
        .replace(&format!("pg1-path={}\n", f.a.data.display()), "");
    assert!(!text.contains("pg1-path"), "{text}");
    let conf = f.scratch.write_config("no-pg1-path.conf", &text);
    let before = snapshot(&f.repo);
    let out = f
        .scratch
        .pgbr(&conf, &["--stanza=main", "backup", "--type=full"]);
    assert_fails(&out, 2, &["pg1-path"], "backup without pg1-path");
    assert_unchanged(&before, &snapshot(&f.repo), "repository");
}

#[test]
fn unknown_option_in_config_file_exits_2_naming_it() {
    let (f, _turn) = fixture();
    let text =
        config(&f.scratch, &f.repo, PASS, &f.a).replace("[main]\n", "[main]\npg1-bogus-knob=7\n");
    let conf = f.scratch.write_config("unknown.conf", &text);
    let before = snapshot(&f.repo);
    for args in [
        &["--stanza=main", "backup", "--type=full"][..],
        &["--stanza=main", "info"][..],
    ] {
        let out = f.scratch.pgbr(&conf, args);
        assert_fails(
            &out,
            2,
            &["pg1-bogus-knob", "unknown.conf"],
            "unknown option in file",
        );
    }
    assert_unchanged(&before, &snapshot(&f.repo), "repository");
}

#[test]
fn unknown_option_on_command_line_exits_2_naming_it() {
    let (f, _turn) = fixture();
    let before = snapshot(&f.repo);
    for args in [
        &["--stanza=main", "backup", "--type=full", "--bogus-knob=7"][..],
        &["--stanza=main", "--bogus-knob", "info"][..],
    ] {
        let out = f.scratch.pgbr(&f.conf, args);
        assert_fails(&out, 2, &["bogus-knob"], &format!("{args:?}"));
    }
    assert_unchanged(&before, &snapshot(&f.repo), "repository");
}

#[test]
fn bad_option_values_exit_2_naming_the_option() {
    let (f, _turn) = fixture();
    let before = snapshot(&f.repo);
    // On the command line.
    for (flag, name) in [
        ("--process-max=0", "process-max"),
        ("--compress-type=xz", "compress-type"),
    ] {
        let out = f
            .scratch
            .pgbr(&f.conf, &["--stanza=main", "backup", "--type=full", flag]);
        assert_fails(&out, 2, &[name], flag);
    }
    // In the configuration file.
    for (line, name) in [
        ("process-max=0", "process-max"),
        ("compress-type=xz", "compress-type"),
    ] {
        let text = config(&f.scratch, &f.repo, PASS, &f.a)
            .replace("process-max=2\n", &format!("{line}\n"));
        let conf = f.scratch.write_config("bad-value.conf", &text);
        let out = f
            .scratch
            .pgbr(&conf, &["--stanza=main", "backup", "--type=full"]);
        assert_fails(&out, 2, &[name, "bad-value.conf"], line);
        // archive-push reads compress-type too.
        let seg = f.segment_a.display().to_string();
        let out = f
            .scratch
            .pgbr(&conf, &["--stanza=main", "archive-push", &seg]);
        assert_fails(&out, 2, &[name], &format!("archive-push with {line}"));
    }
    assert_unchanged(&before, &snapshot(&f.repo), "repository");
}

#[test]
fn unknown_stanza_exits_3_naming_it_and_stanza_create() {
    let (f, _turn) = fixture();
    let seg = f.segment_a.display().to_string();
    let pg1 = format!("--pg1-path={}", f.a.data.display());
    let port = format!("--pg1-port={}", f.a.port);
    let sock = format!("--pg1-socket-path={}", f.a.socket_dir.display());
    let before = snapshot(&f.repo);
    for args in [
        vec!["--stanza=nope", "backup", "--type=full", &pg1, &port, &sock],
        vec!["--stanza=nope", "archive-push", &seg],
        vec!["--stanza=nope", "info"],
        vec!["--stanza=nope", "info", "--output=json"],
    ] {
        let out = f.scratch.pgbr(&f.conf, &args);
        assert_fails(&out, 3, &["'nope'", "stanza-create"], &format!("{args:?}"));
    }
    assert_unchanged(&before, &snapshot(&f.repo), "repository");
}

#[test]
fn backup_of_unreachable_database_exits_10_naming_the_port() {
    let (f, _turn) = fixture();
    // Cluster A's data directory, but nothing listens on this port: as for a stopped cluster.
    let port = free_port();
    let before = snapshot(&f.repo);
    let out = f.scratch.pgbr(
        &f.conf,
        &[
            "--stanza=main",
            "backup",
            "--type=full",
            &format!("--pg1-port={port}"),
        ],
    );
    assert_fails(
        &out,
        10,
        &[&port.to_string(), &f.a.socket_dir.display().to_string()],
        "backup of unreachable database",
    );
    assert_unchanged(&before, &snapshot(&f.repo), "repository");
}

/// `args` with cluster B's `pg1-*` options fail with exit 4, naming the stanza and B's system
/// identifier, and change nothing in the repository.
fn assert_refuses_cluster_b(f: &Fixture, args: &[&str], what: &str) {
    let before = snapshot(&f.repo);
    let b = [
        format!("--pg1-path={}", f.b.data.display()),
        format!("--pg1-port={}", f.b.port),
        format!("--pg1-socket-path={}", f.b.socket_dir.display()),
    ];
    let mut all = args.to_vec();
    all.extend(b.iter().map(String::as_str));
    let out = f.scratch.pgbr(&f.conf, &all);
    let b_sysid =
        f.b.psql("select system_identifier from pg_control_system()");
    assert_fails(&out, 4, &["'main'", &b_sysid], what);
    assert_unchanged(&before, &snapshot(&f.repo), "repository");
}

#[test]
fn stanza_create_for_another_cluster_exits_4() {
    let (f, _turn) = fixture();
    assert_refuses_cluster_b(
        f,
        &["--stanza=main", "stanza-create"],
        "stanza-create of cluster B",
    );
}

#[test]
fn backup_of_another_cluster_exits_4() {
    let (f, _turn) = fixture();
    assert_refuses_cluster_b(
        f,
        &[
            "--stanza=main",
            "backup",
            "--type=full",
            "--no-archive-check",
        ],
        "backup of cluster B",
    );
}

/// A restore target holding a few files and a directory, owned by the PostgreSQL user.
fn occupied_target(f: &Fixture, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = f.scratch.mkdir(name);
    std::fs::create_dir(dir.join("base")).expect("mkdir");
    for (rel, text) in files {
        std::fs::write(dir.join(rel), text).expect("write");
    }
    chown_pg(&dir);
    dir
}

#[test]
fn restore_into_non_empty_directory_without_delta_or_force_exits_9_and_changes_nothing() {
    let (f, _turn) = fixture();
    let dest = occupied_target(
        f,
        "occupied",
        &[("PG_VERSION", "15\n"), ("base/keep-me", "precious data\n")],
    );
    let before = snapshot(&dest);
    let repo_before = snapshot(&f.repo);
    let out = f.scratch.pgbr(
        &f.conf,
        &[
            "--stanza=main",
            "restore",
            &format!("--pg1-path={}", dest.display()),
        ],
    );
    assert_fails(
        &out,
        9,
        &[&dest.display().to_string(), "--delta"],
        "restore into non-empty directory",
    );
    assert_unchanged(&before, &snapshot(&dest), "restore target");
    assert_unchanged(&repo_before, &snapshot(&f.repo), "repository");
}

#[test]
fn restore_refuses_target_with_postmaster_pid_even_with_delta_or_force() {
    let (f, _turn) = fixture();
    let dest = occupied_target(
        f,
        "running",
        &[
            ("PG_VERSION", "15\n"),
            ("postmaster.pid", "12345\n/somewhere\n"),
            ("base/keep-me", "precious data\n"),
        ],
    );
    let before = snapshot(&dest);
    for flag in ["--delta", "--force"] {
        let out = f.scratch.pgbr(
            &f.conf,
            &[
                "--stanza=main",
                "restore",
                flag,
                &format!("--pg1-path={}", dest.display()),
            ],
        );
        assert_fails(&out, 9, &["postmaster.pid"], flag);
        assert_unchanged(
            &before,
            &snapshot(&dest),
            &format!("restore target after {flag}"),
        );
    }
}
