//! `info --output=prometheus`: what `info` reports, in Prometheus' text exposition format, for
//! node_exporter's textfile collector. Times are Unix timestamps (an age is `time() - metric` in
//! PromQL); every series carries the stanza and repository (`repo1`) as labels.

use std::collections::BTreeMap;
use std::fmt::Write;

use pgbr_manifest::{BackupSummary, BackupType};

use super::StanzaReport;

/// One metric family: its name, help text, and its samples (labels, value).
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// Label values as the format quotes them: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics of `reports` in Prometheus' text format.
pub fn prometheus_text(reports: &[StanzaReport]) -> String {
    let family = |name, help| Family {
        name,
        help,
        samples: Vec::new(),
    };
    let mut up = family(
        "pgbr_stanza_up",
        "Whether the stanza could be read from the repository (1) or not (0).",
    );
    let mut count = family(
        "pgbr_backups",
        "Backups the repository holds for the stanza.",
    );
    let mut start = family(
        "pgbr_backup_last_start_timestamp_seconds",
        "When the newest backup of each type started (Unix time).",
    );
    let mut stop = family(
        "pgbr_backup_last_stop_timestamp_seconds",
        "When the newest backup of each type ended (Unix time).",
    );
    let mut duration = family(
        "pgbr_backup_last_duration_seconds",
        "How long the newest backup of each type took.",
    );
    let mut size = family(
        "pgbr_backup_last_size_bytes",
        "Size of the cluster the newest backup of each type copied.",
    );
    let mut stored = family(
        "pgbr_backup_last_stored_bytes",
        "Bytes the newest backup of each type stored in the repository itself.",
    );
    let mut page_errors = family(
        "pgbr_backup_last_page_errors",
        "Pages that failed their checksum in the newest backup of each type.",
    );
    let mut segments = family(
        "pgbr_archive_segments",
        "WAL segments the archive holds, per archive id and timeline.",
    );
    let mut newest = family(
        "pgbr_archive_newest_timestamp_seconds",
        "When the newest WAL segment of each archive id and timeline was archived (Unix time).",
    );
    for r in reports {
        let at = || {
            vec![
                ("stanza", r.name.clone()),
                ("repo", format!("repo{}", r.repo_key)),
            ]
        };
        up.samples
            .push((at(), if r.status == "ok" { 1.0 } else { 0.0 }));
        if r.status != "ok" {
            continue;
        }
        count.samples.push((at(), r.backups.len() as f64));
        let mut last: BTreeMap<&'static str, &BackupSummary> = BTreeMap::new();
        for b in &r.backups {
            let kind = match b.backup_type {
                BackupType::Full => "full",
                BackupType::Diff => "diff",
                BackupType::Incr => "incr",
            };
            last.insert(kind, b);
        }
        for (kind, b) in last {
            let labels = || {
                let mut l = at();
                l.push(("type", kind.to_string()));
                l
            };
            start.samples.push((labels(), b.timestamp_start as f64));
            stop.samples.push((labels(), b.timestamp_stop as f64));
            let took = b.timestamp_stop.saturating_sub(b.timestamp_start);
            duration.samples.push((labels(), took as f64));
            size.samples.push((labels(), b.size_original as f64));
            stored.samples.push((labels(), b.size_stored as f64));
            page_errors.samples.push((labels(), b.page_errors as f64));
        }
        for a in &r.archive {
            let mut labels = at();
            labels.push(("archive_id", a.archive_id.clone()));
            labels.push(("timeline", a.timeline.to_string()));
            segments.samples.push((labels.clone(), a.count as f64));
            newest.samples.push((labels, a.max_archived_at as f64));
        }
    }
    let mut out = String::new();
    for f in [
        up,
        count,
        start,
        stop,
        duration,
        size,
        stored,
        page_errors,
        segments,
        newest,
    ] {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} gauge", f.name);
        for (labels, value) in f.samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(out, "{}{{{}}} {value}", f.name, labels.join(","));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::ArchiveRange;
    use crate::test_support::summary;

    #[test]
    fn a_prometheus_parser_reads_every_series() {
        let wal = "000000010000000000000002";
        let mut full = summary("20261201-000000F", BackupType::Full, None, 1_000, wal);
        full.timestamp_stop = 1_600;
        full.size_original = 123_456;
        let mut incr = summary(
            "20261201-000000F_20261202-000000I",
            BackupType::Incr,
            Some("20261201-000000F"),
            2_000,
            wal,
        );
        incr.page_errors = 2;
        let ok = StanzaReport {
            name: "main".into(),
            repo: "repo1 (posix:/r)".into(),
            repo_key: 1,
            status: "ok".into(),
            message: None,
            cipher: "none".into(),
            db: Vec::new(),
            archive: vec![ArchiveRange {
                archive_id: "15-1".into(),
                timeline: 1,
                min: "000000010000000000000001".into(),
                max: "000000010000000000000009".into(),
                count: 9,
                max_archived_at: 1_700,
            }],
            backups: vec![full, incr],
            page_errors: Vec::new(),
        };
        let broken = StanzaReport {
            name: "odd \"name\"\\".into(),
            repo_key: 2,
            status: "error".into(),
            backups: Vec::new(),
            archive: Vec::new(),
            ..ok.clone()
        };
        let text = prometheus_text(&[ok, broken]);
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("the text format parses");
        let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
            scrape.samples.iter().find_map(|s| {
                let matches =
                    s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
                match (matches, &s.value) {
                    (true, prometheus_parse::Value::Gauge(v)) => Some(*v),
                    _ => None,
                }
            })
        };
        let main = [("stanza", "main"), ("repo", "repo1")];
        assert_eq!(value("pgbr_stanza_up", &main), Some(1.0));
        assert_eq!(value("pgbr_backups", &main), Some(2.0));
        let full = [("stanza", "main"), ("type", "full")];
        assert_eq!(
            value("pgbr_backup_last_duration_seconds", &full),
            Some(600.0)
        );
        assert_eq!(value("pgbr_backup_last_size_bytes", &full), Some(123_456.0));
        let incr = [("stanza", "main"), ("type", "incr")];
        assert_eq!(value("pgbr_backup_last_page_errors", &incr), Some(2.0));
        assert_eq!(
            value("pgbr_backup_last_page_errors", &[("type", "diff")]),
            None
        );
        let archive = [("archive_id", "15-1"), ("timeline", "1")];
        assert_eq!(value("pgbr_archive_segments", &archive), Some(9.0));
        let newest = value("pgbr_archive_newest_timestamp_seconds", &archive);
        assert_eq!(newest, Some(1_700.0));
        // The format escapes `"` and `\` in label values; this parser leaves the escapes as written.
        let odd = [("stanza", r#"odd \"name\"\\"#), ("repo", "repo2")];
        assert_eq!(value("pgbr_stanza_up", &odd), Some(0.0));
        assert_eq!(scrape.docs.len(), 10, "every family has its help text");
    }
}
