//! Interrupted backups against a real PostgreSQL 15: a backup killed with SIGKILL early, mid-copy
//! or just before its manifest is committed leaves a repository the next backup resumes (reusing
//! what verifies) or cleans, `info` never lists the unfinished one, and the result restores exactly.
//! A restore killed part-way leaves no `global/pg_control`, so PostgreSQL cannot start the
//! half-restored directory, and `restore --delta` finishes it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::{Cluster, Stanza};

type Env = Stanza;

fn setup() -> Env {
    let env = Stanza::new("process-max=1\nrepo1-bundle=n\n");
    env.src.pgbench_init(1);
    env
}

/// A full backup with failpoints `failpoints` (see `pgbr_backup::failpoints`).
fn spawn_backup(env: &Env, failpoints: &str) -> Child {
    spawn_pgbr(env, &["--stanza=main", "backup", "--type=full"], failpoints)
}

/// Starts pgbr as postgres with `args` and failpoints `failpoints`, output discarded.
fn spawn_pgbr<S: AsRef<std::ffi::OsStr>>(env: &Env, args: &[S], failpoints: &str) -> Child {
    let mut c = common::as_pg(&env.scratch.pgbr);
    c.arg(format!("--config={}", env.conf.display()))
        .args(args)
        .env("FAILPOINTS", failpoints);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c.spawn().expect("spawn pgbr")
}

/// Waits for `child`, which a crash point must have killed (SIGKILL, as `kill -9`).
fn crashed(mut child: Child) {
    let status = child.wait().expect("wait");
    assert!(common::was_killed(&status), "not killed: {status}");
}

/// SIGKILL to the pgbr process running `command` (not the runuser wrapper).
fn kill_pgbr(env: &Env, child: &mut Child, command: &str) {
    let pattern = format!("^{} --config=.* {command}", env.scratch.pgbr.display());
    let st = std::process::Command::new("pkill")
        .args(["-9", "-f", &pattern])
        .status()
        .expect("pkill");
    assert!(st.success(), "no {command} process to kill");
    let _ = child.wait();
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn backup_dirs(repo: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(repo.join("backup/main"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

fn count_objects(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

fn listed_backups(env: &Env) -> Vec<String> {
    let out = env
        .scratch
        .pgbr_ok(&env.conf, &["--stanza=main", "info", "--output=pgbr-json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    json[0]["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["label"].as_str().expect("label").to_string())
        .collect()
}

fn digest(c: &Cluster) -> String {
    c.psql("select md5(string_agg(aid || ':' || abalance, ',' order by aid)) from pgbench_accounts")
}

#[test]
fn killed_backups_are_resumed_or_cleaned_and_the_next_restores_exactly() {
    let env = setup();
    let mut completed = 0;

    // 1. Early: as soon as the backup has recorded that it started.
    crashed(spawn_backup(&env, "backup::after-inprogress=return"));
    assert!(backup_dirs(&env.repo)
        .iter()
        .any(|d| d.join("backup.manifest.inprogress").exists()));
    assert!(
        listed_backups(&env).is_empty(),
        "an unfinished backup must not be listed"
    );
    env.scratch
        .pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    completed += 1;

    // 2. Mid-copy: after a good part of the files is stored and recorded (300 files in more
    // than 4 s: progress is recorded every 2 s).
    env.src
        .psql("update pgbench_accounts set abalance = abalance + 1 where aid < 100");
    crashed(spawn_backup(
        &env,
        "backup::copy-file=300*sleep(15)->return",
    ));
    assert_eq!(listed_backups(&env).len(), completed);
    let out = env
        .scratch
        .pgbr(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    let reused = files_reused(&log);
    assert!(reused > 100, "only {reused} files reused: {log}");
    completed += 1;

    // 3. Just before the manifest is committed.
    env.src
        .psql("update pgbench_accounts set abalance = abalance + 1 where aid < 200");
    crashed(spawn_backup(&env, "backup::before-commit=return"));
    assert!(backup_dirs(&env.repo)
        .iter()
        .filter(|d| !d.join("backup.manifest").exists())
        .any(|d| d.join("pg_data/backup_label.zst").exists()));
    assert_eq!(listed_backups(&env).len(), completed);
    let out = env
        .scratch
        .pgbr(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    completed += 1;
    assert_eq!(listed_backups(&env).len(), completed);
    let want = digest(&env.src);

    env.verify_ok();

    let c = env.restore_and_start("restored", &["--type=immediate", "--target-action=promote"]);
    assert_eq!(digest(&c), want);
}

/// How many files the backup logged in `log` reused from the attempt it resumed.
fn files_reused(log: &str) -> u64 {
    log.lines()
        .find(|l| l.contains("resumed an interrupted attempt"))
        .and_then(|l| l.split(": ").nth(1))
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the backup must resume: {log}"))
}

/// The progress record of the backup in `dir`, as JSON (`Null` while there is none).
fn progress_record(dir: &Path) -> serde_json::Value {
    let Ok(stored) = std::fs::read(dir.join("backup.manifest.inprogress")) else {
        return serde_json::Value::Null;
    };
    // Stored zstd-compressed (this repository is not encrypted).
    zstd::decode_all(&stored[..])
        .ok()
        .and_then(|text| serde_json::from_slice(&text).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The piece (bundle id, offset, length) of a bundled file the progress record of the backup in
/// `dir` lists that a resumed backup checks rather than stores again: one last changed before
/// the attempt began (a file changed since is stored again anyway).
fn reusable_piece(dir: &Path) -> Option<(u64, u64, u64)> {
    let record = progress_record(dir);
    let began = record["manifest"]["backup"]["timestamp_start"].as_i64()?;
    record["manifest"]["files"]
        .as_array()?
        .iter()
        .filter(|f| f["mtime"].as_i64().is_some_and(|m| m < began))
        .find_map(|f| {
            let b = &f["bundle"];
            Some((
                b["id"].as_u64()?,
                b["offset"].as_u64()?,
                b["length"].as_u64()?,
            ))
        })
}

/// With bundles (on by default), an attempt killed after storing some is resumed: the files of
/// each of its bundles are checked from one read of the bundle, those of a damaged bundle piece
/// are stored again, and the result verifies and restores exactly.
#[test]
fn a_resumed_backup_checks_bundled_files_and_stores_a_damaged_one_again() {
    // Small bundles: many of them, stored one at a time.
    let env = Stanza::new("process-max=1\nrepo1-bundle-size=256k\n");
    env.src.pgbench_init(1);
    let attempt = || {
        backup_dirs(&env.repo)
            .into_iter()
            .find(|d| !d.join("backup.manifest").exists())
    };
    let mut child = spawn_backup(&env, "backup::copy-file=sleep(300)");
    // Damaging a piece of a file changed since the attempt began would prove nothing: that file
    // is stored again anyway (into a bundle), checked or not.
    wait_for(
        "the progress record to hold a bundled file to reuse",
        || attempt().is_some_and(|d| reusable_piece(&d).is_some()),
    );
    kill_pgbr(&env, &mut child, "backup");
    let dir = attempt().expect("the interrupted attempt");
    let (id, offset, length) = reusable_piece(&dir).expect("a bundled file to reuse");
    let bundle = dir.join(format!("bundle/{id}"));
    let mut bytes = std::fs::read(&bundle).expect("read bundle");
    let middle = usize::try_from(offset + length / 2).expect("offset");
    bytes[middle] ^= 0x55;
    std::fs::write(&bundle, bytes).expect("write bundle");

    let out = env
        .scratch
        .pgbr(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(files_reused(&log) > 0, "{log}");
    // The damaged file was stored again, on its own (small files are otherwise all bundled).
    let mut whole = Vec::new();
    let mut stack = vec![dir.join("pg_data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let (path, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".zst") && name != "backup_label.zst" {
                whole.push(path);
            }
        }
    }
    assert!(
        !whole.is_empty(),
        "no file of the damaged bundle was stored again: {log}"
    );
    let want = digest(&env.src);
    // A reused damaged piece would fail verify.
    env.verify_ok();
    let c = env.restore_and_start("restored", &["--type=immediate", "--target-action=promote"]);
    assert_eq!(digest(&c), want);
}

#[test]
fn pg_control_is_restored_last_and_a_killed_restore_is_finished_by_delta() {
    let env = setup();
    env.scratch
        .pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    let want = digest(&env.src);
    let args = |dir: &Path, delta: bool| {
        let mut a = vec![
            "--stanza=main".to_string(),
            "restore".into(),
            "--type=immediate".into(),
            "--target-action=promote".into(),
            format!("--pg1-path={}", dir.display()),
        ];
        if delta {
            a.push("--delta".into());
        }
        a
    };
    let slow = "restore::copy-file=sleep(5)";
    let spawn_restore = |dir: &Path| spawn_pgbr(&env, &args(dir, false), slow);

    // 1. Watched: pg_control appears only once every other file is in place.
    let watched = env.scratch.mkdir("watched");
    let mut child = spawn_restore(&watched);
    let mut files_when_startable = None;
    while child.try_wait().expect("wait").is_none() {
        if watched.join("global/pg_control").exists() {
            files_when_startable = Some(count_objects(&watched));
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "the watched restore failed");
    let total = count_objects(&watched);
    let seen = files_when_startable.unwrap_or(total);
    // Only the recovery settings (recovery.signal, postgresql.auto.conf) may come after it.
    assert!(
        seen + 2 >= total,
        "pg_control appeared with {seen} of {total} files in place"
    );

    // 2. Killed part-way: not startable; --delta finishes it (and the result is exact, below).
    let dir = env.scratch.mkdir("restored");
    let mut child = spawn_restore(&dir);
    wait_for("files being restored", || {
        count_objects(&dir.join("base")) > 200
    });
    kill_pgbr(&env, &mut child, "restore");
    assert!(
        !dir.join("global/pg_control").exists(),
        "a half-restored directory must not hold pg_control"
    );
    let delta = args(&dir, true);
    let refs: Vec<&str> = delta.iter().map(String::as_str).collect();
    env.scratch.pgbr_ok(&env.conf, &refs);
    assert!(dir.join("global/pg_control").exists());

    // 3. A delta restore killed part-way over a complete cluster: not startable either.
    let mut delta_force = args(&dir, true);
    delta_force.push("--force".into());
    let mut child = spawn_pgbr(&env, &delta_force, slow);
    wait_for("the old pg_control to go", || {
        !dir.join("global/pg_control").exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    kill_pgbr(&env, &mut child, "restore");
    assert!(
        !dir.join("global/pg_control").exists(),
        "a half-rewritten directory must not hold pg_control"
    );
    env.scratch.pgbr_ok(&env.conf, &refs);
    let restored = Cluster::start_restored(&env.scratch, "restored", dir.clone());
    assert_eq!(digest(&restored), want);
}

/// The progress record is the only list of what a backup stored: when it loses entries (a
/// failpoint drops those lent to a snapshot), the backup fails instead of committing a manifest
/// without them, and the next backup is complete.
#[test]
fn a_backup_whose_progress_record_lost_entries_is_not_committed() {
    let env = setup();
    let mut c = common::as_pg(&env.scratch.pgbr);
    c.arg(format!("--config={}", env.conf.display()))
        .args(["--stanza=main", "backup", "--type=full"])
        // Long enough (about 1,000 files) for snapshots to be taken while files are stored.
        .env(
            "FAILPOINTS",
            "backup::copy-file=sleep(5);backup::lose-snapshot-entries=return",
        );
    let out = c.output().expect("run pgbr");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{err}");
    assert!(
        err.contains("were lost; the backup is not committed"),
        "{err}"
    );
    assert!(
        listed_backups(&env).is_empty(),
        "a backup missing entries must not be listed"
    );
    env.scratch
        .pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    assert_eq!(listed_backups(&env).len(), 1);
    env.scratch.pgbr_ok(&env.conf, &["--stanza=main", "verify"]);
}

/// Every file below `dir` whose name is a partly written object's (`<name>#<digits>`).
fn partial_objects(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if e
                .file_name()
                .to_str()
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                found.push(path);
            }
        }
    }
    found
}

/// A backup killed while it writes an object leaves the object's partly written piece
/// (`<name>#<digits>`) in its directory; the backup that resumes it removes every such piece of
/// its directory, and the repository verifies.
#[test]
fn a_resumed_backup_removes_what_the_killed_attempt_was_writing() {
    let env = Stanza::new("process-max=1\nrepo1-bundle=n\n");
    // pgbench_accounts (about 64 MB) is stored first, as blocks, for a good while.
    env.src.pgbench_init(5);
    let mut child = spawn_backup(&env, "");
    wait_for("an object being written after the progress record", || {
        backup_dirs(&env.repo).iter().any(|d| {
            d.join("backup.manifest.inprogress").exists() && !partial_objects(d).is_empty()
        })
    });
    kill_pgbr(&env, &mut child, "backup");
    let left = partial_objects(&env.repo.join("backup/main"));
    assert!(!left.is_empty(), "the killed backup left no partial object");
    let out = env
        .scratch
        .pgbr(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    files_reused(&log);
    let still = partial_objects(&env.repo.join("backup/main"));
    assert!(still.is_empty(), "left behind: {still:?} (were {left:?})");
    assert!(log.contains("partly written object(s)"), "{log}");
    env.verify_ok();
}
