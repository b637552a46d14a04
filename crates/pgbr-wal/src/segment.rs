//! WAL segments and WAL file names.

use std::fmt;

use crate::{Error, Lsn};

/// PostgreSQL's default WAL segment size (16 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// PostgreSQL's default block size (`BLCKSZ`), also the default WAL block size (`XLOG_BLCKSZ`).
pub const BLOCK_SIZE: usize = 8192;

const MIN_SEGMENT_SIZE: u64 = 1024 * 1024;
const MAX_SEGMENT_SIZE: u64 = 1024 * 1024 * 1024;

/// Whether `size` is a WAL segment size PostgreSQL allows: a power of two from 1 MiB to 1 GiB.
pub fn is_valid_segment_size(size: u64) -> bool {
    size.is_power_of_two() && (MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&size)
}

/// How many segments make up one 4 GiB "xlogid" (PostgreSQL's `XLogSegmentsPerXLogId`).
///
/// Never zero, so that callers can divide by it even for nonsensical sizes.
fn segments_per_log_id(size: u64) -> u64 {
    (0x1_0000_0000u64.checked_div(size).unwrap_or(1)).max(1)
}

fn is_upper_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

/// One WAL segment file: a timeline and an absolute segment number (PostgreSQL's `XLogSegNo`)
/// for a given segment size.
///
/// The segment size must satisfy [`is_valid_segment_size`]; [`Segment::parse`] checks this, and
/// the other methods give meaningless (but never panicking) results for other sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment {
    /// Timeline id.
    pub timeline: u32,
    /// Absolute segment number: the segment's start LSN divided by the segment size.
    pub number: u64,
    /// WAL segment size in bytes.
    pub size: u64,
}

impl Segment {
    /// The segment on `timeline` that holds `lsn`.
    pub fn from_lsn(timeline: u32, lsn: Lsn, size: u64) -> Segment {
        Segment {
            timeline,
            number: lsn.segment_number(size),
            size,
        }
    }

    /// Parses a 24-hex-digit segment name, `TTTTTTTTLLLLLLLLSSSSSSSS` (timeline, xlogid, segment
    /// within the xlogid). Either case of hex digit is accepted.
    pub fn parse(name: &str, size: u64) -> Result<Segment, Error> {
        if !is_valid_segment_size(size) {
            return Err(Error::InvalidSegmentSize { size });
        }
        let invalid = |reason: String| Error::InvalidSegmentName {
            name: name.to_string(),
            reason,
        };
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("expected exactly 24 hexadecimal digits".into()));
        }
        // All bytes are ASCII hex digits, so slicing at any index is on a char boundary.
        let field = |range: std::ops::Range<usize>| {
            u32::from_str_radix(&name[range], 16).map_err(|e| invalid(e.to_string()))
        };
        let timeline = field(0..8)?;
        let log_id = field(8..16)?;
        let seg = field(16..24)?;
        let per_id = segments_per_log_id(size);
        if u64::from(seg) >= per_id {
            return Err(invalid(format!(
                "segment part {seg:#X} is out of range: with {size}-byte segments there are only {per_id} segments per xlogid"
            )));
        }
        Ok(Segment {
            timeline,
            number: u64::from(log_id) * per_id + u64::from(seg),
            size,
        })
    }

    /// The 24-character upper-case hex file name of this segment.
    pub fn name(&self) -> String {
        let per_id = segments_per_log_id(self.size);
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.log_id(),
            self.number % per_id
        )
    }

    /// The following segment on the same timeline.
    pub fn next(&self) -> Segment {
        Segment {
            number: self.number.saturating_add(1),
            ..*self
        }
    }

    /// The preceding segment on the same timeline, or `None` for segment 0.
    pub fn prev(&self) -> Option<Segment> {
        Some(Segment {
            number: self.number.checked_sub(1)?,
            ..*self
        })
    }

    /// The LSN of the first byte of this segment.
    pub fn start_lsn(&self) -> Lsn {
        Lsn(self.number.saturating_mul(self.size))
    }

    /// The LSN just past the last byte of this segment (the start of the next one).
    pub fn end_lsn(&self) -> Lsn {
        self.next().start_lsn()
    }

    /// Whether `lsn` falls inside this segment (timeline is not considered).
    pub fn contains(&self, lsn: Lsn) -> bool {
        lsn.segment_number(self.size) == self.number
    }

    /// The "xlogid" part of the name (the middle 8 hex digits): which 4 GiB of WAL this is in.
    pub fn log_id(&self) -> u32 {
        // Truncation only happens for segment numbers no real cluster reaches.
        (self.number / segments_per_log_id(self.size)) as u32
    }

    /// `TTTTTTTTLLLLLLLL`: the first 16 hex digits of the name, used as the repository
    /// directory that groups segments.
    pub fn timeline_log_dir(&self) -> String {
        format!("{:08X}{:08X}", self.timeline, self.log_id())
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The kinds of file found in `pg_wal` and in a WAL archive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WalFileName {
    /// A WAL segment, `000000010000000000000003` (the 24 hex digits).
    Segment(String),
    /// A partial segment left at promotion, `000000010000000000000003.partial` (holds the 24 hex
    /// digits of the segment name).
    Partial(String),
    /// A backup history file, `000000010000000000000003.00000028.backup`.
    Backup {
        /// The 24 hex digits of the segment the backup started in.
        segment: String,
        /// The 8 hex digits of the start offset inside that segment.
        offset: String,
    },
    /// A timeline history file, `00000002.history` (holds the timeline id).
    History(u32),
}

/// Tells what kind of WAL-archive file `file_name` is, from its name alone (upper-case hex, as
/// PostgreSQL writes it). Anything else gives `None`.
pub fn classify(file_name: &str) -> Option<WalFileName> {
    let is_segment_name = |s: &str| s.len() == 24 && is_upper_hex(s);
    if is_segment_name(file_name) {
        return Some(WalFileName::Segment(file_name.to_string()));
    }
    if let Some(seg) = file_name.strip_suffix(".partial") {
        return is_segment_name(seg).then(|| WalFileName::Partial(seg.to_string()));
    }
    if let Some(rest) = file_name.strip_suffix(".backup") {
        let (segment, offset) = rest.split_once('.')?;
        return (is_segment_name(segment) && offset.len() == 8 && is_upper_hex(offset)).then(
            || WalFileName::Backup {
                segment: segment.to_string(),
                offset: offset.to_string(),
            },
        );
    }
    if let Some(tli) = file_name.strip_suffix(".history") {
        if tli.len() == 8 && is_upper_hex(tli) {
            return u32::from_str_radix(tli, 16).ok().map(WalFileName::History);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn segment_sizes() {
        assert!(is_valid_segment_size(DEFAULT_SEGMENT_SIZE));
        assert!(is_valid_segment_size(MIB));
        assert!(is_valid_segment_size(1024 * MIB));
        assert!(!is_valid_segment_size(0));
        assert!(!is_valid_segment_size(MIB / 2));
        assert!(!is_valid_segment_size(2048 * MIB));
        assert!(!is_valid_segment_size(3 * MIB));
    }

    #[test]
    fn names_default_size() {
        let s = Segment::parse("000000010000000000000003", DEFAULT_SEGMENT_SIZE).unwrap();
        assert_eq!(
            s,
            Segment {
                timeline: 1,
                number: 3,
                size: DEFAULT_SEGMENT_SIZE
            }
        );
        assert_eq!(s.start_lsn(), "0/3000000".parse().unwrap());
        assert_eq!(s.end_lsn(), "0/4000000".parse().unwrap());

        // The example from the PostgreSQL documentation of pg_walfile_name.
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        let s = Segment::from_lsn(1, lsn, DEFAULT_SEGMENT_SIZE);
        assert_eq!(s.name(), "0000000100000016000000B3");
        assert_eq!(s.to_string(), "0000000100000016000000B3");
        assert_eq!(s.log_id(), 0x16);
        assert_eq!(s.timeline_log_dir(), "0000000100000016");
        assert!(s.contains(lsn));
        assert!(!s.next().contains(lsn));

        // Crossing an xlogid boundary.
        let last = Segment::parse("0000000A00000016000000FF", DEFAULT_SEGMENT_SIZE).unwrap();
        assert_eq!(last.next().name(), "0000000A0000001700000000");
        assert_eq!(last.next().prev().unwrap(), last);
        assert_eq!(
            Segment::parse("000000010000000000000000", DEFAULT_SEGMENT_SIZE)
                .unwrap()
                .prev(),
            None
        );
        // Lower case is accepted.
        assert_eq!(
            Segment::parse("0000000a00000016000000ff", DEFAULT_SEGMENT_SIZE).unwrap(),
            last
        );
    }

    #[test]
    fn names_other_sizes() {
        // 1 GiB segments: 4 per xlogid.
        let s = Segment::from_lsn(2, Lsn(0x5_C000_0000), 1024 * MIB);
        assert_eq!(s.name(), "000000020000000500000003");
        assert!(Segment::parse("000000020000000500000004", 1024 * MIB).is_err());
        // 1 MiB segments: 4096 per xlogid.
        let s = Segment::parse("000000010000000100000FFF", MIB).unwrap();
        assert_eq!(s.number, 4096 + 4095);
        assert_eq!(s.next().name(), "000000010000000200000000");
        assert!(Segment::parse("000000010000000100001000", MIB).is_err());
    }

    #[test]
    fn parse_errors() {
        let size = DEFAULT_SEGMENT_SIZE;
        for bad in [
            "",
            "00000001000000000000000",
            "0000000100000000000000030",
            "00000001000000000000000G",
            "000000010000000000000100",
            "+00000010000000000000003",
            "0000000100000000000000é",
        ] {
            let err = Segment::parse(bad, size).unwrap_err();
            assert!(matches!(err, Error::InvalidSegmentName { .. }), "{bad:?}");
        }
        let err = Segment::parse("000000010000000000000003", 3 * MIB).unwrap_err();
        assert_eq!(err, Error::InvalidSegmentSize { size: 3 * MIB });
        let msg = Segment::parse("000000010000000000000100", size)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("000000010000000000000100"), "{msg}");
        assert!(msg.contains("256 segments per xlogid"), "{msg}");
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        for size in [0, 1, 3, u64::MAX] {
            let s = Segment::from_lsn(1, Lsn(u64::MAX), size);
            let _ = (s.name(), s.next(), s.prev(), s.start_lsn(), s.log_id());
        }
    }

    #[test]
    fn classify_names() {
        assert_eq!(
            classify("000000010000000000000003"),
            Some(WalFileName::Segment("000000010000000000000003".into()))
        );
        assert_eq!(
            classify("000000010000000000000003.partial"),
            Some(WalFileName::Partial("000000010000000000000003".into()))
        );
        assert_eq!(
            classify("000000010000000000000003.00000028.backup"),
            Some(WalFileName::Backup {
                segment: "000000010000000000000003".into(),
                offset: "00000028".into()
            })
        );
        assert_eq!(classify("00000002.history"), Some(WalFileName::History(2)));
        assert_eq!(classify("0000000A.history"), Some(WalFileName::History(10)));
        for other in [
            "",
            "00000001000000000000000",
            "000000010000000000000003.ready",
            "000000010000000000000003.done",
            "000000010000000000000003.partial.gz",
            "000000010000000000000003.0000028.backup",
            "000000010000000000000003.backup",
            "00000002.History",
            "0000002.history",
            "0000000a.history",
            "00000001000000000000000a",
            ".history",
            "archive_status",
            "000000010000000000000003.00000028.backup.zst",
        ] {
            assert_eq!(classify(other), None, "{other:?}");
        }
    }

    fn size_strategy() -> impl Strategy<Value = u64> {
        (20u32..=30).prop_map(|k| 1u64 << k)
    }

    /// Segments whose xlogid fits in 32 bits, i.e. whose names are 24 characters.
    fn segment_strategy() -> impl Strategy<Value = Segment> {
        (any::<u32>(), size_strategy())
            .prop_flat_map(|(timeline, size)| {
                let max = (1u64 << 32) * segments_per_log_id(size);
                (Just(timeline), 0..max, Just(size))
            })
            .prop_map(|(timeline, number, size)| Segment {
                timeline,
                number,
                size,
            })
    }

    proptest! {
        #[test]
        fn name_parse_round_trip(s in segment_strategy()) {
            let name = s.name();
            prop_assert_eq!(name.len(), 24);
            prop_assert_eq!(&name[..16], s.timeline_log_dir());
            prop_assert_eq!(Segment::parse(&name, s.size).unwrap(), s);
            prop_assert_eq!(classify(&name), Some(WalFileName::Segment(name.clone())));
        }

        #[test]
        fn from_lsn_start_lsn(timeline in any::<u32>(), lsn in any::<u64>(), size in size_strategy()) {
            let s = Segment::from_lsn(timeline, Lsn(lsn), size);
            prop_assert!(s.start_lsn().0 <= lsn);
            prop_assert!(lsn - s.start_lsn().0 < size);
            prop_assert!(s.contains(Lsn(lsn)));
            prop_assert_eq!(Segment::from_lsn(timeline, s.start_lsn(), size), s);
        }

        #[test]
        fn next_prev(s in segment_strategy()) {
            if s.number < u64::MAX {
                prop_assert_eq!(s.next().prev(), Some(s));
                prop_assert!(s.next() > s);
                prop_assert_eq!(s.next().start_lsn().0, s.start_lsn().0 + s.size);
            }
            match s.prev() {
                Some(p) => prop_assert_eq!(p.next(), s),
                None => prop_assert_eq!(s.number, 0),
            }
        }

        #[test]
        fn parse_and_classify_never_panic(name in "[0-9A-Fa-fx.]{0,40}") {
            let _ = Segment::parse(&name, DEFAULT_SEGMENT_SIZE);
            let _ = classify(&name);
        }
    }
}
