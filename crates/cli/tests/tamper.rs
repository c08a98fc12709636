//! Tamper evidence: each snapshot names the one before it of its host and source, and every
//! forget leaves a record, so `check` tells a snapshot removed or rewritten behind lifeboat's
//! back from one that `forget` removed.

mod common;

use common::Env;

fn snapshot_file(env: &Env, id: &str) -> std::path::PathBuf {
    env.repo.join("snapshots").join(id)
}

fn errors(env: &Env) -> Vec<serde_json::Value> {
    let run = env.lb(&["check", "--json"]);
    let report = run.json();
    let errors: Vec<serde_json::Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["error"] == true)
        .cloned()
        .collect();
    assert_eq!(
        run.code == 0,
        errors.is_empty(),
        "exit code {}: {report}",
        run.code
    );
    errors
}

/// Four snapshots of one source, oldest first.
fn chain(env: &Env) -> Vec<String> {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    (0..4)
        .map(|i| {
            std::fs::write(src.join("file"), format!("version {i}")).unwrap();
            env.backup(&src, &[])
        })
        .collect()
}

#[test]
fn each_snapshot_names_the_previous_one_of_its_source() {
    let env = Env::new();
    let ids = chain(&env);
    // Another source does not join the chain of the first.
    let other = env.path("other");
    std::fs::create_dir_all(&other).unwrap();
    let first_of_other = env.backup(&other, &[]);
    let listed = env.lb(&["snapshots", "--json"]).ok().json();
    let previous_of = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {listed}"))["previous"]
            .clone()
    };
    assert_eq!(previous_of(&ids[0]), serde_json::Value::Null);
    for pair in ids.windows(2) {
        assert_eq!(previous_of(&pair[1]), pair[0].as_str());
    }
    assert_eq!(previous_of(&first_of_other), serde_json::Value::Null);
}

#[test]
fn check_reports_a_snapshot_deleted_outside_of_forget() {
    let env = Env::new();
    let ids = chain(&env);
    assert!(errors(&env).is_empty());

    // Forgotten the proper way: no finding, though the next snapshot names it.
    env.lb(&["forget", &ids[1]]).ok();
    assert!(errors(&env).is_empty(), "forget is not tampering");

    std::fs::remove_file(snapshot_file(&env, &ids[2])).unwrap();
    let found = errors(&env);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["object"], format!("snapshot {}", ids[2]));
    let message = found[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&ids[3]),
        "names the snapshot after it: {message}"
    );
    assert!(message.contains("outside of lifeboat"), "{message}");
    let human = env.lb(&["check"]);
    assert_eq!(human.code, 1);
    assert!(human.stdout.contains(&ids[2]), "{}", human.stdout);
}

#[test]
fn check_reports_the_newest_snapshots_gone_together_from_what_this_client_wrote() {
    let env = Env::new();
    let ids = chain(&env);
    assert!(errors(&env).is_empty());
    // The newest is forgotten the proper way: not a rollback.
    env.lb(&["forget", &ids[3]]).ok();
    assert!(errors(&env).is_empty(), "forget is not tampering");

    // The storage drops the two newest left together: no snapshot names them, so the chain
    // alone cannot see it; the client's record of what it wrote can.
    for id in &ids[1..3] {
        std::fs::remove_file(snapshot_file(&env, id)).unwrap();
    }
    let found = errors(&env);
    let mut objects: Vec<&str> = found
        .iter()
        .map(|f| f["object"].as_str().unwrap())
        .collect();
    objects.sort();
    let mut expected = vec![
        format!("snapshot {}", ids[1]),
        format!("snapshot {}", ids[2]),
    ];
    expected.sort();
    assert_eq!(objects, expected, "{found:?}");
    for finding in &found {
        let message = finding["message"].as_str().unwrap();
        assert!(message.contains("this client wrote it"), "{message}");
    }
    let human = env.lb(&["check"]);
    assert_eq!(human.code, 1);
    assert!(
        human.stderr.contains("written-snapshots.json"),
        "{}",
        human.stderr
    );

    // An operator who put an older copy back on purpose accepts it by removing the record.
    let record = std::fs::read_dir(env.home().join(".local/state/lifeboat"))
        .unwrap()
        .next()
        .expect("one repository recorded")
        .unwrap()
        .path()
        .join("written-snapshots.json");
    std::fs::remove_file(&record).unwrap();
    assert!(
        errors(&env).is_empty(),
        "without the record nothing can tell"
    );
}

#[test]
fn check_reports_a_snapshot_rewritten_in_place_or_renamed() {
    let env = Env::new();
    let ids = chain(&env);
    // In place: the newest snapshot's object now holds another snapshot's bytes.
    let newest = snapshot_file(&env, &ids[3]);
    std::fs::copy(snapshot_file(&env, &ids[0]), &newest).unwrap();
    let found = errors(&env);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["object"], format!("snapshot {}", ids[3]));
    assert!(
        found[0]["message"].as_str().unwrap().contains("rewritten"),
        "{found:?}"
    );
    std::fs::remove_file(&newest).unwrap();

    // Renamed: the content is intact under a name that is not its hash, and the snapshot
    // after it names one that is gone.
    let renamed = "ab".repeat(32);
    std::fs::rename(snapshot_file(&env, &ids[1]), snapshot_file(&env, &renamed)).unwrap();
    let objects: Vec<String> = errors(&env)
        .iter()
        .map(|f| f["object"].as_str().unwrap().to_string())
        .collect();
    assert!(
        objects.contains(&format!("snapshot {renamed}")),
        "{objects:?}"
    );
    assert!(
        objects.contains(&format!("snapshot {}", ids[1])),
        "{objects:?}"
    );
}

#[test]
fn forgetting_by_policy_and_copying_keep_the_chain_whole() {
    let env = Env::new();
    chain(&env);
    env.lb(&["forget", "--keep-last", "1"]).ok();
    assert!(errors(&env).is_empty());
    let records = std::fs::read_dir(env.repo.join("forgotten"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(records, 1, "one record per forget run");

    // A copy names its own snapshots as previous, so its chain checks too.
    let ids = chain(&env);
    let twin = env.path("twin");
    env.command_at(&twin)
        .args(["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .output()
        .unwrap();
    let copied = env
        .command()
        .env("LIFEBOAT_TO_PASSWORD", common::PASSWORD)
        .args(["copy", "--to"])
        .arg(&twin)
        .output()
        .unwrap();
    assert!(copied.status.success(), "{copied:?}");
    let listed = env
        .command_at(&twin)
        .args(["snapshots", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let with_previous = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["previous"].is_string())
        .count();
    assert_eq!(with_previous, ids.len(), "{listed}");
    let check = env.command_at(&twin).args(["check"]).output().unwrap();
    assert!(check.status.success(), "{check:?}");

    // A later copy of the newest snapshot alone still links it to the copy made before.
    let src = env.path("src");
    std::fs::write(src.join("file"), "one more").unwrap();
    env.backup(&src, &[]);
    let again = env
        .command()
        .env("LIFEBOAT_TO_PASSWORD", common::PASSWORD)
        .args(["copy", "latest", "--to"])
        .arg(&twin)
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    let listed = env
        .command_at(&twin)
        .args(["snapshots", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let all = listed.as_array().unwrap();
    let newest = all.last().unwrap();
    let before = &all[all.len() - 2];
    assert_eq!(newest["previous"], before["id"], "{listed}");
}
