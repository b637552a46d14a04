//! Bundles: small files packed into one object, each sealed on its own so that restore reads one
//! by range, and read back in one pass in offset order.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use pgbr_manifest::{BundleRef, Checksum};
use pgbr_storage::Storage;

use super::codec::{open_piece, seal, Codec};
use super::pages::{check_pages, PageCheckSpec};
use super::read_ahead::OpenAhead;
use super::whole::Stored;
use crate::error::{Error, Result};

/// Buffer for reading a bundle's pieces in order: they are small, and a local object is read in
/// the caller's sizes.
const BUNDLE_READ_BUFFER: usize = 256 * 1024;

/// One small file packed into a bundle.
pub(crate) struct Bundled {
    pub stored: Stored,
    pub bundle: Option<BundleRef>,
}

/// Packs `files` into one bundle object; each file's bytes are sealed on their own, so restore
/// reads one file by range. Vanished files come back as `None`. No object for empty input.
pub(crate) fn store_bundle(
    files: &[(PathBuf, Option<PageCheckSpec>)],
    storage: &Storage,
    object: &str,
    id: u64,
    codec: &Codec,
    handle: &tokio::runtime::Handle,
) -> Result<Vec<Option<Bundled>>> {
    let ahead = OpenAhead::new(files.iter().map(|(path, _)| path.as_path()).collect());
    std::thread::scope(|scope| {
        scope.spawn(|| ahead.run());
        // Stops the opening thread however this ends (an error, a panic), before the scope joins it.
        let ahead = ahead.stop_when_dropped();
        let mut writer: Option<pgbr_storage::BlockingWriter> = None;
        let mut offset = 0u64;
        let mut out = Vec::with_capacity(files.len());
        for (index, (src, pages)) in files.iter().enumerate() {
            let data = match ahead.open(index).and_then(read_whole) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    out.push(None);
                    continue;
                }
                Err(e) => return Err(Error::io("unable to read", src, e)),
            };
            let mut page_errors = Vec::new();
            if let Some(spec) = pages {
                check_pages(&data, 0, spec, &mut page_errors);
            }
            let checksum = Checksum::of(&data);
            if data.is_empty() {
                out.push(Some(Bundled {
                    stored: Stored {
                        size: 0,
                        checksum,
                        stored_size: 0,
                        page_errors,
                    },
                    bundle: None,
                }));
                continue;
            }
            let sealed = seal(codec, &data).map_err(|e| Error::io("unable to store", src, e))?;
            let w = writer.get_or_insert_with(|| storage.blocking_writer(object, handle.clone()));
            w.write_all(&sealed)
                .map_err(|e| Error::io("unable to store", src, e))?;
            out.push(Some(Bundled {
                stored: Stored {
                    size: data.len() as u64,
                    checksum,
                    stored_size: sealed.len() as u64,
                    page_errors,
                },
                bundle: Some(BundleRef {
                    id,
                    offset,
                    length: sealed.len() as u64,
                }),
            }));
            offset += sealed.len() as u64;
        }
        if let Some(w) = writer {
            w.finish()?;
        }
        Ok(out)
    })
}

/// All of `file`, in one allocation of its size.
fn read_whole(mut file: File) -> io::Result<Vec<u8>> {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.read_to_end(&mut data)?;
    Ok(data)
}

/// Reads and opens one sealed piece of an object by range.
pub(crate) fn fetch_range(
    storage: &Storage,
    object: &str,
    offset: u64,
    length: u64,
    codec: &Codec,
    handle: &tokio::runtime::Handle,
) -> Result<Vec<u8>> {
    let raw = storage.get_range_blocking(object, offset..offset + length, handle)?;
    open_piece(codec, object, offset, &raw)
}

/// Reads the pieces of bundle `object` at `places` (offset and length of each, by offset) in one
/// buffered pass, handing each to `each(index in places, piece)`. Errors name the object.
pub(crate) fn read_bundle_pieces(
    storage: &Storage,
    object: &str,
    places: &[(u64, u64)],
    handle: &tokio::runtime::Handle,
    each: &mut dyn FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut reader = io::BufReader::with_capacity(
        BUNDLE_READ_BUFFER,
        storage.blocking_reader(object, handle.clone())?,
    );
    let short = || Error::Corrupt(format!("{object}: shorter than the manifest says"));
    let unreadable = |e: io::Error| Error::Corrupt(format!("{object}: cannot be read ({e})"));
    let mut position = 0u64;
    let mut piece = Vec::new();
    for (i, &(offset, length)) in places.iter().enumerate() {
        let gap = offset.checked_sub(position).ok_or_else(|| {
            Error::Corrupt(format!(
                "{object}: the manifest places two files' bytes over each other at byte {offset}"
            ))
        })?;
        let skipped =
            io::copy(&mut (&mut reader).take(gap), &mut io::sink()).map_err(unreadable)?;
        piece.clear();
        (&mut reader)
            .take(length)
            .read_to_end(&mut piece)
            .map_err(unreadable)?;
        if skipped != gap || piece.len() as u64 != length {
            return Err(short());
        }
        position = offset + length;
        each(i, &piece)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::read_ahead::OPEN_AHEAD;
    use crate::pipeline::testing::{codec, runtime};

    /// More files than are opened ahead, some gone before the bundle is stored, one empty: each
    /// piece reads back as its file, the gone ones are `None`, and nothing is held open after.
    #[test]
    fn bundle_of_files_opened_ahead_reads_back_each_file() {
        let rt = runtime();
        let storage = Storage::memory();
        let dir = tempfile::tempdir().expect("tempdir");
        let count = OPEN_AHEAD * 3 + 7;
        let content = |i: usize| -> Vec<u8> {
            let len = if i == 5 { 0 } else { (i * 37) % 9000 + 1 };
            (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
        };
        let gone = |i: usize| i % 50 == 3;
        let files: Vec<_> = (0..count)
            .map(|i| {
                let path = dir.path().join(format!("f{i}"));
                if !gone(i) {
                    std::fs::write(&path, content(i)).expect("write");
                }
                (path, None)
            })
            .collect();
        let stored =
            store_bundle(&files, &storage, "b/1", 1, &codec(), rt.handle()).expect("store_bundle");
        assert_eq!(stored.len(), count);
        for (i, piece) in stored.iter().enumerate() {
            let Some(piece) = piece else {
                assert!(gone(i), "file {i} exists but was not stored");
                continue;
            };
            assert!(!gone(i), "file {i} was gone but is stored");
            assert_eq!(piece.stored.checksum, Checksum::of(&content(i)), "file {i}");
            match &piece.bundle {
                None => assert!(content(i).is_empty(), "file {i} has no piece"),
                Some(b) => {
                    let back =
                        fetch_range(&storage, "b/1", b.offset, b.length, &codec(), rt.handle())
                            .expect("fetch_range");
                    assert_eq!(back, content(i), "file {i}");
                }
            }
        }
        let open_fds = std::fs::read_dir("/proc/self/fd").expect("fds").count();
        drop(stored);
        assert!(
            open_fds < 64,
            "{open_fds} descriptors open after the bundle"
        );
    }
}
