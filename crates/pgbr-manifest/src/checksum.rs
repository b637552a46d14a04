//! [`Checksum`]: the BLAKE3 of a file's plaintext, held as 32 bytes.
//!
//! Stored as 64 lowercase hex digits in every format, held as bytes in memory: a manifest of a
//! million files keeps a million of them, and a `String` costs three times the space.

/// The BLAKE3 hash of a file's plaintext.
///
/// Shown, parsed and serialized as 64 lowercase hex digits; compares equal to that text.
///
/// ```
/// use pgbr_manifest::Checksum;
///
/// let sum = Checksum::of(b"15\n");
/// let hex = sum.to_string();
/// assert_eq!(hex.len(), 64);
/// assert_eq!(hex.parse::<Checksum>().unwrap(), sum);
/// assert!(sum == hex);
/// assert!("ABC".parse::<Checksum>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Checksum(pub [u8; 32]);

impl Checksum {
    /// The checksum of `data`.
    pub fn of(data: &[u8]) -> Checksum {
        Checksum::from(blake3::hash(data))
    }

    /// The checksum as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl From<blake3::Hash> for Checksum {
    fn from(hash: blake3::Hash) -> Checksum {
        Checksum(*hash.as_bytes())
    }
}

/// Why a text is not a [`Checksum`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checksum {0:?} is not 64 lowercase hex digits")]
pub struct ParseChecksumError(String);

crate::hexbytes::hex_text_impls!(Checksum, ParseChecksumError, "64 lowercase hex digits");

impl PartialEq<String> for Checksum {
    fn eq(&self, other: &String) -> bool {
        *self == *other.as_str()
    }
}

impl PartialEq<Checksum> for String {
    fn eq(&self, other: &Checksum) -> bool {
        *other == *self.as_str()
    }
}

impl PartialEq<Checksum> for str {
    fn eq(&self, other: &Checksum) -> bool {
        *other == *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_what_is_not_lowercase_hex_of_32_bytes() {
        let good = Checksum::of(b"x").to_string();
        assert!(good.parse::<Checksum>().is_ok());
        for bad in [
            String::new(),
            "ABC".to_string(),
            good.to_uppercase(),
            good[..63].to_string(),
            format!("{good}0"),
            format!("{}g", &good[..63]),
        ] {
            assert!(bad.parse::<Checksum>().is_err(), "{bad}");
            let json = serde_json::to_string(&bad).expect("json");
            assert!(serde_json::from_str::<Checksum>(&json).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Checksum>("7").is_err());
        // A manifest entry with a bad checksum does not load.
        let entry = |sum: &str| {
            format!(
                r#"{{"target":"pg_data","name":"PG_VERSION","size":3,"mtime":0,"mode":384,"checksum":"{sum}","reference":null,"stored_size":3,"bundle":null,"block_map":null,"page_errors":[]}}"#
            )
        };
        assert!(serde_json::from_str::<crate::FileEntry>(&entry(&good)).is_ok());
        let err = serde_json::from_str::<crate::FileEntry>(&entry("ABC")).expect_err("bad sum");
        assert!(
            err.to_string().contains("not 64 lowercase hex digits"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn parses_exactly_64_lowercase_hex_digits(
            text in "[0-9a-fA-Fg ]{62,66}|[0-9a-f]{64}|[0-9a-f]{63}[^0-9a-f]"
        ) {
            let expected = (text.len() == 64
                && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| hex::decode(&text).expect("hex"));
            let parsed = text.parse::<Checksum>().ok().map(|c| c.0.to_vec());
            prop_assert_eq!(parsed, expected);
        }

        #[test]
        fn text_and_json_round_trip(bytes in any::<[u8; 32]>()) {
            let sum = Checksum(bytes);
            let text = sum.to_string();
            prop_assert_eq!(&text, &hex::encode(bytes));
            prop_assert_eq!(text.parse::<Checksum>().ok(), Some(sum));
            let json = serde_json::to_string(&sum).expect("json");
            prop_assert_eq!(json, format!("\"{text}\""));
            prop_assert!(sum == text);
        }
    }
}
