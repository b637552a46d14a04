//! The backup manifest: everything one backup holds and where its bytes live.

use std::collections::HashMap;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::envelope;
use crate::{BackupType, Checksum, Cipher, Compression, Error};

/// Version of the manifest format this build reads and writes.
pub const MANIFEST_FORMAT: u32 = 2;

/// The manifest of one backup. It is written last: a backup exists once its
/// manifest is in the repository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Metadata of the backup as a whole.
    pub backup: BackupMeta,
    /// The directory trees backed up: `pg_data` and one per tablespace.
    pub targets: Vec<Target>,
    /// Directories, relative to their target.
    pub paths: Vec<PathEntry>,
    /// Symbolic links, relative to their target.
    pub links: Vec<LinkEntry>,
    /// Regular files, relative to their target.
    pub files: Vec<FileEntry>,
}

/// Metadata of a backup as a whole.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct BackupMeta {
    /// The backup label, e.g. `20261125-211630F` (see [`crate::new_label`]).
    pub label: String,
    /// Full, diff or incr; must agree with the label's last letter.
    pub backup_type: BackupType,
    /// Label of the backup this one is based on (`None` for a full backup,
    /// required for diff and incr).
    pub prior: Option<String>,
    /// Labels of earlier backups whose files or blocks this backup references.
    pub references: Vec<String>,
    /// Start time, unix seconds.
    pub timestamp_start: i64,
    /// Stop time, unix seconds.
    pub timestamp_stop: i64,
    /// Backup start LSN, e.g. `0/2000028`.
    pub lsn_start: String,
    /// Backup stop LSN.
    pub lsn_stop: String,
    /// WAL segment holding the start LSN.
    pub wal_start: String,
    /// WAL segment holding the stop LSN.
    pub wal_stop: String,
    /// Timeline the backup was taken on.
    pub timeline: u32,
    /// PostgreSQL major version, e.g. 15.
    pub pg_version: u32,
    /// The cluster's system identifier.
    pub system_id: u64,
    /// The stanza's database id (see [`crate::DbHistory`]).
    pub db_id: u32,
    /// Whether the cluster has data page checksums enabled.
    pub checksums_enabled: bool,
    /// Compression used for stored files (stored as `zst`, `gz`, `lz4`, `none`).
    pub compress_type: Compression,
    /// Compression level used.
    pub compress_level: i32,
    /// Cipher used for stored files (stored as `none`, `aes-256-gcm`, `aes-256-cbc`).
    pub cipher_type: Cipher,
    /// Whether the WAL needed for consistency was copied into the backup.
    pub archive_copy: bool,
    /// Contents of `backup_label` as returned by `pg_backup_stop`.
    pub backup_label: String,
    /// Contents of `tablespace_map` as returned by `pg_backup_stop`, if any.
    pub tablespace_map: Option<String>,
    /// Total size of the files backed up.
    pub size_original: u64,
    /// Total size of what this backup stored in the repository.
    pub size_stored: u64,
    /// Version of pgbr that wrote the backup.
    pub pgbr_version: String,
    /// The cluster's WAL segment size in bytes (PostgreSQL's `wal_segment_size`).
    pub wal_segment_size: u64,
}

/// A directory tree backed up: `pg_data` or a tablespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `pg_data` or `pg_tblspc/<oid>`.
    pub name: String,
    /// Absolute path on the database host at backup time.
    pub path: String,
    /// Tablespace oid (tablespace targets only; must agree with the name).
    pub tablespace_oid: Option<u32>,
    /// Tablespace name (tablespace targets only).
    pub tablespace_name: Option<String>,
}

/// A directory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PathEntry {
    /// Name of the target it belongs to.
    pub target: String,
    /// Name relative to the target root; `""` is the root itself.
    pub name: String,
    /// Permission bits, e.g. `0o700`.
    pub mode: u32,
}

/// A symbolic link.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinkEntry {
    /// Name of the target it belongs to.
    pub target: String,
    /// Name relative to the target root.
    pub name: String,
    /// The link's destination, as read with `readlink`.
    pub destination: String,
}

/// A regular file.
///
/// The target, name and reference are [`CompactString`]s: a manifest holds one entry per file of
/// the cluster, and names up to 24 bytes (nearly all of PostgreSQL's) then need no allocation of
/// their own, which would otherwise be a third of a big manifest's memory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Name of the target it belongs to.
    pub target: CompactString,
    /// Name relative to the target root.
    pub name: CompactString,
    /// Size of the plaintext in bytes.
    pub size: u64,
    /// Modification time, unix seconds.
    pub mtime: i64,
    /// Permission bits, e.g. `0o600`.
    pub mode: u32,
    /// BLAKE3 of the plaintext (64 lowercase hex digits in the manifest).
    pub checksum: crate::Checksum,
    /// Label of the backup that holds the bytes; `None` means this backup.
    pub reference: Option<CompactString>,
    /// Size of the stored (compressed, encrypted) bytes.
    pub stored_size: u64,
    /// Where the bytes are if the file is packed in a bundle.
    pub bundle: Option<BundleRef>,
    /// The file's blocks, if it was stored as independently compressed blocks.
    pub block_map: Option<BlockMapRef>,
    /// Block numbers whose page checksum failed during the backup.
    pub page_errors: Vec<u32>,
}

/// Location of a file inside a bundle object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BundleRef {
    /// Bundle number within the backup.
    pub id: u64,
    /// Offset of the file's stored bytes in the bundle.
    pub offset: u64,
    /// Length of the file's stored bytes.
    pub length: u64,
}

/// A file stored as independently compressed blocks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlockMapRef {
    /// Plaintext size of every block but the last.
    pub block_size: u32,
    /// One entry per block, in file order: `ceil(size / block_size)` of them.
    pub blocks: Vec<BlockRef>,
}

/// One block of a block-mapped file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlockRef {
    /// 128-bit BLAKE3 prefix of the block plaintext ([`crate::block_hash`]).
    pub hash: crate::BlockHash,
    /// Label of the backup holding the block; `None` means this backup.
    pub reference: Option<CompactString>,
    /// Where the block's stored bytes start in that backup's object for this file.
    pub offset: u64,
    /// Length of the block's stored bytes.
    pub length: u64,
    /// Set when the stored bytes are a delta: a zstd frame that refers to the plaintext of
    /// another stored block, an earlier version of this one (see
    /// `pgbr_storage::DeltaCoder`); restoring the block needs both.
    pub base: Option<BlockBase>,
    /// The block's BLAKE3 chaining value ([`crate::block_chain_value`]), kept by backups of a
    /// cluster that summarizes its WAL: a later backup that knows from the summaries that the
    /// block did not change computes the file's checksum without reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<crate::ChainValue>,
}

/// Where the base of a delta-coded block is stored: a whole (not delta-coded) block of an
/// earlier backup of the same file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlockBase {
    /// Label of the backup holding the base.
    pub reference: CompactString,
    /// Where the base's stored bytes start in that backup's object for this file.
    pub offset: u64,
    /// Length of the base's stored bytes.
    pub length: u64,
}

/// An entry named by `(target, name)`.
pub(crate) trait Keyed {
    fn key(&self) -> (&str, &str);
}

impl Keyed for PathEntry {
    fn key(&self) -> (&str, &str) {
        (&self.target, &self.name)
    }
}

impl Keyed for LinkEntry {
    fn key(&self) -> (&str, &str) {
        (&self.target, &self.name)
    }
}

impl FileEntry {
    /// The bytes in the repository a restore of this file reads: its blocks' stored lengths
    /// (earlier backups' included) when it is block-mapped, else its stored size.
    pub fn repo_size(&self) -> u64 {
        match &self.block_map {
            Some(map) => map
                .blocks
                .iter()
                .fold(0, |sum, b| sum.saturating_add(b.length)),
            None => self.stored_size,
        }
    }
}

impl Keyed for FileEntry {
    fn key(&self) -> (&str, &str) {
        (&self.target, &self.name)
    }
}

pub(crate) fn is_sorted<T: Keyed>(items: &[T]) -> bool {
    items.windows(2).all(|w| w[0].key() <= w[1].key())
}

/// Finds the files of one manifest by target and name, each lookup in logarithmic or constant
/// time, a name that is not there too (where [`Manifest::position`] scans every file): a binary
/// search when the files are sorted, as every loaded manifest's are, else a map built once by
/// [`Manifest::file_index`]. It borrows nothing, so entries may change in place between lookups,
/// but it is only right while no file is added, removed, renamed or moved.
#[derive(Debug, Clone)]
pub struct FileIndex {
    /// Target → name → place, for files not in sorted order.
    unsorted: Option<HashMap<CompactString, HashMap<CompactString, usize>>>,
}

impl FileIndex {
    /// Where the file `target`/`name` is in `manifest.files` (the manifest this index was made
    /// of).
    pub fn position(&self, manifest: &Manifest, target: &str, name: &str) -> Option<usize> {
        match &self.unsorted {
            None => manifest
                .files
                .binary_search_by(|f| (f.target.as_str(), f.name.as_str()).cmp(&(target, name)))
                .ok(),
            Some(by_target) => by_target.get(target)?.get(name).copied(),
        }
    }
}

/// A list written in sorted order: the list itself when already sorted, else
/// references to its items, sorted.
enum SortedList<'a, T> {
    InPlace(&'a [T]),
    Refs(Vec<&'a T>),
}

impl<'a, T> SortedList<'a, T> {
    fn new<K: Ord + 'a>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Self {
        if items.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
            SortedList::InPlace(items)
        } else {
            let mut refs: Vec<&T> = items.iter().collect();
            refs.sort_by_key(|item| key(item));
            SortedList::Refs(refs)
        }
    }
}

impl<T: Serialize> Serialize for SortedList<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SortedList::InPlace(items) => serializer.collect_seq(items.iter()),
            SortedList::Refs(refs) => serializer.collect_seq(refs.iter()),
        }
    }
}

/// What [`Manifest::to_bytes`] serializes: a [`Manifest`] (same fields, same
/// order) with its lists in sorted order, without copying them.
#[derive(Serialize)]
struct SortedManifest<'a> {
    backup: &'a BackupMeta,
    targets: SortedList<'a, Target>,
    paths: SortedList<'a, PathEntry>,
    links: SortedList<'a, LinkEntry>,
    files: SortedList<'a, FileEntry>,
}

impl<'a> SortedManifest<'a> {
    fn new(m: &'a Manifest) -> Self {
        SortedManifest {
            backup: &m.backup,
            targets: SortedList::new(&m.targets, |t| t.name.as_str()),
            paths: SortedList::new(&m.paths, Keyed::key),
            links: SortedList::new(&m.links, Keyed::key),
            files: SortedList::new(&m.files, Keyed::key),
        }
    }
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

fn opt_label_len(r: &Option<CompactString>) -> usize {
    r.as_ref().map_or(4, |r| r.len() + 2)
}

/// The serialized size of a file entry with its line break and indentation
/// (exact unless a name needs escapes), so that the output buffer is
/// allocated once and not much larger than needed.
fn estimated_size(f: &FileEntry) -> usize {
    let bundle = f.bundle.as_ref().map_or(4, |b| {
        27 + digits(b.id) + digits(b.offset) + digits(b.length)
    });
    let block_map = f.block_map.as_ref().map_or(4, |m| {
        27 + digits(u64::from(m.block_size))
            + m.blocks
                .iter()
                .map(|b| {
                    45 + 32
                        + opt_label_len(&b.reference)
                        + digits(b.offset)
                        + digits(b.length)
                        + b.base.as_ref().map_or(12, |base| {
                            45 + base.reference.len() + digits(base.offset) + digits(base.length)
                        })
                        + b.chain.map_or(0, |_| 76)
                })
                .sum::<usize>()
    });
    8 + 130
        + f.target.len()
        + f.name.len()
        + digits(f.size)
        + 1
        + digits(f.mtime.unsigned_abs())
        + digits(u64::from(f.mode))
        + 64
        + opt_label_len(&f.reference)
        + digits(f.stored_size)
        + bundle
        + block_map
        + f.page_errors
            .iter()
            .map(|&p| 1 + digits(u64::from(p)))
            .sum::<usize>()
}

impl Manifest {
    /// Sorts targets by name and paths, links and files by `(target, name)`:
    /// the order [`Manifest::to_bytes`] writes.
    pub fn sort(&mut self) {
        self.targets.sort_by(|a, b| a.name.cmp(&b.name));
        self.paths
            .sort_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
        self.links
            .sort_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
        self.files
            .sort_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
    }

    /// Serializes to the manifest file format: JSON
    /// `{"format":2,"manifest":{...},"checksum":"<blake3 hex>"}` with one
    /// path, link or file per line (see `docs/format.md`), with the entries in
    /// sorted order (see [`Manifest::sort`]; `self` is not changed). The
    /// output depends only on the manifest's content.
    ///
    /// It does not validate; call [`Manifest::validate`] first to be sure the
    /// result will load.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let capacity = 4096
            + self.backup.backup_label.len()
            + self.backup.tablespace_map.as_ref().map_or(0, String::len)
            + 300 * (self.targets.len() + self.paths.len() + self.links.len())
            + self.targets.iter().map(|t| t.path.len()).sum::<usize>()
            + self
                .links
                .iter()
                .map(|l| l.destination.len())
                .sum::<usize>()
            + self.files.iter().map(estimated_size).sum::<usize>() * 65 / 64;
        envelope::write_manifest(MANIFEST_FORMAT, &SortedManifest::new(self), capacity)
    }

    /// Streams the bytes [`Manifest::to_bytes`] returns into `w` (a compressor, a file) without
    /// holding them, and returns `w`. For a manifest of many files this saves a buffer of about
    /// 270 bytes per file.
    pub fn write_to<W: std::io::Write>(&self, w: W) -> Result<W, Error> {
        self.write_to_with_checksum(w).map(|(w, _)| w)
    }

    /// [`Manifest::write_to`], also returning the manifest's checksum (the one its envelope
    /// records, and [`Manifest::from_reader_with_checksum`] returns): `backup.info` keeps it, so
    /// that a manifest replaced by another is told apart from the one committed.
    pub fn write_to_with_checksum<W: std::io::Write>(&self, w: W) -> Result<(W, Checksum), Error> {
        envelope::write_manifest_to(MANIFEST_FORMAT, &SortedManifest::new(self), w)
            .map(|(w, hash)| (w, Checksum::from(hash)))
    }

    /// Loads a manifest written by [`Manifest::to_bytes`]: checks the format
    /// version, the self-checksum, then [`Manifest::validate`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest, Error> {
        Self::from_bytes_with_checksum(bytes).map(|(m, _)| m)
    }

    /// [`Manifest::from_bytes`], also returning the manifest's checksum.
    pub fn from_bytes_with_checksum(bytes: &[u8]) -> Result<(Manifest, Checksum), Error> {
        let (manifest, hash): (Manifest, _) = envelope::read_manifest(bytes, MANIFEST_FORMAT)?;
        manifest.validate()?;
        Ok((manifest, Checksum::from(hash)))
    }

    /// Finds a file by target and name.
    pub fn file(&self, target: &str, name: &str) -> Option<&FileEntry> {
        self.position(target, name).map(|i| &self.files[i])
    }

    /// Where the file `target`/`name` is in [`Manifest::files`] (to change it in place). A name
    /// that is not there costs a scan of every file; for many lookups, use
    /// [`Manifest::file_index`].
    pub fn position(&self, target: &str, name: &str) -> Option<usize> {
        // Fast path for sorted manifests (all loaded ones), then a scan.
        self.files
            .binary_search_by(|f| (f.target.as_str(), f.name.as_str()).cmp(&(target, name)))
            .ok()
            .or_else(|| {
                self.files
                    .iter()
                    .position(|f| f.target == target && f.name == name)
            })
    }

    /// A [`FileIndex`] of this manifest's files, for many lookups.
    pub fn file_index(&self) -> FileIndex {
        let unsorted = (!is_sorted(&self.files)).then(|| {
            let mut by_target: HashMap<CompactString, HashMap<CompactString, usize>> =
                HashMap::new();
            for (i, f) in self.files.iter().enumerate() {
                by_target
                    .entry(f.target.clone())
                    .or_default()
                    .entry(f.name.clone())
                    .or_insert(i);
            }
            by_target
        });
        FileIndex { unsorted }
    }
}
