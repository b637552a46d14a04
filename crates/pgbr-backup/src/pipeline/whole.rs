//! Files stored whole, one object each: the stream backup writes and restore reads back.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use pgbr_manifest::{Checksum, PAGE_SIZE};
use pgbr_storage::Storage;

use super::codec::{decode_object, seal, Codec, DecodeError, Encoder};
use super::pages::{check_pages, PageCheckSpec};
use super::{read_full, CHUNK};
use crate::error::{Error, Result};

/// What storing one file produced.
pub(crate) struct Stored {
    pub size: u64,
    pub checksum: Checksum,
    pub stored_size: u64,
    pub page_errors: Vec<u32>,
}

/// Where [`store_file`] publishes what it stored.
pub(crate) enum Publish<'a> {
    /// At this object (nothing is stored for an empty file).
    At(&'a str),
    /// Under `name_of(checksum)`, which must be in the directory of `pending` (the name it is
    /// written under meanwhile, which never becomes visible): one pass, where a name that
    /// carries the checksum would otherwise need a hashing pass first. Only for a local
    /// repository ([`Storage::is_local`]). An empty file is stored too.
    Named {
        pending: &'a str,
        name_of: &'a dyn Fn(&Checksum) -> String,
    },
}

/// Stores the local file `src`: reads, hashes, page-checks, compresses, encrypts and writes it
/// in one pass, and publishes it as `to` says. `Ok(None)` if the file vanished before it could
/// be opened (PostgreSQL dropped it).
pub(crate) fn store_file(
    src: &Path,
    storage: &Storage,
    to: Publish<'_>,
    codec: &Codec,
    pages: Option<PageCheckSpec>,
    handle: &tokio::runtime::Handle,
) -> Result<Option<Stored>> {
    let object = match &to {
        Publish::At(object) => object,
        Publish::Named { pending, .. } => pending,
    };
    let mut file = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("unable to open", src, e)),
    };
    let mut buf = vec![0u8; CHUNK];
    let mut filled =
        read_full(&mut file, &mut buf).map_err(|e| Error::io("unable to read", src, e))?;
    let mut hasher = blake3::Hasher::new();
    if filled == 0 {
        let mut stored = Stored {
            size: 0,
            checksum: Checksum::from(hasher.finalize()),
            stored_size: 0,
            page_errors: Vec::new(),
        };
        if let Publish::Named { pending, name_of } = to {
            // Named: an empty file is still stored as a (sealed) piece, so that it reads back.
            let sealed = seal(codec, &[]).map_err(|e| Error::io("unable to store", src, e))?;
            let mut w = storage.blocking_writer(pending, handle.clone());
            w.write_all(&sealed)
                .map_err(|e| Error::io("unable to store", src, e))?;
            w.finish_as(&name_of(&stored.checksum))?;
            stored.stored_size = sealed.len() as u64;
        }
        return Ok(Some(stored));
    }
    let io_err = |e: io::Error| Error::io("unable to store", src, e);
    let mut comp =
        Encoder::new(codec, storage.blocking_writer(object, handle.clone())).map_err(io_err)?;
    let mut size = 0u64;
    let mut page_errors = Vec::new();
    while filled > 0 {
        let chunk = &buf[..filled];
        hasher.update(chunk);
        if let Some(spec) = &pages {
            check_pages(chunk, size / PAGE_SIZE as u64, spec, &mut page_errors);
        }
        comp.write_all(chunk).map_err(io_err)?;
        size += filled as u64;
        filled = read_full(&mut file, &mut buf).map_err(|e| Error::io("unable to read", src, e))?;
    }
    let (writer, stored_size) = comp.finish().map_err(io_err)?;
    let stored = Stored {
        size,
        checksum: Checksum::from(hasher.finalize()),
        stored_size,
        page_errors,
    };
    match to {
        Publish::At(_) => writer.finish()?,
        Publish::Named { name_of, .. } => writer.finish_as(&name_of(&stored.checksum))?,
    };
    Ok(Some(stored))
}

/// Stores bytes already in memory (backup_label, tablespace_map, archived WAL).
pub(crate) async fn store_bytes(
    storage: &Storage,
    object: &str,
    codec: &Codec,
    data: &[u8],
) -> Result<u64> {
    let compressed = pgbr_storage::compress_to_vec(codec.compress_type, codec.level, data)
        .map_err(|e| Error::Internal(format!("compressing {object}: {e}")))?;
    let sealed = pgbr_crypto::encrypt_owned(codec.cipher, codec.key.as_ref(), compressed)
        .map_err(|e| Error::Internal(format!("encrypting {object}: {e}")))?;
    let n = sealed.len() as u64;
    storage.put(object, bytes::Bytes::from(sealed)).await?;
    Ok(n)
}

/// Streams `object` through the decode chain into `dest`, returning the plaintext's size and
/// BLAKE3 hex. The caller compares them with the manifest before renaming `dest`.
pub(crate) fn fetch_to_file(
    storage: &Storage,
    object: &str,
    codec: &Codec,
    dest: &mut impl Write,
    dest_path: &Path,
    handle: &tokio::runtime::Handle,
) -> Result<(u64, Checksum)> {
    let mut write = |plain: &[u8]| {
        dest.write_all(plain)
            .map_err(|e| Error::io("unable to write", dest_path, e))
    };
    match decode_object(storage, object, codec, handle, &mut write) {
        Ok(decoded) => Ok((decoded.size, decoded.checksum)),
        Err(DecodeError::Open(e) | DecodeError::Sink(e)) => Err(e),
        // A storage failure surfaces as io::Error too; keep its text.
        Err(DecodeError::Decode(e)) => Err(Error::Corrupt(format!(
            "{object}: cannot be read back ({e}); the stored file is damaged or the key is wrong"
        ))),
    }
}

/// Size and BLAKE3 hex of a stored object's plaintext (read, decrypted, decompressed).
pub(crate) fn hash_object(
    storage: &Storage,
    object: &str,
    codec: &Codec,
    handle: &tokio::runtime::Handle,
) -> Result<(u64, Checksum)> {
    fetch_to_file(
        storage,
        object,
        codec,
        &mut io::sink(),
        Path::new(object),
        handle,
    )
}
