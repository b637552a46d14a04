//! Damage to every kind of object of a repository, plain and encrypted (AES-256-GCM and
//! AES-256-CBC): a flipped byte, a truncation to half and a deletion of backup.info, archive.info,
//! a manifest (each copy alone, and both), a bundle, a block file, a file stored whole and a WAL
//! segment. `verify` names the object and exits 14; `restore` refuses (exit non-zero, and
//! nothing written when the damage is in what it reads before writing: both copies of an info
//! file or manifest, a missing segment) or, when one copy of a metadata file is damaged,
//! restores from the other copy byte for byte; `archive-get` of a damaged or truncated segment
//! exits 126, never 1 ("absent" to PostgreSQL). Run with `--nocapture` to see each cell.
//!
//! The info files are stored as they are whatever the cipher (their `cipher` section holds the
//! wrapped key; they are read and checked before any key is unwrapped, and both ciphers wrap it
//! the same way), so their cells run in the plain and the AES-256-GCM repository; manifests,
//! backup files and WAL, which are encrypted, in each.
//! `verify` reads backup files and WAL independently of one another, so one run with all of
//! them damaged (the same way) must name each; every restore runs with one object damaged.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::faults::{assert_same_tree, fingerprint, objects, remove, restore_args, text, verify};
use common::{Setup, Stanza};

#[derive(Clone, Copy, Debug)]
enum Damage {
    Flip,
    Truncate,
    Delete,
}

const DAMAGES: [Damage; 3] = [Damage::Flip, Damage::Truncate, Damage::Delete];

/// One object (or a pair of copies) to damage.
struct Object {
    kind: &'static str,
    /// Files in the repository, relative to it.
    paths: Vec<String>,
    /// Metadata restore reads before writing anything.
    read_first: bool,
    /// One copy of two: the other one still verifies.
    has_twin: bool,
}

/// The cluster, with a table big enough to be stored as blocks, and a full backup.
fn setup(cipher: &str) -> (Stanza, String) {
    let cipher_lines = match cipher {
        "none" => String::new(),
        c => format!("repo1-cipher-type={c}\nrepo1-cipher-pass=a long enough test passphrase\n"),
    };
    let env = Stanza::setup(Setup {
        global: &format!("repo1-bundle-size=512KB\nrepo1-bundle-limit=64KB\n{cipher_lines}"),
        quiet: true,
        ..Setup::default()
    });
    env.src.psql(
        "create table t as select g as id, md5(g::text) as v from generate_series(1, 40000) g",
    );
    env.scratch
        .pgbr_ok(&env.conf, &["--stanza=main", "backup", "--type=full"]);
    let label = common::labels(&common::info(&env.scratch, &env.conf))[0].clone();
    (env, label)
}

/// Files under `dir` (recursively) whose name passes `keep`, relative to `root`, largest first.
fn files_under(root: &Path, dir: &Path, keep: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&e.file_name().to_string_lossy()) {
                let size = std::fs::metadata(&p).expect("stat").len();
                let rel = p.strip_prefix(root).expect("in repo").display().to_string();
                out.push((size, rel));
            }
        }
    }
    out.sort_by(|a, b| b.cmp(a));
    out.into_iter().map(|(_, p)| p).collect()
}

/// Every kind of object of the repository of `env`, holding backup `label`; the info files only
/// with `info_files`.
fn objects_of(env: &Stanza, label: &str, info_files: bool) -> Vec<Object> {
    let repo = &env.repo;
    let meta = |kind, path: &str| {
        let copy = format!("{path}.copy");
        vec![
            Object {
                kind,
                paths: vec![path.to_string()],
                read_first: true,
                has_twin: true,
            },
            Object {
                kind,
                paths: vec![copy.clone()],
                read_first: true,
                has_twin: true,
            },
            Object {
                kind,
                paths: vec![path.to_string(), copy],
                read_first: true,
                has_twin: false,
            },
        ]
    };
    let backup_dir = repo.join(format!("backup/main/{label}"));
    let data = |kind, keep: &dyn Fn(&str) -> bool| {
        let found = files_under(repo, &backup_dir, keep);
        let first = found
            .first()
            .unwrap_or_else(|| panic!("no {kind} in the backup"));
        Object {
            kind,
            paths: vec![first.clone()],
            read_first: false,
            has_twin: false,
        }
    };
    let wal_start = common::info(&env.scratch, &env.conf)["backups"][0]["wal_start"]
        .as_str()
        .expect("wal_start")
        .to_string();
    let wal = files_under(repo, &repo.join("archive/main"), &|n| {
        n.starts_with(&wal_start)
    });
    let mut all = Vec::new();
    if info_files {
        all.extend(meta("backup.info", "backup/main/backup.info"));
        all.extend(meta("archive.info", "archive/main/archive.info"));
    }
    all.extend(meta(
        "manifest",
        &format!("backup/main/{label}/backup.manifest"),
    ));
    all.push(data("bundle", &|n| n.chars().all(|c| c.is_ascii_digit())));
    all.push(data("block file", &|n| n.ends_with(".blk")));
    all.push(data("whole file", &|n| {
        n.ends_with(".zst") && n != "backup_label.zst"
    }));
    all.push(Object {
        kind: "WAL segment",
        paths: vec![wal.first().expect("the backup's first segment").clone()],
        read_first: false,
        has_twin: false,
    });
    all
}

/// Damages `path` in `repo`; returns what to put back (contents and mode).
fn damage(repo: &Path, path: &str, how: Damage) -> (PathBuf, Vec<u8>, u32) {
    let file = repo.join(path);
    let bytes = std::fs::read(&file).expect("read object");
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
    match how {
        Damage::Flip => {
            let mut b = bytes.clone();
            b[bytes.len() / 2] ^= 0x55;
            std::fs::write(&file, b).expect("flip");
        }
        Damage::Truncate => std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("truncate"),
        Damage::Delete => std::fs::remove_file(&file).expect("delete"),
    }
    (file, bytes, mode)
}

fn repair((file, bytes, mode): (PathBuf, Vec<u8>, u32)) {
    std::fs::write(&file, bytes).expect("repair");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    common::chown_pg(&file);
}

fn run_matrix(cipher: &str) {
    let (env, label) = setup(cipher);
    let scratch = &env.scratch;
    let clean = scratch.mkdir("clean");
    let args = restore_args("main", &clean);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    scratch.pgbr_ok(&env.conf, &refs);
    let clean_print = fingerprint(&clean);
    remove(&clean);
    let objects = objects_of(&env, &label, cipher != "aes-256-cbc");
    let cell = |object: &Object, how: Damage| {
        format!("{cipher} {} {:?} {how:?}", object.kind, object.paths)
    };
    let mut results = Vec::new();
    for how in DAMAGES {
        // Backup files and WAL: damaged together, one verify names each.
        let apart: Vec<&Object> = objects.iter().filter(|o| !o.read_first).collect();
        let undo: Vec<_> = apart
            .iter()
            .flat_map(|o| o.paths.iter().map(|p| damage(&env.repo, p, how)))
            .collect();
        let cells: Vec<String> = apart.iter().map(|o| cell(o, how)).collect();
        verify_names_each(&env, &apart, &cells);
        undo.into_iter().for_each(repair);
        for (i, object) in objects.iter().enumerate() {
            let undo: Vec<_> = object
                .paths
                .iter()
                .map(|p| damage(&env.repo, p, how))
                .collect();
            let cell = cell(object, how);
            let verified = if object.read_first {
                verify_cell(&env, object, &cell)
            } else {
                "verify 14 naming it (one run for every backup file and WAL so damaged)".into()
            };
            let dir = format!("d{i}{how:?}");
            let mut line = format!(
                "{cell}: {verified}; {}",
                restore_cell(&env, object, &cell, &clean_print, &dir)
            );
            if object.kind == "WAL segment" {
                line.push_str(&archive_get_cell(&env, object, &cell, &dir));
            }
            results.push(line);
            undo.into_iter().for_each(repair);
        }
    }
    env.verify_ok();
    for r in &results {
        println!("{r}");
    }
}

/// Whether verify's `errors` name `path` of `object`.
fn names(object: &Object, path: &str, errors: &[&str]) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    let segment = file.get(..24).unwrap_or(file);
    errors.iter().any(|o| {
        // A backup without any manifest is named by its directory.
        *o == path
            || path.starts_with(&format!("{o}/"))
            || (object.kind == "WAL segment" && o.contains(segment))
    })
}

/// One verify of the repository with every object of `damaged` damaged: it exits 14 and its
/// errors name each one (`cells` says which cell each belongs to). An error fails verify on its
/// own (exit 14 is "errors is not empty"), so a name among them is that object's failure.
fn verify_names_each(env: &Stanza, damaged: &[&Object], cells: &[String]) {
    let (code, report) = verify(&env.scratch, &env.conf, &["--stanza=main"]);
    assert_eq!(code, 14, "{cells:?}: verify: {report:#}");
    let named = objects(&report, "errors");
    for (object, cell) in damaged.iter().zip(cells) {
        for p in &object.paths {
            assert!(
                names(object, p, &named),
                "{cell}: verify does not name {p}: {named:?}"
            );
        }
    }
}

/// Verify of the repository with one metadata object damaged; what it did.
fn verify_cell(env: &Stanza, object: &Object, cell: &str) -> String {
    if object.kind.ends_with(".info") && !object.has_twin {
        // Neither copy of an info file verifies (or is there): the repository does not open,
        // and verify exits 14 with one line naming the file.
        let out = env.scratch.pgbr(&env.conf, &["--stanza=main", "verify"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(14), "{cell}: verify: {err}");
        assert!(err.contains(object.kind), "{cell}: verify: {err}");
        return format!(
            "verify exits {:?} naming {}",
            out.status.code(),
            object.kind
        );
    }
    verify_names_each(env, &[object], &[cell.to_string()]);
    "verify 14 naming it".to_string()
}

/// Restore of the repository with one object damaged, into new directory `dir`; what it did.
fn restore_cell(
    env: &Stanza,
    object: &Object,
    cell: &str,
    clean_print: &BTreeMap<String, u64>,
    dir: &str,
) -> String {
    let dest = env.scratch.mkdir(dir);
    let args = restore_args("main", &dest);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.scratch.pgbr(&env.conf, &refs);
    let written = std::fs::read_dir(&dest).expect("dest").count();
    let restore = if object.has_twin {
        // The other copy verifies: the restore is the same as from an intact repository.
        assert!(out.status.success(), "{cell}: restore: {}", text(&out));
        assert_same_tree(&fingerprint(&dest), clean_print, cell);
        "restore succeeds from the other copy, byte for byte".to_string()
    } else if object.kind == "WAL segment" && !out.status.success() {
        assert_eq!(
            written,
            0,
            "{cell}: restore wrote before refusing: {}",
            text(&out)
        );
        format!("restore exits {:?}, writes nothing", out.status.code())
    } else if object.kind == "WAL segment" {
        format!("restore exits 0 (it does not read WAL), {written} entries written")
    } else {
        assert!(
            !out.status.success(),
            "{cell}: restore succeeded: {}",
            text(&out)
        );
        assert!(
            !dest.join("global/pg_control").exists(),
            "{cell}: a failed restore left pg_control"
        );
        if object.read_first {
            assert_eq!(
                written,
                0,
                "{cell}: restore wrote before refusing: {}",
                text(&out)
            );
        }
        format!(
            "restore exits {:?}, {written} entries written, no pg_control",
            out.status.code()
        )
    };
    remove(&dest);
    restore
}

/// archive-get of the damaged WAL segment `object`: exit 126 (1 when it is gone), nothing
/// written; what it did.
fn archive_get_cell(env: &Stanza, object: &Object, cell: &str, dir: &str) -> String {
    let name = object.paths[0].rsplit('/').next().unwrap_or_default()[..24].to_string();
    let got = env.scratch.path(&format!("{dir}-wal"));
    let out = env.scratch.pgbr(
        &env.conf,
        &[
            "--stanza=main",
            "archive-get",
            &name,
            &got.display().to_string(),
        ],
    );
    let code = out.status.code();
    if object.paths.iter().all(|p| env.repo.join(p).exists()) {
        assert_eq!(code, Some(126), "{cell}: archive-get: {}", text(&out));
    } else {
        assert_eq!(code, Some(1), "{cell}: archive-get of a missing segment");
    }
    assert!(!got.exists(), "{cell}: archive-get wrote a damaged segment");
    format!("; archive-get exits {code:?}")
}

#[test]
fn damage_to_any_object_of_a_plain_repository_is_named_by_verify_and_refused() {
    run_matrix("none");
}

#[test]
fn damage_to_any_object_of_an_aes_256_gcm_repository_is_named_by_verify_and_refused() {
    run_matrix("aes-256-gcm");
}

#[test]
fn damage_to_any_object_of_an_aes_256_cbc_repository_is_named_by_verify_and_refused() {
    run_matrix("aes-256-cbc");
}
