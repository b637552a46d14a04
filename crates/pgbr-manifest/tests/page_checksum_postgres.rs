//! Verifies `page_checksum` bit for bit against pages written by a real
//! PostgreSQL (`initdb -k`).

use std::path::{Path, PathBuf};
use std::process::Command;

use pgbr_manifest::{check_page, page_checksum, page_lsn, PageCheck, PAGE_SIZE};

const INITDB: &str = "/usr/lib/postgresql/15/bin/initdb";

fn initdb_cluster() -> Option<(tempfile::TempDir, PathBuf)> {
    if !Path::new(INITDB).exists() {
        eprintln!("SKIPPED: {INITDB} not found; cannot check page checksums against PostgreSQL");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pgdata = dir.path().join("pgdata");
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let status = if is_root {
        let chown = Command::new("chown")
            .arg("postgres:")
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(chown.success(), "chown of {} failed", dir.path().display());
        Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                INITDB,
                "-k",
                "--no-sync",
                "-A",
                "trust",
                "-D",
            ])
            .arg(&pgdata)
            .output()
            .expect("run initdb")
    } else {
        Command::new(INITDB)
            .args(["-k", "--no-sync", "-A", "trust", "-D"])
            .arg(&pgdata)
            .output()
            .expect("run initdb")
    };
    assert!(
        status.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    Some((dir, pgdata))
}

fn relation_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read base/1")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn page_checksum_matches_postgresql_initdb_pages() {
    let Some((_dir, pgdata)) = initdb_cluster() else {
        return;
    };
    let files = relation_files(&pgdata.join("base/1"));
    assert!(files.len() > 50, "expected many relation files in base/1");
    let (mut valid, mut new) = (0usize, 0usize);
    let mut flipped_checked = 0usize;
    for path in &files {
        let data = std::fs::read(path).expect("read relation file");
        assert_eq!(
            data.len() % PAGE_SIZE,
            0,
            "{} is not whole pages",
            path.display()
        );
        for (blkno, page) in data.chunks_exact(PAGE_SIZE).enumerate() {
            let blkno = blkno as u32;
            match check_page(page, blkno, u64::MAX) {
                PageCheck::Valid => valid += 1,
                PageCheck::New => {
                    new += 1;
                    continue;
                }
                other => panic!("{} block {blkno}: {other:?}", path.display()),
            }
            let stored = u16::from_le_bytes([page[8], page[9]]);
            assert_eq!(page_checksum(page, blkno), stored);
            assert!(page_lsn(page) < u64::MAX);

            // Any flipped byte outside pd_checksum is a mismatch.
            let mut bad = page.to_vec();
            let at = (blkno as usize * 7919 + 100) % PAGE_SIZE;
            let at = if (8..10).contains(&at) { 20 } else { at };
            bad[at] ^= 0x01;
            assert!(
                matches!(check_page(&bad, blkno, u64::MAX), PageCheck::Mismatch { stored: s, .. } if s == stored),
                "{} block {blkno}: flipped byte {at} not detected",
                path.display()
            );
            // The same page at another block number is a mismatch.
            assert!(matches!(
                check_page(page, blkno + 1, u64::MAX),
                PageCheck::Mismatch { .. }
            ));
            // Pages newer than the backup start are skipped.
            assert_eq!(
                check_page(page, blkno, page_lsn(page)),
                PageCheck::SkippedNewerLsn
            );
            flipped_checked += 1;
        }
    }
    eprintln!(
        "checked {} files: {valid} valid pages, {new} new pages, {flipped_checked} corruptions detected",
        files.len()
    );
    assert!(
        valid > 100,
        "expected many initialized pages, found {valid}"
    );
}
