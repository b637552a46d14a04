//! `archive-push`, `archive-get` and `--archive-copy` against a real PostgreSQL 15 cluster.
//!
//! One fixture serves every test: cluster A archives into repository `repo` (stanza `main`) and has
//! one full backup taken with `--archive-copy`; repository `push-repo` (stanza `push`, also for
//! cluster A) receives only the pushes the tests make, so its listing before and after a command
//! proves what that command wrote; cluster B (initdb only) supplies a segment of another system.
//! The tests take turns.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard, OnceLock};

use common::{
    assert_fails, assert_unchanged, chown_pg, snapshot, Cluster, Setup, Snapshot, Stanza,
};

struct Fixture {
    /// Cluster A archives into repository `repo` (stanza `main`), with one `--archive-copy`
    /// backup.
    env: Stanza,
    /// Repository only the tests push into (stanza `push`).
    push_repo: PathBuf,
    push_conf: PathBuf,
    /// A WAL segment of cluster A and one of cluster B (copies owned by the PostgreSQL user).
    segment_a: PathBuf,
    segment_b: PathBuf,
    /// The backup's label.
    label: String,
    /// The `.backup` history file PostgreSQL wrote for that backup (a copy).
    backup_history: PathBuf,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

/// Configuration `file` for stanza `stanza` of cluster A in the repository at `repo`.
fn config_for_repo(env: &Stanza, file: &str, repo: &Path, stanza: &str) -> PathBuf {
    env.config_like(
        file,
        &format!("repo1-path={}\n", repo.display()),
        stanza,
        &env.src,
    )
}

fn wal_names(pg_wal: &Path, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(pg_wal)
        .expect("read pg_wal")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| pred(n))
        .collect();
    names.sort();
    names
}

fn is_segment(n: &str) -> bool {
    n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit())
}

fn copy_pg(from: &Path, to: &Path) {
    std::fs::copy(from, to).expect("copy");
    chown_pg(to);
}

impl Fixture {
    fn new() -> Fixture {
        let env = Stanza::setup(Setup {
            global: "process-max=2\n",
            quiet: true,
            ..Setup::default()
        });
        let scratch = &env.scratch;
        common::stop_at_exit(&env.src.data);
        common::remove_at_exit(scratch);
        let push_repo = scratch.mkdir("push-repo");
        let push_conf = config_for_repo(&env, "push.conf", &push_repo, "push");
        let wal = scratch.mkdir("wal");
        let a_wal = env.src.data.join("pg_wal");
        let seg_a = wal_names(&a_wal, is_segment)[0].clone();
        let segment_a = wal.join(&seg_a);
        copy_pg(&a_wal.join(&seg_a), &segment_a);
        // Cluster B never runs: its initdb segment carries its own system identifier.
        let b = Cluster::init(scratch, "b");
        let b_dir = scratch.mkdir("wal-b");
        let seg_b = wal_names(&b.data.join("pg_wal"), is_segment)[0].clone();
        let segment_b = b_dir.join(&seg_b);
        copy_pg(&b.data.join("pg_wal").join(&seg_b), &segment_b);
        drop(b);

        scratch.pgbr_ok(&push_conf, &["--stanza=push", "stanza-create"]);
        env.src.psql(
            "create table t as select g as id, md5(g::text) as v from generate_series(1, 20000) g",
        );
        scratch.pgbr_ok(
            &env.conf,
            &["--stanza=main", "backup", "--type=full", "--archive-copy"],
        );
        let label = common::labels(&common::info(scratch, &env.conf))[0].clone();
        let history = wal_names(&a_wal, |n| n.ends_with(".backup"));
        let history = history.last().expect("a .backup file in pg_wal");
        let backup_history = wal.join(history);
        copy_pg(&a_wal.join(history), &backup_history);
        Fixture {
            env,
            push_repo,
            push_conf,
            segment_a,
            segment_b,
            label,
            backup_history,
        }
    }
}

fn fixture() -> (&'static Fixture, MutexGuard<'static, ()>) {
    common::shared(&FIXTURE, &SERIAL, Fixture::new)
}

/// Files added between two snapshots.
fn added(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    after
        .iter()
        .filter(|(k, v)| v.0 == "file" && !before.contains_key(*k))
        .map(|(k, _)| k.clone())
        .collect()
}

/// A copy of `src` named `name` in the scratch directory `dir` (created as needed).
fn renamed_copy(f: &Fixture, src: &Path, dir: &str, name: &str) -> PathBuf {
    let d = f.env.scratch.mkdir(dir);
    let p = d.join(name);
    copy_pg(src, &p);
    p
}

/// The one object of the push repository stored for `name`.
fn stored_object(f: &Fixture, name: &str) -> PathBuf {
    let found: Vec<_> = snapshot(&f.push_repo)
        .into_iter()
        .filter(|(k, v)| {
            v.0 == "file"
                && k.rsplit('/')
                    .next()
                    .unwrap_or("")
                    .starts_with(&format!("{name}-"))
        })
        .map(|(k, _)| f.push_repo.join(k))
        .collect();
    assert_eq!(found.len(), 1, "objects for {name}: {found:?}");
    found[0].clone()
}

fn push(f: &Fixture, file: &Path) -> Output {
    f.env.scratch.pgbr(
        &f.push_conf,
        &["--stanza=push", "archive-push", &file.display().to_string()],
    )
}

fn get(f: &Fixture, name: &str, dest: &Path) -> Output {
    f.env.scratch.pgbr(
        &f.push_conf,
        &[
            "--stanza=push",
            "archive-get",
            name,
            &dest.display().to_string(),
        ],
    )
}

#[test]
fn archive_push_of_identical_segment_twice_succeeds_and_reports_already_archived() {
    let (f, _turn) = fixture();
    // The segment's own name: the name is not otherwise used in the push repository.
    let name = "000000010000000000000071";
    let seg = renamed_copy(f, &f.segment_a, "twice", name);
    let before = snapshot(&f.push_repo);
    let out = push(f, &seg);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let after_first = snapshot(&f.push_repo);
    let new = added(&before, &after_first);
    assert_eq!(new.len(), 1, "first push stores one object: {new:?}");
    assert!(
        new[0].starts_with(&format!("archive/push/15-1/0000000100000000/{name}-")),
        "{new:?}"
    );

    let out = push(f, &seg);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already in the archive") && stderr.contains(name),
        "second push does not report the segment as already archived: {stderr}"
    );
    assert_unchanged(&after_first, &snapshot(&f.push_repo), "push repository");
}

#[test]
fn archive_push_of_same_name_with_other_contents_exits_7_and_keeps_stored_object() {
    let (f, _turn) = fixture();
    let name = "000000010000000000000072";
    let seg = renamed_copy(f, &f.segment_a, "dup-first", name);
    let out = push(f, &seg);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let object = stored_object(f, name);
    let stored = std::fs::read(&object).expect("read object");

    // Same name, same cluster, one byte different past the page header.
    let other = renamed_copy(f, &f.segment_a, "dup-other", name);
    let mut bytes = std::fs::read(&other).expect("read");
    bytes[100_000] ^= 0xff;
    std::fs::write(&other, &bytes).expect("write");
    let before = snapshot(&f.push_repo);
    let out = push(f, &other);
    assert_fails(
        &out,
        7,
        &[name, "different contents"],
        "push of other contents",
    );
    assert_unchanged(&before, &snapshot(&f.push_repo), "push repository");
    assert_eq!(std::fs::read(&object).expect("read object"), stored);

    // And archive-get still returns the first contents.
    let dest = f.env.scratch.mkdir("dup-get").join("RECOVERYXLOG");
    let out = get(f, name, &dest);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        std::fs::read(&dest).expect("read"),
        std::fs::read(&seg).expect("read")
    );
}

#[test]
fn archive_push_refuses_segment_from_another_cluster() {
    let (f, _turn) = fixture();
    for (conf, stanza, repo) in [
        (&f.push_conf, "push", &f.push_repo),
        (&f.env.conf, "main", &f.env.repo),
    ] {
        let before = snapshot(repo);
        let out = f.env.scratch.pgbr(
            conf,
            &[
                &format!("--stanza={stanza}"),
                "archive-push",
                &f.segment_b.display().to_string(),
            ],
        );
        let name = f.segment_b.file_name().expect("name").to_string_lossy();
        assert_fails(
            &out,
            4,
            &[&name, &format!("'{stanza}'"), "system"],
            "push of cluster B's segment",
        );
        let after = snapshot(repo);
        // The archiver of cluster A may add its own WAL to `repo` meanwhile, never B's.
        let new = added(&before, &after);
        assert!(
            !new.iter().any(|p| p.contains(&*name)),
            "cluster B's segment was stored: {new:?}"
        );
        if repo == &f.push_repo {
            assert_unchanged(&before, &after, "push repository");
        }
    }
}

#[test]
fn archive_push_stores_history_and_backup_files_and_archive_get_returns_them_byte_identical() {
    let (f, _turn) = fixture();
    let dir = f.env.scratch.mkdir("history");
    let tli = dir.join("00000002.history");
    std::fs::write(&tli, "1\t0/3000000\tno recovery target specified\n").expect("write");
    chown_pg(&tli);
    let files = [tli, f.backup_history.clone()];
    let dest_dir = f.env.scratch.mkdir("history-get");
    for file in &files {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let before = snapshot(&f.push_repo);
        let out = push(f, file);
        assert_eq!(out.status.code(), Some(0), "push {name}: {out:?}");
        let new = added(&before, &snapshot(&f.push_repo));
        assert_eq!(new.len(), 1, "push {name}: {new:?}");
        let dest = dest_dir.join(&name);
        let out = get(f, &name, &dest);
        assert_eq!(out.status.code(), Some(0), "get {name}: {out:?}");
        assert_eq!(
            std::fs::read(&dest).expect("read"),
            std::fs::read(file).expect("read"),
            "{name} differs after archive-get"
        );
    }
    // The archiver stored PostgreSQL's own .backup file in the main repository as well.
    let name = f
        .backup_history
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let dest = dest_dir.join(format!("main-{name}"));
    let out = f.env.scratch.pgbr(
        &f.env.conf,
        &[
            "--stanza=main",
            "archive-get",
            &name,
            &dest.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "get {name} from main: {out:?}");
    assert_eq!(
        std::fs::read(&dest).expect("read"),
        std::fs::read(&f.backup_history).expect("read")
    );
}

/// Names in `dir` (to check that no destination nor temporary file was left).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn archive_get_of_missing_segment_exits_1_and_writes_no_destination() {
    let (f, _turn) = fixture();
    let dest_dir = f.env.scratch.mkdir("missing-get");
    let before = snapshot(&f.push_repo);
    let out = get(
        f,
        "0000000100000000000000EE",
        &dest_dir.join("RECOVERYXLOG"),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(listing(&dest_dir).is_empty(), "{:?}", listing(&dest_dir));
    assert_unchanged(&before, &snapshot(&f.push_repo), "push repository");
}

#[test]
fn archive_get_of_corrupted_object_exits_126_and_writes_no_destination() {
    let (f, _turn) = fixture();
    let name = "000000010000000000000073";
    let seg = renamed_copy(f, &f.segment_a, "corrupt", name);
    let out = push(f, &seg);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let object = stored_object(f, name);
    let mut bytes = std::fs::read(&object).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&object, &bytes).expect("write");

    let dest_dir = f.env.scratch.mkdir("corrupt-get");
    let before = snapshot(&f.push_repo);
    let out = get(f, name, &dest_dir.join("RECOVERYXLOG"));
    assert_fails(&out, 126, &[name], "archive-get of a corrupted object");
    assert!(listing(&dest_dir).is_empty(), "{:?}", listing(&dest_dir));
    assert_unchanged(&before, &snapshot(&f.push_repo), "push repository");
}

/// Starts a cluster over the restored data directory `data` (archiving off) and waits until
/// recovery ended.
fn start_restored(f: &Fixture, name: &str, data: PathBuf) -> Cluster {
    let mut c = Cluster::over(&f.env.scratch, name, data);
    c.configure("archive_mode = off\n");
    common::stop_at_exit(&c.data);
    c.start();
    c.wait_promoted();
    c
}

#[test]
fn backup_with_archive_copy_restores_and_starts_without_the_archive() {
    let (f, _turn) = fixture();
    // The backup holds its WAL.
    let wal_dir = f
        .env
        .repo
        .join(format!("backup/main/{}/pg_data/pg_wal", f.label));
    let held = listing(&wal_dir);
    assert!(
        held.iter().any(|n| n.len() > 24 && is_segment(&n[..24])),
        "no WAL segment in {}: {held:?}",
        wal_dir.display()
    );

    // A copy of the repository whose WAL archive is gone (archive.info stays: without it
    // archive-get cannot open the stanza and exits 126, which stops recovery by design).
    let copy = f.env.scratch.mkdir("repo-no-wal");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", f.env.repo.display()))
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(st.success());
    std::fs::remove_dir_all(copy.join("archive/main/15-1")).expect("remove the WAL archive");
    chown_pg(&copy);
    let conf = config_for_repo(&f.env, "no-wal.conf", &copy, "main");

    let dest = f.env.scratch.mkdir("restored-archive-copy");
    f.env.scratch.pgbr_ok(
        &conf,
        &[
            "--stanza=main",
            "restore",
            &format!("--pg1-path={}", dest.display()),
        ],
    );
    for n in &held {
        let seg = &n[..24];
        assert!(
            dest.join("pg_wal").join(seg).exists(),
            "pg_wal/{seg} not restored"
        );
    }
    let mut c = start_restored(f, "restored-archive-copy", dest);
    assert_eq!(c.psql("select count(*) from t"), "20000");
    c.stop();
}

/// A snapshot of a restored data directory, without the timestamp comment pgbr writes into
/// postgresql.auto.conf.
fn tree(root: &Path) -> Snapshot {
    let mut out = snapshot(root);
    if let Some(auto) = out.get_mut("postgresql.auto.conf") {
        let text = String::from_utf8_lossy(&auto.2)
            .lines()
            .filter(|l| !l.starts_with("# Recovery settings generated by pgbr"))
            .collect::<Vec<_>>()
            .join("\n");
        auto.2 = text.into_bytes();
    }
    out
}

#[test]
fn delta_restore_makes_a_modified_directory_identical_to_a_fresh_restore() {
    let (f, _turn) = fixture();
    let restore = |dest: &Path, delta: bool| {
        let pg1 = format!("--pg1-path={}", dest.display());
        let mut args = vec!["--stanza=main", "restore", &pg1];
        if delta {
            args.push("--delta");
        }
        f.env.scratch.pgbr_ok(&f.env.conf, &args);
    };
    let dest = f.env.scratch.mkdir("delta");
    restore(&dest, false);
    // Run it once, so the directory holds everything a used cluster holds.
    let mut c = start_restored(f, "delta", dest.clone());
    let rel = c.psql("select pg_relation_filepath('t')");
    c.psql("insert into t select g, 'after' from generate_series(1, 100) g");
    c.stop();

    // Delete a file, change bytes in a relation file, add a stray file.
    std::fs::remove_file(dest.join("PG_VERSION")).expect("remove PG_VERSION");
    let rel_path = dest.join(&rel);
    let mut bytes = std::fs::read(&rel_path).expect("read relation");
    bytes[8192 + 100] ^= 0xff;
    std::fs::write(&rel_path, &bytes).expect("write relation");
    std::fs::write(dest.join("base/stray-file"), b"not from the backup").expect("stray");
    chown_pg(&dest);

    restore(&dest, true);
    let fresh = f.env.scratch.mkdir("fresh");
    restore(&fresh, false);
    assert_unchanged(
        &tree(&fresh),
        &tree(&dest),
        "a delta restore, against a fresh restore,",
    );

    let mut c = start_restored(f, "delta2", dest);
    assert_eq!(c.psql("select count(*) from t"), "20000");
    c.stop();
}
