//! `stop`/`start`, `stanza-delete` and `stanza-upgrade` against real PostgreSQL 15 clusters: a
//! stopped stanza refuses every command that changes the repository or moves WAL (exit 15) until
//! `start`; `stop --force` terminates a running pgbr; `stanza-delete` wants a stopped stanza and a
//! stopped server and leaves nothing behind; `stanza-upgrade` to a new cluster keeps the old
//! backups restorable while new WAL and backups go to db-id 2.

mod common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{archive_command, info, labels, Cluster, Stanza};

fn assert_code(out: &Output, code: i32, text: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(text), "expected {text:?} in: {err}");
}

#[test]
fn stop_start_force_and_stanza_delete() {
    let mut env = Stanza::new("");
    let (scratch, conf, repo) = (&env.scratch, &env.conf, &env.repo);
    scratch.pgbr_ok(conf, &["--stanza=main", "backup", "--type=full"]);
    let lock_dir = scratch.path("lock");

    let out = scratch.pgbr_ok(conf, &["--stanza=main", "stop"]);
    assert!(out.contains("stanza 'main' stopped"), "{out}");
    assert!(lock_dir.join("main.stop").exists());
    let stopped = "stanza 'main' is stopped: run 'pgbr --stanza=main start'";
    for args in [
        &["--stanza=main", "backup", "--type=full"][..],
        &["--stanza=main", "expire"],
        &["--stanza=main", "stanza-create"],
        &["--stanza=main", "stanza-upgrade"],
    ] {
        assert_code(&scratch.pgbr(conf, args), 15, stopped);
    }
    // archive-push refuses (PostgreSQL retries later); archive-get fails with 126, not 1, so
    // recovery does not take a stopped stanza for the end of the archive.
    let wal = env.src.data.join("pg_wal/000000010000000000000001");
    let wal = wal.display().to_string();
    assert_code(
        &scratch.pgbr(conf, &["--stanza=main", "archive-push", &wal]),
        15,
        stopped,
    );
    let dest = scratch.path("got").display().to_string();
    assert_code(
        &scratch.pgbr(
            conf,
            &[
                "--stanza=main",
                "archive-get",
                "000000010000000000000001",
                &dest,
            ],
        ),
        126,
        stopped,
    );
    // info and verify only read: they still work.
    scratch.pgbr_ok(conf, &["--stanza=main", "info"]);
    // stanza-delete refuses a running PostgreSQL without --force.
    assert_code(
        &scratch.pgbr(conf, &["--stanza=main", "stanza-delete"]),
        9,
        "postmaster.pid",
    );
    let out = scratch.pgbr_ok(conf, &["--stanza=main", "start"]);
    assert!(out.contains("stanza 'main' started"), "{out}");
    assert!(!lock_dir.join("main.stop").exists());
    scratch.pgbr_ok(conf, &["--stanza=main", "backup", "--type=full"]);
    // stanza-delete of a stanza that is not stopped.
    assert_code(
        &scratch.pgbr(conf, &["--stanza=main", "stanza-delete", "--force"]),
        15,
        "run 'pgbr --stanza=main stop' before stanza-delete",
    );

    // Without --stanza: every stanza.
    scratch.pgbr_ok(conf, &["stop"]);
    assert!(lock_dir.join("all.stop").exists());
    assert_code(
        &scratch.pgbr(conf, &["--stanza=main", "backup", "--type=full"]),
        15,
        "all stanzas are stopped",
    );
    scratch.pgbr_ok(conf, &["start"]);
    assert!(!lock_dir.join("all.stop").exists());

    // stop --force terminates a running pgbr holding the stanza's lock (an expire paused by a
    // failpoint once it has updated backup.info).
    let mut child = common::as_pg(&scratch.pgbr)
        .arg(format!("--config={}", conf.display()))
        .args(["--stanza=main", "expire", "--repo1-retention-full=1"])
        .env("FAILPOINTS", "expire::after-backup-info=sleep(20000)")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn expire");
    let started = Instant::now();
    let pid = loop {
        let text = std::fs::read_to_string(lock_dir.join("main.lock")).unwrap_or_default();
        if let Ok(pid) = text.trim().parse::<u32>() {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no lock holder"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = scratch.pgbr_ok(conf, &["--stanza=main", "stop", "--force"]);
    assert!(
        out.contains(&format!("terminated pgbr process {pid}")),
        "{out}"
    );
    let status = child.wait().expect("wait");
    assert!(!status.success(), "expire was not terminated: {status}");
    assert!(started.elapsed() < Duration::from_secs(15));

    // stanza-delete: stopped, server running -> --force; nothing of the stanza remains.
    let out = scratch.pgbr_ok(conf, &["--stanza=main", "stanza-delete", "--force"]);
    assert!(out.contains("stanza 'main' deleted"), "{out}");
    assert!(!repo.join("backup/main").exists());
    assert!(!repo.join("archive/main").exists());
    let out = scratch.pgbr_ok(conf, &["--stanza=main", "stanza-delete", "--force"]);
    assert!(out.contains("does not exist"), "{out}");
    scratch.pgbr_ok(conf, &["--stanza=main", "start"]);
    assert_code(
        &scratch.pgbr(conf, &["--stanza=main", "backup", "--type=full"]),
        3,
        "stanza 'main' does not exist",
    );
    // The stanza can be created anew in the emptied place.
    scratch.pgbr_ok(conf, &["--stanza=main", "stanza-create"]);
    env.src.stop();
}

#[test]
fn stanza_upgrade_to_a_new_cluster_keeps_old_backups_restorable() {
    let mut a = Stanza::new("");
    let (scratch, conf_a, repo) = (&a.scratch, &a.conf, &a.repo);
    a.src
        .psql("create table t as select g as id from generate_series(1, 1234) g");
    scratch.pgbr_ok(conf_a, &["--stanza=main", "backup", "--type=full"]);
    let label_a = labels(&info(scratch, conf_a))[0].clone();
    a.src.switch_and_wait_archived();
    a.src.stop();

    // The stanza now points at another cluster (new system id, same version 15).
    let mut b = Cluster::init(scratch, "b");
    let conf_b = a.config_for("b.conf", &b);
    b.configure(&archive_command(scratch, &conf_b));
    b.start();
    assert_code(
        &scratch.pgbr(&conf_b, &["--stanza=main", "backup", "--type=full"]),
        4,
        "is not the one stanza 'main' was created for",
    );
    let out = scratch.pgbr_ok(&conf_b, &["--stanza=main", "stanza-upgrade"]);
    assert!(out.contains("stanza 'main' upgraded: db-id 2"), "{out}");
    let out = scratch.pgbr_ok(&conf_b, &["--stanza=main", "stanza-upgrade"]);
    assert!(out.contains("already up to date"), "{out}");
    let now = info(scratch, &conf_b);
    let ids: Vec<u64> = now["db"]
        .as_array()
        .expect("db")
        .iter()
        .map(|d| d["db_id"].as_u64().expect("db_id"))
        .collect();
    assert_eq!(ids, vec![1, 2], "{now}");
    for file in ["archive/main/archive.info", "backup/main/backup.info"] {
        for copy in ["", ".copy"] {
            let text = std::fs::read_to_string(repo.join(format!("{file}{copy}"))).expect("info");
            let compact: String = text.split_whitespace().collect();
            assert!(compact.contains("\"db_id\":2,"), "{file}{copy}: {text}");
        }
    }

    // New WAL goes to 15-2; a backup of B works; A's backup is still listed.
    b.psql("create table u as select g as id from generate_series(1, 77) g");
    b.switch_and_wait_archived();
    let new_dir = repo.join("archive/main/15-2/0000000100000000");
    assert!(
        std::fs::read_dir(&new_dir).map(|d| d.count()).unwrap_or(0) > 0,
        "no WAL in {}",
        new_dir.display()
    );
    scratch.pgbr_ok(&conf_b, &["--stanza=main", "backup", "--type=full"]);
    let now = info(scratch, &conf_b);
    let all = labels(&now);
    assert_eq!(all.len(), 2, "{now}");
    assert_eq!(all[0], label_a);
    assert_eq!(now["backups"][1]["db_id"], 2, "{now}");
    b.stop();

    // A's old backup restores and starts, replaying A's WAL from 15-1.
    let b = Stanza {
        src: b,
        conf: conf_b,
        ..a
    };
    let mut c = b.restore_and_start("dst", &[&format!("--set={label_a}")]);
    assert_eq!(c.psql("select count(*) from t"), "1234");
    c.stop();
}
