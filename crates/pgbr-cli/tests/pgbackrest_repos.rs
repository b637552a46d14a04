//! Repositories pgBackRest 2.45 wrote (the oracle), read by pgbr: one PostgreSQL 15 cluster with a
//! tablespace archives through `pgbackrest archive-push` into four repositories of different
//! formats (aes-256-cbc with bundles and zst; gz; lz4 with bundles; bz2), each taking a full, a
//! diff and an incr backup. pgbr restores from each to a point in time, PostgreSQL replays WAL
//! fetched by `pgbr archive-get`, and the data equals the source's at that point; each backup of
//! the encrypted repository restores to its own contents, and `--delta` over a restored
//! cluster as well. `pgbr info --output=json` equals `pgbackrest info --output=json` on the same
//! repository, and `verify` passes (and names a damaged file and a missing segment in a copy).
//! The encrypted repository's objects, put in an S3 bucket (moto), read there the same way. Then pgbr takes the stanza over: a configuration with the pgBackRest repository as
//! repo1 and a new pgbr repository as repo2, WAL archived by pgbr to repo2 only, restore choosing
//! the newest backup across both, archive-get serving WAL from both, and every write refused in
//! the pgBackRest repository (which stays byte for byte as it was).

mod common;
#[path = "pgbackrest_repos/takeover.rs"]
mod takeover;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::emulator::start_moto;
use common::{as_pg, run_ok, Cluster, Scratch};
use serde_json::Value;

/// A pgBackRest repository's format: its name, and its `[global]` options for pgBackRest.
const FORMATS: [(&str, &str); 4] = [
    (
        "cbc-zst-bundle",
        "compress-type=zst\nrepo1-bundle=y\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=takeover-pass\n",
    ),
    ("gz", "compress-type=gz\nrepo1-bundle=n\n"),
    ("lz4-bundle", "compress-type=lz4\nrepo1-bundle=y\n"),
    ("bz2", "compress-type=bz2\nrepo1-bundle=n\n"),
];
const ENCRYPTED: &str = "repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=takeover-pass\n";

struct Oracle {
    // Fields drop in order: the server stops before its scratch directory is removed.
    src: Cluster,
    scratch: Scratch,
    /// Format name → pgBackRest configuration.
    confs: BTreeMap<&'static str, PathBuf>,
    tablespace_oid: String,
}

fn digest(c: &Cluster) -> String {
    c.psql("select count(*) || ':' || md5(string_agg(id || ':' || v, ',' order by id)) from t")
}

impl Oracle {
    fn pgbackrest(&self, format: &str, args: &[&str]) -> String {
        run_ok(
            as_pg("pgbackrest")
                .arg(format!("--config={}", self.confs[format].display()))
                .arg("--stanza=main")
                .args(args),
        )
    }

    /// The pgbr configuration reading the pgBackRest repository of `format` as repo1, with more
    /// `[global]` lines `extra`.
    fn pgbr_conf(&self, name: &str, format: &str, extra: &str) -> PathBuf {
        let cipher = if format.starts_with("cbc") {
            ENCRYPTED
        } else {
            ""
        };
        self.scratch.write_config(
            name,
            &format!(
                "[global]\nrepo1-path={}\n{cipher}lock-path={}\nlog-level-console=info\nstart-fast=y\narchive-timeout=60\n{extra}\n{}",
                self.scratch.path(&format!("repo-{format}")).display(),
                self.scratch.path("lock-pgbr").display(),
                common::stanza_section("main", &self.src)
            ),
        )
    }

    /// Restores with `conf` into a new directory `name` (`args` added), starts it and waits until
    /// recovery ended; returns the cluster and what restore printed.
    fn restore(&self, conf: &Path, name: &str, args: &[&str]) -> (Cluster, String) {
        let mut c = Cluster::empty(&self.scratch, name);
        let ts = self.scratch.mkdir(&format!("{name}-ts"));
        let (data, map) = (
            format!("--pg1-path={}", c.data.display()),
            format!("--tablespace-map={}={}", self.tablespace_oid, ts.display()),
        );
        let mut all = vec!["--stanza=main", "restore", &data, &map];
        all.extend(args);
        let out = self.scratch.pgbr(conf, &all);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "restore {args:?}: {text}");
        c.configure("archive_mode = off\n");
        c.start();
        c.wait_promoted();
        (c, text)
    }

    /// Checks that `info --output=json` of pgbr (with `conf`) and of pgBackRest on the repository
    /// of `format` are the same, leaf for leaf (pgbr's `pgbr` additions aside); `what` names it.
    fn assert_same_info(&self, format: &str, conf: &Path, what: &str) {
        let theirs: Value =
            serde_json::from_str(&self.pgbackrest(format, &["info", "--output=json"]))
                .expect("pgBackRest JSON");
        let ours: Value = serde_json::from_str(
            &self
                .scratch
                .pgbr_ok(conf, &["--stanza=main", "info", "--output=json"]),
        )
        .expect("pgbr JSON");
        let (mut o, mut t) = (BTreeMap::new(), BTreeMap::new());
        leaves(&ours, "", &mut o);
        leaves(&theirs, "", &mut t);
        assert_eq!(o, t, "{what}: info --output=json");
    }

    /// Restores `args` with `conf` into `name` and checks the data is `want`.
    fn restores_to(&self, conf: &Path, name: &str, args: &[&str], want: &str) {
        let (c, _) = self.restore(conf, name, args);
        assert_eq!(digest(&c), want, "{name}: restore {args:?}");
    }
}

/// The cluster, the four repositories with their backups, and the digests of the data at each
/// backup (full, diff, incr) and at the point-in-time target, with the target's LSN.
fn oracle() -> (Oracle, [String; 3], Targets) {
    let scratch = Scratch::new();
    let mut src = Cluster::init(&scratch, "src");
    let mut confs = BTreeMap::new();
    let mut script = String::from("#!/bin/sh\n");
    for (format, options) in FORMATS {
        let conf = scratch.write_config(
            &format!("pgbackrest-{format}.conf"),
            &format!(
                "[global]\nrepo1-path={}\n{options}repo1-retention-full=9\nlock-path={}\nlog-level-console=warn\nlog-level-file=off\nstart-fast=y\nprocess-max=2\n{}",
                scratch.mkdir(&format!("repo-{format}")).display(),
                scratch.mkdir(&format!("lock-{format}")).display(),
                common::stanza_section("main", &src)
            ),
        );
        script.push_str(&format!(
            "pgbackrest --config={} --stanza=main archive-push \"$1\" || exit 1\n",
            conf.display()
        ));
        confs.insert(format, conf);
    }
    let push = scratch.path("archive-pgbackrest");
    std::fs::write(&push, script).expect("script");
    run_ok(std::process::Command::new("chmod").arg("755").arg(&push));
    src.configure(&format!(
        "archive_mode = on\narchive_command = '{} %p'\n",
        push.display()
    ));
    src.start();
    let ts = scratch.mkdir("src-ts");
    src.psql(&format!("create tablespace ts location '{}'", ts.display()));
    src.psql("create table t (id int primary key, v text) tablespace ts");
    src.psql("insert into t select g, md5(g::text) from generate_series(1, 50000) g");
    let tablespace_oid = src.psql("select oid from pg_tablespace where spcname = 'ts'");
    let oracle = Oracle {
        src,
        scratch,
        confs,
        tablespace_oid,
    };
    for format in oracle.confs.keys() {
        oracle.pgbackrest(format, &["stanza-create"]);
    }
    let mut at_backup = Vec::new();
    for (i, backup_type) in ["full", "diff", "incr"].into_iter().enumerate() {
        at_backup.push(digest(&oracle.src));
        for format in oracle.confs.keys() {
            oracle.pgbackrest(format, &["backup", &format!("--type={backup_type}")]);
        }
        oracle.src.psql(&format!(
            "insert into t select g, 'after {backup_type}' from generate_series({}, {}) g; update t set v = 'changed {i}' where id % 97 = {i}",
            60000 + i * 1000,
            60999 + i * 1000
        ));
    }
    let (target_digest, target_lsn) = (
        digest(&oracle.src),
        oracle.src.psql("select pg_current_wal_insert_lsn()"),
    );
    // After every commit so far (and before the next one's).
    let target_time = oracle.src.psql(
        "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    );
    oracle
        .src
        .psql("insert into t values (-1, 'after the target')");
    oracle.src.switch_and_wait_archived();
    let at_backup = [
        at_backup.remove(0),
        at_backup.remove(0),
        at_backup.remove(0),
    ];
    let target = Targets {
        digest: target_digest,
        lsn: target_lsn,
        time: target_time,
    };
    (oracle, at_backup, target)
}

/// A point in time after every backup: the data there, and its LSN and time.
struct Targets {
    digest: String,
    lsn: String,
    time: String,
}

/// Key path → value of every leaf of `v` (pgbr's additions under `pgbr` left out).
fn leaves(v: &Value, at: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| *k != "pgbr")
            .for_each(|(k, c)| leaves(c, &format!("{at}.{k}"), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, c)| leaves(c, &format!("{at}[{i}]"), out)),
        leaf => {
            out.insert(at.to_string(), leaf.clone());
        }
    }
}

#[test]
fn pgbackrest_repositories_restore_replay_and_are_taken_over() {
    let (oracle, at_backup, targets) = oracle();
    let (target, target_digest) = (format!("--target={}", targets.lsn), targets.digest.clone());
    let target_time = format!("--target={}", targets.time);
    for (format, _) in FORMATS {
        let conf = oracle.pgbr_conf(&format!("pgbr-{format}.conf"), format, "");
        // The same JSON as pgBackRest's on the same repository, key for key and value for value.
        oracle.assert_same_info(format, &conf, format);
        let verified = verify(&oracle.scratch, &conf);
        assert_eq!(verified["ok"], true, "{format}: {verified:#}");
        assert_eq!(verified["backups_checked"], 3, "{format}: {verified:#}");
        // The newest backup (the incr) to a point in time, replaying WAL through archive-get.
        // One repository by time, the others by LSN.
        let by = if format == "lz4-bundle" {
            ["--type=time", &target_time]
        } else {
            ["--type=lsn", &target]
        };
        oracle.restores_to(
            &conf,
            &format!("pitr-{format}"),
            &[by[0], by[1], "--target-action=promote"],
            &target_digest,
        );
    }
    each_backup_and_delta(&oracle, &at_backup);
    damage_is_named(&oracle);
    in_an_object_store(&oracle, &target, &target_digest);
    follows_a_new_timeline(&oracle);
    takeover::take_over(&oracle, &target_digest);
}

/// A cluster restored from the gz repository and promoted (timeline 2) archives through
/// pgBackRest into the same repository; pgbr restores the incr to a point on timeline 2, which
/// PostgreSQL reaches through `00000002.history` and timeline 2's WAL, both from pgbr archive-get.
fn follows_a_new_timeline(oracle: &Oracle) {
    let conf = oracle.pgbr_conf("pgbr-gz.conf", "gz", "");
    // Archiving on from the start: the history file is archived when the cluster promotes.
    let mut promoted = Cluster::empty(&oracle.scratch, "promoted");
    let ts = oracle.scratch.mkdir("promoted-ts");
    oracle.scratch.pgbr_ok(
        &conf,
        &[
            "--stanza=main",
            "restore",
            &format!("--pg1-path={}", promoted.data.display()),
            &format!(
                "--tablespace-map={}={}",
                oracle.tablespace_oid,
                ts.display()
            ),
            "--type=immediate",
            "--target-action=promote",
        ],
    );
    let pgbackrest_conf = oracle.scratch.write_config(
        "pgbackrest-gz-promoted.conf",
        &std::fs::read_to_string(&oracle.confs["gz"])
            .expect("conf")
            .replace(
                &oracle.src.data.display().to_string(),
                &promoted.data.display().to_string(),
            )
            .replace(
                &oracle.src.socket_dir.display().to_string(),
                &promoted.socket_dir.display().to_string(),
            )
            .replace(
                &format!("pg1-port={}", oracle.src.port),
                &format!("pg1-port={}", promoted.port),
            ),
    );
    promoted.configure(&format!(
        "archive_mode = on\narchive_command = 'pgbackrest --config={} --stanza=main archive-push %p'\n",
        pgbackrest_conf.display()
    ));
    promoted.start();
    promoted.wait_promoted();
    assert_eq!(
        promoted.psql("select timeline_id from pg_control_checkpoint()"),
        "2"
    );
    promoted.psql("insert into t select g, 'timeline 2' from generate_series(-1000, -900) g");
    let (digest_2, lsn_2) = (
        digest(&promoted),
        promoted.psql("select pg_current_wal_insert_lsn()"),
    );
    promoted.psql("insert into t values (-5, 'after the timeline 2 target')");
    promoted.switch_and_wait_archived();
    let history = oracle
        .scratch
        .path("repo-gz/archive/main/15-1/00000002.history");
    assert!(history.exists(), "pgBackRest archived no history file");
    oracle.restores_to(
        &conf,
        "timeline-2",
        &[
            "--type=lsn",
            &format!("--target={lsn_2}"),
            "--target-action=promote",
        ],
        &digest_2,
    );
}

/// The encrypted repository's objects, as pgBackRest wrote them, in an S3 bucket (moto) under
/// the repository path: pgbr reads it there as on posix (info, verify, restore with archive-get).
fn in_an_object_store(oracle: &Oracle, target: &str, target_digest: &str) {
    let moto = start_moto("pgbackrest");
    let root = oracle.scratch.path("repo-cbc-zst-bundle");
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let key = path
                .strip_prefix(&root)
                .expect("under the root")
                .display()
                .to_string();
            let body = std::fs::read(&path).expect("read");
            let (status, text) = moto.http("PUT", &format!("/pgbackrest/repo/{key}"), &[], &body);
            assert_eq!(status, 200, "upload {key}: {text}");
        }
    }
    let conf = oracle.scratch.write_config(
        "pgbr-s3.conf",
        &format!(
            "[global]\nrepo1-type=s3\nrepo1-path=/repo\nrepo1-s3-bucket=pgbackrest\nrepo1-s3-endpoint={}\nrepo1-s3-region=us-east-1\nrepo1-s3-uri-style=path\nrepo1-s3-key=key\nrepo1-s3-key-secret=secret\n{ENCRYPTED}lock-path={}\nlog-level-console=info\n\n{}",
            moto.url(),
            oracle.scratch.path("lock-pgbr").display(),
            common::stanza_section("main", &oracle.src)
        ),
    );
    oracle.assert_same_info("cbc-zst-bundle", &conf, "from S3");
    let verified = verify(&oracle.scratch, &conf);
    assert_eq!(verified["ok"], true, "{verified:#}");
    oracle.restores_to(
        &conf,
        "pitr-s3",
        &["--type=lsn", target, "--target-action=promote"],
        target_digest,
    );
}

/// `verify --output=json` of stanza `main` with `conf`, whatever its exit code.
fn verify(scratch: &Scratch, conf: &Path) -> Value {
    let out = scratch.pgbr(conf, &["--stanza=main", "verify", "--output=json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify JSON: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `verify` of a copy of a pgBackRest repository with a damaged backup file and a WAL segment
/// missing after the oldest backup's start: both named, exit 14.
fn damage_is_named(oracle: &Oracle) {
    let copy = oracle.scratch.path("repo-gz-damaged");
    run_ok(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(oracle.scratch.path("repo-gz"))
            .arg(&copy),
    );
    let backup_dir = copy.join("backup/main");
    let full = std::fs::read_dir(&backup_dir)
        .expect("backups")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.ends_with('F'))
        .expect("a full backup");
    let damaged = backup_dir.join(&full).join("pg_data/PG_VERSION.gz");
    let mut bytes = std::fs::read(&damaged).expect("read");
    let last = bytes.len() - 9;
    bytes[last] ^= 0xff;
    std::fs::write(&damaged, bytes).expect("write");
    let wal_dir = copy.join("archive/main/15-1/0000000100000000");
    let mut segments: Vec<_> = std::fs::read_dir(&wal_dir)
        .expect("wal")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() > 25 && n.as_bytes()[24] == b'-')
        .collect();
    segments.sort();
    let gone = segments[segments.len() - 2].clone();
    std::fs::remove_file(wal_dir.join(&gone)).expect("remove");
    let conf = oracle.scratch.write_config(
        "pgbr-damaged.conf",
        &std::fs::read_to_string(oracle.pgbr_conf("pgbr-gz.conf", "gz", ""))
            .expect("conf")
            .replace("repo-gz", "repo-gz-damaged"),
    );
    let out = oracle.scratch.pgbr(&conf, &["--stanza=main", "verify"]);
    assert_eq!(out.status.code(), Some(14));
    let report = verify(&oracle.scratch, &conf);
    let errors = report["errors"].to_string();
    assert!(
        errors.contains(&format!("{full}/pg_data/PG_VERSION.gz")),
        "{report:#}"
    );
    assert!(errors.contains(&gone[..24]), "{gone}: {report:#}");
}

/// Every backup of the encrypted repository restores to its own contents; `--delta` over a
/// restored cluster rewrites what differs.
fn each_backup_and_delta(oracle: &Oracle, at_backup: &[String; 3]) {
    let conf = oracle.pgbr_conf("pgbr-cbc.conf", "cbc-zst-bundle", "");
    let info = common::info(&oracle.scratch, &conf);
    let labels = common::labels(&info);
    assert_eq!(labels.len(), 3, "{info:#}");
    for (i, label) in labels.iter().enumerate() {
        let set = format!("--set={label}");
        let name = format!("set-{i}");
        let (mut c, _) = oracle.restore(
            &conf,
            &name,
            &[&set, "--type=immediate", "--target-action=promote"],
        );
        assert_eq!(digest(&c), at_backup[i], "backup {label}");
        if i == 0 {
            // The full backup's cluster, changed, then restored over with --delta as the incr.
            c.psql("insert into t values (-2, 'to be undone')");
            c.stop();
            let (data, map) = (
                format!("--pg1-path={}", c.data.display()),
                format!(
                    "--tablespace-map={}={}",
                    oracle.tablespace_oid,
                    oracle.scratch.path(&format!("{name}-ts")).display()
                ),
            );
            let out = oracle.scratch.pgbr_ok(
                &conf,
                &[
                    "--stanza=main",
                    "restore",
                    &data,
                    &map,
                    "--delta",
                    &format!("--set={}", labels[2]),
                    "--type=immediate",
                    "--target-action=promote",
                ],
            );
            assert!(!out.contains("0 files written"), "{out}");
            // The backup's postgresql.conf archives into the pgBackRest repositories: not this copy.
            c.configure("archive_mode = off\n");
            c.start();
            c.wait_promoted();
            assert_eq!(
                digest(&c),
                at_backup[2],
                "delta restore over backup {label}"
            );
        }
    }
}
