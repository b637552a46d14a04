//! Asynchronous archiving and `check` against a real PostgreSQL 15 (1 MiB WAL segments so a burst
//! is cheap): a burst of segments is archived with none lost or duplicated, killing the worker
//! loses nothing, the queue limit drops loudly, a file PostgreSQL did not mark ready is pushed at
//! once, a worker that cannot push fails the call waiting on it, archive-get prefetches, and
//! `check` names what is wrong.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Cluster, Scratch};

const SEGMENT: u64 = 1024 * 1024;

struct Env {
    // The server stops (drops) before its scratch directory is removed.
    src: Cluster,
    scratch: Scratch,
    conf: PathBuf,
    repo: PathBuf,
    spool: PathBuf,
}

fn setup(extra: &str) -> Env {
    let scratch = Scratch::new();
    let mut src = Cluster::init_with(&scratch, "src", &["--wal-segsize=1"]);
    let repo = scratch.mkdir("repo");
    let spool = scratch.mkdir("spool");
    let conf = scratch.write_config(
        "pgbr.conf",
        &format!(
            "[global]\nrepo1-path={}\nlock-path={}\nspool-path={}\narchive-async=y\nprocess-max=2\nstart-fast=y\narchive-timeout=30\nlog-level-console=info\n{extra}\n[main]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
            repo.display(),
            scratch.path("lock").display(),
            spool.display(),
            src.data.display(),
            src.port,
            src.socket_dir.display()
        ),
    );
    src.configure(&format!(
        "archive_mode = on\narchive_command = '{} --config={} --stanza=main archive-push %p'\nmin_wal_size = 4MB\nmax_wal_size = 64MB\n",
        scratch.pgbr.display(),
        conf.display()
    ));
    src.start();
    scratch.pgbr_ok(&conf, &["--stanza=main", "stanza-create"]);
    Env {
        scratch,
        src,
        conf,
        repo,
        spool,
    }
}

/// A copy of the test's configuration named `file`, with its own spool (a push worker serves one
/// WAL directory) and one more text replaced.
fn variant(env: &Env, file: &str, spool: &Path, (from, to): (&str, &str)) -> PathBuf {
    let text = std::fs::read_to_string(&env.conf)
        .expect("conf")
        .replace(
            &format!("spool-path={}", env.spool.display()),
            &format!("spool-path={}", spool.display()),
        )
        .replace(from, to);
    env.scratch.write_config(file, &text)
}

/// Archived segment names (24 hex chars) in the repository, with duplicates kept.
fn archived(repo: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![repo.join("archive/main")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                // `<segment>-<blake3><ext>` only: a worker killed mid-upload can leave the local
                // store's staging file (`...#<n>`), which no reader takes for the segment.
                let stored = n.len() >= 89
                    && n.as_bytes()[24] == b'-'
                    && n[25..89].bytes().all(|b| b.is_ascii_hexdigit())
                    && ["", ".zst", ".gz", ".lz4"].contains(&&n[89..]);
                if stored {
                    out.push(n[..24].to_string());
                }
            }
        }
    }
    out.sort();
    out
}

fn burst(c: &Cluster, n: usize) -> String {
    c.psql("create table if not exists burst (x int)");
    let mut last = String::new();
    for i in 0..n {
        c.psql(&format!("insert into burst values ({i})"));
        last = c.psql("select pg_walfile_name(pg_switch_wal())");
    }
    last
}

fn wait_archived(env: &Env, last: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let done = env.src.psql(&format!(
            "select coalesce(last_archived_wal >= '{last}', false) from pg_stat_archiver"
        ));
        if done == "t"
            && archived(&env.repo)
                .last()
                .is_some_and(|l| l.as_str() >= last)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "archiving of {last} did not finish; server log:\n{}",
            env.src.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_continuous(names: &[String], last: &str) {
    let mut dedup = names.to_vec();
    dedup.dedup();
    assert_eq!(
        dedup.len(),
        names.len(),
        "a segment was archived twice: {names:?}"
    );
    let nums: Vec<u64> = names
        .iter()
        .filter(|n| n.starts_with("00000001"))
        .map(|n| {
            u64::from_str_radix(&n[8..16], 16).expect("log") * 4096
                + u64::from_str_radix(&n[16..], 16).expect("seg")
        })
        .collect();
    for w in nums.windows(2) {
        assert_eq!(w[1], w[0] + 1, "gap in the archive: {names:?}");
    }
    assert_eq!(names.last().map(String::as_str), Some(last), "{names:?}");
}

#[test]
fn async_burst_of_64_segments_is_archived_without_loss_or_duplicates() {
    let env = setup("");
    let last = burst(&env.src, 70);
    wait_archived(&env, &last, Duration::from_secs(120));
    let names = archived(&env.repo);
    assert!(names.len() >= 64, "{}", names.len());
    assert_continuous(&names, &last);
    // Every file went through a background worker, which reported it in the spool; each
    // archive-push took its report.
    assert!(env.spool.join("archive/main/out").is_dir());
    assert!(env
        .spool
        .join("archive/main/archive-push-async.log")
        .exists());
    // Once idle, the worker exits and removes the reports of files PostgreSQL marked done.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pattern = format!("--config={} .*archive-push-async", env.conf.display());
    while std::process::Command::new("pgrep")
        .args(["-f", "--", &pattern])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("pgrep")
        .success()
    {
        assert!(Instant::now() < deadline, "the worker did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    let reports: Vec<_> = std::fs::read_dir(env.spool.join("archive/main/out"))
        .expect("out")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(reports.is_empty(), "reports left behind: {reports:?}");
}

#[test]
fn killing_the_async_worker_mid_burst_loses_nothing() {
    let env = setup("");
    env.src.psql("create table burst (x int)");
    let mut last = String::new();
    let mut kills = 0;
    for i in 0..40 {
        env.src.psql(&format!("insert into burst values ({i})"));
        last = env.src.psql("select pg_walfile_name(pg_switch_wal())");
        if i % 8 == 4 {
            let out = std::process::Command::new("pkill")
                .args([
                    "-9",
                    "-f",
                    &format!("{} .*archive-push-async", env.scratch.pgbr.display()),
                ])
                .status()
                .expect("pkill");
            if out.success() {
                kills += 1;
            }
        }
    }
    wait_archived(&env, &last, Duration::from_secs(120));
    let names = archived(&env.repo);
    assert_continuous(&names, &last);
    assert!(
        kills > 0,
        "the worker was never caught running; the test proved nothing"
    );
}

#[test]
fn queue_over_its_limit_drops_loudly_and_archive_get_prefetches() {
    let env = setup("archive-get-queue-max=4MB");
    let last = burst(&env.src, 8);
    wait_archived(&env, &last, Duration::from_secs(60));
    let names = archived(&env.repo);

    // archive-get: the first call fetches directly and prefetches the next segments.
    let first = &names[1];
    let dest = env.scratch.path("RECOVERYXLOG");
    env.scratch.pgbr_ok(
        &env.conf,
        &[
            "--stanza=main",
            "archive-get",
            first,
            dest.to_str().expect("path"),
        ],
    );
    let spool_in = env.spool.join("archive/main/in");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Segments only: the worker marks those it is fetching (`<name>.fetching`).
    let spooled = || {
        std::fs::read_dir(&spool_in)
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().contains('.'))
                    .count()
            })
            .unwrap_or(0)
    };
    while spooled() < 4 {
        assert!(Instant::now() < deadline, "prefetch did not fill the spool");
        std::thread::sleep(Duration::from_millis(100));
    }
    let next = &names[2];
    assert!(spool_in.join(next).exists());
    env.scratch.pgbr_ok(
        &env.conf,
        &[
            "--stanza=main",
            "archive-get",
            next,
            dest.to_str().expect("path"),
        ],
    );
    let expected = env.src.data.join("pg_wal").join(next);
    if let Ok(original) = std::fs::read(&expected) {
        assert_eq!(std::fs::read(&dest).expect("dest"), original);
    }
    assert_eq!(std::fs::metadata(&dest).expect("dest").len(), SEGMENT);
    assert!(
        !spool_in.join(next).exists(),
        "a served segment leaves the spool"
    );
    // The worker moves on as recovery takes segments: the window (4 segments of 1 MiB) now
    // reaches one segment further.
    assert!(names.len() > 6, "{names:?}");
    let beyond = &names[6];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !spool_in.join(beyond).exists() {
        assert!(
            Instant::now() < deadline,
            "the prefetch window did not move past {next}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Queue limit: a file marked ready is pushed by the worker; with a 1-byte limit, the worker
    // drops it instead, and archive-push succeeds with a loud error. A copy of an archived
    // segment stands for pg_wal (its own spool: a worker serves one WAL directory).
    let wal_dir = env.scratch.mkdir("wal");
    std::fs::create_dir(wal_dir.join("archive_status")).expect("archive_status");
    let dropped = &names[3];
    let seg = wal_dir.join(dropped);
    env.scratch.pgbr_ok(
        &env.conf,
        &[
            "--stanza=main",
            "archive-get",
            dropped,
            seg.to_str().expect("path"),
        ],
    );
    std::fs::write(wal_dir.join(format!("archive_status/{dropped}.ready")), b"").expect("ready");
    let tiny_spool = env.scratch.mkdir("spool-tiny");
    let tiny = variant(
        &env,
        "tiny.conf",
        &tiny_spool,
        (
            "archive-async=y",
            "archive-async=y\narchive-push-queue-max=1",
        ),
    );
    let out = env.scratch.pgbr(
        &tiny,
        &["--stanza=main", "archive-push", seg.to_str().expect("path")],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DROPPED") && err.contains("archive-push-queue-max"),
        "{err}"
    );
    // The report stays while the file is marked ready: a second call says the same.
    let again = env.scratch.pgbr(
        &tiny,
        &["--stanza=main", "archive-push", seg.to_str().expect("path")],
    );
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("DROPPED"));

    // A file with no ready marker beside it is pushed by archive-push itself: here, one already
    // archived with the same contents.
    std::fs::remove_file(wal_dir.join(format!("archive_status/{dropped}.ready"))).expect("rm");
    env.scratch.pgbr_ok(
        &tiny,
        &["--stanza=main", "archive-push", seg.to_str().expect("path")],
    );

    // A worker that cannot open any repository fails the archive-push waiting on it at once,
    // saying why, not after archive-timeout (30 s here).
    std::fs::write(wal_dir.join(format!("archive_status/{dropped}.ready")), b"").expect("ready");
    let empty_repo = env.scratch.mkdir("repo-empty");
    let broken_spool = env.scratch.mkdir("spool-broken");
    let broken = variant(
        &env,
        "broken.conf",
        &broken_spool,
        (
            &format!("repo1-path={}", env.repo.display()),
            &format!("repo1-path={}", empty_repo.display()),
        ),
    );
    let started = Instant::now();
    let out = env.scratch.pgbr(
        &broken,
        &["--stanza=main", "archive-push", seg.to_str().expect("path")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("asynchronous archive-push") && err.contains("no repository can take WAL"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn check_passes_on_a_sane_stanza_and_names_what_is_wrong() {
    let env = setup("");
    let out = env.scratch.pgbr_ok(&env.conf, &["--stanza=main", "check"]);
    assert!(out.contains("ok"), "{out}");
    env.src.psql("alter system set archive_command = 'true'");
    env.src.psql("select pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
    let out = env.scratch.pgbr(&env.conf, &["--stanza=main", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("archive_command is 'true'"), "{err}");
}
