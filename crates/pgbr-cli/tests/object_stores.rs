//! Object store repositories and several repositories, end to end against a real PostgreSQL 15
//! and real emulators started by each test on a free loopback port: S3 (moto server) and Azure
//! Blob (Azurite). A missing emulator fails the test: run `.ci/run` (or its install lines) first.
//!
//! GCS: fake-gcs-server cannot take object_store's uploads (see pgbr-storage's emulator tests),
//! so only the configuration of a gcs repository is exercised here: accepted, and a clear error
//! (without the key) when the storage cannot be reached.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::emulator::{start_azurite, start_moto, AZURITE_ACCOUNT, AZURITE_KEY};
use common::{as_pg, assert_same_dump, free_port, labels, Cluster, Scratch, Setup, Stanza};

const S3_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "pgbrSuperSecretValue0123456789abcdefXYZ";
const PASSPHRASE: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------------------
// Helpers

/// `repo<n>-*` lines of an encrypted S3 repository at `endpoint`.
fn s3_repo(n: u32, endpoint: &str) -> String {
    format!(
        "repo{n}-type=s3\nrepo{n}-path=/pgbr\nrepo{n}-s3-bucket=pgbr-it\nrepo{n}-s3-endpoint={endpoint}\nrepo{n}-s3-region=us-east-1\nrepo{n}-s3-uri-style=path\nrepo{n}-s3-key={S3_KEY}\nrepo{n}-s3-key-secret={SECRET}\nrepo{n}-cipher-type=aes-256-gcm\nrepo{n}-cipher-pass={PASSPHRASE}\n"
    )
}

fn azure_repo(n: u32, endpoint: &str) -> String {
    format!(
        "repo{n}-type=azure\nrepo{n}-path=/pgbr\nrepo{n}-azure-account={AZURITE_ACCOUNT}\nrepo{n}-azure-container=pgbr\nrepo{n}-azure-key={AZURITE_KEY}\nrepo{n}-azure-endpoint={endpoint}\nrepo{n}-azure-uri-style=path\nrepo{n}-cipher-type=aes-256-gcm\nrepo{n}-cipher-pass={PASSPHRASE}\n"
    )
}

/// A stanza of a new cluster archiving into the repositories `repos` (their lines).
fn stanza(repos: &str) -> Stanza {
    Stanza::setup(Setup {
        repo: Some(repos),
        global: "process-max=2\n",
        ..Setup::default()
    })
}

/// pgbr as the PostgreSQL user with extra environment variables.
fn pgbr_env(scratch: &Scratch, conf: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = as_pg(&scratch.pgbr);
    c.arg(format!("--config={}", conf.display())).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run pgbr")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn info_json(scratch: &Scratch, conf: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["--stanza=main", "info", "--output=pgbr-json"];
    args.extend_from_slice(extra);
    let out = scratch.pgbr_ok(conf, &args);
    assert!(!out.contains(SECRET), "{out}");
    serde_json::from_str::<serde_json::Value>(&out)
        .expect("info json")
        .as_array()
        .expect("array")
        .clone()
}

/// The report of repository `repo` (`repo1`, `repo2`).
fn report<'a>(reports: &'a [serde_json::Value], repo: &str) -> &'a serde_json::Value {
    reports
        .iter()
        .find(|r| {
            r["repo"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("{repo} ")))
        })
        .unwrap_or_else(|| panic!("no report of {repo}: {reports:?}"))
}

/// Restores into `name` with `args`, checks that no secret reached postgresql.auto.conf, and
/// returns the (stopped) cluster.
fn restore(scratch: &Scratch, conf: &Path, name: &str, args: &[&str]) -> (Cluster, String) {
    let dir = scratch.mkdir(name);
    let mut all = vec![
        "--stanza=main".to_string(),
        "restore".into(),
        format!("--pg1-path={}", dir.display()),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = scratch.pgbr(conf, &refs);
    let log = text(&out);
    assert!(out.status.success(), "restore {args:?} failed: {log}");
    assert!(!log.contains(SECRET), "{log}");
    let auto = std::fs::read_to_string(dir.join("postgresql.auto.conf")).expect("auto.conf");
    assert!(auto.contains("restore_command"), "{auto}");
    for secret in [SECRET, S3_KEY, AZURITE_KEY, PASSPHRASE] {
        assert!(
            !auto.contains(secret),
            "a secret is repeated on restore_command: {auto}"
        );
    }
    let c = Cluster::over(scratch, name, dir);
    c.configure("archive_mode = off\n");
    (c, log)
}

/// Starts a restored cluster, waits for the end of recovery, returns its dump.
fn start_and_dump(c: &mut Cluster) -> String {
    c.start();
    c.wait_promoted();
    c.dump()
}

// ---------------------------------------------------------------------------------------
// One object store repository

fn round_trip(repo_lines: impl Fn(u32) -> String) {
    let mut env = stanza(&repo_lines(1));
    let (scratch, conf, src) = (&env.scratch, &env.conf, &env.src);
    // stanza-create again: a no-op.
    scratch.pgbr_ok(conf, &["--stanza=main", "stanza-create"]);
    src.pgbench_init(1);
    src.psql(
        "create table t as select g as id, md5(g::text) as v from generate_series(1, 20000) g",
    );
    // Transient faults: the first 2 requests of every HTTP method fail with a 503 in each pgbr
    // process of the backup (a failpoint); the storage's retries absorb them.
    let out = pgbr_env(
        scratch,
        conf,
        &["--stanza=main", "backup", "--type=full"],
        &[("FAILPOINTS", "storage::http-fail-first=return(2)")],
    );
    assert!(out.status.success(), "backup: {}", text(&out));
    assert!(!text(&out).contains(SECRET));
    src.psql("insert into t select g, 'after' from generate_series(20001, 21000) g");
    src.switch_and_wait_archived();
    let expected = src.dump();

    let reports = info_json(scratch, conf, &[]);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(r["cipher"], "aes-256-gcm");
    assert_eq!(r["backups"].as_array().expect("backups").len(), 1, "{r}");
    assert!(!r["archive"].as_array().expect("archive").is_empty(), "{r}");
    let info = scratch.pgbr_ok(conf, &["--stanza=main", "info"]);
    assert!(info.contains("full backup:"), "{info}");
    assert!(info.contains("repo1 ("), "{info}");
    assert!(!info.contains(SECRET), "{info}");

    env.src.stop();
    let (mut dst, _) = restore(scratch, conf, "dst", &[]);
    assert_same_dump(&start_and_dump(&mut dst), &expected);
    assert_eq!(dst.psql("select count(*) from t"), "21000");
}

#[test]
fn s3_repository_encrypted_backup_restore() {
    let moto = start_moto("pgbr-it");
    round_trip(|n| s3_repo(n, &moto.url()));
}

#[test]
fn azure_repository_encrypted_backup_restore() {
    let azurite = start_azurite("pgbr");
    round_trip(|n| azure_repo(n, &azurite.url()));
}

/// Labels of the backups `info` lists in the only repository.
fn backup_labels(scratch: &Scratch, conf: &Path) -> Vec<String> {
    let reports = info_json(scratch, conf, &[]);
    assert_eq!(reports.len(), 1, "{reports:?}");
    labels(&reports[0])
}

#[test]
fn s3_permanent_fault_fails_the_backup_and_leaves_the_repository_usable() {
    let moto = start_moto("pgbr-it");
    // One object per file, so the backup makes well over 20 PUTs.
    let env = stanza(&format!("{}repo1-bundle=n\n", s3_repo(1, &moto.url())));
    let (scratch, conf, src) = (&env.scratch, &env.conf, &env.src);
    scratch.pgbr_ok(conf, &["--stanza=main", "backup", "--type=full"]);
    let earlier = backup_labels(scratch, conf);
    assert_eq!(earlier.len(), 1, "{earlier:?}");

    // A permanent fault part-way through the next backup: every PUT after the first 20 of the
    // pgbr process gets a 503 (a failpoint), so the retries exhaust.
    src.psql("create table after_first as select g as id from generate_series(1, 5000) g");
    let out = pgbr_env(
        scratch,
        conf,
        &["--stanza=main", "backup", "--type=full"],
        &[("FAILPOINTS", "storage::http-fail-after=return(20)")],
    );
    let log = text(&out);
    assert!(
        !out.status.success(),
        "backup succeeded despite the fault: {log}"
    );
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one error line: {log}");
    assert!(
        errors[0].contains("503") || errors[0].contains("injected fault"),
        "the error names the cause: {log}"
    );
    assert!(!log.contains(SECRET) && !log.contains(S3_KEY), "{log}");

    // No new usable backup: info lists only the earlier one; verify passes (the interrupted
    // backup's directory is a note); restore restores the earlier backup.
    assert_eq!(backup_labels(scratch, conf), earlier);
    let verify = scratch.pgbr(conf, &["--stanza=main", "verify"]);
    assert!(verify.status.success(), "verify: {}", text(&verify));
    assert!(
        text(&verify).contains("incomplete backup"),
        "verify notes the interrupted backup: {}",
        text(&verify)
    );
    src.switch_and_wait_archived();
    let expected = src.dump();
    let (mut dst, log) = restore(scratch, conf, "dst", &[]);
    assert!(
        log.contains(&format!("restore of {} complete", earlier[0])),
        "{log}"
    );
    assert_same_dump(&start_and_dump(&mut dst), &expected);
    assert_eq!(dst.psql("select count(*) from after_first"), "5000");
    dst.stop();

    // Fault removed: the next backup succeeds and is listed after the earlier one.
    scratch.pgbr_ok(conf, &["--stanza=main", "backup", "--type=full"]);
    let now = backup_labels(scratch, conf);
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[0], earlier[0], "{now:?}");
}

// ---------------------------------------------------------------------------------------
// Several repositories: repo1 posix, repo2 S3

fn pg_stat_archiver(c: &Cluster) -> (i64, String, String) {
    let row = c.psql(
        "select failed_count, coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') from pg_stat_archiver",
    );
    let mut f = row.split('|');
    (
        f.next().unwrap_or("0").parse().unwrap_or(0),
        f.next().unwrap_or_default().to_string(),
        f.next().unwrap_or_default().to_string(),
    )
}

#[test]
fn two_repositories_archive_everywhere_and_fall_back() {
    let moto = start_moto("pgbr-it");
    let mut env = Stanza::setup(Setup {
        global: &format!(
            "repo1-cipher-type=aes-256-gcm\nrepo1-cipher-pass={PASSPHRASE}\n{}process-max=2\n",
            s3_repo(2, &moto.url())
        ),
        ..Setup::default()
    });
    let (scratch, conf, src, repo1) = (&env.scratch, &env.conf, &env.src, &env.repo);

    // stanza-create (run by `Stanza`) created the stanza in both repositories.
    assert!(repo1.join("archive/main/archive.info").exists());
    let r2 = info_json(scratch, conf, &["--repo=2"]);
    assert_eq!(r2.len(), 1);
    assert_eq!(r2[0]["status"], "ok", "{r2:?}");

    // archive-push lands in both.
    src.pgbench_init(1);
    src.switch_and_wait_archived();
    let both = info_json(scratch, conf, &[]);
    assert_eq!(both.len(), 2, "{both:?}");
    let a1 = report(&both, "repo1")["archive"].clone();
    assert!(!a1.as_array().expect("archive").is_empty(), "{both:?}");
    assert_eq!(a1, report(&both, "repo2")["archive"], "{both:?}");

    // backup chooses its repository; default repo1.
    scratch.pgbr_ok(conf, &["--stanza=main", "backup", "--type=full"]);
    scratch.pgbr_ok(
        conf,
        &["--stanza=main", "backup", "--type=full", "--repo=2"],
    );
    let both = info_json(scratch, conf, &[]);
    for repo in ["repo1", "repo2"] {
        let b = report(&both, repo)["backups"]
            .as_array()
            .expect("backups")
            .len();
        assert_eq!(b, 1, "{repo}: {both:?}");
    }
    let info = scratch.pgbr_ok(conf, &["--stanza=main", "info"]);
    assert!(
        info.contains("repo1 (posix:") && info.contains("repo2 (s3:"),
        "{info}"
    );
    let out = scratch.pgbr(conf, &["--stanza=main", "info", "--repo=3"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("repo3"), "{}", text(&out));

    // Restore falls back to the next repository when the first lacks the stanza: repo1 pointed at
    // an empty directory, on restore and (repeated on restore_command) on every archive-get.
    let empty = scratch.mkdir("empty-repo");
    let empty_flag = format!("--repo1-path={}", empty.display());
    let (mut from_repo2, log) = restore(scratch, conf, "dst-repo2", &[&empty_flag]);
    assert!(log.contains("restoring from repo2"), "{log}");

    // repo2 down (its endpoint where nothing listens): archive-push fails, PostgreSQL retries.
    let dead = free_port();
    scratch.write_config(
        "pgbr.conf",
        &std::fs::read_to_string(conf)
            .expect("conf")
            .replace(&moto.url(), &format!("http://127.0.0.1:{dead}")),
    );
    let failed_before = pg_stat_archiver(src).0;
    src.psql("create table during_outage as select g from generate_series(1, 5000) g");
    let outage_wal = src.psql("select pg_walfile_name(pg_switch_wal())");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (failed, _, last_failed) = pg_stat_archiver(src);
        if failed > failed_before && last_failed == outage_wal {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "archive-push did not fail with repo2 down: {}",
            src.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, last_archived, _) = pg_stat_archiver(src);
    assert!(
        last_archived.as_str() < outage_wal.as_str(),
        "{last_archived} {outage_wal}"
    );
    // The failing repository is named in the server log (archive_command's stderr).
    assert!(src.log().contains("repo2 (s3:pgbr-it)"), "{}", src.log());

    // archive-get still serves from repo1 (which took the segment), restore uses repo1.
    let dest = scratch.path("fetched");
    let fetched = scratch.pgbr(
        conf,
        &[
            "--stanza=main",
            "archive-get",
            &outage_wal,
            &dest.display().to_string(),
        ],
    );
    assert!(fetched.status.success(), "{}", text(&fetched));
    assert_eq!(
        std::fs::metadata(&dest).expect("fetched").len(),
        16 * 1024 * 1024
    );
    // A file in no reachable repository, with one repository down, is a failure (126), not
    // "not found": recovery must not end early on a repository outage.
    let missing = scratch.pgbr(
        conf,
        &[
            "--stanza=main",
            "archive-get",
            "0000000100000000000000FF",
            &scratch.path("missing").display().to_string(),
        ],
    );
    assert_eq!(missing.status.code(), Some(126), "{}", text(&missing));
    assert!(text(&missing).contains("repo2"), "{}", text(&missing));
    let (mut from_repo1, log) = restore(scratch, conf, "dst-repo1", &[]);
    assert!(log.contains("restoring from repo1"), "{log}");

    // repo2 back: PostgreSQL's retries push the segments archived during the outage to it.
    scratch.write_config(
        "pgbr.conf",
        &std::fs::read_to_string(conf)
            .expect("conf")
            .replace(&format!("http://127.0.0.1:{dead}"), &moto.url()),
    );
    src.switch_and_wait_archived();
    let both = info_json(scratch, conf, &[]);
    let max = |repo: &str| {
        report(&both, repo)["archive"][0]["max"]
            .as_str()
            .expect("max")
            .to_string()
    };
    assert_eq!(max("repo1"), max("repo2"), "{both:?}");
    assert!(max("repo2") >= outage_wal, "{both:?}");
    // (Expire after each backup drops WAL older than that repository's backup, so the two
    // archives start at different segments.)
    let caught_up = scratch.pgbr(
        conf,
        &[
            "--stanza=main",
            "archive-get",
            "--repo=2",
            &outage_wal,
            &scratch.path("from-repo2").display().to_string(),
        ],
    );
    assert!(caught_up.status.success(), "{}", text(&caught_up));
    let expected = src.dump();
    env.src.stop();

    // Both restored clusters recover to the end of the archive and hold the source's data.
    assert_same_dump(&start_and_dump(&mut from_repo1), &expected);
    from_repo1.stop();
    assert_same_dump(&start_and_dump(&mut from_repo2), &expected);
    assert_eq!(
        from_repo2.psql("select count(*) from during_outage"),
        "5000"
    );
}

// ---------------------------------------------------------------------------------------
// Configuration

#[test]
fn object_store_configuration_errors_name_the_option() {
    let scratch = Scratch::new();
    let conf_with = |repos: &str| {
        scratch.write_config(
            "bad.conf",
            &format!("[global]\n{repos}log-level-console=warn\n"),
        )
    };
    let dead = format!("http://127.0.0.1:{}", free_port());
    for (repos, args, want) in [
        ("repo1-type=s3\n".to_string(), vec![], "repo1-s3-bucket"),
        (
            format!("repo1-type=s3\nrepo1-s3-bucket=b\nrepo1-s3-key={S3_KEY}\n"),
            vec![],
            "repo1-s3-key-secret",
        ),
        (
            "repo2-type=azure\nrepo2-azure-container=c\n".to_string(),
            vec![],
            "repo2-azure-account",
        ),
        ("repo1-type=gcs\nrepo1-gcs-bucket=g\n".to_string(), vec![], "repo1-gcs-key"),
        (
            format!("repo1-type=gcs\nrepo1-gcs-bucket=g\nrepo1-gcs-key-type=auto\nrepo1-gcs-key={SECRET}\n"),
            vec![],
            "repo1-gcs-key",
        ),
        ("repo1-type=ftp\n".to_string(), vec![], "repo1-type"),
        (String::new(), vec!["--repo=2"], "repo2"),
    ] {
        let conf = conf_with(&repos);
        let mut all = vec!["--stanza=main", "info"];
        all.extend(args);
        let out = scratch.pgbr(&conf, &all);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{repos}: {t}");
        assert!(t.contains(want), "{repos}: {t}");
        assert_eq!(t.trim().lines().count(), 1, "one error line: {t}");
        assert!(!t.contains(SECRET) && !t.contains(S3_KEY), "{t}");
    }

    // A gcs repository is accepted; an unreachable one is a clear storage error that does not
    // repeat the token (info reports it per stanza, archive-get fails with 126).
    let conf = conf_with(&format!(
        "repo1-type=gcs\nrepo1-path=/pgbr\nrepo1-gcs-bucket=g\nrepo1-gcs-key-type=token\nrepo1-gcs-key={SECRET}\nrepo1-gcs-endpoint={dead}\n"
    ));
    let out = scratch.pgbr(&conf, &["--stanza=main", "info"]);
    let t = text(&out);
    assert!(
        t.contains("repo1 (gcs:g/pgbr)") && t.contains("status: error"),
        "{t}"
    );
    assert!(!t.contains(SECRET), "{t}");
    let dest = scratch.path("wal").display().to_string();
    let out = scratch.pgbr(
        &conf,
        &[
            "--stanza=main",
            "archive-get",
            "000000010000000000000001",
            &dest,
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(126), "{t}");
    assert!(t.contains("GCS") && !t.contains(SECRET), "{t}");
}
