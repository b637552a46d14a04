//! Test harness: real PostgreSQL 15 clusters in temporary directories, run as the `postgres` OS
//! user when the tests run as root (initdb refuses root), stopped when dropped.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

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
            .tempdir_in("/tmp")
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

/// A PostgreSQL 15 cluster.
pub struct Cluster {
    pub data: PathBuf,
    pub socket_dir: PathBuf,
    pub port: u16,
    log: PathBuf,
    running: bool,
}

impl Cluster {
    /// initdb -k into `data` (which must not exist yet, or be empty).
    pub fn init(scratch: &Scratch, name: &str) -> Cluster {
        Cluster::init_with(scratch, name, &[])
    }

    /// initdb -k with extra initdb arguments (e.g. `--wal-segsize=1`).
    pub fn init_with(scratch: &Scratch, name: &str, initdb_args: &[&str]) -> Cluster {
        let data = scratch.path(name);
        let socket_dir = scratch.mkdir(&format!("{name}-sock"));
        run_ok(
            as_pg(format!("{PG_BIN}/initdb"))
                .args(["-k", "-A", "trust", "-U", "postgres", "--no-instructions"])
                .args(initdb_args)
                .arg("-D")
                .arg(&data),
        );
        Cluster::existing(scratch, name, data, socket_dir)
    }

    /// A cluster over an existing (restored) data directory.
    pub fn existing(scratch: &Scratch, name: &str, data: PathBuf, socket_dir: PathBuf) -> Cluster {
        Cluster {
            log: scratch.path(&format!("{name}.log")),
            data,
            socket_dir,
            port: free_port(),
            running: false,
        }
    }

    /// Appends settings to postgresql.conf (as the PostgreSQL user owns it, write through runuser).
    pub fn configure(&self, extra: &str) {
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nwal_level = replica\nmax_wal_senders = 4\nfsync = off\nsynchronous_commit = off\nshared_buffers = 32MB\n{extra}\n",
            self.port,
            self.socket_dir.display()
        );
        let path = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).expect("read postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&path, text).expect("write postgresql.conf");
        chown_pg(&path);
    }

    pub fn start(&mut self) {
        let out = as_pg(format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "120", "start"])
            .output()
            .expect("pg_ctl");
        if !out.status.success() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!(
                "pg_ctl start failed: {}\n{}\nserver log:\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.running = true;
    }

    pub fn stop(&mut self) {
        if self.running {
            let _ = as_pg(format!("{PG_BIN}/pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "stop"])
                .output();
            self.running = false;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("postgres", sql)
    }

    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        run_ok(
            as_pg(format!("{PG_BIN}/psql"))
                .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(&self.socket_dir)
                .args(["-p", &self.port.to_string(), "-d", db, "-c", sql]),
        )
        .trim()
        .to_string()
    }

    pub fn pgbench_init(&self, scale: u32) {
        run_ok(
            as_pg(format!("{PG_BIN}/pgbench"))
                .args(["-q", "-i", "-s", &scale.to_string(), "-h"])
                .arg(&self.socket_dir)
                .args(["-p", &self.port.to_string(), "postgres"]),
        );
    }

    /// pg_dumpall of the whole cluster, minus the random `\restrict` lines of 15.18.
    pub fn dump(&self) -> String {
        let text = run_ok(
            as_pg(format!("{PG_BIN}/pg_dumpall"))
                .args(["--no-role-passwords", "-h"])
                .arg(&self.socket_dir)
                .args(["-p", &self.port.to_string()]),
        );
        text.lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Forces a WAL switch and waits until the archiver has archived it.
    pub fn switch_and_wait_archived(&self) {
        let want = self.psql("select pg_walfile_name(pg_switch_wal())");
        for _ in 0..600 {
            let done = self.psql(&format!(
                "select coalesce(last_archived_wal >= '{want}', false) from pg_stat_archiver"
            ));
            if done == "t" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("WAL {want} was not archived; server log:\n{}", self.log());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = as_pg(format!("{PG_BIN}/pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

impl Cluster {
    /// Waits (up to 30 s) until recovery has ended and the server accepts writes.
    pub fn wait_promoted(&self) {
        for _ in 0..300 {
            if self.psql("select pg_is_in_recovery()") == "f" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("recovery did not end; server log:\n{}", self.log());
    }
}

/// A PostgreSQL cluster archiving through pgbr into a fresh repository, its stanza `main`
/// created: what most end-to-end tests start from.
pub struct Stanza {
    pub scratch: Scratch,
    pub src: Cluster,
    pub conf: PathBuf,
    pub repo: PathBuf,
}

impl Stanza {
    /// `extra_global` goes into `[global]` (e.g. `process-max=2\n`).
    pub fn new(extra_global: &str) -> Stanza {
        Stanza::with_initdb(&[], extra_global)
    }

    /// As [`Stanza::new`], with extra initdb arguments.
    pub fn with_initdb(initdb_args: &[&str], extra_global: &str) -> Stanza {
        let scratch = Scratch::new();
        let mut src = Cluster::init_with(&scratch, "src", initdb_args);
        let repo = scratch.mkdir("repo");
        let conf = scratch.write_config(
            "pgbr.conf",
            &format!(
                "[global]\nrepo1-path={}\nlock-path={}\nstart-fast=y\narchive-timeout=60\nlog-level-console=info\n{extra_global}\n[main]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
                repo.display(),
                scratch.path("lock").display(),
                src.data.display(),
                src.port,
                src.socket_dir.display()
            ),
        );
        src.configure(&format!(
            "archive_mode = on\narchive_command = '{} --config={} --stanza=main archive-push %p'\n",
            scratch.pgbr.display(),
            conf.display()
        ));
        src.start();
        scratch.pgbr_ok(&conf, &["--stanza=main", "stanza-create"]);
        Stanza {
            scratch,
            src,
            conf,
            repo,
        }
    }

    /// `restore <args>` into a new directory `name`, then starts it (archiving off) and waits
    /// until recovery ended.
    pub fn restore_and_start(&self, name: &str, args: &[&str]) -> Cluster {
        let dir = self.scratch.mkdir(name);
        let mut all = vec![
            "--stanza=main".to_string(),
            "restore".into(),
            format!("--pg1-path={}", dir.display()),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.scratch.pgbr_ok(&self.conf, &refs);
        let mut c = Cluster::existing(
            &self.scratch,
            name,
            dir,
            self.scratch.mkdir(&format!("{name}-sock")),
        );
        c.configure("archive_mode = off\n");
        c.start();
        c.wait_promoted();
        c
    }
}
