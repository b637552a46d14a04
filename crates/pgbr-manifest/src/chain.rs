//! A block-mapped file's checksum from its blocks' BLAKE3 chaining values, so that a backup that
//! knows which blocks changed (from PostgreSQL's WAL summaries) can record the checksum of the
//! whole file without reading the blocks that did not.
//!
//! BLAKE3 hashes its input as a binary tree of 1 KiB chunks. A block of a power-of-two size at
//! an offset that is a multiple of that size is a subtree of that tree, and its chaining value
//! (not a hash: only the root is finalized as one) is kept in the block map
//! ([`crate::BlockRef::chain`]). Merging the chaining values as the tree does gives exactly
//! `blake3::hash` of the file.
//!
//! ```
//! use pgbr_manifest::{block_chain_value, file_checksum_from_chain, Checksum};
//!
//! let file: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
//! let block_size = 64 * 1024;
//! let chain: Vec<_> = file
//!     .chunks(block_size)
//!     .enumerate()
//!     .map(|(i, block)| block_chain_value(block, i as u64, block_size as u64).unwrap())
//!     .collect();
//! let whole = file_checksum_from_chain(&chain, file.len() as u64, block_size as u64);
//! assert_eq!(whole, Some(Checksum::from(blake3::hash(&file))));
//! ```

use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, HasherExt, Mode};

use crate::Checksum;

/// The BLAKE3 chaining value of one block of a file: the non-root hash of the subtree the block
/// is in BLAKE3's tree of the file. Shown and serialized as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChainValue(pub [u8; 32]);

/// Why a text is not a [`ChainValue`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chaining value {0:?} is not 64 lowercase hex digits")]
pub struct ParseChainValueError(String);

crate::hexbytes::hex_text_impls!(ChainValue, ParseChainValueError, "64 lowercase hex digits");

/// Whether blocks of `block_size` bytes are subtrees of BLAKE3's tree: a power of two of at
/// least its 1 KiB chunk.
fn is_subtree_size(block_size: u64) -> bool {
    block_size >= 1024 && block_size.is_power_of_two()
}

/// The chaining value of `block`, block number `index` of a file cut in blocks of `block_size`
/// bytes (only the last block may be shorter). `None` when `block_size` is not a power of two
/// of at least 1 KiB, or `block` is empty or longer than `block_size`.
pub fn block_chain_value(block: &[u8], index: u64, block_size: u64) -> Option<ChainValue> {
    if !is_subtree_size(block_size) || block.is_empty() || block.len() as u64 > block_size {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(index.checked_mul(block_size)?);
    hasher.update(block);
    Some(ChainValue(hasher.finalize_non_root()))
}

/// `blake3::hash` of a file of `len` bytes cut in blocks of `block_size` bytes, from the blocks'
/// chaining values `chain` ([`block_chain_value`]). `None` when the file is one block or less
/// (its hash is the root of that block's own tree, which no chaining value gives: hash its
/// bytes), or `chain` does not hold exactly one value per block.
pub fn file_checksum_from_chain(
    chain: &[ChainValue],
    len: u64,
    block_size: u64,
) -> Option<Checksum> {
    if !is_subtree_size(block_size) || len <= block_size {
        return None;
    }
    if len.div_ceil(block_size) != chain.len() as u64 {
        return None;
    }
    // The root's children: the left one the largest power-of-two number of chunks below `len`.
    let left = blake3::hazmat::left_subtree_len(len);
    let hash = merge_subtrees_root(
        &subtree(chain, 0, left, block_size).0,
        &subtree(chain, left, len - left, block_size).0,
        Mode::Hash,
    );
    Some(Checksum::from(hash))
}

/// [`file_checksum_from_chain`] of a file of `size` bytes whose `blocks` (of `block_size` bytes)
/// each keep their chaining value; `None` when one does not (or as that function says).
pub fn blocks_checksum(blocks: &[crate::BlockRef], size: u64, block_size: u64) -> Option<Checksum> {
    let chain: Option<Vec<ChainValue>> = blocks.iter().map(|b| b.chain).collect();
    file_checksum_from_chain(&chain?, size, block_size)
}

/// The chaining value of the `len` bytes at `offset`, a subtree of the file's tree.
fn subtree(chain: &[ChainValue], offset: u64, len: u64, block_size: u64) -> ChainValue {
    if len <= block_size {
        return chain[(offset / block_size) as usize];
    }
    let left = blake3::hazmat::left_subtree_len(len);
    ChainValue(merge_subtrees_non_root(
        &subtree(chain, offset, left, block_size).0,
        &subtree(chain, offset + left, len - left, block_size).0,
        Mode::Hash,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chain_of(file: &[u8], block_size: usize) -> Vec<ChainValue> {
        file.chunks(block_size)
            .enumerate()
            .map(|(i, b)| block_chain_value(b, i as u64, block_size as u64).expect("block"))
            .collect()
    }

    #[test]
    fn one_block_or_less_has_no_chain_checksum() {
        let block = vec![7u8; 4096];
        let chain = chain_of(&block, 4096);
        assert_eq!(file_checksum_from_chain(&chain, 4096, 4096), None);
        assert_eq!(block_chain_value(&[], 0, 4096), None);
        assert_eq!(block_chain_value(&block, 0, 3000), None);
        assert_eq!(block_chain_value(&block, 0, 2048), None);
    }

    #[test]
    fn a_wrong_count_of_values_is_refused() {
        let file = vec![1u8; 10_000];
        let mut chain = chain_of(&file, 2048);
        chain.pop();
        assert_eq!(file_checksum_from_chain(&chain, 10_000, 2048), None);
    }

    #[test]
    fn text_round_trip() {
        let v = block_chain_value(b"abc", 0, 1024).expect("value");
        let text = v.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ChainValue>().expect("parse"), v);
        assert!(text.to_uppercase().parse::<ChainValue>().is_err());
    }

    proptest! {
        #[test]
        fn chain_checksum_is_the_files_blake3(
            len in 1usize..300_000,
            shift in 10u32..17,
            seed in any::<u8>(),
        ) {
            let block_size = 1usize << shift;
            let file: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            let chain = chain_of(&file, block_size);
            let got = file_checksum_from_chain(&chain, len as u64, block_size as u64);
            if len <= block_size {
                prop_assert_eq!(got, None);
            } else {
                prop_assert_eq!(got, Some(Checksum::from(blake3::hash(&file))));
            }
        }
    }
}
