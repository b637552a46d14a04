//! Fixed-size byte strings written as lowercase hex: what [`crate::Checksum`] and
//! [`crate::BlockHash`] share (parsing, display, serde).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::Serializer;

/// The longest byte string written here (a checksum's 32 bytes).
const MAX_BYTES: usize = 32;

/// The `N` bytes written as exactly `2 * N` lowercase hex digits in `text`, if they are.
///
/// One pass through a table, checked once at the end: a manifest holds one checksum per file
/// and one hash per block, and checking then decoding them (hex's decoder) costs a tenth of
/// loading one.
pub(crate) fn parse_lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    let mut seen = 0u8;
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
        seen |= high | low;
        *byte = high << 4 | low;
    }
    (seen & NOT_HEX == 0).then_some(bytes)
}

/// [`NIBBLE`]'s entry for a byte that is not a lowercase hex digit.
const NOT_HEX: u8 = 0x10;

/// Each byte's value as a lowercase hex digit, or [`NOT_HEX`].
const NIBBLE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Hands `bytes` (at most [`MAX_BYTES`]) as lowercase hex text to `out`, without allocating.
fn with_hex<T, E>(
    bytes: &[u8],
    error: impl Fn() -> E,
    out: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, E> {
    let mut buf = [0u8; 2 * MAX_BYTES];
    let text = buf.get_mut(..2 * bytes.len()).ok_or_else(&error)?;
    hex::encode_to_slice(bytes, text).map_err(|_| error())?;
    out(std::str::from_utf8(text).map_err(|_| error())?)
}

/// Writes `bytes` as lowercase hex (for `Display`).
pub(crate) fn fmt(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    with_hex(bytes, || fmt::Error, |text| f.write_str(text))
}

/// Serializes `bytes` as a string of lowercase hex.
pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    with_hex(
        bytes,
        || serde::ser::Error::custom("hex text longer than the buffer"),
        |text| serializer.serialize_str(text),
    )
}

/// Deserializes a `T` from a string through its `FromStr`; `expecting` says what the string
/// must be.
pub(crate) struct HexVisitor<T> {
    expecting: &'static str,
    _value: PhantomData<T>,
}

impl<T> HexVisitor<T> {
    pub(crate) fn new(expecting: &'static str) -> HexVisitor<T> {
        HexVisitor {
            expecting,
            _value: PhantomData,
        }
    }
}

impl<T: FromStr> Visitor<'_> for HexVisitor<T>
where
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

/// The text impls of a newtype over `[u8; N]` written as `2 * N` lowercase hex digits:
/// `FromStr` (failing with `$error`, which holds the text), `Display`, `Debug`,
/// `PartialEq<str>`, and serde as that text (`$expecting` says what a string must be).
macro_rules! hex_text_impls {
    ($type:ident, $error:ident, $expecting:literal) => {
        impl std::str::FromStr for $type {
            type Err = $error;

            fn from_str(s: &str) -> Result<$type, $error> {
                $crate::hexbytes::parse_lower_hex(s)
                    .map($type)
                    .ok_or_else(|| $error(s.chars().take(80).collect()))
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                $crate::hexbytes::fmt(&self.0, f)
            }
        }

        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({self})", stringify!($type))
            }
        }

        impl PartialEq<str> for $type {
            fn eq(&self, other: &str) -> bool {
                other.parse::<$type>().is_ok_and(|h| h == *self)
            }
        }

        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                $crate::hexbytes::serialize(&self.0, serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<$type, D::Error> {
                deserializer.deserialize_str($crate::hexbytes::HexVisitor::new($expecting))
            }
        }
    };
}
pub(crate) use hex_text_impls;
