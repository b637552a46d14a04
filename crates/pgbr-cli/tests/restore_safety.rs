//! Restore's safety model against a real PostgreSQL 15 cluster: restore touches only
//! destinations that are empty or (with `--delta`/`--force`) a directory of the backup's own
//! cluster that no running server uses; it restores exactly the backup named; `--delta`
//! compares contents while `--delta --force` trusts size and time; restored modes are
//! PostgreSQL's. Every refusal exits 9 (6 for a damaged repository) and changes nothing.
//!
//! One fixture serves every test: a running cluster with a tablespace, archiving into a
//! repository with two full backups; the tests take turns.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use common::{
    assert_fails, assert_unchanged, chown_pg, labels, run_ok, snapshot, Cluster, Setup, Stanza,
};

struct Fixture {
    stanza: Stanza,
    /// The tablespace's directory (in use by the running cluster).
    tablespace: PathBuf,
    /// Its OID.
    oid: String,
    /// The two full backups, oldest first.
    first: String,
    second: String,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

impl Fixture {
    fn new() -> Fixture {
        let stanza = Stanza::setup(Setup {
            global: "process-max=2\n",
            quiet: true,
            ..Setup::default()
        });
        common::stop_at_exit(&stanza.src.data);
        common::remove_at_exit(&stanza.scratch);
        let tablespace = stanza.scratch.mkdir("ts");
        let src = &stanza.src;
        src.psql(&format!(
            "create tablespace outside location '{}'",
            tablespace.display()
        ));
        // Over 1 MiB: stored as blocks.
        src.psql(
            "create table big tablespace outside as select g as id, md5(g::text) as v from generate_series(1, 40000) g",
        );
        src.psql("create table small as select g as id from generate_series(1, 100) g");
        src.psql("checkpoint");
        // Modes PostgreSQL never gives (setuid, setgid, sticky, world-writable): the backup
        // records them, the restore must not apply them.
        for (rel, mode) in [("postgresql.conf", 0o4757), ("pg_logical", 0o3777)] {
            std::fs::set_permissions(src.data.join(rel), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
        }
        let full = ["--stanza=main", "backup", "--type=full"];
        stanza.scratch.pgbr_ok(&stanza.conf, &full);
        src.psql("insert into small select g from generate_series(101, 200) g");
        stanza.scratch.pgbr_ok(&stanza.conf, &full);
        let oid = src.psql("select oid from pg_tablespace where spcname = 'outside'");
        let backups = labels(&common::info(&stanza.scratch, &stanza.conf));
        let [first, second] = [&backups[0], &backups[1]].map(String::clone);
        Fixture {
            stanza,
            tablespace,
            oid,
            first,
            second,
        }
    }

    /// `restore --pg1-path=<dest> <args>` (stanza main, this fixture's configuration).
    fn restore(&self, conf: &Path, dest: &Path, args: &[&str]) -> std::process::Output {
        let pg1 = format!("--pg1-path={}", dest.display());
        let mut all = vec!["--stanza=main", "restore", pg1.as_str()];
        all.extend_from_slice(args);
        self.stanza.scratch.pgbr(conf, &all)
    }

    fn restore_ok(&self, dest: &Path, args: &[&str]) {
        let out = self.restore(&self.stanza.conf, dest, args);
        assert!(
            out.status.success(),
            "restore {args:?} into {}: {}{}",
            dest.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A copy of the repository (`<name>-repo`) and a configuration using it.
    fn repository_copy(&self, name: &str) -> (PathBuf, PathBuf) {
        let repo = self.stanza.scratch.path(&format!("{name}-repo"));
        run_ok(
            std::process::Command::new("cp")
                .arg("-a")
                .arg(&self.stanza.repo)
                .arg(&repo),
        );
        let conf = self.stanza.config_like(
            &format!("{name}.conf"),
            &format!("repo1-path={}\n", repo.display()),
            "main",
            &self.stanza.src,
        );
        (repo, conf)
    }

    /// A fresh directory `name` for a restore, with the tablespace mapped into `name-ts`.
    fn map_args(&self, name: &str) -> (PathBuf, String) {
        let dest = self.stanza.scratch.path(name);
        let ts = self.stanza.scratch.path(&format!("{name}-ts"));
        (
            dest,
            format!("--tablespace-map={}={}", self.oid, ts.display()),
        )
    }
}

fn fixture() -> (&'static Fixture, MutexGuard<'static, ()>) {
    common::shared(&FIXTURE, &SERIAL, Fixture::new)
}

/// `pg_ctl -D <data> <args>` as the PostgreSQL user.
fn pg_ctl(data: &Path, args: &[&str]) {
    run_ok(
        common::as_pg(format!("{}/pg_ctl", common::PG_BIN))
            .arg("-D")
            .arg(data)
            .args(args),
    );
}

#[test]
fn restore_delta_or_force_refuses_a_directory_that_is_not_a_data_directory() {
    let (f, _turn) = fixture();
    let scratch = &f.stanza.scratch;
    let home = scratch.mkdir("home");
    std::fs::create_dir_all(home.join("Documents/taxes")).expect("mkdir");
    for (rel, text) in [
        ("notes.md", "my only copy\n"),
        ("Documents/letter.txt", "dear ...\n"),
        ("Documents/taxes/2026.pdf", "%PDF-1.7\n"),
    ] {
        std::fs::write(home.join(rel), text).expect("write");
    }
    chown_pg(&home);
    let before = snapshot(&home);
    let (_, map) = f.map_args("unused");
    for flags in [&["--delta"][..], &["--force"], &["--delta", "--force"]] {
        let mut args = flags.to_vec();
        args.push(&map);
        let out = f.restore(&f.stanza.conf, &home, &args);
        assert_fails(
            &out,
            9,
            &[
                &home.display().to_string(),
                "not a PostgreSQL data directory",
            ],
            &format!("restore {flags:?} over a home directory"),
        );
        assert_unchanged(&before, &snapshot(&home), "the home directory");
    }
}

#[test]
fn restore_delta_refuses_another_clusters_data_directory() {
    let (f, _turn) = fixture();
    let scratch = &f.stanza.scratch;
    // Another cluster, stopped: its own system identifier.
    let other = Cluster::init(scratch, "other-cluster");
    let before = snapshot(&other.data);
    let (_, map) = f.map_args("unused");
    let out = f.restore(&f.stanza.conf, &other.data, &["--delta", &map]);
    assert_fails(
        &out,
        9,
        &[&other.data.display().to_string(), "another cluster"],
        "restore --delta over another cluster",
    );
    assert_unchanged(&before, &snapshot(&other.data), "the other cluster");
    // A directory claiming to be one, without its control file.
    let half = scratch.mkdir("half");
    std::fs::write(half.join("PG_VERSION"), "15\n").expect("write");
    std::fs::write(half.join("keep-me"), "precious\n").expect("write");
    chown_pg(&half);
    let before = snapshot(&half);
    let out = f.restore(&f.stanza.conf, &half, &["--force", &map]);
    assert_fails(
        &out,
        9,
        &[&half.display().to_string(), "no global/pg_control"],
        "restore --force over PG_VERSION alone",
    );
    assert_unchanged(&before, &snapshot(&half), "the half data directory");
}

#[test]
fn restore_refuses_to_rewrite_the_tablespace_of_a_running_cluster() {
    let (f, _turn) = fixture();
    let before = snapshot(&f.tablespace);
    let ts = f.tablespace.display().to_string();
    // A new, empty pg1-path without --tablespace-map: the tablespace would go where the
    // manifest says, which the running cluster uses.
    for flags in [&["--delta"][..], &["--force"], &[]] {
        let dest = f.stanza.scratch.mkdir(&format!("new-{}", flags.len()));
        let out = f.restore(&f.stanza.conf, &dest, flags);
        assert_fails(
            &out,
            9,
            &[&ts, "running on this host"],
            &format!("restore {flags:?} into a new directory"),
        );
        assert_unchanged(&before, &snapshot(&f.tablespace), "the live tablespace");
        assert_eq!(
            std::fs::read_dir(&dest).expect("list").count(),
            0,
            "nothing may be written into {} when the restore is refused",
            dest.display()
        );
    }
    // The running cluster's own data directory: refused, by its server as well.
    let out = f.restore(&f.stanza.conf, &f.stanza.src.data, &["--delta"]);
    assert_fails(
        &out,
        9,
        &["running on this host"],
        "restore over the live cluster",
    );
    // Stopped, the tablespace is still not the new directory's: refused as well. (The tests
    // take turns: none uses the cluster while it is stopped.)
    let data = &f.stanza.src.data;
    pg_ctl(data, &["-m", "fast", "-w", "stop"]);
    let dest = f.stanza.scratch.mkdir("new-stopped");
    let out = f.restore(&f.stanza.conf, &dest, &["--delta"]);
    let log = f.stanza.scratch.path("src-restarted.log");
    pg_ctl(
        data,
        &["-l", &log.display().to_string(), "-w", "-t", "120", "start"],
    );
    assert_fails(
        &out,
        9,
        &[&ts, "--tablespace-map"],
        "restore --delta into a new directory while the cluster is stopped",
    );
    assert_unchanged(&before, &snapshot(&f.tablespace), "the stopped tablespace");
    // Mapped elsewhere, it restores.
    let (dest, map) = f.map_args("mapped");
    f.restore_ok(&dest, &[&map]);
    assert!(!dest.join("pgbr-restore.inprogress").exists());
}

#[test]
fn restore_refuses_a_backup_whose_directory_was_replaced_by_another_backups() {
    let (f, _turn) = fixture();
    let scratch = &f.stanza.scratch;
    // A copy of the repository, where a sync job copied the second backup over the first.
    let (repo, conf) = f.repository_copy("swapped");
    let backups = repo.join("backup/main");
    std::fs::remove_dir_all(backups.join(&f.first)).expect("remove");
    run_ok(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(backups.join(&f.second))
            .arg(backups.join(&f.first)),
    );
    let (dest, map) = f.map_args("swapped-restore");
    let out = f.restore(&conf, &dest, &[&format!("--set={}", f.first), &map]);
    assert_fails(
        &out,
        6,
        &[&f.first, "not the one committed"],
        "restore of a replaced backup",
    );
    assert!(
        !dest.exists(),
        "nothing may be written for a replaced backup"
    );
    // verify names it too.
    let out = scratch.pgbr(&conf, &["--stanza=main", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(14),
        "verify of the swapped repository"
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(&format!("{}/backup.manifest", f.first)),
        "verify does not name the replaced manifest: {report}"
    );
    // The manifest alone replaced (its copy too): refused the same way.
    let (repo, conf) = f.repository_copy("swapped-manifest");
    for name in ["backup.manifest", "backup.manifest.copy"] {
        let backups = repo.join("backup/main");
        std::fs::copy(
            backups.join(&f.second).join(name),
            backups.join(&f.first).join(name),
        )
        .expect("copy manifest");
    }
    let out = f.restore(&conf, &dest, &[&format!("--set={}", f.first), &map]);
    assert_fails(
        &out,
        6,
        &[&f.first],
        "restore with another backup's manifest",
    );
    assert!(
        !dest.exists(),
        "nothing may be written for a replaced manifest"
    );
}

/// Flips a byte in the middle of `path`, keeping its size and modification time.
fn damage_in_place(path: &Path) {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut bytes = std::fs::read(path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(path, &bytes).expect("write");
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(modified))
        .expect("set mtime");
}

/// The relation file of `table` under the restored data directory `dest` (or its tablespace
/// directory `ts`).
fn relation_file(f: &Fixture, table: &str, dest: &Path, ts: &Path) -> PathBuf {
    let rel = f
        .stanza
        .src
        .psql(&format!("select pg_relation_filepath('{table}')"));
    match rel.strip_prefix(&format!("pg_tblspc/{}/", f.oid)) {
        Some(inside) => ts.join(inside),
        None => dest.join(rel),
    }
}

#[test]
fn delta_restore_compares_contents_and_delta_force_trusts_size_and_time() {
    let (f, _turn) = fixture();
    let set = format!("--set={}", f.second);
    let (reference, ref_map) = f.map_args("reference");
    f.restore_ok(&reference, &[&set, &ref_map]);
    let ref_ts = f.stanza.scratch.path("reference-ts");
    let (dest, map) = f.map_args("damaged");
    let ts = f.stanza.scratch.path("damaged-ts");
    f.restore_ok(&dest, &[&set, &map]);
    // One file stored whole (small), one stored as blocks (big, in the tablespace).
    let files: Vec<(PathBuf, PathBuf)> = ["small", "big"]
        .iter()
        .map(|t| {
            (
                relation_file(f, t, &dest, &ts),
                relation_file(f, t, &reference, &ref_ts),
            )
        })
        .collect();
    let big_size = std::fs::metadata(&files[1].0).expect("stat").len();
    assert!(
        big_size > 1 << 20,
        "big is {big_size} bytes: not block-mapped"
    );
    for (damaged, _) in &files {
        damage_in_place(damaged);
    }
    let same = |(a, b): &(PathBuf, PathBuf)| std::fs::read(a).ok() == std::fs::read(b).ok();
    // --delta --force trusts size and time (as pgBackRest's): the damage is not seen.
    f.restore_ok(&dest, &[&set, &map, "--delta", "--force"]);
    for pair in &files {
        assert!(!same(pair), "--delta --force read {}", pair.0.display());
    }
    // --delta compares contents: both are repaired.
    f.restore_ok(&dest, &[&set, &map, "--delta"]);
    for pair in &files {
        assert!(same(pair), "--delta left {} damaged", pair.0.display());
    }
    assert!(!dest.join("pgbr-restore.inprogress").exists());
    assert!(!ts.join("pgbr-restore.inprogress").exists());
    // A file of a tablespace's other version directory (another major's cluster sharing the
    // directory) is not the backup's to remove.
    let neighbour = ts.join("PG_16_202307071");
    std::fs::create_dir_all(neighbour.join("5")).expect("mkdir");
    std::fs::write(neighbour.join("5/1"), "theirs\n").expect("write");
    chown_pg(&ts);
    f.restore_ok(&dest, &[&set, &map, "--delta"]);
    assert_eq!(
        std::fs::read_to_string(neighbour.join("5/1"))
            .ok()
            .as_deref(),
        Some("theirs\n")
    );
}

#[test]
fn restored_modes_are_postgresqls_whatever_the_backup_recorded() {
    let (f, _turn) = fixture();
    let (dest, map) = f.map_args("modes");
    f.restore_ok(&dest, &[&format!("--set={}", f.first), &map]);
    let mode = |rel: &str| {
        std::fs::symlink_metadata(dest.join(rel))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    // Recorded as 4757 and 3777.
    assert_eq!(mode("postgresql.conf"), 0o640);
    assert_eq!(mode("pg_logical"), 0o750);
    for rel in ["PG_VERSION", "global/pg_control", "base", "global"] {
        let m = mode(rel);
        assert_eq!(m & !0o750, 0, "{rel} has mode {m:o}");
    }
}
