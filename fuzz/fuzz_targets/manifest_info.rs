//! Fuzz the metadata readers: whatever the bytes, loading a manifest or an
//! info file returns `Ok` or `Err` and never panics; anything accepted must
//! serialize again and load back equal; both manifest readers (whole text and
//! stream) agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgbr_manifest::{ArchiveInfo, BackupInfo, Manifest};

fuzz_target!(|data: &[u8]| {
    // The streaming reader accepts exactly what the whole-text reader accepts.
    let streamed = Manifest::from_reader(data);
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
    if let Ok(info) = BackupInfo::from_bytes(data) {
        let bytes = info
            .to_bytes()
            .expect("accepted backup.info must serialize");
        assert_eq!(
            BackupInfo::from_bytes(&bytes).expect("reload backup.info"),
            info
        );
    }
    if let Ok(info) = ArchiveInfo::from_bytes(data) {
        let bytes = info
            .to_bytes()
            .expect("accepted archive.info must serialize");
        assert_eq!(
            ArchiveInfo::from_bytes(&bytes).expect("reload archive.info"),
            info
        );
    }
});
