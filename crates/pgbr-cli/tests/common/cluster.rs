//! A PostgreSQL cluster of the tests: initdb'd or restored into a scratch directory, configured,
//! started and stopped (as the `postgres` OS user when the tests run as root), stopped when
//! dropped.

use std::path::{Path, PathBuf};

use super::*;

/// A PostgreSQL cluster.
pub struct Cluster {
    /// The server's programs (initdb, pg_ctl, postgres): [`PG_BIN`] unless set otherwise.
    pub bin: PathBuf,
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
        Cluster::init_in(scratch, name, Path::new(PG_BIN), initdb_args)
    }

    /// initdb -k of the server in `bin`, with extra initdb arguments.
    pub fn init_in(scratch: &Scratch, name: &str, bin: &Path, initdb_args: &[&str]) -> Cluster {
        let data = scratch.path(name);
        let socket_dir = scratch.mkdir(&format!("{name}-sock"));
        run_ok(
            as_pg(bin.join("initdb"))
                // No --no-instructions: initdb before 14 does not know it.
                .args(["-k", "-A", "trust", "-U", "postgres"])
                .args(initdb_args)
                .arg("-D")
                .arg(&data),
        );
        let mut c = Cluster::existing(scratch, name, data, socket_dir);
        c.bin = bin.to_path_buf();
        c
    }

    /// A cluster to restore into: an empty data directory `name`, not started.
    pub fn empty(scratch: &Scratch, name: &str) -> Cluster {
        Cluster::over(scratch, name, scratch.mkdir(name))
    }

    /// A cluster `name` over the data directory `data` (restored, say), with a socket directory
    /// of its own; not started.
    pub fn over(scratch: &Scratch, name: &str, data: PathBuf) -> Cluster {
        Cluster::existing(scratch, name, data, scratch.mkdir(&format!("{name}-sock")))
    }

    /// Starts a cluster `name` over the restored data directory `data`, archiving off, and waits
    /// until recovery ended.
    pub fn start_restored(scratch: &Scratch, name: &str, data: PathBuf) -> Cluster {
        let mut c = Cluster::over(scratch, name, data);
        c.configure("archive_mode = off\n");
        c.start();
        c.wait_promoted();
        c
    }

    /// A cluster over an existing (restored) data directory.
    pub fn existing(scratch: &Scratch, name: &str, data: PathBuf, socket_dir: PathBuf) -> Cluster {
        Cluster {
            bin: PathBuf::from(PG_BIN),
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
        let out = as_pg(self.bin.join("pg_ctl"))
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
            pg_ctl_stop(&self.bin, &self.data, "fast");
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
            pg_ctl_stop(&self.bin, &self.data, "immediate");
        }
    }
}

/// `pg_ctl stop` (of `bin`) of the server of `data`, with shutdown mode `mode`; errors are ignored.
pub(super) fn pg_ctl_stop(bin: &Path, data: &Path, mode: &str) {
    let _ = as_pg(bin.join("pg_ctl"))
        .arg("-D")
        .arg(data)
        .args(["-m", mode, "-w", "stop"])
        .output();
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
