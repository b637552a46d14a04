//! pgBackRest's `backup.manifest`, read into a pgbr [`Manifest`] (what the restore's safety model
//! and plan work on) beside what only pgBackRest's format holds: each file's SHA-1 and where its
//! stored bytes are.

use compact_str::CompactString;
use serde::Deserialize;

use super::ini::{decode, Ini};
use crate::{
    BackupMeta, BackupType, BundleRef, Checksum, Cipher, Compression, Error, FileEntry, LinkEntry,
    Manifest, PathEntry, Target,
};

/// How pgBackRest compressed a backup's files (`option-compress-type`), bz2 included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackrestCompress {
    /// Stored as is.
    None,
    /// gzip, `.gz`.
    Gz,
    /// LZ4 frame, `.lz4`.
    Lz4,
    /// Zstandard, `.zst`.
    Zst,
    /// bzip2, `.bz2`.
    Bz2,
}

impl BackrestCompress {
    /// The extension of a file stored outside a bundle (`""` for none).
    pub fn extension(self) -> &'static str {
        match self {
            BackrestCompress::None => "",
            BackrestCompress::Gz => ".gz",
            BackrestCompress::Lz4 => ".lz4",
            BackrestCompress::Zst => ".zst",
            BackrestCompress::Bz2 => ".bz2",
        }
    }

    /// The compression an archived WAL file's name ends with.
    pub fn from_extension(ext: &str) -> Option<BackrestCompress> {
        [Self::None, Self::Gz, Self::Lz4, Self::Zst, Self::Bz2]
            .into_iter()
            .find(|c| c.extension() == ext)
    }

    fn from_option(name: &str) -> Option<BackrestCompress> {
        Self::from_extension(&format!(".{name}")).or((name == "none").then_some(Self::None))
    }

    fn as_compression(self) -> Compression {
        match self {
            BackrestCompress::None | BackrestCompress::Bz2 => Compression::None,
            BackrestCompress::Gz => Compression::Gz,
            BackrestCompress::Lz4 => Compression::Lz4,
            BackrestCompress::Zst => Compression::Zst,
        }
    }
}

/// What only pgBackRest's manifest says of one file (aligned with [`Manifest::files`]). Its name
/// in pgBackRest's repository is `<target>/<name>` of the pgbr entry (`pg_data/base/1/112`), with
/// the compression's extension when it is not bundled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackrestFile {
    /// SHA-1 of the plaintext; `None` for an empty file.
    pub sha1: Option<[u8; 20]>,
}

/// A pgBackRest backup: the manifest as pgbr's restore reads one, plus pgBackRest's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackrestManifest {
    /// The backup in pgbr's terms. File checksums are left zero: pgBackRest's are SHA-1
    /// ([`BackrestFile::sha1`]).
    pub manifest: Manifest,
    /// One per file of `manifest.files`, in the same order.
    pub files: Vec<BackrestFile>,
    /// How every file of the backup (and of those it references: pgBackRest keeps one compression
    /// for a chain) was compressed.
    pub compress: BackrestCompress,
    /// The passphrase the backup's files are encrypted with.
    pub cipher_pass: Option<String>,
    /// The pgBackRest version that wrote it.
    pub version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct TargetValue {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    tablespace_id: Option<String>,
    tablespace_name: Option<String>,
    file: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileValue {
    size: u64,
    timestamp: i64,
    checksum: Option<String>,
    reference: Option<String>,
    repo_size: Option<u64>,
    bni: Option<u64>,
    bno: Option<u64>,
    mode: Option<String>,
    #[serde(default)]
    checksum_page_error: Vec<serde_json::Value>,
    /// Block-incremental maps (pgBackRest 2.46+), which pgbr does not read.
    bims: Option<u64>,
    bi: Option<u64>,
}

/// Splits pgBackRest's `pg_data/base/1` or `pg_tblspc/16384/PG_15_.../5` into target and name.
fn split_name(full: &str) -> Option<(&str, &str)> {
    if full == "pg_data" {
        return Some(("pg_data", ""));
    }
    if let Some(rest) = full.strip_prefix("pg_data/") {
        return Some(("pg_data", rest));
    }
    let rest = full.strip_prefix("pg_tblspc/")?;
    let oid_len = rest.find('/').unwrap_or(rest.len());
    let target = full.get(..("pg_tblspc/".len() + oid_len))?;
    Some((target, rest.get(oid_len..)?.trim_start_matches('/')))
}

fn mode(text: &str, what: &str) -> Result<u32, Error> {
    u32::from_str_radix(text, 8)
        .map_err(|_| Error::invalid(what, format!("mode {text:?} is not octal")))
}

/// Page numbers from pgBackRest's `checksum-page-error` (numbers and `[first, last]` ranges),
/// no more than a file of `size` bytes has pages.
fn page_errors(values: &[serde_json::Value], size: u64) -> Vec<u32> {
    let pages = u32::try_from(size.div_ceil(8192)).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    for v in values {
        let n = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        match v {
            serde_json::Value::Array(range) if range.len() == 2 => {
                if let (Some(a), Some(b)) = (n(&range[0]), n(&range[1])) {
                    out.extend(a..=b.min(pages.saturating_sub(1)));
                }
            }
            other => out.extend(n(other).filter(|&p| p < pages)),
        }
        if out.len() >= pages as usize {
            out.truncate(pages as usize);
            break;
        }
    }
    out
}

impl BackrestManifest {
    /// Reads a pgBackRest `backup.manifest` (decrypted): syntax, format and checksum checked,
    /// refused if it uses what pgbr cannot read, and the result validated as any pgbr manifest
    /// is (safe names, known targets, references listed).
    pub fn parse(bytes: &[u8]) -> Result<BackrestManifest, Error> {
        let what = "pgBackRest backup.manifest";
        let ini = Ini::parse(bytes, what)?;
        ini.verify(what)?;
        if ini
            .get::<bool>("backup", "backup-block-incr")?
            .unwrap_or(false)
        {
            return Err(unsupported(
                "block incremental backups (repo-block, pgBackRest 2.46+)",
            ));
        }
        let label: String = ini.require("backup", "backup-label")?;
        let compress_name: Option<String> = ini.get("backup:option", "option-compress-type")?;
        let compress = match compress_name {
            Some(name) => BackrestCompress::from_option(&name)
                .ok_or_else(|| unsupported(&format!("compress-type {name}")))?,
            // Before 2.27 the only compression was gzip.
            None if ini
                .get("backup:option", "option-compress")?
                .unwrap_or(false) =>
            {
                BackrestCompress::Gz
            }
            None => BackrestCompress::None,
        };
        let cipher_pass: Option<String> = ini.get("cipher", "cipher-pass")?;
        let version: String = ini.require("backrest", "backrest-version")?;
        let mut manifest = Manifest {
            backup: meta(&ini, &label, compress, cipher_pass.is_some(), &version)?,
            ..Manifest::default()
        };
        manifest.targets = targets(&ini)?;
        let link_targets: Vec<String> = manifest
            .targets
            .iter()
            .filter(|t| t.tablespace_oid.is_none() && t.name != "pg_data")
            .map(|t| t.name.clone())
            .collect();
        if let Some(t) = link_targets.first() {
            return Err(unsupported(&format!(
                "a linked directory or file in pg_data ({t})"
            )));
        }
        let path_mode = match ini.get::<String>("target:path:default", "mode")? {
            Some(m) => mode(&m, "[target:path:default] mode")?,
            None => 0o700,
        };
        for (name, raw) in entries(&ini, "target:path") {
            let Some((target, rest)) = split_name(name) else {
                continue;
            };
            let value: serde_json::Map<String, serde_json::Value> =
                decode(raw, &format!("path {name}"))?;
            let mode = match value.get("mode").and_then(|m| m.as_str()) {
                Some(m) => mode(m, &format!("path {name}"))?,
                None => path_mode,
            };
            manifest.paths.push(PathEntry {
                target: target.into(),
                name: rest.into(),
                mode,
            });
        }
        for (name, raw) in entries(&ini, "target:link") {
            let Some((target, rest)) = split_name(name) else {
                continue;
            };
            if target == "pg_data" && rest.starts_with("pg_tblspc/") {
                continue; // the tablespace target's own link
            }
            let value: serde_json::Map<String, serde_json::Value> =
                decode(raw, &format!("link {name}"))?;
            let destination = value
                .get("destination")
                .and_then(|d| d.as_str())
                .ok_or_else(|| Error::invalid(format!("link {name}"), "no destination"))?;
            manifest.links.push(LinkEntry {
                target: target.into(),
                name: rest.into(),
                destination: destination.into(),
            });
        }
        let files = files(&ini, &label, &mut manifest)?;
        manifest.backup.size_original = manifest.files.iter().map(|f| f.size).sum();
        manifest.backup.size_stored = manifest
            .files
            .iter()
            .filter(|f| f.reference.is_none())
            .map(|f| f.stored_size)
            .sum();
        manifest.validate()?;
        Ok(BackrestManifest {
            manifest,
            files,
            compress,
            cipher_pass,
            version,
        })
    }
}

fn unsupported(feature: &str) -> Error {
    Error::invalid(
        "pgBackRest backup.manifest",
        format!("the backup uses {feature}, which pgbr cannot read; restore it with pgBackRest"),
    )
}

fn entries<'i>(ini: &'i Ini, section: &str) -> impl Iterator<Item = (&'i str, &'i str)> {
    ini.section(section)
        .map(|s| &s.entries[..])
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

fn meta(
    ini: &Ini,
    label: &str,
    compress: BackrestCompress,
    encrypted: bool,
    version: &str,
) -> Result<BackupMeta, Error> {
    let backup_type: BackupType = ini.require("backup", "backup-type")?;
    let references: Option<String> = ini.get("backup", "backup-reference")?;
    let wal_start: String = ini
        .get("backup", "backup-archive-start")?
        .unwrap_or_default();
    let version_text: String = ini.require("backup:db", "db-version")?;
    Ok(BackupMeta {
        label: label.to_string(),
        backup_type,
        prior: ini.get("backup", "backup-prior")?,
        references: references
            .unwrap_or_default()
            .split(',')
            .filter(|r| !r.is_empty() && *r != label)
            .map(str::to_string)
            .collect(),
        timestamp_start: ini.require("backup", "backup-timestamp-start")?,
        timestamp_stop: ini.require("backup", "backup-timestamp-stop")?,
        lsn_start: ini.get("backup", "backup-lsn-start")?.unwrap_or_default(),
        lsn_stop: ini.get("backup", "backup-lsn-stop")?.unwrap_or_default(),
        timeline: wal_start
            .get(..8)
            .and_then(|t| u32::from_str_radix(t, 16).ok())
            .unwrap_or(0),
        wal_start,
        wal_stop: ini
            .get("backup", "backup-archive-stop")?
            .unwrap_or_default(),
        pg_version: version_text
            .parse()
            .map_err(|_| unsupported(&format!("PostgreSQL {version_text}")))?,
        system_id: ini.require("backup:db", "db-system-id")?,
        db_id: ini.require("backup:db", "db-id")?,
        checksums_enabled: ini
            .get("backup:option", "option-checksum-page")?
            .unwrap_or(false),
        compress_type: compress.as_compression(),
        compress_level: ini
            .get("backup:option", "option-compress-level")?
            .unwrap_or(0),
        cipher_type: if encrypted {
            Cipher::Aes256Cbc
        } else {
            Cipher::None
        },
        archive_copy: ini
            .get("backup:option", "option-archive-copy")?
            .unwrap_or(false),
        backup_label: String::new(),
        tablespace_map: None,
        size_original: 0,
        size_stored: 0,
        pgbr_version: format!("pgBackRest {version}"),
        wal_segment_size: 16 * 1024 * 1024,
    })
}

fn targets(ini: &Ini) -> Result<Vec<Target>, Error> {
    let mut out = Vec::new();
    for (name, raw) in entries(ini, "backup:target") {
        let t: TargetValue = decode(raw, &format!("target {name}"))?;
        let oid = match &t.tablespace_id {
            Some(id) => Some(id.parse().map_err(|_| {
                Error::invalid(format!("target {name}"), "tablespace-id is not a number")
            })?),
            None => None,
        };
        if t.kind == "link" && t.file.is_some() {
            return Err(unsupported(&format!("a linked file in pg_data ({name})")));
        }
        out.push(Target {
            name: name.to_string(),
            path: t.path,
            tablespace_oid: oid,
            tablespace_name: t.tablespace_name,
        });
    }
    Ok(out)
}

fn files(ini: &Ini, label: &str, manifest: &mut Manifest) -> Result<Vec<BackrestFile>, Error> {
    let file_mode = match ini.get::<String>("target:file:default", "mode")? {
        Some(m) => mode(&m, "[target:file:default] mode")?,
        None => 0o600,
    };
    let mut out = Vec::new();
    for (name, raw) in entries(ini, "target:file") {
        let what = format!("file {name}");
        let (target, rest) =
            split_name(name).ok_or_else(|| Error::invalid(&what, "it is in no target"))?;
        let v: FileValue = decode(raw, &what)?;
        if v.bims.is_some() || v.bi.is_some() {
            return Err(unsupported("block incremental maps (pgBackRest 2.46+)"));
        }
        let sha1 = match &v.checksum {
            Some(hex_text) => {
                let mut sum = [0u8; 20];
                hex::decode_to_slice(hex_text, &mut sum)
                    .map_err(|_| Error::invalid(&what, "checksum is not 40 hex digits"))?;
                Some(sum)
            }
            None if v.size == 0 => None,
            None => {
                return Err(Error::invalid(
                    &what,
                    "a file with contents has no checksum",
                ))
            }
        };
        let reference = v.reference.filter(|r| r != label).map(CompactString::from);
        let repo_size = v.repo_size.unwrap_or(v.size);
        if v.bno.unwrap_or(0).checked_add(repo_size).is_none() {
            return Err(Error::invalid(
                &what,
                "its place in the bundle is past any object's end",
            ));
        }
        manifest.files.push(FileEntry {
            target: target.into(),
            name: rest.into(),
            size: v.size,
            mtime: v.timestamp,
            mode: match &v.mode {
                Some(m) => mode(m, &what)?,
                None => file_mode,
            },
            checksum: Checksum::default(),
            reference,
            stored_size: repo_size,
            bundle: v.bni.map(|id| BundleRef {
                id,
                offset: v.bno.unwrap_or(0),
                length: repo_size,
            }),
            block_map: None,
            page_errors: page_errors(&v.checksum_page_error, v.size),
        });
        out.push(BackrestFile { sha1 });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_target_and_name() {
        assert_eq!(split_name("pg_data"), Some(("pg_data", "")));
        assert_eq!(
            split_name("pg_data/base/1/112"),
            Some(("pg_data", "base/1/112"))
        );
        assert_eq!(split_name("pg_tblspc/16384"), Some(("pg_tblspc/16384", "")));
        assert_eq!(
            split_name("pg_tblspc/16384/PG_15_1/5/1"),
            Some(("pg_tblspc/16384", "PG_15_1/5/1"))
        );
        assert_eq!(split_name("pg_tblspc"), None);
        assert_eq!(split_name("elsewhere/x"), None);
    }

    #[test]
    fn page_error_ranges_expand() {
        let v: Vec<serde_json::Value> = serde_json::from_str("[1,[3,5],9]").unwrap();
        assert_eq!(page_errors(&v, 10 * 8192), vec![1, 3, 4, 5, 9]);
        let huge: Vec<serde_json::Value> =
            serde_json::from_str("[[0,4000000000],[0,4000000000]]").unwrap();
        assert_eq!(page_errors(&huge, 3 * 8192), vec![0, 1, 2]);
    }

    /// A full backup's manifest in pgBackRest 2.45's shape, one file in a bundle; `extra_backup`
    /// and `file` change it.
    fn manifest_text(extra_backup: &str, file: &str) -> String {
        let body = format!(
            "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[backup]\nbackup-archive-start=\"000000010000000000000003\"\n{extra_backup}backup-label=\"20261207-230614F\"\nbackup-timestamp-start=1\nbackup-timestamp-stop=2\nbackup-type=\"full\"\n\n[backup:db]\ndb-id=1\ndb-system-id=7\ndb-version=\"15\"\n\n[backup:option]\noption-compress-type=\"zst\"\n\n[backup:target]\npg_data={{\"path\":\"/data\",\"type\":\"path\"}}\n\n[target:file]\npg_data/PG_VERSION={file}\n\n[target:path]\npg_data={{}}\n"
        );
        Ini::parse(body.as_bytes(), "t").unwrap().render()
    }

    #[test]
    fn a_manifest_reads_and_what_pgbr_cannot_read_is_refused_by_name() {
        let plain = r#"{"bni":1,"bno":40,"checksum":"587b596f04f7db9c2cad3d6b87dd2b3a05de4f35","repo-size":12,"size":3,"timestamp":1}"#;
        let m = BackrestManifest::parse(manifest_text("", plain).as_bytes()).unwrap();
        let f = &m.manifest.files[0];
        assert_eq!(
            (f.target.as_str(), f.name.as_str(), f.mode),
            ("pg_data", "PG_VERSION", 0o600)
        );
        assert_eq!(
            f.bundle,
            Some(BundleRef {
                id: 1,
                offset: 40,
                length: 12
            })
        );
        assert_eq!(m.compress, BackrestCompress::Zst);
        assert_eq!(format!("{}/{}", f.target, f.name), "pg_data/PG_VERSION");

        let block_incr =
            BackrestManifest::parse(manifest_text("backup-block-incr=true\n", plain).as_bytes());
        assert!(block_incr
            .unwrap_err()
            .to_string()
            .contains("block incremental"));
        let map = r#"{"bims":88,"bis":1,"checksum":"587b596f04f7db9c2cad3d6b87dd2b3a05de4f35","size":3,"timestamp":1}"#;
        let mapped = BackrestManifest::parse(manifest_text("", map).as_bytes());
        assert!(mapped
            .unwrap_err()
            .to_string()
            .contains("block incremental maps"));
        let unsafe_name = manifest_text("", plain).replace("pg_data/PG_VERSION", "pg_data/../x");
        let resealed = Ini::parse(unsafe_name.as_bytes(), "t").unwrap().render();
        let escaping = BackrestManifest::parse(resealed.as_bytes()).unwrap_err();
        assert!(matches!(escaping, Error::UnsafeName { .. }), "{escaping}");
    }

    #[test]
    fn extensions_name_compressions() {
        assert_eq!(
            BackrestCompress::from_extension(".bz2"),
            Some(BackrestCompress::Bz2)
        );
        assert_eq!(
            BackrestCompress::from_extension(""),
            Some(BackrestCompress::None)
        );
        assert_eq!(
            BackrestCompress::from_option("none"),
            Some(BackrestCompress::None)
        );
        assert_eq!(
            BackrestCompress::from_option("zst"),
            Some(BackrestCompress::Zst)
        );
        assert_eq!(BackrestCompress::from_option("xz"), None);
    }
}
