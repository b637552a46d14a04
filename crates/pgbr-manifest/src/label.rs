//! Backup labels, as pgBackRest writes them.
//!
//! A full backup is labelled `YYYYMMDD-HHMMSSF` (UTC start time); a
//! differential or incremental one `<full label>_YYYYMMDD-HHMMSSD` or `...I`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The kind of a backup.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Every file is copied.
    #[default]
    Full,
    /// Files changed since the last full backup are copied.
    Diff,
    /// Files changed since the last backup of any type are copied.
    Incr,
}

impl BackupType {
    /// The letter that ends a label of this type: `F`, `D` or `I`.
    pub fn label_suffix(self) -> char {
        match self {
            BackupType::Full => 'F',
            BackupType::Diff => 'D',
            BackupType::Incr => 'I',
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
        }
    }
}

impl fmt::Display for BackupType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackupType {
    type Err = Error;

    /// Parses `full`, `diff` or `incr`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "full" => Ok(BackupType::Full),
            "diff" => Ok(BackupType::Diff),
            "incr" => Ok(BackupType::Incr),
            other => Err(Error::invalid(
                "backup type",
                format!("{other:?} is not one of full, diff, incr"),
            )),
        }
    }
}

/// Earliest time a label can express: 0000-01-01 00:00:00 UTC.
const MIN_TIME: i64 = -62_167_219_200;
/// Latest time a label can express: 9999-12-31 23:59:59 UTC.
const MAX_TIME: i64 = 253_402_300_799;

/// Makes the label of a new backup started at `unix_time` (seconds, UTC).
///
/// A full backup ignores `prior_full`. A diff or incr backup takes the full
/// label part (before `_`) of `prior_full`, which may be the label of the
/// prior full backup or of any backup in its chain. If a diff/incr is given no
/// prior, this backup's own timestamp stands in for the full part; the result
/// still parses, but callers should always pass the prior. Times outside the
/// years 0000..=9999 are clamped into that range.
///
/// ```
/// use pgbr_manifest::{new_label, BackupType};
/// let full = new_label(BackupType::Full, None, 1_795_641_390);
/// assert_eq!(full, "20261125-211630F");
/// let incr = new_label(BackupType::Incr, Some(&full), 1_795_645_800);
/// assert_eq!(incr, "20261125-211630F_20261125-223000I");
/// ```
pub fn new_label(backup_type: BackupType, prior_full: Option<&str>, unix_time: i64) -> String {
    let stamp = format_time(unix_time);
    match backup_type {
        BackupType::Full => format!("{stamp}F"),
        BackupType::Diff | BackupType::Incr => {
            let full = match prior_full {
                Some(prior) => prior.split('_').next().unwrap_or(prior).to_string(),
                None => format!("{stamp}F"),
            };
            format!("{full}_{stamp}{}", backup_type.label_suffix())
        }
    }
}

/// Parses a backup label into its type and the start time (unix seconds, UTC)
/// of the backup it names (for diff/incr, the second timestamp).
pub fn parse_label(label: &str) -> Result<(BackupType, i64), Error> {
    let bad = || Error::BadLabel {
        label: label.to_string(),
    };
    let b = label.as_bytes();
    match b.len() {
        16 => {
            if b[15] != b'F' {
                return Err(bad());
            }
            let t = parse_time(&b[..15]).ok_or_else(bad)?;
            Ok((BackupType::Full, t))
        }
        33 => {
            if b[15] != b'F' || b[16] != b'_' {
                return Err(bad());
            }
            parse_time(&b[..15]).ok_or_else(bad)?;
            let t = parse_time(&b[17..32]).ok_or_else(bad)?;
            let ty = match b[32] {
                b'D' => BackupType::Diff,
                b'I' => BackupType::Incr,
                _ => return Err(bad()),
            };
            Ok((ty, t))
        }
        _ => Err(bad()),
    }
}

/// The full-backup part of a valid label (the label itself for a full backup).
pub(crate) fn full_part(label: &str) -> &str {
    label.get(..16).unwrap_or(label)
}

fn format_time(unix_time: i64) -> String {
    let t = unix_time.clamp(MIN_TIME, MAX_TIME);
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Parses `YYYYMMDD-HHMMSS`.
fn parse_time(b: &[u8]) -> Option<i64> {
    if b.len() != 15 || b[8] != b'-' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in b.get(range)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_labels() {
        assert_eq!(new_label(BackupType::Full, None, 0), "19700101-000000F");
        assert_eq!(
            parse_label("20261125-211630F").unwrap(),
            (BackupType::Full, 1_795_641_390)
        );
        let diff = new_label(
            BackupType::Diff,
            Some("20261125-211630F_20261126-000000I"),
            1_795_645_800,
        );
        assert_eq!(diff, "20261125-211630F_20261125-223000D");
        assert_eq!(
            parse_label(&diff).unwrap(),
            (BackupType::Diff, 1_795_645_800)
        );
        assert_eq!(
            new_label(BackupType::Full, None, MIN_TIME - 5),
            "00000101-000000F"
        );
        assert_eq!(
            new_label(BackupType::Full, None, i64::MAX),
            "99991231-235959F"
        );
    }

    #[test]
    fn bad_labels() {
        for l in [
            "",
            "20261125-211630",
            "20261125-211630D",
            "20261125-211630X",
            "20261325-211630F",
            "20260230-211630F",
            "20261125-241630F",
            "20261125_211630F",
            "2026112a-211630F",
            "20261125-211630F_20261125-223000F",
            "20261125-211630I_20261125-223000I",
            "20261125-211630F-20261125-223000I",
            "20261125-211630F_20261125-223000IX",
            "+0261125-211630F",
        ] {
            assert!(parse_label(l).is_err(), "{l}");
        }
        assert!(parse_label("20240229-000000F").is_ok());
        assert!(parse_label("20230229-000000F").is_err());
    }

    #[test]
    fn backup_type_text() {
        for t in [BackupType::Full, BackupType::Diff, BackupType::Incr] {
            assert_eq!(t.to_string().parse::<BackupType>().unwrap(), t);
        }
        assert!("FULL".parse::<BackupType>().is_err());
    }
}
