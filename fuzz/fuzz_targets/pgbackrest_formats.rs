//! Fuzz the readers of pgBackRest's repository formats: whatever the bytes, reading them as an
//! info file or manifest returns `Ok` or `Err` and never panics.
//!
//! Arbitrary bytes almost never carry a matching SHA-1 self-checksum, so a second leg parses the
//! input as INI text and renders it again with its true checksum: that takes the fuzzer past the
//! checksum into `backup.info`'s, `archive.info`'s and `backup.manifest`'s own checks. Anything
//! rendered must parse back to the same sections and verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgbr_manifest::pgbackrest::{BackrestArchiveInfo, BackrestBackupInfo, BackrestManifest, Ini};

fn read_all(bytes: &[u8]) {
    let _ = BackrestBackupInfo::parse(bytes, "main");
    let _ = BackrestArchiveInfo::parse(bytes, "main");
    let _ = BackrestManifest::parse(bytes);
}

fuzz_target!(|data: &[u8]| {
    read_all(data);
    let Ok(ini) = Ini::parse(data, "fuzz") else {
        return;
    };
    let text = ini.render();
    let back = Ini::parse(text.as_bytes(), "fuzz").expect("rendered text parses");
    back.verify("fuzz").err().map(|e| {
        // Only the format version may fail: the checksum was just computed.
        assert!(!matches!(e, pgbr_manifest::Error::ChecksumMismatch { .. }), "{e}");
    });
    read_all(text.as_bytes());
});
