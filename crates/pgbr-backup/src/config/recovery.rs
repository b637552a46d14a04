//! Recovery targets: what `restore --type=... --target=...` asks PostgreSQL to recover to, how that
//! becomes `postgresql.auto.conf` settings and a signal file (PostgreSQL 12+), and how a target picks
//! the backup to start from.

use std::fmt;

use pgbr_wal::Lsn;

use crate::error::{Error, Result};

/// Where recovery stops.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum RecoveryTarget {
    /// Replay the whole archive, then promote.
    #[default]
    Default,
    /// Stop as soon as the backup is consistent.
    Immediate,
    /// Stop at a time.
    Time {
        /// As given, passed to PostgreSQL unchanged.
        text: String,
        /// The same instant as Unix seconds, for backup selection and pre-flight checks.
        unix: i64,
    },
    /// Stop at a transaction id.
    Xid(String),
    /// Stop at an LSN.
    Lsn(Lsn),
    /// Stop at a restore point made with `pg_create_restore_point`.
    Name(String),
    /// Start as a standby that follows the archive (writes `standby.signal`).
    Standby,
    /// Leave the recovery configuration as it is in the destination.
    Preserve,
}

impl RecoveryTarget {
    /// The `--type` word of this target.
    pub fn type_name(&self) -> &'static str {
        match self {
            RecoveryTarget::Default => "default",
            RecoveryTarget::Immediate => "immediate",
            RecoveryTarget::Time { .. } => "time",
            RecoveryTarget::Xid(_) => "xid",
            RecoveryTarget::Lsn(_) => "lsn",
            RecoveryTarget::Name(_) => "name",
            RecoveryTarget::Standby => "standby",
            RecoveryTarget::Preserve => "preserve",
        }
    }

    /// Builds a target from `--type` and `--target`.
    pub fn parse(kind: &str, target: Option<&str>) -> Result<RecoveryTarget> {
        let need = |what: &str| {
            target.map(str::to_string).ok_or_else(|| {
                Error::config(format!(
                    "restore --type={kind} requires option 'target' ({what}): pass --target=..."
                ))
            })
        };
        let t = match kind {
            "default" => RecoveryTarget::Default,
            "immediate" => RecoveryTarget::Immediate,
            "standby" => RecoveryTarget::Standby,
            "preserve" => RecoveryTarget::Preserve,
            "time" => {
                let text = need("a time such as '2026-11-20 14:02:00+00'")?;
                let unix = parse_time(&text)?;
                RecoveryTarget::Time { text, unix }
            }
            "xid" => {
                let x = need("a transaction id")?;
                if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::config(format!(
                        "invalid value '{x}' for option 'target': --type=xid takes a transaction id (digits)"
                    )));
                }
                RecoveryTarget::Xid(x)
            }
            "lsn" => {
                let l = need("an LSN such as 0/3000060")?;
                RecoveryTarget::Lsn(l.parse().map_err(|_| {
                    Error::config(format!(
                        "invalid value '{l}' for option 'target': --type=lsn takes an LSN such as 0/3000060"
                    ))
                })?)
            }
            "name" => RecoveryTarget::Name(need("a restore point name")?),
            other => {
                return Err(Error::config(format!(
                    "invalid value '{other}' for option 'type': restore takes default, immediate, time, xid, lsn, name, standby or preserve"
                )))
            }
        };
        if target.is_some()
            && matches!(
                t,
                RecoveryTarget::Default
                    | RecoveryTarget::Immediate
                    | RecoveryTarget::Standby
                    | RecoveryTarget::Preserve
            )
        {
            return Err(Error::config(format!(
                "option 'target' does not apply to restore --type={kind}; use --type=time, xid, lsn or name"
            )));
        }
        Ok(t)
    }
}

/// What the server does on reaching the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetAction {
    /// Stay paused in recovery (PostgreSQL's default).
    Pause,
    /// End recovery and accept writes.
    Promote,
    /// Shut down.
    Shutdown,
}

impl fmt::Display for TargetAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetAction::Pause => "pause",
            TargetAction::Promote => "promote",
            TargetAction::Shutdown => "shutdown",
        })
    }
}

/// Everything about recovery a restore writes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RecoveryOptions {
    /// The target.
    pub target: RecoveryTarget,
    /// `--target-action`.
    pub action: Option<TargetAction>,
    /// `--target-exclusive`.
    pub exclusive: bool,
    /// `--target-timeline`: latest, current or an id.
    pub timeline: Option<String>,
}

impl RecoveryOptions {
    /// Checks the combination of options.
    pub fn validate(&self) -> Result<()> {
        let has_stop_point = matches!(
            self.target,
            RecoveryTarget::Immediate
                | RecoveryTarget::Time { .. }
                | RecoveryTarget::Xid(_)
                | RecoveryTarget::Lsn(_)
                | RecoveryTarget::Name(_)
        );
        if self.action.is_some() && !has_stop_point {
            return Err(Error::config(format!(
                "option 'target-action' needs a recovery target; restore --type={} has none",
                self.target.type_name()
            )));
        }
        if self.exclusive
            && !matches!(
                self.target,
                RecoveryTarget::Time { .. } | RecoveryTarget::Xid(_) | RecoveryTarget::Lsn(_)
            )
        {
            return Err(Error::config(format!(
                "option 'target-exclusive' applies to --type=time, xid or lsn, not {}",
                self.target.type_name()
            )));
        }
        if let Some(t) = &self.timeline {
            let ok = t == "latest" || t == "current" || parse_timeline(t).is_some();
            if !ok {
                return Err(Error::config(format!(
                    "invalid value '{t}' for option 'target-timeline': use latest, current or a timeline id (decimal, or hex with 0x)"
                )));
            }
            if self.target == RecoveryTarget::Preserve {
                return Err(Error::config(
                    "option 'target-timeline' does not apply to restore --type=preserve".into(),
                ));
            }
        }
        Ok(())
    }

    /// The `postgresql.auto.conf` settings (besides `restore_command`), in order.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match &self.target {
            RecoveryTarget::Immediate => out.push(("recovery_target", "immediate".to_string())),
            RecoveryTarget::Time { text, .. } => out.push(("recovery_target_time", text.clone())),
            RecoveryTarget::Xid(x) => out.push(("recovery_target_xid", x.clone())),
            RecoveryTarget::Lsn(l) => out.push(("recovery_target_lsn", l.to_string())),
            RecoveryTarget::Name(n) => out.push(("recovery_target_name", n.clone())),
            RecoveryTarget::Default | RecoveryTarget::Standby | RecoveryTarget::Preserve => {}
        }
        if self.exclusive {
            out.push(("recovery_target_inclusive", "false".into()));
        }
        if let Some(a) = self.action {
            out.push(("recovery_target_action", a.to_string()));
        }
        if let Some(t) = &self.timeline {
            let value = parse_timeline(t)
                .map(|n| n.to_string())
                .unwrap_or_else(|| t.clone());
            out.push(("recovery_target_timeline", value));
        }
        out
    }
}

/// A timeline id in decimal or `0x` hex.
pub(crate) fn parse_timeline(s: &str) -> Option<u32> {
    let n = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => s.parse().ok()?,
    };
    (n >= 1).then_some(n)
}

/// Parses a target time the way a DBA writes it: `YYYY-MM-DD HH:MM:SS[.frac][zone]`, zone as
/// `+HH`, `+HH:MM`, `+HHMM` or `Z`; without a zone the time is this host's local time (as
/// pgBackRest does).
pub fn parse_time(text: &str) -> Result<i64> {
    use chrono::{DateTime, Local, NaiveDateTime, TimeZone};
    let s = text.trim();
    let s = s.replacen('T', " ", 1);
    let with_zone = |s: &str| -> Option<i64> {
        let s = if let Some(x) = s.strip_suffix('Z') {
            format!("{x}+00:00")
        } else {
            s.to_string()
        };
        // "+HH" alone: chrono wants minutes.
        let s = match s.rfind(['+', '-']) {
            Some(i) if i > 10 && s.len() - i == 3 => format!("{s}:00"),
            _ => s,
        };
        for fmt in [
            "%Y-%m-%d %H:%M:%S%.f%:z",
            "%Y-%m-%d %H:%M:%S%.f%z",
            "%Y-%m-%d %H:%M%:z",
        ] {
            if let Ok(t) = DateTime::parse_from_str(&s, fmt) {
                return Some(t.timestamp());
            }
        }
        None
    };
    if let Some(t) = with_zone(&s) {
        return Ok(t);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&s, fmt) {
            if let Some(t) = Local.from_local_datetime(&naive).earliest() {
                return Ok(t.timestamp());
            }
        }
    }
    Err(Error::config(format!(
        "invalid value '{text}' for option 'target': --type=time takes a time such as '2026-11-20 14:02:00+00'"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_with_and_without_zones() {
        let utc = parse_time("2026-11-20 14:02:00+00").expect("utc");
        assert_eq!(parse_time("2026-11-20 14:02:00Z").expect("z"), utc);
        assert_eq!(
            parse_time("2026-11-20 15:02:00+01:00").expect("+01:00"),
            utc
        );
        assert_eq!(
            parse_time("2026-11-20 16:02:00.25+0200").expect("+0200"),
            utc
        );
        assert_eq!(parse_time("2026-11-20T14:02:00+00").expect("T"), utc);
        assert!(parse_time("2026-11-20 14:02:00").is_ok());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn targets_need_their_value_and_only_theirs() {
        assert!(RecoveryTarget::parse("time", None).is_err());
        assert!(RecoveryTarget::parse("default", Some("x")).is_err());
        assert!(RecoveryTarget::parse("xid", Some("12a")).is_err());
        assert!(RecoveryTarget::parse("lsn", Some("0/3000060")).is_ok());
        assert!(RecoveryTarget::parse("bogus", None).is_err());
        let o = RecoveryOptions {
            target: RecoveryTarget::parse("xid", Some("1234")).expect("xid"),
            action: Some(TargetAction::Promote),
            exclusive: true,
            timeline: Some("0x2".into()),
        };
        o.validate().expect("valid");
        assert_eq!(
            o.settings(),
            vec![
                ("recovery_target_xid", "1234".to_string()),
                ("recovery_target_inclusive", "false".to_string()),
                ("recovery_target_action", "promote".to_string()),
                ("recovery_target_timeline", "2".to_string()),
            ]
        );
        let bad = RecoveryOptions {
            target: RecoveryTarget::Default,
            action: Some(TargetAction::Pause),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
