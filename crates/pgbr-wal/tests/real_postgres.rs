//! Parses a `pg_control` and a WAL segment made by a real `initdb` (PostgreSQL 15), and compares
//! with `pg_controldata`.

use std::path::{Path, PathBuf};
use std::process::Command;

use pgbr_wal::{
    validate_segment, ControlFile, Error, LongPageHeader, Lsn, Segment, DEFAULT_SEGMENT_SIZE,
};

const BIN: &str = "/usr/lib/postgresql/15/bin";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs initdb with data checksums into a new directory; `None` if initdb is not installed.
fn initdb() -> Option<(tempfile::TempDir, PathBuf)> {
    let initdb = Path::new(BIN).join("initdb");
    if !initdb.exists() {
        eprintln!("skipping: {} is not installed", initdb.display());
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let status = if is_root() {
        // initdb refuses to run as root: run it as the postgres OS user.
        let chown = Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(chown.success(), "chown postgres {}", dir.path().display());
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&initdb)
            .args(["-k", "--no-sync", "-A", "trust", "-D"])
            .arg(&data)
            .output()
            .expect("runuser initdb")
    } else {
        Command::new(&initdb)
            .args(["-k", "--no-sync", "-A", "trust", "-D"])
            .arg(&data)
            .output()
            .expect("initdb")
    };
    assert!(
        status.status.success(),
        "initdb failed: {}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    Some((dir, data))
}

/// `pg_controldata` output as (key, value) pairs.
fn controldata(data: &Path) -> Vec<(String, String)> {
    let out = Command::new(Path::new(BIN).join("pg_controldata"))
        .arg(data)
        .output()
        .expect("pg_controldata");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("pg_controldata has no {key:?}"))
}

#[test]
fn real_initdb_control_file_and_wal() {
    let Some((_dir, data)) = initdb() else { return };
    let fields = controldata(&data);

    let control_bytes = std::fs::read(data.join("global/pg_control")).expect("read pg_control");
    let control = ControlFile::parse(&control_bytes).expect("parse pg_control");

    assert_eq!(
        control.system_identifier.to_string(),
        field(&fields, "Database system identifier")
    );
    assert_eq!(
        control.pg_control_version.to_string(),
        field(&fields, "pg_control version number")
    );
    assert_eq!(
        control.catalog_version.to_string(),
        field(&fields, "Catalog version number")
    );
    assert_eq!(
        control.data_checksum_version.to_string(),
        field(&fields, "Data page checksum version")
    );
    assert!(control.checksums_enabled(), "initdb -k enables checksums");
    assert_eq!(
        control.checkpoint,
        field(&fields, "Latest checkpoint location")
            .parse::<Lsn>()
            .unwrap()
    );
    assert_eq!(
        control.checkpoint_redo,
        field(&fields, "Latest checkpoint's REDO location")
            .parse::<Lsn>()
            .unwrap()
    );
    assert_eq!(
        control.checkpoint_timeline.to_string(),
        field(&fields, "Latest checkpoint's TimeLineID")
    );
    assert_eq!(
        control.block_size.to_string(),
        field(&fields, "Database block size")
    );
    assert_eq!(
        control.wal_segment_size.to_string(),
        field(&fields, "Bytes per WAL segment")
    );
    assert_eq!(control.state, 1, "shut down");
    assert_eq!(control.pg_major_version(), Some(15));

    let redo_segment = Segment::from_lsn(
        control.checkpoint_timeline,
        control.checkpoint_redo,
        u64::from(control.wal_segment_size),
    );
    assert_eq!(
        redo_segment.name(),
        field(&fields, "Latest checkpoint's REDO WAL file")
    );

    // A flipped bit is caught by the CRC.
    let mut corrupt = control_bytes.clone();
    corrupt[40] ^= 0x10;
    assert!(matches!(
        ControlFile::parse(&corrupt),
        Err(Error::ControlCrcMismatch { .. })
    ));

    // The WAL segment initdb wrote.
    let wal = std::fs::read(data.join("pg_wal").join(redo_segment.name())).expect("read WAL");
    assert_eq!(wal.len() as u64, DEFAULT_SEGMENT_SIZE);
    let header = validate_segment(&wal, control.system_identifier, 15).expect("valid segment");
    assert_eq!(header, LongPageHeader::parse(&wal).unwrap());
    assert_eq!(header.magic, 0xD110);
    assert_eq!(header.pg_major_version(), Some(15));
    assert_eq!(header.timeline, 1);
    assert_eq!(header.page_address, redo_segment.start_lsn());
    assert_eq!(u64::from(header.segment_size), DEFAULT_SEGMENT_SIZE);
    assert_eq!(header.block_size, 8192);

    // Partial (shorter) file: header checks only.
    assert!(validate_segment(&wal[..8192], control.system_identifier, 15).is_ok());
    // Wrong cluster, wrong version.
    let err = validate_segment(&wal, control.system_identifier ^ 1, 15).unwrap_err();
    assert_eq!(
        err,
        Error::SystemIdMismatch {
            expected: control.system_identifier ^ 1,
            found: control.system_identifier
        }
    );
    assert!(matches!(
        validate_segment(&wal, control.system_identifier, 16),
        Err(Error::WalVersionMismatch {
            expected: 16,
            found: 15,
            ..
        })
    ));
    // Truncated in the middle of a full segment is still only header-checked; over-long is not.
    let mut long = wal.clone();
    long.push(0);
    assert!(matches!(
        validate_segment(&long, control.system_identifier, 15),
        Err(Error::SegmentSizeMismatch { .. })
    ));
}
