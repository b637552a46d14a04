//! pgBackRest 2.x's repository formats, read: the INI syntax of its info files and manifests
//! ([`Ini`], with its SHA-1 self-checksum), `backup.info` and `archive.info`
//! ([`BackrestBackupInfo`], [`BackrestArchiveInfo`]) and `backup.manifest`
//! ([`BackrestManifest`]), each turned into the pgbr types the engine's commands work on.
//!
//! ```
//! use pgbr_manifest::pgbackrest::{BackrestArchiveInfo, Ini};
//!
//! let body = "[backrest]\nbackrest-format=5\n\n[db:history]\n1={\"db-id\":77,\"db-version\":\"15\"}\n";
//! let text = Ini::parse(body.as_bytes(), "archive.info").unwrap().render();
//! let read = BackrestArchiveInfo::parse(text.as_bytes(), "main").unwrap();
//! assert_eq!(read.info.db_history[0].system_id, 77);
//! ```

mod info;
mod ini;
mod manifest;

pub use info::{is_backrest_text, BackrestArchiveInfo, BackrestBackupInfo};
pub use ini::{Ini, Section, BACKREST_FORMAT};
pub use manifest::{BackrestCompress, BackrestFile, BackrestManifest};
