//! Loading and mapping, end to end: precedence, errors that name their option, repositories.

use std::path::PathBuf;

use pgbr_storage::UriStyle;

use super::*;
use crate::options::Command;
use crate::test_support::{flags, write_conf};

#[test]
fn sizes_take_binary_and_short_units_alike() {
    for (text, want) in [
        ("4096", Some(4096)),
        ("12b", Some(12)),
        ("256k", Some(256 << 10)),
        ("256KB", Some(256 << 10)),
        ("256KiB", Some(256 << 10)),
        ("20MiB", Some(20 << 20)),
        (" 2 mb ", Some(2 << 20)),
        ("1GiB", Some(1 << 30)),
        ("1ti", Some(1 << 40)),
        ("1i", None),
        ("1ib", None),
        ("MiB", None),
        ("1.5MiB", None),
        ("-1k", None),
        ("99999999999999T", None),
    ] {
        assert_eq!(parse_size(text), want, "{text:?}");
    }
}

#[test]
fn precedence_file_then_env_then_flags() {
    let (_d, path) = write_conf(
        "[global]\nrepo1-path=/g\nprocess-max=2\ncompress-type=gz\n[global:backup]\nprocess-max=3\n[main]\nrepo1-path=/s\n[main:backup]\nstart-fast=y\n",
    );
    let p = path.display().to_string();
    let c = Config::load(
        Command::Backup,
        &flags(&[("config", &p), ("stanza", "main"), ("compress-type", "lz4")]),
        vec![("PGBR_PROCESS_MAX".into(), "4".into())],
    )
    .expect("load");
    assert_eq!(c.options.get("repo1-path").as_deref(), Some("/s"));
    assert_eq!(c.options.get("process-max").as_deref(), Some("4"));
    assert_eq!(c.options.get("compress-type").as_deref(), Some("lz4"));
    assert!(c.options.get_bool("start-fast"));
    // another command does not see [main:backup]
    let r = Config::load(
        Command::Restore,
        &flags(&[("config", &p), ("stanza", "main")]),
        vec![],
    )
    .expect("load");
    assert!(!r.options.is_set("start-fast"));
    assert_eq!(r.options.get("process-max").as_deref(), Some("2"));
}

#[test]
fn unknown_and_bad_options_name_themselves() {
    let (_d, path) = write_conf("[global]\nrepo1-pth=/x\n");
    let p = path.display().to_string();
    let e = Config::load(
        Command::Backup,
        &flags(&[("config", &p), ("stanza", "main")]),
        vec![],
    )
    .expect_err("unknown");
    assert!(e.to_string().contains("repo1-pth"), "{e}");
    let e = Config::load(
        Command::Backup,
        &flags(&[("stanza", "main"), ("process-max", "0")]),
        vec![],
    )
    .expect_err("bad");
    assert!(e.to_string().contains("process-max"), "{e}");
    let e = Config::load(
        Command::Backup,
        &flags(&[("stanza", "main"), ("tablespace-map", "1=/x")]),
        vec![],
    )
    .expect_err("wrong command");
    assert!(e.to_string().contains("tablespace-map"), "{e}");
    let e = Config::load(Command::Backup, &flags(&[]), vec![]).expect_err("no stanza");
    assert!(e.to_string().contains("stanza"), "{e}");
    let e = Config::load(
        Command::Backup,
        &flags(&[("stanza", "main"), ("config", "/nonexistent/pgbr.conf")]),
        vec![],
    )
    .expect_err("missing config");
    assert!(e.to_string().contains("/nonexistent/pgbr.conf"), "{e}");
}

#[test]
fn missing_pg_path_and_cipher_pass_are_named() {
    let c = Config::load(
        Command::Backup,
        &flags(&[("stanza", "main"), ("repo1-cipher-type", "aes-256-gcm")]),
        vec![],
    )
    .expect("load");
    let e = c.pg().expect_err("pg1-path");
    assert!(e.to_string().contains("pg1-path"), "{e}");
    let e = c.repo(1).expect_err("pass");
    assert!(e.to_string().contains("repo1-cipher-pass"), "{e}");
    let c = Config::load(
        Command::Backup,
        &flags(&[("stanza", "main"), ("repo1-cipher-type", "aes-256-gcm")]),
        vec![("PGBR_REPO1_CIPHER_PASS".into(), "s3cret".into())],
    )
    .expect("load");
    let r = c.repo(1).expect("repo");
    assert!(!format!("{r:?}").contains("s3cret"));
}

#[test]
fn tablespace_map_is_repeatable() {
    let c = Config::load(
        Command::Restore,
        &flags(&[
            ("stanza", "main"),
            ("pg1-path", "/restore"),
            ("tablespace-map", "16385=/ts1"),
            ("tablespace-map", "big=/ts2"),
        ]),
        vec![],
    )
    .expect("load");
    let r = c.restore().expect("restore");
    assert_eq!(r.tablespace_map.len(), 2);
    assert_eq!(r.tablespace_map["big"], PathBuf::from("/ts2"));
}
#[test]
fn object_store_repositories_and_repository_selection() {
    let (_d, path) = write_conf(
        "[global]\nrepo1-path=/local\nrepo3-type=s3\nrepo3-s3-bucket=b\nrepo3-s3-key=AKID\nrepo3-s3-key-secret=topsecret\nrepo3-s3-uri-style=path\nrepo3-path=/pgbr\n",
    );
    let p = path.display().to_string();
    let c = Config::load(
        Command::Backup,
        &flags(&[("config", &p), ("stanza", "main")]),
        vec![],
    )
    .expect("load");
    assert_eq!(c.repo_indexes(), vec![1, 3]);
    assert_eq!(c.default_repo().expect("repo1").index, 1);
    let r3 = c.repo(3).expect("repo3");
    assert_eq!(r3.repo_type, RepoType::S3);
    match &r3.cloud {
        Some(CloudOptions::S3(o)) => {
            assert_eq!(o.bucket, "b");
            assert_eq!(o.prefix, "/pgbr");
            assert_eq!(o.uri_style, UriStyle::Path);
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{r3:?}").contains("topsecret"));
    let c = Config::load(
        Command::Backup,
        &flags(&[("config", &p), ("stanza", "main"), ("repo", "2")]),
        vec![],
    )
    .expect("load");
    let e = c.default_repo().expect_err("repo2 is not configured");
    assert!(e.to_string().contains("repo2"), "{e}");
    let c = Config::load(
        Command::Backup,
        &flags(&[("stanza", "main"), ("repo1-type", "azure")]),
        vec![],
    )
    .expect("load");
    let e = c.repo(1).expect_err("account");
    assert!(e.to_string().contains("repo1-azure-account"), "{e}");
}

#[test]
fn typed_defaults_are_the_registry_defaults() {
    let backup = BackupOptions::default();
    assert_eq!(backup.backup_type, pgbr_manifest::BackupType::Full);
    assert_eq!(backup.process_max, 1);
    assert!(backup.archive_check && !backup.archive_copy && !backup.start_fast);
    assert_eq!(backup.archive_timeout, std::time::Duration::from_secs(60));
    assert_eq!(backup.lock_path, PathBuf::from("/tmp/pgbr"));
    assert_eq!(
        backup.bundle,
        Some(BundleOptions {
            size: 20 << 20,
            limit: 2 << 20
        })
    );
    assert_eq!(backup.standby, None);
    let compress = CompressOptions::default();
    assert_eq!(compress.compress_type, pgbr_storage::CompressType::Zst);
    assert_eq!(compress.level, 3);
    let expire = ExpireOptions::default();
    assert_eq!(expire.retention_full, None);
    assert_eq!(expire.retention_full_type, RetentionFullType::Count);
    assert_eq!(
        expire.retention_archive_type,
        pgbr_manifest::BackupType::Full
    );
    assert_eq!(VerifyOptions::default().retention, expire);
    assert_eq!(ArchivePushOptions::default().pg_path, None);
    assert_eq!(RestoreOptions::default().process_max, 1);
    let pg = PgOptions::new("/data");
    assert_eq!(
        (pg.port, pg.user.as_str(), pg.database.as_str()),
        (5432, "postgres", "postgres")
    );
    assert_eq!(pg.socket_path, PathBuf::from("/var/run/postgresql"));
}
