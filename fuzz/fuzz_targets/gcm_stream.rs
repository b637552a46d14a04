//! Feed arbitrary bytes to `GcmReader` with a fixed key: it must return an error or (for a
//! genuine stream) plaintext, and never panic. A second leg checks that any input round-trips.
#![no_main]

use std::io::{Read, Write};

use libfuzzer_sys::fuzz_target;
use pgbr_crypto::{DataKey, GcmReader, GcmWriter};

fuzz_target!(|data: &[u8]| {
    let key = DataKey::from_bytes([0x42; 32]);

    // Arbitrary input as a stream, read with a small buffer to exercise partial reads.
    let mut reader = GcmReader::new(&key, data);
    let mut buf = [0u8; 1000];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
    }

    // The same bytes as plaintext must round-trip.
    let mut writer = GcmWriter::new(&key, Vec::new()).expect("writer on a Vec");
    writer.write_all(data).expect("write to a Vec");
    let sealed = writer.finish().expect("finish to a Vec");
    let mut plain = Vec::new();
    GcmReader::new(&key, &sealed[..])
        .read_to_end(&mut plain)
        .expect("own stream decrypts");
    assert_eq!(plain, data);
});
