//! Fuzz target: the first byte picks the codec, the rest is fed to `DecompressReader` (whole, and
//! in short reads) and to `decompress_to_vec` (whose zstd path decodes a frame in one go), which
//! must return data or an error, never panic, and agree with each other.
#![no_main]

mod common;

use std::io::Read;

use common::Trickle;
use libfuzzer_sys::fuzz_target;
use pgbr_storage::{decompress_to_vec, CompressType, DecompressReader};

/// Output bound, so that decompression bombs do not exhaust the fuzzer's memory or time.
const CAP: u64 = 16 << 20;

/// What `DecompressReader` decodes from `source`, up to [`CAP`] bytes; `None` past that.
fn stream<R: Read>(kind: CompressType, source: R) -> Option<std::io::Result<Vec<u8>>> {
    let mut reader = match DecompressReader::new(kind, source) {
        Ok(reader) => reader,
        Err(e) => return Some(Err(e)),
    };
    let mut out = Vec::new();
    let result = reader.by_ref().take(CAP + 1).read_to_end(&mut out);
    if out.len() as u64 > CAP {
        return None;
    }
    Some(result.map(|_| out))
}

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let kind = CompressType::ALL[usize::from(*first) % CompressType::ALL.len()];
    let Some(whole) = stream(kind, rest) else {
        return;
    };
    match (&whole, decompress_to_vec(kind, rest)) {
        (Ok(streamed), Ok(at_once)) => {
            assert!(*streamed == at_once, "{kind}: the two decoders differ")
        }
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("{kind}: only the stream decodes; at once: {e}"),
        (Err(e), Ok(_)) => panic!("{kind}: only decoding at once succeeds; stream: {e}"),
    }
    // In short reads: the same data, or (see below) an error.
    match (whole, stream(kind, Trickle::new(rest))) {
        (Ok(whole), Some(Ok(trickled))) => {
            assert!(whole == trickled, "{kind}: short reads change the data")
        }
        (Err(_), Some(Err(_))) | (_, None) => {}
        (Err(e), Some(Ok(_))) => panic!("{kind}: only short reads decode; whole: {e}"),
        // libzstd refuses, when it arrives in pieces, a frame of content size 0 whose only block
        // is an RLE block of size 0 (no encoder writes one), and accepts it whole: no data
        // either way. Anything else must decode in short reads as it does whole.
        (Ok(whole), Some(Err(e))) => assert!(
            kind == CompressType::Zst && whole.is_empty(),
            "{kind}: short reads fail where the whole input decodes: {e}"
        ),
    }
});
