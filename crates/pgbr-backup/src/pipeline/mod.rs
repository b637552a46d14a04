//! The per-file work of backup and restore, run on `process-max` blocking worker threads.
//!
//! Backup streams each file once: read → BLAKE3 → page check → compress → encrypt → store, in
//! [`CHUNK`]-sized pieces, so a worker's memory is a chunk plus the codec state plus one upload part.
//! Restore runs the same chain backwards and verifies the checksum before a file takes its name.
//!
//! - [`workers`]: the pool of blocking workers the files are spread over.
//! - [`codec`]: the codec chain, encode and decode, for streams and for pieces in memory.
//! - [`whole`]: files stored whole, one object each; [`pages`]: page checks on the way.
//! - [`blocks`]: big files stored as blocks, so an incremental stores only changed blocks.
//! - [`bundle`]: small files packed into one object, opened ahead by [`read_ahead`].
//! - [`hash`]: BLAKE3 of local files, on two threads when big.

use std::fs::File;
use std::io::{self, Read};

mod blocks;
mod bundle;
mod codec;
mod hash;
mod pages;
mod read_ahead;
#[cfg(test)]
mod testing;
mod whole;
mod workers;

pub(crate) use blocks::{
    check_blocks, fetch_blocks, own_blocks, store_blocks, BaseReader, Chain, ChangedBlocks, Prior,
    BLOCK_SIZE, BLOCK_THRESHOLD,
};
pub(crate) use bundle::{fetch_range, read_bundle_pieces, store_bundle};
pub(crate) use codec::{decode_object, open_piece, Codec, DecodeError, Decoded};
pub(crate) use hash::{hash_file, merge_part_hashes};
pub(crate) use pages::PageCheckSpec;
pub(crate) use whole::{fetch_to_file, hash_object, store_bytes, store_file, Publish, Stored};
pub(crate) use workers::{run_parallel, Busy};

/// Read size of the pipelines.
pub(crate) const CHUNK: usize = 1024 * 1024;

/// Fills `buf` as far as the file allows; returns the bytes read (0 at end of file).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Fills `buf` from `offset` as far as the file allows; fewer bytes only at its end.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
