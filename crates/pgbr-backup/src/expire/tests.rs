use super::*;
use crate::config::RetentionFullType;
use crate::test_support::summary;
use pgbr_manifest::BackupType;

pub(super) fn chain() -> Vec<BackupSummary> {
    vec![
        summary(
            "20261120-000000F",
            BackupType::Full,
            None,
            100,
            "000000010000000000000002",
        ),
        summary(
            "20261120-000000F_20261121-000000D",
            BackupType::Diff,
            Some("20261120-000000F"),
            200,
            "000000010000000000000004",
        ),
        summary(
            "20261120-000000F_20261121-010000I",
            BackupType::Incr,
            Some("20261120-000000F_20261121-000000D"),
            250,
            "000000010000000000000005",
        ),
        summary(
            "20261122-000000F",
            BackupType::Full,
            None,
            300,
            "000000010000000000000007",
        ),
        summary(
            "20261123-000000F",
            BackupType::Full,
            None,
            400,
            "000000010000000000000009",
        ),
    ]
}

#[test]
fn count_retention_takes_dependents_newest_first() {
    let opts = ExpireOptions {
        retention_full: Some(2),
        ..Default::default()
    };
    let gone = plan_backups(&chain(), &opts, 1000).expect("plan");
    assert_eq!(
        gone,
        vec![
            "20261120-000000F_20261121-010000I",
            "20261120-000000F_20261121-000000D",
            "20261120-000000F"
        ]
    );
    let opts = ExpireOptions {
        retention_full: Some(3),
        ..Default::default()
    };
    assert!(plan_backups(&chain(), &opts, 1000)
        .expect("plan")
        .is_empty());
}

#[test]
fn diff_retention_and_set() {
    let opts = ExpireOptions {
        retention_full: Some(5),
        retention_diff: Some(1),
        ..Default::default()
    };
    assert!(plan_backups(&chain(), &opts, 1000)
        .expect("plan")
        .is_empty());
    let opts = ExpireOptions {
        set: Some("20261120-000000F_20261121-000000D".into()),
        ..Default::default()
    };
    assert_eq!(
        plan_backups(&chain(), &opts, 1000).expect("plan"),
        vec![
            "20261120-000000F_20261121-010000I",
            "20261120-000000F_20261121-000000D"
        ]
    );
    let opts = ExpireOptions {
        set: Some("20261123-000000F".into()),
        ..Default::default()
    };
    let e = plan_backups(&chain(), &opts, 1000).expect_err("newest full");
    assert!(e.to_string().contains("--force"), "{e}");
    let opts = ExpireOptions {
        set: Some("20261123-000000F".into()),
        force: true,
        ..Default::default()
    };
    assert_eq!(
        plan_backups(&chain(), &opts, 1000).expect("forced"),
        vec!["20261123-000000F"]
    );
    let opts = ExpireOptions {
        set: Some("20261101-000000F".into()),
        ..Default::default()
    };
    assert!(plan_backups(&chain(), &opts, 1000).is_err());
}

#[test]
fn time_retention_keeps_the_newest_full_before_the_window() {
    let day = 86_400;
    let mut b = chain();
    b[0].timestamp_stop = 0;
    b[3].timestamp_stop = 5 * day;
    b[4].timestamp_stop = 9 * day;
    let opts = ExpireOptions {
        retention_full: Some(2),
        retention_full_type: RetentionFullType::Time,
        ..Default::default()
    };
    // now = day 10: window starts at day 8; the full of day 5 is kept, the one of day 0 goes.
    let gone = plan_backups(&b, &opts, 10 * day).expect("plan");
    assert_eq!(gone.last().map(String::as_str), Some("20261120-000000F"));
    assert!(!gone.contains(&"20261122-000000F".to_string()));
}
