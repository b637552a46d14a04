//! The fault matrix: every writing command killed (SIGKILL, as `kill -9`) at each of its crash
//! points (`pgbr_backup::failpoints`), against one real PostgreSQL 15 cluster. After each kill:
//! nothing outside the command's destinations changed (a sentinel directory; for restore, the
//! repository too); `verify` passes or names only the interrupted backup; the newest committed
//! backup restores byte for byte as before (the first time, to a cluster holding the data it was
//! taken of); and the next command of the kind succeeds, so nothing left behind is misread.
//! Run with `--nocapture` to see what each cell found.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use common::faults::{
    crash, incomplete_backups, remove, restore_args, text, verify_passes_or_names, Ledger, Sentinel,
};
use common::{config_text, Cluster, Setup, Stanza};

struct Fixture {
    env: Stanza,
    sentinel: Sentinel,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
static TURNS: Mutex<()> = Mutex::new(());

/// One cluster (pgbench scale 1 and table `t`), stanza `main` with a full backup; small bundles,
/// so a backup stores many objects. The tests take turns.
fn fixture() -> (&'static Fixture, MutexGuard<'static, ()>) {
    common::shared(&FIXTURE, &TURNS, || {
        let env = Stanza::setup(Setup {
            global: "repo1-bundle-size=1MB\nrepo1-bundle-limit=256KB\n",
            ..Setup::default()
        });
        common::stop_at_exit(&env.src.data);
        common::remove_at_exit(&env.scratch);
        env.src.pgbench_init(1);
        env.src.psql("create table t (id int primary key, v text)");
        env.scratch
            .pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);
        let sentinel = Sentinel::new(&env.scratch, "sentinel");
        Fixture { env, sentinel }
    })
}

/// Prints what each cell found (shown with `--nocapture`).
fn report(command: &str, results: &[String]) {
    for r in results {
        println!("{command}: {r}");
    }
}

/// `backup` cells: failpoints, backup arguments.
const BACKUP_CELLS: &[(&str, &[&str])] = &[
    ("backup::after-label=return", &["--type=incr"]),
    ("backup::after-inprogress=return", &["--type=incr"]),
    ("backup::copy-file=20*off->return", &["--type=full"]),
    ("backup::after-files=return", &["--type=incr"]),
    ("backup::before-commit=return", &["--type=diff"]),
    // The manifest is written, its copy is not.
    ("repo::before-copy=return", &["--type=incr"]),
    ("backup::after-commit=return", &["--type=incr"]),
    // backup.info is written, its copy is not.
    ("repo::before-copy=1*off->return", &["--type=incr"]),
    ("backup::after-backup-info=return", &["--type=incr"]),
    // The expire that follows a backup.
    (
        "expire::after-backup-info=return",
        &["--type=full", "--repo1-retention-full=1"],
    ),
    (
        "expire::after-manifest=return",
        &["--type=full", "--repo1-retention-full=1"],
    ),
    (
        "expire::after-directory=return",
        &["--type=full", "--repo1-retention-full=1"],
    ),
    (
        "expire::after-wal=return",
        &["--type=full", "--repo1-retention-full=1"],
    ),
];

#[test]
fn a_backup_killed_at_any_crash_point_leaves_a_repository_that_verifies_resumes_and_restores() {
    let (f, _turn) = fixture();
    let (env, scratch, conf) = (&f.env, &f.env.scratch, &f.env.conf);
    let mut ledger = Ledger::new(env);
    ledger.change(env, 0);
    scratch.pgbr_ok(conf, &["--stanza=main", "backup", "--type=full"]);
    ledger.check_latest_restores(env);
    for (i, (failpoints, args)) in BACKUP_CELLS.iter().enumerate() {
        ledger.change(env, 100 + i);
        let mut all = vec!["--stanza=main", "backup"];
        all.extend_from_slice(args);
        crash(scratch, conf, &all, failpoints);
        f.sentinel.assert_untouched(failpoints);
        let incomplete = incomplete_backups(&env.repo, "main");
        let verified = verify_passes_or_names(scratch, conf, "main", &incomplete);
        let restored = ledger.check_latest_restores(env);
        // The next backup of the same kind resumes or cleans up, and commits.
        let out = scratch.pgbr(conf, &all);
        assert!(
            out.status.success(),
            "{failpoints}: next backup: {}",
            text(&out)
        );
        ledger.adopt(env);
        let log = text(&out);
        let resumed = log.contains("resumed an interrupted attempt");
        assert!(
            incomplete_backups(&env.repo, "main").is_empty(),
            "{failpoints}: an interrupted backup is left after the next one"
        );
        ledger.results.push(format!(
            "{failpoints}: incomplete {incomplete:?}; {verified}; newest committed {restored} restores; next backup ok{}",
            if resumed { " (resumed)" } else { "" }
        ));
    }
    env.verify_ok();
    ledger.check_latest_restores(env);
    report("backup", &ledger.results);
}

/// `restore` cells: failpoints, whether the restore goes over a complete earlier restore
/// (`--delta`; else into an empty directory).
const RESTORE_CELLS: &[(&str, bool)] = &[
    ("restore::after-mark=return", false),
    ("restore::copy-file=10*off->return", false),
    ("restore::before-recovery-settings=return", false),
    ("restore::before-pg-control=return", false),
    ("restore::after-mark=return", true),
    ("restore::after-remove-extras=return", true),
    ("restore::copy-file=5*off->return", true),
    ("restore::before-pg-control=return", true),
];

#[test]
fn a_restore_killed_at_any_crash_point_touches_nothing_else_and_delta_finishes_it_exactly() {
    let (f, _turn) = fixture();
    let (env, scratch, conf) = (&f.env, &f.env.scratch, &f.env.conf);
    let mut ledger = Ledger::new(env);
    ledger.change(env, 200);
    scratch.pgbr_ok(conf, &["--stanza=main", "backup", "--type=full"]);
    let label = ledger.check_latest_restores(env);
    let repo_before = common::snapshot(&env.repo);
    for (i, (failpoints, over_existing)) in RESTORE_CELLS.iter().enumerate() {
        let dir = scratch.mkdir(&format!("restore-cell{i}"));
        let mut args = restore_args("main", &dir);
        if *over_existing {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            scratch.pgbr_ok(conf, &refs);
            // Something the backup does not have, for --delta to remove.
            std::fs::write(dir.join("base/stray"), "not in the backup").expect("write");
            args.push("--delta".into());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        crash(scratch, conf, &refs, failpoints);
        f.sentinel.assert_untouched(failpoints);
        common::assert_unchanged(&repo_before, &common::snapshot(&env.repo), failpoints);
        // Until pg_control takes its name, last, the directory holds none (with --delta, the
        // old one goes right after the marker): never a mix of old and new files PostgreSQL
        // would start on. Killed at the marker, a directory is as it was.
        let control = dir.join("global/pg_control").exists();
        if failpoints.contains("after-mark") {
            assert_eq!(control, *over_existing, "{failpoints}: pg_control");
        } else {
            assert!(
                !control,
                "{failpoints}: a half-restored directory holds pg_control"
            );
        }
        let settings = dir.join("recovery.signal").exists();
        // Finished by restore --delta: the same bytes as a restore into an empty directory.
        let mut finish = restore_args("main", &dir);
        finish.push("--delta".into());
        let refs: Vec<&str> = finish.iter().map(String::as_str).collect();
        scratch.pgbr_ok(conf, &refs);
        ledger.check_restored(env, &label, &dir);
        remove(&dir);
        ledger.results.push(format!(
            "{failpoints} ({}): pg_control {}, recovery settings {}; repository and sentinel untouched; --delta finishes it byte for byte",
            if *over_existing { "--delta over a restore" } else { "empty directory" },
            if control { "as it was" } else { "absent" },
            if settings { "written" } else { "absent" },
        ));
    }
    report("restore", &ledger.results);
}

/// `expire` cells (`expire --repo1-retention-full=1` after a new full backup).
const EXPIRE_CELLS: &[&str] = &[
    "expire::after-backup-info=return",
    // backup.info is written, its copy is not.
    "repo::before-copy=return",
    "expire::after-manifest=return",
    "expire::after-directory=return",
    "expire::after-wal=2*off->return",
];

#[test]
fn an_expire_killed_at_any_crash_point_leaves_a_repository_that_verifies_and_the_next_finishes() {
    let (f, _turn) = fixture();
    let (env, scratch, conf) = (&f.env, &f.env.scratch, &f.env.conf);
    let mut ledger = Ledger::new(env);
    let expire = ["--stanza=main", "expire", "--repo1-retention-full=1"];
    for (i, failpoints) in EXPIRE_CELLS.iter().enumerate() {
        ledger.change(env, 300 + i);
        scratch.pgbr_ok(conf, &["--stanza=main", "backup", "--type=full"]);
        ledger.adopt(env);
        let newest = ledger.latest(env);
        crash(scratch, conf, &expire, failpoints);
        f.sentinel.assert_untouched(failpoints);
        let incomplete = incomplete_backups(&env.repo, "main");
        let verified = verify_passes_or_names(scratch, conf, "main", &incomplete);
        let restored = ledger.check_latest_restores(env);
        assert_eq!(restored, newest, "{failpoints}");
        scratch.pgbr_ok(conf, &expire);
        let left = common::labels(&common::info(scratch, conf));
        assert_eq!(left, vec![newest.clone()], "{failpoints}");
        let dirs = std::fs::read_dir(env.repo.join("backup/main"))
            .expect("backup dir")
            .flatten()
            .filter(|e| e.path().is_dir())
            .count();
        assert_eq!(
            dirs, 1,
            "{failpoints}: directories of expired backups are left"
        );
        env.verify_ok();
        ledger.results.push(format!(
            "{failpoints}: incomplete {incomplete:?}; {verified}; {restored} restores; next expire leaves only it"
        ));
    }
    report("expire", &ledger.results);
}

/// A stanza `name` of the fixture's cluster in repositories `repos` (posix paths), with more
/// `[global]` options `extra`: its configuration file.
fn side_stanza(env: &Stanza, name: &str, repos: &[&Path], extra: &str) -> PathBuf {
    let mut global = String::new();
    for (i, r) in repos.iter().enumerate() {
        global.push_str(&format!("repo{}-path={}\n", i + 1, r.display()));
    }
    global.push_str("log-level-console=info\narchive-timeout=20\n");
    global.push_str(extra);
    env.scratch.write_config(
        &format!("{name}.conf"),
        &config_text(&env.scratch, &global, name, &env.src),
    )
}

/// Copies of WAL segments the cluster completed, in `dir`, oldest first (`n` of them).
fn segments(env: &Stanza, dir: &Path, n: usize) -> Vec<PathBuf> {
    for i in 0..n {
        env.src
            .psql(&format!("insert into t values ({}, 'wal')", 1000 + i));
        env.src.psql("select pg_switch_wal()");
    }
    let current = env.src.psql("select pg_walfile_name(pg_current_wal_lsn())");
    let wal = env.src.data.join("pg_wal");
    let mut names: Vec<String> = std::fs::read_dir(&wal)
        .expect("pg_wal")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.as_str() < current.as_str())
        .collect();
    names.sort();
    let names = &names[names.len().saturating_sub(n)..];
    names
        .iter()
        .map(|n| {
            let to = dir.join(n);
            std::fs::copy(wal.join(n), &to).expect("copy segment");
            common::chown_pg(&to);
            to
        })
        .collect()
}

/// `archive-get` of `segment` from repository `repo` of stanza `push` gives its exact bytes.
fn gets_back(env: &Stanza, conf: &Path, segment: &Path, repo: u32) {
    let name = segment.file_name().expect("name").to_string_lossy();
    let dest = env.scratch.path(&format!("got-{name}-{repo}"));
    env.scratch.pgbr_ok(
        conf,
        &[
            "--stanza=push",
            "archive-get",
            &format!("--repo={repo}"),
            &name,
            &dest.display().to_string(),
        ],
    );
    let same = std::fs::read(&dest).expect("got") == std::fs::read(segment).expect("segment");
    assert!(same, "{name} from repo{repo} differs");
    std::fs::remove_file(&dest).expect("remove");
}

const PUSH_CELLS: &[&str] = &[
    "archive-push::before-put=return",
    "archive-push::before-put=1*off->return",
    "archive-push::after-put=return",
    "archive-push::after-put=1*off->return",
];

const ASYNC_CELLS: &[&str] = &[
    "archive-push::before-put=return",
    // Mid-push: in the first repository, not the second, not reported.
    "archive-push::after-put=return",
    "archive-push-async::after-report=return",
];

#[test]
fn an_archive_push_killed_at_any_crash_point_loses_nothing_and_the_retry_fills_in() {
    let (f, _turn) = fixture();
    let env = &f.env;
    let scratch = &env.scratch;
    let repos = [scratch.mkdir("push1"), scratch.mkdir("push2")];
    let spool = scratch.mkdir("push-spool");
    let conf = side_stanza(
        env,
        "push",
        &[&repos[0], &repos[1]],
        &format!("spool-path={}\n", spool.display()),
    );
    scratch.pgbr_ok(&conf, &["--stanza=push", "stanza-create"]);
    let wal = scratch.mkdir("push-wal");
    let segs = segments(env, &wal, PUSH_CELLS.len() + 2 * ASYNC_CELLS.len());
    let mut results = Vec::new();
    let check_repos = |what: &str| -> String {
        let mut said = Vec::new();
        for repo in ["--repo=1", "--repo=2"] {
            let (code, report) = common::faults::verify(scratch, &conf, &["--stanza=push", repo]);
            assert_eq!(code, 0, "{what}: verify {repo}: {report:#}");
            said.extend(
                common::faults::objects(&report, "notes")
                    .into_iter()
                    .map(String::from),
            );
        }
        f.sentinel.assert_untouched(what);
        format!("verify ok in both repositories, notes {said:?}")
    };
    for (failpoints, seg) in PUSH_CELLS.iter().zip(&segs) {
        let path = seg.display().to_string();
        crash(
            scratch,
            &conf,
            &["--stanza=push", "archive-push", &path],
            failpoints,
        );
        let verified = check_repos(failpoints);
        scratch.pgbr_ok(&conf, &["--stanza=push", "archive-push", &path]);
        gets_back(env, &conf, seg, 1);
        gets_back(env, &conf, seg, 2);
        results.push(format!(
            "{failpoints}: {verified}; the retry stores it in both"
        ));
    }
    // Asynchronous: the worker killed; PostgreSQL's next archive-push of each file returns once
    // both repositories hold it.
    let queue = scratch.mkdir("push-queue");
    let status = queue.join("archive_status");
    std::fs::create_dir(&status).expect("archive_status");
    common::chown_pg(&status);
    let pending = &segs[PUSH_CELLS.len()..];
    for (failpoints, pair) in ASYNC_CELLS.iter().zip(pending.chunks(2)) {
        // The worker the last archive-push started waits a few seconds for more files: the
        // killed worker must be the only one.
        wait_no_worker(&spool.join("archive/push/push.lock"));
        let mut queued = Vec::new();
        for seg in pair {
            let name = seg
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            std::fs::copy(seg, queue.join(&name)).expect("queue");
            std::fs::write(status.join(format!("{name}.ready")), "").expect("ready");
            queued.push(name);
        }
        common::chown_pg(&queue);
        let args = ["--stanza=push", "--archive-async", "archive-push-async"];
        let dir = queue.display().to_string();
        crash(
            scratch,
            &conf,
            &[&args[..], &[dir.as_str()]].concat(),
            failpoints,
        );
        let verified = check_repos(failpoints);
        for (name, seg) in queued.iter().zip(pair) {
            let path = queue.join(name).display().to_string();
            scratch.pgbr_ok(
                &conf,
                &["--stanza=push", "--archive-async", "archive-push", &path],
            );
            // PostgreSQL marks it done.
            std::fs::rename(
                status.join(format!("{name}.ready")),
                status.join(format!("{name}.done")),
            )
            .expect("done");
            gets_back(env, &conf, seg, 1);
            gets_back(env, &conf, seg, 2);
        }
        results.push(format!(
            "async {failpoints}: {verified}; the next archive-push of each file returns once both repositories hold it"
        ));
    }
    check_repos("the end");
    report("archive-push", &results);
}

/// Waits (up to 30 s) until no process holds the worker lock `lock`.
fn wait_no_worker(lock: &Path) {
    use std::os::unix::io::AsRawFd;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let Ok(file) = std::fs::File::open(lock) else {
            return;
        };
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the push worker does not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[path = "fault_matrix/stanza.rs"]
mod stanza;
