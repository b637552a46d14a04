//! Inputs the fuzzing campaign (`fuzz/campaign.sh`) found misbehaving, each kept with the promise
//! it broke: hostile stored bytes give their data or a clean `InvalidData` error, whichever way
//! they are read.

use std::io::{self, Read};

use pgbr_storage::{decompress_to_vec, CompressType, DecompressReader};

/// A source that hands out one byte per read, as a slow network stream may.
struct OneByte<'a>(&'a [u8]);

impl Read for OneByte<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len().min(self.0.len()).min(1);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn read_all<R: Read>(kind: CompressType, source: R) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    DecompressReader::new(kind, source)?.read_to_end(&mut out)?;
    Ok(out)
}

/// `fuzz/regressions/decompress/zstd-empty-rle-block` (after its codec byte): a zstd frame of
/// content size 0 whose only block is an RLE block of size 0. libzstd accepts it whole and
/// refuses it fed in pieces; either way it must yield no data, or a clean error.
#[test]
fn zstd_frame_with_an_empty_rle_block_yields_no_data_however_it_is_read() {
    let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x03, 0x00, 0x00, 0x24];
    let at_once = decompress_to_vec(CompressType::Zst, &frame).expect("decodes at once");
    assert!(at_once.is_empty());
    let whole = read_all(CompressType::Zst, &frame[..]).expect("decodes from a slice");
    assert!(whole.is_empty());
    match read_all(CompressType::Zst, OneByte(&frame)) {
        Ok(data) => assert!(data.is_empty()),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}"),
    }
}
