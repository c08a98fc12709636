use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, FixedOffset, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::snapshot::Snapshot;

fn entry(id: usize, time: DateTime<FixedOffset>, tags: &[&str]) -> SnapshotEntry {
    SnapshotEntry {
        id: format!("{id:064x}"),
        snapshot: Snapshot {
            hostname: "host".into(),
            username: "user".into(),
            paths: vec!["/data".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Snapshot::example(time)
        },
    }
}

fn utc(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).expect("test time")
}

/// A fixed "now" after every snapshot of the hand-written cases.
fn later() -> DateTime<Utc> {
    utc("2030-01-01T00:00:00Z").with_timezone(&Utc)
}

fn kept_ids(
    policy: &RetentionPolicy,
    entries: &[SnapshotEntry],
    zone: &impl TimeZone,
) -> Vec<String> {
    let refs: Vec<&SnapshotEntry> = entries.iter().collect();
    apply(policy, &refs, zone, later())
        .into_iter()
        .filter(|(_, v)| v.keep)
        .map(|(e, _)| e.id.clone())
        .collect()
}

/// The model the property test compares with, written apart from `apply`: periods are keys
/// formatted from the local time; a period rule keeps the newest snapshot of each of the first
/// N distinct periods, and the oldest snapshot when fewer than N periods precede it; the span
/// is subtracted by hand on the local calendar.
fn reference_model<Tz: TimeZone>(
    policy: &RetentionPolicy,
    entries: &[SnapshotEntry],
    zone: &Tz,
    now: DateTime<Utc>,
) -> BTreeSet<String>
where
    Tz::Offset: std::fmt::Display,
{
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
    let formats = [
        (Period::Hour, "%Y-%m-%d %H"),
        (Period::Day, "%Y-%m-%d"),
        (Period::Week, "%G-W%V"),
        (Period::Month, "%Y-%m"),
        (Period::Year, "%Y"),
    ];
    for (period, format) in formats {
        let n = limit(policy.count(period));
        let key = |e: &SnapshotEntry| {
            e.snapshot
                .time
                .with_timezone(zone)
                .format(format)
                .to_string()
        };
        let mut seen: Vec<String> = Vec::new();
        for e in &order {
            let k = key(e);
            if !seen.contains(&k) {
                seen.push(k);
                if seen.len() <= n {
                    kept.insert(e.id.clone());
                }
            }
        }
        if let Some((oldest, before)) = order.split_last() {
            let mut periods: Vec<String> = before.iter().map(|e| key(e)).collect();
            periods.sort();
            periods.dedup();
            if n > 0 && periods.len() < n {
                kept.insert(oldest.id.clone());
            }
        }
    }
    let span = policy.within.unwrap_or_default();
    if span != Span::default() {
        let newest = order.iter().map(|e| e.snapshot.time).find(|t| *t < now);
        let from = newest.and_then(|t| calendar_back(&t.with_timezone(zone), span));
        for e in &order {
            if from.as_ref().map_or(true, |from| e.snapshot.time > *from) {
                kept.insert(e.id.clone());
            }
        }
    }
    for e in &order {
        let has = |wanted: &str| {
            let tags: Vec<&str> = wanted.split(',').filter(|t| !t.is_empty()).collect();
            !tags.is_empty() && tags.iter().all(|t| e.snapshot.tags.iter().any(|h| h == t))
        };
        if policy.tags.iter().any(|t| has(t)) {
            kept.insert(e.id.clone());
        }
    }
    kept
}

/// Months back with the day clamped to the month's length, days back, on the wall clock;
/// then hours of elapsed time.
fn calendar_back<Tz: TimeZone>(t: &DateTime<Tz>, span: Span) -> Option<DateTime<Tz>> {
    let local = t.naive_local();
    let months = local.year() * 12 + local.month0() as i32 - span.months as i32;
    let (year, month0) = (months.div_euclid(12), months.rem_euclid(12) as u32);
    let mut day = local.day();
    let date = loop {
        if let Some(d) = chrono::NaiveDate::from_ymd_opt(year, month0 + 1, day) {
            break d;
        }
        day -= 1;
    };
    let date = date - chrono::Days::new(span.days.into());
    let wall = date.and_time(local.time());
    let zone = t.timezone();
    let at = zone.from_local_datetime(&wall).earliest().or_else(|| {
        zone.from_local_datetime(&(wall + TimeDelta::hours(1)))
            .earliest()
    })?;
    Some(at - TimeDelta::hours(span.hours.into()))
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
                tags in proptest::sample::select(vec!["", "keep", "keep,extra", "extra"]))
        -> RetentionPolicy {
        RetentionPolicy {
            last, hourly, daily, weekly, monthly, yearly,
            within: within.map(|(months, days, hours)| Span { months, days, hours }),
            tags: if tags.is_empty() { Vec::new() } else { vec![tags.to_string()] },
        }
    }
}

/// Random calendars (backups made with `backup --time`: bursts minutes apart, gaps of weeks,
/// over years; some tagged) and a "now" that may leave some of them in the future.
fn calendar(steps: &[(u32, i64, u8)]) -> Vec<SnapshotEntry> {
    let mut t = utc("2021-03-27T22:00:00Z"); // near a daylight-saving change
    let tag_sets: [&[&str]; 4] = [&[], &["keep"], &["keep", "extra"], &["extra"]];
    steps
        .iter()
        .enumerate()
        .map(|(i, (scale, n, tags))| {
            // minutes, hours, days or weeks since the previous backup
            t += TimeDelta::minutes([1, 60, 24 * 60, 7 * 24 * 60][*scale as usize] * n);
            entry(i, t, tag_sets[*tags as usize % 4])
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `apply` keeps exactly what the reference model keeps, in fixed offsets and in named
    /// zones with daylight-saving changes.
    #[test]
    fn apply_keeps_what_the_reference_model_keeps(
        steps in proptest::collection::vec((0u32..4, 1i64..60, 0u8..4), 0..60),
        policy in policy(),
        zone_choice in 0usize..4,
        zone_minutes in -14 * 60i32..=14 * 60,
        now_days in 0i64..4000,
    ) {
        let entries = calendar(&steps);
        let now = utc("2021-03-27T22:00:00Z").with_timezone(&Utc) + TimeDelta::days(now_days);
        let refs: Vec<&SnapshotEntry> = entries.iter().collect();
        let got = |kept: Vec<(&SnapshotEntry, Verdict)>| -> BTreeSet<String> {
            kept.into_iter().filter(|(_, v)| v.keep).map(|(e, _)| e.id.clone()).collect()
        };
        match zone_choice {
            0 => {
                let zone = FixedOffset::east_opt(zone_minutes * 60).expect("offset within a day");
                prop_assert_eq!(got(apply(&policy, &refs, &zone, now)), reference_model(&policy, &entries, &zone, now));
            }
            1 => {
                let zone = chrono_tz::Europe::Berlin;
                prop_assert_eq!(got(apply(&policy, &refs, &zone, now)), reference_model(&policy, &entries, &zone, now));
            }
            2 => {
                let zone = chrono_tz::America::New_York;
                prop_assert_eq!(got(apply(&policy, &refs, &zone, now)), reference_model(&policy, &entries, &zone, now));
            }
            _ => {
                // half-hour daylight-saving shifts
                let zone = chrono_tz::Australia::Lord_Howe;
                prop_assert_eq!(got(apply(&policy, &refs, &zone, now)), reference_model(&policy, &entries, &zone, now));
            }
        }
    }
}

#[test]
fn a_zero_span_is_no_rule_and_removes_nothing() {
    let zero = RetentionPolicy {
        within: Some("0d".parse().expect("span")),
        ..Default::default()
    };
    assert!(zero.is_empty(), "forget refuses an empty policy");
    let entries = [entry(1, utc("2026-01-01T00:00:00Z"), &[])];
    let with_last = RetentionPolicy {
        last: Count::Some(1),
        within: Some(Span::default()),
        ..Default::default()
    };
    assert_eq!(kept_ids(&with_last, &entries, &Utc).len(), 1);
}

#[test]
fn a_snapshot_from_the_future_does_not_shorten_keep_within() {
    let entries = [
        entry(1, utc("2026-01-01T00:00:00Z"), &[]),
        entry(2, utc("2026-01-05T00:00:00Z"), &[]),
        entry(3, utc("2036-01-01T00:00:00Z"), &[]), // a wrong clock
    ];
    let policy = RetentionPolicy {
        within: Some("7d".parse().expect("span")),
        ..Default::default()
    };
    let refs: Vec<&SnapshotEntry> = entries.iter().collect();
    let now = utc("2026-01-06T00:00:00Z").with_timezone(&Utc);
    let kept = apply(&policy, &refs, &Utc, now)
        .into_iter()
        .filter(|(_, v)| v.keep)
        .count();
    assert_eq!(
        kept, 3,
        "measured from the 2026-01-05 snapshot, all are within"
    );
}

#[test]
fn keep_tag_with_a_comma_asks_for_every_tag() {
    let entries = [
        entry(1, utc("2026-01-01T00:00:00Z"), &["a", "b"]),
        entry(2, utc("2026-01-02T00:00:00Z"), &["a"]),
        entry(3, utc("2026-01-03T00:00:00Z"), &["b"]),
    ];
    let policy = RetentionPolicy {
        tags: vec!["a,b".into()],
        ..Default::default()
    };
    assert_eq!(
        kept_ids(&policy, &entries, &Utc),
        vec![format!("{:064x}", 1)]
    );
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
    let verdicts = apply(&policy, &refs, &Utc, later());
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
    // 23:30 and 00:30 UTC are one day in UTC-2 and two days in UTC (the oldest snapshot, on a
    // day of its own, is kept either way).
    let entries = [
        entry(1, utc("2026-10-30T12:00:00Z"), &[]),
        entry(2, utc("2026-11-01T23:30:00Z"), &[]),
        entry(3, utc("2026-11-02T00:30:00Z"), &[]),
    ];
    let policy = RetentionPolicy {
        daily: Count::All,
        ..Default::default()
    };
    assert_eq!(kept_ids(&policy, &entries, &Utc).len(), 3);
    let west = FixedOffset::west_opt(2 * 3600).expect("offset");
    let kept = kept_ids(&policy, &entries, &west);
    assert_eq!(kept.len(), 2);
    assert!(!kept.contains(&format!("{:064x}", 2)), "{kept:?}");
}

#[test]
fn weeks_are_iso_weeks_and_the_oldest_is_kept_while_periods_are_left() {
    // Sunday 2026-01-04 closes ISO week 2026-W01, which began on Monday 2025-12-29.
    let entries = [
        entry(1, utc("2025-12-29T12:00:00Z"), &[]),
        entry(2, utc("2026-01-04T12:00:00Z"), &[]),
        entry(3, utc("2026-01-05T12:00:00Z"), &[]),
    ];
    let refs: Vec<&SnapshotEntry> = entries.iter().collect();
    let reasons = |weekly| -> Vec<Vec<String>> {
        let policy = RetentionPolicy {
            weekly,
            ..Default::default()
        };
        apply(&policy, &refs, &Utc, later())
            .into_iter()
            .map(|(_, v)| v.reasons)
            .collect()
    };
    assert_eq!(
        reasons(Count::Some(5)),
        vec![
            vec!["weekly snapshot 1 of 5".to_string()],
            vec!["weekly snapshot 2 of 5".to_string()],
            // in week 1 too, but the oldest, and the rule has weeks left (as restic)
            vec!["weekly snapshot 3 of 5 (the oldest)".to_string()],
        ]
    );
    let used_up = reasons(Count::Some(2));
    assert!(
        used_up[2].is_empty(),
        "no weeks left for the oldest: {used_up:?}"
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
    let reasons: Vec<Vec<String>> = apply(&policy, &refs, &Utc, later())
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
