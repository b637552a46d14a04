//! Blocks stored and read back: on one thread or two, against a prior block map, delta-coded.

use std::fs::File;
use std::path::Path;

use pgbr_manifest::BlockRef;
use pgbr_storage::Storage;
use proptest::prelude::*;

use super::store::WINDOW_BLOCKS;
use super::*;
use crate::pipeline::pages::PageCheckSpec;
use crate::pipeline::testing::{codec, runtime};

/// The object of the test file in the backup labelled `label`.
fn object_of_label(label: &str) -> String {
    format!("{label}/file.blk")
}

/// Stores `data` as blocks of backup `label` (optionally against `prior`, the block map of
/// the prior backup and its label; with `deltas`, changed blocks are coded against their
/// earlier versions), then rebuilds the file from the blocks and returns (blocks, rebuilt
/// bytes).
fn store_and_rebuild(
    rt: &tokio::runtime::Runtime,
    storage: &Storage,
    dir: &Path,
    data: &[u8],
    label: &str,
    prior: Option<(&[BlockRef], &str)>,
    deltas: bool,
) -> (Vec<BlockRef>, Vec<u8>) {
    let src = dir.join("file");
    std::fs::write(&src, data).expect("write");
    let handle = rt.handle().clone();
    let object = object_of_label(label);
    let object_of = |r: Option<&str>| object_of_label(r.unwrap_or(label));
    let codec_of = |_: Option<&str>| Ok(codec());
    let stored = store_blocks(
        &src,
        storage,
        &object,
        &codec(),
        None,
        prior.map(|(blocks, label)| Prior {
            blocks,
            label,
            size: u64::MAX,
            bases: deltas.then_some(BaseReader {
                object_of: &object_of,
                codec_of: &codec_of,
            }),
        }),
        Chain::Off,
        // Whole blocks are sealed on two threads (deltas stay on one).
        &|| true,
        &handle,
    )
    .expect("store")
    .expect("file exists");
    assert_eq!(stored.size, data.len() as u64);
    let out = dir.join("rebuilt");
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&out)
        .expect("create");
    fetch_blocks(
        storage,
        &stored.blocks,
        0,
        BLOCK_SIZE as u64,
        &object_of,
        &codec_of,
        &|| true,
        &f,
        &out,
        None,
        &handle,
    )
    .expect("fetch");
    f.set_len(data.len() as u64).expect("len");
    (stored.blocks, std::fs::read(&out).expect("read"))
}

/// Storing a file's blocks on two threads (a spare core) gives what one thread gives: the
/// same object, block map, checksum and page errors, with and without a prior block map.
#[test]
fn two_threads_store_the_same_blocks_as_one() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    // Three windows, the last block short; bytes that compress a little, and pages whose
    // checksums are wrong (so page errors are found in every window).
    let len = 2 * WINDOW_BLOCKS * BLOCK_SIZE + 5 * BLOCK_SIZE + 1000;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if i % 3 == 0 {
                state as u8
            } else {
                (i / 4096) as u8
            }
        })
        .collect();
    let src = dir.path().join("16384.2");
    std::fs::write(&src, &data).expect("write");
    let pages = PageCheckSpec {
        segment: 2,
        start_lsn: u64::MAX,
    };
    let store = |object: &str, prior: Option<Prior<'_>>, two: bool, storage: &Storage| {
        store_blocks(
            &src,
            storage,
            object,
            &codec(),
            Some(pages),
            prior,
            Chain::Off,
            &|| two,
            rt.handle(),
        )
        .expect("store")
        .expect("file exists")
    };
    let storage = Storage::memory();
    let one = store("one.blk", None, false, &storage);
    let two = store("two.blk", None, true, &storage);
    assert!(!one.page_errors.is_empty(), "no page error to compare");
    let object = |name: &str| rt.block_on(storage.get(name)).expect("object");
    let same = |a: &StoredBlocks, b: &StoredBlocks, what: &str| {
        assert_eq!(a.size, b.size, "{what}");
        assert_eq!(a.checksum, b.checksum, "{what}");
        assert_eq!(a.stored_size, b.stored_size, "{what}");
        assert_eq!(a.blocks, b.blocks, "{what}");
        assert_eq!(a.page_errors, b.page_errors, "{what}");
    };
    same(&one, &two, "no prior");
    assert_eq!(object("one.blk"), object("two.blk"));
    // Against a prior map where every third block differs.
    let mut earlier = one.blocks.clone();
    for b in earlier.iter_mut().step_by(3) {
        b.hash = pgbr_manifest::BlockHash::default();
    }
    let prior = || {
        Some(Prior {
            blocks: &earlier,
            label: "F",
            size: data.len() as u64,
            bases: None,
        })
    };
    let one = store("one-i.blk", prior(), false, &storage);
    let two = store("two-i.blk", prior(), true, &storage);
    same(&one, &two, "with a prior");
    assert_eq!(object("one-i.blk"), object("two-i.blk"));
    let stored = one.blocks.iter().filter(|b| b.reference.is_none()).count();
    assert_eq!(stored, earlier.len().div_ceil(3));
}

/// `check_blocks` opens each block a backup stored (a delta-coded one against its base) and
/// names a damaged one by its number in the file.
#[test]
fn check_blocks_opens_own_blocks_and_names_a_damaged_one() {
    let rt = runtime();
    let storage = Storage::memory();
    let dir = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..5 * BLOCK_SIZE).map(|i| (i * 7 % 253) as u8).collect();
    let (full, _) = store_and_rebuild(&rt, &storage, dir.path(), &data, "full", None, false);
    let mut changed = data.clone();
    changed[3 * BLOCK_SIZE + 10] ^= 1;
    let (incr, _) = store_and_rebuild(
        &rt,
        &storage,
        dir.path(),
        &changed,
        "incr",
        Some((&full, "full")),
        true,
    );
    let check = |label: &str, blocks: &[BlockRef]| {
        let map = pgbr_manifest::BlockMapRef {
            block_size: BLOCK_SIZE as u32,
            blocks: blocks.to_vec(),
        };
        let (numbers, own) = own_blocks(&map);
        let object_of = |r: Option<&str>| object_of_label(r.unwrap_or(label));
        check_blocks(
            &storage,
            &own,
            &numbers,
            BLOCK_SIZE as u64,
            &object_of,
            &|_| Ok(codec()),
            rt.handle(),
        )
        .map(|()| numbers)
    };
    // The incremental stored block 3 only, as a delta against the full's block 3.
    assert_eq!(check("incr", &incr).expect("incr intact"), [3]);
    assert!(incr[3].base.is_some());
    assert_eq!(check("full", &full).expect("full intact"), [0, 1, 2, 3, 4]);

    let object = object_of_label("full");
    let mut stored = rt.block_on(storage.get(&object)).expect("get").to_vec();
    stored[(full[1].offset + full[1].length / 2) as usize] ^= 0x55;
    rt.block_on(storage.put(&object, stored.into()))
        .expect("put");
    let err = check("full", &full).expect_err("damaged").to_string();
    assert!(err.contains("block 1 "), "{err}");
    assert!(err.contains(&object), "{err}");
}

proptest! {
    /// An incremental stores exactly the blocks a random edit changed (or added), references
    /// every other block, and the blocks rebuild the edited file.
    #[test]
    fn delta_coded_generations_rebuild_exactly_and_stay_one_delta_deep(
        seed in any::<u64>(),
        blocks in 1usize..6,
        tail in 0usize..BLOCK_SIZE,
        generations in prop::collection::vec(
            (prop::collection::vec((any::<usize>(), any::<u8>()), 0..4), -70_000i64..70_000),
            1..4,
        ),
    ) {
        let rt = runtime();
        let storage = Storage::memory();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = seed | 1;
        let mut next = || { state ^= state << 13; state ^= state >> 7; state ^= state << 17; (state & 0xff) as u8 };
        let mut data: Vec<u8> = (0..blocks * BLOCK_SIZE + tail).map(|_| next()).collect();
        let (full, rebuilt) = store_and_rebuild(&rt, &storage, dir.path(), &data, "g0", None, true);
        prop_assert_eq!(&rebuilt, &data);
        // Every generation's own blocks, by label, to check where bases point.
        let mut own: std::collections::HashMap<String, Vec<BlockRef>> = std::collections::HashMap::new();
        own.insert("g0".into(), full.iter().filter(|b| b.reference.is_none()).cloned().collect());
        let mut prior = full;
        for (g, (edits, len_delta)) in generations.iter().enumerate() {
            let old = data.clone();
            let new_len = (data.len() as i64 + len_delta).max(1) as usize;
            data.resize(new_len, 0);
            for byte in data.iter_mut().skip(old.len()) { *byte = next(); }
            for (pos, byte) in edits {
                let p = pos % data.len();
                data[p] ^= byte | 1;
            }
            let label = format!("g{}", g + 1);
            let prior_label = format!("g{g}");
            let (map, rebuilt) = store_and_rebuild(
                &rt, &storage, dir.path(), &data, &label, Some((&prior, &prior_label)), true,
            );
            prop_assert_eq!(&rebuilt, &data, "generation {}", g + 1);
            for (i, b) in map.iter().enumerate() {
                let start = i * BLOCK_SIZE;
                let had = prior.get(i);
                if had.is_some_and(|p| p.hash == b.hash) {
                    prop_assert!(b.reference.is_some(), "unchanged block {} is referenced", i);
                    continue;
                }
                prop_assert!(b.reference.is_none(), "changed block {} is stored", i);
                prop_assert_eq!(b.base.is_some(), had.is_some(), "block {} has a base iff it had a version", i);
                if let Some(base) = &b.base {
                    let whole = own[base.reference.as_str()].iter().find(|o| o.offset == base.offset);
                    prop_assert!(whole.is_some_and(|o| o.base.is_none() && o.length == base.length),
                        "block {}'s base is a whole block of {}", i, base.reference);
                    // A block of random bytes that kept its length and changed in a few
                    // bytes costs a few bytes.
                    let same_len = start + BLOCK_SIZE <= old.len().min(data.len());
                    if same_len && old.len() == data.len() && edits.len() <= 2 && g == 0 {
                        prop_assert!(b.length < 400, "block {} stored {} bytes", i, b.length);
                    }
                }
            }
            own.insert(label, map.iter().filter(|b| b.reference.is_none()).cloned().collect());
            prior = map;
        }
    }

    #[test]
    fn block_incremental_stores_exactly_the_changed_blocks(
        seed in any::<u64>(),
        blocks in 1usize..8,
        tail in 0usize..BLOCK_SIZE,
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        new_len_delta in -70_000i64..140_000,
    ) {
        let rt = runtime();
        let storage = Storage::memory();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = seed | 1;
        let mut next = || { state ^= state << 13; state ^= state >> 7; state ^= state << 17; (state & 0xff) as u8 };
        let len = blocks * BLOCK_SIZE + tail;
        let old: Vec<u8> = (0..len).map(|_| next()).collect();
        let (prior, rebuilt) = store_and_rebuild(&rt, &storage, dir.path(), &old, "full", None, false);
        prop_assert_eq!(&rebuilt, &old);
        prop_assert!(prior.iter().all(|b| b.reference.is_none()));

        let mut new = old.clone();
        let new_len = (len as i64 + new_len_delta).max(1) as usize;
        new.resize(new_len, 0);
        for byte in new.iter_mut().skip(len) { *byte = next(); }
        for (pos, byte) in &edits {
            let p = pos % new.len();
            new[p] ^= byte | 1;
        }
        let (incr, rebuilt) = store_and_rebuild(
            &rt, &storage, dir.path(), &new, "incr", Some((&prior, "full")), false,
        );
        prop_assert_eq!(&rebuilt, &new);
        for (i, b) in incr.iter().enumerate() {
            let start = i * BLOCK_SIZE;
            let unchanged = start < old.len()
                && old[start..(start + BLOCK_SIZE).min(old.len())] == new[start..(start + BLOCK_SIZE).min(new.len())];
            prop_assert_eq!(b.reference.is_some(), unchanged, "block {}", i);
        }
    }
}

/// Data of `blocks` blocks and `tail` bytes more, each block's bytes from `seed`.
fn blocks_of(blocks: usize, tail: usize, seed: u8) -> Vec<u8> {
    (0..blocks * BLOCK_SIZE + tail)
        .map(|i| ((i / BLOCK_SIZE) as u8).wrapping_mul(7) ^ seed ^ (i % 251) as u8)
        .collect()
}

/// Stores `data` (written to `src`) as blocks at `object`, with `chain` and optionally a prior
/// map of backup "F" of `prior_size` bytes; and rebuilds the file from what was stored.
fn store_with_chain(
    rt: &tokio::runtime::Runtime,
    storage: &Storage,
    src: &Path,
    object: &str,
    prior: Option<(&[BlockRef], u64)>,
    chain: Chain<'_>,
    two: bool,
) -> (StoredBlocks, Vec<u8>) {
    let stored = store_blocks(
        src,
        storage,
        object,
        &codec(),
        None,
        prior.map(|(blocks, size)| Prior {
            blocks,
            label: "F",
            size,
            bases: None,
        }),
        chain,
        &|| two,
        rt.handle(),
    )
    .expect("store")
    .expect("file exists");
    let out = src.with_extension("rebuilt");
    let f = File::create(&out).expect("create");
    let object_of = |r: Option<&str>| match r {
        Some(label) => format!("{label}.blk"),
        None => object.to_string(),
    };
    fetch_blocks(
        storage,
        &stored.blocks,
        0,
        BLOCK_SIZE as u64,
        &object_of,
        &|_| Ok(codec()),
        &|| true,
        &f,
        &out,
        None,
        rt.handle(),
    )
    .expect("fetch");
    f.set_len(stored.size).expect("len");
    let rebuilt = std::fs::read(&out).expect("read");
    (stored, rebuilt)
}

/// With chaining values kept, the file's checksum is still BLAKE3 of its bytes, one block or
/// many, and every block carries its value.
#[test]
fn chaining_values_give_the_files_blake3() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::memory();
    for (blocks, tail) in [(0, 100), (1, 0), (1, 1), (WINDOW_BLOCKS + 3, 517), (40, 0)] {
        let data = blocks_of(blocks, tail, 3);
        let src = dir.path().join("file");
        std::fs::write(&src, &data).expect("write");
        for two in [false, true] {
            let (stored, rebuilt) =
                store_with_chain(&rt, &storage, &src, "x.blk", None, Chain::Record, two);
            assert_eq!(rebuilt, data);
            assert_eq!(
                stored.checksum,
                Checksum::from(blake3::hash(&data)),
                "{blocks}+{tail}"
            );
            assert!(stored.blocks.iter().all(|b| b.chain.is_some()));
            assert_eq!(stored.read, data.len() as u64);
        }
    }
}

/// With the WAL summaries' changes, only the blocks they list (and the first, and those from
/// their `from`) are read; every other block is the prior backup's, and the checksum is that of
/// the file the blocks make, which restore checks.
#[test]
fn summarized_changes_read_only_the_changed_blocks() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::memory();
    let src = dir.path().join("file");
    let count = 2 * WINDOW_BLOCKS + 6;
    let v1 = blocks_of(count, 0, 1);
    std::fs::write(&src, &v1).expect("write");
    let (full, _) = store_with_chain(&rt, &storage, &src, "F.blk", None, Chain::Record, false);
    // Version 2: blocks 5 and 40 changed and listed; block 9 changed but not listed (what the
    // summaries vouch for is taken as it is); two blocks more at the end.
    let mut v2 = blocks_of(count + 2, 0, 1);
    for changed in [5, 9, 40] {
        v2[changed * BLOCK_SIZE + 10] ^= 0xff;
    }
    std::fs::write(&src, &v2).expect("write");
    let changes = ChangedBlocks {
        blocks: vec![5, 40],
        from: None,
    };
    let mut expected = v2.clone();
    expected[9 * BLOCK_SIZE..10 * BLOCK_SIZE].copy_from_slice(&v1[9 * BLOCK_SIZE..10 * BLOCK_SIZE]);
    for two in [false, true] {
        let prior = Some((full.blocks.as_slice(), v1.len() as u64));
        let (incr, rebuilt) = store_with_chain(
            &rt,
            &storage,
            &src,
            "I.blk",
            prior,
            Chain::Skip(&changes),
            two,
        );
        assert_eq!(rebuilt, expected);
        assert_eq!(incr.checksum, Checksum::from(blake3::hash(&expected)));
        // Blocks 0, 5, 40 and the two new ones.
        assert_eq!(incr.read, 5 * BLOCK_SIZE as u64);
        let own: Vec<usize> = (0..incr.blocks.len())
            .filter(|&i| incr.blocks[i].reference.is_none())
            .collect();
        assert_eq!(own, vec![5, 40, count, count + 1]);
    }
    // From block 60 on (a truncation): those are read too; a file shorter than its prior copy
    // ends where it ends.
    let v3 = &v2[..62 * BLOCK_SIZE + 300];
    std::fs::write(&src, v3).expect("write");
    let cut = ChangedBlocks {
        blocks: vec![9],
        from: Some(60),
    };
    let prior = Some((full.blocks.as_slice(), v1.len() as u64));
    let (incr, rebuilt) = store_with_chain(
        &rt,
        &storage,
        &src,
        "J.blk",
        prior,
        Chain::Skip(&cut),
        false,
    );
    // Blocks 5 and 40, not listed this time, are the prior backup's.
    let mut expected = v3.to_vec();
    for b in [5, 40] {
        let range = b * BLOCK_SIZE..(b + 1) * BLOCK_SIZE;
        expected[range.clone()].copy_from_slice(&v1[range]);
    }
    assert_eq!(rebuilt, expected);
    assert_eq!(incr.checksum, Checksum::from(blake3::hash(&expected)));
    assert_eq!(incr.read, 4 * BLOCK_SIZE as u64 + 300);
}
