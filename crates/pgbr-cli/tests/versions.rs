//! Every supported PostgreSQL major (12 to 18) on a real server: stanza-create, check, a full and
//! an incremental backup of a cluster with a tablespace, WAL through archive_command
//! (archive-push) and restore_command (archive-get), verify, a point-in-time restore to a time
//! and a restore of the latest state, each compared with the source by a query-based
//! fingerprint. One test per major, so the majors run in parallel. Also: a major pgbr does not
//! support is refused up front, and a WAL that does not reach the archive is explained by
//! pg_stat_archiver.

mod common;

use std::time::{Duration, Instant};

use common::versions::pg_bin;
use common::{assert_fails, labels, Cluster, Setup, Stanza};

/// The tables of the data set, each with an `id` key.
const TABLES: [&str; 3] = ["items", "notes", "in_ts"];

/// Count and md5 of every row, in key order, of each table of [`TABLES`].
fn fingerprint(c: &Cluster) -> String {
    let parts: Vec<String> = TABLES
        .iter()
        .map(|t| {
            format!(
                "(select '{t}:' || count(*) || ':' || coalesce(md5(string_agg(r::text, ',' order by r.id)), '') from {t} r)"
            )
        })
        .collect();
    c.psql(&format!("select {}", parts.join(" || ' ' || ")))
}

/// The time now on the server, as a restore `--target`.
fn server_time(c: &Cluster) -> String {
    c.psql(
        "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )
}

/// Restores stanza `main` with `args` into a new directory `name` (its tablespace into
/// `name-ts`), starts it and waits for recovery to end.
fn restore(env: &Stanza, name: &str, ts_oid: &str, args: &[&str]) -> Cluster {
    let ts = env.scratch.mkdir(&format!("{name}-ts"));
    let map = format!("--tablespace-map={ts_oid}={}", ts.display());
    let mut all = vec![map.as_str()];
    all.extend_from_slice(args);
    env.restore_and_start(name, &all)
}

/// What a major's run took, printed for the matrix's table of times.
fn report(major: u32, started: Instant, steps: &[(&str, Duration)]) {
    let steps: Vec<String> = steps
        .iter()
        .map(|(what, d)| format!("{what} {:.1}s", d.as_secs_f64()))
        .collect();
    eprintln!(
        "PostgreSQL {major}: {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        steps.join(", ")
    );
}

/// The whole round trip on PostgreSQL `major`.
fn round_trip(major: u32) {
    let bin = pg_bin(major);
    let started = Instant::now();
    let mut steps = Vec::new();
    let mut step = |what: &'static str, since: &mut Instant| {
        steps.push((what, since.elapsed()));
        *since = Instant::now();
    };
    let mut at = Instant::now();
    let env = Stanza::setup(Setup {
        pg_bin: Some(&bin),
        ..Setup::default()
    });
    let (src, run) = (&env.src, |args: &[&str]| {
        let mut all = vec!["--stanza=main"];
        all.extend_from_slice(args);
        env.scratch.pgbr_ok(&env.conf, &all)
    });
    let version = src.psql("select current_setting('server_version_num')::int / 10000");
    assert_eq!(
        version,
        major.to_string(),
        "the server in {}",
        bin.display()
    );
    step("initdb+stanza-create", &mut at);
    run(&["check"]);
    step("check", &mut at);

    let ts_dir = env.scratch.mkdir("ts");
    src.psql(&format!(
        "create tablespace outside location '{}'",
        ts_dir.display()
    ));
    let ts_oid = src.psql("select oid from pg_tablespace where spcname = 'outside'");
    src.psql("create table items (id int primary key, qty int, name text)");
    src.psql("insert into items select g, g % 17, md5(g::text) from generate_series(1, 5000) g");
    src.psql("create table notes (id int primary key, body text)");
    src.psql("insert into notes select g, repeat('n', g % 50) from generate_series(1, 500) g");
    src.psql("create table in_ts (id int primary key, v text) tablespace outside");
    src.psql("insert into in_ts select g, md5(g::text) from generate_series(1, 2000) g");
    run(&["backup", "--type=full"]);
    step("full", &mut at);

    src.psql("update items set qty = qty + 1 where id % 10 = 0");
    src.psql("delete from notes where id > 450");
    src.psql("insert into in_ts select g, 'incr' from generate_series(2001, 2500) g");
    run(&["backup", "--type=incr"]);
    step("incr", &mut at);
    let info = common::info(&env.scratch, &env.conf);
    assert_eq!(labels(&info).len(), 2, "{info}");
    assert_eq!(info["backups"][1]["backup_type"], "incr", "{info}");

    // Changes after the incremental: those before the target time are what PITR must bring back.
    src.psql("insert into items select g, 1, 'before target' from generate_series(5001, 5100) g");
    src.psql("update notes set body = 'before target' where id < 10");
    std::thread::sleep(Duration::from_millis(300));
    let target = server_time(src);
    let at_target = fingerprint(src);
    std::thread::sleep(Duration::from_millis(300));
    src.psql("insert into items select g, 2, 'after target' from generate_series(5101, 5200) g");
    src.psql("delete from in_ts where id <= 100");
    src.switch_and_wait_archived();
    let latest = fingerprint(src);
    assert_ne!(latest, at_target);
    step("changes", &mut at);

    env.verify_ok();
    step("verify", &mut at);

    let pitr = restore(
        &env,
        "pitr",
        &ts_oid,
        &[
            "--type=time",
            &format!("--target={target}"),
            "--target-action=promote",
        ],
    );
    assert_eq!(fingerprint(&pitr), at_target, "PITR to {target}");
    drop(pitr);
    step("restore to time", &mut at);

    let restored = restore(&env, "latest", &ts_oid, &[]);
    assert_eq!(fingerprint(&restored), latest, "latest restore");
    step("restore latest", &mut at);
    report(major, started, &steps);
}

#[test]
fn postgresql_12() {
    round_trip(12);
}

#[test]
fn postgresql_13() {
    round_trip(13);
}

#[test]
fn postgresql_14() {
    round_trip(14);
}

#[test]
fn postgresql_15() {
    round_trip(15);
}

#[test]
fn postgresql_16() {
    round_trip(16);
}

#[test]
fn postgresql_17() {
    round_trip(17);
}

#[test]
fn postgresql_18() {
    round_trip(18);
}

/// PostgreSQL 11 (older than the supported range): stanza-create and check say so at once,
/// naming the major and the range.
#[test]
fn an_unsupported_major_is_refused_by_stanza_create_and_check() {
    let bin = pg_bin(11);
    // A stanza of a supported cluster, whose configuration is then pointed at PostgreSQL 11.
    let env = Stanza::new("");
    let mut old = Cluster::init_in(&env.scratch, "pg11", &bin, &[]);
    old.configure("");
    old.start();
    let conf = env.config_for("pg11.conf", &old);
    let needles = ["PostgreSQL 11 is not supported", "12 to 18"];
    for command in ["stanza-create", "check"] {
        let out = env.scratch.pgbr(&conf, &["--stanza=main", command]);
        assert_fails(&out, 10, &needles, command);
    }
}

/// When WAL does not reach the archive, check and backup name the archiver's failure from
/// pg_stat_archiver, and archive-push's own error.
#[test]
fn a_failing_archiver_is_named_by_check_and_backup() {
    let env = Stanza::setup(Setup {
        quiet: true,
        ..Setup::default()
    });
    let src = &env.src;
    // pgbr's archive-push, pointed at a repository without the stanza.
    src.psql(&format!(
        "alter system set archive_command = 'PGBR_REPO1_PATH=/nonexistent {} --config={} --stanza=main archive-push %p'",
        env.scratch.pgbr.display(),
        env.conf.display()
    ));
    src.psql("select pg_reload_conf()");
    let wait = ["--archive-timeout=3"];
    for command in [&["check"][..], &["backup", "--type=full"][..]] {
        let mut args = vec!["--stanza=main"];
        args.extend_from_slice(command);
        args.extend_from_slice(&wait);
        let out = env.scratch.pgbr(&env.conf, &args);
        let line = assert_fails(
            &out,
            8,
            &[
                "did not reach",
                "pg_stat_archiver",
                "archive_command failed",
                "archive-push's last error",
                "pg_wal/",
            ],
            command[0],
        );
        eprintln!("{}: {line}", command[0]);
    }
}
