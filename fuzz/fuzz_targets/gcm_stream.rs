//! Feed arbitrary bytes to `GcmReader` with a fixed key: it must return an error or (for a
//! genuine stream) plaintext, and never panic. A second leg checks that any input round-trips.
//!
//! Random bytes never authenticate, so a third leg seals a plaintext of up to 192 KiB (several
//! segments), damages the stream (cut, flipped bit, extra byte, bytes removed) and reads it back
//! in short pieces: the reader must fail, and what it returned before failing must be a prefix
//! of the plaintext (nothing from a segment that did not verify).
#![no_main]

mod common;

use std::io::{Read, Write};

use common::{open_damaged, TamperCase};
use libfuzzer_sys::fuzz_target;
use pgbr_crypto::{DataKey, GcmReader, GcmWriter};

fn seal(key: &DataKey, plain: &[u8]) -> Vec<u8> {
    let mut writer = GcmWriter::new(key, Vec::new()).expect("writer on a Vec");
    writer.write_all(plain).expect("write to a Vec");
    writer.finish().expect("finish to a Vec")
}

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
    let sealed = seal(&key, data);
    let mut plain = Vec::new();
    GcmReader::new(&key, &sealed[..])
        .read_to_end(&mut plain)
        .expect("own stream decrypts");
    assert_eq!(plain, data);

    // A damaged stream of several segments must be refused.
    if let Some(case) = TamperCase::parse(data) {
        let damaged = open_damaged(
            &case,
            |plain| seal(&key, plain),
            |source| Box::new(GcmReader::new(&key, source)),
        );
        let tamper = damaged.tamper;
        assert!(
            damaged.result.is_err(),
            "damaged stream accepted: {tamper:?}"
        );
        assert!(
            case.plain.starts_with(&damaged.read),
            "bytes returned that are not the plaintext: {tamper:?}"
        );
    }
});
