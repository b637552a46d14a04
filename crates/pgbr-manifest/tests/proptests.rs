//! Property tests of the formats and algorithms.

use std::collections::BTreeMap;

use pgbr_manifest::*;
use proptest::prelude::*;

const MIN_T: i64 = -62_167_219_200;
const MAX_T: i64 = 253_402_300_799;

fn component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_ .~é-]{1,8}".prop_filter("not . or ..", |c| c != "." && c != "..")
}

/// A safe name whose last component starts with `leaf` and whose directory
/// components start with `d_`, so files, links and paths never nest badly.
fn name(leaf: &'static str) -> impl Strategy<Value = String> {
    (prop::collection::vec(component(), 0..3), component()).prop_map(move |(dirs, last)| {
        let mut parts: Vec<String> = dirs.into_iter().map(|d| format!("d_{d}")).collect();
        parts.push(format!("{leaf}{last}"));
        parts.join("/")
    })
}

/// A compression or cipher drawn by its name as the metadata stores it.
fn stored_name<T>(names: &'static str) -> impl Strategy<Value = T>
where
    T: std::str::FromStr + std::fmt::Debug,
    T::Err: std::fmt::Debug,
{
    names.prop_map(|n| n.parse::<T>().expect("a stored name"))
}

fn opt_string() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[ -~\n\t\"\\\\]{0,20}")
}

fn hex(len: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), len / 2).prop_map(hex::encode)
}

#[derive(Debug, Clone)]
struct Refs {
    full: String,
    references: Vec<String>,
}

fn file_strategy(targets: Vec<String>, refs: Vec<String>) -> impl Strategy<Value = FileEntry> {
    let reference = move || {
        let refs = refs.clone();
        prop::option::of(prop::sample::select(if refs.is_empty() {
            vec![String::new()]
        } else {
            refs
        }))
        .prop_map(|r| r.filter(|r| !r.is_empty()))
    };
    let block_map = prop::option::of((
        prop::sample::select(vec![1u32, 7, 8192, 65536]),
        0u64..8,
        prop::collection::vec(
            (
                hex(32),
                reference(),
                any::<u64>(),
                any::<u64>(),
                (reference(), any::<u64>(), any::<u64>()),
            ),
            8,
        ),
    ));
    (
        prop::sample::select(targets),
        name("f_"),
        any::<u64>(),
        (
            any::<i64>(),
            any::<u32>(),
            any::<[u8; 32]>().prop_map(pgbr_manifest::Checksum),
            reference(),
            any::<u64>(),
        ),
        prop::option::of((any::<u64>(), any::<u64>(), any::<u64>())),
        block_map,
        prop::collection::vec(any::<u32>(), 0..4),
    )
        .prop_map(
            |(
                target,
                name,
                size,
                (mtime, mode, checksum, reference, stored_size),
                bundle,
                block_map,
                page_errors,
            )| {
                let (size, block_map) = match block_map {
                    None => (size, None),
                    Some((bs, nblocks, blocks)) => {
                        let size = if nblocks == 0 {
                            0
                        } else {
                            (nblocks - 1) * u64::from(bs) + 1 + size % u64::from(bs)
                        };
                        let blocks = blocks
                            .into_iter()
                            .take(nblocks as usize)
                            .enumerate()
                            .map(|(i, (hash, reference, offset, length, base))| BlockRef {
                                hash: hash.parse().expect("32 lowercase hex digits"),
                                reference: reference.map(Into::into),
                                offset,
                                length,
                                base: match base {
                                    (Some(reference), offset, length) => Some(BlockBase {
                                        reference: reference.into(),
                                        offset,
                                        length,
                                    }),
                                    (None, ..) => None,
                                },
                                // Some blocks keep a chaining value, as a cluster summarizing
                                // its WAL has them (never all: they would have to make the
                                // file's checksum).
                                chain: (i > 0 && offset % 3 == 0)
                                    .then_some(ChainValue([length as u8; 32])),
                            })
                            .collect();
                        (
                            size,
                            Some(BlockMapRef {
                                block_size: bs,
                                blocks,
                            }),
                        )
                    }
                };
                FileEntry {
                    target: target.into(),
                    name: name.into(),
                    size,
                    mtime,
                    mode,
                    checksum,
                    reference: reference.map(Into::into),
                    stored_size,
                    bundle: bundle.map(|(id, offset, length)| BundleRef { id, offset, length }),
                    block_map,
                    page_errors,
                }
            },
        )
}

fn refs_strategy() -> impl Strategy<Value = (BackupType, Refs, i64)> {
    (
        prop::sample::select(vec![BackupType::Full, BackupType::Diff, BackupType::Incr]),
        0i64..4_000_000_000,
        1i64..1_000_000,
        prop::collection::vec(1i64..1_000_000, 0..3),
    )
        .prop_map(|(ty, t_full, delta, others)| {
            let full = new_label(BackupType::Full, None, t_full);
            let mut references = Vec::new();
            if ty != BackupType::Full {
                references.push(full.clone());
                for o in others {
                    let l = new_label(BackupType::Incr, Some(&full), t_full + o);
                    if !references.contains(&l) {
                        references.push(l);
                    }
                }
            }
            (ty, Refs { full, references }, t_full + delta + 1_000_000)
        })
}

fn manifest_strategy() -> impl Strategy<Value = Manifest> {
    (refs_strategy(), prop::option::of(1u32..100_000)).prop_flat_map(|((ty, refs, t), ts_oid)| {
        let mut targets = vec![Target {
            name: "pg_data".into(),
            path: "/var/lib/postgresql/15/main".into(),
            tablespace_oid: None,
            tablespace_name: None,
        }];
        if let Some(oid) = ts_oid {
            targets.push(Target {
                name: format!("pg_tblspc/{oid}"),
                path: format!("/srv/ts/{oid}"),
                tablespace_oid: Some(oid),
                tablespace_name: Some(format!("ts{oid}")),
            });
        }
        let target_names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
        let label = if ty == BackupType::Full {
            new_label(ty, None, refs.full_time())
        } else {
            new_label(ty, Some(&refs.full), t)
        };
        let prior = (ty != BackupType::Full)
            .then(|| refs.references.last().cloned().unwrap_or(refs.full.clone()));
        let references = refs.references.clone();
        let meta = (
            (
                any::<i64>(),
                any::<i64>(),
                "[0-9A-F]{1,8}/[0-9A-F]{1,8}",
                "[0-9A-F]{24}",
            ),
            (
                any::<u32>(),
                any::<u32>(),
                any::<u64>(),
                any::<u32>(),
                any::<bool>(),
            ),
            (
                stored_name::<Compression>("(zst|gz|lz4|none)"),
                any::<i32>(),
                stored_name::<Cipher>("(none|aes-256-gcm)"),
                any::<bool>(),
            ),
            (
                "[ -~\n]{0,40}",
                opt_string(),
                any::<u64>(),
                any::<u64>(),
                "[0-9.]{1,8}",
            ),
        )
            .prop_map(move |(a, b, c, d)| BackupMeta {
                label: label.clone(),
                backup_type: ty,
                prior: prior.clone(),
                references: references.clone(),
                timestamp_start: a.0,
                timestamp_stop: a.1,
                lsn_start: a.2.clone(),
                lsn_stop: a.2,
                wal_start: a.3.clone(),
                wal_stop: a.3,
                timeline: b.0,
                pg_version: b.1,
                system_id: b.2,
                db_id: b.3,
                checksums_enabled: b.4,
                compress_type: c.0,
                compress_level: c.1,
                cipher_type: c.2,
                archive_copy: c.3,
                backup_label: d.0,
                tablespace_map: d.1,
                size_original: d.2,
                size_stored: d.3,
                pgbr_version: d.4,
                wal_segment_size: 16 * 1024 * 1024,
            });
        let paths = prop::collection::vec(
            (
                prop::sample::select(target_names.clone()),
                prop::option::of(name("d_")),
                any::<u32>(),
            ),
            0..6,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(target, name, mode)| PathEntry {
                    target,
                    name: name.unwrap_or_default(),
                    mode,
                })
                .collect::<Vec<_>>()
        });
        let links = prop::collection::vec(
            (
                prop::sample::select(target_names.clone()),
                name("l_"),
                "[ -~]{1,30}",
            ),
            0..4,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(target, name, destination)| LinkEntry {
                    target,
                    name,
                    destination,
                })
                .collect::<Vec<_>>()
        });
        let files =
            prop::collection::vec(file_strategy(target_names, refs.references.clone()), 0..12);
        (meta, Just(targets), paths, links, files).prop_map(
            |(backup, targets, paths, links, files)| {
                let mut m = Manifest {
                    backup,
                    targets,
                    paths,
                    links,
                    files,
                };
                dedup(&mut m);
                m
            },
        )
    })
}

impl Refs {
    fn full_time(&self) -> i64 {
        parse_label(&self.full).map(|(_, t)| t).unwrap_or(0)
    }
}

fn dedup(m: &mut Manifest) {
    let mut seen = std::collections::HashSet::new();
    m.paths
        .retain(|p| seen.insert((p.target.clone(), p.name.clone())));
    m.links
        .retain(|p| seen.insert((p.target.clone(), p.name.clone())));
    m.files
        .retain(|p| seen.insert((p.target.to_string(), p.name.to_string())));
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        "[ -~]{0,10}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..4).prop_map(
                |m: BTreeMap<String, serde_json::Value>| serde_json::Value::Object(
                    m.into_iter().collect()
                )
            ),
        ]
    })
}

fn history_strategy() -> impl Strategy<Value = Vec<DbHistory>> {
    prop::collection::btree_map(1u32..50, (any::<u64>(), 9u32..20), 0..4).prop_map(|m| {
        m.into_iter()
            .map(|(db_id, (system_id, pg_version))| DbHistory {
                db_id,
                system_id,
                pg_version,
            })
            .collect()
    })
}

fn cipher_strategy() -> impl Strategy<Value = CipherInfo> {
    // `Some(Value::Null)` is written as `null` and reads back as `None` (documented).
    (
        stored_name::<Cipher>("(none|aes-256-gcm|aes-256-cbc)"),
        prop::option::of(json_value().prop_filter("not null", |v| !v.is_null())),
    )
        .prop_map(|(cipher_type, wrapped_key)| CipherInfo {
            cipher_type,
            wrapped_key,
        })
}

fn backup_info_strategy() -> impl Strategy<Value = BackupInfo> {
    ("[a-zA-Z0-9_-]{1,10}", history_strategy(), cipher_strategy()).prop_flat_map(
        |(stanza, db_history, cipher)| {
            let ids: Vec<u32> = db_history.iter().map(|d| d.db_id).collect();
            let backups = if ids.is_empty() {
                Just(Vec::new()).boxed()
            } else {
                prop::collection::vec((manifest_strategy(), prop::sample::select(ids)), 0..4)
                    .prop_map(|ms| {
                        let mut out: Vec<BackupSummary> = Vec::new();
                        for (m, db_id) in ms {
                            let checksum = pgbr_manifest::Checksum::of(m.backup.label.as_bytes());
                            let mut s = BackupSummary::from_manifest(&m, checksum);
                            s.db_id = db_id;
                            // Entries written before checksums were recorded have none.
                            if db_id % 2 == 0 {
                                s.manifest_checksum = None;
                            }
                            if !out.iter().any(|o| o.label == s.label) {
                                out.push(s);
                            }
                        }
                        out
                    })
                    .boxed()
            };
            (Just(stanza), Just(db_history), Just(cipher), backups).prop_map(
                |(stanza, db_history, cipher, backups)| BackupInfo {
                    stanza,
                    db_history,
                    cipher,
                    backups,
                },
            )
        },
    )
}

fn flipped_positions(bytes: &[u8]) -> Vec<usize> {
    (0..bytes.len())
        .filter(|&i| !bytes[i].is_ascii_whitespace())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn compression_and_cipher_keep_their_stored_names(
        c in "(none|zst|gz|lz4)",
        k in "(none|aes-256-gcm|aes-256-cbc)",
    ) {
        // The JSON holds the same strings as before the names were typed, so old repositories
        // read and new ones read in older pgbr.
        let compression: Compression = serde_json::from_str(&format!("\"{c}\"")).unwrap();
        prop_assert_eq!(serde_json::to_string(&compression).unwrap(), format!("\"{c}\""));
        let cipher: Cipher = serde_json::from_str(&format!("\"{k}\"")).unwrap();
        prop_assert_eq!(serde_json::to_string(&cipher).unwrap(), format!("\"{k}\""));
    }

    #[test]
    fn manifest_round_trips(m in manifest_strategy()) {
        m.validate().map_err(|e| TestCaseError::fail(format!("generated manifest invalid: {e}")))?;
        let mut sorted = m.clone();
        sorted.sort();
        let bytes = m.to_bytes().unwrap();
        prop_assert_eq!(Manifest::from_bytes(&bytes).unwrap(), sorted.clone());
        prop_assert_eq!(Manifest::from_reader(&bytes[..]).unwrap(), sorted.clone());
        // The checksum written is the one both loaders return.
        let (written, checksum) = m.write_to_with_checksum(Vec::new()).unwrap();
        prop_assert_eq!(&written, &bytes);
        prop_assert_eq!(Manifest::from_bytes_with_checksum(&bytes).unwrap().1, checksum);
        prop_assert_eq!(Manifest::from_reader_with_checksum(&bytes[..]).unwrap().1, checksum);
        for f in &m.files {
            prop_assert_eq!(sorted.file(&f.target, &f.name), Some(f));
        }
    }

    #[test]
    fn manifest_to_bytes_is_deterministic(m in manifest_strategy(), seed in any::<u64>()) {
        let a = m.to_bytes().unwrap();
        prop_assert_eq!(&a, &m.to_bytes().unwrap());
        // Streamed, the same bytes.
        prop_assert_eq!(&a, &m.write_to(Vec::new()).unwrap());
        let mut shuffled = m.clone();
        let n = shuffled.files.len();
        if n > 1 {
            shuffled.files.swap(0, (seed as usize) % n);
            shuffled.files.reverse();
        }
        shuffled.targets.reverse();
        shuffled.paths.reverse();
        prop_assert_eq!(&a, &shuffled.to_bytes().unwrap());
        let reloaded = Manifest::from_bytes(&a).unwrap();
        prop_assert_eq!(&a, &reloaded.to_bytes().unwrap());
    }

    #[test]
    fn flipping_any_byte_is_detected(m in manifest_strategy(), pick in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let bytes = m.to_bytes().unwrap();
        let positions = flipped_positions(&bytes);
        let at = positions[pick.index(positions.len())];
        let mut bad = bytes.clone();
        bad[at] ^= xor;
        prop_assert!(Manifest::from_bytes(&bad).is_err(), "flip at {} ({:?} -> {:?}) not detected", at, bytes[at] as char, bad[at] as char);
        prop_assert!(Manifest::from_reader(&bad[..]).is_err(), "streamed: flip at {} not detected", at);
    }

    #[test]
    fn streamed_and_whole_loads_agree_on_respaced_manifests(m in manifest_strategy(), pick in any::<prop::sample::Index>(), space in prop::sample::select(vec![" ", "\n", "\t "])) {
        // Whitespace inserted anywhere: around the manifest it changes nothing, inside it
        // breaks the checksum (or the JSON, inside a token); both loaders must say the same.
        let bytes = m.to_bytes().unwrap();
        let at = pick.index(bytes.len() + 1);
        let mut edited = bytes[..at].to_vec();
        edited.extend_from_slice(space.as_bytes());
        edited.extend_from_slice(&bytes[at..]);
        let whole = Manifest::from_bytes(&edited);
        let streamed = Manifest::from_reader(&edited[..]);
        prop_assert_eq!(whole.as_ref().ok(), streamed.as_ref().ok(), "at {}: {:?} / {:?}", at, whole.as_ref().err(), streamed.as_ref().err());
    }

    #[test]
    fn unsafe_names_are_rejected(
        dirs in prop::collection::vec(component(), 0..3),
        tail in prop::collection::vec(component(), 0..3),
        absolute in any::<bool>(),
        m in manifest_strategy(),
    ) {
        let mut parts = dirs.clone();
        let name = if absolute {
            parts.extend(tail.clone());
            if parts.is_empty() { parts.push("x".into()); }
            format!("/{}", parts.join("/"))
        } else {
            parts.push("..".into());
            parts.extend(tail.clone());
            parts.join("/")
        };
        prop_assert!(validate_relative_name(&name).is_err(), "{:?} accepted", name);
        let mut m = m;
        m.files.push(FileEntry {
            target: "pg_data".into(),
            name: name.as_str().into(),
            size: 0,
            mtime: 0,
            mode: 0o600,
            checksum: pgbr_manifest::Checksum::of(b""),
            reference: None,
            stored_size: 0,
            bundle: None,
            block_map: None,
            page_errors: vec![],
        });
        let loaded = Manifest::from_bytes(&m.to_bytes().unwrap());
        let rejected = matches!(loaded, Err(Error::UnsafeName { .. }));
        prop_assert!(rejected, "{:?}: {:?}", name, loaded);
    }

    #[test]
    fn safe_names_are_accepted(n in name("f_")) {
        prop_assert!(validate_relative_name(&n).is_ok());
    }

    #[test]
    fn backup_info_round_trips(info in backup_info_strategy(), pick in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let bytes = info.to_bytes().unwrap();
        prop_assert_eq!(&bytes, &info.to_bytes().unwrap());
        prop_assert_eq!(BackupInfo::from_bytes(&bytes).unwrap(), info.clone());
        let positions = flipped_positions(&bytes);
        let mut bad = bytes.clone();
        bad[positions[pick.index(positions.len())]] ^= xor;
        prop_assert!(BackupInfo::from_bytes(&bad).is_err());
        prop_assert_eq!(
            info.current_db().map(|d| d.db_id),
            info.db_history.iter().map(|d| d.db_id).max()
        );
    }

    #[test]
    fn archive_info_round_trips(stanza in "[a-zA-Z0-9_-]{1,10}", db_history in history_strategy(), cipher in cipher_strategy()) {
        let info = ArchiveInfo { stanza, db_history, cipher };
        let bytes = info.to_bytes().unwrap();
        prop_assert_eq!(ArchiveInfo::from_bytes(&bytes).unwrap(), info.clone());
        let wrong = matches!(BackupInfo::from_bytes(&bytes), Err(Error::WrongKind { .. }));
        prop_assert!(wrong);
    }

    #[test]
    fn changed_blocks_finds_exactly_the_edits(
        prior_len in 0usize..40,
        edits in prop::collection::btree_set(0usize..40, 0..10),
        new_len in 0usize..50,
    ) {
        let prior: Vec<BlockRef> = (0..prior_len)
            .map(|i| BlockRef { hash: block_hash(format!("p{i}").as_bytes()), reference: None, offset: i as u64, length: 1, base: None, chain: None })
            .collect();
        let new: Vec<BlockHash> = (0..new_len)
            .map(|i| {
                if i >= prior_len { block_hash(format!("n{i}").as_bytes()) }
                else if edits.contains(&i) { block_hash(format!("m{i}").as_bytes()) }
                else { prior[i].hash }
            })
            .collect();
        let expected: Vec<usize> = (0..new_len).filter(|i| *i >= prior_len || edits.contains(i)).collect();
        prop_assert_eq!(changed_blocks(&prior, &new), expected);
    }

    #[test]
    fn labels_round_trip(t_full in MIN_T..=MAX_T, t in MIN_T..=MAX_T, ty in prop::sample::select(vec![BackupType::Full, BackupType::Diff, BackupType::Incr])) {
        let full = new_label(BackupType::Full, None, t_full);
        prop_assert_eq!(parse_label(&full).unwrap(), (BackupType::Full, t_full));
        let label = new_label(ty, Some(&full), t);
        prop_assert_eq!(parse_label(&label).unwrap(), (ty, t));
        if ty != BackupType::Full {
            prop_assert!(label.starts_with(&full));
            // a child's label as prior gives the same full part
            prop_assert_eq!(new_label(ty, Some(&label), t), label.clone());
        }
        prop_assert_eq!(ty.label_suffix(), label.chars().last().unwrap());
    }

    #[test]
    fn parse_label_never_panics(s in "\\PC{0,40}") {
        let _ = parse_label(&s);
    }

    #[test]
    fn from_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Manifest::from_bytes(&bytes);
        let _ = Manifest::from_reader(&bytes[..]);
        let _ = BackupInfo::from_bytes(&bytes);
        let _ = ArchiveInfo::from_bytes(&bytes);
    }
}
