//! Text rendering of `info`, in pgBackRest's layout.

use pgbr_backup::info::StanzaReport;

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

fn time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S+00").to_string())
        .unwrap_or_else(|| unix.to_string())
}

/// Renders reports as pgBackRest's `info` does.
pub fn info_text(reports: &[StanzaReport]) -> String {
    if reports.is_empty() {
        return "No stanzas exist in the repository.".into();
    }
    let mut out = String::new();
    for r in reports {
        // `repo1 (posix:/var/lib/pgbr)` -> `repo1`
        let repo_index = r.repo.split(' ').next().unwrap_or("repo1");
        out.push_str(&format!("stanza: {}\n", r.name));
        match &r.message {
            Some(m) => out.push_str(&format!("    status: error ({m})\n")),
            None if r.backups.is_empty() => out.push_str("    status: error (no valid backups)\n"),
            None => out.push_str("    status: ok\n"),
        }
        out.push_str(&format!("    {}\n", r.repo));
        out.push_str(&format!("    cipher: {}\n", r.cipher));
        for db in &r.db {
            out.push_str(&format!(
                "\n    db (id {}, PostgreSQL {}, system {})\n",
                db.db_id, db.pg_version, db.system_id
            ));
            let id = format!("{}-{}", db.pg_version, db.db_id);
            for a in r.archive.iter().filter(|a| a.archive_id == id) {
                out.push_str(&format!(
                    "        wal archive min/max ({id}, timeline {}): {}/{} ({} files)\n",
                    a.timeline, a.min, a.max, a.count
                ));
            }
            for b in r.backups.iter().filter(|b| b.db_id == db.db_id) {
                out.push_str(&format!(
                    "\n        {} backup: {}\n",
                    b.backup_type, b.label
                ));
                out.push_str(&format!(
                    "            timestamp start/stop: {} / {}\n",
                    time(b.timestamp_start),
                    time(b.timestamp_stop)
                ));
                out.push_str(&format!(
                    "            wal start/stop: {} / {}\n",
                    b.wal_start, b.wal_stop
                ));
                out.push_str(&format!(
                    "            lsn start/stop: {} / {}\n",
                    b.lsn_start, b.lsn_stop
                ));
                out.push_str(&format!(
                    "            database size: {}, files: {}\n",
                    size(b.size_original),
                    b.file_count
                ));
                out.push_str(&format!(
                    "            {repo_index}: backup size: {}\n",
                    size(b.size_stored)
                ));
                if b.page_errors > 0 {
                    out.push_str(&format!(
                        "            page checksum errors: {}\n",
                        b.page_errors
                    ));
                    for e in r.page_errors.iter().filter(|e| e.label == b.label) {
                        let blocks: Vec<String> = e.blocks.iter().map(u32::to_string).collect();
                        let copied = e
                            .reference
                            .as_deref()
                            .map(|r| format!(" (as copied by backup {r})"))
                            .unwrap_or_default();
                        out.push_str(&format!(
                            "                {}/{}: block(s) {}{copied}\n",
                            e.target,
                            e.name,
                            blocks.join(", ")
                        ));
                    }
                }
            }
        }
    }
    out.trim_end().to_string()
}

/// Renders what `expire` removed (or, with `--dry-run`, would remove).
pub fn expire_text(r: &pgbr_backup::expire::ExpireReport) -> String {
    let verb = if r.dry_run {
        "[dry-run] would expire"
    } else {
        "expired"
    };
    let mut out = String::new();
    for label in &r.removed_incomplete {
        out.push_str(&format!("removed incomplete backup {label}\n"));
    }
    for label in &r.backups_expired {
        out.push_str(&format!("{verb} backup {label}\n"));
    }
    for a in &r.archive_expired {
        out.push_str(&format!(
            "{verb} WAL archive {} timeline {}: {}..{} ({} files)\n",
            a.archive_id, a.timeline, a.first, a.last, a.count
        ));
    }
    if r.backups_expired.is_empty() && r.archive_expired.is_empty() {
        out.push_str(if r.dry_run {
            "[dry-run] nothing would expire\n"
        } else {
            "nothing to expire\n"
        });
    }
    out.trim_end().to_string()
}

/// Renders a `verify` report: a summary, then each bad object and each note.
pub fn verify_text(r: &pgbr_backup::verify::VerifyReport) -> String {
    let mut out = format!(
        "stanza: {}\n    status: {}\n    checked: {} info files, {} backups, {} backup files, {} WAL files ({} read)\n",
        r.stanza,
        if r.ok {
            "ok".to_string()
        } else {
            format!("error ({} problems)", r.errors.len())
        },
        r.info_files_checked,
        r.backups_checked,
        r.files_checked,
        r.wal_checked,
        size(r.bytes_read)
    );
    for p in &r.errors {
        out.push_str(&format!("    ERROR: {}: {}\n", p.object, p.message));
    }
    for p in &r.notes {
        out.push_str(&format!("    note: {}: {}\n", p.object, p.message));
    }
    out.trim_end().to_string()
}
