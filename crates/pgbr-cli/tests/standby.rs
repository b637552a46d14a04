//! Backup from a standby against real PostgreSQL 15 servers: a streaming replica made with
//! pg_basebackup; the primary starts and stops the backup, files come from the standby once it
//! has replayed past the start, and the restore equals the primary's data.

mod common;

use std::time::Duration;

use common::{assert_fails, Cluster, Scratch};

#[test]
fn backup_from_standby_restores_to_the_primary_data() {
    let scratch = Scratch::new();
    let mut primary = Cluster::init(&scratch, "primary");
    let repo = scratch.mkdir("repo");
    let standby_dir = scratch.path("standby");
    let standby_sock = scratch.mkdir("standby-sock");
    let standby_port = common::free_port();
    let conf = scratch.write_config(
        "pgbr.conf",
        &format!(
            "[global]\nrepo1-path={}\nlock-path={}\nprocess-max=2\nstart-fast=y\narchive-timeout=60\nlog-level-console=info\n[main]\npg1-path={}\npg1-port={}\npg1-socket-path={}\npg2-path={}\npg2-port={}\npg2-socket-path={}\n",
            repo.display(),
            scratch.path("lock").display(),
            primary.data.display(),
            primary.port,
            primary.socket_dir.display(),
            standby_dir.display(),
            standby_port,
            standby_sock.display()
        ),
    );
    primary.configure(&format!(
        "archive_mode = on\narchive_command = '{} --config={} --stanza=main archive-push %p'\n",
        scratch.pgbr.display(),
        conf.display()
    ));
    primary.start();
    scratch.pgbr_ok(&conf, &["--stanza=main", "stanza-create"]);
    primary.pgbench_init(1);

    common::run_ok(
        common::as_pg(format!("{}/pg_basebackup", common::PG_BIN))
            .args(["-X", "stream", "-R", "-c", "fast", "-h"])
            .arg(&primary.socket_dir)
            .args(["-p", &primary.port.to_string(), "-D"])
            .arg(&standby_dir),
    );
    let mut standby = Cluster::existing(&scratch, "standby", standby_dir.clone(), standby_sock);
    standby.port = standby_port;
    standby.configure("archive_mode = off\nhot_standby = on\n");
    standby.start();
    assert_eq!(standby.psql("select pg_is_in_recovery()"), "t");

    common::run_ok(
        common::as_pg(format!("{}/pgbench", common::PG_BIN))
            .args(["-n", "-t", "200", "-h"])
            .arg(&primary.socket_dir)
            .args(["-p", &primary.port.to_string(), "postgres"]),
    );
    let out = scratch.pgbr(
        &conf,
        &["--stanza=main", "backup", "--type=full", "--backup-standby"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("waiting for the standby"));
    primary.switch_and_wait_archived();
    let want = primary.psql(
        "select md5(string_agg(aid || ':' || abalance, ',' order by aid)) from pgbench_accounts",
    );

    // backup-standby without the standby's options is one clear error.
    let bare = scratch.write_config(
        "bare.conf",
        &std::fs::read_to_string(&conf)
            .expect("conf")
            .lines()
            .filter(|l| !l.starts_with("pg2-"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let out = scratch.pgbr(&bare, &["--stanza=main", "backup", "--backup-standby"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg2-path"));

    // pg1 naming the standby (no --backup-standby): backup and check say so, changing nothing.
    let swapped = scratch.write_config(
        "swapped.conf",
        &std::fs::read_to_string(&bare)
            .expect("conf")
            .replace(
                &primary.data.display().to_string(),
                &standby_dir.display().to_string(),
            )
            .replace(
                &format!("pg1-port={}", primary.port),
                &format!("pg1-port={standby_port}"),
            )
            .replace(
                &primary.socket_dir.display().to_string(),
                &standby.socket_dir.display().to_string(),
            ),
    );
    for command in ["backup", "check"] {
        let out = scratch.pgbr(&swapped, &["--stanza=main", command]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains("is a standby") && err.contains("--backup-standby"),
            "{command}: {err}"
        );
    }

    let dir = scratch.mkdir("restored");
    scratch.pgbr_ok(
        &conf,
        &[
            "--stanza=main",
            "restore",
            &format!("--pg1-path={}", dir.display()),
        ],
    );
    let mut restored = Cluster::over(&scratch, "restored", dir.clone());
    restored.configure("archive_mode = off\n");
    restored.start();
    for _ in 0..300 {
        if restored.psql("select pg_is_in_recovery()") == "f" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        restored.psql("select md5(string_agg(aid || ':' || abalance, ',' order by aid)) from pgbench_accounts"),
        want
    );
    // The configuration came from the primary, not the standby's replication settings.
    let auto = std::fs::read_to_string(dir.join("postgresql.auto.conf")).expect("auto.conf");
    assert!(!auto.contains("primary_conninfo"), "{auto}");

    // Errors about the standby name its options (pg2-*), not the primary's.
    let standby_backup = ["--stanza=main", "backup", "--type=full", "--backup-standby"];
    let quiet = |extra: &[&str]| {
        let mut args = standby_backup.to_vec();
        args.extend_from_slice(extra);
        args.push("--log-level-console=error");
        scratch.pgbr(&conf, &args)
    };
    let not_pg1 = |line: &str, what: &str| {
        assert!(!line.contains("pg1-"), "{what}: names pg1-*: {line}");
    };
    // Its replay paused, it never reaches the backup's start.
    standby.psql("select pg_wal_replay_pause()");
    let line = assert_fails(
        &quiet(&["--archive-timeout=2"]),
        8,
        &[
            "standby",
            "pg2-socket-path",
            "pg2-port",
            &standby_port.to_string(),
        ],
        "standby paused",
    );
    not_pg1(&line, "standby paused");
    // Stopped, it cannot be reached.
    standby.stop();
    let line = assert_fails(
        &quiet(&[]),
        10,
        &["pg2-socket-path", "pg2-port", &standby_port.to_string()],
        "standby stopped",
    );
    not_pg1(&line, "standby stopped");
}
