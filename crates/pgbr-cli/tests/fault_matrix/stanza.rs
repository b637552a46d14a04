//! The stanza commands of the fault matrix: `stanza-create`, `stanza-upgrade` and
//! `stanza-delete` killed at each crash point, each on a stanza of its own beside `main`.

use std::path::Path;

use super::{fixture, report, side_stanza, text, Cluster};
use crate::common::faults::{crash, pgbr_fp, verify};
use crate::common::{self, Stanza};

/// Empties the posix repository `repo`.
fn wipe(env: &Stanza, repo: &Path) {
    common::faults::remove(repo);
    env.scratch.mkdir(
        repo.strip_prefix(env.scratch.dir.path())
            .expect("in scratch")
            .to_str()
            .expect("utf-8"),
    );
}

const CREATE_CELLS: &[&str] = &[
    // archive.info is written, its copy is not.
    "repo::before-copy=return",
    "stanza-create::after-archive-info=return",
    // backup.info is written, its copy is not.
    "repo::before-copy=1*off->return",
];

#[test]
fn a_stanza_create_killed_at_any_crash_point_is_completed_by_the_next() {
    let (f, _turn) = fixture();
    let env = &f.env;
    let repo = env.scratch.mkdir("fresh-repo");
    let conf = side_stanza(env, "fresh", &[&repo], "");
    let mut results = Vec::new();
    for failpoints in CREATE_CELLS {
        crash(
            &env.scratch,
            &conf,
            &["--stanza=fresh", "stanza-create"],
            failpoints,
        );
        f.sentinel.assert_untouched(failpoints);
        let out = env
            .scratch
            .pgbr(&conf, &["--stanza=fresh", "stanza-create"]);
        assert!(
            out.status.success(),
            "{failpoints}: stanza-create again: {}",
            text(&out)
        );
        let (code, report) = verify(&env.scratch, &conf, &["--stanza=fresh"]);
        assert_eq!(code, 0, "{failpoints}: {report:#}");
        // The stanza works: a segment goes in and comes back.
        let wal = env.src.data.join("pg_wal");
        let first = env.src.psql("select pg_walfile_name(pg_switch_wal())");
        let seg = env.scratch.path(&first);
        std::fs::copy(wal.join(&first), &seg).expect("copy segment");
        common::chown_pg(&seg);
        env.scratch.pgbr_ok(
            &conf,
            &["--stanza=fresh", "archive-push", &seg.display().to_string()],
        );
        std::fs::remove_file(&seg).expect("remove");
        results.push(format!(
            "{failpoints}: the next stanza-create completes it; verify ok; archive-push works"
        ));
        wipe(env, &repo);
    }
    report("stanza-create", &results);
}

const DELETE_CELLS: &[&str] = &[
    "stanza-delete::after-info=return",
    "stanza-delete::after-backup-dir=return",
];

#[test]
fn a_stanza_delete_killed_at_any_crash_point_leaves_a_missing_stanza_and_the_next_finishes() {
    let (f, _turn) = fixture();
    let env = &f.env;
    let scratch = &env.scratch;
    let repo = scratch.mkdir("del-repo");
    let conf = side_stanza(env, "del", &[&repo], "");
    let mut results = Vec::new();
    for failpoints in DELETE_CELLS {
        scratch.pgbr_ok(&conf, &["--stanza=del", "stanza-create"]);
        scratch.pgbr_ok(
            &conf,
            &[
                "--stanza=del",
                "backup",
                "--type=full",
                "--no-archive-check",
            ],
        );
        scratch.pgbr_ok(&conf, &["--stanza=del", "stop"]);
        crash(
            scratch,
            &conf,
            &["--stanza=del", "stanza-delete", "--force"],
            failpoints,
        );
        f.sentinel.assert_untouched(failpoints);
        // Missing for every command, not half there.
        let out = scratch.pgbr(&conf, &["--stanza=del", "verify"]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{failpoints}: verify: {}",
            text(&out)
        );
        let out = scratch.pgbr(&conf, &["--stanza=del", "info", "--output=pgbr-json"]);
        let listed = text(&out);
        assert!(
            !out.status.success() || listed.contains("missing"),
            "{failpoints}: info: {listed}"
        );
        let done = scratch.pgbr_ok(&conf, &["--stanza=del", "stanza-delete", "--force"]);
        assert!(!repo.join("backup/del").exists() && !repo.join("archive/del").exists());
        scratch.pgbr_ok(&conf, &["--stanza=del", "start"]);
        results.push(format!(
            "{failpoints}: verify exits 3 (stanza missing); the next stanza-delete: {}",
            done.trim()
        ));
    }
    // The place can hold the stanza again.
    scratch.pgbr_ok(&conf, &["--stanza=del", "stanza-create"]);
    report("stanza-delete", &results);
}

/// `stanza-upgrade` cells: failpoints, and whether a backup is refused until the upgrade is
/// finished (backup.info does not record the new cluster yet).
const UPGRADE_CELLS: &[(&str, bool)] = &[
    // archive.info is written, its copy is not.
    ("repo::before-copy=return", true),
    ("stanza-upgrade::after-archive-info=return", true),
    // backup.info is written, its copy is not.
    ("repo::before-copy=1*off->return", false),
];

#[test]
fn a_stanza_upgrade_killed_at_any_crash_point_is_completed_by_the_next() {
    let (f, _turn) = fixture();
    let env = &f.env;
    let scratch = &env.scratch;
    // The cluster the stanza is upgraded to.
    let mut b = Cluster::init(scratch, "upgraded");
    b.configure("archive_mode = off\n");
    b.start();
    let repo = scratch.mkdir("up-repo");
    let conf_a = side_stanza(env, "up", &[&repo], "");
    let conf_b = scratch.write_config(
        "up-b.conf",
        &common::config_text(
            scratch,
            &format!("repo1-path={}\nlog-level-console=info\n", repo.display()),
            "up",
            &b,
        ),
    );
    let backup = ["--stanza=up", "backup", "--type=full", "--no-archive-check"];
    let mut results = Vec::new();
    for (failpoints, refused) in UPGRADE_CELLS {
        scratch.pgbr_ok(&conf_a, &["--stanza=up", "stanza-create"]);
        crash(
            scratch,
            &conf_b,
            &["--stanza=up", "stanza-upgrade"],
            failpoints,
        );
        f.sentinel.assert_untouched(failpoints);
        let (code, report) = verify(scratch, &conf_b, &["--stanza=up"]);
        let errors = common::faults::objects(&report, "errors");
        assert!(
            code == 0 || errors == ["backup/up/backup.info"],
            "{failpoints}: verify: {report:#}"
        );
        let early = if *refused {
            // No backup of a database backup.info does not record: it would make backup.info
            // unreadable.
            let out = pgbr_fp(scratch, &conf_b, &backup, "");
            assert_eq!(out.status.code(), Some(4), "{failpoints}: {}", text(&out));
            assert!(
                text(&out).contains("stanza-upgrade was interrupted"),
                "{}",
                text(&out)
            );
            "a backup is refused (exit 4) until it is finished; "
        } else {
            ""
        };
        let again = scratch.pgbr_ok(&conf_b, &["--stanza=up", "stanza-upgrade"]);
        let (after, report) = verify(scratch, &conf_b, &["--stanza=up"]);
        assert_eq!(
            after, 0,
            "{failpoints}: verify after the upgrade: {report:#}"
        );
        scratch.pgbr_ok(&conf_b, &backup);
        results.push(format!(
            "{failpoints}: verify exits {code} (errors {errors:?}); {early}the next stanza-upgrade: {}; verify ok; backup ok",
            again.trim()
        ));
        wipe(env, &repo);
    }
    b.stop();
    report("stanza-upgrade", &results);
}
