//! Big files stored as blocks: each block compressed and encrypted on its own, so an
//! incremental stores only the blocks that changed (coded, with zstd, as deltas against their
//! earlier versions), and restore and verify read any block by range.
//!
//! [`store`] writes a file's blocks, [`pieces`] plans the ranged reads that fetch stored blocks,
//! [`decode`] decodes them a window at a time (and checks them), and [`fetch`] restores a file
//! from them.

use pgbr_manifest::{block_hash, BlockRef, Checksum};

use super::Codec;
use crate::error::{Error, Result};

mod decode;
mod fetch;
mod pieces;
mod store;
#[cfg(test)]
mod tests;

pub(crate) use decode::check_blocks;
pub(crate) use fetch::fetch_blocks;
pub(crate) use store::store_blocks;

/// Block size of block-mapped files: each block is compressed and encrypted on its own, so an
/// incremental stores only changed blocks and restore can fetch any block by range.
pub(crate) const BLOCK_SIZE: usize = 64 * 1024;
/// Files at least this large are stored as blocks.
pub(crate) const BLOCK_THRESHOLD: u64 = 1024 * 1024;

/// What storing one block-mapped file produced.
pub(crate) struct StoredBlocks {
    pub size: u64,
    pub checksum: Checksum,
    pub stored_size: u64,
    pub blocks: Vec<BlockRef>,
    pub page_errors: Vec<u32>,
}

/// The prior backup's copy of a file stored as blocks, for an incremental store of it.
pub(crate) struct Prior<'a> {
    /// Its block map.
    pub blocks: &'a [BlockRef],
    /// Label of the prior backup (blocks with no reference are in it).
    pub label: &'a str,
    /// Where earlier versions of changed blocks can be read as delta bases; `None` stores
    /// changed blocks whole.
    pub bases: Option<BaseReader<'a>>,
}

/// Reads stored blocks of this file in earlier backups.
pub(crate) struct BaseReader<'a> {
    /// The object of this file's blocks in the backup with that label.
    pub object_of: &'a (dyn Fn(Option<&str>) -> String + Sync),
    /// How that backup stored them; an error when it cannot be known.
    pub codec_of: &'a (dyn Fn(Option<&str>) -> Result<Codec> + Sync),
}

/// The blocks of `map` that its own backup stored (the others are held by earlier backups), with
/// their numbers in the file: what [`check_blocks`] checks of one backup.
pub(crate) fn own_blocks(map: &pgbr_manifest::BlockMapRef) -> (Vec<usize>, Vec<BlockRef>) {
    map.blocks
        .iter()
        .enumerate()
        .filter(|(_, b)| b.reference.is_none())
        .map(|(i, b)| (i, b.clone()))
        .unzip()
}

/// That `plain`, block number `number` of its file, matches `block`'s hash.
pub(super) fn check_block_hash(
    block: &BlockRef,
    plain: &[u8],
    number: usize,
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
) -> Result<()> {
    if block_hash(plain) == block.hash {
        return Ok(());
    }
    Err(Error::Corrupt(format!(
        "{}: block {number} does not match its hash; the stored data is damaged",
        object_of(block.reference.as_deref())
    )))
}
