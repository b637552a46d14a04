use super::*;

#[test]
fn a_failing_destination_is_an_error_with_its_message_for_every_codec() {
    /// Accepts `room` bytes, then fails with a message of its own.
    struct Full {
        room: usize,
    }
    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() > self.room {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "disk full on test",
                ));
            }
            self.room -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let data: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for kind in CompressType::ALL {
        let mut w =
            CompressWriter::new(kind, kind.default_level(), Full { room: 1000 }).expect("writer");
        let err = match w.write_all(&data) {
            Err(e) => e,
            Ok(()) => w.finish().map(|_| ()).expect_err("the destination is full"),
        };
        assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{kind:?}: {err}");
        assert!(
            err.to_string().contains("disk full on test"),
            "{kind:?}: {err}"
        );
    }
}

#[test]
fn a_failing_source_is_an_error_with_its_message_for_every_codec() {
    /// Gives `good` bytes, then fails with a message of its own.
    struct Broken {
        good: Vec<u8>,
        at: usize,
    }
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at >= self.good.len() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "link down on test",
                ));
            }
            let n = buf.len().min(self.good.len() - self.at).min(100);
            buf[..n].copy_from_slice(&self.good[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }
    let data: Vec<u8> = (0..500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for kind in CompressType::ALL {
        let stream = compress_to_vec(kind, kind.default_level(), &data).expect("compress");
        let good = stream[..stream.len() / 2].to_vec();
        let mut r = DecompressReader::new(kind, Broken { good, at: 0 }).expect("reader");
        let err = r
            .read_to_end(&mut Vec::new())
            .expect_err("the source breaks");
        assert!(
            err.to_string().contains("link down on test"),
            "{kind:?}: {err}"
        );
    }
}

#[test]
fn zstd_pieces_reuse_contexts_and_survive_bad_input() {
    let page: Vec<u8> = (0..8192u32).map(|i| (i % 97) as u8).collect();
    for level in [3, 1, 3, 19] {
        let piece = compress_to_vec(CompressType::Zst, level, &page).expect("compress");
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&piece),
            Ok(Some(n)) if n == page.len() as u64
        ));
        assert_eq!(
            decompress_to_vec(CompressType::Zst, &piece).expect("decompress"),
            page
        );
    }
    let piece = compress_to_vec(CompressType::Zst, 3, &page).expect("compress");
    let mut bad = piece.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    assert!(decompress_to_vec(CompressType::Zst, &bad).is_err());
    assert!(decompress_to_vec(CompressType::Zst, &piece[..piece.len() - 1]).is_err());
    let mut trailing = piece.clone();
    trailing.push(0);
    assert!(decompress_to_vec(CompressType::Zst, &trailing).is_err());
    // The context is usable after a failure.
    assert_eq!(
        decompress_to_vec(CompressType::Zst, &piece).expect("decompress"),
        page
    );
    // A streamed frame (no content size) and two frames in a row still decode.
    let streamed = {
        let mut w = CompressWriter::new(CompressType::Zst, 3, Vec::new()).expect("writer");
        w.write_all(&page).expect("write");
        w.finish().expect("finish")
    };
    let mut two = streamed.clone();
    two.extend_from_slice(&piece);
    let mut both = page.clone();
    both.extend_from_slice(&page);
    assert_eq!(
        decompress_to_vec(CompressType::Zst, &streamed).expect("streamed"),
        page
    );
    assert_eq!(
        decompress_to_vec(CompressType::Zst, &two).expect("two frames"),
        both
    );
    assert!(compress_to_vec(CompressType::Zst, 99, &page).is_err());
}

#[test]
fn multithreaded_zstd_round_trips_and_reads_as_one_stream() {
    let data: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
        .collect();
    let mut w = CompressWriter::with_workers(CompressType::Zst, 3, 2, Vec::new()).expect("writer");
    for chunk in data.chunks(300_000) {
        w.write_all(chunk).expect("write");
    }
    let compressed = w.finish().expect("finish");
    assert!(compressed.len() < data.len() / 4, "{}", compressed.len());
    assert_eq!(
        decompress_to_vec(CompressType::Zst, &compressed).expect("decompress"),
        data
    );
    // Other codecs ignore the worker count.
    let mut w = CompressWriter::with_workers(CompressType::Gz, 6, 2, Vec::new()).expect("gz");
    w.write_all(&data[..1000]).expect("write");
    let gz = w.finish().expect("finish");
    assert_eq!(
        decompress_to_vec(CompressType::Gz, &gz).expect("gunzip"),
        &data[..1000]
    );
}
use proptest::prelude::*;

fn sample(len: usize) -> Vec<u8> {
    // Half compressible, half pseudo-random.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|i| {
            if (i / 4096) % 2 == 0 {
                (i % 251) as u8
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

fn compress_chunked(kind: CompressType, data: &[u8], chunks: &[usize]) -> Vec<u8> {
    let mut w = CompressWriter::new(kind, kind.default_level(), Vec::new()).unwrap();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks
            .get(i % chunks.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        w.write_all(&rest[..n]).unwrap();
        rest = &rest[n..];
        i += 1;
    }
    w.finish().unwrap()
}

fn read_chunked(kind: CompressType, data: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
    let mut r = DecompressReader::new(kind, data)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk.max(1)];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn names_extensions_levels() {
    for kind in CompressType::ALL {
        assert_eq!(kind.to_string().parse::<CompressType>(), Ok(kind));
    }
    assert_eq!(CompressType::default(), CompressType::Zst);
    assert_eq!(CompressType::Gz.extension(), ".gz");
    assert_eq!(CompressType::None.extension(), "");
    assert_eq!(CompressType::Zst.default_level(), 3);
    let err = "bz2".parse::<CompressType>().unwrap_err().to_string();
    assert!(
        err.contains("bz2") && err.contains("none, zst, gz, lz4"),
        "{err}"
    );
}

#[test]
fn invalid_levels_are_errors() {
    let e = CompressWriter::new(CompressType::Gz, 10, Vec::new()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(CompressWriter::new(CompressType::Gz, -1, Vec::new()).is_err());
    assert!(CompressWriter::new(CompressType::Zst, 23, Vec::new()).is_err());
    assert!(CompressWriter::new(CompressType::Lz4, 99, Vec::new()).is_ok());
}

#[test]
fn large_round_trip_every_codec() {
    let data = sample(3 * 1024 * 1024 + 17);
    for kind in CompressType::ALL {
        let c = compress_chunked(kind, &data, &[1, 70_000, 3, 1 << 20]);
        assert_eq!(read_chunked(kind, &c, 8191).unwrap(), data, "{kind}");
        assert_eq!(decompress_to_vec(kind, &c).unwrap(), data, "{kind}");
    }
}

#[test]
fn empty_round_trip_every_codec() {
    for kind in CompressType::ALL {
        let c = compress_to_vec(kind, kind.default_level(), b"").unwrap();
        assert_eq!(decompress_to_vec(kind, &c).unwrap(), b"", "{kind}");
    }
}

fn assert_truncations_rejected(kind: CompressType, data: &[u8]) {
    let c = compress_to_vec(kind, kind.default_level(), data).unwrap();
    let step = (c.len() / 2000).max(1);
    let mut cut = 0;
    while cut < c.len() {
        let err = decompress_to_vec(kind, &c[..cut]).expect_err(&format!(
            "{kind}: truncation to {cut} of {} accepted",
            c.len()
        ));
        assert_eq!(
            err.kind(),
            io::ErrorKind::InvalidData,
            "{kind} cut {cut}: {err}"
        );
        cut += step;
    }
    // The last byte, and trailing garbage.
    assert!(
        decompress_to_vec(kind, &c[..c.len() - 1]).is_err(),
        "{kind}"
    );
    let mut extra = c.clone();
    extra.extend_from_slice(b"garbage");
    let err = decompress_to_vec(kind, &extra).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{kind}: {err}");
}

#[test]
fn truncated_streams_rejected() {
    for kind in [CompressType::Zst, CompressType::Gz, CompressType::Lz4] {
        assert_truncations_rejected(kind, b"");
        assert_truncations_rejected(kind, b"hello world");
        // Several lz4 blocks (64 KiB each), so cuts land on block boundaries.
        assert_truncations_rejected(kind, &sample(300 * 1024));
    }
}

#[test]
fn lz4_truncated_at_block_boundary_rejected() {
    let data = sample(200 * 1024);
    let c = compress_to_vec(CompressType::Lz4, 1, &data).unwrap();
    // Find every position where a prefix decodes "cleanly" by lz4_flex alone and make
    // sure we reject it.
    for cut in 0..c.len() {
        let mut plain = Vec::new();
        let plain_ok = lz4_flex::frame::FrameDecoder::new(&c[..cut])
            .read_to_end(&mut plain)
            .is_ok();
        if plain_ok {
            assert!(
                decompress_to_vec(CompressType::Lz4, &c[..cut]).is_err(),
                "{cut}"
            );
        }
    }
}

#[test]
fn source_errors_pass_through() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "boom"))
        }
    }
    for kind in CompressType::ALL {
        let err = DecompressReader::new(kind, Failing)
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{kind}");
    }
}

fn kind_strategy() -> impl Strategy<Value = CompressType> {
    prop::sample::select(CompressType::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(kind in kind_strategy(),
                  data in prop::collection::vec(any::<u8>(), 0..100_000),
                  chunks in prop::collection::vec(1usize..20_000, 1..8),
                  read_chunk in 1usize..100_000) {
        let c = compress_chunked(kind, &data, &chunks);
        prop_assert_eq!(read_chunked(kind, &c, read_chunk).unwrap(), data);
    }

    #[test]
    fn delta_round_trip_and_wrong_base(base in prop::collection::vec(any::<u8>(), 0..70_000),
                                       edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..20),
                                       grow in 0usize..5000,
                                       pieces in 1usize..4) {
        let mut new = base.clone();
        new.extend((0..grow).map(|i| i as u8));
        for (pos, byte) in &edits {
            if !new.is_empty() {
                let p = pos % new.len();
                new[p] ^= byte | 1;
            }
        }
        // One coder for several pieces, as the pipeline uses it.
        let mut coder = DeltaCoder::new(3).unwrap();
        for _ in 0..pieces {
            let delta = coder.encode(&base, &new).unwrap();
            prop_assert_eq!(&coder.decode(&base, &delta).unwrap(), &new);
            prop_assert!(coder.decode_at_most(&base, &delta, new.len().saturating_sub(1)).is_err() || new.is_empty());
            if base.len() > 64 && !edits.is_empty() {
                // Another base never silently gives other bytes.
                let mut other = base.clone();
                other[base.len() / 2] ^= 0x55;
                let decoded = DeltaCoder::new(3).unwrap().decode(&other, &delta);
                match decoded {
                    Ok(out) => prop_assert_eq!(&out, &new),
                    Err(e) => prop_assert_eq!(e.kind(), io::ErrorKind::InvalidData),
                }
            }
        }
        if base.len() >= 8192 && edits.len() <= 4 && grow == 0 {
            let delta = coder.encode(&base, &new).unwrap();
            prop_assert!(delta.len() < 400, "{} bytes for {} edits", delta.len(), edits.len());
        }
    }

    #[test]
    fn round_trip_large(kind in kind_strategy(),
                        seed in prop::collection::vec(any::<u8>(), 1..64),
                        len in (1usize << 20)..(1usize << 20) + 300_000,
                        chunks in prop::collection::vec(1usize..300_000, 1..4)) {
        let data: Vec<u8> = seed.iter().cycle().take(len).enumerate()
            .map(|(i, b)| b.wrapping_add((i / 997) as u8)).collect();
        let c = compress_chunked(kind, &data, &chunks);
        prop_assert_eq!(decompress_to_vec(kind, &c).unwrap(), data);
    }

    #[test]
    fn arbitrary_input_never_panics(kind in kind_strategy(),
                                    data in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decompress_to_vec(kind, &data);
    }

    #[test]
    fn corrupted_byte_never_panics(kind in kind_strategy(),
                                   data in prop::collection::vec(any::<u8>(), 0..20_000),
                                   pos in any::<prop::sample::Index>(),
                                   flip in 1u8..=255) {
        let mut c = compress_to_vec(kind, kind.default_level(), &data).unwrap();
        let i = pos.index(c.len());
        c[i] ^= flip;
        if let Ok(out) = decompress_to_vec(kind, &c) {
            // Only bytes outside checksummed content (e.g. gzip header mtime) may
            // change without detection; the content must then be intact.
            if kind != CompressType::None {
                prop_assert_eq!(out, data);
            }
        }
    }
}
