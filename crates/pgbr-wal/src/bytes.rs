//! Little-endian field readers that never panic.

use crate::Error;

/// Reads fixed-size little-endian fields out of a byte slice, reporting a [`Error::TooShort`]
/// naming `what` when the slice ends early.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader { bytes, what }
    }

    /// Fails unless at least `needed` bytes are present.
    pub(crate) fn require(&self, needed: usize) -> Result<(), Error> {
        if self.bytes.len() < needed {
            return Err(Error::TooShort {
                what: self.what,
                needed,
                found: self.bytes.len(),
            });
        }
        Ok(())
    }

    fn array<const N: usize>(&self, offset: usize) -> Result<[u8; N], Error> {
        let end = offset.saturating_add(N);
        self.require(end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[offset..end]);
        Ok(out)
    }

    pub(crate) fn u16(&self, offset: usize) -> Result<u16, Error> {
        self.array(offset).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&self, offset: usize) -> Result<u32, Error> {
        self.array(offset).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&self, offset: usize) -> Result<u64, Error> {
        self.array(offset).map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        let r = Reader::new(&data, "thing");
        assert_eq!(r.u16(0).unwrap(), 0x0201);
        assert_eq!(r.u32(1).unwrap(), 0x0504_0302);
        assert_eq!(r.u64(1).unwrap(), 0x0908_0706_0504_0302);
        assert_eq!(
            r.u64(2).unwrap_err(),
            Error::TooShort {
                what: "thing",
                needed: 10,
                found: 9
            }
        );
        assert!(r.u32(usize::MAX).is_err());
    }
}
