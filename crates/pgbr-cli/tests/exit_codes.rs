//! Every exit code of the README's "Exit codes" table, returned by the real binary for a real
//! situation that causes it, against one PostgreSQL 15 cluster that archives through pgbr
//! (stanza `main`, one full backup). The tests take turns on that fixture.
//!
//! Code 12 (internal error) stands for a bug (a worker that panicked, a runtime that does not
//! start), which cannot be caused from outside on purpose; its mapping is tested at unit level,
//! here through the engine's `Error` and in `pgbr-backup`'s `error` module. (An asynchronous
//! `archive-push` whose worker failed also exits 12, as the README says: the worker's report
//! carries its message, not its code. `archive_async.rs` tests that case.)

mod common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::{as_pg, assert_fails, chown_pg, run_ok, Cluster, Setup, Stanza};

const PASS: &str = "exit-codes passphrase";

struct Fixture {
    /// Cluster A archives into `env.repo` (stanza `main`, one full backup).
    env: Stanza,
    /// The backup's label.
    label: String,
    /// A copy of a WAL segment of cluster A, and one of cluster B.
    segment_a: PathBuf,
    segment_b: PathBuf,
    /// Stanza `main` of cluster A in a repository nothing archives to.
    quiet_conf: PathBuf,
    /// Stanza `main` of cluster A in an encrypted repository, and the same with a wrong
    /// passphrase.
    wrong_pass_conf: PathBuf,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

impl Fixture {
    fn new() -> Fixture {
        let env = Stanza::setup(Setup {
            quiet: true,
            ..Setup::default()
        });
        common::stop_at_exit(&env.src.data);
        common::remove_at_exit(&env.scratch);
        let scratch = &env.scratch;
        let wal = scratch.mkdir("wal");
        let segment_a = common::copy_first_segment(&env.src.data.join("pg_wal"), &wal);
        let b = Cluster::init(scratch, "b");
        let segment_b = common::copy_first_segment(&b.data.join("pg_wal"), &scratch.mkdir("wal-b"));
        drop(b);
        scratch.pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);
        let label = common::labels(&common::info(scratch, &env.conf))[0].clone();

        let quiet_repo = scratch.mkdir("quiet-repo");
        let quiet_conf = env.config_like(
            "quiet.conf",
            &format!("repo1-path={}\n", quiet_repo.display()),
            "main",
            &env.src,
        );
        scratch.pgbr_ok(&quiet_conf, &["--stanza=main", "stanza-create"]);
        let enc_repo = scratch.mkdir("enc-repo");
        let enc = |file: &str, pass: &str| {
            env.config_like(
                file,
                &format!(
                    "repo1-path={}\nrepo1-cipher-type=aes-256-gcm\nrepo1-cipher-pass={pass}\n",
                    enc_repo.display()
                ),
                "main",
                &env.src,
            )
        };
        scratch.pgbr_ok(&enc("enc.conf", PASS), &["--stanza=main", "stanza-create"]);
        let wrong_pass_conf = enc("wrong-pass.conf", "not the passphrase");
        Fixture {
            label,
            segment_a,
            segment_b,
            quiet_conf,
            wrong_pass_conf,
            env,
        }
    }

    fn pgbr(&self, conf: &Path, args: &[&str]) -> Output {
        self.env.scratch.pgbr(conf, args)
    }

    /// A copy of the repository (as it is now), with the configuration to use it.
    fn repo_copy(&self, name: &str) -> (PathBuf, PathBuf) {
        let copy = self.env.scratch.path(name);
        run_ok(Command::new("cp").arg("-a").arg(&self.env.repo).arg(&copy));
        let conf = self.env.config_like(
            &format!("{name}.conf"),
            &format!("repo1-path={}\n", copy.display()),
            "main",
            &self.env.src,
        );
        (copy, conf)
    }
}

fn fixture() -> (&'static Fixture, MutexGuard<'static, ()>) {
    common::shared(&FIXTURE, &SERIAL, Fixture::new)
}

/// Overwrites 16 bytes of `file` in its middle.
fn damage(file: &Path) {
    let mut bytes = std::fs::read(file).expect("read");
    let (mid, len) = (bytes.len() / 2, bytes.len());
    for b in &mut bytes[mid..(mid + 16).min(len)] {
        *b ^= 0x5a;
    }
    std::fs::write(file, bytes).expect("write");
}

/// The archived objects of segment `name` under repository `repo`.
fn archived(repo: &Path, name: &str) -> Vec<PathBuf> {
    let dir = repo.join("archive/main/15-1").join(&name[..16]);
    std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.expect("entry").path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}-")))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn exit_1_archive_get_of_a_file_not_in_the_archive() {
    let (f, _turn) = fixture();
    let dest = f.env.scratch.mkdir("get-1").join("RECOVERYXLOG");
    let out = f.pgbr(
        &f.env.conf,
        &[
            "--stanza=main",
            "archive-get",
            "0000000100000000000000FF",
            &dest.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!dest.exists());
}

#[test]
fn exit_2_configuration_error() {
    let (f, _turn) = fixture();
    let text = std::fs::read_to_string(&f.env.conf).expect("conf");
    let conf = f
        .env
        .scratch
        .write_config("typo.conf", &format!("{text}repo1-pth=/x\n"));
    let out = f.pgbr(&conf, &["--stanza=main", "info"]);
    assert_fails(&out, 2, &["typo.conf line", "repo1-pth"], "unknown option");
}

/// `conf`'s text with `pg1-path` set to `path` (or removed).
fn with_pg1_path(f: &Fixture, name: &str, path: Option<&Path>) -> PathBuf {
    let text = std::fs::read_to_string(&f.env.conf).expect("conf");
    let from = format!("pg1-path={}\n", f.env.src.data.display());
    assert!(text.contains(&from));
    let to = path.map_or(String::new(), |p| format!("pg1-path={}\n", p.display()));
    f.env.scratch.write_config(name, &text.replace(&from, &to))
}

#[test]
fn archive_push_of_a_relative_path_outside_pg1_path_exits_2_naming_both_directories() {
    let (f, _turn) = fixture();
    let (src, scratch) = (&f.env.src, &f.env.scratch);
    let elsewhere = scratch.mkdir("elsewhere");
    let conf = with_pg1_path(f, "elsewhere.conf", Some(&elsewhere));
    let name = f.segment_a.file_name().expect("name").to_string_lossy();
    let rel = format!("pg_wal/{name}");
    // As PostgreSQL runs it: in the data directory, with a path relative to it.
    let run_in_data = |conf: &Path| {
        as_pg(&scratch.pgbr)
            .current_dir(&src.data)
            .arg(format!("--config={}", conf.display()))
            .args(["--stanza=main", "archive-push", &rel])
            .output()
            .expect("run pgbr")
    };
    let data = std::fs::canonicalize(&src.data).expect("canonical data directory");
    assert_fails(
        &run_in_data(&conf),
        2,
        &[
            &rel,
            &data.display().to_string(),
            &format!("pg1-path is {}", elsewhere.display()),
        ],
        "pg1-path elsewhere",
    );
    // Without pg1-path there is nothing to resolve it against (as pgBackRest).
    let bare = with_pg1_path(f, "no-pg1-path.conf", None);
    assert_fails(&run_in_data(&bare), 2, &[&rel, "'pg1-path'"], "no pg1-path");

    // The archiver of a cluster whose pg1-path points elsewhere: the server log says why.
    let failed = || src.psql("select failed_count from pg_stat_archiver");
    let before = failed();
    src.psql(&format!(
        "alter system set archive_command = '{} --config={} --stanza=main archive-push %p'",
        scratch.pgbr.display(),
        conf.display()
    ));
    src.psql("select pg_reload_conf()");
    src.psql("create table relative_push as select 1 as x; select pg_switch_wal()");
    let started = Instant::now();
    while failed() == before {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the archiver did not fail; log:\n{}",
            src.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    src.psql("alter system reset archive_command");
    src.psql("select pg_reload_conf()");
    let log = src.log();
    let message = format!(
        "in directory {}, but pg1-path is {}",
        data.display(),
        elsewhere.display()
    );
    assert!(
        log.contains(&message),
        "{message} not in the server log:\n{log}"
    );
    assert!(log.contains("failed with exit code 2"), "{log}");
    src.switch_and_wait_archived();
}

#[test]
fn exit_3_stanza_missing() {
    let (f, _turn) = fixture();
    let out = f.pgbr(&f.env.conf, &["--stanza=nope", "info"]);
    assert_fails(&out, 3, &["'nope'", "stanza-create"], "unknown stanza");
}

#[test]
fn exit_4_wal_of_another_cluster() {
    let (f, _turn) = fixture();
    let name = f.segment_b.file_name().expect("name").to_string_lossy();
    let out = f.pgbr(
        &f.quiet_conf,
        &[
            "--stanza=main",
            "archive-push",
            &f.segment_b.display().to_string(),
        ],
    );
    assert_fails(
        &out,
        4,
        &[&name, "'main'", "system"],
        "another cluster's WAL",
    );
    assert!(archived(&f.env.scratch.path("quiet-repo"), &name).is_empty());
}

#[test]
fn exit_5_wrong_passphrase() {
    let (f, _turn) = fixture();
    let out = f.pgbr(&f.wrong_pass_conf, &["--stanza=main", "info"]);
    assert_fails(&out, 5, &["repo1-cipher-pass"], "wrong passphrase");
}

#[test]
fn exit_6_corrupt_data_and_14_when_verify_finds_it() {
    let (f, _turn) = fixture();
    let (copy, conf) = f.repo_copy("repo-bad-info");
    for name in ["backup.info", "backup.info.copy"] {
        damage(&copy.join("backup/main").join(name));
    }
    let out = f.pgbr(&conf, &["--stanza=main", "expire"]);
    assert_fails(
        &out,
        6,
        &["backup.info"],
        "expire with both backup.info copies bad",
    );
    // verify reports problems with 14, this one too.
    let out = f.pgbr(&conf, &["--stanza=main", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(14),
        "verify with both backup.info copies bad: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exit_7_wal_already_archived_with_other_contents() {
    let (f, _turn) = fixture();
    let name = f.segment_a.file_name().expect("name").to_string_lossy();
    let push = |file: &Path| {
        f.pgbr(
            &f.quiet_conf,
            &["--stanza=main", "archive-push", &file.display().to_string()],
        )
    };
    let out = push(&f.segment_a);
    assert!(out.status.success(), "{out:?}");
    let other = f.env.scratch.mkdir("wal-other").join(&*name);
    std::fs::copy(&f.segment_a, &other).expect("copy");
    damage(&other);
    chown_pg(&other);
    let stored = archived(&f.env.scratch.path("quiet-repo"), &name);
    let out = push(&other);
    assert_fails(&out, 7, &[&name, "different contents"], "other contents");
    assert_eq!(archived(&f.env.scratch.path("quiet-repo"), &name), stored);
}

#[test]
fn exit_8_wal_does_not_reach_the_archive_in_time() {
    let (f, _turn) = fixture();
    // The cluster archives into the other repository: the switched segment never arrives here.
    let out = f.pgbr(
        &f.quiet_conf,
        &["--stanza=main", "check", "--archive-timeout=1"],
    );
    assert_fails(&out, 8, &["archive-timeout"], "check");
}

#[test]
fn exit_9_backup_set_refused_by_restore_and_info() {
    let (f, _turn) = fixture();
    let dest = f.env.scratch.mkdir("restore-9");
    let bogus = "20000101-000000F";
    let out = f.pgbr(
        &f.env.conf,
        &[
            "--stanza=main",
            "restore",
            &format!("--set={bogus}"),
            &format!("--pg1-path={}", dest.display()),
        ],
    );
    assert_fails(&out, 9, &[bogus, &f.label], "restore --set");
    let out = f.pgbr(
        &f.env.conf,
        &["--stanza=main", "info", &format!("--set={bogus}")],
    );
    assert_fails(&out, 9, &[bogus, "'main'", &f.label], "info --set");
    // A label that exists shows that backup.
    let text = f.env.scratch.pgbr_ok(
        &f.env.conf,
        &[
            "--stanza=main",
            "info",
            "--output=pgbr-json",
            &format!("--set={}", f.label),
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(common::labels(&json[0]), vec![f.label.clone()]);
}

#[test]
fn exit_10_postgresql_unreachable() {
    let (f, _turn) = fixture();
    let port = common::free_port();
    let out = f.pgbr(
        &f.env.conf,
        &["--stanza=main", "check", &format!("--pg1-port={port}")],
    );
    assert_fails(&out, 10, &[&port.to_string(), "pg1-port"], "check");
}

#[test]
fn exit_11_io_error() {
    let (f, _turn) = fixture();
    let out = f.pgbr(
        &f.env.conf,
        &[
            "--stanza=main",
            "archive-push",
            "/nonexistent/000000010000000000000001",
        ],
    );
    assert_fails(
        &out,
        11,
        &["/nonexistent/000000010000000000000001"],
        "missing file",
    );
}

#[test]
fn exit_12_internal_error_mapping() {
    use pgbr_backup::options::Command as Cmd;
    let e = pgbr_backup::Error::Internal("a worker panicked".into());
    assert_eq!(e.exit_code_for(Cmd::Backup), 12);
    assert_eq!(e.exit_code_for(Cmd::ArchiveGet), 126);
}

#[test]
fn exit_13_lock_held() {
    let (f, _turn) = fixture();
    let dir = f.env.scratch.mkdir("lock");
    let path = dir.join("main.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("lock file");
    chown_pg(&path);
    std::fs::write(&path, format!("{}\n", std::process::id())).expect("pid");
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let out = f.pgbr(&f.env.conf, &["--stanza=main", "expire"]);
    drop(file);
    assert_fails(
        &out,
        13,
        &[&format!("pid {}", std::process::id())],
        "expire while locked",
    );
}

#[test]
fn exit_14_verify_found_a_damaged_wal_file_and_126_archive_get_refuses_it() {
    let (f, _turn) = fixture();
    let (copy, conf) = f.repo_copy("repo-bad-wal");
    let dir = copy.join("archive/main/15-1/0000000100000000");
    let mut segments: Vec<String> = std::fs::read_dir(&dir)
        .expect("archive directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.as_bytes().get(24) == Some(&b'-'))
        .map(|n| n[..24].to_string())
        .collect();
    segments.sort();
    let name = segments.first().expect("an archived segment").clone();
    let objects = archived(&copy, &name);
    assert_eq!(objects.len(), 1, "{objects:?}");
    damage(&objects[0]);
    let out = f.pgbr(&conf, &["--stanza=main", "verify"]);
    assert_eq!(out.status.code(), Some(14), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&name));
    let dest = f.env.scratch.mkdir("get-126").join("RECOVERYXLOG");
    let out = f.pgbr(
        &conf,
        &[
            "--stanza=main",
            "archive-get",
            &name,
            &dest.display().to_string(),
        ],
    );
    assert_fails(&out, 126, &[&name], "archive-get of a damaged file");
    assert!(!dest.exists());
}

#[test]
fn exit_15_stanza_stopped_and_126_for_archive_get() {
    let (f, _turn) = fixture();
    f.env
        .scratch
        .pgbr_ok(&f.env.conf, &["--stanza=main", "stop"]);
    let push = f.pgbr(
        &f.quiet_conf,
        &[
            "--stanza=main",
            "archive-push",
            &f.segment_a.display().to_string(),
        ],
    );
    let name = f.segment_a.file_name().expect("name").to_string_lossy();
    let dest = f.env.scratch.mkdir("get-stopped").join("RECOVERYXLOG");
    let get = f.pgbr(
        &f.env.conf,
        &[
            "--stanza=main",
            "archive-get",
            &name,
            &dest.display().to_string(),
        ],
    );
    f.env
        .scratch
        .pgbr_ok(&f.env.conf, &["--stanza=main", "start"]);
    assert_fails(
        &push,
        15,
        &["stopped", "start"],
        "archive-push while stopped",
    );
    assert_fails(&get, 126, &["stopped"], "archive-get while stopped");
}
