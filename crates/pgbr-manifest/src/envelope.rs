//! The versioned, self-checksummed JSON envelope shared by every metadata file.
//!
//! ```text
//! {
//!   "format": 2,
//!   "kind": "backup.info",
//!   "content": {...},
//!   "checksum": "<blake3 hex>"
//! }
//! ```
//!
//! (a manifest has `"manifest"` in place of `"content"` and no `"kind"`).
//!
//! The checksum is BLAKE3 over the exact bytes of the content value as they
//! appear in the file, from its opening `{` to its closing `}`. Writing lays
//! the content out once (see [`Layout`]), hashes that byte range and appends
//! the checksum; loading finds the content's byte range in the envelope,
//! hashes it (on a second thread for large content) while parsing it strictly
//! (unknown fields are refused), so any change to the content is detected,
//! whitespace included. A manifest can also be read from a stream
//! ([`crate::streamed`]): parsed as it arrives and hashed on the way, so that
//! its text is never held.

use std::io;

use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::ser::Formatter;
use serde_json::value::RawValue;

use crate::Error;

/// Containers nested this deep or less (the envelope is 1, the content 2, its
/// fields 3) are written one item per line with two-space indentation; deeper
/// ones (the entries of `files`, `backups`, ...) are written compactly, so
/// every entry is one line.
const PRETTY_DEPTH: usize = 3;

/// Content larger than this is hashed on a second thread while it is parsed.
const PARALLEL_HASH_MIN: usize = 1 << 20;

/// serde_json formatter: pretty down to [`PRETTY_DEPTH`], compact below.
struct Layout {
    depth: usize,
    has_value: bool,
}

impl Layout {
    fn pretty(&self) -> bool {
        self.depth <= PRETTY_DEPTH
    }

    fn indent<W: ?Sized + io::Write>(&self, w: &mut W, levels: usize) -> io::Result<()> {
        for _ in 0..levels {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    fn begin<W: ?Sized + io::Write>(&mut self, w: &mut W, open: &[u8]) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(open)
    }

    fn end<W: ?Sized + io::Write>(&mut self, w: &mut W, close: &[u8]) -> io::Result<()> {
        if self.pretty() && self.has_value {
            w.write_all(b"\n")?;
            self.indent(w, self.depth - 1)?;
        }
        self.depth -= 1;
        w.write_all(close)
    }

    fn item<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if self.pretty() {
            w.write_all(if first { b"\n" } else { b",\n" })?;
            self.indent(w, self.depth)
        } else if first {
            Ok(())
        } else {
            w.write_all(b",")
        }
    }
}

impl Formatter for Layout {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.begin(w, b"[")
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.end(w, b"]")
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.begin(w, b"{")
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.end(w, b"}")
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(if self.pretty() { b": " } else { b":" })
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Passes bytes on to `inner`, hashing them while `hasher` is set.
struct Hashing<W> {
    inner: W,
    hasher: Option<blake3::Hasher>,
}

impl<W: io::Write> io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Streams the envelope into `w`: `format`, `kind` (info files only), the content under
/// `body`, then its checksum (hashed as the content goes by, so nothing is held in memory).
/// Returns `w` and the checksum.
fn write_to<T: Serialize + ?Sized, W: io::Write>(
    format: u32,
    kind: Option<&str>,
    body: &str,
    content: &T,
    w: W,
) -> Result<(W, blake3::Hash), Error> {
    use io::Write as _;
    let io_err = serde_json::Error::io;
    let mut out = Hashing {
        inner: w,
        hasher: None,
    };
    out.write_all(format!("{{\n  \"format\": {format},\n").as_bytes())
        .map_err(io_err)?;
    if let Some(kind) = kind {
        out.write_all(b"  \"kind\": ").map_err(io_err)?;
        serde_json::to_writer(&mut out, kind)?;
        out.write_all(b",\n").map_err(io_err)?;
    }
    out.write_all(format!("  \"{body}\": ").as_bytes())
        .map_err(io_err)?;
    out.hasher = Some(blake3::Hasher::new());
    {
        // serde_json writes in small pieces: they are gathered before the hasher and `w`.
        let mut buffered = io::BufWriter::with_capacity(64 * 1024, &mut out);
        let mut ser = serde_json::Serializer::with_formatter(
            &mut buffered,
            Layout {
                depth: 1,
                has_value: false,
            },
        );
        content.serialize(&mut ser)?;
        buffered.flush().map_err(io_err)?;
    }
    let checksum = out
        .hasher
        .take()
        .map(|h| h.finalize())
        .unwrap_or_else(|| blake3::hash(b""));
    out.write_all(b",\n  \"checksum\": \"").map_err(io_err)?;
    out.write_all(checksum.to_hex().as_bytes())
        .map_err(io_err)?;
    out.write_all(b"\"\n}\n").map_err(io_err)?;
    Ok((out.inner, checksum))
}

/// Writes the envelope into a buffer of `capacity` bytes (see [`write_to`]).
fn write<T: Serialize + ?Sized>(
    format: u32,
    kind: Option<&str>,
    body: &str,
    content: &T,
    capacity: usize,
) -> Result<Vec<u8>, Error> {
    write_to(format, kind, body, content, Vec::with_capacity(capacity)).map(|(bytes, _)| bytes)
}

/// Writes `{"format":..,"kind":..,"content":..,"checksum":..}`.
pub(crate) fn write_kind<T: Serialize>(
    format: u32,
    kind: &str,
    content: &T,
) -> Result<Vec<u8>, Error> {
    write(format, Some(kind), "content", content, 4096)
}

/// Writes `{"format":..,"manifest":..,"checksum":..}` into a buffer of
/// `capacity` bytes (an estimate of the output size).
pub(crate) fn write_manifest<T: Serialize + ?Sized>(
    format: u32,
    manifest: &T,
    capacity: usize,
) -> Result<Vec<u8>, Error> {
    write(format, None, "manifest", manifest, capacity)
}

/// Streams `{"format":..,"manifest":..,"checksum":..}` into `w` and returns it with the
/// checksum.
pub(crate) fn write_manifest_to<T: Serialize + ?Sized, W: io::Write>(
    format: u32,
    manifest: &T,
    w: W,
) -> Result<(W, blake3::Hash), Error> {
    write_to(format, None, "manifest", manifest, w)
}

/// Reads an envelope written by [`write_kind`], checking format, kind and checksum.
pub(crate) fn read_kind<T: DeserializeOwned>(
    bytes: &[u8],
    format: u32,
    kind: &str,
) -> Result<T, Error> {
    read(bytes, format, Some(kind)).map(|(content, _)| content)
}

/// Reads an envelope written by [`write_manifest`], checking format and checksum; returns the
/// content and its checksum.
pub(crate) fn read_manifest<T: DeserializeOwned>(
    bytes: &[u8],
    format: u32,
) -> Result<(T, blake3::Hash), Error> {
    read(bytes, format, None)
}

/// The content's hash against the checksum the envelope records.
pub(crate) fn check_checksum(recorded: &str, computed: &blake3::Hash) -> Result<(), Error> {
    let computed = computed.to_hex();
    if computed.as_str() != recorded {
        return Err(Error::ChecksumMismatch {
            expected: recorded.to_string(),
            found: computed.to_string(),
        });
    }
    Ok(())
}

/// A JSON error about the envelope's shape.
pub(crate) fn shape(msg: String) -> Error {
    Error::Json(de::Error::custom(msg))
}

fn check_format(found: u64, supported: u32) -> Result<(), Error> {
    if found != u64::from(supported) {
        return Err(Error::UnsupportedFormat { found, supported });
    }
    Ok(())
}

/// `kind`: the info file kind expected, `None` for a manifest. Returns the content and its
/// checksum.
fn read<T: DeserializeOwned>(
    bytes: &[u8],
    format: u32,
    kind: Option<&str>,
) -> Result<(T, blake3::Hash), Error> {
    let env: Envelope<'_> = serde_json::from_slice(bytes)?;
    let found = env
        .format
        .ok_or_else(|| shape("missing field `format`".into()))?;
    check_format(found, format)?;
    let mut problem = env.problem;
    match (kind, env.kind) {
        (None, None) => {}
        (None, Some(Some(found))) => {
            return Err(Error::WrongKind {
                expected: "backup.manifest".to_string(),
                found,
            })
        }
        (None, Some(None)) => {
            problem.get_or_insert_with(|| "unknown field `kind`".into());
        }
        (Some(expected), Some(Some(found))) if found == expected => {}
        (Some(expected), Some(Some(found))) => {
            return Err(Error::WrongKind {
                expected: expected.to_string(),
                found,
            })
        }
        (Some(expected), _) => {
            return Err(Error::WrongKind {
                expected: expected.to_string(),
                found: "(none; is this a backup.manifest?)".to_string(),
            })
        }
    }
    if let Some(problem) = problem {
        return Err(shape(problem));
    }
    let (name, body, other, other_name) = match kind {
        Some(_) => ("content", env.content, env.manifest, "manifest"),
        None => ("manifest", env.manifest, env.content, "content"),
    };
    if other.is_some() {
        return Err(shape(format!("unknown field `{other_name}`")));
    }
    let body = body.ok_or_else(|| shape(format!("missing field `{name}`")))?;
    let recorded = env
        .checksum
        .ok_or_else(|| shape("missing field `checksum`".into()))?;
    let recorded: String = serde_json::from_str(recorded.get())?;
    let (content, computed) = parse_and_hash::<T>(body.get());
    let content = content?;
    check_checksum(&recorded, &computed)?;
    Ok((content, computed))
}

/// Parses `text` strictly and computes its BLAKE3, at the same time when it is large.
fn parse_and_hash<T: DeserializeOwned>(text: &str) -> (serde_json::Result<T>, blake3::Hash) {
    if text.len() < PARALLEL_HASH_MIN {
        return (serde_json::from_str(text), blake3::hash(text.as_bytes()));
    }
    std::thread::scope(|s| {
        let hasher = std::thread::Builder::new()
            .name("pgbr-manifest-hash".into())
            .spawn_scoped(s, || blake3::hash(text.as_bytes()));
        let parsed = serde_json::from_str(text);
        let hash = match hasher {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => blake3::hash(text.as_bytes()),
        };
        (parsed, hash)
    })
}

/// The envelope's fields, the content and checksum left as raw JSON text.
/// Parsed leniently (unknown fields are noted in `problem`) so that the format
/// version and kind are checked first.
#[derive(Default)]
struct Envelope<'a> {
    format: Option<u64>,
    kind: Option<Option<String>>,
    manifest: Option<&'a RawValue>,
    content: Option<&'a RawValue>,
    checksum: Option<&'a RawValue>,
    problem: Option<String>,
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a pgbr metadata envelope (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut env = Envelope::default();
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "format" => {
                    if env.format.is_some() {
                        return Err(de::Error::duplicate_field("format"));
                    }
                    env.format = Some(map.next_value()?);
                    continue;
                }
                "kind" => {
                    if env.kind.is_some() {
                        return Err(de::Error::duplicate_field("kind"));
                    }
                    env.kind = Some(map.next_value()?);
                    continue;
                }
                "manifest" => &mut env.manifest,
                "content" => &mut env.content,
                "checksum" => &mut env.checksum,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    env.problem
                        .get_or_insert_with(|| format!("unknown field `{key}`"));
                    continue;
                }
            };
            let value: &'de RawValue = map.next_value()?;
            if slot.replace(value).is_some() {
                env.problem
                    .get_or_insert_with(|| format!("duplicate field `{key}`"));
            }
        }
        Ok(env)
    }
}

/// Serializes an opaque JSON value with object keys sorted at every level, so
/// the output does not depend on serde_json's `preserve_order` feature.
pub(crate) fn sorted_json<S: Serializer>(
    value: &Option<serde_json::Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        None => serializer.serialize_none(),
        Some(v) => serializer.serialize_some(&Sorted(v)),
    }
}

struct Sorted<'a>(&'a serde_json::Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        use serde_json::Value;
        match self.0 {
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Sorted(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = serializer.serialize_map(Some(keys.len()))?;
                for key in keys {
                    if let Some(v) = map.get(key) {
                        out.serialize_entry(key, &Sorted(v))?;
                    }
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}
