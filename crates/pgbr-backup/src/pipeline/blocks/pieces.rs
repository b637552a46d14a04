//! Ranged reads of stored pieces: blocks and their delta bases, fetched with as few reads as
//! their places allow.

use pgbr_manifest::{BlockBase, BlockRef};
use pgbr_storage::Storage;

use crate::error::{Error, Result};
use crate::pipeline::codec::{open_piece, Codec};

/// Largest gap between two wanted pieces read through in one ranged read.
const MAX_GAP_BYTES: u64 = 256 * 1024;

/// Where a stored piece is: in the object of the backup `reference` names (`None`: this one),
/// `length` bytes from `offset`.
#[derive(Clone, Copy)]
pub(super) struct PieceAt<'a> {
    reference: Option<&'a str>,
    offset: u64,
    length: u64,
}

impl<'a> From<&'a BlockRef> for PieceAt<'a> {
    fn from(b: &'a BlockRef) -> Self {
        PieceAt {
            reference: b.reference.as_deref(),
            offset: b.offset,
            length: b.length,
        }
    }
}

impl<'a> From<&'a BlockBase> for PieceAt<'a> {
    fn from(b: &'a BlockBase) -> Self {
        PieceAt {
            reference: Some(&b.reference),
            offset: b.offset,
            length: b.length,
        }
    }
}

/// One ranged read that [`plan_reads`] plans: `range` of the object of the backup `reference`
/// names, holding the pieces at `members` (indexes into the pieces planned).
struct PlannedRead<'a> {
    reference: Option<&'a str>,
    range: std::ops::Range<u64>,
    members: Vec<usize>,
}

/// Plans the ranged reads that fetch `pieces`. Pieces of one object that lie at most
/// [`MAX_GAP_BYTES`] apart are fetched with one read spanning at most [`MAX_RUN_BYTES`] (one
/// piece may be longer): an incremental's blocks alternate between its own object and earlier
/// ones, and the delta bases of its changed blocks lie between the blocks still current in the
/// earlier object, so one read per object covers a window of blocks where one read per run of
/// consecutive pieces would be hundreds.
fn plan_reads<'a>(pieces: &[PieceAt<'a>]) -> Vec<PlannedRead<'a>> {
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    order.sort_by_key(|&i| (pieces[i].reference, pieces[i].offset));
    let mut reads: Vec<PlannedRead> = Vec::new();
    for i in order {
        let p = pieces[i];
        let p_end = p.offset.saturating_add(p.length);
        match reads.last_mut() {
            // Sorted: a piece of the same object starts at or after the read's start.
            Some(read)
                if read.reference == p.reference
                    && p.offset <= read.range.end.saturating_add(MAX_GAP_BYTES)
                    && p_end - read.range.start <= MAX_RUN_BYTES =>
            {
                read.range.end = read.range.end.max(p_end);
                read.members.push(i);
            }
            _ => reads.push(PlannedRead {
                reference: p.reference,
                range: p.offset..p_end,
                members: vec![i],
            }),
        }
    }
    reads
}

/// Reads the stored bytes of `pieces` (each in the object `object_of(reference)` names) with
/// the reads [`plan_reads`] plans, handed back in the order given.
pub(super) fn fetch_pieces(
    storage: &Storage,
    pieces: &[PieceAt],
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
    handle: &tokio::runtime::Handle,
) -> Result<Vec<bytes::Bytes>> {
    let mut out = vec![bytes::Bytes::new(); pieces.len()];
    for read in plan_reads(pieces) {
        let object = object_of(read.reference);
        let raw = storage.get_range_blocking(&object, read.range.clone(), handle)?;
        for i in read.members {
            let p = pieces[i];
            let start = usize::try_from(p.offset - read.range.start).unwrap_or(usize::MAX);
            out[i] = start
                .checked_add(usize::try_from(p.length).unwrap_or(usize::MAX))
                .filter(|&piece_end| piece_end <= raw.len())
                .map(|piece_end| raw.slice(start..piece_end))
                .ok_or_else(|| {
                    Error::Corrupt(format!("{object}: shorter than its block map says"))
                })?;
        }
    }
    Ok(out)
}

/// Opens one whole (not delta-coded) stored block read as a delta base, of at most
/// `max_size` bytes.
pub(super) fn open_base(
    base: PieceAt,
    raw: &[u8],
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
    codec_of: &(dyn Fn(Option<&str>) -> Result<Codec> + Sync),
    max_size: usize,
) -> Result<Vec<u8>> {
    let object = object_of(base.reference);
    let plain = open_piece(&codec_of(base.reference)?, &object, base.offset, raw)?;
    if plain.len() > max_size {
        return Err(Error::Corrupt(format!(
            "{object} (bytes {}..{}): a block of {} bytes, more than {max_size}",
            base.offset,
            base.offset + raw.len() as u64,
            plain.len()
        )));
    }
    Ok(plain)
}

/// Reads and opens the whole (not delta-coded) stored blocks at `bases`, in order (see
/// [`fetch_pieces`]). `object_of` and `codec_of` as for [`fetch_blocks`]; each block is at most
/// `max_size` bytes.
pub(super) fn fetch_bases(
    storage: &Storage,
    bases: &[&BlockBase],
    object_of: &(dyn Fn(Option<&str>) -> String + Sync),
    codec_of: &(dyn Fn(Option<&str>) -> Result<Codec> + Sync),
    max_size: usize,
    handle: &tokio::runtime::Handle,
) -> Result<Vec<Vec<u8>>> {
    let pieces: Vec<PieceAt> = bases.iter().map(|&b| PieceAt::from(b)).collect();
    let raws = fetch_pieces(storage, &pieces, object_of, handle)?;
    pieces
        .iter()
        .zip(&raws)
        .map(|(&base, raw)| open_base(base, raw, object_of, codec_of, max_size))
        .collect()
}

/// Most stored bytes fetched in one ranged read.
const MAX_RUN_BYTES: u64 = 2 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_planned_per_object_across_small_gaps() {
        let at = |reference, offset, length| PieceAt {
            reference,
            offset,
            length,
        };
        let pieces = [
            at(None, 0, 100),
            at(Some("F"), 1000, 50),
            at(None, 100, 100),
            // A delta base between blocks still current in F, read through.
            at(Some("F"), 1100, 50),
            // Too far from the rest of F.
            at(Some("F"), 1150 + MAX_GAP_BYTES + 1, 10),
            // One piece longer than a read may span starts a read of its own.
            at(None, 300, MAX_RUN_BYTES),
        ];
        let reads: Vec<_> = plan_reads(&pieces)
            .into_iter()
            .map(|r| (r.reference, r.range, r.members))
            .collect();
        assert_eq!(
            reads,
            [
                (None, 0..200, vec![0, 2]),
                (None, 300..300 + MAX_RUN_BYTES, vec![5]),
                (Some("F"), 1000..1150, vec![1, 3]),
                (
                    Some("F"),
                    1150 + MAX_GAP_BYTES + 1..1150 + MAX_GAP_BYTES + 11,
                    vec![4]
                ),
            ]
        );
    }
}
