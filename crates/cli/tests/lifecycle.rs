//! Repository lifecycle commands: forget (and, as they land, prune, check, repair, copy).

mod common;

use common::{open_repo, Env};

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
    // The same data blobs; the second snapshot's trees may differ (directory times).
    let one_raw = one["raw_size"].as_u64().unwrap();
    assert!(one_raw >= total && one_raw <= raw, "{one} against {both}");

    let human = env.lb(&["stats", "latest", "--mode", "raw-data"]).ok();
    assert!(human.stdout.contains("distinct blobs"), "{}", human.stdout);
    assert!(!human.stdout.contains("restore size"), "{}", human.stdout);
    let missing = env.lb(&["stats", "deadbeef"]);
    assert_eq!(missing.code, 1);
}

#[test]
fn unlock_removes_the_locks_of_dead_processes_and_remove_all_every_lock() {
    let env = Env::new();
    let locks = || env.locks();
    let mut holder = env.hold_a_backup_lock();
    let live = env.lb(&["unlock"]).ok();
    assert!(live.stdout.contains("0 lock(s) removed"), "{}", live.stdout);
    assert_eq!(locks(), 1, "a live lock stays");

    holder.kill().unwrap(); // SIGKILL: the lock stays behind, its process gone
    holder.wait().unwrap();
    assert_eq!(locks(), 1);
    let stale = env.lb(&["unlock", "--json"]).ok().json();
    assert_eq!(stale["removed"].as_array().unwrap().len(), 1, "{stale}");
    assert!(
        stale["removed"][0]
            .as_str()
            .unwrap()
            .contains("shared lock for backup"),
        "{stale}"
    );
    assert_eq!(locks(), 0);

    let mut again = env.hold_a_backup_lock();
    env.lb(&["unlock", "--remove-all"]).ok();
    assert_eq!(locks(), 0, "--remove-all removes live locks too");
    drop(again.stdin.take());
    again.wait().unwrap();

    // A damaged lock blocks with a message that says how to remove it.
    let damaged = env.repo.join("locks").join("ab".repeat(16));
    std::fs::write(&damaged, b"garbage").unwrap();
    let blocked = env.lb(&["forget", "--keep-last", "1"]);
    assert_eq!(blocked.code, 1, "{}", blocked.stderr);
    assert!(
        blocked.stderr.contains("unlock --remove-all"),
        "{}",
        blocked.stderr
    );
    let plain = env.lb(&["unlock"]);
    assert_eq!(plain.code, 1, "a damaged lock is not taken for a stale one");
    let all = env.lb(&["unlock", "--remove-all"]).ok();
    assert!(
        all.stdout.contains("removed a damaged lock"),
        "{}",
        all.stdout
    );
    assert!(!damaged.exists());
}

fn try_prune_plan(env: &Env) -> lifeboat_core::Result<lifeboat_core::ops::prune::PrunePlan> {
    let options = lifeboat_core::ops::prune::PruneOptions {
        dry_run: true,
        ..Default::default()
    };
    lifeboat_core::ops::prune::prune(&open_repo(env), &options).map(|report| report.plan)
}

fn prune_plan(env: &Env) -> lifeboat_core::ops::prune::PrunePlan {
    try_prune_plan(env).unwrap()
}

#[test]
fn prune_plan_deletes_the_packs_only_forgotten_snapshots_used() {
    use lifeboat_core::ops::prune::PackFate;
    let env = Env::new();
    let old = env.path("old");
    let new = env.path("new");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::create_dir_all(&new).unwrap();
    // 40 MB of random data only the first snapshot holds: two full 16 MiB packs of its own
    std::fs::write(old.join("big.bin"), common::random_bytes(40_000_000, 1)).unwrap();
    std::fs::write(new.join("kept.bin"), common::random_bytes(3_000_000, 2)).unwrap();
    let first = env.backup(&old, &[]);
    env.backup(&new, &[]);

    let before = prune_plan(&env);
    assert!(
        before.packs.iter().all(|p| p.fate == PackFate::Keep),
        "every blob is used: {before:?}"
    );
    assert_eq!(before.reclaimed(), 0);
    assert_eq!(before.missing_blobs, 0);

    env.lb(&["forget", &first[..8]]).ok();
    let plan = prune_plan(&env);
    let deleted: Vec<_> = plan
        .packs
        .iter()
        .filter(|p| p.fate == PackFate::Delete)
        .collect();
    assert!(deleted.len() >= 2, "the old file's full packs go: {plan:?}");
    assert!(deleted
        .iter()
        .all(|p| p.used_blobs == 0 && p.unused_blobs > 0));
    for p in &plan.packs {
        if p.fate == PackFate::Keep {
            assert_eq!(
                p.unused_blobs, 0,
                "a kept pack here has nothing unused: {p:?}"
            );
        }
        if p.fate == PackFate::Repack {
            assert!(p.used_blobs > 0 && p.unused_blobs > 0, "{p:?}");
        }
    }
    let reclaimed = plan.reclaimed();
    assert!(
        (35_000_000..42_000_000).contains(&reclaimed),
        "about the old file's 40 MB: {reclaimed}"
    );
    assert!(plan.unindexed.is_empty());

    // A pack no index lists (as an interrupted backup leaves one) is reported apart.
    let some_pack = &plan.packs[0].name;
    let from = env.repo.join("data").join(&some_pack[..2]).join(some_pack);
    let stray = env.repo.join("data").join("ee").join("e".repeat(64));
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::copy(from, &stray).unwrap();
    let with_stray = prune_plan(&env);
    assert_eq!(with_stray.unindexed.len(), 1);
    assert_eq!(with_stray.unindexed[0].0, "e".repeat(64));
}

#[test]
fn prune_plan_repacks_a_pack_whose_unused_share_is_too_large() {
    use lifeboat_core::ops::prune::PackFate;
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("stays.bin"), common::random_bytes(3_000_000, 3)).unwrap();
    std::fs::write(src.join("goes.bin"), common::random_bytes(3_000_000, 4)).unwrap();
    let first = env.backup(&src, &[]);
    std::fs::remove_file(src.join("goes.bin")).unwrap();
    env.backup(&src, &[]);
    env.lb(&["forget", &first[..8]]).ok();

    let plan = prune_plan(&env);
    let repack: Vec<_> = plan
        .packs
        .iter()
        .filter(|p| p.fate == PackFate::Repack)
        .collect();
    assert_eq!(repack.len(), 1, "the data pack holds both files: {plan:?}");
    let pack = repack[0];
    let unused = pack.size - pack.used;
    assert!(
        (2_900_000..3_200_000).contains(&unused),
        "about the deleted file's 3 MB is unused: {pack:?}"
    );
    assert_eq!(plan.rewritten(), pack.used);
    assert!(plan.reclaimed() >= unused);

    // With a pack the index lists gone, no plan: a copy elsewhere could look unused.
    std::fs::remove_file(env.repo.join("data").join(&pack.name[..2]).join(&pack.name)).unwrap();
    let err = try_prune_plan(&env)
        .expect_err("a missing pack stops the plan")
        .to_string();
    assert!(err.contains("missing"), "{err}");
}

/// Several backups into one repository at once all succeed, every snapshot restores, and
/// what they stored is deduplicated against by the next backup.
#[test]
fn several_backups_at_once_all_succeed_and_later_ones_reuse_their_data() {
    let env = Env::new();
    let shared = common::random_bytes(6_000_000, 21);
    let sources: Vec<std::path::PathBuf> = (0..3)
        .map(|i| {
            let src = env.path(&format!("host{i}"));
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(src.join("shared.bin"), &shared).unwrap();
            std::fs::write(src.join("own.bin"), common::random_bytes(2_000_000, 30 + i)).unwrap();
            src
        })
        .collect();
    let children: Vec<std::process::Child> = sources
        .iter()
        .map(|src| {
            env.command()
                .args(["backup", "--json"])
                .arg(src)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.lb(&["check", "--read-data"]).ok();
    for src in &sources {
        let target = env.path(&format!(
            "restore-{}",
            src.file_name().unwrap().to_string_lossy()
        ));
        env.restore("latest", &target, &["--path", src.to_str().unwrap()])
            .ok();
        assert_eq!(
            common::manifest(&common::restored(&target, src)),
            common::manifest(src)
        );
    }
    // All three are committed now: a fourth host with the same shared file stores none of it.
    let fourth = env.path("host3");
    std::fs::create_dir_all(&fourth).unwrap();
    std::fs::write(fourth.join("shared.bin"), &shared).unwrap();
    let run = env
        .command()
        .args(["backup", "--json"])
        .arg(&fourth)
        .output()
        .unwrap();
    let summary = common::Run::from_output(run).ok().json();
    assert!(
        summary["bytes_added"].as_u64().unwrap() < 100_000,
        "the shared file is found in what the others committed: {summary}"
    );
}
