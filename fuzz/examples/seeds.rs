//! Writes small valid inputs for each fuzz target into `<dir>/<target>/seed-*` (default
//! `corpus/`), made with the crates' own writers: a real manifest and info files (whole, and
//! their content alone for the targets' sealing leg), WAL headers, `pg_control`, history files,
//! `backup_label`, encrypted and compressed streams, a delta frame, a wrapped key and a data
//! page. The fuzzers start from these instead of from nothing.
//!
//! `cargo run --example seeds -- corpus` (run by `campaign.sh`).

use std::error::Error;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use pgbr_crypto::{CbcWriter, DataKey, GcmWriter, WrappedKey};
use pgbr_manifest::{
    block_hash, new_label, page_checksum, ArchiveInfo, BackupInfo, BackupMeta, BackupSummary,
    BackupType, BlockBase, BlockMapRef, BlockRef, BundleRef, CipherInfo, DbHistory, FileEntry,
    LinkEntry, Manifest, PathEntry, Target, PAGE_SIZE,
};
use pgbr_storage::{compress_to_vec, CompressType, DeltaCoder};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The passphrase the crypto targets use.
const PASSPHRASE: &[u8] = b"fuzz passphrase";
const SYSTEM_ID: u64 = 7_301_234_567_890_123_456;

struct Seeds {
    dir: PathBuf,
    count: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.dir.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(format!("seed-{name}")), bytes)?;
        self.count += 1;
        Ok(())
    }

    /// A metadata file as `name`, and the value of its `field` alone as `<name>-content` (the
    /// target seals that with a true checksum).
    fn put_envelope(&mut self, name: &str, bytes: &[u8], field: &str) -> Result<()> {
        self.put("manifest_info", name, bytes)?;
        let value: serde_json::Value = serde_json::from_slice(bytes)?;
        let content = serde_json::to_vec(&value[field])?;
        self.put("manifest_info", &format!("{name}-content"), &content)
    }
}

fn main() -> Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let mut seeds = Seeds {
        dir: Path::new(&dir).to_path_buf(),
        count: 0,
    };
    metadata(&mut seeds)?;
    wal(&mut seeds)?;
    crypto(&mut seeds)?;
    storage(&mut seeds)?;
    data_page(&mut seeds)?;
    pgbackrest(&mut seeds)?;
    println!("wrote {} seeds under {dir}", seeds.count);
    Ok(())
}

/// An incremental backup's manifest: references, a bundle, a link, and a block map with a
/// delta-coded block.
fn incremental_manifest() -> Manifest {
    let full = new_label(BackupType::Full, None, 1_790_000_000);
    let label = new_label(BackupType::Incr, Some(&full), 1_790_086_400);
    let blocks = (0..3u64)
        .map(|i| BlockRef {
            hash: block_hash(&i.to_le_bytes()),
            reference: (i == 0).then(|| full.as_str().into()),
            offset: i * 900,
            length: 900,
            base: (i == 2).then(|| BlockBase {
                reference: full.as_str().into(),
                offset: 1800,
                length: 900,
            }),
            chain: None,
        })
        .collect();
    let entry = |name: &str, size: u64| FileEntry {
        target: "pg_data".into(),
        name: name.into(),
        size,
        mtime: 1_790_086_000,
        mode: 0o600,
        checksum: blake3::hash(name.as_bytes()).into(),
        reference: None,
        stored_size: size / 2,
        bundle: None,
        block_map: None,
        page_errors: Vec::new(),
    };
    let mut version = entry("PG_VERSION", 3);
    version.reference = Some(full.as_str().into());
    let mut control = entry("global/pg_control", 8192);
    control.bundle = Some(BundleRef {
        id: 1,
        offset: 0,
        length: 4096,
    });
    let mut relation = entry("base/5/16384", 3 * 65536);
    relation.block_map = Some(BlockMapRef {
        block_size: 65536,
        blocks,
    });
    relation.page_errors = vec![4];
    Manifest {
        backup: BackupMeta {
            label,
            backup_type: BackupType::Incr,
            prior: Some(full.clone()),
            references: vec![full],
            timestamp_start: 1_790_086_400,
            timestamp_stop: 1_790_086_460,
            lsn_start: "0/5000028".into(),
            lsn_stop: "0/5000138".into(),
            wal_start: "000000010000000000000005".into(),
            wal_stop: "000000010000000000000005".into(),
            timeline: 1,
            pg_version: 15,
            system_id: SYSTEM_ID,
            db_id: 1,
            checksums_enabled: true,
            compress_type: pgbr_manifest::Compression::Zst,
            compress_level: 3,
            cipher_type: pgbr_manifest::Cipher::None,
            backup_label: "START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\n".into(),
            wal_segment_size: 16 << 20,
            ..BackupMeta::default()
        },
        targets: [
            ("pg_data", "/var/lib/postgresql/15/main", None),
            ("pg_tblspc/16385", "/srv/tablespace", Some(16385)),
        ]
        .into_iter()
        .map(|(name, path, oid)| Target {
            name: name.into(),
            path: path.into(),
            tablespace_oid: oid,
            tablespace_name: oid.map(|_| "fast".into()),
        })
        .collect(),
        paths: ["", "base", "base/5", "global"]
            .iter()
            .map(|name| PathEntry {
                target: "pg_data".into(),
                name: (*name).into(),
                mode: 0o700,
            })
            .collect(),
        links: vec![LinkEntry {
            target: "pg_data".into(),
            name: "pg_wal".into(),
            destination: "/srv/wal/15".into(),
        }],
        files: vec![version, control, relation],
    }
}

fn metadata(seeds: &mut Seeds) -> Result<()> {
    let manifest = incremental_manifest();
    let bytes = manifest.to_bytes()?;
    Manifest::from_bytes(&bytes)?;
    seeds.put_envelope("manifest", &bytes, "manifest")?;

    let history = vec![DbHistory {
        db_id: 1,
        system_id: SYSTEM_ID,
        pg_version: 15,
    }];
    let cipher = CipherInfo {
        cipher_type: pgbr_manifest::Cipher::None,
        wrapped_key: None,
    };
    let backup_info = BackupInfo {
        stanza: "main".into(),
        db_history: history.clone(),
        cipher: cipher.clone(),
        backups: vec![BackupSummary::from_manifest(&manifest, Manifest::from_bytes_with_checksum(&manifest.to_bytes()?)?.1)],
    };
    let bytes = backup_info.to_bytes()?;
    BackupInfo::from_bytes(&bytes)?;
    seeds.put_envelope("backup.info", &bytes, "content")?;
    let archive_info = ArchiveInfo {
        stanza: "main".into(),
        db_history: history,
        cipher,
    };
    let bytes = archive_info.to_bytes()?;
    ArchiveInfo::from_bytes(&bytes)?;
    seeds.put_envelope("archive.info", &bytes, "content")?;
    seeds.put("manifest_info", "label", manifest.backup.label.as_bytes())
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn wal(seeds: &mut Seeds) -> Result<()> {
    // XLogLongPageHeaderData of PostgreSQL 15's segment 000000010000000000000005.
    let mut page = vec![0u8; 64];
    page[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
    page[2..4].copy_from_slice(&0x0002u16.to_le_bytes());
    put_u32(&mut page, 4, 1);
    put_u64(&mut page, 8, 5 << 24);
    put_u64(&mut page, 24, SYSTEM_ID);
    put_u32(&mut page, 32, 16 << 20);
    put_u32(&mut page, 36, 8192);
    seeds.put("wal_parsers", "segment-header", &page)?;

    // pg_control of PostgreSQL 15 (pg_control_version 1300), CRC-32C at 288.
    let mut control = vec![0u8; 512];
    put_u64(&mut control, 0, SYSTEM_ID);
    put_u32(&mut control, 8, 1300);
    put_u32(&mut control, 12, 202_209_061);
    put_u32(&mut control, 16, 6);
    put_u64(&mut control, 32, 0x0500_0060);
    put_u64(&mut control, 40, 0x0500_0028);
    put_u32(&mut control, 48, 1);
    put_u32(&mut control, 216, 8192);
    put_u32(&mut control, 228, 16 << 20);
    put_u32(&mut control, 252, 1);
    let crc = crc32c::crc32c(&control[..288]);
    put_u32(&mut control, 288, crc);
    seeds.put("wal_parsers", "pg_control", &control)?;

    let texts: [(&str, &str); 8] = [
        (
            "history",
            "1\t0/3000000\tno recovery target specified\n\n2\t0/5000158\tat restore point \"x\"\n",
        ),
        (
            "backup_label",
            "START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\n\
             CHECKPOINT LOCATION: 0/5000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
             START TIME: 2026-09-21 10:40:00 UTC\nLABEL: pgbr backup\nSTART TIMELINE: 1\n",
        ),
        ("segment", "000000010000000000000005"),
        ("partial", "000000010000000000000005.partial"),
        ("backup-history", "000000010000000000000005.00000028.backup"),
        ("history-name", "00000002.history"),
        ("lsn", "16/B374D848"),
        ("big-segment", "0000000A000000FF000000FF"),
    ];
    for (name, text) in texts {
        seeds.put("wal_parsers", name, text.as_bytes())?;
    }
    Ok(())
}

/// A seed for the tampering leg: damage `op`, position `pos`, a plaintext of `len` units of 4
/// bytes repeating `pattern` (see the targets' `TamperCase`).
fn tamper_case(op: u8, pos: u32, len: u16, pattern: &[u8]) -> Vec<u8> {
    let mut out = vec![op];
    out.extend_from_slice(&pos.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(pattern);
    out
}

fn crypto(seeds: &mut Seeds) -> Result<()> {
    let plain = b"PGBR fuzz seed: some plaintext that spans more than one block of AES";
    let mut gcm = GcmWriter::new(&DataKey::from_bytes([0x42; 32]), Vec::new())?;
    gcm.write_all(plain)?;
    seeds.put("gcm_stream", "stream", &gcm.finish()?)?;
    let mut cbc = CbcWriter::new(PASSPHRASE, Vec::new())?;
    cbc.write_all(plain)?;
    seeds.put("cbc_stream", "stream", &cbc.finish()?)?;
    // Cut inside the second segment, flip a bit of the first, append, remove at the boundary.
    let cases = [
        (0, 70_000, 20_000),
        (1 | (3 << 2), 100, 40_000),
        (2, 0, 16_384),
        (3 | (9 << 24), 65_536 + 47, 33_000),
    ];
    for (i, (op, pos, len)) in cases.into_iter().enumerate() {
        let case = tamper_case(op as u8, pos, len, &plain[..16]);
        seeds.put("gcm_stream", &format!("tamper-{i}"), &case)?;
        seeds.put("cbc_stream", &format!("tamper-{i}"), &case)?;
    }

    let key = DataKey::from_bytes([7; 32]);
    let wrapped = WrappedKey::wrap(PASSPHRASE, &key)?;
    seeds.put("wrapped_key", "wrapped", &serde_json::to_vec(&wrapped)?)?;
    let cheap = WrappedKey {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
        ..wrapped
    };
    seeds.put("wrapped_key", "cheap", &serde_json::to_vec(&cheap)?)?;
    for cipher in ["none", "aes-256-gcm", "aes-256-cbc"] {
        seeds.put("wrapped_key", cipher, cipher.as_bytes())?;
    }
    Ok(())
}

fn storage(seeds: &mut Seeds) -> Result<()> {
    let sample: Vec<u8> = (0..3000u32).map(|i| (i * i % 251) as u8).collect();
    for (index, kind) in CompressType::ALL.into_iter().enumerate() {
        let mut input = vec![index as u8];
        input.extend(compress_to_vec(kind, kind.default_level(), &sample)?);
        seeds.put("decompress", kind.name(), &input)?;
    }

    let base: Vec<u8> = sample[..1000].to_vec();
    let mut new = base.clone();
    new[100..110].copy_from_slice(b"0123456789");
    let mut coder = DeltaCoder::new(3)?;
    let delta = coder.encode(&base, &new)?;
    let mut input = (base.len() as u16).to_le_bytes().to_vec();
    input.extend_from_slice(&base);
    input.extend_from_slice(&delta);
    seeds.put("delta", "delta", &input)
}

fn data_page(seeds: &mut Seeds) -> Result<()> {
    // Block 3 of a heap relation: page LSN 0/4000028, a header and one tuple at the end.
    let block = 3u32;
    let mut page = vec![0u8; PAGE_SIZE];
    put_u32(&mut page, 0, 0);
    put_u32(&mut page, 4, 0x0400_0028);
    page[12..14].copy_from_slice(&28u16.to_le_bytes());
    page[14..16].copy_from_slice(&8160u16.to_le_bytes());
    page[16..18].copy_from_slice(&8192u16.to_le_bytes());
    page[18..20].copy_from_slice(&0x2004u16.to_le_bytes());
    page[8160..8192].copy_from_slice(&[0x5a; 32]);
    let sum = page_checksum(&page, block);
    page[8..10].copy_from_slice(&sum.to_le_bytes());
    let mut input = block.to_le_bytes().to_vec();
    input.extend_from_slice(&0x0500_0028u64.to_le_bytes());
    input.extend_from_slice(&page);
    seeds.put("data_page", "heap-page", &input)?;
    seeds.put("data_page", "short-page", &input[..12 + 512])
}

/// pgBackRest's `archive.info`, `backup.info` and `backup.manifest`, in its INI syntax with true
/// SHA-1 checksums (the shapes pgBackRest 2.45 writes).
fn pgbackrest(seeds: &mut Seeds) -> Result<()> {
    use pgbr_manifest::pgbackrest::Ini;
    let head = "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n";
    let texts = [
        ("archive-info", format!("{head}[db]\ndb-id=1\ndb-system-id={SYSTEM_ID}\ndb-version=\"15\"\n\n[db:history]\n1={{\"db-id\":{SYSTEM_ID},\"db-version\":\"15\"}}\n")),
        ("backup-info", format!("{head}[backup:current]\n20261207-230614F={{\"backrest-format\":5,\"backrest-version\":\"2.45\",\"backup-archive-start\":\"000000010000000000000003\",\"backup-archive-stop\":\"000000010000000000000003\",\"backup-info-repo-size\":5,\"backup-info-repo-size-delta\":5,\"backup-info-size\":9,\"backup-info-size-delta\":9,\"backup-lsn-start\":\"0/3000028\",\"backup-lsn-stop\":\"0/3000100\",\"backup-timestamp-start\":1796684774,\"backup-timestamp-stop\":1796684775,\"backup-type\":\"full\",\"db-id\":1}}\n\n[cipher]\ncipher-pass=\"sub\"\n\n[db:history]\n1={{\"db-catalog-version\":202209061,\"db-control-version\":1300,\"db-system-id\":{SYSTEM_ID},\"db-version\":\"15\"}}\n")),
        ("manifest", format!("{head}[backup]\nbackup-archive-start=\"000000010000000000000003\"\nbackup-label=\"20261207-230614F\"\nbackup-timestamp-start=1796684774\nbackup-timestamp-stop=1796684775\nbackup-type=\"full\"\n\n[backup:db]\ndb-id=1\ndb-system-id={SYSTEM_ID}\ndb-version=\"15\"\n\n[backup:option]\noption-compress-type=\"zst\"\n\n[backup:target]\npg_data={{\"path\":\"/data\",\"type\":\"path\"}}\npg_tblspc/16384={{\"path\":\"/ts\",\"tablespace-id\":\"16384\",\"tablespace-name\":\"ts\",\"type\":\"link\"}}\n\n[target:file]\npg_data/PG_VERSION={{\"bni\":1,\"checksum\":\"587b596f04f7db9c2cad3d6b87dd2b3a05de4f35\",\"repo-size\":12,\"size\":3,\"timestamp\":1796684759}}\npg_tblspc/16384/PG_15_202209061/5/1={{\"checksum-page\":true,\"checksum-page-error\":[1,[3,4]],\"size\":0,\"timestamp\":1}}\n\n[target:file:default]\nmode=\"0600\"\n\n[target:link]\npg_data/pg_tblspc/16384={{\"destination\":\"/ts\"}}\n\n[target:path]\npg_data={{}}\npg_tblspc={{}}\npg_tblspc/16384={{}}\n\n[target:path:default]\nmode=\"0700\"\n")),
    ];
    for (name, text) in texts {
        let rendered = Ini::parse(text.as_bytes(), name)?.render();
        seeds.put("pgbackrest_formats", name, rendered.as_bytes())?;
    }
    Ok(())
}
