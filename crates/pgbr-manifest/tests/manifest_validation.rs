//! Example-based tests of the manifest and info file rules.

use pgbr_manifest::*;

fn sum(data: &[u8]) -> pgbr_manifest::Checksum {
    pgbr_manifest::Checksum::of(data)
}

fn file(target: &str, name: &str) -> FileEntry {
    FileEntry {
        target: target.into(),
        name: name.into(),
        size: 3,
        mtime: 1,
        mode: 0o600,
        checksum: sum(b"abc"),
        reference: None,
        stored_size: 3,
        bundle: None,
        block_map: None,
        page_errors: vec![],
    }
}

fn manifest() -> Manifest {
    let full = new_label(BackupType::Full, None, 1_795_641_390);
    Manifest {
        backup: BackupMeta {
            label: new_label(BackupType::Incr, Some(&full), 1_795_645_800),
            backup_type: BackupType::Incr,
            prior: Some(full.clone()),
            references: vec![full],
            pg_version: 15,
            db_id: 1,
            ..BackupMeta::default()
        },
        targets: vec![
            Target {
                name: "pg_data".into(),
                path: "/var/lib/postgresql/15/main".into(),
                tablespace_oid: None,
                tablespace_name: None,
            },
            Target {
                name: "pg_tblspc/16384".into(),
                path: "/srv/ts1".into(),
                tablespace_oid: Some(16384),
                tablespace_name: Some("ts1".into()),
            },
        ],
        paths: vec![
            PathEntry {
                target: "pg_data".into(),
                name: "".into(),
                mode: 0o700,
            },
            PathEntry {
                target: "pg_data".into(),
                name: "base".into(),
                mode: 0o700,
            },
        ],
        links: vec![LinkEntry {
            target: "pg_data".into(),
            name: "pg_wal".into(),
            destination: "/srv/wal".into(),
        }],
        files: vec![
            file("pg_data", "base/1/1259"),
            file("pg_tblspc/16384", "PG_15_202209061/5/16385"),
        ],
    }
}

fn reload(m: &Manifest) -> Result<Manifest, Error> {
    Manifest::from_bytes(&m.to_bytes()?)
}

#[test]
fn valid_manifest_round_trips() {
    let mut m = manifest();
    m.validate().unwrap();
    let mut with_refs = m.clone();
    with_refs.files[0].reference = m.backup.prior.as_deref().map(Into::into);
    with_refs.files[1].block_map = Some(BlockMapRef {
        block_size: 2,
        blocks: vec![
            BlockRef {
                hash: block_hash(b"ab"),
                reference: m.backup.prior.as_deref().map(Into::into),
                offset: 0,
                length: 5,
                base: None,
                chain: None,
            },
            BlockRef {
                hash: block_hash(b"c"),
                reference: None,
                offset: 0,
                length: 4,
                base: Some(BlockBase {
                    reference: m.backup.prior.as_deref().unwrap_or_default().into(),
                    offset: 5,
                    length: 7,
                }),
                chain: None,
            },
        ],
    });
    with_refs.files[1].bundle = Some(BundleRef {
        id: 1,
        offset: 10,
        length: 9,
    });
    assert_eq!(reload(&with_refs).unwrap(), with_refs);
    // A block hash that is not 32 lowercase hex digits does not load.
    let text = String::from_utf8(with_refs.to_bytes().unwrap()).unwrap();
    let hash = block_hash(b"ab").to_string();
    assert!(text.contains(&hash));
    for bad in [hash.to_uppercase(), hash[..31].to_string()] {
        let err = load(text.replacen(&hash, &bad, 1).as_bytes()).expect_err("bad hash");
        assert!(err.to_string().contains("32 lowercase hex digits"), "{err}");
    }
    // A delta base must be in a backup the manifest lists as referenced.
    let mut unknown_base = with_refs.clone();
    if let Some(map) = unknown_base.files[1].block_map.as_mut() {
        map.blocks[1].base = Some(BlockBase {
            reference: "20250101-000000F".into(),
            offset: 5,
            length: 7,
        });
    }
    assert!(matches!(
        reload(&unknown_base),
        Err(Error::UnknownReference { .. })
    ));
    m.sort();
    assert_eq!(reload(&m).unwrap(), m);
    assert!(m.file("pg_data", "base/1/1259").is_some());
    assert!(m.file("pg_data", "base/1/1260").is_none());
}

#[test]
fn restore_refuses_manifest_path_outside_target() {
    for bad in [
        "../etc/passwd",
        "/etc/passwd",
        "base/../../x",
        "a//b",
        "a/",
        "./a",
        "a\\b",
        "a\0b",
        "",
    ] {
        let mut m = manifest();
        m.files[0].name = bad.into();
        let err = reload(&m).unwrap_err();
        assert!(matches!(err, Error::UnsafeName { .. }), "{bad:?}: {err}");
        assert!(validate_relative_name(bad).is_err());
    }
    // links too, and paths (where only "" is allowed)
    let mut m = manifest();
    m.links[0].name = "../x".into();
    assert!(matches!(reload(&m), Err(Error::UnsafeName { .. })));
    let mut m = manifest();
    m.paths[1].name = "/base".into();
    assert!(matches!(reload(&m), Err(Error::UnsafeName { .. })));
}

#[test]
fn refuses_entries_below_links_and_files() {
    let mut m = manifest();
    m.files.push(file("pg_data", "pg_wal/evil"));
    assert!(matches!(reload(&m), Err(Error::NotADirectory { .. })));
    let mut m = manifest();
    m.files.push(file("pg_data", "base/1/1259/x"));
    assert!(matches!(reload(&m), Err(Error::NotADirectory { .. })));
}

#[test]
fn refuses_pg_data_entries_where_a_tablespace_link_goes() {
    // pg_data/pg_tblspc/16384 is the link to tablespace target pg_tblspc/16384: an entry of
    // pg_data there, or below it, would be restored through that link.
    let link = LinkEntry {
        target: "pg_data".into(),
        name: "pg_tblspc/16384".into(),
        destination: "/somewhere/else".into(),
    };
    let dir = PathEntry {
        target: "pg_data".into(),
        name: "pg_tblspc/16384".into(),
        mode: 0o700,
    };
    type Edit = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<Edit> = vec![
        Box::new(|m| m.files.push(file("pg_data", "pg_tblspc/16384/evil"))),
        Box::new(|m| m.files.push(file("pg_data", "pg_tblspc/16384"))),
        Box::new(move |m| m.links.push(link.clone())),
        Box::new(move |m| m.paths.push(dir.clone())),
    ];
    for (i, add) in cases.iter().enumerate() {
        let mut m = manifest();
        add(&mut m);
        let err = reload(&m).expect_err("refused");
        assert!(
            err.to_string()
                .contains("link of tablespace target pg_tblspc/16384"),
            "case {i}: {err}"
        );
    }
    // Nor may its parent be a link or a file: the tablespace's link would be made through it.
    for as_file in [false, true] {
        let mut m = manifest();
        if as_file {
            m.files.push(file("pg_data", "pg_tblspc"));
        } else {
            m.links.push(LinkEntry {
                target: "pg_data".into(),
                name: "pg_tblspc".into(),
                destination: "/outside".into(),
            });
        }
        assert!(
            matches!(reload(&m), Err(Error::NotADirectory { .. })),
            "pg_tblspc as a {}",
            if as_file { "file" } else { "link" }
        );
    }
    // Another tablespace's oid is just a name.
    let mut m = manifest();
    m.files.push(file("pg_data", "pg_tblspc/99/x"));
    m.paths.push(PathEntry {
        target: "pg_data".into(),
        name: "pg_tblspc/99".into(),
        mode: 0o700,
    });
    reload(&m).expect("loads");
}

#[test]
fn refuses_duplicates_and_unknown_targets() {
    let mut m = manifest();
    m.files.push(file("pg_data", "base/1/1259"));
    assert!(matches!(reload(&m), Err(Error::Duplicate { .. })));
    let mut m = manifest();
    m.paths.push(PathEntry {
        target: "pg_data".into(),
        name: "base/1/1259".into(),
        mode: 0o700,
    });
    assert!(matches!(reload(&m), Err(Error::Duplicate { .. })));
    let mut m = manifest();
    m.files.push(file("pg_tblspc/1", "x"));
    assert!(matches!(reload(&m), Err(Error::UnknownTarget { .. })));
}

#[test]
fn refuses_bad_targets() {
    for (name, path, oid) in [
        ("pg_tblspc/x", "/a", None),
        ("pg_tblspc/", "/a", None),
        ("pg_tblspc/99999999999", "/a", None),
        ("pg_tblspc/16384", "/a", Some(1)),
        ("pg_tblspc/16384", "relative", None),
        ("base", "/a", None),
        ("pg_data", "/dup", None),
    ] {
        let mut m = manifest();
        m.targets.push(Target {
            name: name.into(),
            path: path.into(),
            tablespace_oid: oid,
            tablespace_name: None,
        });
        if name != "pg_data" {
            m.targets
                .retain(|t| t.name != "pg_tblspc/16384" || t.path != "/srv/ts1");
            m.files.retain(|f| f.target == "pg_data");
        }
        assert!(
            matches!(reload(&m), Err(Error::BadTarget { .. })),
            "{name} {path}"
        );
    }
    let mut m = manifest();
    m.targets.retain(|t| t.name != "pg_data");
    m.paths.clear();
    m.links.clear();
    m.files.clear();
    assert!(matches!(reload(&m), Err(Error::BadTarget { .. })));
}

#[test]
fn refuses_bad_labels_and_references() {
    let mut m = manifest();
    m.backup.label = "yesterday".into();
    assert!(matches!(reload(&m), Err(Error::BadLabel { .. })));
    let mut m = manifest();
    m.backup.backup_type = BackupType::Diff;
    assert!(matches!(reload(&m), Err(Error::Invalid { .. })));
    let mut m = manifest();
    m.backup.prior = None;
    assert!(matches!(reload(&m), Err(Error::Invalid { .. })));
    let mut m = manifest();
    m.backup.prior = Some("20250101-000000F".into());
    assert!(matches!(reload(&m), Err(Error::Invalid { .. })));
    let mut m = manifest();
    m.files[0].reference = Some("20250101-000000F".into());
    assert!(matches!(reload(&m), Err(Error::UnknownReference { .. })));
    let mut m = manifest();
    m.files[0].block_map = Some(BlockMapRef {
        block_size: 1,
        blocks: vec![],
    });
    assert!(matches!(reload(&m), Err(Error::Invalid { .. })));
}

/// Loads with both loaders, which must agree: the same manifest, or errors of the same kind.
fn load(bytes: &[u8]) -> Result<Manifest, Error> {
    let whole = Manifest::from_bytes(bytes);
    // Read a few bytes at a time, so the streaming reader refills mid-value.
    let streamed = Manifest::from_reader(Trickle(bytes));
    match (&whole, &streamed) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "{a} / {b}"
        ),
        _ => panic!("the loaders disagree: {whole:?} / {streamed:?}"),
    }
    whole
}

/// A reader that hands out at most 7 bytes per read.
struct Trickle<'a>(&'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min(self.0.len()).min(7);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn envelope_checks_format_checksum_and_kind() {
    let m = manifest();
    let text = String::from_utf8(m.to_bytes().unwrap()).unwrap();
    assert!(text.starts_with("{\n  \"format\": 2,\n  \"manifest\": {"));
    // A newer format, and format 1 (which lacked delta bases), are refused, not half-read.
    for other in [3u64, 1] {
        let text = text.replacen("\"format\": 2", &format!("\"format\": {other}"), 1);
        assert!(matches!(
            load(text.as_bytes()),
            Err(Error::UnsupportedFormat { found, supported: 2 }) if found == other
        ));
    }
    let edited = text.replacen("\"mode\":448", "\"mode\":511", 1);
    assert_ne!(edited, text);
    assert!(matches!(
        load(edited.as_bytes()),
        Err(Error::ChecksumMismatch { .. })
    ));
    // The checksum covers the content's exact bytes, whitespace included, but
    // not the whitespace of the envelope around it.
    let respaced = text.replacen("\"mode\":448", "\"mode\": 448", 1);
    assert!(matches!(
        load(respaced.as_bytes()),
        Err(Error::ChecksumMismatch { .. })
    ));
    let outside = text.replacen("\"format\": 2,", "\"format\":2,", 1);
    assert_ne!(outside, text);
    assert_eq!(load(outside.as_bytes()).unwrap(), m);
    assert!(matches!(load(b"not json"), Err(Error::Json(_))));

    let info = ArchiveInfo {
        stanza: "main".into(),
        db_history: vec![DbHistory {
            db_id: 1,
            system_id: 7,
            pg_version: 15,
        }],
        cipher: CipherInfo {
            cipher_type: Cipher::None,
            wrapped_key: None,
        },
    };
    let bytes = info.to_bytes().unwrap();
    assert_eq!(ArchiveInfo::from_bytes(&bytes).unwrap(), info);
    assert!(matches!(
        BackupInfo::from_bytes(&bytes),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(load(&bytes), Err(Error::WrongKind { .. })));
    assert!(matches!(
        ArchiveInfo::from_bytes(&m.to_bytes().unwrap()),
        Err(Error::WrongKind { .. })
    ));
    assert_eq!(ArchiveInfo::archive_id(info.current_db().unwrap()), "15-1");
}

#[test]
fn backup_info_rules() {
    let m = manifest();
    let (_, checksum) = Manifest::from_bytes_with_checksum(&m.to_bytes().unwrap()).unwrap();
    let summary = BackupSummary::from_manifest(&m, checksum);
    assert_eq!(summary.file_count, 2);
    assert_eq!(summary.manifest_checksum, Some(checksum));
    let mut info = BackupInfo {
        stanza: "main".into(),
        db_history: vec![
            DbHistory {
                db_id: 1,
                system_id: 7,
                pg_version: 14,
            },
            DbHistory {
                db_id: 2,
                system_id: 8,
                pg_version: 15,
            },
        ],
        cipher: CipherInfo {
            cipher_type: Cipher::Aes256Gcm,
            wrapped_key: Some(serde_json::json!({"z": 1, "a": {"y": [1, "x"], "b": null}})),
        },
        backups: vec![summary],
    };
    let bytes = info.to_bytes().unwrap();
    let loaded = BackupInfo::from_bytes(&bytes).unwrap();
    assert_eq!(loaded, info);
    assert_eq!(loaded.current_db().unwrap().db_id, 2);
    assert!(loaded.backup(&m.backup.label).is_some());
    info.backups[0].db_id = 3;
    assert!(matches!(
        BackupInfo::from_bytes(&info.to_bytes().unwrap()),
        Err(Error::UnknownDb { db_id: 3, .. })
    ));
    info.backups[0].db_id = 1;
    info.backups[0].label = "x".into();
    assert!(matches!(
        BackupInfo::from_bytes(&info.to_bytes().unwrap()),
        Err(Error::BadLabel { .. })
    ));
    info.backups.clear();
    info.stanza = "../x".into();
    assert!(BackupInfo::from_bytes(&info.to_bytes().unwrap()).is_err());
}

#[test]
fn error_messages_name_the_offender() {
    let mut m = manifest();
    m.files[0].name = "../../etc/shadow".into();
    let msg = reload(&m).unwrap_err().to_string();
    assert!(
        msg.contains("../../etc/shadow") && msg.contains(".."),
        "{msg}"
    );
}

#[test]
fn large_manifest_round_trips() {
    // 100,000 files over 10 databases, given in an unsorted order, with a few
    // references, bundles, block maps and page errors.
    let mut m = manifest();
    m.files.clear();
    m.paths.push(PathEntry {
        target: "pg_data".into(),
        name: "base/1".into(),
        mode: 0o700,
    });
    let prior = m.backup.prior.clone();
    for i in 0..100_000u32 {
        let db = 16384 + i % 10;
        if i < 10 {
            m.paths.push(PathEntry {
                target: "pg_data".into(),
                name: format!("base/{db}"),
                mode: 0o700,
            });
        }
        let mut f = file("pg_data", &format!("base/{db}/{}", 20000 + i / 10));
        f.size = u64::from(i) * 8192;
        f.checksum = sum(&i.to_le_bytes());
        f.mtime = 1_795_641_000 - i64::from(i);
        f.stored_size = f.size / 3;
        match i % 100 {
            1 => f.reference = prior.as_deref().map(Into::into),
            2 => {
                f.bundle = Some(BundleRef {
                    id: u64::from(i / 1000),
                    offset: u64::from(i) * 100,
                    length: 100,
                })
            }
            3 => {
                f.size = 3 * 8192 + 1;
                f.block_map = Some(BlockMapRef {
                    block_size: 8192,
                    blocks: (0..4u64)
                        .map(|b| BlockRef {
                            hash: block_hash(&b.to_le_bytes()),
                            reference: if b == 0 {
                                prior.as_deref().map(Into::into)
                            } else {
                                None
                            },
                            offset: b * 1000,
                            length: 1000,
                            base: None,
                            chain: None,
                        })
                        .collect(),
                });
                f.page_errors = vec![0, 3];
            }
            _ => {}
        }
        m.files.push(f);
    }
    m.files
        .push(file("pg_tblspc/16384", "PG_15_202209061/5/16385"));
    m.validate().unwrap();

    let bytes = m.to_bytes().unwrap();
    // The output buffer was sized up front, not grown.
    assert!(bytes.capacity() <= bytes.len() + bytes.len() / 32 + 4096);
    let loaded = Manifest::from_bytes(&bytes).unwrap();
    let mut sorted = m.clone();
    sorted.sort();
    assert_eq!(loaded, sorted);
    assert_eq!(loaded.to_bytes().unwrap(), bytes);
    assert_eq!(
        loaded.file("pg_data", "base/16387/20000").map(|f| f.size),
        Some(3 * 8192 + 1)
    );

    // Still strict at this size: one bad entry among many is found.
    let mut bad = sorted.clone();
    bad.files[54_321].name = "base/../x".into();
    assert!(matches!(bad.validate(), Err(Error::UnsafeName { .. })));
    let mut bad = sorted.clone();
    let dup = bad.files[77_777].clone();
    bad.files.push(dup);
    assert!(matches!(bad.validate(), Err(Error::Duplicate { .. })));
    let mut bad = sorted;
    let below = file("pg_data", "base/16390/20005/x");
    bad.files.push(below);
    assert!(matches!(bad.validate(), Err(Error::NotADirectory { .. })));
}

/// A file index finds what `position` finds, present or not, whether the files are sorted (as
/// loaded) or in the order a backup found them.
#[test]
fn file_index_finds_what_position_finds() {
    let names = [
        "base/1/3",
        "PG_VERSION",
        "base/1/10",
        "global/1262",
        "base/1/2",
    ];
    let mut m = Manifest {
        files: names
            .iter()
            .map(|n| file("pg_data", n))
            .chain([file("pg_tblspc/16400", "PG_15/1/5")])
            .collect(),
        ..Manifest::default()
    };
    let lookups = [
        ("pg_data", "base/1/10"),
        ("pg_data", "PG_VERSION"),
        ("pg_data", "base/1/2"),
        ("pg_tblspc/16400", "PG_15/1/5"),
        ("pg_data", "base/1/4"),
        ("pg_data", "PG_15/1/5"),
        ("pg_tblspc/16401", "PG_15/1/5"),
        ("", ""),
    ];
    for sorted in [false, true] {
        if sorted {
            m.sort();
        }
        let index = m.file_index();
        for (target, name) in lookups {
            assert_eq!(
                index.position(&m, target, name),
                m.position(target, name),
                "{target}/{name}, sorted: {sorted}"
            );
        }
        assert!(index.position(&m, "pg_data", "base/1/2").is_some());
        assert!(index.position(&m, "pg_data", "base/1/4").is_none());
    }
}

/// A block map whose blocks all keep chaining values must make the file's checksum with them:
/// a later backup builds checksums from them without reading the blocks.
#[test]
fn chaining_values_must_make_the_files_checksum() {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let blocks: Vec<BlockRef> = data
        .chunks(4096)
        .enumerate()
        .map(|(i, b)| BlockRef {
            hash: block_hash(b),
            reference: None,
            offset: i as u64 * 10,
            length: 10,
            base: None,
            chain: block_chain_value(b, i as u64, 4096),
        })
        .collect();
    let mut m = manifest();
    let mut f = file("pg_data", "base/1/16384");
    f.size = data.len() as u64;
    f.checksum = sum(&data);
    f.block_map = Some(BlockMapRef {
        block_size: 4096,
        blocks,
    });
    m.files = vec![f];
    assert!(reload(&m).is_ok());
    let map = m.files[0].block_map.as_mut().expect("map");
    map.blocks[1].chain = map.blocks[0].chain;
    let err = reload(&m).expect_err("a wrong chaining value");
    assert!(err.to_string().contains("chaining values"), "{err}");
}
