//! What a backup leaves out of a data directory, following pgBackRest (and PostgreSQL's own
//! `basebackup.c` list): runtime state that PostgreSQL rebuilds at start, WAL (it comes from the
//! archive), temporary files, and unlogged relations except their init fork.

use std::collections::HashSet;

use pgbr_storage::posix::{Entry, EntryKind};

/// Files at the root of the data directory that are never backed up.
const ROOT_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "recovery.signal",
    "standby.signal",
    "recovery.conf",
    "recovery.done",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
];

/// Directories at the root whose contents are never backed up (the directory itself is kept).
const ROOT_DIRS_EMPTIED: &[&str] = &[
    "pg_dynshmem",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
    "pg_wal",
];

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// Whether `rel` (relative to the data directory) is excluded. `pg_wal/archive_status` and
/// PostgreSQL 17's `pg_wal/summaries` (WAL summaries) are kept as empty directories, as
/// PostgreSQL's own base backup keeps them.
pub(crate) fn skip_in_pg_data(rel: &str, kind: &EntryKind) -> bool {
    if skip_anywhere(rel) {
        return true;
    }
    if !rel.contains('/') {
        return matches!(kind, EntryKind::File { .. }) && ROOT_FILES.contains(&rel);
    }
    let (top, rest) = rel.split_once('/').unwrap_or((rel, ""));
    if ROOT_DIRS_EMPTIED.contains(&top) {
        let kept = top == "pg_wal" && matches!(rest, "archive_status" | "summaries");
        return !(kept && matches!(kind, EntryKind::Dir));
    }
    false
}

/// Exclusions that apply in the data directory and in tablespaces.
pub(crate) fn skip_anywhere(rel: &str) -> bool {
    let name = file_name(rel);
    name == "pg_internal.init" || name.starts_with("pgsql_tmp") || is_temp_relation(rel)
}

/// `t<backend>_<relfilenode>[_fork][.segment]`: a temporary relation's file.
fn is_temp_relation(rel: &str) -> bool {
    let name = file_name(rel);
    let Some(rest) = name.strip_prefix('t') else {
        return false;
    };
    let Some((backend, node)) = rest.split_once('_') else {
        return false;
    };
    !backend.is_empty()
        && backend.bytes().all(|b| b.is_ascii_digit())
        && node.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// Splits a relation file name into (relfilenode, fork suffix, segment): `16384_fsm.2` ->
/// ("16384", "_fsm", "2"). `None` for anything that is not a relation file.
pub(crate) fn relation_parts(name: &str) -> Option<(&str, &str, &str)> {
    let (base, segment) = match name.split_once('.') {
        Some((b, s)) if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => (b, s),
        Some(_) => return None,
        None => (name, ""),
    };
    let (node, fork) = match base.find('_') {
        Some(i) => (&base[..i], &base[i..]),
        None => (base, ""),
    };
    if node.is_empty() || !node.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !matches!(fork, "" | "_fsm" | "_vm" | "_init") {
        return None;
    }
    Some((node, fork, segment))
}

/// Removes the files of unlogged relations (every fork but `_init`): PostgreSQL resets them from
/// the init fork at the end of recovery, so their contents are never needed.
pub(crate) fn drop_unlogged(entries: Vec<Entry>) -> Vec<Entry> {
    let mut unlogged: HashSet<(String, String)> = HashSet::new();
    for e in &entries {
        if let EntryKind::File { .. } = e.kind {
            let (dir, name) = split_dir(&e.rel_path);
            if let Some((node, "_init", _)) = relation_parts(name) {
                unlogged.insert((dir.to_string(), node.to_string()));
            }
        }
    }
    if unlogged.is_empty() {
        return entries;
    }
    entries
        .into_iter()
        .filter(|e| {
            if !matches!(e.kind, EntryKind::File { .. }) {
                return true;
            }
            let (dir, name) = split_dir(&e.rel_path);
            match relation_parts(name) {
                Some((node, fork, _)) if fork != "_init" => {
                    !unlogged.contains(&(dir.to_string(), node.to_string()))
                }
                _ => true,
            }
        })
        .collect()
}

fn split_dir(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

/// Whether a file holds relation pages whose checksums PostgreSQL maintains.
pub(crate) fn is_checksummed_relation(target_is_pg_data: bool, rel: &str) -> bool {
    let (dir, name) = split_dir(rel);
    let in_relation_dir = if target_is_pg_data {
        dir == "global" || (dir.starts_with("base/") && !dir["base/".len()..].contains('/'))
    } else {
        // <PG_15_catversion>/<dboid>
        dir.starts_with("PG_") && dir.matches('/').count() == 1
    };
    in_relation_dir && relation_parts(name).is_some_and(|(_, fork, _)| fork != "_init")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str) -> Entry {
        Entry {
            rel_path: rel.into(),
            kind: EntryKind::File { size: 8192 },
            mode: 0o600,
            mtime: 0,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn runtime_state_is_excluded() {
        let f = EntryKind::File { size: 1 };
        assert!(skip_in_pg_data("postmaster.pid", &f));
        assert!(skip_in_pg_data("pg_wal/000000010000000000000001", &f));
        assert!(!skip_in_pg_data("pg_wal/archive_status", &EntryKind::Dir));
        assert!(skip_in_pg_data("pg_wal/archive_status/x.ready", &f));
        assert!(!skip_in_pg_data("pg_wal/summaries", &EntryKind::Dir));
        assert!(skip_in_pg_data(
            "pg_wal/summaries/0000000100000000010000280000000001000100.summary",
            &f
        ));
        assert!(!skip_in_pg_data("pg_wal", &EntryKind::Dir));
        assert!(skip_in_pg_data("pg_replslot/slot/state", &f));
        assert!(skip_in_pg_data("base/1/pg_internal.init", &f));
        assert!(skip_in_pg_data("base/pgsql_tmp", &EntryKind::Dir));
        assert!(skip_in_pg_data("base/5/t3_16384", &f));
        assert!(!skip_in_pg_data("base/5/16384", &f));
        assert!(!skip_in_pg_data("global/pg_control", &f));
        assert!(!skip_in_pg_data("PG_VERSION", &f));
        assert!(!skip_in_pg_data("base/5/postmaster.pid", &f));
    }

    #[test]
    fn unlogged_relations_keep_only_init_fork() {
        let kept = drop_unlogged(vec![
            file("base/5/100"),
            file("base/5/100.1"),
            file("base/5/100_fsm"),
            file("base/5/100_init"),
            file("base/5/200"),
            file("base/6/100"),
        ]);
        let names: Vec<_> = kept.iter().map(|e| e.rel_path.as_str()).collect();
        assert_eq!(names, vec!["base/5/100_init", "base/5/200", "base/6/100"]);
    }

    #[test]
    fn relation_names() {
        assert_eq!(relation_parts("16384"), Some(("16384", "", "")));
        assert_eq!(relation_parts("16384_vm.3"), Some(("16384", "_vm", "3")));
        assert_eq!(relation_parts("PG_VERSION"), None);
        assert_eq!(relation_parts("16384_x"), None);
        assert!(is_checksummed_relation(true, "base/5/16384.1"));
        assert!(is_checksummed_relation(true, "global/1262"));
        assert!(!is_checksummed_relation(true, "global/pg_control"));
        assert!(!is_checksummed_relation(true, "base/5/16384_init"));
        assert!(is_checksummed_relation(false, "PG_15_202209061/5/16390"));
    }
}
