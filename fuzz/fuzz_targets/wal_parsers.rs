//! Feeds arbitrary bytes to every pgbr-wal parser: none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgbr_wal::{
    classify, validate_segment, BackupLabel, ControlFile, LongPageHeader, Lsn, Segment,
    TimelineHistory, DEFAULT_SEGMENT_SIZE,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = LongPageHeader::parse(data) {
        let _ = header.pg_major_version();
    }
    let _ = validate_segment(data, 0, 15);
    if let Ok(control) = ControlFile::parse(data) {
        let _ = (control.pg_major_version(), control.checksums_enabled());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(history) = TimelineHistory::parse(u32::MAX, text) {
            let _ = history.timeline_of(Lsn(u64::from(data.len() as u32) << 20));
        }
        let _ = BackupLabel::parse(text);
        let _ = text.parse::<Lsn>();
        for size in [1 << 20, DEFAULT_SEGMENT_SIZE, 1 << 30] {
            if let Ok(segment) = Segment::parse(text, size) {
                assert_eq!(segment.name(), text.to_ascii_uppercase());
            }
        }
        let _ = classify(text);
    }
});
