//! The stanza lock against a real PostgreSQL 15: a second concurrent backup fails at once naming
//! the holder's pid; a `kill -9`ed backup's lock does not block the next one; concurrent
//! archive-push of the same segment store it once, intact. The stanza's claim in the repository:
//! two backups with their own lock-paths (two hosts) on one repository never run at once, and a
//! stale claim is taken over (at once on its own host, after 30 minutes from another).

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, Stanza};

fn spawn_backup(scratch: &Scratch, conf: &Path) -> Child {
    common::as_pg(&scratch.pgbr)
        .arg(format!("--config={}", conf.display()))
        .args(["--stanza=main", "backup", "--type=full"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backup")
}

/// Waits until the lock file names a pid; returns it.
fn wait_for_holder(lock_file: &Path, child: &mut Child) -> i32 {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(lock_file) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("backup ended ({status}) before it was seen holding the lock");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no lock holder"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn concurrent_backups_and_a_killed_holder() {
    let mut env = Stanza::new("");
    env.add_stanza("other");
    let (scratch, conf, repo) = (&env.scratch, &env.conf, &env.repo);
    env.src.pgbench_init(2);
    let lock_dir = scratch.path("lock");
    let lock_file = lock_dir.join("main.lock");

    // Two concurrent backups: the second fails at once, naming the first one's pid.
    let mut first = spawn_backup(scratch, conf);
    let pid = wait_for_holder(&lock_file, &mut first);
    let t = Instant::now();
    let second = scratch.pgbr(conf, &["--stanza=main", "backup", "--type=full"]);
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(second.status.code(), Some(13), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains(&format!(
            "another pgbr process (pid {pid}) holds the lock on stanza 'main'"
        )),
        "{err}"
    );
    assert!(err.contains(&lock_file.display().to_string()), "{err}");
    // expire and stanza-create are refused the same way while the backup runs.
    let e = scratch.pgbr(conf, &["--stanza=main", "expire"]);
    if first.try_wait().expect("wait").is_none() {
        assert_eq!(e.status.code(), Some(13));
    }
    let out = first.wait_with_output().expect("first backup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A backup killed with -9 leaves its pid in the lock file; the next backup takes over.
    let mut killed = spawn_backup(scratch, conf);
    let pid = wait_for_holder(&lock_file, &mut killed);
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling the pgbr process we started (its pid is in the lock file).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let _ = killed.wait();
    assert_eq!(
        std::fs::read_to_string(&lock_file)
            .expect("lock file")
            .trim(),
        pid.to_string()
    );
    let t = Instant::now();
    scratch.pgbr_ok(conf, &["--stanza=main", "backup", "--type=full"]);
    assert!(t.elapsed() < Duration::from_secs(60));
    let v = scratch.pgbr_ok(conf, &["--stanza=main", "verify"]);
    assert!(v.contains("status: ok"), "{v}");

    // Concurrent archive-push of one segment (to a second stanza): all succeed, one object,
    // and archive-get returns the same bytes.
    scratch.pgbr_ok(conf, &["--stanza=other", "stanza-create"]);
    let wal_dir = env.src.data.join("pg_wal");
    let segment = std::fs::read_dir(&wal_dir)
        .expect("pg_wal")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24)
        .min()
        .expect("a segment");
    let copy = scratch.path(&segment);
    std::fs::copy(wal_dir.join(&segment), &copy).expect("copy segment");
    common::chown_pg(&copy);
    let pushers: Vec<Child> = (0..6)
        .map(|_| {
            common::as_pg(&scratch.pgbr)
                .arg(format!("--config={}", conf.display()))
                .args(["--stanza=other", "archive-push"])
                .arg(&copy)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn push")
        })
        .collect();
    for p in pushers {
        let out = p.wait_with_output().expect("push");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stored: Vec<_> =
        std::fs::read_dir(repo.join(format!("archive/other/15-1/{}", &segment[..16])))
            .expect("archive dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&segment))
            .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let got = scratch.path("got");
    scratch.pgbr_ok(
        conf,
        &[
            "--stanza=other",
            "archive-get",
            &segment,
            &got.display().to_string(),
        ],
    );
    assert_eq!(
        std::fs::read(&got).expect("got"),
        std::fs::read(&copy).expect("copy")
    );
    env.src.stop();
}

/// The repository's claim object of stanza `main` (JSON), if there is one.
fn claim(repo: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read(repo.join("backup/main/backup.lock")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Waits until the claim of stanza `main` names the backup's label and the backup recorded its
/// progress (it can be resumed); returns its pid.
fn wait_for_claimed_progress(repo: &Path, child: &mut Child) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(c) = claim(repo) {
            let recorded = c["label"].as_str().is_some_and(|label| {
                repo.join(format!("backup/main/{label}/backup.manifest.inprogress"))
                    .exists()
            });
            if recorded {
                return c["pid"].as_i64().expect("pid") as i32;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("backup ended ({status}) before it recorded its progress");
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no claim");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A backup slowed down by a failpoint (each file waits `delay_ms`), with configuration `conf`.
fn spawn_slow_backup(scratch: &Scratch, conf: &Path, delay_ms: &str) -> Child {
    common::as_pg(&scratch.pgbr)
        .arg(format!("--config={}", conf.display()))
        .args(["--stanza=main", "backup", "--type=full"])
        .env("FAILPOINTS", format!("backup::copy-file=sleep({delay_ms})"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backup")
}

/// Two hosts sharing one repository, simulated by two configurations with their own lock-path:
/// of two backups started together exactly one runs, the other is refused at once naming the
/// claim, the repository and its holder; the repository verifies and the backup restores.
#[test]
fn backups_from_two_lock_paths_on_one_repository_never_run_at_once() {
    let env = Stanza::new("process-max=1\n");
    env.src.pgbench_init(1);
    let other_host = env.scratch.write_config(
        "other-host.conf",
        &std::fs::read_to_string(&env.conf).expect("config").replace(
            &format!("lock-path={}", env.scratch.path("lock").display()),
            &format!("lock-path={}", env.scratch.path("lock-other").display()),
        ),
    );
    let repo_root = std::fs::canonicalize(&env.repo).expect("repo");
    // Started together: the one that claims the stanza second does so while the other one runs
    // (a backup takes seconds, a claim milliseconds).
    let first = spawn_backup(&env.scratch, &env.conf);
    let second = spawn_backup(&env.scratch, &other_host);
    let outs = [
        first.wait_with_output().expect("first"),
        second.wait_with_output().expect("second"),
    ];
    let won: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
    let lost: Vec<_> = outs.iter().filter(|o| !o.status.success()).collect();
    assert_eq!(
        (won.len(), lost.len()),
        (1, 1),
        "{}\n---\n{}",
        String::from_utf8_lossy(&outs[0].stderr),
        String::from_utf8_lossy(&outs[1].stderr)
    );
    let line = common::assert_fails(
        lost[0],
        13,
        &[
            "stanza 'main' is claimed in repo1",
            &repo_root.display().to_string(),
            "backup/main/backup.lock",
            "pid ",
            "on host ",
        ],
        "the second backup",
    );
    eprintln!("{line}");
    assert!(
        claim(&env.repo).is_none(),
        "the claim is removed at the end"
    );
    let backups = common::labels(&common::info(&env.scratch, &env.conf));
    assert_eq!(backups.len(), 1, "{backups:?}");
    env.verify_ok();
    let want = env
        .src
        .psql("select sum(abalance), count(*) from pgbench_accounts");
    let c = env.restore_and_start("restored", &["--type=immediate", "--target-action=promote"]);
    assert_eq!(
        c.psql("select sum(abalance), count(*) from pgbench_accounts"),
        want
    );
}

/// A claim whose holder is gone is taken over with a message: a `kill -9`ed backup's at once on
/// its own host (and the next backup resumes it), another host's only once it has not been
/// renewed for 30 minutes; before that, the backup is refused naming that host.
#[test]
fn stale_claims_are_taken_over_and_another_hosts_live_claim_is_not() {
    let env = Stanza::new("process-max=1\nrepo1-bundle=n\n");
    env.src.pgbench_init(1);
    let (scratch, conf, repo) = (&env.scratch, &env.conf, &env.repo);

    let mut killed = spawn_slow_backup(scratch, conf, "100");
    let pid = wait_for_claimed_progress(repo, &mut killed);
    // SAFETY: signalling the pgbr process we started (its pid is in its claim).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let _ = killed.wait();
    assert_eq!(
        claim(repo).expect("the killed backup's claim")["pid"].as_i64(),
        Some(i64::from(pid))
    );
    let out = scratch.pgbr(conf, &["--stanza=main", "backup", "--type=full"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("took over the stale claim backup/main/backup.lock")
            && log.contains(&format!("its process (pid {pid}) is no longer running")),
        "{log}"
    );
    assert!(log.contains("resumed an interrupted attempt"), "{log}");
    assert!(claim(repo).is_none());

    // Another host's claim, renewed a minute ago: refused, naming that host.
    let now = chrono_now();
    let write_claim = |renewed: i64| {
        let path = repo.join("backup/main/backup.lock");
        let text = serde_json::json!({
            "command": "backup", "label": "20261201-101010F", "host": "db-elsewhere",
            "boot_id": "another-boot", "pid_ns": "pid:[1]", "pid": 4242, "pid_start": 1,
            "started": renewed - 600, "renewed": renewed, "token": "db-elsewhere:4242:1"
        });
        std::fs::write(&path, text.to_string()).expect("write claim");
        common::chown_pg(&path);
    };
    write_claim(now - 60);
    let out = scratch.pgbr(conf, &["--stanza=main", "backup", "--type=incr"]);
    common::assert_fails(
        &out,
        13,
        &[
            "backup/main/backup.lock",
            "backup 20261201-101010F, pid 4242 on host db-elsewhere",
            "renewed 1m0",
        ],
        "a backup while another host holds the claim",
    );
    // expire and stanza-create are refused the same way.
    let out = scratch.pgbr(conf, &["--stanza=main", "expire"]);
    assert_eq!(out.status.code(), Some(13));
    // Not renewed for 31 minutes: taken over.
    write_claim(now - 31 * 60);
    let out = scratch.pgbr(conf, &["--stanza=main", "backup", "--type=incr"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("took over the stale claim") && log.contains("host db-elsewhere"),
        "{log}"
    );
    assert!(claim(repo).is_none());
    env.verify_ok();
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}
