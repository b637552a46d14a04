//! Fuzz target: the page check run on every page of a relation file read from the data
//! directory. The first 4 bytes are the block number, the next 8 the backup's start LSN, the
//! rest the page. Neither the short page nor the page zero-padded to 8 KiB may panic, and a
//! page whose stored checksum is the computed one must never be reported as a mismatch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgbr_manifest::{check_page, page_checksum, page_lsn, PageCheck, PAGE_SIZE};

fuzz_target!(|data: &[u8]| {
    let Some((head, page)) = data.split_first_chunk::<12>() else {
        return;
    };
    let block = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let start_lsn = u64::from_le_bytes([
        head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
    ]);
    let outcome = check_page(page, block, start_lsn);
    if page.len() != PAGE_SIZE {
        assert!(matches!(outcome, PageCheck::Mismatch { computed: 0, .. }));
    }
    let _ = page_lsn(page);

    let mut full = page.to_vec();
    full.resize(PAGE_SIZE, 0);
    let sum = page_checksum(&full, block);
    full[8..10].copy_from_slice(&sum.to_le_bytes());
    let outcome = check_page(&full, block, start_lsn);
    assert!(
        !matches!(outcome, PageCheck::Mismatch { .. }),
        "a page with its own checksum is a mismatch: {outcome:?}"
    );
});
