//! Timeline history files (`00000003.history`).

use crate::{Error, Lsn};

/// One line of a timeline history file: a timeline that was left, and where.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HistoryEntry {
    /// The ancestor timeline.
    pub parent_timeline: u32,
    /// The LSN at which the next timeline branched off `parent_timeline`: WAL before this
    /// location belongs to `parent_timeline` (and its own ancestors), WAL from here on to the
    /// next timeline.
    pub switch_point: Lsn,
    /// Free-text reason PostgreSQL recorded (e.g. `no recovery target specified`).
    pub reason: String,
}

/// A parsed timeline history file: the ancestry of `timeline`, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct TimelineHistory {
    /// The timeline this history belongs to (the `00000003` of `00000003.history`).
    pub timeline: u32,
    /// Ancestor timelines with their switch points, oldest first.
    pub entries: Vec<HistoryEntry>,
}

impl TimelineHistory {
    /// Parses the text of the history file of `timeline`.
    ///
    /// Each non-blank line that does not start with `#` is `parentTLI<TAB>switchpoint<TAB>reason`.
    /// Timeline ids must increase from line to line and stay below `timeline`; switch points
    /// must not go backwards.
    pub fn parse(timeline: u32, text: &str) -> Result<Self, Error> {
        let mut entries: Vec<HistoryEntry> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let err = |reason: String| Error::InvalidHistory {
                timeline,
                line: line_no,
                reason,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (tli_text, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let parent_timeline: u32 = tli_text
                .parse()
                .ok()
                .filter(|_| tli_text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    err(format!(
                        "expected a numeric timeline ID, found {tli_text:?}"
                    ))
                })?;
            let rest = rest.trim_start();
            let (lsn_text, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let switch_point: Lsn = lsn_text.parse().map_err(|_| {
                err(format!(
                    "expected a write-ahead log switch point location such as 0/3000000, found {lsn_text:?}"
                ))
            })?;
            if let Some(last) = entries.last() {
                if parent_timeline <= last.parent_timeline {
                    return Err(err(format!(
                        "timeline IDs must be in increasing sequence, but {parent_timeline} follows {}",
                        last.parent_timeline
                    )));
                }
                if switch_point < last.switch_point {
                    return Err(err(format!(
                        "switch points must not go backwards, but {switch_point} follows {}",
                        last.switch_point
                    )));
                }
            }
            if parent_timeline >= timeline {
                return Err(err(format!(
                    "timeline IDs must be less than the child timeline's ID {timeline}, found {parent_timeline}"
                )));
            }
            entries.push(HistoryEntry {
                parent_timeline,
                switch_point,
                reason: reason.trim().to_string(),
            });
        }
        Ok(TimelineHistory { timeline, entries })
    }

    /// The timeline that WAL location `lsn` belongs to when following this history: the first
    /// ancestor whose switch point lies beyond `lsn`, or [`TimelineHistory::timeline`] itself
    /// when `lsn` is at or after the last switch point.
    pub fn timeline_of(&self, lsn: Lsn) -> u32 {
        self.entries
            .iter()
            .find(|e| lsn < e.switch_point)
            .map_or(self.timeline, |e| e.parent_timeline)
    }

    /// Where this history left `timeline`, if `timeline` is one of its ancestors.
    pub fn switch_point_of(&self, timeline: u32) -> Option<Lsn> {
        self.entries
            .iter()
            .find(|e| e.parent_timeline == timeline)
            .map(|e| e.switch_point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // As PostgreSQL writes it: entries copied from the parent's history are followed by a blank
    // line and the new entry.
    const TL4: &str = "1\t0/3000000\tno recovery target specified\n\n2\t0/5000158\tat restore point \"before upgrade\"\n\n3\t1/A0000000\tbefore 2024-01-02 03:04:05+00\n";

    #[test]
    fn parse_real_format() {
        let h = TimelineHistory::parse(4, TL4).unwrap();
        assert_eq!(h.timeline, 4);
        assert_eq!(
            h.entries,
            vec![
                HistoryEntry {
                    parent_timeline: 1,
                    switch_point: Lsn(0x0300_0000),
                    reason: "no recovery target specified".into()
                },
                HistoryEntry {
                    parent_timeline: 2,
                    switch_point: Lsn(0x0500_0158),
                    reason: "at restore point \"before upgrade\"".into()
                },
                HistoryEntry {
                    parent_timeline: 3,
                    switch_point: Lsn(0x1_A000_0000),
                    reason: "before 2024-01-02 03:04:05+00".into()
                },
            ]
        );
        assert_eq!(h.switch_point_of(2), Some(Lsn(0x0500_0158)));
        assert_eq!(h.switch_point_of(4), None);
    }

    #[test]
    fn timeline_of() {
        let h = TimelineHistory::parse(4, TL4).unwrap();
        assert_eq!(h.timeline_of(Lsn(0)), 1);
        assert_eq!(h.timeline_of(Lsn(0x02FF_FFFF)), 1);
        assert_eq!(h.timeline_of(Lsn(0x0300_0000)), 2);
        assert_eq!(h.timeline_of(Lsn(0x0500_0157)), 2);
        assert_eq!(h.timeline_of(Lsn(0x0500_0158)), 3);
        assert_eq!(h.timeline_of(Lsn(0x1_9FFF_FFFF)), 3);
        assert_eq!(h.timeline_of(Lsn(0x1_A000_0000)), 4);
        assert_eq!(h.timeline_of(Lsn(u64::MAX)), 4);

        let empty = TimelineHistory::parse(1, "").unwrap();
        assert_eq!(empty.timeline_of(Lsn(12345)), 1);
    }

    #[test]
    fn comments_spaces_and_empty_reason() {
        let h =
            TimelineHistory::parse(3, "# comment\n  \n 1 0/3000000\n2\t0/40000A0\t\r\n").unwrap();
        assert_eq!(h.entries.len(), 2);
        assert_eq!(h.entries[0].reason, "");
        assert_eq!(h.entries[1].switch_point, Lsn(0x0400_00A0));
    }

    #[test]
    fn errors() {
        let cases = [
            ("x\t0/1\treason\n", 1, "numeric timeline ID"),
            ("-1\t0/1\treason\n", 1, "numeric timeline ID"),
            ("1\n", 1, "switch point"),
            ("1\tzz\treason\n", 1, "switch point"),
            ("2\t0/1\ta\n\n1\t0/2\tb\n", 3, "increasing"),
            ("1\t0/5\ta\n2\t0/4\tb\n", 2, "backwards"),
            ("1\t0/5\ta\n5\t0/6\tb\n", 2, "less than the child"),
        ];
        for (text, line, needle) in cases {
            let err = TimelineHistory::parse(5, text).unwrap_err();
            let Error::InvalidHistory {
                timeline,
                line: got,
                ref reason,
            } = err
            else {
                panic!("{err:?}")
            };
            assert_eq!((timeline, got), (5, line), "{text:?}");
            assert!(reason.contains(needle), "{text:?}: {reason}");
            assert!(err.to_string().contains("timeline 5"));
        }
    }

    proptest! {
        #[test]
        fn never_panics(text in "[0-9A-Fa-f/\t \n#x]{0,80}") {
            let _ = TimelineHistory::parse(7, &text);
        }

        #[test]
        fn timeline_of_is_monotonic(a in any::<u64>(), b in any::<u64>()) {
            let h = TimelineHistory::parse(4, TL4).unwrap();
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(h.timeline_of(Lsn(lo)) <= h.timeline_of(Lsn(hi)));
        }
    }
}
