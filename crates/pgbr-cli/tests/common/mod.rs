//! Test harness: real PostgreSQL clusters (Debian's 15 unless a test names another major, see
//! [`versions`]) in temporary directories, run as the `postgres` OS user when the tests run as
//! root (initdb refuses root), stopped when dropped.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};

/// Debian's PostgreSQL 15: the server of most tests, and the client programs (psql, pgbench,
/// pg_dumpall) of every test.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The servers of the other supported majors.
pub mod versions;

mod cluster;
use cluster::pg_ctl_stop;
pub use cluster::Cluster;

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A command run as the PostgreSQL OS user.
pub fn as_pg(program: impl AsRef<Path>) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(program.as_ref());
        c
    } else {
        Command::new(program.as_ref())
    }
}

pub fn chown_pg(path: &Path) {
    if is_root() {
        let st = Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .expect("chown");
        assert!(st.success(), "chown {}", path.display());
    }
}

/// What the fault tests share (failpoints, verify reports, fingerprints).
pub mod faults;

/// The object store emulators (pgbr-storage's, shared).
#[path = "../../../pgbr-storage/tests/support/emulator.rs"]
pub mod emulator;

pub use emulator::free_port;

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed ({}):\nstdout: {}\nstderr: {}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory owned by the PostgreSQL user, removed at drop.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    /// A copy of the pgbr binary the postgres user can run.
    pub pgbr: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("pgbr-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let pgbr = dir.path().join("pgbr");
        std::fs::copy(env!("CARGO_BIN_EXE_pgbr"), &pgbr).expect("copy pgbr");
        std::fs::set_permissions(&pgbr, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        chown_pg(dir.path());
        Scratch { dir, pgbr }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Makes an empty directory owned by the PostgreSQL user.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        chown_pg(&p);
        p
    }

    /// Writes a pgbr configuration file.
    pub fn write_config(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::write(&p, text).expect("write config");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        chown_pg(&p);
        p
    }

    /// Runs pgbr as the PostgreSQL user.
    pub fn pgbr(&self, config: &Path, args: &[&str]) -> Output {
        let mut c = as_pg(&self.pgbr);
        c.arg(format!("--config={}", config.display())).args(args);
        c.env_remove("PGBR_REPO1_CIPHER_PASS");
        c.output().expect("run pgbr")
    }

    pub fn pgbr_ok(&self, config: &Path, args: &[&str]) -> String {
        let out = self.pgbr(config, args);
        assert!(
            out.status.success(),
            "pgbr {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Copies the first complete WAL segment of `pg_wal` into `dir`.
pub fn copy_first_segment(pg_wal: &Path, dir: &Path) -> PathBuf {
    let mut names: Vec<String> = std::fs::read_dir(pg_wal)
        .expect("read pg_wal")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    names.sort();
    let name = names.first().expect("a WAL segment in pg_wal");
    let dest = dir.join(name);
    std::fs::copy(pg_wal.join(name), &dest).expect("copy segment");
    chown_pg(&dest);
    dest
}

/// `[name]`: a stanza of cluster `pg`.
pub fn stanza_section(name: &str, pg: &Cluster) -> String {
    format!(
        "[{name}]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
        pg.data.display(),
        pg.port,
        pg.socket_dir.display()
    )
}

/// A pgbr configuration: `[global]` with the scratch directory's `lock` and `global` (one option
/// a line), then stanza `stanza` of cluster `pg`.
pub fn config_text(scratch: &Scratch, global: &str, stanza: &str, pg: &Cluster) -> String {
    format!(
        "[global]\nlock-path={}\n{global}\n{}",
        scratch.path("lock").display(),
        stanza_section(stanza, pg)
    )
}

/// postgresql.conf settings that archive through pgbr with configuration `conf`, stanza `main`.
pub fn archive_command(scratch: &Scratch, conf: &Path) -> String {
    format!(
        "archive_mode = on\narchive_command = '{} --config={} --stanza=main archive-push %p'\n",
        scratch.pgbr.display(),
        conf.display()
    )
}

/// `info --output=pgbr-json` of stanza `main`.
pub fn info(scratch: &Scratch, conf: &Path) -> serde_json::Value {
    let text = scratch.pgbr_ok(conf, &["--stanza=main", "info", "--output=pgbr-json"]);
    let json: serde_json::Value = serde_json::from_str(&text).expect("info json");
    json[0].clone()
}

/// The labels of the backups of an [`info`], oldest first.
pub fn labels(info: &serde_json::Value) -> Vec<String> {
    info["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["label"].as_str().expect("label").to_string())
        .collect()
}

/// How a [`Stanza`] differs from the usual one; `Setup::default()` is [`Stanza::new("")`].
#[derive(Default)]
pub struct Setup<'a> {
    /// Extra initdb arguments (e.g. `--wal-segsize=1`).
    pub initdb: &'a [&'a str],
    /// `repo1-*` lines in place of `repo1-path=<scratch>/repo` (e.g. an object store).
    pub repo: Option<&'a str>,
    /// More `[global]` options (e.g. `process-max=2\n`).
    pub global: &'a str,
    /// Without `log-level-console=info`: stderr holds only warnings and errors.
    pub quiet: bool,
    /// The server's programs, when not Debian's 15 ([`versions::pg_bin`]).
    pub pg_bin: Option<&'a Path>,
}

/// A PostgreSQL cluster archiving through pgbr into a fresh repository, its stanza `main`
/// created: what most end-to-end tests start from.
pub struct Stanza {
    // Fields drop in order: the server stops before its scratch directory is removed (the
    // other way round, pg_ctl finds no data directory and the server outlives the test).
    pub src: Cluster,
    pub scratch: Scratch,
    pub conf: PathBuf,
    pub repo: PathBuf,
    /// The `repo1-*` lines of the configuration.
    pub repo_options: String,
    /// The other `[global]` options of the configuration, but the lock directory.
    pub options: String,
}

impl Stanza {
    /// Runs `pgbr verify` on stanza `main` and fails, with its output, unless it passes.
    pub fn verify_ok(&self) {
        let out = self.scratch.pgbr(&self.conf, &["--stanza=main", "verify"]);
        assert!(
            out.status.success(),
            "verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `extra_global` goes into `[global]` (e.g. `process-max=2\n`).
    pub fn new(extra_global: &str) -> Stanza {
        Stanza::setup(Setup {
            global: extra_global,
            ..Setup::default()
        })
    }

    /// As [`Stanza::new`], with extra initdb arguments.
    pub fn with_initdb(initdb_args: &[&str], extra_global: &str) -> Stanza {
        Stanza::setup(Setup {
            initdb: initdb_args,
            global: extra_global,
            ..Setup::default()
        })
    }

    pub fn setup(setup: Setup) -> Stanza {
        let scratch = Scratch::new();
        let bin = setup.pg_bin.unwrap_or(Path::new(PG_BIN));
        let mut src = Cluster::init_in(&scratch, "src", bin, setup.initdb);
        let repo = scratch.mkdir("repo");
        let repo_options = match setup.repo {
            Some(lines) => lines.to_string(),
            None => format!("repo1-path={}\n", repo.display()),
        };
        let level = if setup.quiet {
            ""
        } else {
            "log-level-console=info\n"
        };
        let options = format!(
            "start-fast=y\narchive-timeout=60\n{level}{}\n",
            setup.global
        );
        let conf = scratch.write_config(
            "pgbr.conf",
            &config_text(&scratch, &format!("{repo_options}{options}"), "main", &src),
        );
        src.configure(&archive_command(&scratch, &conf));
        src.start();
        scratch.pgbr_ok(&conf, &["--stanza=main", "stanza-create"]);
        Stanza {
            scratch,
            src,
            conf,
            repo,
            repo_options,
            options,
        }
    }

    /// Writes configuration `file` with the options of the stanza's own but the repository
    /// `repo` (its `repo1-*` lines), for stanza `stanza` of cluster `pg`.
    pub fn config_like(&self, file: &str, repo: &str, stanza: &str, pg: &Cluster) -> PathBuf {
        self.scratch.write_config(
            file,
            &config_text(
                &self.scratch,
                &format!("{repo}{}", self.options),
                stanza,
                pg,
            ),
        )
    }

    /// Writes configuration `file`: the stanza's own, for cluster `pg`.
    pub fn config_for(&self, file: &str, pg: &Cluster) -> PathBuf {
        self.config_like(file, &self.repo_options, "main", pg)
    }

    /// Adds stanza `name` of the same cluster to the configuration (`stanza-create` is not run).
    pub fn add_stanza(&self, name: &str) {
        let text = std::fs::read_to_string(&self.conf).expect("read config");
        std::fs::write(
            &self.conf,
            format!("{text}{}", stanza_section(name, &self.src)),
        )
        .expect("write config");
    }

    /// `restore <args>` into the empty data directory of `c`, then starts it with the
    /// postgresql.conf settings `postgresql` and waits until recovery ended.
    pub fn restore_into(&self, c: &mut Cluster, args: &[&str], postgresql: &str) {
        let mut all = vec![
            "--stanza=main".to_string(),
            "restore".into(),
            format!("--pg1-path={}", c.data.display()),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.scratch.pgbr_ok(&self.conf, &refs);
        c.configure(postgresql);
        c.start();
        c.wait_promoted();
    }

    /// `restore <args>` into a new directory `name`, then starts it (archiving off) and waits
    /// until recovery ended.
    pub fn restore_and_start(&self, name: &str, args: &[&str]) -> Cluster {
        let mut c = Cluster::empty(&self.scratch, name);
        c.bin = self.src.bin.clone();
        self.restore_into(&mut c, args, "archive_mode = off\n");
        c
    }
}

// ---------------------------------------------------------------------------------------
// One fixture shared by the tests of a binary

/// What the test binary undoes when it exits: shared fixtures live in statics, never dropped.
enum AtExit {
    /// A data directory whose server is stopped (immediate mode) if it runs.
    Stop(PathBuf),
    /// A directory removed.
    Remove(PathBuf),
}

static AT_EXIT: Mutex<Vec<AtExit>> = Mutex::new(Vec::new());

extern "C" fn at_exit() {
    let list = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()));
    for item in &list {
        if let AtExit::Stop(data) = item {
            if data.join("postmaster.pid").exists() {
                pg_ctl_stop(Path::new(PG_BIN), data, "immediate");
            }
        }
    }
    for item in &list {
        if let AtExit::Remove(dir) = item {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn on_exit(item: AtExit) {
    static REGISTER: Once = Once::new();
    // SAFETY: registers a plain extern "C" function; it only runs at process exit.
    REGISTER.call_once(|| unsafe {
        libc::atexit(at_exit);
    });
    AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()).push(item);
}

/// Stops the server of `data` (if it runs) when the test binary exits.
pub fn stop_at_exit(data: &Path) {
    on_exit(AtExit::Stop(data.to_path_buf()));
}

/// Removes the scratch directory when the test binary exits (after the servers stopped).
pub fn remove_at_exit(scratch: &Scratch) {
    on_exit(AtExit::Remove(scratch.dir.path().to_path_buf()));
}

/// The fixture in `cell`, made by `init` at first use, and the calling test's turn: the tests
/// sharing a fixture take turns, so that none disturbs what another one observes.
pub fn shared<T: Sync>(
    cell: &'static OnceLock<T>,
    turns: &'static Mutex<()>,
    init: impl FnOnce() -> T,
) -> (&'static T, MutexGuard<'static, ()>) {
    let turn = turns.lock().unwrap_or_else(|e| e.into_inner());
    (cell.get_or_init(init), turn)
}

// ---------------------------------------------------------------------------------------
// Checks

/// Relative name → kind (`file`, `dir`, `link`), mode and contents (a link's target).
pub type Snapshot = BTreeMap<String, (String, u32, Vec<u8>)>;

/// Every entry under `root`, to prove what changed and what did not.
pub fn snapshot(root: &Path) -> Snapshot {
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
                out.insert(rel, ("file".into(), mode, std::fs::read(&p).expect("read")));
            }
        }
    }
    out
}

pub fn assert_unchanged(before: &Snapshot, after: &Snapshot, what: &str) {
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

/// Checks the exit code and that stderr is exactly one `pgbr: ERROR:` line containing every
/// `needle`; returns that line.
pub fn assert_fails(out: &Output, code: i32, needles: &[&str], what: &str) -> String {
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

/// Whether `status` is that of a pgbr killed by SIGKILL (a crash point, see
/// `pgbr_backup::failpoints`): run through runuser (as root), it exits 128 + 9.
pub fn was_killed(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.code() == Some(128 + 9) || status.signal() == Some(9)
}

/// Compares two dumps, reporting the first differing line rather than megabytes of text.
pub fn assert_same_dump(actual: &str, expected: &str) {
    if actual == expected {
        return;
    }
    let (a, e): (Vec<_>, Vec<_>) = (actual.lines().collect(), expected.lines().collect());
    let first = a
        .iter()
        .zip(&e)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(e.len()));
    panic!(
        "restored data differs from the source at dump line {}: restored {:?}, source {:?} ({} vs {} lines)",
        first + 1,
        a.get(first),
        e.get(first),
        a.len(),
        e.len()
    );
}
