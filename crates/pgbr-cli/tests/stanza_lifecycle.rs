//! `stop`/`start`, `stanza-delete` and `stanza-upgrade` against real PostgreSQL 15 clusters: a
//! stopped stanza refuses every command that changes the repository or moves WAL (exit 15) until
//! `start`; `stop --force` terminates a running pgbr; `stanza-delete` wants a stopped stanza and a
//! stopped server and leaves nothing behind; `stanza-upgrade` to a new cluster keeps the old
//! backups restorable while new WAL and backups go to db-id 2.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, Scratch};

fn conf_for(scratch: &Scratch, file: &str, repo: &Path, c: &Cluster) -> PathBuf {
    scratch.write_config(
        file,
        &format!(
            "[global]\nrepo1-path={}\nlock-path={}\nstart-fast=y\narchive-timeout=30\n[main]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
            repo.display(),
            scratch.path("lock").display(),
            c.data.display(),
            c.port,
            c.socket_dir.display()
        ),
    )
}

fn archiving(scratch: &Scratch, c: &mut Cluster, conf: &Path) {
    c.configure(&format!(
        "archive_mode = on\narchive_command = '{} --config={} --stanza=main archive-push %p'\n",
        scratch.pgbr.display(),
        conf.display()
    ));
    c.start();
}

fn info(scratch: &Scratch, conf: &Path) -> serde_json::Value {
    let text = scratch.pgbr_ok(conf, &["--stanza=main", "info", "--output=json"]);
    serde_json::from_str::<serde_json::Value>(&text).expect("info json")[0].clone()
}

fn labels(info: &serde_json::Value) -> Vec<String> {
    info["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["label"].as_str().expect("label").to_string())
        .collect()
}

fn assert_code(out: &Output, code: i32, text: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(text), "expected {text:?} in: {err}");
}

#[test]
fn stop_start_force_and_stanza_delete() {
    let scratch = Scratch::new();
    let repo = scratch.mkdir("repo");
    let mut src = Cluster::init(&scratch, "src");
    let conf = conf_for(&scratch, "pgbr.conf", &repo, &src);
    archiving(&scratch, &mut src, &conf);
    scratch.pgbr_ok(&conf, &["--stanza=main", "stanza-create"]);
    scratch.pgbr_ok(&conf, &["--stanza=main", "backup", "--type=full"]);
    let lock_dir = scratch.path("lock");

    let out = scratch.pgbr_ok(&conf, &["--stanza=main", "stop"]);
    assert!(out.contains("stanza 'main' stopped"), "{out}");
    assert!(lock_dir.join("main.stop").exists());
    let stopped = "stanza 'main' is stopped: run 'pgbr --stanza=main start'";
    for args in [
        &["--stanza=main", "backup", "--type=full"][..],
        &["--stanza=main", "expire"],
        &["--stanza=main", "stanza-create"],
        &["--stanza=main", "stanza-upgrade"],
    ] {
        assert_code(&scratch.pgbr(&conf, args), 15, stopped);
    }
    // archive-push refuses (PostgreSQL retries later); archive-get fails with 126, not 1, so
    // recovery does not take a stopped stanza for the end of the archive.
    let wal = src.data.join("pg_wal/000000010000000000000001");
    let wal = wal.display().to_string();
    assert_code(
        &scratch.pgbr(&conf, &["--stanza=main", "archive-push", &wal]),
        15,
        stopped,
    );
    let dest = scratch.path("got").display().to_string();
    assert_code(
        &scratch.pgbr(
            &conf,
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
    scratch.pgbr_ok(&conf, &["--stanza=main", "info"]);
    // stanza-delete refuses a running PostgreSQL without --force.
    assert_code(
        &scratch.pgbr(&conf, &["--stanza=main", "stanza-delete"]),
        9,
        "postmaster.pid",
    );
    let out = scratch.pgbr_ok(&conf, &["--stanza=main", "start"]);
    assert!(out.contains("stanza 'main' started"), "{out}");
    assert!(!lock_dir.join("main.stop").exists());
    scratch.pgbr_ok(&conf, &["--stanza=main", "backup", "--type=full"]);
    // stanza-delete of a stanza that is not stopped.
    assert_code(
        &scratch.pgbr(&conf, &["--stanza=main", "stanza-delete", "--force"]),
        15,
        "run 'pgbr --stanza=main stop' before stanza-delete",
    );

    // Without --stanza: every stanza.
    scratch.pgbr_ok(&conf, &["stop"]);
    assert!(lock_dir.join("all.stop").exists());
    assert_code(
        &scratch.pgbr(&conf, &["--stanza=main", "backup", "--type=full"]),
        15,
        "all stanzas are stopped",
    );
    scratch.pgbr_ok(&conf, &["start"]);
    assert!(!lock_dir.join("all.stop").exists());

    // stop --force terminates a running pgbr holding the stanza's lock (an expire slowed down).
    let mut child = common::as_pg(&scratch.pgbr)
        .arg(format!("--config={}", conf.display()))
        .args(["--stanza=main", "expire", "--repo1-retention-full=1"])
        .env("PGBRTEST_EXPIRE_STEP_MS", "20000")
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
    let out = scratch.pgbr_ok(&conf, &["--stanza=main", "stop", "--force"]);
    assert!(
        out.contains(&format!("terminated pgbr process {pid}")),
        "{out}"
    );
    let status = child.wait().expect("wait");
    assert!(!status.success(), "expire was not terminated: {status}");
    assert!(started.elapsed() < Duration::from_secs(15));

    // stanza-delete: stopped, server running -> --force; nothing of the stanza remains.
    let out = scratch.pgbr_ok(&conf, &["--stanza=main", "stanza-delete", "--force"]);
    assert!(out.contains("stanza 'main' deleted"), "{out}");
    assert!(!repo.join("backup/main").exists());
    assert!(!repo.join("archive/main").exists());
    let out = scratch.pgbr_ok(&conf, &["--stanza=main", "stanza-delete", "--force"]);
    assert!(out.contains("does not exist"), "{out}");
    scratch.pgbr_ok(&conf, &["--stanza=main", "start"]);
    assert_code(
        &scratch.pgbr(&conf, &["--stanza=main", "backup", "--type=full"]),
        3,
        "stanza 'main' does not exist",
    );
    // The stanza can be created anew in the emptied place.
    scratch.pgbr_ok(&conf, &["--stanza=main", "stanza-create"]);
    src.stop();
}

#[test]
fn stanza_upgrade_to_a_new_cluster_keeps_old_backups_restorable() {
    let scratch = Scratch::new();
    let repo = scratch.mkdir("repo");
    let mut a = Cluster::init(&scratch, "a");
    let conf_a = conf_for(&scratch, "a.conf", &repo, &a);
    archiving(&scratch, &mut a, &conf_a);
    a.psql("create table t as select g as id from generate_series(1, 1234) g");
    scratch.pgbr_ok(&conf_a, &["--stanza=main", "stanza-create"]);
    scratch.pgbr_ok(&conf_a, &["--stanza=main", "backup", "--type=full"]);
    let label_a = labels(&info(&scratch, &conf_a))[0].clone();
    a.switch_and_wait_archived();
    a.stop();

    // The stanza now points at another cluster (new system id, same version 15).
    let mut b = Cluster::init(&scratch, "b");
    let conf_b = conf_for(&scratch, "b.conf", &repo, &b);
    archiving(&scratch, &mut b, &conf_b);
    assert_code(
        &scratch.pgbr(&conf_b, &["--stanza=main", "backup", "--type=full"]),
        4,
        "is not the one stanza 'main' was created for",
    );
    let out = scratch.pgbr_ok(&conf_b, &["--stanza=main", "stanza-upgrade"]);
    assert!(out.contains("stanza 'main' upgraded: db-id 2"), "{out}");
    let out = scratch.pgbr_ok(&conf_b, &["--stanza=main", "stanza-upgrade"]);
    assert!(out.contains("already up to date"), "{out}");
    let now = info(&scratch, &conf_b);
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
    let now = info(&scratch, &conf_b);
    let all = labels(&now);
    assert_eq!(all.len(), 2, "{now}");
    assert_eq!(all[0], label_a);
    assert_eq!(now["backups"][1]["db_id"], 2, "{now}");
    b.stop();

    // A's old backup restores and starts, replaying A's WAL from 15-1.
    let dst = scratch.mkdir("dst");
    scratch.pgbr_ok(
        &conf_b,
        &[
            "--stanza=main",
            "restore",
            &format!("--set={label_a}"),
            &format!("--pg1-path={}", dst.display()),
        ],
    );
    let mut c = Cluster::existing(&scratch, "dst", dst, scratch.mkdir("dst-sock"));
    c.configure("archive_mode = off\n");
    c.start();
    for _ in 0..300 {
        if c.psql("select pg_is_in_recovery()") == "f" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.psql("select pg_is_in_recovery()"), "f", "{}", c.log());
    assert_eq!(c.psql("select count(*) from t"), "1234");
    c.stop();
}
