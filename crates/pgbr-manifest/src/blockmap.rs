//! Block maps: a large file stored as independently compressed blocks, each
//! identified by a hash of its plaintext so that the next backup stores only
//! the blocks that changed.

/// What identifies a block's contents: the first 16 bytes (128 bits) of the BLAKE3 hash of its
/// plaintext ([`block_hash`]).
///
/// Shown, parsed and serialized as 32 lowercase hex digits; held as bytes in memory (a block
/// map holds one per 64 KiB of a big file, and a `String` cost five times the space).
///
/// ```
/// use pgbr_manifest::{block_hash, BlockHash};
///
/// let hash = block_hash(b"abc");
/// let hex = hash.to_string();
/// assert_eq!(hex.len(), 32);
/// assert_eq!(hex.parse::<BlockHash>().unwrap(), hash);
/// assert!(hash == *hex.as_str());
/// assert!("ABC".parse::<BlockHash>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct BlockHash(pub [u8; 16]);

/// Why a text is not a [`BlockHash`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block hash {0:?} is not 32 lowercase hex digits")]
pub struct ParseBlockHashError(String);

crate::hexbytes::hex_text_impls!(BlockHash, ParseBlockHashError, "32 lowercase hex digits");

/// The first 16 bytes (128 bits) of the BLAKE3 hash of `block`.
pub fn block_hash(block: &[u8]) -> BlockHash {
    let hash = blake3::hash(block);
    let mut prefix = [0u8; 16];
    prefix.copy_from_slice(&hash.as_bytes()[..16]);
    BlockHash(prefix)
}

/// Indexes of the blocks to store: those whose hash differs from the prior
/// block map's hash at the same index, and those beyond the prior map's end.
/// Blocks of the prior map beyond `new_hashes` (the file shrank) are simply
/// dropped and never reported.
pub fn changed_blocks(prior: &[crate::BlockRef], new_hashes: &[BlockHash]) -> Vec<usize> {
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
        let h = block_hash(b"abc").to_string();
        assert_eq!(h.len(), 32);
        assert!(blake3::hash(b"abc").to_hex().starts_with(&h));
    }

    #[test]
    fn text_and_json_round_trip_and_bad_text_is_refused() {
        let h = block_hash(b"abc");
        let json = serde_json::to_string(&h).expect("json");
        assert_eq!(json, format!("\"{h}\""));
        assert_eq!(serde_json::from_str::<BlockHash>(&json).expect("parse"), h);
        let good = h.to_string();
        for bad in [
            String::new(),
            good.to_uppercase(),
            good[..31].to_string(),
            format!("{good}0"),
            format!("{}g", &good[..31]),
        ] {
            assert!(bad.parse::<BlockHash>().is_err(), "{bad}");
            let json = serde_json::to_string(&bad).expect("json");
            let err = serde_json::from_str::<BlockHash>(&json).expect_err("refused");
            assert!(err.to_string().contains("32 lowercase hex digits"), "{err}");
        }
    }

    #[test]
    fn changed() {
        let hash = |b: &[u8]| block_hash(b);
        let prior: Vec<BlockRef> = [b"a", b"b", b"c"]
            .iter()
            .map(|h| BlockRef {
                hash: hash(&h[..]),
                reference: None,
                offset: 0,
                length: 1,
                base: None,
                chain: None,
            })
            .collect();
        let new: Vec<BlockHash> = [b"a", b"x", b"c", b"d"]
            .iter()
            .map(|b| hash(&b[..]))
            .collect();
        assert_eq!(changed_blocks(&prior, &new), vec![1, 3]);
        assert_eq!(changed_blocks(&prior, &new[..1]), Vec::<usize>::new());
        assert_eq!(changed_blocks(&[], &new), vec![0, 1, 2, 3]);
    }
}
