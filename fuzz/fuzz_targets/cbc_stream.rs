//! Feed arbitrary bytes to `CbcReader` with a fixed passphrase: it must return an error or
//! some plaintext, and never panic. A second leg checks that any input round-trips.
//!
//! A third leg seals a plaintext of up to 192 KiB (several 64 KiB chunks), damages the stream
//! (cut, flipped bit, extra byte, bytes removed) and reads it back in short pieces. CBC has no
//! authentication (the format is pgBackRest's), so a damaged stream may decrypt; it must not
//! panic, a length that is not whole blocks must be refused, and the intact stream must
//! round-trip when read in short pieces.
#![no_main]

mod common;

use std::io::{Read, Write};

use common::{open_damaged, TamperCase};
use libfuzzer_sys::fuzz_target;
use pgbr_crypto::{CbcReader, CbcWriter};

const PASSPHRASE: &[u8] = b"fuzz passphrase";

fn seal(plain: &[u8]) -> Vec<u8> {
    let mut writer = CbcWriter::new(PASSPHRASE, Vec::new()).expect("writer on a Vec");
    writer.write_all(plain).expect("write to a Vec");
    writer.finish().expect("finish to a Vec")
}

fuzz_target!(|data: &[u8]| {
    // Arbitrary input as a stream, read with a small buffer to exercise partial reads.
    let mut reader = CbcReader::new(PASSPHRASE, data);
    let mut buf = [0u8; 1000];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
    }

    // The same bytes as plaintext must round-trip.
    let sealed = seal(data);
    let mut plain = Vec::new();
    CbcReader::new(PASSPHRASE, &sealed[..])
        .read_to_end(&mut plain)
        .expect("own stream decrypts");
    assert_eq!(plain, data);

    if let Some(case) = TamperCase::parse(data) {
        let damaged = open_damaged(&case, seal, |source| {
            Box::new(CbcReader::new(PASSPHRASE, source))
        });
        // A 16-byte header, then at least one whole block.
        if damaged.len < 32 || !damaged.len.is_multiple_of(16) {
            let tamper = damaged.tamper;
            assert!(
                damaged.result.is_err(),
                "stream of partial blocks accepted: {tamper:?}"
            );
        }
    }
});
