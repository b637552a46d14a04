//! PostgreSQL data page checksums (`src/include/storage/checksum_impl.h`).
//!
//! The page is read as a 64 x 32 array of 32-bit words (native byte order of
//! the server, little-endian here). Each of the 32 columns is folded into its
//! own FNV-1a-style sum, `h = (h ^ v) * FNV_PRIME ^ ((h ^ v) >> 17)`, starting
//! from a fixed base offset; two more rounds with zero mix the last word; the
//! sums are xor-folded, the block number is xored in, and the result is
//! reduced to `1..=65535` as `sum % 65535 + 1`. The checksum field itself
//! (`pd_checksum`, bytes 8..10) counts as zero.

/// Size of a PostgreSQL page (`BLCKSZ`), the only size pgbr verifies.
pub const PAGE_SIZE: usize = 8192;

const N_SUMS: usize = 32;
const FNV_PRIME: u32 = 16_777_619;
const ROWS: usize = PAGE_SIZE / (4 * N_SUMS);

const BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];

#[inline(always)]
fn comp(sum: u32, value: u32) -> u32 {
    let tmp = sum ^ value;
    tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17)
}

fn checksum_full_page(page: &[u8; PAGE_SIZE], block_number: u32) -> u16 {
    let mut sums = BASE_OFFSETS;
    for (row_index, row) in page.chunks_exact(4 * N_SUMS).enumerate() {
        let mut words = [0u32; N_SUMS];
        for (w, bytes) in words.iter_mut().zip(row.chunks_exact(4)) {
            *w = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        if row_index == 0 {
            // pd_checksum (bytes 8..10) is the low half of word 2.
            words[2] &= 0xFFFF_0000;
        }
        for (s, w) in sums.iter_mut().zip(words) {
            *s = comp(*s, w);
        }
    }
    debug_assert_eq!(ROWS, 64);
    for _ in 0..2 {
        for s in sums.iter_mut() {
            *s = comp(*s, 0);
        }
    }
    let folded = sums.iter().fold(0u32, |acc, s| acc ^ s) ^ block_number;
    // 65535 + 1 fits: the result is always in 1..=65535.
    ((folded % 65_535) + 1) as u16
}

/// Computes PostgreSQL's checksum of a page as it would be stored in
/// `pd_checksum`.
///
/// `block_number` is the page's block number within its relation fork. For a
/// page of segment file `<relfilenode>.<n>` that is
/// `n * 131072 + index of the page in the file` (131072 pages = 1 GiB with
/// default `RELSEG_SIZE`); for the first segment it is just the page index.
///
/// `page` should be [`PAGE_SIZE`] bytes; a shorter slice is zero-padded and a
/// longer one truncated to that size, so this never panics.
pub fn page_checksum(page: &[u8], block_number: u32) -> u16 {
    match <&[u8; PAGE_SIZE]>::try_from(page) {
        Ok(full) => checksum_full_page(full, block_number),
        Err(_) => {
            let mut buf = [0u8; PAGE_SIZE];
            let n = page.len().min(PAGE_SIZE);
            buf[..n].copy_from_slice(&page[..n]);
            checksum_full_page(&buf, block_number)
        }
    }
}

/// The page LSN (`pd_lsn`): `xlogid` (u32 LE, bytes 0..4) is the high half and
/// `xrecoff` (u32 LE, bytes 4..8) the low half. Returns 0 for a slice shorter
/// than 8 bytes.
pub fn page_lsn(page: &[u8]) -> u64 {
    match page.get(..8) {
        Some(b) => {
            let hi = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let lo = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            (u64::from(hi) << 32) | u64::from(lo)
        }
        None => 0,
    }
}

/// The outcome of verifying one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageCheck {
    /// The stored checksum matches.
    Valid,
    /// The page is all zeroes (allocated but never written), which is valid.
    New,
    /// The stored checksum does not match the computed one. A page that is not
    /// exactly [`PAGE_SIZE`] bytes long is reported with `computed: 0`, a value
    /// no real checksum takes.
    Mismatch {
        /// `pd_checksum` as found on the page.
        stored: u16,
        /// The checksum computed from the page contents.
        computed: u16,
    },
    /// The page LSN is at or after the backup start LSN: the page was changed
    /// during the backup (maybe torn) and WAL replay will rewrite it, so it is
    /// not checked.
    SkippedNewerLsn,
}

/// Verifies one page read from a relation file during a backup.
///
/// In order: an all-zero page is [`PageCheck::New`]; a page whose LSN is
/// `>= backup_start_lsn` is [`PageCheck::SkippedNewerLsn`]; otherwise the
/// stored checksum is compared with [`page_checksum`].
pub fn check_page(page: &[u8], block_number: u32, backup_start_lsn: u64) -> PageCheck {
    let stored = match page.get(8..10) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]),
        None => 0,
    };
    if page.len() != PAGE_SIZE {
        return PageCheck::Mismatch {
            stored,
            computed: 0,
        };
    }
    if page.iter().all(|&b| b == 0) {
        return PageCheck::New;
    }
    if page_lsn(page) >= backup_start_lsn {
        return PageCheck::SkippedNewerLsn;
    }
    let computed = page_checksum(page, block_number);
    if computed == stored {
        PageCheck::Valid
    } else {
        PageCheck::Mismatch { stored, computed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_ignores_pd_checksum_and_mixes_block() {
        let mut page = vec![0u8; PAGE_SIZE];
        page[0] = 1;
        page[100] = 0x42;
        let a = page_checksum(&page, 0);
        page[8] = 0xAB;
        page[9] = 0xCD;
        assert_eq!(page_checksum(&page, 0), a);
        assert_ne!(page_checksum(&page, 1), a);
        assert!(a >= 1);
    }

    #[test]
    fn check_page_outcomes() {
        let zero = vec![0u8; PAGE_SIZE];
        assert_eq!(check_page(&zero, 3, 100), PageCheck::New);
        let mut page = vec![0u8; PAGE_SIZE];
        page[4] = 10; // lsn 0/A
        page[2000] = 7;
        let c = page_checksum(&page, 3);
        page[8..10].copy_from_slice(&c.to_le_bytes());
        assert_eq!(check_page(&page, 3, 100), PageCheck::Valid);
        assert!(matches!(
            check_page(&page, 4, 100),
            PageCheck::Mismatch { .. }
        ));
        assert_eq!(check_page(&page, 4, 10), PageCheck::SkippedNewerLsn);
        assert_eq!(page_lsn(&page), 10);
        page[0] = 1;
        assert_eq!(page_lsn(&page), (1 << 32) | 10);
        assert!(matches!(
            check_page(&page[..100], 3, 100),
            PageCheck::Mismatch { computed: 0, .. }
        ));
        assert_eq!(page_lsn(&page[..3]), 0);
        // never panics on odd sizes
        let _ = page_checksum(&page[..5], 0);
        let _ = page_checksum(&[0u8; PAGE_SIZE + 3], 0);
    }
}
