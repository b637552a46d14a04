//! Page checks: each page of a relation file read for backup is checked against its checksum
//! on the way, so a torn or damaged page is reported without a second read.

use pgbr_manifest::{check_page, PageCheck, PAGE_SIZE};

/// Pages in one 1 GiB relation segment file.
const PAGES_PER_SEGMENT: u64 = 131072;

/// Page checking for one relation file.
#[derive(Clone, Copy)]
pub(crate) struct PageCheckSpec {
    /// Segment number of the file (`16384.3` -> 3).
    pub segment: u64,
    /// Pages at or after this LSN are rewritten by WAL replay and not checked.
    pub start_lsn: u64,
}

/// Checks the pages of `chunk`, the first being page `first_page_in_file` of its file, adding the
/// numbers (in the file) of those whose checksum is wrong to `errors`.
pub(crate) fn check_pages(
    chunk: &[u8],
    first_page_in_file: u64,
    spec: &PageCheckSpec,
    errors: &mut Vec<u32>,
) {
    for (i, page) in chunk.chunks_exact(PAGE_SIZE).enumerate() {
        let in_file = first_page_in_file + i as u64;
        let block = u32::try_from(spec.segment * PAGES_PER_SEGMENT + in_file).unwrap_or(u32::MAX);
        if let PageCheck::Mismatch { .. } = check_page(page, block, spec.start_lsn) {
            errors.push(u32::try_from(in_file).unwrap_or(u32::MAX));
        }
    }
}
