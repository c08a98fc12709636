//! Repository lifecycle commands: forget (and, as they land, prune, check, repair, copy).

mod common;

use common::Env;

/// Backups of one small tree at the given times (RFC 3339), returning their ids in order.
fn backups_at(env: &Env, times: &[&str], extra: &[&str]) -> Vec<String> {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    times
        .iter()
        .enumerate()
        .map(|(i, time)| {
            std::fs::write(src.join("file"), format!("version {i}")).unwrap();
            let mut args = vec!["--time", time];
            args.extend_from_slice(extra);
            env.backup(&src, &args)
        })
        .collect()
}

fn snapshot_ids(env: &Env) -> Vec<String> {
    let list = env.lb(&["snapshots", "--json"]).ok().json();
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn forget_keeps_what_the_policy_names_and_dry_run_changes_nothing() {
    let env = Env::new();
    let ids = backups_at(
        &env,
        &[
            "2026-10-01T10:00:00Z",
            "2026-10-20T10:00:00Z",
            "2026-11-01T09:00:00Z",
            "2026-11-01T18:00:00Z",
            "2026-11-02T09:00:00Z",
        ],
        &[],
    );
    let args = [
        "forget",
        "--keep-daily",
        "2",
        "--keep-monthly",
        "2",
        "--tz",
        "UTC",
    ];
    let mut dry = args.to_vec();
    dry.extend(["--dry-run", "--json"]);
    let plan = env.lb(&dry).ok().json();
    let group = &plan.as_array().unwrap()[0];
    let removed: Vec<&str> = group["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    // days: 11-02, 11-01 (18:00); months: November (11-02), October (10-20)
    assert_eq!(removed.len(), 2, "{plan}");
    assert!(removed.contains(&ids[0].as_str()) && removed.contains(&ids[2].as_str()));
    let reasons = group["reasons"].as_array().unwrap();
    let newest = reasons.iter().find(|r| r["id"] == ids[4].as_str()).unwrap();
    assert_eq!(
        newest["matches"],
        serde_json::json!(["daily snapshot 1 of 2", "monthly snapshot 1 of 2"])
    );
    assert_eq!(snapshot_ids(&env).len(), 5, "a dry run removes nothing");

    let out = env.lb(&args).ok();
    assert!(
        out.stdout.contains("removed 2 snapshot(s)"),
        "{}",
        out.stdout
    );
    assert_eq!(
        snapshot_ids(&env),
        sorted(vec![ids[1].clone(), ids[3].clone(), ids[4].clone()])
    );
    // What is left still restores.
    let target = env.path("restored");
    env.restore(&ids[1][..8], &target, &[]).ok();
}

#[test]
fn forget_applies_the_policy_per_host_unless_grouped_otherwise() {
    let env = Env::new();
    let a = backups_at(
        &env,
        &["2026-11-01T10:00:00Z", "2026-11-02T10:00:00Z"],
        &["--host", "alpha"],
    );
    let b = backups_at(&env, &["2026-11-03T10:00:00Z"], &["--host", "beta"]);
    let plan = env
        .lb(&["forget", "--keep-last", "1", "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(
        plan.as_array().unwrap().len(),
        2,
        "one group per host: {plan}"
    );
    let one_group = env
        .lb(&[
            "forget",
            "--keep-last",
            "1",
            "--group-by",
            "",
            "--dry-run",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(one_group.as_array().unwrap().len(), 1);
    assert_eq!(one_group[0]["remove"].as_array().unwrap().len(), 2);

    env.lb(&["forget", "--keep-last", "1", "--host", "alpha"])
        .ok();
    assert_eq!(snapshot_ids(&env), sorted(vec![a[1].clone(), b[0].clone()]));
}

#[test]
fn forget_by_id_and_its_refusals() {
    let env = Env::new();
    let ids = backups_at(&env, &["2026-11-01T10:00:00Z", "2026-11-02T10:00:00Z"], &[]);
    let none = env.lb(&["forget"]);
    assert_eq!(none.code, 1, "{}", none.stderr);
    assert!(none.stderr.contains("no retention rule"), "{}", none.stderr);
    let zero = env.lb(&["forget", "--keep-daily", "0"]);
    assert_eq!(zero.code, 1, "keeping zero is no rule either");
    let both = env.lb(&["forget", &ids[0], "--keep-last", "1"]);
    assert_eq!(both.code, 1);
    assert!(both.stderr.contains("not both"), "{}", both.stderr);
    let bad_tz = env.lb(&["forget", "--keep-last", "1", "--tz", "Mars/Olympus"]);
    assert_eq!(bad_tz.code, 1);
    assert!(
        bad_tz.stderr.contains("not a time zone"),
        "{}",
        bad_tz.stderr
    );
    let bad_span = env.lb(&["forget", "--keep-within", "3 days"]);
    assert_ne!(bad_span.code, 0);
    assert!(
        bad_span.stderr.contains("not a duration"),
        "{}",
        bad_span.stderr
    );
    let unknown = env.lb(&["forget", "deadbeef"]);
    assert_eq!(unknown.code, 1);
    assert_eq!(snapshot_ids(&env).len(), 2, "refusals remove nothing");

    env.lb(&["forget", &ids[0][..8]]).ok();
    assert_eq!(snapshot_ids(&env), vec![ids[1].clone()]);
}

#[test]
fn forget_runs_beside_a_backup_but_not_beside_another_forget() {
    use lifeboat_core::lock::{acquire, LockKind};
    let env = Env::new();
    backups_at(&env, &["2026-11-01T10:00:00Z", "2026-11-02T10:00:00Z"], &[]);
    let storage = std::sync::Arc::new(lifeboat_core::storage::LocalStorage::new(&env.repo));
    let repo =
        lifeboat_core::Repository::open(storage.clone(), common::PASSWORD.as_bytes()).unwrap();
    let other_forget = acquire(
        storage.clone(),
        repo.keys().seal,
        LockKind::Maintenance,
        "prune",
    )
    .unwrap();
    let blocked = env.lb(&["forget", "--keep-last", "1"]);
    assert_eq!(blocked.code, 12, "{}", blocked.stderr);
    assert!(
        blocked.stderr.contains("maintenance lock for prune"),
        "{}",
        blocked.stderr
    );
    assert!(
        env.lb(&["forget", "--keep-last", "1", "--dry-run"]).code == 0,
        "a dry run takes no lock"
    );
    drop(other_forget);
    let backup = acquire(storage, repo.keys().seal, LockKind::Shared, "backup").unwrap();
    env.lb(&["forget", "--keep-last", "1"]).ok();
    drop(backup);
    assert_eq!(snapshot_ids(&env).len(), 1);
}

#[test]
fn stats_counts_restore_size_per_snapshot_and_stored_data_once() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    // 600 KB of text (compressible) and 400 KB of random bytes
    let text: String = (0..20_000)
        .map(|i| format!("line {i:05} of text\n"))
        .collect();
    std::fs::write(src.join("text.txt"), &text).unwrap();
    std::fs::write(src.join("sub/random.bin"), common::random_bytes(400_000, 7)).unwrap();
    let total = (text.len() + 400_000) as u64;
    let first = env.backup(&src, &[]);
    env.backup(&src, &["--force"]);

    let both = env.lb(&["stats", "--json"]).ok().json();
    assert_eq!(both["snapshots"], 2);
    assert_eq!(both["files"], 4, "two files in each snapshot: {both}");
    assert_eq!(both["restore_size"].as_u64(), Some(2 * total));
    let raw = both["raw_size"].as_u64().unwrap();
    assert!(
        raw >= total && raw < total + 10_000,
        "data once, plus trees: {both}"
    );
    let stored = both["stored_size"].as_u64().unwrap();
    assert!(
        stored < raw && stored > 400_000,
        "text compresses, random does not: {both}"
    );
    let dedup = both["dedup_ratio"].as_f64().unwrap();
    assert!((1.9..2.01).contains(&dedup), "{both}");
    assert_eq!(both["unindexed_blobs"], 0);

    let one = env.lb(&["stats", &first[..8], "--json"]).ok().json();
    assert_eq!(one["snapshots"], 1);
    assert_eq!(one["restore_size"].as_u64(), Some(total));
    assert_eq!(one["raw_size"], both["raw_size"], "the same blobs");

    let human = env.lb(&["stats", "latest", "--mode", "raw-data"]).ok();
    assert!(human.stdout.contains("distinct blobs"), "{}", human.stdout);
    assert!(!human.stdout.contains("restore size"), "{}", human.stdout);
    let missing = env.lb(&["stats", "deadbeef"]);
    assert_eq!(missing.code, 1);
}
