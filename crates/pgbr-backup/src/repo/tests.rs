use super::*;
use pgbr_manifest::{
    new_label, BackupSummary, BackupType, CipherInfo, Manifest, PathEntry, Target,
};

fn manifest(label: &str, files_note: &str) -> Manifest {
    let mut m = Manifest {
        targets: vec![Target {
            name: "pg_data".into(),
            path: "/var/lib/postgresql/15/main".into(),
            tablespace_oid: None,
            tablespace_name: None,
        }],
        paths: vec![PathEntry {
            target: "pg_data".into(),
            name: String::new(),
            mode: 0o700,
        }],
        ..Manifest::default()
    };
    m.backup.label = label.into();
    m.backup.backup_type = BackupType::Full;
    m.backup.db_id = 1;
    m.backup.system_id = 7;
    m.backup.pg_version = 15;
    m.backup.backup_label = files_note.into();
    m
}

fn repository() -> Repository {
    let db = DbHistory {
        db_id: 1,
        system_id: 7,
        pg_version: 15,
    };
    let cipher = CipherInfo {
        cipher_type: pgbr_manifest::Cipher::None,
        wrapped_key: None,
    };
    Repository {
        storage: Storage::memory(),
        opts: RepoOptions::posix("/test"),
        stanza: "main".into(),
        key: None,
        backup_info: BackupInfo {
            stanza: "main".into(),
            db_history: vec![db.clone()],
            cipher: cipher.clone(),
            backups: Vec::new(),
        },
        archive_info: ArchiveInfo {
            stanza: "main".into(),
            db_history: vec![db],
            cipher,
        },
        backrest: None,
        lock: None,
        claim: None,
    }
}

#[tokio::test]
async fn a_manifest_is_read_only_as_the_one_committed_under_its_label() {
    let mut repo = repository();
    let (a, b) = (
        new_label(BackupType::Full, None, 1_795_641_390),
        new_label(BackupType::Full, None, 1_795_645_000),
    );
    let committed = manifest(&a, "as committed");
    let (_, checksum) = repo.save_manifest(&a, &committed).await.expect("save");
    repo.backup_info
        .backups
        .push(BackupSummary::from_manifest(&committed, checksum));
    assert_eq!(repo.load_manifest(&a).await.expect("load"), committed);

    // Another manifest under the same label, valid in itself: its checksum differs.
    repo.save_manifest(&a, &manifest(&a, "replaced"))
        .await
        .expect("save");
    let err = repo.load_manifest(&a).await.expect_err("replaced");
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains("not the one committed") && m.contains("checksum")),
        "{err}"
    );
    // An entry written before checksums were recorded is checked on the rest.
    repo.backup_info.backups[0].manifest_checksum = None;
    repo.load_manifest(&a).await.expect("no checksum recorded");
    // Another backup's manifest under this label.
    repo.save_manifest(&a, &manifest(&b, "another"))
        .await
        .expect("save");
    let err = repo.load_manifest(&a).await.expect_err("another backup's");
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains(&format!("manifest of backup {b}"))),
        "{err}"
    );
    // A manifest of another cluster under the same label and database.
    let mut other = manifest(&a, "as committed");
    other.backup.system_id = 8;
    repo.save_manifest(&a, &other).await.expect("save");
    let err = repo.load_manifest(&a).await.expect_err("another cluster's");
    assert!(
        matches!(&err, Error::Corrupt(m) if m.contains("system 8")),
        "{err}"
    );
}
