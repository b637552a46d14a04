//! Incrementals from WAL summaries on PostgreSQL 17 and 18 (`summarize_wal = on`), on real
//! servers: after 1% of a table's pages changed, an incremental reads less than 5% of the
//! table's size from the data directory, and the table's file restores bit for bit; when a
//! summary is missing, the incremental says so, reads changed files whole, and is still exact;
//! the next one uses the summaries again. One test per major, so they run in parallel.

mod common;

use std::path::PathBuf;

use common::versions::pg_bin;
use common::{Cluster, Setup, Stanza};

/// Rows of the table: about 90 MiB at 37 rows a page.
const ROWS: u64 = 400_000;

/// Count and md5 of the table's rows, in key order.
fn fingerprint(c: &Cluster) -> String {
    c.psql("select count(*) || ':' || md5(string_agg(t::text, ',' order by id)) from t")
}

/// Runs an incremental backup; its log (stderr) and the bytes it read from the data directory.
fn incr(env: &Stanza) -> (String, u64) {
    let out = env
        .scratch
        .pgbr(&env.conf, &["--stanza=main", "backup", "--type=incr"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "incremental failed:\n{log}");
    let read = log
        .lines()
        .find_map(|l| {
            l.split(" stored, ")
                .nth(1)?
                .strip_suffix(" read")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no bytes read in the log:\n{log}"));
    (log, read)
}

/// Settles the table (hint bits, visibility) and flushes it, so that its file on disk is what the
/// next backup's start sees and nothing writes it during the backup.
fn settle(c: &Cluster) {
    c.psql("vacuum t");
    c.psql("checkpoint");
}

/// The table's file (main fork, first segment) under data directory `data`.
fn table_file(c: &Cluster, data: &std::path::Path) -> PathBuf {
    data.join(c.psql("select pg_relation_filepath('t')"))
}

/// Restores the latest backup into `name` without starting it, and checks that the table's file
/// is the source's, bit for bit.
fn restored_table_is_exact(env: &Stanza, name: &str, what: &str) {
    let dir = env.scratch.mkdir(name);
    env.scratch.pgbr_ok(
        &env.conf,
        &[
            "--stanza=main",
            "restore",
            &format!("--pg1-path={}", dir.display()),
        ],
    );
    let source = std::fs::read(table_file(&env.src, &env.src.data)).expect("source table");
    let restored = std::fs::read(table_file(&env.src, &dir)).expect("restored table");
    assert_eq!(source.len(), restored.len(), "{what}: table sizes differ");
    let differing = source
        .chunks(8192)
        .zip(restored.chunks(8192))
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 0, "{what}: pages of the restored table differ");
}

fn summaries_round_trip(major: u32) {
    let bin = pg_bin(major);
    let env = Stanza::setup(Setup {
        pg_bin: Some(&bin),
        ..Setup::default()
    });
    let src = &env.src;
    src.psql("alter system set summarize_wal = on");
    src.psql("alter system set autovacuum = off");
    src.psql("select pg_reload_conf()");
    src.psql(&format!(
        "create table t (id int8 primary key, v int8 not null, pad text not null) with (fillfactor = 90);
         insert into t select i, 0, repeat('x', 150) from generate_series(1, {ROWS}) i"
    ));
    // Everything frozen, so that reading a page later sets no hint bit (which, with page
    // checksums, would log the page and make it changed).
    src.psql("vacuum freeze");
    settle(src);
    let table_size: u64 = src
        .psql("select pg_relation_size('t')")
        .parse()
        .expect("size");
    env.scratch
        .pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);

    // 1% of the pages, together: the summaries name them, and little else is read.
    let first = ROWS / 2;
    src.psql(&format!(
        "update t set v = v + 1 where id between {first} and {}",
        first + ROWS / 100
    ));
    settle(src);
    let (log, read) = incr(&env);
    assert!(
        log.contains("WAL summaries cover"),
        "PostgreSQL {major}: the summaries were not used:\n{log}"
    );
    assert!(
        read * 20 < table_size,
        "PostgreSQL {major}: the incremental read {read} bytes, not less than 5% of the table's {table_size}:\n{log}"
    );
    eprintln!(
        "PostgreSQL {major}: incremental from WAL summaries read {read} bytes ({:.2}% of the table's {table_size})",
        read as f64 * 100.0 / table_size as f64
    );
    restored_table_is_exact(&env, "dst-summarized", "from WAL summaries");

    // Scattered changes with the summaries gone: the incremental says why it does not use them
    // and reads the changed table whole.
    src.psql("update t set v = v + 1 where id % 997 = 0");
    settle(src);
    // Once the summarizer has summarized to that checkpoint, its summaries go: the range from
    // the prior backup's start has a gap.
    let summarized = "select summarized_lsn >= (select redo_lsn from pg_control_checkpoint()) from pg_get_wal_summarizer_state()";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while src.psql(summarized) != "t" {
        assert!(
            std::time::Instant::now() < deadline,
            "the summarizer does not catch up"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let summaries = src.data.join("pg_wal/summaries");
    for entry in std::fs::read_dir(&summaries).expect("summaries") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove summary");
    }
    let (log, read) = incr(&env);
    assert!(
        log.contains("WAL summaries not used") && !log.contains("WAL summaries cover"),
        "PostgreSQL {major}: no fallback:\n{log}"
    );
    assert!(
        read >= table_size,
        "PostgreSQL {major}: the fallback read {read} bytes, less than the table's {table_size}"
    );
    restored_table_is_exact(&env, "dst-fallback", "without summaries");

    // The next incremental, on the fallback's, finds summaries that cover it again. (The new
    // versions of these rows land wherever vacuum left room, so more blocks change.)
    src.psql("update t set v = v + 1 where id between 10 and 2000");
    settle(src);
    let (log, read) = incr(&env);
    assert!(
        log.contains("WAL summaries cover") && read * 2 < table_size,
        "PostgreSQL {major}: summaries not used after the fallback ({read} bytes read):\n{log}"
    );
    restored_table_is_exact(&env, "dst-again", "after the fallback");

    // The whole chain restores and runs, and verifies.
    let expected = fingerprint(src);
    let restored = env.restore_and_start("dst-latest", &[]);
    assert_eq!(fingerprint(&restored), expected, "PostgreSQL {major}");
    env.verify_ok();
}

#[test]
fn postgres_17_incrementals_from_wal_summaries() {
    summaries_round_trip(17);
}

#[test]
fn postgres_18_incrementals_from_wal_summaries() {
    summaries_round_trip(18);
}
