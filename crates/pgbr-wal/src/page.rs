//! The long page header that starts every WAL segment.

use crate::bytes::Reader;
use crate::segment::is_valid_segment_size;
use crate::{Error, Lsn};

/// `XLP_LONG_HEADER`: the `xlp_info` flag marking a long page header.
const XLP_LONG_HEADER: u16 = 0x0002;
/// `XLP_ALL_FLAGS`: every flag bit defined in `xlp_info`.
const XLP_ALL_FLAGS: u16 = 0x0007;
/// `SizeOfXLogLongPHD`: `MAXALIGN(sizeof(XLogLongPageHeaderData))`.
const LONG_HEADER_SIZE: usize = 40;

/// `XLOG_PAGE_MAGIC` of each supported PostgreSQL major version
/// (`src/include/access/xlog_internal.h`), one entry per major of [`crate::PG_MAJORS`].
const MAGICS: [(u16, u32); 7] = [
    (0xD101, 12),
    (0xD106, 13),
    (0xD10D, 14),
    (0xD110, 15),
    (0xD113, 16),
    (0xD116, 17),
    (0xD118, 18),
];

/// The PostgreSQL major version whose WAL pages carry `magic` (`XLOG_PAGE_MAGIC`), if known.
pub fn pg_major_version_for_magic(magic: u16) -> Option<u32> {
    MAGICS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, version)| *version)
}

/// The long WAL page header (`XLogLongPageHeaderData`) at the start of every WAL segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LongPageHeader {
    /// `xlp_magic`: WAL format version; see [`pg_major_version_for_magic`].
    pub magic: u16,
    /// `xlp_info`: flag bits.
    pub info: u16,
    /// `xlp_tli`: timeline of the first record on the page.
    pub timeline: u32,
    /// `xlp_pageaddr`: WAL location of this page (the segment's start LSN).
    pub page_address: Lsn,
    /// `xlp_sysid`: the database system identifier, as in `pg_control`.
    pub system_identifier: u64,
    /// `xlp_seg_size`: WAL segment size in bytes.
    pub segment_size: u32,
    /// `xlp_xlog_blcksz`: WAL block (page) size in bytes.
    pub block_size: u32,
}

impl LongPageHeader {
    /// Decodes the long page header at the start of `bytes` (the first 40 bytes of a WAL
    /// segment). Fails if the input is shorter or the `XLP_LONG_HEADER` flag is not set. The
    /// values are not otherwise checked; see [`validate_segment`].
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let r = Reader::new(bytes, "WAL segment header");
        r.require(LONG_HEADER_SIZE)?;
        let info = r.u16(2)?;
        if info & XLP_LONG_HEADER == 0 {
            return Err(Error::NotLongHeader {
                info,
                flag: XLP_LONG_HEADER,
            });
        }
        Ok(LongPageHeader {
            magic: r.u16(0)?,
            info,
            timeline: r.u32(4)?,
            page_address: Lsn(r.u64(8)?),
            system_identifier: r.u64(24)?,
            segment_size: r.u32(32)?,
            block_size: r.u32(36)?,
        })
    }

    /// The PostgreSQL major version that wrote this WAL, from its page magic.
    pub fn pg_major_version(&self) -> Option<u32> {
        pg_major_version_for_magic(self.magic)
    }
}

fn invalid(field: &'static str, expected: impl Into<String>, found: impl ToString) -> Error {
    Error::InvalidField {
        what: "WAL segment header",
        field,
        expected: expected.into(),
        found: found.to_string(),
    }
}

/// Checks that `bytes`, the contents of a WAL file about to be archived (or restored), is a WAL
/// segment of the expected database system and PostgreSQL major version.
///
/// Checks, in order: the long page header is present; its magic is known and stands for
/// `expected_pg_major`; no unknown flag bits; the system identifier is `expected_system_id`;
/// segment and block sizes are sane; the page address is the start of a segment; and, when
/// `bytes` is at least one segment long, that its length is exactly the segment size. A shorter
/// input (a `.partial` file, or just the first page) gets the header checks only.
pub fn validate_segment(
    bytes: &[u8],
    expected_system_id: u64,
    expected_pg_major: u32,
) -> Result<LongPageHeader, Error> {
    let header = LongPageHeader::parse(bytes)?;
    let found = header.pg_major_version().ok_or(Error::UnknownWalMagic {
        magic: header.magic,
    })?;
    if found != expected_pg_major {
        return Err(Error::WalVersionMismatch {
            expected: expected_pg_major,
            found,
            magic: header.magic,
        });
    }
    if header.info & !XLP_ALL_FLAGS != 0 {
        return Err(invalid(
            "xlp_info",
            format!("only flag bits {XLP_ALL_FLAGS:#06X}"),
            format!("{:#06X}", header.info),
        ));
    }
    if header.system_identifier != expected_system_id {
        return Err(Error::SystemIdMismatch {
            expected: expected_system_id,
            found: header.system_identifier,
        });
    }
    let segment_size = u64::from(header.segment_size);
    if !is_valid_segment_size(segment_size) {
        return Err(invalid(
            "segment size",
            "a power of two between 1 MiB and 1 GiB",
            segment_size,
        ));
    }
    let block_size = header.block_size;
    if !block_size.is_power_of_two()
        || !(1024..=65536).contains(&block_size)
        || u64::from(block_size) > segment_size
    {
        return Err(invalid(
            "WAL block size",
            "a power of two between 1 kB and 64 kB",
            block_size,
        ));
    }
    if header.page_address.segment_offset(segment_size) != 0 {
        return Err(invalid(
            "page address",
            "the start of a WAL segment",
            header.page_address,
        ));
    }
    let len = bytes.len() as u64;
    if len > segment_size {
        return Err(Error::SegmentSizeMismatch {
            expected: segment_size,
            found: len,
        });
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSID: u64 = 7_345_678_901_234_567_890;

    /// A synthetic first page of a WAL segment.
    fn header_bytes(
        magic: u16,
        info: u16,
        page_address: u64,
        sysid: u64,
        seg_size: u32,
        blcksz: u32,
    ) -> Vec<u8> {
        let mut b = vec![0u8; 8192];
        b[0..2].copy_from_slice(&magic.to_le_bytes());
        b[2..4].copy_from_slice(&info.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..16].copy_from_slice(&page_address.to_le_bytes());
        b[24..32].copy_from_slice(&sysid.to_le_bytes());
        b[32..36].copy_from_slice(&seg_size.to_le_bytes());
        b[36..40].copy_from_slice(&blcksz.to_le_bytes());
        b
    }

    fn good() -> Vec<u8> {
        header_bytes(0xD110, 0x0002, 0x0300_0000, SYSID, 16 << 20, 8192)
    }

    #[test]
    fn magics() {
        // 11 is no longer supported.
        assert_eq!(pg_major_version_for_magic(0xD098), None);
        assert_eq!(pg_major_version_for_magic(0xD101), Some(12));
        assert_eq!(pg_major_version_for_magic(0xD106), Some(13));
        assert_eq!(pg_major_version_for_magic(0xD10D), Some(14));
        assert_eq!(pg_major_version_for_magic(0xD110), Some(15));
        assert_eq!(pg_major_version_for_magic(0xD113), Some(16));
        assert_eq!(pg_major_version_for_magic(0xD116), Some(17));
        assert_eq!(pg_major_version_for_magic(0xD118), Some(18));
        for major in crate::PG_MAJORS {
            assert!(MAGICS.iter().any(|(_, m)| *m == major), "{major}");
        }
        assert_eq!(MAGICS.len(), crate::PG_MAJORS.count());
        assert_eq!(pg_major_version_for_magic(0xD097), None);
        assert_eq!(pg_major_version_for_magic(0), None);
    }

    #[test]
    fn parse_fields() {
        let h = LongPageHeader::parse(&good()).unwrap();
        assert_eq!(
            h,
            LongPageHeader {
                magic: 0xD110,
                info: 2,
                timeline: 1,
                page_address: Lsn(0x0300_0000),
                system_identifier: SYSID,
                segment_size: 16 << 20,
                block_size: 8192,
            }
        );
        assert_eq!(h.pg_major_version(), Some(15));
    }

    #[test]
    fn parse_short_and_short_header() {
        for len in 0..40 {
            assert!(matches!(
                LongPageHeader::parse(&good()[..len]),
                Err(Error::TooShort { needed: 40, .. })
            ));
        }
        assert!(LongPageHeader::parse(&good()[..40]).is_ok());
        let short = header_bytes(0xD110, 0x0001, 0x0300_0000, SYSID, 16 << 20, 8192);
        assert_eq!(
            LongPageHeader::parse(&short).unwrap_err(),
            Error::NotLongHeader { info: 1, flag: 2 }
        );
    }

    #[test]
    fn validate_ok_partial_and_full() {
        // First page only, as in a .partial file or a streamed prefix.
        assert!(validate_segment(&good(), SYSID, 15).is_ok());
        assert!(validate_segment(&good()[..40], SYSID, 15).is_ok());
        let mut full = good();
        full.resize(16 << 20, 0);
        assert!(validate_segment(&full, SYSID, 15).is_ok());
        full.push(0);
        let err = validate_segment(&full, SYSID, 15).unwrap_err();
        assert_eq!(
            err,
            Error::SegmentSizeMismatch {
                expected: 16 << 20,
                found: (16 << 20) + 1
            }
        );
        assert!(err.to_string().contains("16777217"));
    }

    #[test]
    fn validate_errors_name_the_field() {
        let err = validate_segment(&good(), 7_012_345_678_901_234_567, 15).unwrap_err();
        assert_eq!(
            err.to_string(),
            "WAL segment belongs to database system 7345678901234567890; the stanza is for 7012345678901234567"
        );

        let err = validate_segment(&good(), SYSID, 16).unwrap_err();
        assert_eq!(
            err,
            Error::WalVersionMismatch {
                expected: 16,
                found: 15,
                magic: 0xD110
            }
        );
        assert!(err.to_string().contains("PostgreSQL 15"));
        assert!(err.to_string().contains("PostgreSQL 16"));

        let unknown = header_bytes(0xBEEF, 2, 0x0300_0000, SYSID, 16 << 20, 8192);
        assert_eq!(
            validate_segment(&unknown, SYSID, 15).unwrap_err(),
            Error::UnknownWalMagic { magic: 0xBEEF }
        );

        let flags = header_bytes(0xD110, 0x0102, 0x0300_0000, SYSID, 16 << 20, 8192);
        assert!(matches!(
            validate_segment(&flags, SYSID, 15),
            Err(Error::InvalidField {
                field: "xlp_info",
                ..
            })
        ));

        let seg = header_bytes(0xD110, 2, 0x0300_0000, SYSID, 3 << 20, 8192);
        let err = validate_segment(&seg, SYSID, 15).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidField {
                field: "segment size",
                ..
            }
        ));
        assert!(err.to_string().contains("3145728"), "{err}");

        let blk = header_bytes(0xD110, 2, 0x0300_0000, SYSID, 16 << 20, 1000);
        assert!(matches!(
            validate_segment(&blk, SYSID, 15),
            Err(Error::InvalidField {
                field: "WAL block size",
                ..
            })
        ));

        let addr = header_bytes(0xD110, 2, 0x0300_2000, SYSID, 16 << 20, 8192);
        let err = validate_segment(&addr, SYSID, 15).unwrap_err();
        assert!(err.to_string().contains("0/3002000"), "{err}");

        assert!(matches!(
            validate_segment(&[], SYSID, 15),
            Err(Error::TooShort { .. })
        ));
    }
}
