//! Fuzz the metadata readers: whatever the bytes, loading a manifest or an
//! info file returns `Ok` or `Err` and never panics; anything accepted must
//! serialize again and load back equal; both manifest readers (whole text and
//! stream, fed in short reads) agree.
//!
//! Arbitrary bytes almost never carry a matching BLAKE3 checksum, so a second
//! leg seals the input as the content of each envelope with its true checksum:
//! that takes the fuzzer past the checksum into the manifest's and the info
//! files' own checks. Backup labels (directory names in the repository) are
//! parsed too.
#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use pgbr_manifest::{
    new_label, parse_label, ArchiveInfo, BackupInfo, Manifest, INFO_FORMAT, MANIFEST_FORMAT,
};

/// A reader that hands out its bytes in short, uneven pieces, as a decompressor or a network
/// stream may.
struct Trickle<'a> {
    data: &'a [u8],
    reads: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        let n = (self.reads * 7 % 13 + 1)
            .min(out.len())
            .min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// `{"format":..,["kind":..,]"<body>":<content>,"checksum":"<BLAKE3 of content>"}`.
fn sealed(format: u32, kind: Option<&str>, body: &str, content: &[u8]) -> Vec<u8> {
    let content = content.trim_ascii();
    let mut out = format!("{{\"format\":{format},").into_bytes();
    if let Some(kind) = kind {
        out.extend_from_slice(format!("\"kind\":\"{kind}\",").as_bytes());
    }
    out.extend_from_slice(format!("\"{body}\":").as_bytes());
    out.extend_from_slice(content);
    let checksum = blake3::hash(content).to_hex();
    out.extend_from_slice(format!(",\"checksum\":\"{checksum}\"}}").as_bytes());
    out
}

fn check_manifest(data: &[u8]) {
    // The streaming reader accepts exactly what the whole-text reader accepts.
    let streamed = Manifest::from_reader(Trickle { data, reads: 0 });
    assert_eq!(
        streamed.as_ref().ok(),
        Manifest::from_bytes(data).as_ref().ok(),
        "the two manifest readers disagree"
    );
    if let Ok(m) = streamed {
        let bytes = m.to_bytes().expect("accepted manifest must serialize");
        let again = Manifest::from_bytes(&bytes).expect("re-serialized manifest must load");
        let mut sorted = m;
        sorted.sort();
        assert_eq!(again, sorted);
    }
}

fn check_backup_info(data: &[u8]) {
    if let Ok(info) = BackupInfo::from_bytes(data) {
        let bytes = info
            .to_bytes()
            .expect("accepted backup.info must serialize");
        assert_eq!(
            BackupInfo::from_bytes(&bytes).expect("reload backup.info"),
            info
        );
    }
}

fn check_archive_info(data: &[u8]) {
    if let Ok(info) = ArchiveInfo::from_bytes(data) {
        let bytes = info
            .to_bytes()
            .expect("accepted archive.info must serialize");
        assert_eq!(
            ArchiveInfo::from_bytes(&bytes).expect("reload archive.info"),
            info
        );
    }
}

fn check_label(text: &str) {
    if let Ok((backup_type, time)) = parse_label(text) {
        // A label that parses is the one pgbr would have written for that backup.
        assert_eq!(new_label(backup_type, Some(text), time), text);
    }
}

fuzz_target!(|data: &[u8]| {
    check_manifest(data);
    check_backup_info(data);
    check_archive_info(data);
    if let Ok(text) = std::str::from_utf8(data) {
        check_label(text);
    }

    check_manifest(&sealed(MANIFEST_FORMAT, None, "manifest", data));
    check_backup_info(&sealed(INFO_FORMAT, Some("backup.info"), "content", data));
    check_archive_info(&sealed(INFO_FORMAT, Some("archive.info"), "content", data));
});
