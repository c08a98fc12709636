//! `kill -9` a backup at many different moments: every snapshot written before still restores
//! in full, the stale lock a killed backup leaves does not stop later work, and a final normal
//! backup restores identical to the source.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{manifest, random_bytes, restored, Env, Manifest};
use lifeboat_core::storage::LocalStorage;
use lifeboat_core::Repository;
use rand::{Rng, SeedableRng};

const RUNS: usize = 20;
/// Runs killed after a delay spread evenly over a typical backup's duration; the others are
/// killed the moment a new pack, index file or snapshot appears in the repository, so that
/// kills also land in the short moments between those writes.
const STRATIFIED: usize = 12;
const TRIGGERS: [Trigger; 8] = [
    Trigger::Pack,
    Trigger::Index,
    Trigger::Snapshot,
    Trigger::Index,
    Trigger::Pack,
    Trigger::Index,
    Trigger::Snapshot,
    Trigger::Index,
];

#[derive(Clone, Copy, Debug)]
enum Trigger {
    Delay(Duration),
    Pack,
    Index,
    Snapshot,
}
const BIG_FILES: usize = 5;
const BIG_SIZE: usize = 6 * 1024 * 1024;
const SMALL_DIRS: usize = 8;
const SMALL_PER_DIR: usize = 50;

fn small_path(src: &Path, n: usize) -> PathBuf {
    src.join(format!("dir-{:02}", n / SMALL_PER_DIR))
        .join(format!("file-{:03}.dat", n % SMALL_PER_DIR))
}

/// About 32 MiB: five random files of 6 MiB and 400 small files of 1-12 KiB.
fn build_source(src: &Path) {
    for i in 0..BIG_FILES {
        std::fs::create_dir_all(src.join("big")).unwrap();
        std::fs::write(
            src.join(format!("big/{i}.bin")),
            random_bytes(BIG_SIZE, i as u64),
        )
        .unwrap();
    }
    for n in 0..SMALL_DIRS * SMALL_PER_DIR {
        let p = small_path(src, n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let len = 1024 + (n * 7919) % (11 * 1024);
        std::fs::write(&p, random_bytes(len, 100_000 + n as u64)).unwrap();
    }
}

/// What changes before run `i`: three large files rewritten (18 MiB of new data: more than
/// one 16 MiB pack, so one pack is uploaded mid-run), a new small file, 30 small files
/// rewritten, and now and then a small file removed.
fn change_source(src: &Path, i: usize) {
    let seed = 1_000_000 * (i as u64 + 1);
    for k in 0..3 {
        let big = src.join(format!("big/{}.bin", (i + k) % BIG_FILES));
        std::fs::write(big, random_bytes(BIG_SIZE, seed + 100 + k as u64)).unwrap();
    }
    std::fs::create_dir_all(src.join("new")).unwrap();
    std::fs::write(
        src.join(format!("new/run-{i}.bin")),
        random_bytes(64 * 1024, seed + 1),
    )
    .unwrap();
    let total = SMALL_DIRS * SMALL_PER_DIR;
    for k in 0..30 {
        let n = (i * 137 + k * 41) % total;
        let p = small_path(src, n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, random_bytes(2000 + k * 100, seed + 10 + k as u64)).unwrap();
    }
    if i % 3 == 0 {
        let _ = std::fs::remove_file(small_path(src, (i * 53) % total));
    }
}

/// Objects in a namespace of the repository (temporary files excluded).
fn count(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count(&p)
            } else if e.file_name().to_string_lossy().starts_with('.') {
                0
            } else {
                1
            }
        })
        .sum()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    packs: usize,
    index: usize,
    snapshots: usize,
    locks: usize,
}

fn counts(env: &Env) -> Counts {
    Counts {
        packs: count(&env.repo.join("data")),
        index: count(&env.repo.join("index")),
        snapshots: count(&env.repo.join("snapshots")),
        locks: count(&env.repo.join("locks")),
    }
}

fn snapshot_ids(env: &Env) -> Vec<String> {
    let run = env.lb(&["snapshots", "--json"]).ok();
    run.json()
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

/// Restores each snapshot with --verify into a fresh directory (two at a time, to use both
/// cores) and compares it with what the source held when that backup ran, where known.
#[track_caller]
fn assert_restore(
    env: &Env,
    src: &Path,
    ids: &[&String],
    expected: &HashMap<String, Manifest>,
    what: &str,
) {
    for batch in ids.chunks(2) {
        let runs: Vec<_> = batch
            .iter()
            .enumerate()
            .map(|(k, id)| {
                let target = env.path(&format!("check-{k}"));
                let _ = std::fs::remove_dir_all(&target);
                let mut cmd = env.command();
                cmd.args(["restore", id.as_str(), "--verify", "--target"])
                    .arg(&target);
                (
                    id,
                    target,
                    cmd.stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("spawn restore"),
                )
            })
            .collect();
        for (id, target, child) in runs {
            let out = child.wait_with_output().expect("restore");
            assert!(
                out.status.success(),
                "{what}: snapshot {id} no longer restores ({})\nstdout:\n{}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if let Some(expected) = expected.get(id.as_str()) {
                let got = manifest(&restored(&target, src));
                assert!(
                    &got == expected,
                    "{what}: snapshot {id} restored different content ({} files, expected {})",
                    got.len(),
                    expected.len()
                );
            }
            std::fs::remove_dir_all(&target).unwrap();
        }
    }
}

#[test]
fn kill_9_during_backup_never_damages_earlier_snapshots() {
    let started = Instant::now();
    let env = Env::new();
    let src = env.path("src");
    build_source(&src);
    let mut expected: HashMap<String, Manifest> = HashMap::new();

    // One good snapshot, then one timed incremental backup with the same kind of change as
    // every killed run, to scale the kill delays.
    let first = env.backup(&src, &[]);
    expected.insert(first.clone(), manifest(&src));
    change_source(&src, RUNS);
    let t = Instant::now();
    let second = env.backup(&src, &[]);
    let typical = t.elapsed();
    expected.insert(second, manifest(&src));
    eprintln!("crash: typical backup takes {typical:?}");

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x11feb0a7);
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    let mut stale_lock_runs = 0;
    let low = Duration::from_millis(5);
    let high = typical.mul_f64(1.3).max(Duration::from_millis(50));
    let mut killed_mid_run = 0;
    for i in 0..RUNS {
        change_source(&src, i);
        let state = manifest(&src);
        let before = counts(&env);
        let snaps_before = snapshot_ids(&env);
        let trigger = if i < STRATIFIED {
            // Stratified over [low, high], so kills land early, in the middle and at the end.
            let frac = (i as f64 + rng.gen::<f64>()) / STRATIFIED as f64;
            Trigger::Delay(if i == 0 {
                low
            } else {
                low + (high - low).mul_f64(frac)
            })
        } else {
            TRIGGERS[(i - STRATIFIED) % TRIGGERS.len()]
        };
        let spawned = Instant::now();
        let mut child = env
            .command()
            .args(["backup", "--quiet"])
            .arg(&src)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn backup");
        let pid = child.id();
        match trigger {
            Trigger::Delay(d) => std::thread::sleep(d),
            _ => {
                // Poll until the object appears (or the backup ends, or far too long passes).
                let deadline = spawned + typical * 20 + Duration::from_secs(10);
                loop {
                    let now = counts(&env);
                    let seen = match trigger {
                        Trigger::Pack => now.packs > before.packs,
                        Trigger::Index => now.index > before.index,
                        _ => now.snapshots > before.snapshots,
                    };
                    if seen
                        || Instant::now() > deadline
                        || child.try_wait().expect("try_wait").is_some()
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        let delay = spawned.elapsed();
        let finished_before_kill = match child.try_wait().expect("try_wait") {
            Some(status) => {
                assert!(
                    status.success(),
                    "run {i}: backup failed on its own: {status}"
                );
                true
            }
            None => {
                killed_mid_run += 1;
                false
            }
        };
        child.kill().expect("kill -9");
        child.wait().expect("wait");
        let after = counts(&env);
        let phase = if finished_before_kill {
            "finished before the kill"
        } else if after.snapshots > before.snapshots {
            "after the snapshot was written"
        } else if after.index > before.index {
            "after index write, before snapshot"
        } else if after.packs > before.packs {
            "mid-pack upload (packs, no index)"
        } else if after.locks > before.locks {
            "walk/chunking (lock taken, nothing written)"
        } else {
            "startup (before the lock)"
        };
        *phases.entry(phase).or_default() += 1;
        eprintln!("crash: run {i:2}: {trigger:?}, killed after {delay:>10.1?} -> {phase}");

        // A snapshot from this run, if the kill came late enough, holds this run's state.
        let snaps = snapshot_ids(&env);
        assert!(
            snaps_before.iter().all(|s| snaps.contains(s)),
            "a snapshot disappeared"
        );
        for s in &snaps {
            if !snaps_before.contains(s) {
                expected.insert(s.clone(), state.clone());
            }
        }

        // A lock left by the dead process is recognised as stale: even an exclusive lock, which
        // conflicts with every live lock, can be taken.
        if after.locks > before.locks {
            stale_lock_runs += 1;
            let repo = Repository::open(
                Arc::new(LocalStorage::new(&env.repo)),
                common::PASSWORD.as_bytes(),
            )
            .unwrap();
            let locks = lifeboat_core::lock::list_locks(repo.storage().as_ref(), &repo.keys().seal)
                .unwrap();
            let mine: Vec<_> = locks.iter().filter(|(_, r)| r.pid == pid).collect();
            assert_eq!(mine.len(), 1, "run {i}: the killed backup's lock");
            assert!(
                locks.iter().all(|(_, r)| r.is_stale()),
                "run {i}: a dead process's lock is not stale: {locks:?}"
            );
            let guard = lifeboat_core::lock::acquire(
                repo.storage().clone(),
                repo.keys().seal,
                lifeboat_core::lock::LockKind::Exclusive,
                "test",
            )
            .unwrap_or_else(|e| panic!("run {i}: a stale lock blocks an exclusive lock: {e}"));
            drop(guard);
            assert_eq!(
                counts(&env).locks,
                after.locks,
                "the test's own lock was released"
            );
        }

        // The first good snapshot and the newest one restore in full.
        let newest = snaps.last().unwrap();
        let check: Vec<&String> = if newest == &first {
            vec![&first]
        } else {
            vec![&first, newest]
        };
        assert_restore(&env, &src, &check, &expected, &format!("run {i}"));
    }
    eprintln!("crash: {RUNS} killed runs; phases: {phases:?}; {stale_lock_runs} left a stale lock");
    assert!(
        stale_lock_runs >= 1,
        "no kill left a lock behind; the stale-lock path was not exercised"
    );
    assert!(killed_mid_run >= 1, "no backup was killed while running");

    // Every snapshot, old and new, restores in full.
    let all = snapshot_ids(&env);
    assert_restore(
        &env,
        &src,
        &all.iter().collect::<Vec<_>>(),
        &expected,
        "final check",
    );

    // Stale locks are still there, and a normal backup on this host is not stopped by them.
    assert!(
        count(&env.repo.join("locks")) >= 1,
        "stale locks should still be present"
    );
    change_source(&src, RUNS + 1);
    let last = env.backup(&src, &[]);
    let target = env.path("final");
    env.restore(&last, &target, &["--verify"]).ok();
    let out = restored(&target, &src);
    let want = manifest(&src);
    assert_eq!(
        manifest(&out).keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for rel in want.keys() {
        assert!(
            std::fs::read(src.join(rel)).unwrap() == std::fs::read(out.join(rel)).unwrap(),
            "{} differs",
            rel.display()
        );
    }
    eprintln!(
        "crash: {} snapshots checked, total {:?}",
        all.len() + 1,
        started.elapsed()
    );
}

/// A backup killed after it stored some packs but before any index file named them: the next
/// backup indexes those packs (their interrupted run left a stale lock) and uploads only the
/// rest.
#[test]
fn a_backup_after_a_killed_one_reuses_the_packs_it_stored() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    const FILES: usize = 8;
    const SIZE: usize = 12 * 1024 * 1024;
    for i in 0..FILES {
        std::fs::write(
            src.join(format!("{i}.bin")),
            random_bytes(SIZE, 40 + i as u64),
        )
        .unwrap();
    }
    let mut child = env
        .command()
        .arg("backup")
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start backup");
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts(&env).packs < 2 {
        assert!(Instant::now() < deadline, "no pack appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill -9");
    child.wait().unwrap();
    let killed = counts(&env);
    assert_eq!(
        killed.index, 0,
        "killed before its first index file: {killed:?}"
    );
    assert_eq!(killed.locks, 1, "its stale lock stays: {killed:?}");

    let run = env.lb(&["backup", "--json", src.to_str().unwrap()]).ok();
    let summary = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .unwrap_or_else(|| panic!("no summary: {}", run.stdout));
    let resumed = summary["resumed_packs"].as_u64().unwrap();
    assert!(resumed >= 2, "{summary}");
    let total = (FILES * SIZE) as u64;
    let uploaded = summary["bytes_added_packed"].as_u64().unwrap();
    assert!(
        uploaded + resumed * 15 * 1024 * 1024 <= total + 1024 * 1024,
        "uploaded {uploaded} of {total} after reusing {resumed} packs"
    );
    assert_eq!(counts(&env).locks, 0, "the stale lock is gone");
    env.lb(&["check", "--read-data"]).ok();
    let target = env.path("restored");
    env.restore("latest", &target, &[]).ok();
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
}

/// The same for a copy killed halfway: the next copy reuses the packs it stored.
#[test]
fn a_copy_after_a_killed_one_reuses_the_packs_it_stored() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        let data = random_bytes(12 * 1024 * 1024, 60 + i as u64);
        std::fs::write(src.join(format!("{i}.bin")), data).unwrap();
    }
    env.backup(&src, &[]);
    let twin = env.path("twin");
    env.command_at(&twin)
        .args(["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .output()
        .unwrap();
    let twin_packs = || count(&twin.join("data"));
    let mut child = env
        .command()
        .env("LIFEBOAT_TO_PASSWORD", common::PASSWORD)
        .args(["copy", "--to"])
        .arg(&twin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start copy");
    let deadline = Instant::now() + Duration::from_secs(60);
    while twin_packs() < 2 {
        assert!(Instant::now() < deadline, "no pack appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill -9");
    child.wait().unwrap();
    assert_eq!(
        count(&twin.join("index")),
        0,
        "killed before its first index file"
    );

    let out = env
        .command()
        .env("LIFEBOAT_TO_PASSWORD", common::PASSWORD)
        .args(["copy", "--json", "--to"])
        .arg(&twin)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["resumed_packs"].as_u64().unwrap() >= 2, "{report}");
    let check = env
        .command_at(&twin)
        .args(["check", "--read-data"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let target = env.path("restored");
    let restore = env
        .command_at(&twin)
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(restore.status.success(), "{restore:?}");
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
}
