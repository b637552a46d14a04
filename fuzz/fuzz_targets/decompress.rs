//! Fuzz target: the first byte picks the codec, the rest is fed to `DecompressReader`,
//! which must return data or an error, never panic.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use pgbr_storage::{CompressType, DecompressReader};

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let kind = CompressType::ALL[usize::from(*first) % CompressType::ALL.len()];
    if let Ok(mut reader) = DecompressReader::new(kind, rest) {
        let mut out = Vec::new();
        // Bound the output so decompression bombs do not exhaust the fuzzer's memory.
        let _ = reader.by_ref().take(64 << 20).read_to_end(&mut out);
    }
});
