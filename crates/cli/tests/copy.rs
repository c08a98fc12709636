//! `copy` between repositories, and `init --copy-chunker-params --from-repo`.

mod common;

use std::path::Path;

use common::{manifest, random_bytes, restored, Env, Run};

const OTHER_PASSWORD: &str = "a different password for the second repository";

/// `lifeboat ARGS` against the repository at `repo`, opened with `password`, with `extra`
/// environment variables.
fn lb_at(env: &Env, repo: &Path, password: &str, extra: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = env.command_at(repo);
    cmd.env("LIFEBOAT_PASSWORD", password);
    for (key, value) in extra {
        cmd.env(key, value);
    }
    let out = cmd.args(args).output().expect("run lifeboat");
    Run::from_output(out)
}

fn init_other(env: &Env, repo: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"];
    args.extend_from_slice(extra);
    lb_at(
        env,
        repo,
        OTHER_PASSWORD,
        &[("LIFEBOAT_FROM_PASSWORD", common::PASSWORD)],
        &args,
    )
}

fn copy_to(env: &Env, to: &Path, args: &[&str]) -> serde_json::Value {
    let mut cmd = env.command();
    cmd.env("LIFEBOAT_TO_PASSWORD", OTHER_PASSWORD)
        .args(["copy", "--json", "--to"])
        .arg(to)
        .args(args);
    Run::from_output(cmd.output().expect("run lifeboat"))
        .ok()
        .json()
}

fn make_source(src: &Path, seed: u64) {
    std::fs::create_dir_all(src.join("docs")).unwrap();
    for i in 0..30 {
        std::fs::write(
            src.join("docs").join(format!("{i}.txt")),
            format!("document {i} of seed {seed}\n").repeat(50 + i),
        )
        .unwrap();
    }
    std::fs::write(src.join("data.bin"), random_bytes(3_000_000, seed)).unwrap();
}

fn snapshot_ids(env: &Env, repo: &Path, password: &str) -> Vec<serde_json::Value> {
    lb_at(env, repo, password, &[], &["snapshots", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[track_caller]
fn assert_restores(
    env: &Env,
    repo: &Path,
    password: &str,
    snapshot: &str,
    src: &Path,
    want: &common::Manifest,
) {
    let target = env.path(&format!("restore-{}", rand::random::<u32>()));
    lb_at(
        env,
        repo,
        password,
        &[],
        &["restore", snapshot, "--target", target.to_str().unwrap()],
    )
    .ok();
    assert_eq!(&manifest(&restored(&target, src)), want);
}

#[test]
fn copy_moves_new_snapshots_once_and_the_copies_restore() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src, 1);
    let first = env.backup(&src, &["--tag", "one"]);
    let first_state = manifest(&src);
    make_source(&src, 2);
    let second = env.backup(&src, &[]);
    let second_state = manifest(&src);
    let offsite = env.path("offsite");
    init_other(&env, &offsite, &[]).ok();

    let report = copy_to(&env, &offsite, &[]);
    assert_eq!(report["copied"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["same_chunking"], false);
    assert!(report["blobs_stored"].as_u64().unwrap() > 2, "{report}");
    lb_at(
        &env,
        &offsite,
        OTHER_PASSWORD,
        &[],
        &["check", "--read-data"],
    )
    .ok();
    let copies = snapshot_ids(&env, &offsite, OTHER_PASSWORD);
    assert_eq!(copies.len(), 2);
    let copy_of = |source: &str| -> String {
        report["copied"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["source"] == source)
            .unwrap()["copy"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_restores(
        &env,
        &offsite,
        OTHER_PASSWORD,
        &copy_of(&first),
        &src,
        &first_state,
    );
    assert_restores(
        &env,
        &offsite,
        OTHER_PASSWORD,
        &copy_of(&second),
        &src,
        &second_state,
    );
    let tagged = copies.iter().find(|s| s["id"] == copy_of(&first)).unwrap();
    assert_eq!(
        tagged["tags"],
        serde_json::json!(["one"]),
        "metadata travels"
    );

    let again = copy_to(&env, &offsite, &[]);
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["skipped"].as_array().unwrap().len(), 2, "{again}");
    assert_eq!(again["blobs_stored"], 0);

    std::fs::write(src.join("new.txt"), b"one more file").unwrap();
    let third = env.backup(&src, &[]);
    let only_latest = copy_to(&env, &offsite, &["latest"]);
    assert_eq!(
        only_latest["copied"][0]["source"],
        third.as_str(),
        "{only_latest}"
    );
    assert!(
        only_latest["blobs_stored"].as_u64().unwrap() <= 3,
        "only the new file and the trees' data: {only_latest}"
    );
    assert_restores(
        &env,
        &offsite,
        OTHER_PASSWORD,
        "latest",
        &src,
        &manifest(&src),
    );
}

#[test]
fn a_repository_made_with_copied_chunker_params_takes_copies_without_reading_them() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src, 3);
    env.backup(&src, &[]);
    let twin = env.path("twin");
    init_other(
        &env,
        &twin,
        &[
            "--copy-chunker-params",
            "--from-repo",
            env.repo.to_str().unwrap(),
        ],
    )
    .ok();
    let config = |repo: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(repo.join("config")).unwrap()).unwrap()
    };
    assert_eq!(config(&twin)["chunker"], config(&env.repo)["chunker"]);
    assert_ne!(config(&twin)["id"], config(&env.repo)["id"]);
    let wrong = lb_at(&env, &twin, common::PASSWORD, &[], &["snapshots"]);
    assert_eq!(wrong.code, 11, "its own password, not the source's");

    let report = copy_to(&env, &twin, &[]);
    assert_eq!(report["same_chunking"], true, "{report}");
    assert_eq!(report["copied"].as_array().unwrap().len(), 1);
    lb_at(&env, &twin, OTHER_PASSWORD, &[], &["check", "--read-data"]).ok();

    // A backup of the same tree straight into the twin, reading every file again, cuts and
    // names the chunks as the copy did: no data is stored twice.
    let direct = lb_at(
        &env,
        &twin,
        OTHER_PASSWORD,
        &[],
        &["backup", "--json", "--force", src.to_str().unwrap()],
    )
    .ok()
    .json();
    assert!(
        direct["bytes_read"].as_u64().unwrap() > 3_000_000,
        "{direct}"
    );
    assert!(
        direct["bytes_added"].as_u64().unwrap() < 20_000,
        "at most trees are new: {direct}"
    );
    assert_restores(&env, &twin, OTHER_PASSWORD, "latest", &src, &manifest(&src));
}

#[test]
fn copy_says_clearly_what_is_wrong_with_the_destination() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src, 4);
    env.backup(&src, &[]);
    let missing = env
        .command()
        .env("LIFEBOAT_TO_PASSWORD", OTHER_PASSWORD)
        .args(["copy", "--to"])
        .arg(env.path("nowhere"))
        .output()
        .unwrap();
    let missing = Run::from_output(missing);
    assert_eq!(missing.code, 10, "{}", missing.stderr);
    assert!(missing.stderr.contains("--to"), "{}", missing.stderr);

    let offsite = env.path("offsite");
    init_other(&env, &offsite, &[]).ok();
    let wrong = env
        .command()
        .env("LIFEBOAT_TO_PASSWORD", "not it")
        .args(["copy", "--to"])
        .arg(&offsite)
        .output()
        .unwrap();
    let wrong = Run::from_output(wrong);
    assert_eq!(wrong.code, 11, "{}", wrong.stderr);

    let itself = env
        .command()
        .env("LIFEBOAT_TO_PASSWORD", common::PASSWORD)
        .args(["copy", "--to"])
        .arg(&env.repo)
        .output()
        .unwrap();
    let itself = Run::from_output(itself);
    assert_eq!(itself.code, 1);
    assert!(
        itself.stderr.contains("being copied from"),
        "{}",
        itself.stderr
    );
    assert!(
        snapshot_ids(&env, &offsite, OTHER_PASSWORD).is_empty(),
        "nothing copied"
    );
}

fn replicate_status(env: &Env, to: &Path) -> serde_json::Value {
    let mut cmd = env.command();
    cmd.env("LIFEBOAT_TO_PASSWORD", OTHER_PASSWORD)
        .args(["replicate", "status", "--json", "--to"])
        .arg(to);
    Run::from_output(cmd.output().expect("run lifeboat"))
        .ok()
        .json()
}

#[test]
fn replicate_status_shows_the_lag_of_the_copy_per_source() {
    let env = Env::new();
    let (web, db) = (env.path("web"), env.path("db"));
    make_source(&web, 1);
    make_source(&db, 2);
    env.backup(&web, &["--time", "2026-11-30T10:00:00Z"]);
    env.backup(&db, &["--time", "2026-11-30T10:00:00Z"]);
    let offsite = env.path("offsite");
    init_other(&env, &offsite, &[]).ok();

    let never = replicate_status(&env, &offsite);
    assert_eq!(never["current"], false);
    let sources = never["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{never}");
    assert!(sources.iter().all(|s| s["lag_seconds"].is_null()));

    copy_to(&env, &offsite, &[]);
    let current = replicate_status(&env, &offsite);
    assert_eq!(current["current"], true, "{current}");
    assert!(current["sources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["lag_seconds"] == 0 && s["not_copied"] == 0));

    // Two more backups of web, six hours apart from the copied one: the copy lags 8 hours.
    env.backup(&web, &["--time", "2026-11-30T12:00:00Z"]);
    env.backup(&web, &["--time", "2026-11-30T18:00:00Z"]);
    let behind = replicate_status(&env, &offsite);
    assert_eq!(behind["current"], false);
    let web_line = behind["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["paths"][0] == web.to_str().unwrap())
        .cloned()
        .unwrap();
    assert_eq!(web_line["lag_seconds"], 8 * 3600, "{behind}");
    assert_eq!(web_line["not_copied"], 2);

    let mut text = env.command();
    text.env("LIFEBOAT_TO_PASSWORD", OTHER_PASSWORD)
        .args(["replicate", "status", "--to"])
        .arg(&offsite);
    let text = Run::from_output(text.output().unwrap()).ok();
    assert!(text.stdout.contains("8h"), "{}", text.stdout);
    assert!(
        text.stdout.contains("lacks 2 snapshot(s)"),
        "{}",
        text.stdout
    );

    let mut itself = env.command();
    itself
        .env("LIFEBOAT_TO_PASSWORD", common::PASSWORD)
        .args(["replicate", "status", "--to"])
        .arg(&env.repo);
    let itself = Run::from_output(itself.output().unwrap());
    assert_ne!(itself.code, 0);
    assert!(
        itself.stderr.contains("this repository itself"),
        "{}",
        itself.stderr
    );
}
