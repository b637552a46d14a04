//! Point-in-time recovery against a real PostgreSQL 15: every target type stops exactly where it
//! should, backups are chosen by target, targets a backup cannot reach and archive gaps are refused
//! before anything is written, and a backup taken on timeline 2 restores.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Cluster, Stanza};

type Env = Stanza;

fn setup() -> Env {
    let env = Stanza::new("");
    env.src.psql("create table marks (id int primary key, txid bigint, at timestamptz default clock_timestamp())");
    env.src.psql("insert into marks values (0, txid_current())");
    env
}

fn insert(c: &Cluster, id: i32) -> String {
    c.psql(&format!(
        "insert into marks (id, txid) values ({id}, txid_current()) returning txid"
    ))
}

/// The ids in `marks`.
fn ids(c: &Cluster) -> Vec<i32> {
    c.psql("select coalesce(string_agg(id::text, ',' order by id), '') from marks")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("id"))
        .collect()
}

/// Restores with `args` into a new directory, starts it, waits for recovery to end, returns the
/// cluster and the ids present.
fn restore_and_read(env: &Env, name: &str, args: &[&str]) -> (Cluster, Vec<i32>) {
    let c = env.restore_and_start(name, args);
    let ids = ids(&c);
    (c, ids)
}

fn upto(n: i32) -> Vec<i32> {
    (0..=n).collect()
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[test]
fn every_target_type_stops_exactly_at_its_target() {
    let env = setup();
    let src = &env.src;
    env.scratch
        .pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    for id in 1..=5 {
        insert(src, id);
    }
    std::thread::sleep(Duration::from_millis(1100));
    let time_target = src.psql(
        "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    );
    std::thread::sleep(Duration::from_millis(1100));
    for id in 6..=10 {
        insert(src, id);
    }
    let xid_target = insert(src, 11);
    insert(src, 12);
    let lsn_target = src.psql("select pg_current_wal_insert_lsn()");
    insert(src, 13);
    insert(src, 14);
    src.psql("select pg_create_restore_point('before-15')");
    for id in 15..=20 {
        insert(src, id);
    }
    src.switch_and_wait_archived();

    let promote = "--target-action=promote";
    let time = format!("--target={time_target}");
    let xid = format!("--target={xid_target}");
    let lsn = format!("--target={lsn_target}");
    // (directory, restore options, last id restored, what)
    let cases = [
        (
            "t-time",
            vec!["--type=time", &time, promote],
            5,
            format!("time target {time_target}"),
        ),
        (
            "t-xid",
            vec!["--type=xid", &xid, promote],
            11,
            format!("xid target {xid_target} (inclusive)"),
        ),
        (
            "t-xid-excl",
            vec!["--type=xid", &xid, "--target-exclusive", promote],
            10,
            format!("xid target {xid_target} (exclusive)"),
        ),
        (
            "t-lsn",
            vec!["--type=lsn", &lsn, promote],
            12,
            format!("lsn target {lsn_target}"),
        ),
        (
            "t-name",
            vec!["--type=name", "--target=before-15", promote],
            14,
            "restore point".into(),
        ),
        (
            "t-immediate",
            vec!["--type=immediate", promote],
            0,
            "immediate: consistent at the backup's end".into(),
        ),
        (
            "t-default",
            vec![],
            20,
            "default: end of the archive".into(),
        ),
    ];
    for (name, args, last, what) in cases {
        let (_c, ids) = restore_and_read(&env, name, &args);
        assert_eq!(ids, upto(last), "{what}");
    }
}

#[test]
fn time_target_picks_newest_backup_before_it_and_refuses_unreachable_targets() {
    let env = setup();
    let src = &env.src;
    let before_all = src.psql(
        "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'",
    );
    std::thread::sleep(Duration::from_millis(1100));
    env.scratch
        .pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    insert(src, 1);
    std::thread::sleep(Duration::from_millis(1100));
    let between = src.psql(
        "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    );
    std::thread::sleep(Duration::from_millis(1100));
    env.scratch
        .pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    insert(src, 2);
    src.switch_and_wait_archived();
    let labels = common::labels(&common::info(&env.scratch, &env.conf));
    assert_eq!(labels.len(), 2);

    // A target between the two backups restores from the first.
    let dir = env.scratch.mkdir("between");
    let out = env.scratch.pgbr(
        &env.conf,
        &[
            "--stanza=main",
            "restore",
            &format!("--pg1-path={}", dir.display()),
            "--type=time",
            &format!("--target={between}"),
            "--target-action=promote",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains(&format!("restore {}", labels[0])), "{log}");

    // A target before every backup: refused, nothing written.
    let dir = env.scratch.mkdir("too-early");
    let out = env.scratch.pgbr(
        &env.conf,
        &[
            "--stanza=main",
            "restore",
            &format!("--pg1-path={}", dir.display()),
            "--type=time",
            &format!("--target={before_all}"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no backup"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_empty_dir(&dir));

    // A target before the chosen backup's consistency point: refused, nothing written.
    let out = env.scratch.pgbr(
        &env.conf,
        &[
            "--stanza=main",
            "restore",
            &format!("--pg1-path={}", dir.display()),
            &format!("--set={}", labels[1]),
            "--type=time",
            &format!("--target={between}"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("before backup") && err.contains(&labels[1]),
        "{err}"
    );
    assert!(is_empty_dir(&dir));
}

#[test]
fn archive_gap_is_refused_before_any_file_is_written() {
    let env = setup();
    let src = &env.src;
    env.scratch
        .pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    for id in 1..=3 {
        insert(src, id);
        src.switch_and_wait_archived();
    }
    // Remove one archived segment after the backup's start.
    let mut segments: Vec<PathBuf> = Vec::new();
    let mut stack = vec![env.repo.join("archive/main")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() > 25 && n.as_bytes()[24] == b'-')
            {
                segments.push(p);
            }
        }
    }
    segments.sort();
    let victim = segments[segments.len() - 2].clone();
    let victim_name = victim.file_name().and_then(|n| n.to_str()).expect("name")[..24].to_string();
    std::fs::remove_file(&victim).expect("remove segment");

    let dir = env.scratch.mkdir("gap");
    let out = env.scratch.pgbr(
        &env.conf,
        &[
            "--stanza=main",
            "restore",
            &format!("--pg1-path={}", dir.display()),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&victim_name),
        "message must name {victim_name}: {err}"
    );
    assert!(is_empty_dir(&dir), "nothing may be written");
    // --force restores anyway, with a warning naming the segment.
    let out = env.scratch.pgbr(
        &env.conf,
        &[
            "--stanza=main",
            "restore",
            "--force",
            &format!("--pg1-path={}", dir.display()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&victim_name));
}

#[test]
fn backup_on_timeline_two_restores() {
    let mut env = setup();
    env.scratch
        .pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    insert(&env.src, 1);
    env.src.switch_and_wait_archived();

    // Restore and promote: the new cluster runs on timeline 2 and archives to the same stanza
    // (the original is stopped first, as after a failover).
    env.src.stop();
    let mut tl2 = Cluster::empty(&env.scratch, "tl2");
    let conf2 = env.config_for("pgbr-tl2.conf", &tl2);
    env.restore_into(
        &mut tl2,
        &[],
        &common::archive_command(&env.scratch, &conf2),
    );
    assert_eq!(ids(&tl2), upto(1));
    assert_eq!(
        tl2.psql("select timeline_id from pg_control_checkpoint()"),
        "2"
    );
    insert(&tl2, 2);
    env.scratch
        .pgbr_ok(&conf2, &["--stanza=main", "backup", "--type=full"]);
    insert(&tl2, 3);
    tl2.switch_and_wait_archived();
    let history = env.scratch.path("00000002.history");
    env.scratch.pgbr_ok(
        &conf2,
        &[
            "--stanza=main",
            "archive-get",
            "00000002.history",
            history.to_str().expect("path"),
        ],
    );
    assert!(std::fs::read_to_string(&history)
        .expect("history")
        .starts_with("1\t"));
    let info = env.scratch.pgbr_ok(&conf2, &["--stanza=main", "info"]);
    assert!(info.contains("timeline 2"), "{info}");

    let env2 = Env {
        src: tl2,
        conf: conf2,
        ..env
    };
    let (c, ids) = restore_and_read(&env2, "tl2-restored", &[]);
    assert_eq!(ids, upto(3));
    assert_eq!(
        c.psql("select timeline_id from pg_control_checkpoint()"),
        "3"
    );
}

#[test]
fn standby_type_follows_the_archive_and_preserve_keeps_recovery_settings() {
    let env = setup();
    let src = &env.src;
    env.scratch
        .pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    insert(src, 1);
    src.switch_and_wait_archived();

    // --type=standby: standby.signal, and the server stays in recovery following the archive.
    let dir = env.scratch.mkdir("as-standby");
    env.scratch.pgbr_ok(
        &env.conf,
        &[
            "--stanza=main",
            "restore",
            "--type=standby",
            &format!("--pg1-path={}", dir.display()),
        ],
    );
    assert!(dir.join("standby.signal").exists());
    assert!(!dir.join("recovery.signal").exists());
    let mut c = Cluster::over(&env.scratch, "as-standby", dir.clone());
    c.configure("archive_mode = off\nhot_standby = on\n");
    c.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while c.psql("select count(*) from marks where id = 1") != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "standby did not replay the archive: {}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(c.psql("select pg_is_in_recovery()"), "t");
    // A segment archived later reaches the standby too.
    insert(src, 2);
    src.switch_and_wait_archived();
    while c.psql("select count(*) from marks where id = 2") != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "standby did not follow the archive: {}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.stop();

    // --type=preserve over it (with --delta): its recovery configuration stays as it was.
    let before = std::fs::read(dir.join("postgresql.auto.conf")).expect("auto.conf");
    env.scratch.pgbr_ok(
        &env.conf,
        &[
            "--stanza=main",
            "restore",
            "--delta",
            "--type=preserve",
            &format!("--pg1-path={}", dir.display()),
        ],
    );
    assert_eq!(
        std::fs::read(dir.join("postgresql.auto.conf")).expect("auto.conf"),
        before
    );
    assert!(dir.join("standby.signal").exists());
}
