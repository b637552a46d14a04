//! Loading a manifest from a stream (a decompressor) without holding its text, at about the
//! speed of parsing it from a slice.
//!
//! serde_json parses an `io::Read` one byte at a time, with line and column bookkeeping for each
//! byte: three times slower than parsing a slice. A manifest's bulk is its entry arrays, whose
//! items are small. So [`read_manifest_from`] holds a window of the text, reads the structure of
//! the envelope and of the manifest object itself (braces, keys, colons, commas), and hands each
//! value in it (the backup's metadata, each path, link and file) to serde_json as a slice of the
//! window. A value cut by the end of the window is parsed again once more text is in.
//!
//! The same texts load as with [`crate::envelope::read_manifest`], to the same manifest, with
//! the same checks: the format first, the manifest's checksum over its exact text, unknown and
//! duplicate fields refused.

use std::io::{self, Read};

use serde::de::{DeserializeOwned, Error as _, IgnoredAny};

use crate::envelope::{check_checksum, shape};
use crate::manifest::Manifest;
use crate::Error;

/// Bytes of text held at first; the window doubles while a single value fills half of it.
const WINDOW: usize = 256 * 1024;

/// The fields of [`Manifest`], as its derived `Deserialize` names them in errors.
const MANIFEST_FIELDS: &[&str] = &["backup", "targets", "paths", "links", "files"];

/// Reads an envelope written by `envelope::write_manifest` from `reader`, checking format and
/// checksum like `envelope::read_manifest`. The envelope's fields are checked as they come (the
/// format first, as written), then the checksum once the manifest has gone by. Returns the
/// manifest and its checksum.
pub(crate) fn read_manifest_from<R: Read>(
    reader: R,
    format: u32,
) -> Result<(Manifest, blake3::Hash), Error> {
    read_with_window(reader, format, WINDOW)
}

fn read_with_window<R: Read>(
    reader: R,
    format: u32,
    window: usize,
) -> Result<(Manifest, blake3::Hash), Error> {
    let mut text = Window::new(reader, window);
    let mut found_format = None;
    let mut manifest = None;
    let mut checksum: Option<String> = None;
    let mut kind_seen = false;
    // The first unknown or duplicate field: refused once the format has been checked.
    let mut problem: Option<String> = None;
    text.expect(b'{', "`{` opening the manifest envelope")?;
    let mut more = text.next_byte()? != Some(b'}');
    while more {
        let key: String = text.value()?;
        text.expect(b':', "`:` after a key of the envelope")?;
        match key.as_str() {
            "format" => {
                if found_format.is_some() {
                    return Err(shape("duplicate field `format`".into()));
                }
                let found: u64 = text.value()?;
                if found != u64::from(format) {
                    return Err(Error::UnsupportedFormat {
                        found,
                        supported: format,
                    });
                }
                found_format = Some(found);
            }
            "kind" => {
                if kind_seen {
                    return Err(shape("duplicate field `kind`".into()));
                }
                kind_seen = true;
                match text.value::<Option<String>>()? {
                    Some(found) => {
                        return Err(Error::WrongKind {
                            expected: "backup.manifest".to_string(),
                            found,
                        })
                    }
                    None => {
                        problem.get_or_insert_with(|| "unknown field `kind`".into());
                    }
                }
            }
            "manifest" if manifest.is_none() => manifest = Some(read_hashed_manifest(&mut text)?),
            "checksum" if checksum.is_none() => checksum = Some(text.value()?),
            "manifest" | "checksum" => {
                text.value::<IgnoredAny>()?;
                problem.get_or_insert_with(|| format!("duplicate field `{key}`"));
            }
            _ => {
                text.value::<IgnoredAny>()?;
                problem.get_or_insert_with(|| format!("unknown field `{key}`"));
            }
        }
        more = text.comma_or_close(b'}', "the envelope")?;
    }
    if let Some(byte) = text.next_byte()? {
        return Err(text.unexpected(Some(byte), "the end of the text after the envelope"));
    }
    if found_format.is_none() {
        return Err(shape("missing field `format`".into()));
    }
    if let Some(problem) = problem {
        return Err(shape(problem));
    }
    let (manifest, computed) = manifest.ok_or_else(|| shape("missing field `manifest`".into()))?;
    let recorded = checksum.ok_or_else(|| shape("missing field `checksum`".into()))?;
    check_checksum(&recorded, &computed)?;
    Ok((manifest, computed))
}

/// Parses the manifest object, hashing its text from its first byte to its last.
fn read_hashed_manifest<R: Read>(text: &mut Window<R>) -> Result<(Manifest, blake3::Hash), Error> {
    let first = text.next_byte()?;
    text.start_hash();
    let manifest = if first == Some(b'{') {
        text.skip_byte();
        read_manifest_fields(text)?
    } else {
        // Not an object: serde_json says what it thinks of it (or reads the struct from an
        // array, as it would from a slice).
        text.value()?
    };
    Ok((manifest, text.stop_hash()))
}

/// The fields of the manifest object, its `{` consumed: each entry array an item at a time.
fn read_manifest_fields<R: Read>(text: &mut Window<R>) -> Result<Manifest, Error> {
    let mut backup = None;
    let mut targets = None;
    let mut paths = None;
    let mut links = None;
    let mut files = None;
    let mut more = text.next_byte()? != Some(b'}');
    while more {
        let key: String = text.value()?;
        text.expect(b':', "`:` after a key of the manifest")?;
        match key.as_str() {
            "backup" => set_once(&mut backup, "backup", || text.value())?,
            "targets" => set_once(&mut targets, "targets", || text.items())?,
            "paths" => set_once(&mut paths, "paths", || text.items())?,
            "links" => set_once(&mut links, "links", || text.items())?,
            "files" => set_once(&mut files, "files", || text.items())?,
            other => return Err(serde_json::Error::unknown_field(other, MANIFEST_FIELDS).into()),
        }
        more = text.comma_or_close(b'}', "the manifest")?;
    }
    let missing = |field: &'static str| Error::Json(serde_json::Error::missing_field(field));
    Ok(Manifest {
        backup: backup.ok_or_else(|| missing("backup"))?,
        targets: targets.ok_or_else(|| missing("targets"))?,
        paths: paths.ok_or_else(|| missing("paths"))?,
        links: links.ok_or_else(|| missing("links"))?,
        files: files.ok_or_else(|| missing("files"))?,
    })
}

/// Fills `slot` with what `read` returns, refusing a field met twice before reading it again.
fn set_once<T>(
    slot: &mut Option<T>,
    field: &'static str,
    read: impl FnOnce() -> Result<T, Error>,
) -> Result<(), Error> {
    if slot.is_some() {
        return Err(serde_json::Error::duplicate_field(field).into());
    }
    *slot = Some(read()?);
    Ok(())
}

/// A window on the text read from `source`: `buffer[at..end]` is read and not yet parsed.
struct Window<R> {
    source: R,
    buffer: Vec<u8>,
    at: usize,
    end: usize,
    /// The source has no more bytes.
    exhausted: bool,
    /// Bytes of the text dropped from the front of the buffer, for positions in errors.
    dropped: u64,
    /// Between [`Window::start_hash`] and [`Window::stop_hash`]: the hash of the text parsed
    /// so far, up to `buffer[hashed_to]`.
    hasher: Option<blake3::Hasher>,
    hashed_to: usize,
}

impl<R: Read> Window<R> {
    fn new(source: R, capacity: usize) -> Window<R> {
        Window {
            source,
            buffer: vec![0; capacity.max(1)],
            at: 0,
            end: 0,
            exhausted: false,
            dropped: 0,
            hasher: None,
            hashed_to: 0,
        }
    }

    /// Reads more of the text behind what is not parsed yet, moving that to the front and
    /// doubling the buffer when it fills half of it. False when the source had nothing more.
    fn refill(&mut self) -> Result<bool, Error> {
        if self.exhausted {
            return Ok(false);
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&self.buffer[self.hashed_to..self.at]);
        }
        self.buffer.copy_within(self.at..self.end, 0);
        self.dropped += self.at as u64;
        self.end -= self.at;
        self.at = 0;
        self.hashed_to = 0;
        if self.end * 2 > self.buffer.len() {
            self.buffer.resize(self.buffer.len() * 2, 0);
        }
        let before = self.end;
        while self.end < self.buffer.len() {
            match self.source.read(&mut self.buffer[self.end..]) {
                Ok(0) => {
                    self.exhausted = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Read(e)),
            }
        }
        Ok(self.end > before)
    }

    /// The next byte that is not JSON whitespace, not consumed; `None` at the end of the text.
    fn next_byte(&mut self) -> Result<Option<u8>, Error> {
        loop {
            while let Some(&byte) = self.buffer[..self.end].get(self.at) {
                if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
                    return Ok(Some(byte));
                }
                self.at += 1;
            }
            if !self.refill()? {
                return Ok(None);
            }
        }
    }

    /// Consumes the byte [`Window::next_byte`] returned.
    fn skip_byte(&mut self) {
        self.at += 1;
    }

    /// Consumes `byte`, which must come next (after whitespace); `what` names it in the error.
    fn expect(&mut self, byte: u8, what: &str) -> Result<(), Error> {
        match self.next_byte()? {
            Some(found) if found == byte => {
                self.skip_byte();
                Ok(())
            }
            found => Err(self.unexpected(found, what)),
        }
    }

    /// After a member or an item: consumes a `,` (true: more follow) or `close` (false).
    fn comma_or_close(&mut self, close: u8, within: &str) -> Result<bool, Error> {
        match self.next_byte()? {
            Some(b',') => {
                self.skip_byte();
                Ok(true)
            }
            Some(found) if found == close => {
                self.skip_byte();
                Ok(false)
            }
            found => {
                Err(self.unexpected(found, &format!("`,` or `{}` in {within}", close as char)))
            }
        }
    }

    fn unexpected(&self, found: Option<u8>, expected: &str) -> Error {
        let at = self.dropped + self.at as u64;
        shape(match found {
            Some(byte) => format!(
                "expected {expected} at byte {at} of the text, found {:?}",
                byte as char
            ),
            None => format!("the text ends at byte {at}, where {expected} was expected"),
        })
    }

    /// Parses the next JSON value as a `T`, from the window.
    fn value<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        if self.next_byte()?.is_none() {
            return Err(self.unexpected(None, "a value"));
        }
        loop {
            let text = &self.buffer[self.at..self.end];
            let mut values = serde_json::Deserializer::from_slice(text).into_iter::<T>();
            match values.next() {
                // A value that ends where the window does may go on (a number), unless the
                // text ends there too.
                Some(Ok(value)) if values.byte_offset() < text.len() || self.exhausted => {
                    self.at += values.byte_offset();
                    return Ok(value);
                }
                Some(Err(e)) if !e.is_eof() || self.exhausted => {
                    let at = self.dropped + self.at as u64;
                    return Err(shape(format!(
                        "{e}, in the value that starts at byte {at} of the text"
                    )));
                }
                // Only whitespace: not after next_byte, but never loop on it.
                None if self.exhausted => return Err(self.unexpected(None, "a value")),
                _ => {}
            }
            self.refill()?;
        }
    }

    /// Parses the next JSON value as a `Vec<T>`: an array an item at a time.
    fn items<T: DeserializeOwned>(&mut self) -> Result<Vec<T>, Error> {
        if self.next_byte()? != Some(b'[') {
            // null, or worse: serde_json says what it thinks of it.
            return self.value();
        }
        self.skip_byte();
        let mut items = Vec::new();
        let mut more = self.next_byte()? != Some(b']');
        if !more {
            self.skip_byte();
        }
        while more {
            items.push(self.value()?);
            more = self.comma_or_close(b']', "an array")?;
        }
        Ok(items)
    }

    /// Starts hashing the text from the next byte on.
    fn start_hash(&mut self) {
        self.hasher = Some(blake3::Hasher::new());
        self.hashed_to = self.at;
    }

    /// The hash of the text parsed since [`Window::start_hash`].
    fn stop_hash(&mut self) -> blake3::Hash {
        let mut hasher = self.hasher.take().unwrap_or_default();
        hasher.update(&self.buffer[self.hashed_to..self.at]);
        hasher.finalize()
    }
}

impl Manifest {
    /// [`Manifest::from_bytes`] from a stream (a decompressor, a file): the manifest is
    /// parsed as its bytes arrive and hashed on the way; no more of its text is held than its
    /// largest entry. The same manifests load, with the same checks.
    pub fn from_reader<R: std::io::Read>(reader: R) -> Result<Manifest, Error> {
        Self::from_reader_with_checksum(reader).map(|(m, _)| m)
    }

    /// [`Manifest::from_reader`], also returning the manifest's checksum.
    pub fn from_reader_with_checksum<R: std::io::Read>(
        reader: R,
    ) -> Result<(Manifest, crate::Checksum), Error> {
        let (manifest, hash) = read_manifest_from(reader, crate::MANIFEST_FORMAT)?;
        manifest.validate()?;
        Ok((manifest, crate::Checksum::from(hash)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{BackupMeta, LinkEntry, PathEntry, Target, MANIFEST_FORMAT};
    use crate::{BackupType, BlockHash, BlockMapRef, BlockRef, FileEntry};

    /// A valid manifest whose text has escapes, numbers at many places, a link, and one file
    /// with a block map of `blocks` blocks.
    fn manifest_with_block_map(blocks: u64) -> Manifest {
        let file = |name: &str, size: u64, block_map| FileEntry {
            target: "pg_data".into(),
            name: name.into(),
            size,
            mtime: 1_795_641_000,
            mode: 0o600,
            checksum: blake3::hash(name.as_bytes()).into(),
            reference: None,
            stored_size: 12,
            bundle: None,
            block_map,
            page_errors: vec![3, 70_000],
        };
        let path = |name: &str| PathEntry {
            target: "pg_data".into(),
            name: name.into(),
            mode: 0o700,
        };
        let map = BlockMapRef {
            block_size: 8192,
            blocks: (0..blocks)
                .map(|i| BlockRef {
                    hash: BlockHash([i as u8; 16]),
                    reference: None,
                    offset: i * 100,
                    length: 100,
                    base: None,
                    chain: None,
                })
                .collect(),
        };
        Manifest {
            backup: BackupMeta {
                label: crate::new_label(BackupType::Full, None, 1_795_641_390),
                backup_type: BackupType::Full,
                pg_version: 15,
                db_id: 1,
                backup_label: "START WAL LOCATION: 0/2000028\n\"quoted\" \\ tab\t".into(),
                ..BackupMeta::default()
            },
            targets: vec![Target {
                name: "pg_data".into(),
                path: "/var/lib/postgresql/15/main".into(),
                tablespace_oid: None,
                tablespace_name: None,
            }],
            paths: vec![path(""), path("base"), path("base/1")],
            links: vec![LinkEntry {
                target: "pg_data".into(),
                name: "pg_wal".into(),
                destination: "/srv/wal".into(),
            }],
            files: vec![
                file("PG_VERSION", 3, None),
                file("base/1/99999", blocks * 8192, Some(map)),
            ],
        }
    }

    #[test]
    fn every_window_size_loads_what_a_slice_does() {
        let bytes = manifest_with_block_map(40).to_bytes().unwrap();
        let whole = Manifest::from_bytes(&bytes).unwrap();
        // The edits of the property test below start from a text that loads.
        assert_eq!(
            Manifest::from_bytes(&edited(&bytes, 0, 0, b"")).unwrap(),
            whole
        );
        // Small windows cut every value at every place, numbers included, and grow.
        for window in 1..300 {
            let streamed = read_with_window(&bytes[..], MANIFEST_FORMAT, window)
                .and_then(|(m, _)| m.validate().map(|()| m))
                .unwrap_or_else(|e| panic!("window {window}: {e}"));
            assert_eq!(streamed, whole, "window {window}");
        }
    }

    #[test]
    fn a_cut_text_is_refused_at_every_length() {
        let bytes = manifest_with_block_map(3).to_bytes().unwrap();
        let text = bytes.trim_ascii_end();
        for len in 0..text.len() {
            for window in [7, 64, WINDOW] {
                assert!(
                    read_with_window(&text[..len], MANIFEST_FORMAT, window).is_err(),
                    "{len} bytes of {} loaded (window {window})",
                    text.len()
                );
            }
        }
    }

    #[test]
    fn a_failing_source_is_named_as_such() {
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt block"));
                }
                let n = out.len().min(self.0.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let bytes = manifest_with_block_map(3).to_bytes().unwrap();
        let err = Manifest::from_reader(Failing(&bytes[..bytes.len() / 2])).unwrap_err();
        assert!(matches!(err, Error::Read(_)), "{err}");
        assert!(err.to_string().contains("corrupt block"), "{err}");
    }

    /// The manifest's text edited at `at` (`insert` put there, `remove` bytes taken out), with
    /// the checksum recomputed so that only the parser decides.
    fn edited(bytes: &[u8], at: usize, remove: usize, insert: &[u8]) -> Vec<u8> {
        let text = std::str::from_utf8(bytes).unwrap();
        let start = text.find("\"manifest\":").unwrap() + "\"manifest\":".len();
        let end = text.rfind(",\n  \"checksum\"").unwrap();
        let body = text[start..end].trim_start().as_bytes();
        let at = at % (body.len() + 1);
        let mut new_body = body[..at].to_vec();
        new_body.extend_from_slice(insert);
        new_body.extend_from_slice(&body[(at + remove).min(body.len())..]);
        let mut out = text.as_bytes()[..start].to_vec();
        out.extend_from_slice(&new_body);
        out.extend_from_slice(
            format!(",\"checksum\":\"{}\"}}", blake3::hash(&new_body).to_hex()).as_bytes(),
        );
        out
    }

    proptest::proptest! {
        #[test]
        fn edited_manifests_load_as_from_a_slice(
            at in 0usize..5000,
            remove in 0usize..3,
            insert in proptest::sample::select(vec![
                &b""[..], b" ", b"\n\t", b",", b"0", b"-", b"\"", b"\\", b"]", b"}", b"[", b"{",
                b"null", b"1e3", b"\"x\":1,", b"\"files\":[],", b"\"backup\":{},",
            ]),
            window in 1usize..600,
        ) {
            let bytes = edited(&manifest_with_block_map(5).to_bytes().unwrap(), at, remove, insert);
            let whole = Manifest::from_bytes(&bytes);
            let streamed = read_with_window(&bytes[..], MANIFEST_FORMAT, window)
                .and_then(|(m, _)| m.validate().map(|()| m));
            proptest::prop_assert_eq!(whole.as_ref().ok(), streamed.as_ref().ok(),
                "{:?} / {:?}", whole.as_ref().err(), streamed.as_ref().err());
            if let (Err(a), Err(b)) = (&whole, &streamed) {
                proptest::prop_assert_eq!(std::mem::discriminant(a), std::mem::discriminant(b),
                    "{} / {}", a, b);
            }
        }
    }
}
