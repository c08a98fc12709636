//! Prune: what it frees, what it copies, and that it never loses a blob a snapshot uses, also
//! while backups run beside it and when it is killed at any moment.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{manifest, open_repo, random_bytes, restored, Env, Manifest};
use lifeboat_core::ops::prune::{prune, PruneOptions};
use rand::{Rng, SeedableRng};

/// Compressible bytes, unique per seed, so small files land in shared compressed frames.
fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let words = [
        "backup", "restore", "prune", "index", "pack", "frame", "blob", "tree",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(words[rng.gen_range(0..words.len())].as_bytes());
        out.extend_from_slice(format!(" {} ", rng.gen::<u16>()).as_bytes());
    }
    out.truncate(len);
    out
}

fn small_files(dir: &Path, count: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        let len = 1024 + (i * 997) % 7000;
        std::fs::write(
            dir.join(format!("f{i:04}.txt")),
            text(len, seed * 10_000 + i as u64),
        )
        .unwrap();
    }
}

fn prune_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["prune", "--json"];
    all.extend_from_slice(args);
    env.lb(&all).ok().json()
}

fn num(v: &serde_json::Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

#[track_caller]
fn assert_restores_as(env: &Env, snapshot: &str, src: &Path, want: &Manifest) {
    let target = env.path(&format!("restore-{snapshot}-{}", rand::random::<u32>()));
    env.restore(snapshot, &target, &[]).ok();
    assert_eq!(
        &manifest(&restored(&target, src)),
        want,
        "snapshot {snapshot} restores what was backed up"
    );
    std::fs::remove_dir_all(&target).unwrap();
}

fn objects(env: &Env, namespace: &str) -> Vec<PathBuf> {
    let dir = env.repo.join(namespace);
    if !dir.exists() {
        return Vec::new();
    }
    // Hidden files are temporaries of a killed write, which storage never lists.
    let mut out: Vec<PathBuf> = common::repo_files(&dir)
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn prune_frees_the_data_of_forgotten_snapshots_and_every_kept_snapshot_restores() {
    let env = Env::new();
    let src = env.path("src");
    small_files(&src.join("docs"), 40, 1);
    std::fs::write(src.join("kept.bin"), random_bytes(3_000_000, 2)).unwrap();
    std::fs::write(src.join("old.bin"), random_bytes(20_000_000, 3)).unwrap();
    env.backup(&src, &["--time", "2026-11-01T10:00:00Z"]);
    std::fs::remove_file(src.join("old.bin")).unwrap();
    let second = env.backup(&src, &["--time", "2026-11-02T10:00:00Z"]);
    let want = manifest(&src);
    let before = env.repo_size();

    let out = env
        .lb(&[
            "forget",
            "--keep-last",
            "1",
            "--prune",
            "--max-unused",
            "0%",
        ])
        .ok();
    assert!(out.stdout.contains("deleted"), "{}", out.stdout);
    let after = env.repo_size();
    assert!(
        before - after > 19_000_000,
        "the old file's 20 MB are gone: {before} -> {after}"
    );
    env.lb(&["check", "--read-data"]).ok();
    assert_restores_as(&env, &second, &src, &want);
    assert!(objects(&env, "condemned").is_empty(), "nothing waits");

    let again = prune_json(&env, &[]);
    assert_eq!(num(&again, "packs_to_delete"), 0, "{again}");
    assert_eq!(num(&again, "packs_to_repack"), 0, "{again}");
    assert_eq!(num(&again, "packs_deleted"), 0, "{again}");
    assert_eq!(env.repo_size(), after, "a second prune changes nothing");
}

#[test]
fn prune_repacks_partly_used_packs_and_shared_frames() {
    let env = Env::new();
    let src = env.path("src");
    small_files(&src.join("small"), 300, 4);
    std::fs::write(src.join("stays.bin"), random_bytes(3_000_000, 5)).unwrap();
    std::fs::write(src.join("goes.bin"), random_bytes(3_000_000, 6)).unwrap();
    let first = env.backup(&src, &[]);
    std::fs::remove_file(src.join("goes.bin")).unwrap();
    for i in (0..300).step_by(2) {
        std::fs::remove_file(src.join("small").join(format!("f{i:04}.txt"))).unwrap();
    }
    let second = env.backup(&src, &[]);
    let want = manifest(&src);
    env.lb(&["forget", &first[..8]]).ok();
    let before = env.repo_size();

    let planned = prune_json(&env, &["--dry-run"]);
    assert!(num(&planned, "packs_to_repack") >= 1, "{planned}");
    let report = prune_json(&env, &[]);
    assert!(num(&report, "packs_written") >= 1, "{report}");
    assert_eq!(
        num(&report, "packs_deleted"),
        num(&planned, "packs_to_repack") + num(&planned, "packs_to_delete"),
        "{report}"
    );
    let after = env.repo_size();
    assert!(
        before - after > 3_000_000,
        "goes.bin and half the small files are gone: {before} -> {after}"
    );
    env.lb(&["check", "--read-data"]).ok();
    assert_restores_as(&env, &second, &src, &want);
    let again = prune_json(&env, &["--dry-run"]);
    assert_eq!(
        num(&again, "packs_to_repack"),
        0,
        "repacked packs are full: {again}"
    );
}

#[test]
fn dry_run_and_max_unused_unlimited_change_nothing_they_should_not() {
    let env = Env::new();
    let src = env.path("src");
    small_files(&src, 100, 7);
    let first = env.backup(&src, &[]);
    for i in 0..50 {
        std::fs::remove_file(src.join(format!("f{i:04}.txt"))).unwrap();
    }
    env.backup(&src, &[]);
    env.lb(&["forget", &first[..8]]).ok();
    let files = |env: &Env| -> Vec<(PathBuf, u64)> {
        common::repo_files(&env.repo)
            .into_iter()
            .filter(|p| !p.starts_with(env.repo.join("locks")))
            .map(|p| {
                let len = std::fs::metadata(&p).unwrap().len();
                (p, len)
            })
            .collect()
    };
    let before = files(&env);
    let out = env.lb(&["prune", "--dry-run"]).ok();
    assert!(out.stdout.contains("dry run"), "{}", out.stdout);
    assert_eq!(files(&env), before, "a dry run writes and deletes nothing");

    let unlimited = prune_json(&env, &["--max-unused", "unlimited"]);
    assert_eq!(num(&unlimited, "packs_to_repack"), 0, "{unlimited}");
    assert_eq!(num(&unlimited, "packs_written"), 0, "{unlimited}");

    let bad = env.lb(&["prune", "--max-unused", "150%"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("between 0% and 100%"), "{}", bad.stderr);
}

#[test]
fn a_running_backup_delays_deletion_until_it_has_ended() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("old.bin"), random_bytes(10_000_000, 8)).unwrap();
    let first = env.backup(&src, &[]);
    env.lb(&["forget", &first[..8]]).ok();
    let packs_before = objects(&env, "data");

    let mut holder = env.hold_a_backup_lock();
    let report = prune_json(&env, &[]);
    assert!(num(&report, "packs_condemned") >= 1, "{report}");
    assert_eq!(num(&report, "packs_deleted"), 0, "{report}");
    assert_eq!(
        num(&report, "packs_waiting"),
        num(&report, "packs_condemned"),
        "{report}"
    );
    let waiting = report["waiting_for"].to_string();
    assert!(waiting.contains("lock for backup"), "{waiting}");
    assert_eq!(objects(&env, "data"), packs_before, "nothing deleted yet");
    let check = env.lb(&["check"]).ok();
    assert!(
        check.stdout.contains("waiting to be deleted by prune"),
        "{}",
        check.stdout
    );

    // The backup ends; the next prune carries out the deletion.
    {
        use std::io::Write;
        let mut stdin = holder.stdin.take().unwrap();
        stdin.write_all(b"written while prune ran").unwrap();
    }
    assert!(holder.wait().unwrap().success());
    let report = prune_json(&env, &[]);
    assert!(num(&report, "packs_deleted") >= 1, "{report}");
    assert_eq!(num(&report, "packs_waiting"), 0, "{report}");
    assert!(objects(&env, "condemned").is_empty());
    env.lb(&["check", "--read-data"]).ok();
    let dumped = env.lb(&["dump", "latest", "/x"]).ok();
    assert_eq!(dumped.raw_stdout, b"written while prune ran");
}

/// A backup that read the index before a prune may store a snapshot that uses blobs the prune
/// has just condemned (an unchanged file's blobs, taken from its parent snapshot). Emulated
/// here through the library: a run holds a backup lock across the prune, then writes a
/// snapshot of the forgotten tree.
#[test]
fn a_snapshot_written_meanwhile_that_uses_condemned_blobs_keeps_their_packs() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), random_bytes(5_000_000, 9)).unwrap();
    small_files(&src.join("docs"), 20, 10);
    let first = env.backup(&src, &[]);
    let want = manifest(&src);
    let repo = open_repo(&env);
    let forgotten = repo
        .snapshots()
        .unwrap()
        .into_iter()
        .find(|s| s.id == first)
        .unwrap();
    env.lb(&["forget", &first[..8]]).ok();

    let running = repo
        .lock(lifeboat_core::lock::LockKind::Shared, "backup")
        .unwrap();
    let report = prune(&repo, &PruneOptions::default()).unwrap();
    assert!(report.packs_condemned >= 2, "{report:?}");
    assert_eq!(report.packs_deleted, 0, "{report:?}");
    let mut late = forgotten.snapshot.clone();
    late.time = chrono::Local::now().fixed_offset();
    let late_id = repo.save_snapshot(&late).unwrap();
    drop(running);

    let report = prune(&repo, &PruneOptions::default()).unwrap();
    assert!(report.packs_reindexed >= 2, "{report:?}");
    assert_eq!(
        report.packs_deleted, 0,
        "every pack holds used blobs: {report:?}"
    );
    env.lb(&["check", "--read-data"]).ok();
    assert_restores_as(&env, &late_id, &src, &want);
    assert!(objects(&env, "condemned").is_empty());
}

/// Backups keep running while forget and prune run over and over; afterwards every
/// snapshot restores exactly what it saw and check reads every blob.
#[test]
fn prune_and_backups_run_concurrently_and_no_snapshot_loses_data() {
    let env = Env::new();
    let src = env.path("src");
    small_files(&src.join("stable"), 60, 11);
    const BACKUPS: usize = 8;
    let deadline = Instant::now() + Duration::from_secs(240);
    let expected = std::thread::scope(|scope| {
        let backups = scope.spawn(|| {
            let mut expected = Vec::new();
            for i in 0..BACKUPS {
                let churn = src.join("churn");
                let _ = std::fs::remove_dir_all(&churn);
                small_files(&churn, 30, 100 + i as u64);
                std::fs::write(
                    src.join("big.bin"),
                    random_bytes(2_000_000 + i * 100_000, 200 + i as u64),
                )
                .unwrap();
                let id = env.backup(&src, &[]);
                expected.push((id, manifest(&src)));
            }
            expected
        });
        let mut prunes = 0;
        while !backups.is_finished() {
            assert!(Instant::now() < deadline, "bounded run");
            env.lb(&[
                "forget",
                "--keep-last",
                "3",
                "--prune",
                "--max-unused",
                "0%",
            ])
            .ok();
            prunes += 1;
        }
        assert!(prunes >= 2, "prune ran beside the backups ({prunes} runs)");
        backups.join().unwrap()
    });
    // One more with nothing running finishes whatever waited.
    let last = prune_json(&env, &["--max-unused", "0%"]);
    assert_eq!(num(&last, "packs_waiting"), 0, "{last}");
    env.lb(&["check", "--read-data"]).ok();
    let repo = open_repo(&env);
    let alive: Vec<String> = repo
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert!(!alive.is_empty());
    let mut restored_count = 0;
    for (id, want) in &expected {
        if alive.contains(id) {
            assert_restores_as(&env, id, &src, want);
            restored_count += 1;
        }
    }
    assert_eq!(
        restored_count,
        alive.len(),
        "every snapshot was one of the backups"
    );
}

#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// The first run is not killed: it measures how long a prune takes.
    Never,
    /// After a random share of the last uninterrupted run's duration.
    Delay,
    /// The moment something appears or goes: a new index file (repacked packs are indexed,
    /// old index files not yet removed), a record, a new pack, the first deleted pack.
    NewIndexFile,
    Record,
    NewPack,
    PackGone,
}

const TRIGGERS: [Trigger; 6] = [
    Trigger::Delay,
    Trigger::NewIndexFile,
    Trigger::Record,
    Trigger::Delay,
    Trigger::NewPack,
    Trigger::PackGone,
];

/// `kill -9` of prune at random moments: afterwards check passes and every snapshot restores;
/// the next prune finishes the work.
#[test]
fn kill_9_during_prune_never_loses_a_used_blob() {
    /// Runs until this many prunes were killed (a trigger may miss a fast prune).
    const KILLS: usize = 20;
    const MAX_RUNS: usize = 60;
    let env = Env::new();
    let src = env.path("src");
    small_files(&src.join("stable"), 80, 12);
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut expected: Vec<(String, Manifest)> = Vec::new();
    let mut outcomes = (0, 0); // (killed, finished first)
    let mut typical = Duration::from_millis(40);
    for run in 0..MAX_RUNS {
        if outcomes.0 >= KILLS {
            break;
        }
        // New garbage each round: a new backup, and forget all but the two newest.
        let churn = src.join("churn");
        let _ = std::fs::remove_dir_all(&churn);
        small_files(&churn, 40, 300 + run as u64);
        std::fs::write(
            src.join("big.bin"),
            random_bytes(4_000_000, 400 + run as u64),
        )
        .unwrap();
        let id = env.backup(&src, &[]);
        expected.push((id, manifest(&src)));
        env.lb(&["forget", "--keep-last", "2"]).ok();

        let before = (objects(&env, "index"), objects(&env, "data"));
        let trigger = if run == 0 {
            Trigger::Never
        } else {
            TRIGGERS[run % TRIGGERS.len()]
        };
        let started = Instant::now();
        let kill_at = started + typical.mul_f64(rng.gen_range(0.0..1.0));
        let mut child = env
            .command()
            .args(["prune", "--max-unused", "0%"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        loop {
            if child.try_wait().unwrap().is_some() {
                outcomes.1 += 1;
                typical = started.elapsed();
                break;
            }
            let due = match trigger {
                Trigger::Never => false,
                Trigger::Delay => Instant::now() >= kill_at,
                Trigger::NewIndexFile => {
                    objects(&env, "index").iter().any(|f| !before.0.contains(f))
                }
                Trigger::Record => !objects(&env, "condemned").is_empty(),
                Trigger::NewPack => objects(&env, "data").iter().any(|f| !before.1.contains(f)),
                Trigger::PackGone => before.1.iter().any(|f| !f.exists()),
            };
            if due {
                child.kill().unwrap();
                child.wait().unwrap();
                outcomes.0 += 1;
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        env.lb(&["check"]).ok();
    }
    eprintln!("prune runs killed / finished first: {outcomes:?}");
    assert!(
        outcomes.0 >= KILLS,
        "{KILLS} prunes were killed: {outcomes:?}"
    );

    let last = prune_json(&env, &["--max-unused", "0%"]);
    assert_eq!(num(&last, "packs_waiting"), 0, "{last}");
    let left = objects(&env, "condemned");
    assert!(left.is_empty(), "the next prune finishes: {left:?}");
    let plan = prune_json(&env, &["--dry-run", "--max-unused", "0%"]);
    assert_eq!(num(&plan, "packs_to_delete"), 0, "{plan}");
    assert_eq!(num(&plan, "unindexed_packs"), 0, "{plan}");
    env.lb(&["check", "--read-data"]).ok();
    let alive: Vec<String> = open_repo(&env)
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(alive.len(), 2);
    for (id, want) in expected.iter().filter(|(id, _)| alive.contains(id)) {
        assert_restores_as(&env, id, &src, want);
    }
}

/// Restores and the other readers take a shared lock, so that a prune keeps the packs they
/// read until they are done; `--no-lock` reads without one.
#[test]
fn readers_take_a_shared_lock_unless_told_not_to() {
    let env = Env::new();
    let src = env.path("src");
    small_files(&src, 3, 14);
    env.backup(&src, &[]);
    let repo = open_repo(&env);
    let repair = repo
        .lock(lifeboat_core::lock::LockKind::Exclusive, "repair index")
        .unwrap();
    for args in [
        vec!["ls", "latest"],
        vec!["stats"],
        vec!["find", "f0001.txt"],
    ] {
        let blocked = env.lb(&args);
        assert_eq!(blocked.code, 12, "{args:?}: {}", blocked.stderr);
        assert!(
            blocked.stderr.contains("exclusive lock for repair index"),
            "{}",
            blocked.stderr
        );
    }
    let target = env.path("target");
    let blocked = env.restore("latest", &target, &[]);
    assert_eq!(blocked.code, 12, "{}", blocked.stderr);
    let listed = env.lb(&["--no-lock", "ls", "latest"]).ok();
    assert!(listed.stdout.contains("f0001.txt"), "{}", listed.stdout);
    env.restore("latest", &target, &["--no-lock"]).ok();
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
    drop(repair);
    assert_eq!(env.locks(), 0, "readers leave no lock behind");
    env.lb(&["ls", "latest"]).ok();
    assert_eq!(env.locks(), 0);
}

/// Temporary files a killed writer left in the repository are removed by prune once a day
/// old; a fresh one may belong to a writer at work and stays.
#[test]
fn prune_removes_temporaries_of_killed_writers_once_a_day_old() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), "a").unwrap();
    env.backup(&src, &[]);
    let old_pack = env.repo.join("data/.tmp-stage-00000000000000aa");
    let old_index = env.repo.join("index/.tmp-stage-00000000000000bb");
    let fresh = env.repo.join("data/.tmp-stage-00000000000000cc");
    for path in [&old_pack, &old_index, &fresh] {
        std::fs::write(path, vec![7u8; 4096]).unwrap();
    }
    let two_days_ago = filetime::FileTime::from_system_time(
        std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600),
    );
    for path in [&old_pack, &old_index] {
        filetime::set_file_mtime(path, two_days_ago).unwrap();
    }
    let report = env.lb(&["prune", "--json"]).ok().json();
    assert_eq!(report["temporaries_removed"], 2, "{report}");
    assert!(!old_pack.exists() && !old_index.exists());
    assert!(fresh.exists(), "a fresh temporary may be a live writer's");
    env.lb(&["check"]).ok();
}

#[test]
fn prune_merges_many_small_index_files_and_every_snapshot_still_restores() {
    let env = Env::new();
    // Streams of distinct content: each backup writes a pack and an index file of its own,
    // as the WAL pusher does for every batch.
    let mut contents = Vec::new();
    for i in 0..40u64 {
        let data = text(3000, i);
        common::feed(
            env.command()
                .args(["backup", "--stdin", "--stdin-filename", &format!("f{i}")]),
            &data,
        );
        contents.push(data);
    }
    let before = objects(&env, "index").len();
    assert!(before >= 40, "{before} index files");

    let dry = prune_json(&env, &["--dry-run"]);
    assert_eq!(num(&dry, "index_files_removed"), 0);
    assert_eq!(objects(&env, "index").len(), before);

    let report = prune_json(&env, &[]);
    let after = objects(&env, "index").len();
    assert_eq!(num(&report, "index_files_removed") as usize, before);
    assert_eq!(after, 1, "merged into one file");

    env.lb(&["check", "--read-data"]).ok();
    let listed = env.lb(&["snapshots", "--json"]).ok().json();
    for snapshot in listed.as_array().expect("snapshots") {
        let id = snapshot["id"].as_str().expect("id");
        let name = snapshot["paths"][0].as_str().expect("path");
        let i: usize = name.trim_start_matches("/f").parse().expect("index");
        let out = env.lb(&["dump", id, name]).ok().raw_stdout;
        assert_eq!(out, contents[i], "{name}");
    }
    // A second prune finds nothing more to merge.
    assert_eq!(num(&prune_json(&env, &[]), "index_files_removed"), 0);
}
