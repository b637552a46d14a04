//! `backup_label`, as returned by `pg_backup_stop()`.

use crate::{Error, Lsn};

/// The contents of a `backup_label` file.
///
/// PostgreSQL 15 writes, for example:
///
/// ```text
/// START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
/// CHECKPOINT LOCATION: 0/2000060
/// BACKUP METHOD: streamed
/// BACKUP FROM: primary
/// START TIME: 2024-05-06 07:08:09 UTC
/// LABEL: pgbr backup
/// START TIMELINE: 1
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackupLabel {
    /// Where WAL replay must start (the backup's start LSN).
    pub start_wal_location: Lsn,
    /// The WAL segment holding `start_wal_location` (24 hex digits).
    pub start_wal_file: String,
    /// The checkpoint record the backup started from.
    pub checkpoint_location: Lsn,
    /// `streamed` (pg_backup_start/stop or pg_basebackup) or `pg_rewind`.
    pub backup_method: String,
    /// `primary` or `standby`.
    pub backup_from: String,
    /// Start time as PostgreSQL wrote it, e.g. `2024-05-06 07:08:09 UTC`.
    pub start_time: String,
    /// The label given to `pg_backup_start`.
    pub label: String,
    /// Timeline of the start location (from `START TIMELINE`, or from the start WAL file name
    /// when that line is absent, as in PostgreSQL 10 and older).
    pub start_timeline: u32,
}

const START_WAL_LOCATION: &str = "START WAL LOCATION";
const CHECKPOINT_LOCATION: &str = "CHECKPOINT LOCATION";
const BACKUP_METHOD: &str = "BACKUP METHOD";
const BACKUP_FROM: &str = "BACKUP FROM";
const START_TIME: &str = "START TIME";
const LABEL: &str = "LABEL";
const START_TIMELINE: &str = "START TIMELINE";

fn invalid(reason: String) -> Error {
    Error::InvalidBackupLabel { reason }
}

fn parse_lsn(field: &str, value: &str) -> Result<Lsn, Error> {
    value
        .parse()
        .map_err(|_| invalid(format!("{field} {value:?} is not a WAL location")))
}

impl BackupLabel {
    /// Parses the text of a `backup_label`. Lines with unknown keys (such as PostgreSQL 17's
    /// `INCREMENTAL FROM LSN`) are ignored; a key given twice is an error.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut start: Option<(Lsn, String)> = None;
        let mut checkpoint = None;
        let mut method = None;
        let mut from = None;
        let mut time = None;
        let mut label = None;
        let mut timeline = None;

        for raw in text.lines() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                continue;
            }
            let (key, value) = line.split_once(':').ok_or_else(|| {
                invalid(format!("line {line:?} is not of the form \"KEY: value\""))
            })?;
            let value = value.strip_prefix(' ').unwrap_or(value);
            let slot_taken = |present: bool| {
                if present {
                    Err(invalid(format!("line {key:?} appears more than once")))
                } else {
                    Ok(())
                }
            };
            match key {
                START_WAL_LOCATION => {
                    slot_taken(start.is_some())?;
                    // "0/2000028 (file 000000010000000000000002)"
                    let (lsn, file) = value
                        .split_once(" (file ")
                        .and_then(|(lsn, rest)| Some((lsn, rest.strip_suffix(')')?)))
                        .ok_or_else(|| {
                            invalid(format!(
                                "{START_WAL_LOCATION} {value:?} is not of the form \"0/2000028 (file 000000010000000000000002)\""
                            ))
                        })?;
                    let lsn = parse_lsn(START_WAL_LOCATION, lsn)?;
                    if file.len() != 24 || !file.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(invalid(format!(
                            "start WAL file {file:?} is not a WAL segment name"
                        )));
                    }
                    start = Some((lsn, file.to_string()));
                }
                CHECKPOINT_LOCATION => {
                    slot_taken(checkpoint.is_some())?;
                    checkpoint = Some(parse_lsn(CHECKPOINT_LOCATION, value.trim())?);
                }
                BACKUP_METHOD => {
                    slot_taken(method.is_some())?;
                    method = Some(value.trim().to_string());
                }
                BACKUP_FROM => {
                    slot_taken(from.is_some())?;
                    from = Some(value.trim().to_string());
                }
                START_TIME => {
                    slot_taken(time.is_some())?;
                    time = Some(value.trim().to_string());
                }
                LABEL => {
                    slot_taken(label.is_some())?;
                    label = Some(value.to_string());
                }
                START_TIMELINE => {
                    slot_taken(timeline.is_some())?;
                    let v = value.trim();
                    let tli = v
                        .parse::<u32>()
                        .ok()
                        .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| {
                            invalid(format!("{START_TIMELINE} {v:?} is not a timeline ID"))
                        })?;
                    timeline = Some(tli);
                }
                _ => {}
            }
        }

        let (start_wal_location, start_wal_file) = start.ok_or(Error::MissingBackupLabelField {
            field: START_WAL_LOCATION,
        })?;
        // The file name is 24 hex digits (checked above), so its first 8 are a timeline.
        let file_timeline = u32::from_str_radix(&start_wal_file[..8], 16)
            .map_err(|e| invalid(format!("start WAL file {start_wal_file:?}: {e}")))?;
        let start_timeline = timeline.unwrap_or(file_timeline);
        if start_timeline != file_timeline {
            return Err(invalid(format!(
                "{START_TIMELINE} is {start_timeline} but the start WAL file {start_wal_file} is on timeline {file_timeline}"
            )));
        }
        Ok(BackupLabel {
            start_wal_location,
            start_wal_file,
            checkpoint_location: checkpoint.ok_or(Error::MissingBackupLabelField {
                field: CHECKPOINT_LOCATION,
            })?,
            backup_method: method.ok_or(Error::MissingBackupLabelField {
                field: BACKUP_METHOD,
            })?,
            backup_from: from.ok_or(Error::MissingBackupLabelField { field: BACKUP_FROM })?,
            start_time: time.ok_or(Error::MissingBackupLabelField { field: START_TIME })?,
            label: label.ok_or(Error::MissingBackupLabelField { field: LABEL })?,
            start_timeline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PG15: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
CHECKPOINT LOCATION: 0/2000060\n\
BACKUP METHOD: streamed\n\
BACKUP FROM: primary\n\
START TIME: 2024-05-06 07:08:09 UTC\n\
LABEL: pgbr: full backup\n\
START TIMELINE: 1\n";

    #[test]
    fn parse_pg15() {
        let l = BackupLabel::parse(PG15).unwrap();
        assert_eq!(
            l,
            BackupLabel {
                start_wal_location: Lsn(0x0200_0028),
                start_wal_file: "000000010000000000000002".into(),
                checkpoint_location: Lsn(0x0200_0060),
                backup_method: "streamed".into(),
                backup_from: "primary".into(),
                start_time: "2024-05-06 07:08:09 UTC".into(),
                label: "pgbr: full backup".into(),
                start_timeline: 1,
            }
        );
    }

    #[test]
    fn pg17_extra_lines_and_empty_label() {
        let text = "START WAL LOCATION: 2/A0000028 (file 0000000300000002000000A0)\r\n\
CHECKPOINT LOCATION: 2/A0000080\r\n\
BACKUP METHOD: streamed\r\n\
BACKUP FROM: standby\r\n\
START TIME: 2024-05-06 07:08:09 CEST\r\n\
LABEL: \r\n\
START TIMELINE: 3\r\n\
INCREMENTAL FROM LSN: 2/90000028\r\n\
INCREMENTAL FROM TLI: 3\r\n";
        let l = BackupLabel::parse(text).unwrap();
        assert_eq!(l.label, "");
        assert_eq!(l.start_timeline, 3);
        assert_eq!(l.backup_from, "standby");
        assert_eq!(l.start_wal_location, Lsn(0x2_A000_0028));
    }

    #[test]
    fn timeline_from_file_name_when_absent() {
        let text = PG15
            .replace("START TIMELINE: 1\n", "")
            .replace("000000010000000000000002", "000000020000000000000002");
        assert_eq!(BackupLabel::parse(&text).unwrap().start_timeline, 2);
    }

    #[test]
    fn errors() {
        for (field, key) in [
            (START_WAL_LOCATION, "START WAL LOCATION:"),
            (CHECKPOINT_LOCATION, "CHECKPOINT LOCATION:"),
            (BACKUP_METHOD, "BACKUP METHOD:"),
            (BACKUP_FROM, "BACKUP FROM:"),
            (START_TIME, "START TIME:"),
            (LABEL, "LABEL:"),
        ] {
            let text: String = PG15
                .lines()
                .filter(|l| !l.starts_with(key))
                .map(|l| format!("{l}\n"))
                .collect();
            let err = BackupLabel::parse(&text).unwrap_err();
            assert_eq!(err, Error::MissingBackupLabelField { field }, "{key}");
            assert!(err.to_string().contains(field));
        }
        for bad in [
            PG15.replace("0/2000028 (file", "0/zz (file"),
            PG15.replace(
                "(file 000000010000000000000002)",
                "000000010000000000000002",
            ),
            PG15.replace("(file 000000010000000000000002)", "(file 0001)"),
            PG15.replace("CHECKPOINT LOCATION: 0/2000060", "CHECKPOINT LOCATION: x"),
            PG15.replace("START TIMELINE: 1", "START TIMELINE: one"),
            PG15.replace("START TIMELINE: 1", "START TIMELINE: 2"),
            format!("{PG15}LABEL: again\n"),
            format!("{PG15}no colon here\n"),
        ] {
            assert!(
                matches!(
                    BackupLabel::parse(&bad),
                    Err(Error::InvalidBackupLabel { .. })
                ),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics(text in "[A-Z :/()0-9\n]{0,120}") {
            let _ = BackupLabel::parse(&text);
        }
    }
}
