//! `archive-push`, `archive-get` and `--archive-copy` against a real PostgreSQL 15 cluster.
//!
//! One fixture serves every test: cluster A archives into repository `repo` (stanza `main`) and has
//! one full backup taken with `--archive-copy`; repository `push-repo` (stanza `push`, also for
//! cluster A) receives only the pushes the tests make, so its listing before and after a command
//! proves what that command wrote; cluster B (initdb only) supplies a segment of another system.
//! The tests take turns.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard, OnceLock};

use common::{as_pg, chown_pg, Cluster, Scratch, PG_BIN};

struct Fixture {
    scratch: Scratch,
    a: Cluster,
    /// Repository A archives into (stanza `main`), with one `--archive-copy` backup.
    repo: PathBuf,
    conf: PathBuf,
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

/// Data directories of clusters the tests start; stopped at exit.
static STARTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn cleanup() {
    let mut dirs: Vec<PathBuf> = STARTED
        .lock()
        .map(|v| v.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    if let Some(f) = FIXTURE.get() {
        dirs.push(f.a.data.clone());
    }
    for d in dirs {
        if d.join("postmaster.pid").exists() {
            let _ = as_pg(format!("{PG_BIN}/pg_ctl"))
                .arg("-D")
                .arg(&d)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
    if let Some(f) = FIXTURE.get() {
        let _ = std::fs::remove_dir_all(f.scratch.dir.path());
    }
}

fn config_text(repo: &Path, stanza: &str, a: &Cluster) -> String {
    format!(
        "[global]\nrepo1-path={}\nprocess-max=2\nstart-fast=y\narchive-timeout=60\n\n[{stanza}]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
        repo.display(),
        a.data.display(),
        a.port,
        a.socket_dir.display()
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
        let scratch = Scratch::new();
        let mut a = Cluster::init(&scratch, "a");
        let b = Cluster::init(&scratch, "b");
        let repo = scratch.mkdir("repo");
        let conf = scratch.write_config("pgbr.conf", &config_text(&repo, "main", &a));
        let push_repo = scratch.mkdir("push-repo");
        let push_conf = scratch.write_config("push.conf", &config_text(&push_repo, "push", &a));
        a.configure(&format!(
            "archive_mode = on\narchive_command = '{} --config={} --stanza=main archive-push %p'\n",
            scratch.pgbr.display(),
            conf.display()
        ));
        let wal = scratch.mkdir("wal");
        let seg_a = wal_names(&a.data.join("pg_wal"), is_segment)[0].clone();
        let segment_a = wal.join(&seg_a);
        copy_pg(&a.data.join("pg_wal").join(&seg_a), &segment_a);
        // Cluster B never runs: its initdb segment carries its own system identifier.
        let b_dir = scratch.mkdir("wal-b");
        let seg_b = wal_names(&b.data.join("pg_wal"), is_segment)[0].clone();
        let segment_b = b_dir.join(&seg_b);
        copy_pg(&b.data.join("pg_wal").join(&seg_b), &segment_b);
        drop(b);

        a.start();
        scratch.pgbr_ok(&conf, &["--stanza=main", "stanza-create"]);
        scratch.pgbr_ok(&push_conf, &["--stanza=push", "stanza-create"]);
        a.psql(
            "create table t as select g as id, md5(g::text) as v from generate_series(1, 20000) g",
        );
        scratch.pgbr_ok(
            &conf,
            &["--stanza=main", "backup", "--type=full", "--archive-copy"],
        );
        let info = scratch.pgbr_ok(&conf, &["--stanza=main", "info", "--output=json"]);
        let json: serde_json::Value = serde_json::from_str(&info).expect("info json");
        let label = json[0]["backups"][0]["label"]
            .as_str()
            .expect("label")
            .to_string();
        let history = wal_names(&a.data.join("pg_wal"), |n| n.ends_with(".backup"));
        let history = history.last().expect("a .backup file in pg_wal");
        let backup_history = wal.join(history);
        copy_pg(&a.data.join("pg_wal").join(history), &backup_history);
        Fixture {
            scratch,
            a,
            repo,
            conf,
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
    let turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = FIXTURE.get_or_init(|| {
        // SAFETY: registers a plain extern "C" function; it only runs at process exit.
        unsafe {
            libc::atexit(cleanup);
        }
        Fixture::new()
    });
    (f, turn)
}

type Snapshot = BTreeMap<String, (bool, Vec<u8>)>;

/// Every file and directory under `root` with its contents (links are not expected here).
fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("prefix").display().to_string();
            if std::fs::symlink_metadata(&p).expect("stat").is_dir() {
                out.insert(rel, (true, Vec::new()));
                stack.push(p);
            } else {
                out.insert(rel, (false, std::fs::read(&p).expect("read")));
            }
        }
    }
    out
}

fn assert_unchanged(before: &Snapshot, after: &Snapshot, what: &str) {
    if before == after {
        return;
    }
    let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let removed: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let changed: Vec<_> = before
        .iter()
        .filter(|(k, v)| after.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .collect();
    panic!("{what} changed: added {added:?}, removed {removed:?}, changed {changed:?}");
}

/// Files added between two snapshots.
fn added(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    after
        .iter()
        .filter(|(k, v)| !v.0 && !before.contains_key(*k))
        .map(|(k, _)| k.clone())
        .collect()
}

fn assert_fails(out: &Output, code: i32, needles: &[&str], what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one error line on stderr, got:\n{stderr}"
    );
    let line = lines[0];
    assert!(
        line.starts_with("pgbr: ERROR: "),
        "{what}: stderr does not start with 'pgbr: ERROR: ': {line}"
    );
    for n in needles {
        assert!(
            line.contains(n),
            "{what}: stderr does not name {n:?}: {line}"
        );
    }
    line.to_string()
}

/// A copy of `src` named `name` in the scratch directory `dir` (created as needed).
fn renamed_copy(f: &Fixture, src: &Path, dir: &str, name: &str) -> PathBuf {
    let d = f.scratch.mkdir(dir);
    let p = d.join(name);
    copy_pg(src, &p);
    p
}

/// The one object of the push repository stored for `name`.
fn stored_object(f: &Fixture, name: &str) -> PathBuf {
    let found: Vec<_> = snapshot(&f.push_repo)
        .into_iter()
        .filter(|(k, v)| {
            !v.0 && k
                .rsplit('/')
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
    f.scratch.pgbr(
        &f.push_conf,
        &["--stanza=push", "archive-push", &file.display().to_string()],
    )
}

fn get(f: &Fixture, name: &str, dest: &Path) -> Output {
    f.scratch.pgbr(
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
    let dest = f.scratch.mkdir("dup-get").join("RECOVERYXLOG");
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
        (&f.conf, "main", &f.repo),
    ] {
        let before = snapshot(repo);
        let out = f.scratch.pgbr(
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
            6,
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
    let dir = f.scratch.mkdir("history");
    let tli = dir.join("00000002.history");
    std::fs::write(&tli, "1\t0/3000000\tno recovery target specified\n").expect("write");
    chown_pg(&tli);
    let files = [tli, f.backup_history.clone()];
    let dest_dir = f.scratch.mkdir("history-get");
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
    let out = f.scratch.pgbr(
        &f.conf,
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
    let dest_dir = f.scratch.mkdir("missing-get");
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

    let dest_dir = f.scratch.mkdir("corrupt-get");
    let before = snapshot(&f.push_repo);
    let out = get(f, name, &dest_dir.join("RECOVERYXLOG"));
    assert_fails(&out, 126, &[name], "archive-get of a corrupted object");
    assert!(listing(&dest_dir).is_empty(), "{:?}", listing(&dest_dir));
    assert_unchanged(&before, &snapshot(&f.push_repo), "push repository");
}

fn start_restored(f: &Fixture, name: &str, data: PathBuf) -> Cluster {
    let mut c = Cluster::existing(
        &f.scratch,
        name,
        data.clone(),
        f.scratch.mkdir(&format!("{name}-sock")),
    );
    c.configure("archive_mode = off\n");
    STARTED.lock().unwrap_or_else(|e| e.into_inner()).push(data);
    c.start();
    c
}

fn wait_promoted(c: &Cluster) {
    for _ in 0..300 {
        if c.psql("select pg_is_in_recovery()") == "f" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the restored cluster did not finish recovery:\n{}", c.log());
}

#[test]
fn backup_with_archive_copy_restores_and_starts_without_the_archive() {
    let (f, _turn) = fixture();
    // The backup holds its WAL.
    let wal_dir = f
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
    let copy = f.scratch.mkdir("repo-no-wal");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", f.repo.display()))
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(st.success());
    std::fs::remove_dir_all(copy.join("archive/main/15-1")).expect("remove the WAL archive");
    chown_pg(&copy);
    let conf = f
        .scratch
        .write_config("no-wal.conf", &config_text(&copy, "main", &f.a));

    let dest = f.scratch.mkdir("restored-archive-copy");
    f.scratch.pgbr_ok(
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
    wait_promoted(&c);
    assert_eq!(c.psql("select count(*) from t"), "20000");
    c.stop();
}

type Tree = BTreeMap<String, (String, u32, Vec<u8>)>;

/// Entries under `root` with kind, mode and contents; the timestamp comment pgbr writes into
/// postgresql.auto.conf is left out.
fn tree(root: &Path) -> Tree {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("prefix").display().to_string();
            let meta = std::fs::symlink_metadata(&p).expect("stat");
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                let to = std::fs::read_link(&p).expect("readlink");
                out.insert(rel, ("link".into(), mode, to.display().to_string().into()));
            } else if meta.is_dir() {
                out.insert(rel, ("dir".into(), mode, Vec::new()));
                stack.push(p);
            } else {
                let mut bytes = std::fs::read(&p).expect("read");
                if rel == "postgresql.auto.conf" {
                    let text = String::from_utf8_lossy(&bytes)
                        .lines()
                        .filter(|l| !l.starts_with("# Recovery settings generated by pgbr"))
                        .collect::<Vec<_>>()
                        .join("\n");
                    bytes = text.into_bytes();
                }
                out.insert(rel, ("file".into(), mode, bytes));
            }
        }
    }
    out
}

fn assert_same_tree(actual: &Tree, expected: &Tree) {
    if actual == expected {
        return;
    }
    let extra: Vec<_> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .collect();
    let differ: Vec<_> = expected
        .iter()
        .filter(|(k, v)| actual.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .collect();
    panic!("delta restore differs from a fresh restore: extra {extra:?}, missing {missing:?}, different {differ:?}");
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
        f.scratch.pgbr_ok(&f.conf, &args);
    };
    let dest = f.scratch.mkdir("delta");
    restore(&dest, false);
    // Run it once, so the directory holds everything a used cluster holds.
    let mut c = start_restored(f, "delta", dest.clone());
    wait_promoted(&c);
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
    let fresh = f.scratch.mkdir("fresh");
    restore(&fresh, false);
    assert_same_tree(&tree(&dest), &tree(&fresh));

    let mut c = start_restored(f, "delta2", dest);
    wait_promoted(&c);
    assert_eq!(c.psql("select count(*) from t"), "20000");
    c.stop();
}
