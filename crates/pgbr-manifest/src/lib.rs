//! What a pgbr backup holds, and how to tell what changed.
//!
//! This crate holds pgbr's repository metadata formats and the algorithms
//! that work on them. It is pure data and algorithms: it never touches files,
//! the network or the terminal.
//!
//! - [`Manifest`]: one per backup. Backup metadata ([`BackupMeta`]), the
//!   directory trees backed up ([`Target`]), and every path, link and file,
//!   with the file's checksum and where its bytes live ([`FileEntry`]).
//! - [`BackupInfo`] and [`ArchiveInfo`]: the stanza-level `backup.info` and
//!   `archive.info` files.
//! - Backup labels like pgBackRest's: [`new_label`], [`parse_label`].
//! - PostgreSQL's data page checksum: [`page_checksum`], [`check_page`].
//! - Block maps for page-level delta: [`block_hash`], [`changed_blocks`].
//!
//! Every file format is JSON in a versioned envelope with a BLAKE3
//! self-checksum ([`MANIFEST_FORMAT`], [`INFO_FORMAT`]); writing is
//! deterministic, and loading verifies the version, the checksum and the
//! safety of every name (no absolute names, no `..`, no duplicates, nothing
//! below a symlink) before returning anything. The formats are described in
//! the project's `docs/format.md`.
//!
//! # Example
//!
//! ```
//! use pgbr_manifest::{BackupMeta, BackupType, FileEntry, Manifest, PathEntry, Target, new_label};
//!
//! # fn main() -> Result<(), pgbr_manifest::Error> {
//! let label = new_label(BackupType::Full, None, 1_795_641_390);
//! let content = b"15\n";
//! let manifest = Manifest {
//!     backup: BackupMeta {
//!         label: label.clone(),
//!         backup_type: BackupType::Full,
//!         pg_version: 15,
//!         db_id: 1,
//!         ..BackupMeta::default()
//!     },
//!     targets: vec![Target {
//!         name: "pg_data".into(),
//!         path: "/var/lib/postgresql/15/main".into(),
//!         tablespace_oid: None,
//!         tablespace_name: None,
//!     }],
//!     paths: vec![PathEntry { target: "pg_data".into(), name: "".into(), mode: 0o700 }],
//!     links: vec![],
//!     files: vec![FileEntry {
//!         target: "pg_data".into(),
//!         name: "PG_VERSION".into(),
//!         size: content.len() as u64,
//!         mtime: 1_795_641_000,
//!         mode: 0o600,
//!         checksum: pgbr_manifest::Checksum::of(content),
//!         reference: None,
//!         stored_size: 12,
//!         bundle: None,
//!         block_map: None,
//!         page_errors: vec![],
//!     }],
//! };
//! manifest.validate()?;
//!
//! let bytes = manifest.to_bytes()?;
//! let loaded = Manifest::from_bytes(&bytes)?;
//! assert_eq!(loaded, manifest);
//! assert_eq!(loaded.file("pg_data", "PG_VERSION").map(|f| f.size), Some(3));
//!
//! // A name escaping its target is refused on load.
//! let mut evil = manifest.clone();
//! evil.files[0].name = "../../etc/passwd".into();
//! assert!(Manifest::from_bytes(&evil.to_bytes()?).is_err());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod blockmap;
mod chain;
mod checksum;
mod codec;
mod envelope;
mod error;
mod hexbytes;
mod info;
mod label;
mod manifest;
mod page;
pub mod pgbackrest;
mod streamed;
mod validate;

pub use blockmap::{block_hash, changed_blocks, BlockHash, ParseBlockHashError};
pub use chain::{
    block_chain_value, blocks_checksum, file_checksum_from_chain, ChainValue, ParseChainValueError,
};
pub use checksum::{Checksum, ParseChecksumError};
pub use codec::{Cipher, Compression};
/// The string type of [`FileEntry`]'s names, re-exported so that callers need not depend on it.
pub use compact_str::CompactString;
pub use error::Error;
pub use info::{ArchiveInfo, BackupInfo, BackupSummary, CipherInfo, DbHistory, INFO_FORMAT};
pub use label::{new_label, parse_label, BackupType};
pub use manifest::{
    BackupMeta, BlockBase, BlockMapRef, BlockRef, BundleRef, FileEntry, FileIndex, LinkEntry,
    Manifest, PathEntry, Target, MANIFEST_FORMAT,
};
pub use page::{check_page, page_checksum, page_lsn, PageCheck, PAGE_SIZE};
pub use validate::validate_relative_name;
