//! Fuzz target: a stored delta-coded block and its base are untrusted bytes. The first two bytes
//! say how much of the rest is the base; `DeltaCoder::decode_at_most` must return data of at most
//! 64 KiB or an error, never panic. Also checks that what it encodes decodes back.
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
    let encoded = coder.encode(base, delta).expect("encoding never fails on valid input");
    assert_eq!(coder.decode(base, &encoded).expect("own delta decodes"), delta);
});
