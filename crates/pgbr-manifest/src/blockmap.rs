//! Block maps: a large file stored as independently compressed blocks, each
//! identified by a hash of its plaintext so that the next backup stores only
//! the blocks that changed.

/// Hex of the first 16 bytes (128 bits) of the BLAKE3 hash of `block`.
pub fn block_hash(block: &[u8]) -> String {
    let hash = blake3::hash(block);
    hex::encode(&hash.as_bytes()[..16])
}

/// Indexes of the blocks to store: those whose hash differs from the prior
/// block map's hash at the same index, and those beyond the prior map's end.
/// Blocks of the prior map beyond `new_hashes` (the file shrank) are simply
/// dropped and never reported.
pub fn changed_blocks(prior: &[crate::BlockRef], new_hashes: &[String]) -> Vec<usize> {
    new_hashes
        .iter()
        .enumerate()
        .filter(|(i, hash)| prior.get(*i).is_none_or(|p| p.hash != **hash))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlockRef;

    #[test]
    fn hash_is_128_bit_prefix() {
        let h = block_hash(b"abc");
        assert_eq!(h.len(), 32);
        assert!(blake3::hash(b"abc").to_hex().starts_with(&h));
    }

    #[test]
    fn changed() {
        let prior: Vec<BlockRef> = ["a", "b", "c"]
            .iter()
            .map(|h| BlockRef {
                hash: h.to_string(),
                reference: None,
                offset: 0,
                length: 1,
                base: None,
            })
            .collect();
        let new: Vec<String> = ["a", "x", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(changed_blocks(&prior, &new), vec![1, 3]);
        assert_eq!(changed_blocks(&prior, &new[..1]), Vec::<usize>::new());
        assert_eq!(changed_blocks(&[], &new), vec![0, 1, 2, 3]);
    }
}
