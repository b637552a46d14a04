//! pgbr takes a stanza over from pgBackRest: the pgBackRest repository as repo1, pgbr's own as
//! repo2 (see the test binary's documentation).

use std::path::Path;

use super::{digest, Oracle};
use common::faults::fingerprint;

use super::common;

/// pgbr takes the stanza over: the pgBackRest repository as repo1, pgbr's own as repo2.
pub(super) fn take_over(oracle: &Oracle, target_digest: &str) {
    let old = oracle.scratch.path("repo-cbc-zst-bundle");
    let before = fingerprint(&old);
    let new_repo = oracle.scratch.mkdir("repo-pgbr");
    let conf = oracle.pgbr_conf(
        "pgbr-takeover.conf",
        "cbc-zst-bundle",
        &format!("repo2-path={}\n", new_repo.display()),
    );
    let created = oracle
        .scratch
        .pgbr_ok(&conf, &["--stanza=main", "stanza-create"]);
    assert!(
        created.contains("pgBackRest's") || created.is_empty(),
        "{created}"
    );
    // Writes to the pgBackRest repository are refused, and change nothing there.
    for args in [
        &["backup", "--repo=1"][..],
        &["expire", "--repo=1"],
        &["check", "--repo=1"],
    ] {
        let out = oracle
            .scratch
            .pgbr(&conf, &[&["--stanza=main"][..], args].concat());
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("pgBackRest wrote this repository"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    oracle.src.psql(&format!(
        "alter system set archive_command = '{} --config={} --stanza=main archive-push %p'",
        oracle.scratch.pgbr.display(),
        conf.display()
    ));
    oracle.src.psql("select pg_reload_conf()");
    oracle
        .src
        .psql("insert into t values (-3, 'archived by pgbr')");
    oracle.src.switch_and_wait_archived();
    oracle.scratch.pgbr_ok(
        &conf,
        &["--stanza=main", "backup", "--repo=2", "--type=full"],
    );
    oracle
        .src
        .psql("insert into t values (-4, 'after the pgbr backup')");
    let (now_digest, now_lsn) = (
        digest(&oracle.src),
        oracle.src.psql("select pg_current_wal_insert_lsn()"),
    );
    oracle.src.switch_and_wait_archived();
    assert_eq!(fingerprint(&old), before, "pgBackRest's repository changed");
    // Without --repo, the newest backup: pgbr's, in repo2.
    let (c, text) = oracle.restore(
        &conf,
        "newest",
        &[
            "--type=lsn",
            &format!("--target={now_lsn}"),
            "--target-action=promote",
        ],
    );
    assert!(text.contains("restoring from repo2"), "{text}");
    assert_eq!(digest(&c), now_digest);
    // pgBackRest's incr, replaying WAL pgBackRest archived and then WAL pgbr archived.
    let (c, text) = oracle.restore(
        &conf,
        "across",
        &[
            "--repo=1",
            "--type=lsn",
            &format!("--target={now_lsn}"),
            "--target-action=promote",
        ],
    );
    assert!(text.contains("restoring from repo1"), "{text}");
    assert_eq!(digest(&c), now_digest);
    expire_keeps_what_pgbackrest_needs(oracle, &conf);
    metrics_of_both(oracle, &conf);
    assert_ne!(now_digest, target_digest);
    assert_eq!(fingerprint(&old), before, "pgBackRest's repository changed");
}

/// `info --output=prometheus` over the pgBackRest repository and pgbr's, read by a Prometheus
/// text-format parser; `verify` has no such output.
fn metrics_of_both(oracle: &Oracle, conf: &Path) {
    let text = oracle
        .scratch
        .pgbr_ok(conf, &["--stanza=main", "info", "--output=prometheus"]);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text format");
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape.samples.iter().find_map(|s| {
            let matches =
                s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
            match (matches, &s.value) {
                (true, prometheus_parse::Value::Gauge(v)) => Some(*v),
                _ => None,
            }
        })
    };
    for (repo, backups) in [("repo1", 3.0), ("repo2", 1.0)] {
        assert_eq!(
            value("pgbr_stanza_up", &[("repo", repo)]),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value("pgbr_backups", &[("repo", repo)]),
            Some(backups),
            "{text}"
        );
        let full = [("repo", repo), ("type", "full")];
        assert!(
            value("pgbr_backup_last_size_bytes", &full).is_some_and(|v| v > 1e6),
            "{text}"
        );
        assert!(
            value("pgbr_backup_last_stop_timestamp_seconds", &full).is_some_and(|v| v > 1.7e9),
            "{text}"
        );
    }
    let out = oracle.scratch.pgbr(
        conf,
        &["--stanza=main", "verify", "--output=prometheus", "--repo=2"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Expire in pgbr's repository (dry run): alone, it would remove the WAL archived between the
/// takeover and its first backup; beside the pgBackRest repository it keeps it (pgBackRest's newest
/// backup needs it to reach the present), and beside a pgBackRest repository it cannot read (a
/// wrong passphrase) it keeps all WAL, with a warning.
fn expire_keeps_what_pgbackrest_needs(oracle: &Oracle, conf: &Path) {
    let text = std::fs::read_to_string(conf).expect("conf");
    let repo2 = oracle.scratch.path("repo-pgbr");
    let alone = oracle.scratch.write_config(
        "pgbr-repo2-alone.conf",
        &format!(
            "[global]\nrepo1-path={}\nlock-path={}\n\n{}",
            repo2.display(),
            oracle.scratch.path("lock-pgbr").display(),
            common::stanza_section("main", &oracle.src)
        ),
    );
    let wrong = oracle.scratch.write_config(
        "pgbr-wrong-pass.conf",
        &text.replace(
            "repo1-cipher-pass=takeover-pass",
            "repo1-cipher-pass=not-the-passphrase",
        ),
    );
    let dry_run = |c: &Path, repo: &str| {
        let out = oracle
            .scratch
            .pgbr(c, &["--stanza=main", "expire", repo, "--dry-run"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (alone_out, _) = dry_run(&alone, "--repo=1");
    assert!(
        alone_out.contains("would expire WAL archive"),
        "{alone_out}"
    );
    let (beside_out, _) = dry_run(conf, "--repo=2");
    assert!(!beside_out.contains("WAL archive"), "{beside_out}");
    let (wrong_out, wrong_err) = dry_run(&wrong, "--repo=2");
    assert!(!wrong_out.contains("WAL archive"), "{wrong_out}");
    assert!(wrong_err.contains("no WAL is expired"), "{wrong_err}");
}
