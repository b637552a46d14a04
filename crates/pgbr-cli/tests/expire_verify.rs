//! Retention, verify and crash-safe expire against a real PostgreSQL 15: four full backups with
//! repo1-retention-full=2 leave two (and their WAL, and no staging file of a killed archive-push
//! for a segment removed), each restores; an expire killed mid-way leaves a
//! repository that verifies and the next expire finishes; a flipped byte in a backup file, in both
//! manifest copies and in an archived segment, and a deleted segment, are each named by `verify`
//! and refused by `restore`.

mod common;

use std::path::{Path, PathBuf};

use common::{info, labels, Scratch, Setup, Stanza};

fn backup(scratch: &Scratch, conf: &Path) -> String {
    scratch.pgbr_ok(conf, &["--stanza=main", "backup", "--type=full"]);
    labels(&info(scratch, conf))
        .last()
        .cloned()
        .expect("a backup")
}

/// Every archived object of timeline 1, sorted by name: (segment name, object path).
fn archived_segments(repo: &Path) -> Vec<(String, PathBuf)> {
    let dir = repo.join("archive/main/15-1/0000000100000000");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("archive dir")
        .map(|e| e.expect("entry").path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            (name.as_bytes().get(24) == Some(&b'-')).then(|| (name[..24].to_string(), p))
        })
        .collect();
    out.sort();
    out
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    let i = at.min(bytes.len() - 1);
    bytes[i] ^= 0x55;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn retention_expire_crash_and_verify_find_every_damage() {
    let mut env = Stanza::new("repo1-bundle=n\nrepo1-retention-full=2\nprocess-max=2\n");
    let (scratch, conf, repo) = (&env.scratch, &env.conf, &env.repo);
    env.src.psql("create table t (id int)");

    // Four full backups with retention-full=2: the newest two remain, with the WAL from the
    // oldest one's start onward.
    let mut all = Vec::new();
    let wal_dir = repo.join("archive/main/15-1/0000000100000000");
    let mut abandoned = Vec::new();
    for i in 1..=4 {
        env.src.psql(&format!(
            "insert into t select g from generate_series(1, {i}) g"
        ));
        env.src.switch_and_wait_archived();
        all.push(backup(scratch, conf));
        if i == 1 {
            // What an archive-push killed mid-write leaves: a staging file, for a segment that
            // expires below and for one not archived yet.
            let (first, _) = archived_segments(repo)
                .into_iter()
                .next()
                .expect("a segment");
            for (segment, digits) in [(first.as_str(), 1), ("0000000100000000000000FF", 2)] {
                let staging = wal_dir.join(format!("{segment}.pending#99900000{digits}"));
                std::fs::write(&staging, b"partial").expect("staging file");
                abandoned.push(staging);
            }
        }
    }
    let now = info(scratch, conf);
    assert_eq!(labels(&now), all[2..].to_vec(), "{now}");
    assert!(
        !abandoned[0].exists(),
        "expire left what a killed push wrote for a segment it removed"
    );
    assert!(
        abandoned[1].exists(),
        "expire removed a later segment's file"
    );
    for gone in &all[..2] {
        assert!(!repo.join(format!("backup/main/{gone}")).exists(), "{gone}");
    }
    let oldest_start = now["backups"][0]["wal_start"]
        .as_str()
        .expect("wal_start")
        .to_string();
    let archive = &now["archive"][0];
    assert_eq!(
        archive["min"].as_str(),
        Some(oldest_start.as_str()),
        "{now}"
    );

    // --dry-run says what would go and removes nothing.
    let dry = scratch.pgbr_ok(
        conf,
        &[
            "--stanza=main",
            "expire",
            "--repo1-retention-full=1",
            "--dry-run",
        ],
    );
    assert!(
        dry.contains(&format!("[dry-run] would expire backup {}", all[2])),
        "{dry}"
    );
    assert_eq!(labels(&info(scratch, conf)), all[2..].to_vec());
    // repo1-retention-archive=1: only the newest backup keeps WAL for PITR; the older one keeps
    // just its own start..stop range, so some WAL between them would go.
    let dry = scratch.pgbr_ok(
        conf,
        &[
            "--stanza=main",
            "expire",
            "--repo1-retention-archive=1",
            "--dry-run",
        ],
    );
    assert!(
        dry.contains("[dry-run] would expire WAL archive 15-1 timeline 1:")
            && !dry.contains("backup 2"),
        "{dry}"
    );
    // --set refuses the newest full backup without --force.
    let out = scratch.pgbr(
        conf,
        &["--stanza=main", "expire", &format!("--set={}", all[3])],
    );
    assert_eq!(out.status.code(), Some(9));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));

    // Every retained backup restores and starts.
    let rows = env.src.psql("select count(*) from t");
    for (i, label) in all[2..].iter().enumerate() {
        let mut c = env.restore_and_start(&format!("dst{i}"), &[&format!("--set={label}")]);
        assert_eq!(c.psql("select count(*) from t"), rows);
        c.stop();
    }
    let v = scratch.pgbr_ok(conf, &["--stanza=main", "verify"]);
    assert!(v.contains("status: ok"), "{v}");

    // kill -9 of expire mid-way (a crash point once the manifest is removed): the repository
    // still verifies, the next expire finishes.
    let status = common::as_pg(&scratch.pgbr)
        .arg(format!("--config={}", conf.display()))
        .args(["--stanza=main", "expire", "--repo1-retention-full=1"])
        .env("FAILPOINTS", "expire::after-manifest=return")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run expire");
    assert!(
        common::was_killed(&status),
        "expire was not killed: {status}"
    );
    let info_file = repo.join("backup/main/backup.info");
    let text = std::fs::read_to_string(&info_file).expect("backup.info");
    assert!(!text.contains(&all[2]), "{text}");
    let v = scratch.pgbr(conf, &["--stanza=main", "verify"]);
    assert!(
        v.status.success(),
        "verify after a killed expire:\n{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    // Killed mid-way: the expired backup's directory is still there (a note, not an error).
    let v = String::from_utf8_lossy(&v.stdout).into_owned();
    assert!(v.contains(&format!("note: backup/main/{}", all[2])), "{v}");
    scratch.pgbr_ok(
        conf,
        &["--stanza=main", "expire", "--repo1-retention-full=1"],
    );
    assert_eq!(labels(&info(scratch, conf)), vec![all[3].clone()]);
    assert!(!repo.join(format!("backup/main/{}", all[2])).exists());
    scratch.pgbr_ok(conf, &["--stanza=main", "verify"]);

    // Some WAL between the two backups that remain, then the fifth backup.
    for i in 0..3 {
        env.src.psql(&format!("insert into t values ({i})"));
        env.src.switch_and_wait_archived();
    }
    let b4 = all[3].clone();
    let b5 = backup(scratch, conf);
    assert_eq!(labels(&info(scratch, conf)), vec![b4.clone(), b5.clone()]);

    // Damage: a file of b4, both manifest copies of b5, one segment; delete another segment.
    let b4_dir = repo.join(format!("backup/main/{b4}"));
    let victim = common_largest_file(&b4_dir.join("pg_data/base"));
    flip_byte(&victim, 100);
    let b5_manifest = repo.join(format!("backup/main/{b5}/backup.manifest"));
    let b5_copy = repo.join(format!("backup/main/{b5}/backup.manifest.copy"));
    flip_byte(&b5_manifest, 200);
    flip_byte(&b5_copy, 300);
    // restore refuses both damaged backups with a clear error.
    for (set, expect) in [(&b4, "damaged"), (&b5, "manifest of backup")] {
        let dst = scratch.mkdir(&format!("refused-{set}"));
        let out = scratch.pgbr(
            conf,
            &[
                "--stanza=main",
                "restore",
                &format!("--set={set}"),
                &format!("--pg1-path={}", dst.display()),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(err.contains(expect), "{err}");
    }
    let b4_start = info(scratch, conf)["backups"][0]["wal_start"]
        .as_str()
        .expect("wal_start")
        .to_string();
    let segs: Vec<(String, PathBuf)> = archived_segments(repo)
        .into_iter()
        .filter(|(s, _)| *s >= b4_start)
        .collect();
    assert!(segs.len() >= 5, "{segs:?}");
    let (_, bad_seg) = &segs[1];
    flip_byte(bad_seg, 64);
    let (missing_name, missing) = segs[3].clone();
    std::fs::remove_file(&missing).expect("remove segment");

    let out = scratch.pgbr(conf, &["--stanza=main", "verify", "--process-max=3"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(14), "{text}");
    let rel = |p: &Path| p.strip_prefix(repo).expect("in repo").display().to_string();
    for named in [
        rel(&victim),
        rel(&b5_manifest),
        rel(&b5_copy),
        rel(bad_seg),
        missing_name.clone(),
    ] {
        assert!(
            text.contains(&named),
            "verify does not name {named}:\n{text}"
        );
    }
    assert!(
        text.contains(&format!("segment {missing_name} is missing")),
        "{text}"
    );
    let out = scratch.pgbr(conf, &["--stanza=main", "verify", "--output=json"]);
    assert_eq!(out.status.code(), Some(14));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verify json");
    assert_eq!(json["ok"], false);
    let objects: Vec<&str> = json["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["object"].as_str().expect("object"))
        .collect();
    assert!(objects.contains(&rel(&victim).as_str()), "{objects:?}");
    assert!(objects.contains(&missing_name.as_str()), "{objects:?}");

    env.src.stop();
}

fn common_largest_file(dir: &Path) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let m = std::fs::metadata(&p).expect("stat");
            if m.is_dir() {
                stack.push(p);
            } else if best.as_ref().is_none_or(|(s, _)| m.len() > *s) {
                best = Some((m.len(), p));
            }
        }
    }
    best.expect("a file").1
}

#[test]
fn verify_of_an_encrypted_repository_names_a_tampered_file() {
    let mut env = Stanza::setup(Setup {
        global: "repo1-bundle=n\nrepo1-cipher-type=aes-256-gcm\nrepo1-cipher-pass=correct horse battery staple\n",
        quiet: true,
        ..Setup::default()
    });
    let (scratch, conf, repo) = (&env.scratch, &env.conf, &env.repo);
    let label = backup(scratch, conf);
    let json = verify_json_ok(scratch, conf);
    assert!(json["wal_checked"].as_u64().expect("wal") >= 1, "{json}");

    let victim = common_largest_file(&repo.join(format!("backup/main/{label}/pg_data/base")));
    let (text, rel) = verify_after_flipping(scratch, conf, repo, &victim, 4000);
    assert!(
        text.contains(&format!(
            "ERROR: {rel}: cannot be decrypted and authenticated"
        )),
        "{text}"
    );
    env.src.stop();
}

/// `verify --output=json` of an intact repository: ok, and more than 100 backup files checked.
fn verify_json_ok(scratch: &Scratch, conf: &Path) -> serde_json::Value {
    let v = scratch.pgbr_ok(conf, &["--stanza=main", "verify", "--output=json"]);
    let json: serde_json::Value = serde_json::from_str(&v).expect("json");
    assert_eq!(json["ok"], true, "{v}");
    assert!(json["files_checked"].as_u64().expect("files") > 100, "{v}");
    json
}

/// Flips the byte at `at` of `victim` and runs `verify`, which must exit 14: its text output and
/// the victim's path in the repository.
fn verify_after_flipping(
    scratch: &Scratch,
    conf: &Path,
    repo: &Path,
    victim: &Path,
    at: usize,
) -> (String, String) {
    flip_byte(victim, at);
    let out = scratch.pgbr(conf, &["--stanza=main", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(14), "{text}");
    let rel = victim
        .strip_prefix(repo)
        .expect("in repo")
        .display()
        .to_string();
    (text, rel)
}

/// Every `.blk` object (a block-mapped file's blocks) under `dir`.
fn block_objects(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "blk") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A stanza whose cluster has a table `big` of `rows` rows (about 70 bytes each), frozen,
/// checkpointed and left alone by autovacuum, so its file stays what a backup copies: (stanza,
/// the file's path in the data directory).
fn stanza_with_big_table(rows: u32) -> (Stanza, String) {
    let env = Stanza::setup(Setup {
        quiet: true,
        ..Setup::default()
    });
    env.src.psql(&format!(
        "create table big with (autovacuum_enabled = false) as
           select g as id, md5(g::text) as v from generate_series(1, {rows}) g"
    ));
    env.src.psql("vacuum (freeze) big");
    env.src.psql("checkpoint");
    let rel = env.src.psql("select pg_relation_filepath('big')");
    (env, rel)
}

#[test]
fn verify_and_restore_find_a_corrupt_block_of_a_block_mapped_file() {
    // A 2+ MiB relation: stored as 64 KiB blocks in one `.blk` object.
    let (mut env, rel) = stanza_with_big_table(40_000);
    let (scratch, conf, repo) = (&env.scratch, &env.conf, &env.repo);
    let label = backup(scratch, conf);
    let object = repo.join(format!("backup/main/{label}/pg_data/{rel}.blk"));
    assert!(
        object.exists(),
        "{} is not stored as blocks; block objects: {:?}",
        object.display(),
        block_objects(&repo.join(format!("backup/main/{label}")))
    );
    let v = scratch.pgbr_ok(conf, &["--stanza=main", "verify"]);
    assert!(v.contains("status: ok"), "{v}");

    // A byte in the middle of the object: inside some block's stored bytes.
    let len = std::fs::metadata(&object).expect("stat").len() as usize;
    flip_byte(&object, len / 2);
    let out = scratch.pgbr(conf, &["--stanza=main", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(14), "{text}");
    let named = object
        .strip_prefix(repo)
        .expect("in repo")
        .display()
        .to_string();
    assert!(
        text.contains(&named),
        "verify does not name {named}:\n{text}"
    );

    let dst = scratch.mkdir("dst");
    let out = scratch.pgbr(
        conf,
        &[
            "--stanza=main",
            "restore",
            &format!("--set={label}"),
            &format!("--pg1-path={}", dst.display()),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains(rel.as_str()), "{err}");
    env.src.stop();
}

/// A relation file over 64 MiB is restored (and verified) in parts by both workers at once:
/// restored, and delta-restored after it was cut short, it is byte for byte the file backed up;
/// verify counts it once. With one block damaged, verify names it, the restore fails naming it
/// and leaves no part of the file behind, and `--force` over the whole file leaves it as it was.
#[test]
fn a_file_restored_in_parts_is_whole_or_absent() {
    // About 90 MB: two parts.
    let (mut env, rel) = stanza_with_big_table(1_300_000);
    let (scratch, conf, repo) = (&env.scratch, &env.conf, &env.repo);
    let source = env.src.data.join(&rel);
    let size = std::fs::metadata(&source).expect("stat").len();
    assert!(size > 64 << 20, "{rel} is only {size} bytes");
    let label = backup(scratch, conf);
    let restore = |dst: &Path, extra: &[&str]| {
        let set = format!("--set={label}");
        let pg1_path = format!("--pg1-path={}", dst.display());
        let mut args = vec![
            "--stanza=main",
            "restore",
            &set,
            "--process-max=2",
            &pg1_path,
        ];
        args.extend(extra);
        scratch.pgbr(conf, &args)
    };
    let want = std::fs::read(&source).expect("source file");
    // Restores into `dst` and checks the file is byte for byte the one backed up.
    let restore_exactly = |dst: &Path, extra: &[&str], how: &str| {
        let out = restore(dst, extra);
        assert!(
            out.status.success(),
            "{how}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let restored = std::fs::read(dst.join(&rel)).expect("restored file");
        assert!(
            restored == want,
            "{rel} {how} differs from the file backed up"
        );
    };

    let whole = scratch.mkdir("whole");
    restore_exactly(&whole, &[], "restored");
    // --delta over the file cut short in its first part: each part finds its blocks missing
    // (or right) and rewrites them in place.
    std::fs::OpenOptions::new()
        .write(true)
        .open(whole.join(&rel))
        .expect("open")
        .set_len(size / 3)
        .expect("truncate");
    restore_exactly(&whole, &["--delta"], "delta-restored");

    // verify checks the big file in parts too, and counts it once: every file with bytes.
    let v = verify_json_ok(scratch, conf);
    let stored =
        std::fs::read(repo.join(format!("backup/main/{label}/backup.manifest"))).expect("manifest");
    let manifest: serde_json::Value =
        serde_json::from_slice(&zstd::decode_all(&stored[..]).expect("zstd manifest"))
            .expect("manifest json");
    let with_bytes = manifest["manifest"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["size"] != 0 || f["stored_size"] != 0)
        .count();
    assert_eq!(v["files_checked"], with_bytes, "{v}");

    // A byte three quarters into the blocks: in the second part.
    let object = repo.join(format!("backup/main/{label}/pg_data/{rel}.blk"));
    let len = std::fs::metadata(&object).expect("stat").len() as usize;
    flip_byte(&object, len / 4 * 3);
    let out = scratch.pgbr(conf, &["--stanza=main", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(14), "{text}");
    assert!(
        text.contains(&format!("{rel}.blk")),
        "verify does not name {rel}:\n{text}"
    );
    let name = Path::new(&rel)
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let temporary = format!("{name}.pgbr.tmp");
    // Restores into `dst` from the damaged backup, which must fail naming the file; returns
    // the names left in the file's directory.
    let restore_damaged = |dst: &Path, extra: &[&str]| {
        let out = restore(dst, extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(err.contains(rel.as_str()), "{err}");
        let dir = dst.join(&rel).parent().expect("dir").to_path_buf();
        std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_else(|_| Vec::new())
    };
    let damaged = scratch.mkdir("damaged");
    let left = restore_damaged(&damaged, &[]);
    assert!(
        !left.iter().any(|n| *n == *name || *n == *temporary),
        "{rel} (or its temporary) was left behind: {left:?}"
    );
    // --force over the whole file: it stays as it was, and its temporary goes.
    let left = restore_damaged(&whole, &["--force"]);
    assert!(
        !left.iter().any(|n| *n == *temporary),
        "the temporary of {rel} was left behind: {left:?}"
    );
    assert!(
        std::fs::read(whole.join(&rel)).expect("the file") == want,
        "a failed --force restore changed {rel}"
    );
    env.src.stop();
}

#[test]
fn verify_reads_each_bundle_once_and_names_the_one_damaged_file_in_it() {
    let mut env = Stanza::setup(Setup {
        quiet: true,
        ..Setup::default()
    });
    let (scratch, conf, repo) = (&env.scratch, &env.conf, &env.repo);
    let label = backup(scratch, conf);
    // Every bundled file is counted, not only every bundle.
    verify_json_ok(scratch, conf);

    let victim = common_largest_file(&repo.join(format!("backup/main/{label}/bundle")));
    let len = std::fs::metadata(&victim).expect("stat").len() as usize;
    let (text, rel) = verify_after_flipping(scratch, conf, repo, &victim, len / 2);
    // One file's piece is damaged: it alone is named, and the files after it in the bundle are
    // still read and found intact.
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(errors[0].contains(&rel), "{text}");
    assert!(
        errors[0].contains("pg_data/"),
        "names the bundled file: {text}"
    );
    env.src.stop();
}

/// `expire-auto=n` (pgBackRest's option): the backup applies no retention; the default does.
#[test]
fn expire_auto_off_keeps_what_retention_would_remove() {
    let env = Stanza::new("repo1-retention-full=1\n");
    let (scratch, conf) = (&env.scratch, &env.conf);
    backup(scratch, conf);
    let second = backup(scratch, conf);
    assert_eq!(labels(&info(scratch, conf)), vec![second.clone()]);
    scratch.pgbr_ok(
        conf,
        &["--stanza=main", "backup", "--type=full", "--no-expire-auto"],
    );
    let kept = labels(&info(scratch, conf));
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[0], second);
}
