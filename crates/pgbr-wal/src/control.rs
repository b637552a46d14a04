//! `global/pg_control`.

use crate::bytes::Reader;
use crate::{Error, Lsn};

// Offsets into ControlFileData (src/include/catalog/pg_control.h) on 64-bit little-endian
// platforms, the same for pg_control versions 1201, 1300, 1700 and 1800 (checked against
// clusters made by initdb of PostgreSQL 12 to 18).
const OFF_SYSTEM_IDENTIFIER: usize = 0;
const OFF_PG_CONTROL_VERSION: usize = 8;
const OFF_CATALOG_VERSION: usize = 12;
const OFF_STATE: usize = 16;
// pg_time_t time at 24.
const OFF_CHECKPOINT: usize = 32;
// CheckPoint checkPointCopy starts at 40: redo (XLogRecPtr), then ThisTimeLineID.
const OFF_CHECKPOINT_REDO: usize = 40;
const OFF_CHECKPOINT_TIMELINE: usize = 48;
const OFF_BLCKSZ: usize = 216;
const OFF_XLOG_SEG_SIZE: usize = 228;
const OFF_DATA_CHECKSUM_VERSION: usize = 252;

/// `offsetof(ControlFileData, crc)` for each supported `pg_control_version`.
fn crc_offset(pg_control_version: u32) -> Option<usize> {
    match pg_control_version {
        // PostgreSQL 12 and 13-16 (13 changed no offset); 17 only added `wal_level` to
        // CheckPoint, in existing padding.
        1201 | 1300 | 1700 => Some(288),
        // PostgreSQL 18 added `bool default_char_signedness` before the 32-byte nonce.
        1800 => Some(292),
        _ => None,
    }
}

/// The fields of `global/pg_control` that a backup tool needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ControlFile {
    /// Database system identifier: unique per `initdb`.
    pub system_identifier: u64,
    /// Format of `pg_control` itself (`PG_CONTROL_VERSION`), e.g. 1300.
    pub pg_control_version: u32,
    /// Format of the system catalogs (`CATALOG_VERSION_NO`), e.g. 202209061.
    pub catalog_version: u32,
    /// Cluster state (`DBState`: 1 = shut down, 2 = shut down in recovery, 6 = in production, ...).
    pub state: u32,
    /// Location of the latest checkpoint record.
    pub checkpoint: Lsn,
    /// REDO location of the latest checkpoint.
    pub checkpoint_redo: Lsn,
    /// Timeline of the latest checkpoint.
    pub checkpoint_timeline: u32,
    /// Data block size (`BLCKSZ`).
    pub block_size: u32,
    /// WAL segment size in bytes.
    pub wal_segment_size: u32,
    /// Data page checksum version; 0 when checksums are disabled.
    pub data_checksum_version: u32,
}

impl ControlFile {
    /// Decodes `pg_control` (the whole 8 kB file, or at least its used part) and verifies its
    /// CRC-32C. Supports `pg_control_version` 1201 (PostgreSQL 12), 1300 (13 to 16), 1700 (17) and 1800
    /// (18), as written on little-endian 64-bit platforms.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let r = Reader::new(bytes, "pg_control");
        let pg_control_version = r.u32(OFF_PG_CONTROL_VERSION)?;
        let crc_at = crc_offset(pg_control_version).ok_or(Error::UnsupportedControlVersion {
            found: pg_control_version,
        })?;
        let stored = r.u32(crc_at)?;
        // `r.u32(crc_at)` succeeded, so `..crc_at` is in bounds.
        let computed = crc32c::crc32c(&bytes[..crc_at]);
        if stored != computed {
            return Err(Error::ControlCrcMismatch { stored, computed });
        }
        Ok(ControlFile {
            system_identifier: r.u64(OFF_SYSTEM_IDENTIFIER)?,
            pg_control_version,
            catalog_version: r.u32(OFF_CATALOG_VERSION)?,
            state: r.u32(OFF_STATE)?,
            checkpoint: Lsn(r.u64(OFF_CHECKPOINT)?),
            checkpoint_redo: Lsn(r.u64(OFF_CHECKPOINT_REDO)?),
            checkpoint_timeline: r.u32(OFF_CHECKPOINT_TIMELINE)?,
            block_size: r.u32(OFF_BLCKSZ)?,
            wal_segment_size: r.u32(OFF_XLOG_SEG_SIZE)?,
            data_checksum_version: r.u32(OFF_DATA_CHECKSUM_VERSION)?,
        })
    }

    /// The PostgreSQL major version, from `pg_control_version` and, where several releases share
    /// a `pg_control_version`, the released `catalog_version` of each (13: 202007201,
    /// 14: 202107181, 15: 202209061, 16: 202307071). Catalog versions of development builds
    /// may map to the preceding release.
    pub fn pg_major_version(&self) -> Option<u32> {
        match self.pg_control_version {
            1201 => Some(12),
            1300 => Some(match self.catalog_version {
                v if v >= 202307071 => 16,
                v if v >= 202209061 => 15,
                v if v >= 202107181 => 14,
                _ => 13,
            }),
            1700 => Some(17),
            1800 => Some(18),
            _ => None,
        }
    }

    /// Whether data page checksums are enabled.
    pub fn checksums_enabled(&self) -> bool {
        self.data_checksum_version != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic pg_control with a correct CRC.
    fn control_bytes(version: u32, catalog: u32, checksums: u32) -> Vec<u8> {
        let mut b = vec![0u8; 8192];
        let put32 =
            |b: &mut Vec<u8>, off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
        b[0..8].copy_from_slice(&7_012_345_678_901_234_567u64.to_le_bytes());
        put32(&mut b, 8, version);
        put32(&mut b, 12, catalog);
        put32(&mut b, 16, 6);
        b[32..40].copy_from_slice(&0x16_B374_D848u64.to_le_bytes());
        b[40..48].copy_from_slice(&0x16_B374_D810u64.to_le_bytes());
        put32(&mut b, 48, 3);
        put32(&mut b, 216, 8192);
        put32(&mut b, 228, 64 << 20);
        put32(&mut b, 252, checksums);
        let at = crc_offset(version).unwrap_or(288);
        let crc = crc32c::crc32c(&b[..at]);
        put32(&mut b, at, crc);
        b
    }

    #[test]
    fn parse_synthetic() {
        let c = ControlFile::parse(&control_bytes(1300, 202209061, 1)).unwrap();
        assert_eq!(
            c,
            ControlFile {
                system_identifier: 7_012_345_678_901_234_567,
                pg_control_version: 1300,
                catalog_version: 202209061,
                state: 6,
                checkpoint: Lsn(0x16_B374_D848),
                checkpoint_redo: Lsn(0x16_B374_D810),
                checkpoint_timeline: 3,
                block_size: 8192,
                wal_segment_size: 64 << 20,
                data_checksum_version: 1,
            }
        );
        assert_eq!(c.pg_major_version(), Some(15));
        assert!(c.checksums_enabled());

        let c = ControlFile::parse(&control_bytes(1700, 202406281, 0)).unwrap();
        assert_eq!(c.pg_major_version(), Some(17));
        assert!(!c.checksums_enabled());

        let c = ControlFile::parse(&control_bytes(1800, 202506291, 1)).unwrap();
        assert_eq!(c.pg_major_version(), Some(18));
        let c = ControlFile::parse(&control_bytes(1201, 201909212, 1)).unwrap();
        assert_eq!(c.pg_major_version(), Some(12));
        assert_eq!(c.wal_segment_size, 64 << 20);
    }

    #[test]
    fn major_versions_from_catalog() {
        let mut c = ControlFile::parse(&control_bytes(1300, 202007201, 0)).unwrap();
        for (catalog, major) in [
            (202007201, 13),
            (202107181, 14),
            (202209061, 15),
            (202307071, 16),
        ] {
            c.catalog_version = catalog;
            assert_eq!(c.pg_major_version(), Some(major), "{catalog}");
        }
        c.pg_control_version = 1201;
        assert_eq!(c.pg_major_version(), Some(12));
        c.pg_control_version = 942;
        assert_eq!(c.pg_major_version(), None);
    }

    #[test]
    fn crc_mismatch() {
        let mut b = control_bytes(1300, 202209061, 1);
        b[100] ^= 1;
        assert!(matches!(
            ControlFile::parse(&b),
            Err(Error::ControlCrcMismatch { .. })
        ));
        // Bytes after the CRC are not covered.
        let mut b = control_bytes(1300, 202209061, 1);
        b[400] ^= 1;
        assert!(ControlFile::parse(&b).is_ok());
    }

    #[test]
    fn unsupported_and_short() {
        // PostgreSQL 11's.
        let b = control_bytes(1100, 201809051, 1);
        let err = ControlFile::parse(&b).unwrap_err();
        assert_eq!(err, Error::UnsupportedControlVersion { found: 1100 });
        assert!(err.to_string().contains("1100"));
        let b = control_bytes(1300, 202209061, 1);
        for len in [0, 8, 11, 12, 100, 291] {
            assert!(
                matches!(ControlFile::parse(&b[..len]), Err(Error::TooShort { .. })),
                "{len}"
            );
        }
        assert!(ControlFile::parse(&b[..292]).is_ok());
    }
}
