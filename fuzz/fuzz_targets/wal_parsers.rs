//! Feeds arbitrary bytes to every pgbr-wal parser: WAL segment headers, `pg_control`, timeline
//! history files, `backup_label`, WAL file names and LSNs. None may panic.
//!
//! Two legs take the fuzzer past checks that random bytes never pass: the segment is validated
//! against the system id and version its own header states, and `pg_control` is parsed again
//! with its CRC-32C set right.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgbr_wal::{
    classify, validate_segment, BackupLabel, ControlFile, LongPageHeader, Lsn, Segment,
    TimelineHistory, DEFAULT_SEGMENT_SIZE,
};

/// `offsetof(ControlFileData, crc)` of each `pg_control_version` pgbr reads.
fn crc_offset(version: u32) -> Option<usize> {
    match version {
        1300 | 1700 => Some(288),
        1800 => Some(292),
        _ => None,
    }
}

fn check_binary(data: &[u8]) {
    if let Ok(header) = LongPageHeader::parse(data) {
        let major = header.pg_major_version().unwrap_or(15);
        if let Ok(valid) = validate_segment(data, header.system_identifier, major) {
            assert_eq!(valid, header);
        }
    }
    let _ = validate_segment(data, 0, 15);
    if let Ok(control) = ControlFile::parse(data) {
        let _ = (control.pg_major_version(), control.checksums_enabled());
    }
    // The same bytes with a correct CRC must parse whenever they hold a known version.
    let version = data
        .get(8..12)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if let Some(crc_at) = version.and_then(crc_offset) {
        if data.len() >= crc_at + 4 {
            let mut fixed = data.to_vec();
            let crc = crc32c::crc32c(&fixed[..crc_at]);
            fixed[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
            let control = ControlFile::parse(&fixed).expect("pg_control with a correct CRC");
            let _ = (control.pg_major_version(), control.checksums_enabled());
        }
    }
}

fn check_text(text: &str) {
    // As the history of the last possible timeline, and of timeline 3 (so that entries of
    // later timelines are refused).
    for tli in [u32::MAX, 3] {
        if let Ok(history) = TimelineHistory::parse(tli, text) {
            let _ = history.timeline_of(Lsn(u64::from(text.len() as u32) << 20));
            if let Some(first) = history.entries.first() {
                assert_eq!(
                    history.switch_point_of(first.parent_timeline),
                    Some(first.switch_point)
                );
            }
        }
    }
    let _ = BackupLabel::parse(text);
    if let Ok(lsn) = text.parse::<Lsn>() {
        assert_eq!(lsn.to_string().parse::<Lsn>().ok(), Some(lsn));
    }
    for size in [1 << 20, DEFAULT_SEGMENT_SIZE, 1 << 30] {
        if let Ok(segment) = Segment::parse(text, size) {
            assert_eq!(segment.name(), text.to_ascii_uppercase());
            let _ = (segment.next(), segment.prev(), segment.timeline_log_dir());
        }
    }
    let _ = classify(text);
}

fuzz_target!(|data: &[u8]| {
    check_binary(data);
    if let Ok(text) = std::str::from_utf8(data) {
        check_text(text);
    }
});
