//! The stanza lock against a real PostgreSQL 15: a second concurrent backup fails at once naming
//! the holder's pid; a `kill -9`ed backup's lock does not block the next one; concurrent
//! archive-push of the same segment store it once, intact.

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
