use std::collections::BTreeSet;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::blob::BlobId;
use crate::snapshot::{Snapshot, Summary, SNAPSHOT_VERSION};

fn entry(id: usize, time: DateTime<FixedOffset>, tags: &[&str]) -> SnapshotEntry {
    SnapshotEntry {
        id: format!("{id:064x}"),
        snapshot: Snapshot {
            version: SNAPSHOT_VERSION,
            time,
            hostname: "host".into(),
            username: "user".into(),
            paths: vec!["/data".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            source: "files".into(),
            tree: BlobId([0; 32]),
            parent: None,
            program_version: "test".into(),
            summary: Summary::default(),
        },
    }
}

fn utc(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).expect("test time")
}

fn kept_ids(
    policy: &RetentionPolicy,
    entries: &[SnapshotEntry],
    zone: &impl TimeZone,
) -> Vec<String> {
    let refs: Vec<&SnapshotEntry> = entries.iter().collect();
    apply(policy, &refs, zone)
        .into_iter()
        .filter(|(_, v)| v.keep)
        .map(|(e, _)| e.id.clone())
        .collect()
}

/// The model the property test compares with: for each period rule, the distinct periods
/// that have snapshots, newest first, the first N of them, and the newest snapshot of each.
fn reference_model(
    policy: &RetentionPolicy,
    entries: &[SnapshotEntry],
    zone: &FixedOffset,
) -> BTreeSet<String> {
    let mut order: Vec<&SnapshotEntry> = entries.iter().collect();
    order.sort_by(|a, b| b.snapshot.time.cmp(&a.snapshot.time).then(a.id.cmp(&b.id)));
    let limit = |c: Count| match c {
        Count::None => 0,
        Count::Some(n) => n as usize,
        Count::All => usize::MAX,
    };
    let mut kept = BTreeSet::new();
    for e in order.iter().take(limit(policy.last)) {
        kept.insert(e.id.clone());
    }
    for period in Period::ALL {
        let mut seen: Vec<i64> = Vec::new();
        for e in &order {
            let b = period.bucket(&e.snapshot.time.with_timezone(zone));
            if !seen.contains(&b) {
                seen.push(b);
                if seen.len() <= limit(policy.count(period)) {
                    kept.insert(e.id.clone());
                }
            }
        }
    }
    if let (Some(span), Some(newest)) = (policy.within, order.first()) {
        // calendar months as the zone's calendar has them
        let newest = newest.snapshot.time.with_timezone(zone);
        let hours = i64::from(span.hours) + 24 * i64::from(span.days);
        let from = newest
            .checked_sub_months(Months::new(span.months))
            .map(|t| t - TimeDelta::hours(hours));
        for e in &order {
            if from.map_or(true, |from| e.snapshot.time > from) {
                kept.insert(e.id.clone());
            }
        }
    }
    for e in &order {
        if policy.tags.iter().any(|t| e.snapshot.tags.contains(t)) {
            kept.insert(e.id.clone());
        }
    }
    kept
}

fn count() -> impl Strategy<Value = Count> {
    prop_oneof![
        3 => Just(Count::None),
        6 => (0u32..6).prop_map(Count::Some),
        1 => Just(Count::All),
    ]
}

prop_compose! {
    fn policy()(last in count(), hourly in count(), daily in count(), weekly in count(),
                monthly in count(), yearly in count(),
                within in proptest::option::of((0u32..30, 0u32..40, 0u32..48)),
                tag in proptest::option::of(Just("keep".to_string())))
        -> RetentionPolicy {
        RetentionPolicy {
            last, hourly, daily, weekly, monthly, yearly,
            within: within.map(|(months, days, hours)| Span { months, days, hours }),
            tags: tag.into_iter().collect(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random calendars (backups made with `backup --time`: bursts minutes apart, gaps of
    /// weeks, over several years), random policies and zones: `apply` keeps exactly what the
    /// model keeps.
    #[test]
    fn apply_keeps_what_the_reference_model_keeps(
        steps in proptest::collection::vec((0u32..4, 1i64..60, any::<bool>()), 0..60),
        policy in policy(),
        zone_minutes in -14 * 60i32..=14 * 60,
    ) {
        let zone = FixedOffset::east_opt(zone_minutes * 60).expect("offset within a day");
        let mut t = utc("2021-12-31T22:00:00Z");
        let mut entries = Vec::new();
        for (i, (scale, n, tagged)) in steps.into_iter().enumerate() {
            // minutes, hours, days or weeks since the previous backup
            let minutes = [1, 60, 24 * 60, 7 * 24 * 60][scale as usize] * n;
            t += TimeDelta::minutes(minutes);
            entries.push(entry(i, t, if tagged { &["keep"] } else { &[] }));
        }
        let got: BTreeSet<String> = kept_ids(&policy, &entries, &zone).into_iter().collect();
        prop_assert_eq!(got, reference_model(&policy, &entries, &zone));
    }
}

#[test]
fn daily_counts_days_that_have_snapshots_and_keeps_the_newest_of_each() {
    let entries = [
        entry(1, utc("2026-11-01T08:00:00Z"), &[]),
        entry(2, utc("2026-11-01T20:00:00Z"), &[]),
        // a gap of four days: daily still finds three days with snapshots
        entry(3, utc("2026-11-06T08:00:00Z"), &[]),
        entry(4, utc("2026-11-07T08:00:00Z"), &[]),
        entry(5, utc("2026-11-07T09:00:00Z"), &[]),
    ];
    let policy = RetentionPolicy {
        daily: Count::Some(3),
        ..Default::default()
    };
    let refs: Vec<&SnapshotEntry> = entries.iter().collect();
    let verdicts = apply(&policy, &refs, &Utc);
    let kept: Vec<(&str, &[String])> = verdicts
        .iter()
        .filter(|(_, v)| v.keep)
        .map(|(e, v)| (&e.id[62..], v.reasons.as_slice()))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("05", &["daily snapshot 1 of 3".to_string()][..]),
            ("03", &["daily snapshot 2 of 3".to_string()][..]),
            ("02", &["daily snapshot 3 of 3".to_string()][..]),
        ]
    );
    assert_eq!(verdicts.len(), 5, "removed snapshots are listed too");
}

#[test]
fn periods_follow_the_time_zone() {
    // 23:30 and 00:30 UTC are one day in UTC-2 and two days in UTC.
    let entries = vec![
        entry(1, utc("2026-11-01T23:30:00Z"), &[]),
        entry(2, utc("2026-11-02T00:30:00Z"), &[]),
    ];
    let policy = RetentionPolicy {
        daily: Count::All,
        ..Default::default()
    };
    assert_eq!(kept_ids(&policy, &entries, &Utc).len(), 2);
    let west = FixedOffset::west_opt(2 * 3600).expect("offset");
    assert_eq!(kept_ids(&policy, &entries, &west).len(), 1);
}

#[test]
fn weeks_are_iso_weeks() {
    // Sunday 2026-01-04 closes ISO week 2026-W01, which began on Monday 2025-12-29.
    let entries = vec![
        entry(1, utc("2025-12-29T12:00:00Z"), &[]),
        entry(2, utc("2026-01-04T12:00:00Z"), &[]),
        entry(3, utc("2026-01-05T12:00:00Z"), &[]),
    ];
    let policy = RetentionPolicy {
        weekly: Count::Some(5),
        ..Default::default()
    };
    let kept = kept_ids(&policy, &entries, &Utc);
    assert_eq!(kept.len(), 2);
    assert!(
        kept[1].ends_with("02"),
        "the newest of week 1 is kept: {kept:?}"
    );
}

#[test]
fn within_is_measured_from_the_newest_snapshot_not_from_now() {
    let entries = vec![
        entry(1, utc("2020-01-01T00:00:00Z"), &[]),
        entry(2, utc("2020-01-09T00:00:00Z"), &[]),
        entry(3, utc("2020-01-10T00:00:00Z"), &[]),
    ];
    let policy = RetentionPolicy {
        within: Some("1w2d".parse().expect("span")),
        ..Default::default()
    };
    // exactly nine days before the newest is not within
    assert_eq!(kept_ids(&policy, &entries, &Utc).len(), 2);
}

#[test]
fn tags_and_last_give_their_reasons() {
    let entries = [
        entry(1, utc("2026-01-01T00:00:00Z"), &["monthly"]),
        entry(2, utc("2026-02-01T00:00:00Z"), &[]),
    ];
    let policy = RetentionPolicy {
        last: Count::Some(1),
        tags: vec!["monthly".into()],
        ..Default::default()
    };
    let refs: Vec<&SnapshotEntry> = entries.iter().collect();
    let reasons: Vec<Vec<String>> = apply(&policy, &refs, &Utc)
        .into_iter()
        .map(|(_, v)| v.reasons)
        .collect();
    assert_eq!(
        reasons,
        vec![
            vec!["last snapshot 1 of 1".to_string()],
            vec!["tag monthly".to_string()]
        ]
    );
}

#[test]
fn an_empty_policy_is_recognised() {
    assert!(RetentionPolicy::default().is_empty());
    let zero = RetentionPolicy {
        daily: Count::Some(0),
        ..Default::default()
    };
    assert!(zero.is_empty(), "keeping zero of anything is no rule");
    let one = RetentionPolicy {
        yearly: Count::Some(1),
        ..Default::default()
    };
    assert!(!one.is_empty());
}

#[test]
fn spans_counts_and_groupings_parse_or_say_why_not() {
    let span: Span = "1y6m2w3d12h".parse().expect("span");
    assert_eq!(
        span,
        Span {
            months: 18,
            days: 17,
            hours: 12
        }
    );
    assert_eq!(span.to_string(), "1y6m17d12h");
    for bad in ["", "3", "1x", "d", "1.5d", "99999999999y"] {
        let err = bad.parse::<Span>().expect_err(bad).to_string();
        assert!(err.contains("not a duration"), "{bad}: {err}");
    }
    assert_eq!("-1".parse::<Count>().expect("count"), Count::All);
    assert_eq!("7".parse::<Count>().expect("count"), Count::Some(7));
    assert!("-2".parse::<Count>().is_err());
    let by: GroupBy = "host,tags".parse().expect("group by");
    assert_eq!(
        by,
        GroupBy {
            host: true,
            paths: false,
            tags: true
        }
    );
    assert!("hosts".parse::<GroupBy>().is_err());
    let none: GroupBy = "".parse().expect("one group");
    assert_eq!(
        none,
        GroupBy {
            host: false,
            paths: false,
            tags: false
        }
    );
}

#[test]
fn groups_split_by_host_and_paths_and_ignore_path_order() {
    let mut a = entry(1, utc("2026-01-01T00:00:00Z"), &[]);
    a.snapshot.paths = vec!["/b".into(), "/a".into()];
    let mut b = entry(2, utc("2026-01-02T00:00:00Z"), &[]);
    b.snapshot.paths = vec!["/a".into(), "/b".into()];
    let mut c = entry(3, utc("2026-01-03T00:00:00Z"), &[]);
    c.snapshot.hostname = "other".into();
    let all = vec![a, b, c];
    let groups = group(&all, GroupBy::default());
    let mut sizes: Vec<usize> = groups.values().map(Vec::len).collect();
    sizes.sort();
    assert_eq!(
        sizes,
        vec![1, 2],
        "host splits, path order does not: {:?}",
        groups.keys()
    );
    let one = group(&all, "".parse().expect("one group"));
    assert_eq!(one.len(), 1);
    assert_eq!(
        one.keys().next().map(ToString::to_string).as_deref(),
        Some("all snapshots")
    );
}
