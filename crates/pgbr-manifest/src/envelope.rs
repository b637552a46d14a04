//! The versioned, self-checksummed JSON envelope shared by every metadata file.
//!
//! ```text
//! {"format":1,"kind":"backup.info","content":{...},"checksum":"<blake3 hex>"}
//! {"format":1,"manifest":{...},"checksum":"<blake3 hex>"}
//! ```
//!
//! The checksum is BLAKE3 over the compact JSON serialization of the content
//! (fields in declaration order, opaque JSON objects with their keys sorted).
//! On load, the content is parsed strictly (unknown fields are refused) and
//! re-serialized the same way to recompute the checksum, so any change to the
//! content that survives parsing is detected.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

use crate::Error;

/// Compact, deterministic serialization and its BLAKE3 hex.
pub(crate) fn content_checksum<T: Serialize>(content: &T) -> Result<String, Error> {
    let compact = serde_json::to_vec(content)?;
    Ok(blake3::hash(&compact).to_hex().to_string())
}

#[derive(Serialize)]
struct OutKind<'a, T> {
    format: u32,
    kind: &'a str,
    content: &'a T,
    checksum: String,
}

#[derive(Serialize)]
struct OutManifest<'a, T> {
    format: u32,
    manifest: &'a T,
    checksum: String,
}

#[derive(Deserialize)]
struct Header {
    format: u64,
    #[serde(default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InKind<T> {
    #[allow(dead_code)]
    format: u64,
    #[allow(dead_code)]
    kind: String,
    content: T,
    checksum: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InManifest<T> {
    #[allow(dead_code)]
    format: u64,
    manifest: T,
    checksum: String,
}

fn pretty<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = serde_json::to_vec_pretty(value)?;
    out.push(b'\n');
    Ok(out)
}

fn check_format(found: u64, supported: u32) -> Result<(), Error> {
    if found != u64::from(supported) {
        return Err(Error::UnsupportedFormat { found, supported });
    }
    Ok(())
}

fn verify<T: Serialize>(content: &T, recorded: String) -> Result<(), Error> {
    let computed = content_checksum(content)?;
    if computed != recorded {
        return Err(Error::ChecksumMismatch {
            expected: recorded,
            found: computed,
        });
    }
    Ok(())
}

/// Writes `{"format":..,"kind":..,"content":..,"checksum":..}`.
pub(crate) fn write_kind<T: Serialize>(
    format: u32,
    kind: &str,
    content: &T,
) -> Result<Vec<u8>, Error> {
    let checksum = content_checksum(content)?;
    pretty(&OutKind {
        format,
        kind,
        content,
        checksum,
    })
}

/// Reads an envelope written by [`write_kind`], checking format, kind and checksum.
pub(crate) fn read_kind<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    format: u32,
    kind: &str,
) -> Result<T, Error> {
    let header: Header = serde_json::from_slice(bytes)?;
    check_format(header.format, format)?;
    match header.kind {
        Some(found) if found == kind => {}
        Some(found) => {
            return Err(Error::WrongKind {
                expected: kind.to_string(),
                found,
            })
        }
        None => {
            return Err(Error::WrongKind {
                expected: kind.to_string(),
                found: "(none; is this a backup.manifest?)".to_string(),
            })
        }
    }
    let env: InKind<T> = serde_json::from_slice(bytes)?;
    verify(&env.content, env.checksum)?;
    Ok(env.content)
}

/// Writes `{"format":..,"manifest":..,"checksum":..}`.
pub(crate) fn write_manifest<T: Serialize>(format: u32, manifest: &T) -> Result<Vec<u8>, Error> {
    let checksum = content_checksum(manifest)?;
    pretty(&OutManifest {
        format,
        manifest,
        checksum,
    })
}

/// Reads an envelope written by [`write_manifest`], checking format and checksum.
pub(crate) fn read_manifest<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    format: u32,
) -> Result<T, Error> {
    let header: Header = serde_json::from_slice(bytes)?;
    check_format(header.format, format)?;
    if let Some(found) = header.kind {
        return Err(Error::WrongKind {
            expected: "backup.manifest".to_string(),
            found,
        });
    }
    let env: InManifest<T> = serde_json::from_slice(bytes)?;
    verify(&env.manifest, env.checksum)?;
    Ok(env.manifest)
}

/// Serializes an opaque JSON value with object keys sorted at every level, so
/// the checksum does not depend on serde_json's `preserve_order` feature.
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
