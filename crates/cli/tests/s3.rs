//! The CLI against a real S3 server (Garage, started by the tests on loopback): the commands
//! of a repository's life, copies between a directory and a bucket, and the errors a user of
//! object storage meets (wrong keys, a missing bucket, a repository that is not there).

mod common;

use std::path::Path;

use common::garage::{garage, Cluster};
use common::{manifest, random_bytes, restored, Env, Run};

fn make_source(src: &Path, seed: u64) {
    std::fs::create_dir_all(src.join("docs/deep/er")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    for i in 0..40 {
        std::fs::write(
            src.join("docs").join(format!("{i}.txt")),
            format!("line {i} of seed {seed}\n").repeat(20 + i),
        )
        .unwrap();
    }
    std::fs::write(
        src.join("docs/deep/er/big.bin"),
        random_bytes(6_000_000, seed),
    )
    .unwrap();
    std::os::unix::fs::symlink("docs/0.txt", src.join("link")).unwrap();
}

#[test]
fn s3_backup_restore_forget_prune_check() {
    let env = Env::new_on_s3();
    let src = env.path("src");
    make_source(&src, 1);
    let first_manifest = manifest(&src);
    env.backup(&src, &[]);
    // Unchanged, then changed: one file rewritten, one new, one removed.
    env.backup(&src, &[]);
    std::fs::write(src.join("docs/3.txt"), "rewritten\n").unwrap();
    std::fs::write(src.join("docs/new.txt"), "new\n").unwrap();
    std::fs::remove_file(src.join("docs/7.txt")).unwrap();
    env.backup(&src, &[]);
    assert_eq!(env.snapshot_count(), 3);

    let target = env.path("latest");
    env.restore("latest", &target, &[]).ok();
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
    assert_eq!(
        std::fs::read_link(restored(&target, &src).join("link")).unwrap(),
        Path::new("docs/0.txt")
    );
    assert!(restored(&target, &src).join("empty").is_dir());

    env.lb(&["forget", "--keep-last", "1", "--prune"]).ok();
    assert_eq!(env.snapshot_count(), 1);
    env.lb(&["check", "--read-data"]).ok();

    let again = env.path("again");
    env.restore("latest", &again, &[]).ok();
    assert_eq!(manifest(&restored(&again, &src)), manifest(&src));
    assert_ne!(
        first_manifest,
        manifest(&src),
        "the kept snapshot is the changed tree"
    );

    let file = env.lb(&["dump", "latest", src.join("docs/3.txt").to_str().unwrap()]);
    assert_eq!(file.ok().stdout, "rewritten\n");
}

#[test]
fn s3_copy_from_and_to_a_directory() {
    let local = Env::new();
    let src = local.path("src");
    make_source(&src, 2);
    local.backup(&src, &[]);

    let remote = Env::empty_on_s3();
    remote
        .lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .ok();
    let mut copy = local.command();
    copy.envs(remote.vars.iter().map(|(k, v)| (k, v)))
        .env("LIFEBOAT_TO_PASSWORD", common::PASSWORD)
        .args(["copy", "--json", "--to"])
        .arg(&remote.repo);
    let copied = Run::from_output(copy.output().unwrap()).ok().json();
    assert_eq!(
        copied["copied"].as_array().map(|a| a.len()),
        Some(1),
        "{copied}"
    );

    // And back down into a second directory, restored from there.
    let back = Env::new();
    let mut down = remote.command();
    down.env("LIFEBOAT_TO_PASSWORD", common::PASSWORD)
        .args(["copy", "--json", "--to"])
        .arg(&back.repo);
    let copied = Run::from_output(down.output().unwrap()).ok().json();
    assert_eq!(
        copied["copied"].as_array().map(|a| a.len()),
        Some(1),
        "{copied}"
    );
    let target = back.path("t");
    back.restore("latest", &target, &[]).ok();
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
    remote.lb(&["check", "--read-data"]).ok();
}

#[test]
fn s3_backups_running_at_once_share_the_repository() {
    let env = Env::new_on_s3();
    let (a, b) = (env.path("a"), env.path("b"));
    make_source(&a, 3);
    make_source(&b, 4);
    let spawn = |dir: &Path| {
        env.command()
            .args(["backup", "--quiet"])
            .arg(dir)
            .spawn()
            .expect("spawn backup")
    };
    let (mut first, mut second) = (spawn(&a), spawn(&b));
    assert!(first.wait().unwrap().success());
    assert!(second.wait().unwrap().success());
    assert_eq!(env.snapshot_count(), 2);
    env.lb(&["check", "--read-data"]).ok();
}

#[test]
fn s3_wrong_keys_missing_bucket_and_missing_repository_say_so() {
    let server = garage();
    let env = Env::new_on_s3();

    let mut wrong = Env::empty();
    wrong.repo = env.repo.clone();
    wrong.vars = server.vars();
    wrong.vars[1].1 = "0".repeat(64);
    let run = wrong.lb(&["snapshots"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(&env.repo.display().to_string()),
        "names the repository: {}",
        run.stderr
    );
    assert!(!run.stderr.contains(&"0".repeat(64)), "no secret in errors");
    assert!(!run.stderr.contains(&server.secret), "no secret in errors");

    let mut no_bucket = Env::empty();
    no_bucket.vars = server.vars();
    no_bucket.repo = format!("s3:{}/no-such-bucket/r", server.endpoint).into();
    let run = no_bucket.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    assert_ne!(run.code, 0, "init into a missing bucket: {}", run.stdout);
    assert!(run.stderr.contains("no-such-bucket"), "{}", run.stderr);

    let mut nothing = Env::empty();
    nothing.vars = server.vars();
    nothing.repo = server.fresh_repo().into();
    let run = nothing.lb(&["snapshots"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.to_lowercase().contains("no repository") || run.stderr.contains("not found"),
        "{}",
        run.stderr
    );

    let run = nothing
        .command_at(Path::new("s3:ftp://x/y"))
        .arg("snapshots")
        .output()
        .unwrap();
    let run = Run::from_output(run);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("invalid repository location"),
        "{}",
        run.stderr
    );
}

#[test]
fn s3_three_garage_nodes_keep_serving_with_one_lost() {
    let cluster = Cluster::start_three();
    let mut env = Env::empty();
    env.repo = cluster.garage.fresh_repo().into();
    env.vars = cluster.garage.vars();
    env.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .ok();
    let src = env.path("src");
    make_source(&src, 5);
    env.backup(&src, &[]);

    cluster.kill_node(2);
    let target = env.path("t");
    env.restore("latest", &target, &[]).ok();
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
    env.lb(&["check", "--read-data"]).ok();

    // Two of three still make a quorum for writes.
    std::fs::write(src.join("after.txt"), "written with a node down\n").unwrap();
    env.backup(&src, &[]);
    assert_eq!(env.snapshot_count(), 2);
    env.lb(&["check"]).ok();
}

#[test]
fn s3_copy_between_two_buckets_with_their_own_keys() {
    let server = garage();
    let env = Env::new_on_s3();
    let src = env.path("src");
    make_source(&src, 6);
    env.backup(&src, &[]);

    let offsite = format!(
        "s3:{}/{}/t-{:016x}",
        server.endpoint,
        server.offsite_bucket,
        rand::random::<u64>()
    );
    let offsite_vars = [
        (
            "LIFEBOAT_TO_AWS_ACCESS_KEY_ID",
            server.offsite_key_id.as_str(),
        ),
        (
            "LIFEBOAT_TO_AWS_SECRET_ACCESS_KEY",
            server.offsite_secret.as_str(),
        ),
    ];
    // The first bucket's key cannot reach the second bucket: without the LIFEBOAT_TO_ keys
    // the copy is refused by the server.
    let mut remote = Env::empty();
    remote.repo = offsite.clone().into();
    remote.vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), server.offsite_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            server.offsite_secret.clone(),
        ),
        ("AWS_REGION".into(), "garage".into()),
    ];
    remote
        .lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .ok();
    let copy = |with_keys: bool| {
        let mut cmd = env.command();
        cmd.env("LIFEBOAT_TO_PASSWORD", common::PASSWORD)
            .args(["copy", "--json", "--to", &offsite]);
        if with_keys {
            cmd.envs(offsite_vars);
        }
        Run::from_output(cmd.output().unwrap())
    };
    let refused = copy(false);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("AccessDenied"),
        "{}",
        refused.stderr
    );
    let copied = copy(true).ok().json();
    assert_eq!(
        copied["copied"].as_array().map(|a| a.len()),
        Some(1),
        "{copied}"
    );

    let target = remote.path("t");
    remote.restore("latest", &target, &[]).ok();
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));

    let mut status = env.command();
    status
        .env("LIFEBOAT_TO_PASSWORD", common::PASSWORD)
        .envs(offsite_vars)
        .args(["replicate", "status", "--json", "--to", &offsite]);
    let status = Run::from_output(status.output().unwrap()).ok().json();
    assert_eq!(status["current"], true, "{status}");
}

/// Requests the server counted while `f` ran, by endpoint. Other tests share the server, so
/// this test runs its commands on a cluster of its own.
fn requests_during(
    server: &common::garage::Garage,
    f: impl FnOnce(),
) -> std::collections::BTreeMap<String, u64> {
    let before = server.requests();
    f();
    let after = server.requests();
    after
        .into_iter()
        .map(|(k, v)| {
            let was = before.get(&k).copied().unwrap_or(0);
            (k, v - was)
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

#[test]
fn s3_unchanged_backup_reads_index_snapshots_and_trees_from_the_cache() {
    let cluster = Cluster::start_one();
    let server = &cluster.garage;
    let mut env = Env::empty();
    env.repo = server.fresh_repo().into();
    env.vars = server.vars();
    env.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .ok();
    let src = env.path("src");
    make_source(&src, 7);
    for i in 0..20 {
        std::fs::create_dir_all(src.join(format!("d{i}"))).unwrap();
        std::fs::write(src.join(format!("d{i}/f")), format!("{i}\n")).unwrap();
    }
    env.backup(&src, &[]);
    env.backup(&src, &[]);

    let cached = requests_during(server, || {
        env.backup(&src, &[]);
    });
    let uncached = requests_during(server, || {
        env.backup(&src, &["--no-cache"]);
    });
    // The figures docs/storage.md quotes.
    eprintln!("unchanged backup, requests with the cache: {cached:?}; without: {uncached:?}");
    let gets =
        |m: &std::collections::BTreeMap<String, u64>| m.get("GetObject").copied().unwrap_or(0);
    // From the store: the config (read to find the cache) and the key. Index files,
    // snapshots and trees come from the cache, the trees the previous backup wrote too
    // (cached as it wrote them).
    assert!(gets(&cached) <= 2, "cached: {cached:?}");
    assert!(
        gets(&uncached) > gets(&cached) + 3,
        "uncached: {uncached:?}, cached: {cached:?}"
    );
    let total: u64 = cached.values().sum();
    assert!(
        total <= 20,
        "an unchanged backup sent {total} requests: {cached:?}"
    );

    // A damaged cache costs downloads, never a wrong result.
    let cache = env.home().join(".cache/lifeboat");
    for entry in common::repo_files(&cache) {
        let mut bytes = std::fs::read(&entry).unwrap();
        if let Some(b) = bytes.first_mut() {
            *b ^= 0xff;
        }
        std::fs::write(&entry, bytes).unwrap();
    }
    env.lb(&["check"]).ok();
    let target = env.path("t");
    env.restore("latest", &target, &[]).ok();
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
}

#[test]
fn s3_credentials_from_a_named_aws_profile() {
    let server = garage();
    let mut env = Env::empty();
    env.repo = server.fresh_repo().into();
    // Keys and region only in the profile files, as `aws configure --profile` writes them.
    let aws = env.home().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = GKdefault\naws_secret_access_key = {}\n\n\
             [lifeboat-test]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            "1".repeat(64),
            server.key_id,
            server.secret
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        "[profile lifeboat-test]\nregion = garage\n",
    )
    .unwrap();
    env.vars = vec![("AWS_PROFILE".into(), "lifeboat-test".into())];
    env.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .ok();
    let src = env.path("src");
    make_source(&src, 5);
    let id = env.backup(&src, &[]);
    let target = env.path("restored");
    env.restore(&id, &target, &[]).ok();
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));

    // The default profile's key is not Garage's: without AWS_PROFILE access is refused.
    env.vars.clear();
    assert_ne!(env.lb(&["snapshots"]).code, 0);
    env.vars = vec![("AWS_PROFILE".into(), "no-such-profile".into())];
    let run = env.lb(&["snapshots"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("\"no-such-profile\""), "{}", run.stderr);
    assert!(!run.stderr.contains(&server.secret), "no secret in errors");
}

/// The rest of the CLI against the bucket: browsing, diff, stats, keys, repair and unlock
/// behave as on a directory.
#[test]
fn s3_browse_diff_stats_keys_repair_and_unlock() {
    let env = Env::new_on_s3();
    let src = env.path("src");
    make_source(&src, 2);
    let first = env.backup(&src, &[]);
    std::fs::write(src.join("docs/5.txt"), "changed\n").unwrap();
    let second = env.backup(&src, &[]);

    let docs = src.join("docs");
    let listed = env
        .lb(&["ls", "latest", docs.to_str().unwrap()])
        .ok()
        .stdout;
    assert!(
        listed.contains("5.txt") && listed.contains("39.txt"),
        "{listed}"
    );
    let found = env.lb(&["find", "big.bin"]).ok().stdout;
    assert!(found.contains("deep/er/big.bin"), "{found}");
    let diff = env.lb(&["diff", &first, &second]).ok().stdout;
    assert!(diff.contains("docs/5.txt"), "{diff}");
    let stats = env.lb(&["stats", "--json"]).ok().json();
    assert!(
        stats["restore_size"].as_u64().unwrap_or(0) > 6_000_000,
        "{stats}"
    );

    // A second password opens the bucket's repository, and can be removed again.
    let mut add = env.command();
    add.env("LIFEBOAT_NEW_PASSWORD", "second password").args([
        "key",
        "add",
        "--kdf-memory-kib",
        "64",
        "--kdf-iterations",
        "1",
    ]);
    Run::from_output(add.output().unwrap()).ok();
    let second_pw = env
        .command()
        .env("LIFEBOAT_PASSWORD", "second password")
        .arg("snapshots")
        .output()
        .unwrap();
    assert!(second_pw.status.success(), "{second_pw:?}");
    let keys = env.lb(&["key", "list", "--json"]).ok().json();
    let other = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == false)
        .expect("the added key")["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.lb(&["key", "remove", &other]).ok();
    assert_eq!(
        env.lb(&["key", "list", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A killed backup's lock is stale: unlock removes it. (Nothing lists locks in a bucket
    // but lifeboat itself, so the backup gets a while to write its lock, longer if needed.)
    let removed = (1..=3u64).find(|attempt| {
        let mut hold = env
            .command()
            .args(["backup", "--stdin", "--stdin-filename", "x"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(700 * attempt));
        hold.kill().unwrap();
        hold.wait().unwrap();
        env.lb(&["unlock"])
            .ok()
            .stdout
            .contains("1 lock(s) removed")
    });
    assert!(removed.is_some(), "unlock removed no stale lock");
    // repair index rebuilds an index that checks and restores.
    env.lb(&["repair", "index"]).ok();
    env.lb(&["check", "--read-data"]).ok();
    let target = env.path("t");
    env.restore("latest", &target, &[]).ok();
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
}
