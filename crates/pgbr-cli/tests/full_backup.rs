//! End to end against a real PostgreSQL 15: archive_command = pgbr archive-push, a table in a
//! tablespace outside the data directory, stanza-create, full backup, restore into a new directory,
//! start it, and compare the restored cluster's data with the source's.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{assert_same_dump, Cluster, Scratch};

fn config(scratch: &Scratch, src: &Cluster, cipher: &str, extra: &str) -> std::path::PathBuf {
    let repo = scratch.mkdir("repo");
    let cipher_lines = match cipher {
        "none" => String::new(),
        c => format!("repo1-cipher-type={c}\nrepo1-cipher-pass=correct horse battery staple\n"),
    };
    scratch.write_config(
        "pgbr.conf",
        &format!(
            "[global]\nrepo1-path={}\nlock-path={}\n{cipher_lines}process-max=2\nstart-fast=y\narchive-timeout=60\nlog-level-console=info\n{extra}\n[main]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
            repo.display(),
            scratch.path("lock").display(),
            src.data.display(),
            src.port,
            src.socket_dir.display()
        ),
    )
}

fn archiving_cluster(
    scratch: &Scratch,
    cipher: &str,
    extra: &str,
) -> (Cluster, std::path::PathBuf) {
    let mut src = Cluster::init(scratch, "src");
    let conf = config(scratch, &src, cipher, extra);
    src.configure(&format!(
        "archive_mode = on\narchive_command = '{} --config={} --stanza=main archive-push %p'\n",
        scratch.pgbr.display(),
        conf.display()
    ));
    src.start();
    (src, conf)
}

fn assert_modes(root: &Path) {
    for entry in walk(root) {
        let meta = std::fs::symlink_metadata(&entry).expect("stat");
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", entry.display());
        } else {
            assert_eq!(mode, 0o600, "{}", entry.display());
        }
    }
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                out.push(e.expect("entry").path());
            }
        }
        i += 1;
    }
    out
}

fn backup_restore_round_trip(cipher: &str) {
    let scratch = Scratch::new();
    let (src, conf) = archiving_cluster(&scratch, cipher, "");
    let ts_dir = scratch.mkdir("ts-outside");
    src.psql(&format!(
        "create tablespace outside location '{}'",
        ts_dir.display()
    ));
    src.pgbench_init(1);
    src.psql("create table in_ts tablespace outside as select g as id, md5(g::text) as v from generate_series(1, 20000) g");
    src.psql("create unlogged table scratch_unlogged as select g from generate_series(1, 1000) g");

    scratch.pgbr_ok(&conf, &["--stanza=main", "stanza-create"]);
    // stanza-create is idempotent for the same cluster
    scratch.pgbr_ok(&conf, &["--stanza=main", "stanza-create"]);
    scratch.pgbr_ok(&conf, &["--stanza=main", "backup", "--type=full"]);
    // Nothing changes after the backup, so the end of the archive is the backup's end point.
    let unlogged_path = src.psql("select pg_relation_filepath('scratch_unlogged')");
    // An unlogged table restores empty by design; empty it in the source too before comparing.
    src.psql("truncate scratch_unlogged");
    src.switch_and_wait_archived();
    let expected = src.dump();

    let info = scratch.pgbr_ok(&conf, &["--stanza=main", "info", "--output=pgbr-json"]);
    let json: serde_json::Value = serde_json::from_str(&info).expect("info json");
    let backups = json[0]["backups"].as_array().expect("backups");
    assert_eq!(backups.len(), 1, "{info}");
    assert_eq!(backups[0]["backup_type"], "full");
    assert!(backups[0]["size_stored"].as_u64().expect("stored") > 0);
    assert_eq!(json[0]["cipher"], cipher);
    let text = scratch.pgbr_ok(&conf, &["--stanza=main", "info"]);
    assert!(text.contains("full backup:"), "{text}");

    let dst_dir = scratch.mkdir("dst");
    let ts_new = scratch.mkdir("ts-restored");
    let oid = src.psql("select oid from pg_tablespace where spcname = 'outside'");
    scratch.pgbr_ok(
        &conf,
        &[
            "--stanza=main",
            "restore",
            &format!("--pg1-path={}", dst_dir.display()),
            &format!("--tablespace-map={oid}={}", ts_new.display()),
        ],
    );
    assert_modes(&dst_dir);
    assert_modes(&ts_new);
    assert_eq!(
        std::fs::read_link(dst_dir.join(format!("pg_tblspc/{oid}"))).expect("tablespace link"),
        ts_new
    );
    assert!(dst_dir.join("recovery.signal").exists());
    let auto = std::fs::read_to_string(dst_dir.join("postgresql.auto.conf")).expect("auto.conf");
    assert!(auto.contains("restore_command = "), "{auto}");
    // The unlogged table's data fork is not restored, only its init fork.
    assert!(!dst_dir.join(&unlogged_path).exists());
    assert!(dst_dir.join(format!("{unlogged_path}_init")).exists());

    let mut src = src;
    src.stop();
    let mut dst = Cluster::over(&scratch, "dst", dst_dir.clone());
    dst.configure("archive_mode = off\n");
    dst.start();
    // Recovery replays the archive to its end, then the server promotes.
    for _ in 0..300 {
        if dst.psql("select pg_is_in_recovery()") == "f" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(dst.psql("select pg_is_in_recovery()"), "f", "{}", dst.log());
    let expected = expected.replace(
        &format!("LOCATION '{}'", ts_dir.display()),
        &format!("LOCATION '{}'", ts_new.display()),
    );
    assert_same_dump(&dst.dump(), &expected);
    assert_eq!(dst.psql("select count(*) from in_ts"), "20000");
    assert_eq!(dst.psql("select count(*) from pgbench_accounts"), "100000");
    assert_eq!(dst.psql("select count(*) from scratch_unlogged"), "0");
}

#[test]
fn restored_cluster_equals_source_plain() {
    backup_restore_round_trip("none");
}

#[test]
fn restored_cluster_equals_source_aes_256_gcm() {
    backup_restore_round_trip("aes-256-gcm");
}

#[test]
fn restored_cluster_equals_source_aes_256_cbc() {
    backup_restore_round_trip("aes-256-cbc");
}
