//! `pgbr info --output=json` in pgBackRest's schema, checked against pgBackRest 2.45 itself (the
//! oracle): one PostgreSQL 15 cluster archives to both tools' repositories and both take a full
//! and an incremental backup; the two `info --output=json` have the same keys (pgbr's additions
//! under `pgbr` aside) and the same values wherever the two repositories hold the same thing.

mod common;

use std::collections::BTreeSet;

use common::{as_pg, run_ok, Stanza};
use serde_json::Value;

/// Every key path of `v` (`backup[].info.repository.size`), arrays taken element by element;
/// those under `skip` left out.
fn key_paths(v: &Value, at: &str, skip: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == skip {
                    continue;
                }
                let path = format!("{at}.{k}");
                out.insert(path.clone());
                key_paths(child, &path, skip, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{at}[]"), skip, out);
            }
        }
        _ => {}
    }
}

fn paths(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    key_paths(v, "", "pgbr", &mut out);
    out
}

#[test]
fn info_json_has_pgbackrests_keys_and_values() {
    let env = Stanza::new("");
    let (scratch, src) = (&env.scratch, &env.src);
    let pgbackrest_repo = scratch.mkdir("repo-pgbackrest");
    let pgbackrest_conf = scratch.write_config(
        "pgbackrest.conf",
        &format!(
            "[global]\nrepo1-path={}\nlock-path={}\nlog-level-console=warn\nlog-level-file=off\nstart-fast=y\nrepo1-retention-full=9\n[main]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
            pgbackrest_repo.display(),
            scratch.mkdir("lock-pgbackrest").display(),
            src.data.display(),
            src.port,
            src.socket_dir.display()
        ),
    );
    // WAL to both repositories.
    let script = scratch.path("archive-pgbr-pgbackrest");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{} --config={} --stanza=main archive-push \"$1\" && pgbackrest --config={} --stanza=main archive-push \"$1\"\n",
            scratch.pgbr.display(),
            env.conf.display(),
            pgbackrest_conf.display()
        ),
    )
    .expect("script");
    run_ok(std::process::Command::new("chmod").arg("755").arg(&script));
    let pgbackrest = |args: &[&str]| {
        run_ok(
            as_pg("pgbackrest")
                .arg(format!("--config={}", pgbackrest_conf.display()))
                .arg("--stanza=main")
                .args(args),
        )
    };
    pgbackrest(&["stanza-create"]);
    src.psql(&format!(
        "alter system set archive_command = '{} %p'",
        script.display()
    ));
    src.psql("select pg_reload_conf()");
    src.psql("create table t as select g from generate_series(1, 10000) g");
    for backup_type in ["full", "incr"] {
        let flag = format!("--type={backup_type}");
        scratch.pgbr_ok(&env.conf, &["--stanza=main", "backup", &flag]);
        pgbackrest(&["backup", &flag]);
        src.psql("insert into t select g from generate_series(1, 1000) g");
    }
    src.switch_and_wait_archived();

    let theirs: Value =
        serde_json::from_str(&pgbackrest(&["info", "--output=json"])).expect("pgBackRest JSON");
    let ours: Value = serde_json::from_str(
        &scratch.pgbr_ok(&env.conf, &["--stanza=main", "info", "--output=json"]),
    )
    .expect("pgbr JSON");
    assert_eq!(
        paths(&ours),
        paths(&theirs),
        "ours: {ours:#}\ntheirs: {theirs:#}"
    );

    let (ours, theirs) = (&ours[0], &theirs[0]);
    for pointer in [
        "/name",
        "/cipher",
        "/status",
        "/repo",
        "/db",
        "/archive/0/id",
        "/archive/0/database",
    ] {
        assert_eq!(ours.pointer(pointer), theirs.pointer(pointer), "{pointer}");
    }
    let backups = |v: &Value| v["backup"].as_array().cloned().expect("backups");
    let (our_backups, their_backups) = (backups(ours), backups(theirs));
    assert_eq!(our_backups.len(), 2);
    assert_eq!(their_backups.len(), 2);
    for (o, t) in our_backups.iter().zip(&their_backups) {
        for key in ["type", "error", "database"] {
            assert_eq!(o[key], t[key], "{key}");
        }
        // Labels differ (two backups), but the shape of prior and reference does not.
        assert_eq!(o["prior"].is_null(), t["prior"].is_null());
        assert_eq!(o["reference"].is_null(), t["reference"].is_null());
        // The same cluster: the same bytes backed up, within what changed between the two.
        let (os, ts) = (
            o["info"]["size"].as_f64().expect("size"),
            t["info"]["size"].as_f64().expect("size"),
        );
        assert!((os - ts).abs() / ts < 0.2, "sizes {os} and {ts}");
    }
    assert_eq!(our_backups[1]["prior"], our_backups[0]["label"]);
    assert_eq!(
        our_backups[1]["reference"],
        serde_json::json!([our_backups[0]["label"]])
    );
    let info = &our_backups[1]["info"];
    assert!(info["delta"].as_u64() < info["size"].as_u64(), "{info}");
    assert!(
        info["repository"]["delta"].as_u64() < info["repository"]["size"].as_u64(),
        "{info}"
    );
}
