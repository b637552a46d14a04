//! Bad input against real PostgreSQL 15 clusters: a wrong passphrase, missing, unknown and invalid
//! options, an unknown stanza, an unreachable database, another cluster, and a restore target that
//! must not be touched. Every case checks the exit code (README, "Exit codes"), that stderr is one
//! line naming the culprit, and that nothing changed (repository or target directory, byte for
//! byte).
//!
//! One fixture (two clusters, one encrypted repository with one backup) serves every test; the tests
//! take turns so that a snapshot of the repository is never disturbed by another test.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard, OnceLock};

use common::{as_pg, chown_pg, free_port, Cluster, Scratch, PG_BIN};

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

/// Stops the shared clusters and removes the scratch directory when the test binary exits
/// (statics are never dropped).
extern "C" fn cleanup() {
    if let Some(f) = FIXTURE.get() {
        for c in [&f.a, &f.b] {
            let _ = as_pg(format!("{PG_BIN}/pg_ctl"))
                .arg("-D")
                .arg(&c.data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(f.scratch.dir.path());
    }
}

fn config_text(repo: &Path, pass: &str, a: &Cluster) -> String {
    format!(
        "[global]\nrepo1-path={}\nrepo1-cipher-type=aes-256-gcm\nrepo1-cipher-pass={pass}\nprocess-max=2\nstart-fast=y\n\n[main]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
        repo.display(),
        a.data.display(),
        a.port,
        a.socket_dir.display()
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
        let repo = scratch.mkdir("repo");
        let conf = scratch.write_config("pgbr.conf", &config_text(&repo, PASS, &a));
        let wrong_conf = scratch.write_config("wrong.conf", &config_text(&repo, WRONG_PASS, &a));
        a.psql(
            "create table t as select g as id, md5(g::text) as v from generate_series(1, 5000) g",
        );
        let wal_dir = scratch.mkdir("wal-a");
        let segment_a = copy_first_segment(&a.data.join("pg_wal"), &wal_dir);
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
    let turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = FIXTURE.get_or_init(|| {
        // SAFETY: registers a plain extern "C" function; it only runs at process exit.
        unsafe {
            libc::atexit(cleanup);
        }
        Fixture::new()
    });
    (f, turn)
}

/// Copies the first complete WAL segment of `pg_wal` into `dir`.
fn copy_first_segment(pg_wal: &Path, dir: &Path) -> PathBuf {
    let mut names: Vec<String> = std::fs::read_dir(pg_wal)
        .expect("read pg_wal")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    names.sort();
    let name = names.first().expect("a WAL segment in pg_wal");
    let dest = dir.join(name);
    std::fs::copy(pg_wal.join(name), &dest).expect("copy segment");
    chown_pg(&dest);
    dest
}

/// Relative name → kind, mode and contents.
type Snapshot = BTreeMap<String, (String, u32, Vec<u8>)>;

/// Every entry under `root` (relative name → kind, mode and contents), to prove nothing changed.
fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("prefix").display().to_string();
            let meta = std::fs::symlink_metadata(&p).expect("stat");
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                let to = std::fs::read_link(&p).expect("readlink");
                out.insert(rel, ("link".into(), mode, to.display().to_string().into()));
            } else if meta.is_dir() {
                out.insert(rel, ("dir".into(), mode, Vec::new()));
                stack.push(p);
            } else {
                out.insert(rel, ("file".into(), mode, std::fs::read(&p).expect("read")));
            }
        }
    }
    out
}

fn assert_unchanged(before: &Snapshot, after: &Snapshot, what: &str) {
    if before == after {
        return;
    }
    let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let removed: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let changed: Vec<_> = before
        .iter()
        .filter(|(k, v)| after.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .collect();
    panic!("{what} changed: added {added:?}, removed {removed:?}, changed {changed:?}");
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

/// Checks the exit code and that stderr is exactly one `pgbr: ERROR:` line containing every
/// `needle`; returns that line.
fn assert_fails(out: &Output, code: i32, needles: &[&str], what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one error line on stderr, got:\n{stderr}"
    );
    let line = lines[0];
    assert!(
        line.starts_with("pgbr: ERROR: "),
        "{what}: stderr does not start with 'pgbr: ERROR: ': {line}"
    );
    for n in needles {
        assert!(
            line.contains(n),
            "{what}: stderr does not name {n:?}: {line}"
        );
    }
    line.to_string()
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
        assert_fails(&out, 5, &["repo1-cipher-pass"], &format!("{what} (file)"));
        assert_secret_absent(&out, WRONG_PASS, what);
        assert_secret_absent(&out, PASS, what);
        assert_unchanged(
            &before,
            &snapshot(&f.repo),
            &format!("repository after {what}"),
        );
        // ... and from the environment, which overrides the (right) one in the file.
        let out = pgbr_env(
            &f.scratch,
            &f.conf,
            args,
            &[("PGBR_REPO1_CIPHER_PASS", WRONG_PASS)],
        );
        assert_fails(&out, 5, &["repo1-cipher-pass"], &format!("{what} (env)"));
        assert_secret_absent(&out, WRONG_PASS, what);
        assert_secret_absent(&out, PASS, what);
        assert_unchanged(
            &before,
            &snapshot(&f.repo),
            &format!("repository after {what}"),
        );
    }
}

#[test]
fn backup_without_pg1_path_exits_2_naming_it() {
    let (f, _turn) = fixture();
    let conf = f.scratch.write_config(
        "no-pg1-path.conf",
        &format!(
            "[global]\nrepo1-path={}\nrepo1-cipher-type=aes-256-gcm\nrepo1-cipher-pass={PASS}\n\n[main]\npg1-port={}\npg1-socket-path={}\n",
            f.repo.display(),
            f.a.port,
            f.a.socket_dir.display()
        ),
    );
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
    let text = config_text(&f.repo, PASS, &f.a).replace("[main]\n", "[main]\npg1-bogus-knob=7\n");
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
        let text =
            config_text(&f.repo, PASS, &f.a).replace("process-max=2\n", &format!("{line}\n"));
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

#[test]
fn stanza_create_for_another_cluster_exits_4() {
    let (f, _turn) = fixture();
    let before = snapshot(&f.repo);
    let out = f.scratch.pgbr(
        &f.conf,
        &[
            "--stanza=main",
            "stanza-create",
            &format!("--pg1-path={}", f.b.data.display()),
            &format!("--pg1-port={}", f.b.port),
            &format!("--pg1-socket-path={}", f.b.socket_dir.display()),
        ],
    );
    let b_sysid =
        f.b.psql("select system_identifier from pg_control_system()");
    assert_fails(&out, 4, &["'main'", &b_sysid], "stanza-create of cluster B");
    assert_unchanged(&before, &snapshot(&f.repo), "repository");
}

#[test]
fn backup_of_another_cluster_exits_4() {
    let (f, _turn) = fixture();
    let before = snapshot(&f.repo);
    let out = f.scratch.pgbr(
        &f.conf,
        &[
            "--stanza=main",
            "backup",
            "--type=full",
            "--no-archive-check",
            &format!("--pg1-path={}", f.b.data.display()),
            &format!("--pg1-port={}", f.b.port),
            &format!("--pg1-socket-path={}", f.b.socket_dir.display()),
        ],
    );
    let b_sysid =
        f.b.psql("select system_identifier from pg_control_system()");
    assert_fails(&out, 4, &["'main'", &b_sysid], "backup of cluster B");
    assert_unchanged(&before, &snapshot(&f.repo), "repository");
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
