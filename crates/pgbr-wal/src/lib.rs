//! PostgreSQL's write-ahead log (WAL) and control-file formats, for pgbr.
//!
//! This crate knows how PostgreSQL names, numbers and stamps its WAL, and how to read the small
//! files that describe a cluster. It is pure parsing: every function takes bytes or text that the
//! caller has already read, does no I/O, and never panics on bad input (it returns [`Error`],
//! whose messages name the field, the expected value and the value found).
//!
//! - [`Lsn`]: WAL locations, displayed and parsed as PostgreSQL does (`16/B374D848`).
//! - [`Segment`]: WAL segment names for any valid `wal_segment_size`, next/previous segment,
//!   LSN ↔ segment; [`classify`] tells segments, `.partial`, `.backup` and `.history` files apart.
//! - [`LongPageHeader`] and [`validate_segment`]: the header at the start of each segment, its
//!   page magic → PostgreSQL major version, and the checks to run before archiving a segment.
//! - [`ControlFile`]: `global/pg_control`, CRC-32C checked.
//! - [`TimelineHistory`]: `NNNNNNNN.history` files, and which timeline an LSN belongs to.
//! - [`BackupLabel`]: the `backup_label` returned by `pg_backup_stop()`.
//!
//! # Example
//!
//! ```
//! use pgbr_wal::{classify, Lsn, Segment, TimelineHistory, WalFileName, DEFAULT_SEGMENT_SIZE};
//!
//! // The segment that holds an LSN, and back.
//! let lsn: Lsn = "16/B374D848".parse()?;
//! let segment = Segment::from_lsn(1, lsn, DEFAULT_SEGMENT_SIZE);
//! assert_eq!(segment.name(), "0000000100000016000000B3");
//! assert_eq!(segment.timeline_log_dir(), "0000000100000016");
//! assert_eq!(segment.start_lsn().to_string(), "16/B3000000");
//! assert_eq!(Segment::parse("0000000100000016000000B3", DEFAULT_SEGMENT_SIZE)?, segment);
//! assert_eq!(segment.next().name(), "0000000100000016000000B4");
//!
//! // What kind of file is in the archive?
//! assert_eq!(classify("00000002.history"), Some(WalFileName::History(2)));
//! assert_eq!(classify("postmaster.pid"), None);
//!
//! // Which timeline does a location belong to, following timeline 2's history?
//! let history = TimelineHistory::parse(2, "1\t0/3000000\tno recovery target specified\n")?;
//! assert_eq!(history.timeline_of("0/2FFFFFF".parse()?), 1);
//! assert_eq!(history.timeline_of("0/3000000".parse()?), 2);
//! # Ok::<(), pgbr_wal::Error>(())
//! ```
#![deny(missing_docs)]

mod bytes;
mod control;
mod error;
mod history;
mod label;
mod lsn;
mod page;
mod segment;

/// The PostgreSQL major versions whose WAL and `pg_control` this crate reads, and pgbr supports:
/// the one place that says which they are.
pub const PG_MAJORS: std::ops::RangeInclusive<u32> = 12..=18;

pub use control::ControlFile;
pub use error::Error;
pub use history::{HistoryEntry, TimelineHistory};
pub use label::BackupLabel;
pub use lsn::Lsn;
pub use page::{pg_major_version_for_magic, validate_segment, LongPageHeader};
pub use segment::{
    classify, is_valid_segment_size, Segment, WalFileName, BLOCK_SIZE, DEFAULT_SEGMENT_SIZE,
};
