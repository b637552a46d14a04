//! Log sequence numbers.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A WAL location (PostgreSQL's `XLogRecPtr`), a byte position in the infinite WAL stream.
///
/// Displayed and parsed the way PostgreSQL does (`%X/%X`, e.g. `16/B374D848`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The invalid LSN, `0/0` (PostgreSQL's `InvalidXLogRecPtr`).
    pub const INVALID: Lsn = Lsn(0);

    /// The absolute number of the WAL segment this LSN falls in, for the given segment size.
    ///
    /// A `segment_size` of zero gives 0 rather than panicking.
    pub fn segment_number(self, segment_size: u64) -> u64 {
        self.0.checked_div(segment_size).unwrap_or(0)
    }

    /// The byte offset of this LSN inside its WAL segment.
    ///
    /// A `segment_size` of zero gives 0 rather than panicking.
    pub fn segment_offset(self, segment_size: u64) -> u64 {
        self.0.checked_rem(segment_size).unwrap_or(0)
    }

    /// Whether this is not [`Lsn::INVALID`].
    pub fn is_valid(self) -> bool {
        self != Lsn::INVALID
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Self {
        Lsn(value)
    }
}

impl From<Lsn> for u64 {
    fn from(value: Lsn) -> Self {
        value.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

fn parse_hex_u32(part: &str) -> Option<u32> {
    if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(part, 16).ok()
}

impl FromStr for Lsn {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || Error::InvalidLsn {
            input: s.to_string(),
        };
        let (hi, lo) = s.split_once('/').ok_or_else(invalid)?;
        let hi = parse_hex_u32(hi).ok_or_else(invalid)?;
        let lo = parse_hex_u32(lo).ok_or_else(invalid)?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display() {
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(0x0100_0028).to_string(), "0/1000028");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn parse() {
        assert_eq!("16/b374d848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        assert_eq!("16/B374D848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn::INVALID);
        assert_eq!(
            "00000000/00000001".parse::<Lsn>().unwrap(),
            Lsn(1),
            "zero padding is allowed"
        );
        for junk in [
            "",
            "/",
            "1/",
            "/1",
            "1",
            "1/2/3",
            "g/1",
            "1/ 2",
            " 1/2",
            "+1/2",
            "1/-2",
            "123456789/0",
            "0/123456789",
            "1:2",
        ] {
            let err = junk.parse::<Lsn>().unwrap_err();
            assert!(matches!(err, Error::InvalidLsn { .. }), "{junk:?}");
        }
    }

    #[test]
    fn segment_math() {
        let lsn = Lsn(0x16_B374_D848);
        assert_eq!(lsn.segment_number(16 << 20), 0x16_B3);
        assert_eq!(lsn.segment_offset(16 << 20), 0x74_D848);
        assert_eq!(lsn.segment_number(0), 0);
        assert!(!Lsn::INVALID.is_valid());
        assert!(lsn.is_valid());
        assert_eq!(u64::from(Lsn::from(7)), 7);
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(v in any::<u64>()) {
            let lsn = Lsn(v);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
            prop_assert_eq!(lsn.to_string().to_lowercase().parse::<Lsn>().unwrap(), lsn);
        }

        #[test]
        fn parse_never_panics(s in ".{0,24}") {
            let _ = s.parse::<Lsn>();
        }
    }
}
