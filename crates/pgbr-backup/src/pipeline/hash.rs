//! BLAKE3 of local files: on two threads when big, and from the hashes of parts hashed apart.

use std::fs::File;
use std::io;
use std::path::Path;

use pgbr_manifest::Checksum;

use super::{read_full_at, CHUNK};

/// Files at least this large are hashed on two threads by [`hash_file`].
const PARALLEL_HASH_MIN: u64 = 2 * 1024 * 1024;

/// BLAKE3 hex and size of a local file (archive-push names a segment by it; delta restore
/// compares it with the manifest). A big file is hashed on two threads, one per half of the
/// BLAKE3 tree, joined at the root: the same hash as one pass, in about half the time.
pub(crate) fn hash_file(path: &Path) -> io::Result<(u64, Checksum)> {
    use blake3::hazmat::{left_subtree_len, merge_subtrees_root, HasherExt, Mode};
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < PARALLEL_HASH_MIN {
        let mut hasher = blake3::Hasher::new();
        let size = hash_range(&file, 0, u64::MAX, &mut hasher)?;
        return Ok((size, Checksum::from(hasher.finalize())));
    }
    let left_len = left_subtree_len(len);
    let (left, right) = std::thread::scope(|scope| {
        let right = scope.spawn(|| {
            let mut hasher = blake3::Hasher::new();
            hasher.set_input_offset(left_len);
            let n = hash_range(&file, left_len, u64::MAX, &mut hasher)?;
            Ok::<_, io::Error>((n, hasher.finalize_non_root()))
        });
        let mut hasher = blake3::Hasher::new();
        let left =
            hash_range(&file, 0, left_len, &mut hasher).map(|n| (n, hasher.finalize_non_root()));
        let right = right
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")));
        (left, right)
    });
    let ((left_read, left_cv), (right_read, right_cv)) = (left?, right?);
    if left_read != left_len || right_read == 0 {
        // The file shrank while it was read: hash what is there now, in one pass.
        let mut hasher = blake3::Hasher::new();
        let size = hash_range(&file, 0, u64::MAX, &mut hasher)?;
        return Ok((size, Checksum::from(hasher.finalize())));
    }
    let root = merge_subtrees_root(&left_cv, &right_cv, Mode::Hash);
    Ok((left_read + right_read, Checksum::from(root)))
}

/// The BLAKE3 hash of `len` bytes from the chaining values of their consecutive parts of
/// `part_len` bytes each (the last may be shorter), each hashed on its own with
/// `set_input_offset(its start)` and `finalize_non_root`: the hash one pass over all of them
/// gives, whichever threads hashed which part. `part_len` must be a power of two of at least one
/// BLAKE3 chunk, and there must be two parts or more; `None` when the arguments do not describe
/// such a split (a caller's mistake, never a guess).
pub(crate) fn merge_part_hashes(
    parts: &[blake3::hazmat::ChainingValue],
    part_len: u64,
    len: u64,
) -> Option<blake3::Hash> {
    use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, Mode};
    // BLAKE3's own tree: each node's left subtree holds the largest power of two of bytes that
    // leaves its right one at least a byte. With `len` above `part_len`, that is a whole
    // number of parts, so the parts are the tree's subtrees down to their own roots.
    fn subtree(
        parts: &[blake3::hazmat::ChainingValue],
        part_len: u64,
        len: u64,
    ) -> blake3::hazmat::ChainingValue {
        match parts {
            [one] => *one,
            _ => {
                let left = left_subtree_len(len);
                let (l, r) = parts.split_at((left / part_len) as usize);
                merge_subtrees_non_root(
                    &subtree(l, part_len, left),
                    &subtree(r, part_len, len - left),
                    Mode::Hash,
                )
            }
        }
    }
    let well_formed = part_len.is_power_of_two()
        && part_len >= blake3::CHUNK_LEN as u64
        && len > part_len
        && len.div_ceil(part_len) == parts.len() as u64;
    if !well_formed {
        return None;
    }
    let left = left_subtree_len(len);
    let (l, r) = parts.split_at((left / part_len) as usize);
    Some(merge_subtrees_root(
        &subtree(l, part_len, left),
        &subtree(r, part_len, len - left),
        Mode::Hash,
    ))
}

/// Feeds up to `limit` bytes of `file` from `offset` (to its end) into `hasher`; returns the
/// bytes read.
fn hash_range(
    file: &File,
    offset: u64,
    limit: u64,
    hasher: &mut blake3::Hasher,
) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < limit {
        let want = (limit - done).min(CHUNK as u64) as usize;
        let n = read_full_at(file, &mut buf[..want], offset + done)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hash_file_on_two_threads_equals_one_pass() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        for len in [
            0usize,
            1,
            1024,
            1025,
            PARALLEL_HASH_MIN as usize - 1,
            PARALLEL_HASH_MIN as usize,
            PARALLEL_HASH_MIN as usize + 1,
            3 * 1024 * 1024 + 77,
            16 * 1024 * 1024,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&path, &data).expect("write");
            let (size, hex) = hash_file(&path).expect("hash");
            assert_eq!(size, len as u64);
            assert_eq!(
                hex,
                blake3::hash(&data).to_hex().to_string(),
                "length {len}"
            );
        }
    }

    /// Hashes `data` in parts of `part_len` bytes, each on its own as a restore worker does.
    fn part_hashes(data: &[u8], part_len: usize) -> Vec<blake3::hazmat::ChainingValue> {
        use blake3::hazmat::HasherExt;
        data.chunks(part_len)
            .enumerate()
            .map(|(i, part)| {
                let mut hasher = blake3::Hasher::new();
                hasher.set_input_offset((i * part_len) as u64);
                hasher.update(part);
                hasher.finalize_non_root()
            })
            .collect()
    }

    #[test]
    fn part_hashes_merge_into_the_whole_hash_at_the_edges() {
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let chunk = blake3::CHUNK_LEN;
        for (part_len, len) in [
            (chunk, chunk + 1),
            (chunk, 2 * chunk),
            (chunk, 3 * chunk),
            (4 * chunk, 16 * chunk),
            (4 * chunk, 16 * chunk + 1),
            (8 * chunk, 17 * chunk - 1),
            (16 * chunk, 70_000),
        ] {
            let data = &data[..len];
            assert_eq!(
                merge_part_hashes(&part_hashes(data, part_len), part_len as u64, len as u64),
                Some(blake3::hash(data)),
                "parts of {part_len} bytes, {len} bytes"
            );
        }
        // What does not describe a split is refused, never merged into a wrong hash.
        let cvs = part_hashes(&data[..3 * chunk], chunk);
        assert_eq!(
            merge_part_hashes(&cvs, chunk as u64, 4 * chunk as u64),
            None
        );
        assert_eq!(
            merge_part_hashes(&cvs[..1], chunk as u64, chunk as u64),
            None
        );
        assert_eq!(merge_part_hashes(&cvs, 1000, 3000), None);
        assert_eq!(merge_part_hashes(&cvs, 512, 3 * 512), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// However a file is cut into parts, their hashes merge into its BLAKE3 hash.
        #[test]
        fn part_hashes_merge_into_the_whole_hash(
            log_parts in 0u32..4,
            extra in 1usize..40_000,
            seed in any::<u64>(),
        ) {
            let part_len = blake3::CHUNK_LEN << log_parts;
            let len = part_len + extra;
            let mut state = seed | 1;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            prop_assert_eq!(
                merge_part_hashes(&part_hashes(&data, part_len), part_len as u64, len as u64),
                Some(blake3::hash(&data))
            );
        }
    }
}
