//! Incrementals from PostgreSQL's WAL summaries (17+, `summarize_wal = on`): the summarizer
//! records which blocks of which relation the WAL modified. When its summaries cover the WAL
//! from the prior backup's start to this backup's start, a relation file the prior backup holds
//! as blocks is read only where it may have changed; every other block is the prior backup's,
//! and the file's checksum comes from the blocks' chaining values (`pgbr_manifest::chain`).
//!
//! Whatever the summaries cannot vouch for is read: the free space map (not WAL-logged) and the
//! visibility map (some of its changes are not in the WAL summaries) whole, every file of a
//! database created, copied or dropped in the range, blocks at and past a fork's truncation, and
//! any file when the summaries do not cover the range (the backup then says why, and reads
//! changed files whole as before).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pgbr_manifest::Manifest;
use pgbr_wal::Lsn;

use super::start::Started;
use crate::error::Result;
use crate::pg::PgSession;
use crate::pipeline::{ChangedBlocks, BLOCK_SIZE};
use crate::progress::Progress;

/// The page size of the relations the summaries count blocks of.
const PAGE_SIZE: u64 = 8192;
/// A relation segment file's blocks, in pages (1 GiB).
const SEGMENT_PAGES: u64 = 131_072;
/// The main fork: the only one read by its summarized blocks.
const MAIN_FORK: u8 = 0;

/// What one relation fork's summaries record.
#[derive(Default)]
struct ForkChanges {
    /// Pages modified (may repeat, unsorted until [`WalSummaries::sorted`]).
    pages: Vec<u32>,
    /// The lowest limit: the fork was cut to this many pages (0: created or dropped).
    limit: Option<u32>,
}

/// Which blocks the WAL from the prior backup's start to this backup's start modified.
pub(super) struct WalSummaries {
    /// By (tablespace, database, relfilenode, fork).
    forks: HashMap<(u32, u32, u32, u8), ForkChanges>,
    /// (tablespace, database) pairs created, copied or dropped in the range.
    whole: HashSet<(u32, u32)>,
}

/// What this backup does with chaining values and summaries.
pub(super) struct SummaryUse {
    /// Block maps keep each block's chaining value (the cluster summarizes its WAL, so a later
    /// incremental may use them).
    pub record: bool,
    /// The summaries this incremental reads by.
    pub summaries: Option<WalSummaries>,
}

/// Why the summaries are not used, or `Ok` with them: everything [`load`] checks.
async fn summaries_for(
    session: &PgSession,
    started: &Started,
    prior: &Manifest,
    timeout: Duration,
) -> Result<std::result::Result<WalSummaries, String>> {
    if session.relation_layout().await? != (PAGE_SIZE, SEGMENT_PAGES) {
        return Ok(Err(
            "the server's block or segment size is not the default 8 KiB / 1 GiB".into(),
        ));
    }
    let Ok(prior_start) = prior.backup.lsn_start.parse::<Lsn>() else {
        return Ok(Err(format!(
            "the prior backup's start LSN '{}' does not parse",
            prior.backup.lsn_start
        )));
    };
    let prior_tli = prior
        .backup
        .wal_start
        .get(..8)
        .and_then(|t| u32::from_str_radix(t, 16).ok());
    let tli = started.timeline;
    if prior_tli != Some(tli) {
        return Ok(Err(format!(
            "the timeline changed since the prior backup (now {tli})"
        )));
    }
    let to = started.lsn_start;
    let deadline = Instant::now() + timeout;
    loop {
        match session.summarized_to().await? {
            Some((t, lsn)) if t > tli || (t == tli && lsn >= to) => break,
            None => return Ok(Err("the WAL summarizer is not running".into())),
            Some((_, lsn)) if Instant::now() >= deadline => {
                return Ok(Err(format!(
                    "the WAL summarizer reached only {lsn}, not the backup's start {to}, in {:.0}s",
                    timeout.as_secs_f64()
                )))
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut covered = prior_start;
    let mut used = Vec::new();
    for (start, end) in session.wal_summaries(tli).await? {
        if end <= prior_start || start >= to {
            continue;
        }
        if start > covered {
            break;
        }
        covered = covered.max(end);
        used.push((start, end));
    }
    if covered < to {
        return Ok(Err(format!(
            "the WAL summaries of timeline {tli} cover {prior_start} to {covered}, not to the backup's start {to} (summaries older than wal_summary_keep_time are removed)"
        )));
    }
    let mut summaries = WalSummaries {
        forks: HashMap::new(),
        whole: HashSet::new(),
    };
    for range in used {
        for row in session.wal_summary_contents(tli, range).await? {
            if row.relfilenode == 0 {
                summaries.whole.insert((row.tablespace, row.database));
                continue;
            }
            let key = (row.tablespace, row.database, row.relfilenode, row.fork);
            let fork = summaries.forks.entry(key).or_default();
            if row.is_limit {
                fork.limit = Some(fork.limit.map_or(row.block, |l| l.min(row.block)));
            } else {
                fork.pages.push(row.block);
            }
        }
    }
    Ok(Ok(summaries.sorted()))
}

/// Whether this backup records chaining values, and, for an incremental (`prior`), the WAL
/// summaries it can read by; says why not when the cluster summarizes its WAL but they cannot
/// be used.
pub(super) async fn load(
    session: &PgSession,
    started: &Started,
    prior: Option<&Manifest>,
    from_standby: bool,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<SummaryUse> {
    let off = SummaryUse {
        record: false,
        summaries: None,
    };
    if session.major() < 17 || session.setting("summarize_wal").await? != "on" {
        return Ok(off);
    }
    let Some(prior) = prior else {
        return Ok(SummaryUse {
            record: true,
            ..off
        });
    };
    let summaries = if from_standby {
        Err("the backup is taken from a standby".to_string())
    } else {
        summaries_for(session, started, prior, timeout).await?
    };
    let summaries = match summaries {
        Ok(s) => {
            progress.message(&format!(
                "WAL summaries cover {} to {}: {} relation forks changed; their unchanged blocks are not read",
                prior.backup.lsn_start,
                started.lsn_start,
                s.forks.len()
            ));
            Some(s)
        }
        Err(why) => {
            progress.message(&format!(
                "WAL summaries not used ({why}): changed files are read whole"
            ));
            None
        }
    };
    Ok(SummaryUse {
        record: true,
        summaries,
    })
}

impl WalSummaries {
    fn sorted(mut self) -> Self {
        for fork in self.forks.values_mut() {
            fork.pages.sort_unstable();
            fork.pages.dedup();
        }
        self
    }

    /// The blocks (of [`BLOCK_SIZE`]) of the file `name` in backup target `target` (`pg_data`
    /// or `pg_tblspc/<oid>`) that may have changed, or `None` when the whole file must be read:
    /// not a relation's main fork, a database created or dropped in the range, or a size that is
    /// not whole pages of one segment.
    pub fn changed_blocks(&self, target: &str, name: &str, size: u64) -> Option<ChangedBlocks> {
        let (tablespace, database, relfilenode, segment) = relation_of(target, name)?;
        if size % PAGE_SIZE != 0 || size > SEGMENT_PAGES * PAGE_SIZE {
            return None;
        }
        if self.whole.contains(&(tablespace, database)) {
            return None;
        }
        let first_page = u64::from(segment) * SEGMENT_PAGES;
        let pages_per_block = (BLOCK_SIZE as u64) / PAGE_SIZE;
        let block_of = |page: u32| ((u64::from(page) - first_page) / pages_per_block) as u32;
        let Some(fork) = self
            .forks
            .get(&(tablespace, database, relfilenode, MAIN_FORK))
        else {
            return Some(ChangedBlocks::default());
        };
        let in_segment =
            |page: &&u32| (first_page..first_page + SEGMENT_PAGES).contains(&u64::from(**page));
        let mut blocks: Vec<u32> = fork
            .pages
            .iter()
            .filter(in_segment)
            .map(|&p| block_of(p))
            .collect();
        blocks.dedup();
        // Past a truncation, nothing of the prior backup's copy can be trusted.
        let from = fork.limit.and_then(|limit| match u64::from(limit) {
            l if l >= first_page + SEGMENT_PAGES => None,
            l if l <= first_page => Some(0),
            _ => Some(block_of(limit)),
        });
        Some(ChangedBlocks { blocks, from })
    }
}

/// The relation main-fork file `name` of backup target `target` is: (tablespace oid, database
/// oid, relfilenode, segment number). `None` for any other file (other forks included).
fn relation_of(target: &str, name: &str) -> Option<(u32, u32, u32, u32)> {
    const DEFAULT_TABLESPACE: u32 = 1663;
    const GLOBAL_TABLESPACE: u32 = 1664;
    let parts: Vec<&str> = name.split('/').collect();
    let (tablespace, database, file) = match (target, parts.as_slice()) {
        ("pg_data", ["base", db, file]) => (DEFAULT_TABLESPACE, db.parse().ok()?, *file),
        ("pg_data", ["global", file]) => (GLOBAL_TABLESPACE, 0, *file),
        (t, [version, db, file]) if version.starts_with("PG_") => (
            t.strip_prefix("pg_tblspc/")?.parse().ok()?,
            db.parse().ok()?,
            *file,
        ),
        _ => return None,
    };
    let (node, segment) = match file.split_once('.') {
        Some((node, segment)) => (node, segment.parse().ok()?),
        None => (file, 0),
    };
    // Digits only: `_fsm`, `_vm`, `_init` forks and temporary `t<n>_` files are not main forks.
    if node.is_empty() || !node.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((tablespace, database, node.parse().ok()?, segment))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summaries(pages: &[u32], limit: Option<u32>) -> WalSummaries {
        let mut forks = HashMap::new();
        forks.insert(
            (1663, 5, 16384, MAIN_FORK),
            ForkChanges {
                pages: pages.to_vec(),
                limit,
            },
        );
        WalSummaries {
            forks,
            whole: HashSet::new(),
        }
        .sorted()
    }

    #[test]
    fn only_main_forks_of_relations_are_summarized_files() {
        assert_eq!(
            relation_of("pg_data", "base/5/16384"),
            Some((1663, 5, 16384, 0))
        );
        assert_eq!(
            relation_of("pg_data", "base/5/16384.2"),
            Some((1663, 5, 16384, 2))
        );
        assert_eq!(
            relation_of("pg_data", "global/1262"),
            Some((1664, 0, 1262, 0))
        );
        assert_eq!(
            relation_of("pg_tblspc/16400", "PG_17_202406281/5/16401"),
            Some((16400, 5, 16401, 0))
        );
        for (target, name) in [
            ("pg_data", "base/5/16384_fsm"),
            ("pg_data", "base/5/16384_vm"),
            ("pg_data", "base/5/16384_init"),
            ("pg_data", "base/5/t3_16384"),
            ("pg_data", "base/5/pg_filenode.map"),
            ("pg_data", "pg_xact/0000"),
            ("pg_data", "base/5/16384.x"),
        ] {
            assert_eq!(relation_of(target, name), None, "{name}");
        }
    }

    #[test]
    fn pages_map_to_blocks_of_their_segment() {
        let s = summaries(&[0, 7, 8, 131_072 + 17, 40], None);
        let seg0 = s
            .changed_blocks("pg_data", "base/5/16384", 1 << 30)
            .expect("eligible");
        assert_eq!(seg0.blocks, vec![0, 1, 5]);
        assert_eq!(seg0.from, None);
        let seg1 = s
            .changed_blocks("pg_data", "base/5/16384.1", 8192 * 100)
            .expect("eligible");
        assert_eq!(seg1.blocks, vec![2]);
        let other = s
            .changed_blocks("pg_data", "base/5/99999", 8192 * 100)
            .expect("eligible");
        assert_eq!((other.blocks.len(), other.from), (0, None));
        assert!(s.changed_blocks("pg_data", "base/5/16384", 1000).is_none());
        assert!(s
            .changed_blocks("pg_data", "base/5/16384_vm", 8192)
            .is_none());
    }

    #[test]
    fn a_truncation_or_a_new_database_reads_the_rest() {
        let s = summaries(&[3], Some(131_072 + 80));
        let seg0 = s
            .changed_blocks("pg_data", "base/5/16384", 1 << 30)
            .expect("eligible");
        assert_eq!(seg0.from, None);
        let seg1 = s
            .changed_blocks("pg_data", "base/5/16384.1", 8192 * 100)
            .expect("eligible");
        assert_eq!(seg1.from, Some(10));
        let created = summaries(&[], Some(0));
        let c = created
            .changed_blocks("pg_data", "base/5/16384.1", 8192)
            .expect("eligible");
        assert_eq!(c.from, Some(0));
        let mut whole = summaries(&[], None);
        whole.whole.insert((1663, 5));
        assert!(whole
            .changed_blocks("pg_data", "base/5/16384", 8192)
            .is_none());
    }
}
