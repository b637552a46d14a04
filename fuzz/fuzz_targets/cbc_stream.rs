//! Feed arbitrary bytes to `CbcReader` with a fixed passphrase: it must return an error or
//! some plaintext, and never panic. A second leg checks that any input round-trips.
#![no_main]

use std::io::{Read, Write};

use libfuzzer_sys::fuzz_target;
use pgbr_crypto::{CbcReader, CbcWriter};

const PASSPHRASE: &[u8] = b"fuzz passphrase";

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
    let mut writer = CbcWriter::new(PASSPHRASE, Vec::new()).expect("writer on a Vec");
    writer.write_all(data).expect("write to a Vec");
    let sealed = writer.finish().expect("finish to a Vec");
    let mut plain = Vec::new();
    CbcReader::new(PASSPHRASE, &sealed[..])
        .read_to_end(&mut plain)
        .expect("own stream decrypts");
    assert_eq!(plain, data);
});
