//! Big files stored as blocks: each block compressed and encrypted on its own, so an
//! incremental stores only the blocks that changed (coded, with zstd, as deltas against their
//! earlier versions), and restore and verify read any block by range.
//!
//! [`store`] writes a file's blocks, [`pieces`] plans the ranged reads that fetch stored blocks,
//! [`decode`] decodes them a window at a time (and checks them), and [`fetch`] restores a file
//! from them.

use pgbr_manifest::{block_chain_value, block_hash, BlockRef, Checksum};

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

/// The blocks of a file that may have changed since the prior backup, from PostgreSQL's WAL
/// summaries; every other block is the prior backup's copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ChangedBlocks {
    /// Block numbers, sorted.
    pub blocks: Vec<u32>,
    /// This block and every one after it (the file was cut there, or created).
    pub from: Option<u32>,
}

impl ChangedBlocks {
    /// Whether block `index` may differ from the prior backup's copy.
    pub fn may_have_changed(&self, index: usize) -> bool {
        self.from.is_some_and(|from| index >= from as usize)
            || u32::try_from(index).map_or(true, |i| self.blocks.binary_search(&i).is_ok())
    }
}

/// How a block-mapped file's blocks use BLAKE3 chaining values (`pgbr_manifest::chain`).
#[derive(Clone, Copy)]
pub(crate) enum Chain<'a> {
    /// None kept: the file's checksum hashes its bytes.
    Off,
    /// Each block's chaining value is kept, and the file's checksum is made from them.
    Record,
    /// As `Record`, and the blocks not in these changes are not read: their entries (chaining
    /// value included) are the prior backup's.
    Skip(&'a ChangedBlocks),
}

/// What storing one block-mapped file produced.
pub(crate) struct StoredBlocks {
    pub size: u64,
    pub checksum: Checksum,
    pub stored_size: u64,
    pub blocks: Vec<BlockRef>,
    pub page_errors: Vec<u32>,
    /// Bytes read from the file.
    pub read: u64,
}

/// The prior backup's copy of a file stored as blocks, for an incremental store of it.
pub(crate) struct Prior<'a> {
    /// Its block map.
    pub blocks: &'a [BlockRef],
    /// Label of the prior backup (blocks with no reference are in it).
    pub label: &'a str,
    /// The file's size in the prior backup.
    pub size: u64,
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

/// That `plain`, block number `number` of its file, matches `block`'s hash, and its chaining
/// value when the block map keeps one (a later backup that does not read the block builds the
/// file's checksum from it).
pub(super) fn check_block_hash(
    block: &BlockRef,
    plain: &[u8],
    number: usize,
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
) -> Result<()> {
    let what = if block_hash(plain) != block.hash {
        "its hash; the stored data is damaged"
    } else if block.chain.is_some_and(|chain| {
        block_chain_value(plain, number as u64, BLOCK_SIZE as u64) != Some(chain)
    }) {
        "its chaining value; the block map is damaged"
    } else {
        return Ok(());
    };
    Err(Error::Corrupt(format!(
        "{}: block {number} does not match {what}",
        object_of(block.reference.as_deref())
    )))
}
