//! Stored blocks read back and decoded a window at a time, and checked against their hashes.

use pgbr_manifest::BlockRef;
use pgbr_storage::Storage;

use super::check_block_hash;
use super::pieces::{fetch_pieces, open_base, PieceAt};
use crate::error::{Error, Result};
use crate::pipeline::codec::{delta_decoder, unseal, unseal_delta, Codec};

/// Most blocks decoded together: bounds the plaintext of a window held while it is decoded.
const MAX_WINDOW_BLOCKS: usize = 128;
/// Most stored bytes (blocks and their delta bases) fetched for one window.
const MAX_WINDOW_BYTES: u64 = 4 * 1024 * 1024;

/// Splits `blocks` into windows decoded together: at most [`MAX_WINDOW_BLOCKS`] blocks whose
/// stored bytes, with their delta bases, come to at most [`MAX_WINDOW_BYTES`] (or one block).
pub(super) fn windows_of(blocks: &[BlockRef]) -> Vec<std::ops::Range<usize>> {
    let mut windows = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, b) in blocks.iter().enumerate() {
        let stored = b
            .length
            .saturating_add(b.base.as_ref().map_or(0, |base| base.length));
        if i > start
            && (i - start == MAX_WINDOW_BLOCKS || bytes.saturating_add(stored) > MAX_WINDOW_BYTES)
        {
            windows.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(stored);
    }
    if start < blocks.len() {
        windows.push(start..blocks.len());
    }
    windows
}

/// Reads the window `window` of `blocks` (their pieces and delta bases, see [`fetch_pieces`]) and
/// decodes its blocks in order, handing each to `each(index in blocks, plaintext)`.
/// `number_of(index in blocks)` is the block's number in its file, for messages.
#[allow(clippy::too_many_arguments)]
pub(super) fn decode_window(
    storage: &Storage,
    blocks: &[BlockRef],
    window: std::ops::Range<usize>,
    number_of: &dyn Fn(usize) -> usize,
    block_size: u64,
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
    codec_of: &(dyn Fn(Option<&str>) -> Result<Codec> + Sync),
    handle: &tokio::runtime::Handle,
    each: &mut dyn FnMut(usize, Vec<u8>) -> Result<()>,
) -> Result<()> {
    let in_window = &blocks[window.clone()];
    // The window's stored blocks, then their delta bases.
    let mut pieces: Vec<PieceAt> = in_window.iter().map(PieceAt::from).collect();
    pieces.extend(
        in_window
            .iter()
            .filter_map(|b| b.base.as_ref())
            .map(PieceAt::from),
    );
    let raws = fetch_pieces(storage, &pieces, object_of, handle)?;
    let (own, base_raws) = raws.split_at(in_window.len());
    let bases = pieces[in_window.len()..]
        .iter()
        .zip(base_raws)
        .map(|(&base, raw)| open_base(base, raw, object_of, codec_of, block_size as usize))
        .collect::<Result<Vec<_>>>()?;
    let mut next_base = bases.iter();
    let mut coder = delta_decoder()?;
    // Consecutive blocks mostly come from one backup: look its codec up once per change.
    let mut codec: Option<(Option<&str>, Codec)> = None;
    for (k, (b, raw)) in in_window.iter().zip(own).enumerate() {
        let reference = b.reference.as_deref();
        let codec = match &codec {
            Some((r, c)) if *r == reference => c,
            _ => &codec.insert((reference, codec_of(reference)?)).1,
        };
        let plain = match b.base {
            Some(_) => match next_base.next() {
                Some(base) => unseal_delta(codec, &mut coder, base, raw, block_size as usize),
                None => return Err(Error::Internal("a delta base was not fetched".into())),
            },
            None => unseal(codec, raw),
        };
        let plain = plain.map_err(|e| {
            Error::Corrupt(format!(
                "{}: block {} cannot be read back ({e}); the stored data is damaged or the key is wrong",
                object_of(reference),
                number_of(window.start + k)
            ))
        })?;
        each(window.start + k, plain)?;
    }
    Ok(())
}

/// Checks that each of `blocks` (stored blocks of one file, in file order, as
/// [`own_blocks`](super::own_blocks) gives them with their `numbers` in the file) reads back,
/// opens and matches its hash, a window at a time (see [`fetch_blocks`](super::fetch_blocks)): a
/// few ranged reads per window, not one per block.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_blocks(
    storage: &Storage,
    blocks: &[BlockRef],
    numbers: &[usize],
    block_size: u64,
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
    codec_of: &(dyn Fn(Option<&str>) -> Result<Codec> + Sync),
    handle: &tokio::runtime::Handle,
) -> Result<()> {
    if numbers.len() != blocks.len() {
        return Err(Error::Internal(format!(
            "{} block numbers for {} blocks",
            numbers.len(),
            blocks.len()
        )));
    }
    for window in windows_of(blocks) {
        decode_window(
            storage,
            blocks,
            window,
            &|i| numbers[i],
            block_size,
            object_of,
            codec_of,
            handle,
            &mut |at, plain| check_block_hash(&blocks[at], &plain, numbers[at], object_of),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_hold_at_most_their_block_count_and_bytes() {
        let block = |length| BlockRef {
            hash: pgbr_manifest::BlockHash::default(),
            reference: None,
            offset: 0,
            length,
            base: None,
            chain: None,
        };
        let small: Vec<BlockRef> = (0..300).map(|_| block(10)).collect();
        assert_eq!(windows_of(&small), [0..128, 128..256, 256..300]);
        let big: Vec<BlockRef> = (0..5).map(|_| block(MAX_WINDOW_BYTES / 2)).collect();
        assert_eq!(windows_of(&big), [0..2, 2..4, 4..5]);
        assert_eq!(
            windows_of(&[block(u64::MAX)]),
            vec![std::ops::Range { start: 0, end: 1 }]
        );
        assert!(windows_of(&[]).is_empty());
    }
}
