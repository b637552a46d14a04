//! Fuzz target: a stored delta-coded block and its base are untrusted bytes. The first two bytes
//! say how much of the rest is the base; `DeltaCoder::decode_at_most` must return data of at most
//! 64 KiB or an error, never panic, also for a frame it wrote with one byte changed. Also checks
//! that what it encodes decodes back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgbr_storage::DeltaCoder;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes(*head)).min(rest.len());
    let (base, delta) = rest.split_at(split);
    let mut coder = DeltaCoder::new(3).expect("level 3 is valid");
    if let Ok(out) = coder.decode_at_most(base, delta, 64 * 1024) {
        assert!(out.len() <= 64 * 1024);
    }
    let encoded = coder
        .encode(base, delta)
        .expect("encoding never fails on valid input");
    assert_eq!(
        coder.decode(base, &encoded).expect("own delta decodes"),
        delta
    );

    // libzstd is not instrumented, so the fuzzer cannot steer into its frame parser: a real
    // frame with one byte changed (the two head bytes pick which and how) reaches deeper.
    let mut damaged = encoded;
    let at = usize::from(u16::from_le_bytes(*head)) % damaged.len();
    damaged[at] ^= head[0] | 1;
    if let Ok(out) = coder.decode_at_most(base, &damaged, 64 * 1024) {
        assert!(out.len() <= 64 * 1024);
    }
});
