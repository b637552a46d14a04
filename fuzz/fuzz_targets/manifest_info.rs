//! Fuzz the metadata readers: whatever the bytes, loading a manifest or an
//! info file returns `Ok` or `Err` and never panics; anything accepted must
//! serialize again and load back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgbr_manifest::{ArchiveInfo, BackupInfo, Manifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::from_bytes(data) {
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
