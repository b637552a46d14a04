//! A repository pgBackRest 2.x wrote, opened read-only: its info files are recognised by their
//! syntax (or, encrypted, by OpenSSL's `Salted__` header) and read into pgbr's types, and the
//! passphrases of its hierarchy are kept (repository passphrase → the sub-passphrases in
//! `backup.info` and `archive.info` → each backup's in its manifest).

use std::io::{self, Read, Write};

use pgbr_crypto::CipherType;
use pgbr_manifest::pgbackrest::{
    is_backrest_text, BackrestArchiveInfo, BackrestBackupInfo, BackrestCompress, BackrestManifest,
};

use super::{load_twice, Repository};
use crate::config::RepoOptions;
use crate::error::{Error, Result};
use crate::layout;

/// The passphrases of a pgBackRest repository (all `None` when it is not encrypted).
#[derive(Clone, Debug, Default)]
pub struct BackrestKeys {
    /// Encrypts each backup's manifest (`backup.info`'s `cipher-pass`).
    pub(crate) backup_pass: Option<String>,
    /// Encrypts each archived WAL file (`archive.info`'s `cipher-pass`).
    pub(crate) archive_pass: Option<String>,
}

/// Whether the bytes of an info file are pgBackRest's rather than pgbr's (which are JSON).
pub(crate) fn is_backrest(raw: &[u8]) -> bool {
    is_backrest_text(raw) || raw.starts_with(b"Salted__")
}

/// Decrypts pgBackRest metadata with `pass` (the bytes as they are without one).
pub(crate) fn decrypt(raw: &[u8], pass: Option<&[u8]>, what: &str) -> Result<Vec<u8>> {
    match pass {
        None if raw.starts_with(b"Salted__") => Err(Error::config(format!(
            "{what} is encrypted: set the repository's cipher-type to aes-256-cbc and its cipher-pass to the pgBackRest repository's passphrase"
        ))),
        None => Ok(raw.to_vec()),
        Some(pass) => {
            let mut out = Vec::with_capacity(raw.len());
            pgbr_crypto::CbcReader::new(pass, raw)
                .read_to_end(&mut out)
                .map_err(|e| {
                    Error::Corrupt(format!(
                        "{what} cannot be decrypted ({e}): is the passphrase the pgBackRest repository's?"
                    ))
                })?;
            Ok(out)
        }
    }
}

/// The repository's passphrase, if `opts` say it is encrypted.
fn repo_pass(opts: &RepoOptions) -> Result<Option<&[u8]>> {
    match opts.cipher_type {
        CipherType::None => Ok(None),
        CipherType::Aes256Cbc => Ok(opts.cipher_pass.as_ref().map(|p| p.expose())),
        other => Err(Error::config(format!(
            "option '{}-cipher-type' is {other}, but the repository is pgBackRest's, which encrypts with aes-256-cbc",
            opts.name()
        ))),
    }
}

fn refused(repo_name: &str, command: &str) -> Error {
    Error::config(format!(
        "{repo_name}: {command} is refused: pgBackRest wrote this repository, which pgbr reads (info, verify, restore, archive-get) but never changes. Give pgbr a repository of its own (another repo<N>-path) for new backups and WAL"
    ))
}

/// Refuses `command` (a stanza command, run without opening the repository) where pgBackRest's
/// info files stand, before anything is written.
pub(crate) async fn refuse_written_by_backrest(
    storage: &pgbr_storage::Storage,
    repo_name: &str,
    stanza: &str,
    command: &str,
) -> Result<()> {
    if is_backrest_stanza(storage, stanza).await? {
        return Err(refused(repo_name, command));
    }
    Ok(())
}

/// Whether pgBackRest wrote any of `stanza`'s info files (or their copies) in `storage`.
pub(crate) async fn is_backrest_stanza(
    storage: &pgbr_storage::Storage,
    stanza: &str,
) -> Result<bool> {
    for info in [layout::backup_info(stanza), layout::archive_info(stanza)] {
        for path in [layout::copy_of(&info), info] {
            if storage
                .get_opt(&path)
                .await?
                .is_some_and(|raw| is_backrest(&raw))
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Reads a pgBackRest info file pair of `stanza` (`None` when neither is there).
pub(crate) async fn open_infos(
    storage: &pgbr_storage::Storage,
    opts: &RepoOptions,
    repo_name: &str,
    stanza: &str,
) -> Result<Option<(BackrestBackupInfo, BackrestArchiveInfo)>> {
    let pass = repo_pass(opts)?;
    let backup = load_twice(storage, &layout::backup_info(stanza), |raw| {
        let what = format!("{repo_name}: pgBackRest backup.info of stanza '{stanza}'");
        let text = decrypt(raw, pass, &what)?;
        BackrestBackupInfo::parse(&text, stanza).map_err(|source| Error::Manifest {
            context: what,
            source,
        })
    })
    .await?;
    let archive = load_twice(storage, &layout::archive_info(stanza), |raw| {
        let what = format!("{repo_name}: pgBackRest archive.info of stanza '{stanza}'");
        let text = decrypt(raw, pass, &what)?;
        BackrestArchiveInfo::parse(&text, stanza).map_err(|source| Error::Manifest {
            context: what,
            source,
        })
    })
    .await?;
    match (backup, archive) {
        (Some(b), Some(a)) => Ok(Some((b, a))),
        (None, None) => Ok(None),
        _ => Err(Error::Corrupt(format!(
            "{repo_name}: stanza '{stanza}' has only one of pgBackRest's backup.info and archive.info: it is damaged; check it with 'pgbackrest --stanza={stanza} info'"
        ))),
    }
}

impl Repository {
    /// The passphrases of a repository pgBackRest wrote; `None` for one of pgbr's.
    pub(crate) fn backrest(&self) -> Option<&BackrestKeys> {
        self.backrest.as_ref()
    }

    /// Whether pgBackRest wrote this repository (pgbr reads it, never writes it).
    pub fn is_backrest(&self) -> bool {
        self.backrest.is_some()
    }

    /// Refuses `command` on a repository pgBackRest wrote: pgbr only reads those.
    pub(crate) fn refuse_backrest(&self, command: &str) -> Result<()> {
        if self.is_backrest() {
            return Err(refused(&self.name(), command));
        }
        Ok(())
    }

    /// Loads pgBackRest's manifest of backup `label`, checked against `backup.info`.
    pub(crate) async fn load_backrest_manifest(&self, label: &str) -> Result<BackrestManifest> {
        let keys = self.backrest().cloned().unwrap_or_default();
        let path = layout::manifest(&self.backup_path(label));
        let name = self.name();
        let loaded = load_twice(&self.storage, &path, |raw| {
            let what = format!("{name}: {path}");
            let text = decrypt(raw, keys.backup_pass.as_deref().map(str::as_bytes), &what)?;
            let m = BackrestManifest::parse(&text).map_err(|source| Error::Manifest {
                context: what.clone(),
                source,
            })?;
            if m.manifest.backup.label != label {
                return Err(Error::Corrupt(format!(
                    "{what} is the manifest of backup {}, not {label}",
                    m.manifest.backup.label
                )));
            }
            Ok(m)
        })
        .await?;
        loaded
            .ok_or_else(|| Error::BackupMissing(format!("{name}: backup {label} has no manifest")))
    }
}

/// Where pgBackRest stored file `f` of the backup whose directory is `backup_dir` (the one `f`
/// references, if any): its bundle and the range of its piece there, or an object of its own
/// named as pgbr names a file stored whole (`<target>/<name><ext>`).
pub(crate) fn stored_at(
    backup_dir: &str,
    f: &pgbr_manifest::FileEntry,
    compress: BackrestCompress,
) -> (String, Option<std::ops::Range<u64>>) {
    match &f.bundle {
        Some(b) => (
            layout::bundle(backup_dir, b.id),
            Some(b.offset..b.offset + b.length),
        ),
        None => (
            layout::whole(backup_dir, &f.target, &f.name, compress.extension()),
            None,
        ),
    }
}

/// A reader of one stored pgBackRest file: decrypted with `pass`, decompressed as `compress`.
pub(crate) fn decode_reader<'r>(
    stored: impl Read + Send + 'r,
    pass: Option<&str>,
    compress: BackrestCompress,
) -> Result<Box<dyn Read + Send + 'r>> {
    let decrypted: Box<dyn Read + Send + 'r> = match pass {
        Some(p) => Box::new(pgbr_crypto::CbcReader::new(p.as_bytes(), stored)),
        None => Box::new(stored),
    };
    let kind = match compress {
        BackrestCompress::None => pgbr_storage::CompressType::None,
        BackrestCompress::Gz => pgbr_storage::CompressType::Gz,
        BackrestCompress::Lz4 => pgbr_storage::CompressType::Lz4,
        BackrestCompress::Zst => pgbr_storage::CompressType::Zst,
        BackrestCompress::Bz2 => return Ok(Box::new(bzip2::read::BzDecoder::new(decrypted))),
    };
    let reader = pgbr_storage::DecompressReader::new(kind, decrypted)
        .map_err(|e| Error::Corrupt(format!("cannot start decompressing: {e}")))?;
    Ok(Box::new(reader))
}

/// Copies `from` into `to`, returning the bytes copied and their SHA-1 (pgBackRest's checksum of
/// a file's plaintext).
pub(crate) fn sha1_copy(from: &mut dyn Read, to: &mut dyn Write) -> io::Result<(u64, [u8; 20])> {
    use sha1::{Digest, Sha1};
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok((total, hasher.finalize().into()))
}
