//! `repair index` and `repair snapshots` on repositories damaged the ways they are meant for:
//! index files lost, packs no index lists, packs with damaged headers, packs gone.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use common::{open_repo, random_bytes, restored, Env};
use lifeboat_core::ops::walk::{locate, Located};
use serde_json::Value;

/// Writes `files` (relative path, size) of random bytes under `dir`, seeded by `seed`.
fn write_tree(dir: &Path, files: &[(&str, usize)], seed: u64) -> Vec<PathBuf> {
    files
        .iter()
        .enumerate()
        .map(|(i, (name, len))| {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, random_bytes(*len, seed + i as u64)).unwrap();
            path
        })
        .collect()
}

const FILES: [(&str, usize); 5] = [
    ("big.bin", 1_500_000),
    ("sub/medium.bin", 700_000),
    ("sub/small.txt", 300),
    ("sub/deeper/tiny", 10),
    ("empty", 0),
];

/// Restores `snapshot` and compares every file under `src` with what came back.
#[track_caller]
fn assert_restores(env: &Env, snapshot: &str, src: &Path) {
    let target = env.path(&format!("restore-{snapshot}"));
    env.restore(snapshot, &target, &[]).ok();
    assert_same_tree(src, &restored(&target, src));
}

#[track_caller]
fn assert_same_tree(want: &Path, got: &Path) {
    let mut names: Vec<_> = std::fs::read_dir(want)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut got_names: Vec<_> = std::fs::read_dir(got)
        .unwrap_or_else(|e| panic!("{}: {e}", got.display()))
        .map(|e| e.unwrap().file_name())
        .collect();
    got_names.sort();
    assert_eq!(names, got_names, "entries of {}", got.display());
    for name in names {
        let (w, g) = (want.join(&name), got.join(&name));
        if w.is_dir() {
            assert_same_tree(&w, &g);
        } else {
            assert!(
                std::fs::read(&w).unwrap() == std::fs::read(&g).unwrap(),
                "{} differs",
                g.display()
            );
        }
    }
}

/// Object names in a repository namespace (`index`, `snapshots`; `data` for packs).
fn objects(env: &Env, namespace: &str) -> Vec<String> {
    let mut names: Vec<String> = common::repo_files(&env.repo.join(namespace))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn pack_path(env: &Env, name: &str) -> PathBuf {
    env.repo.join("data").join(&name[..2]).join(name)
}

fn errors_of(report: &Value) -> Vec<Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["error"] == true)
        .cloned()
        .collect()
}

/// The packs holding `file`'s data in the snapshot whose root tree is `tree`.
fn packs_of(env: &Env, tree: lifeboat_core::blob::BlobId, file: &Path) -> Vec<String> {
    let repo = open_repo(env);
    let index = repo.load_index().unwrap();
    let node = match locate(&repo, &index, tree, file.as_os_str().as_bytes(), "s").unwrap() {
        Located::Node { node, .. } => node,
        Located::Root(_) => panic!("root"),
    };
    let mut packs: Vec<String> = node
        .content
        .iter()
        .map(|id| index.pack(index.get(id).unwrap().pack).name.clone())
        .collect();
    packs.sort();
    packs.dedup();
    packs
}

fn snapshot_list(env: &Env) -> Vec<Value> {
    env.lb(&["snapshots", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[track_caller]
fn rebuild_after_deleting_every_index_file(env: &Env, sources: &[(String, PathBuf)]) {
    let packs = objects(env, "data");
    for name in objects(env, "index") {
        std::fs::remove_file(env.repo.join("index").join(name)).unwrap();
    }
    let broken = env.lb(&["check"]);
    assert_eq!(broken.code, 1, "{}", broken.stdout);
    assert!(
        broken.stdout.contains("not in the index"),
        "{}",
        broken.stdout
    );

    let report = env.lb(&["repair", "index", "--json"]).ok().json();
    assert_eq!(
        report["packs_read"].as_u64(),
        Some(packs.len() as u64),
        "{report}"
    );
    assert_eq!(report["packs_found"], report["packs_read"], "{report}");
    assert_eq!(report["old_index_files_removed"], 0);
    assert_eq!(report["skipped_packs"].as_array().unwrap().len(), 0);
    assert!(report["blobs_indexed"].as_u64().unwrap() >= 10, "{report}");
    assert_eq!(objects(env, "data"), packs, "no pack is touched");

    let check = env.lb(&["check", "--read-data", "--json"]).ok().json();
    assert_eq!(check["errors"], 0, "{check}");
    assert_eq!(check["findings"].as_array().unwrap().len(), 0, "{check}");
    for (snapshot, src) in sources {
        assert_restores(env, snapshot, src);
    }
}

#[test]
fn a_deleted_index_is_rebuilt_and_every_snapshot_restores() {
    let env = Env::new();
    let (one, two) = (env.path("one"), env.path("two"));
    write_tree(&one, &FILES, 10);
    write_tree(&two, &FILES[..3], 20);
    let sources = vec![
        (env.backup(&one, &[]), one.clone()),
        (env.backup(&two, &[]), two.clone()),
    ];
    rebuild_after_deleting_every_index_file(&env, &sources);

    // A backup after the repair finds the data in the index: no file is read again (one
    // whose blobs were not indexed would be).
    let again = env
        .lb_os(&["backup".as_ref(), "--json".as_ref(), one.as_os_str()])
        .ok()
        .json();
    assert_eq!(again["files_unmodified"], FILES.len() as u64, "{again}");
    assert_eq!(again["files_changed"], 0, "{again}");
}

#[test]
fn a_format_1_index_is_rebuilt_in_format_1() {
    let env = Env::empty();
    env.lb(&[
        "init",
        "--kdf-memory-kib",
        "64",
        "--kdf-iterations",
        "1",
        "--format-version",
        "1",
    ])
    .ok();
    let src = env.path("src");
    write_tree(&src, &FILES, 30);
    let sources = vec![(env.backup(&src, &[]), src)];
    rebuild_after_deleting_every_index_file(&env, &sources);
    let repo = open_repo(&env);
    let versions = repo
        .read_index_files(Vec::new, |versions, _, f| versions.push(f.version))
        .unwrap();
    assert_eq!(
        versions,
        vec![1],
        "one index file, of the repository's version"
    );
}

#[test]
fn the_packs_of_an_interrupted_backup_are_found_again() {
    let env = Env::new();
    let (one, two) = (env.path("one"), env.path("two"));
    write_tree(&one, &FILES, 40);
    write_tree(&two, &FILES[..2], 50);
    env.backup(&one, &[]);
    let (index_before, packs_before) = (objects(&env, "index"), objects(&env, "data"));
    let second = env.backup(&two, &[]);
    let new_packs = objects(&env, "data").len() - packs_before.len();
    assert!(new_packs >= 2, "data and tree packs: {new_packs}");
    // As if the second backup died after its packs were written, before its index file.
    for name in objects(&env, "index") {
        if !index_before.contains(&name) {
            std::fs::remove_file(env.repo.join("index").join(name)).unwrap();
        }
    }
    assert_eq!(env.lb(&["check"]).code, 1);

    let dry = env
        .lb(&["repair", "index", "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["packs_found"].as_u64(), Some(new_packs as u64), "{dry}");
    assert_eq!(
        objects(&env, "index"),
        index_before,
        "a dry run writes nothing"
    );

    let human = env.lb(&["repair", "index"]).ok();
    assert!(
        human
            .stdout
            .contains(&format!("{new_packs} pack(s) were not in the index before")),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains(&format!("removed {} old index file(s)", index_before.len())),
        "{}",
        human.stdout
    );
    let index_after = objects(&env, "index");
    assert!(index_after.iter().all(|n| !index_before.contains(n)));
    let check = env.lb(&["check", "--json"]).ok().json();
    assert_eq!(check["findings"].as_array().unwrap().len(), 0, "{check}");
    assert_restores(&env, &second, &two);
}

#[test]
fn a_pack_with_a_damaged_header_is_reported_and_kept() {
    let env = Env::new();
    let src = env.path("src");
    let files = write_tree(&src, &FILES, 60);
    let snapshot = env.backup(&src, &[]);
    let tree = open_repo(&env).snapshots().unwrap()[0].snapshot.tree;
    let damaged = packs_of(&env, tree, &files[0]).remove(0);
    let path = pack_path(&env, &damaged);
    let mut bytes = std::fs::read(&path).unwrap();
    // The header is sealed just before the 40-byte trailer.
    let at = bytes.len() - 41;
    bytes[at] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let total = objects(&env, "data").len();

    let report = env.lb(&["repair", "index", "--json"]).ok().json();
    let skipped = report["skipped_packs"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{report}");
    assert_eq!(skipped[0]["pack"], damaged.as_str());
    assert!(
        skipped[0]["reason"].as_str().unwrap().contains("integrity"),
        "{report}"
    );
    assert!(skipped[0]["blobs_indexed_before"].as_u64().unwrap() >= 2);
    assert_eq!(report["packs_read"].as_u64(), Some(total as u64 - 1));
    assert_eq!(report["packs_missing"], 0);
    assert!(
        std::fs::read(&path).unwrap() == bytes,
        "the damaged pack is left as it was"
    );

    // Its blobs are unindexed now: check names what that costs, and repair snapshots drops it.
    let check = env.lb(&["check", "--json"]);
    assert_eq!(check.code, 1);
    let check = check.json();
    let unindexed = check["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["object"] == format!("pack {damaged}"))
        .unwrap_or_else(|| panic!("{check}"));
    assert_eq!(unindexed["error"], false, "a note: {unindexed}");
    let human = env.lb(&["repair", "index", "--dry-run"]).ok();
    assert!(
        human.stdout.contains(&format!("skipped pack {damaged}")),
        "{}",
        human.stdout
    );
    let repaired = env
        .lb(&["repair", "snapshots", &snapshot[..8], "--json"])
        .ok()
        .json();
    let lost: Vec<&str> = repaired["repaired"][0]["lost"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap())
        .collect();
    assert!(lost.contains(&files[0].to_str().unwrap()), "{repaired}");
}

/// A repository with two snapshots of `src`; the second adds `lost`, whose data alone is in a
/// pack of that backup, and that pack is deleted.
struct Lost {
    env: Env,
    src: PathBuf,
    lost: PathBuf,
    first: String,
    second: String,
    pack: String,
}

fn a_snapshot_with_a_missing_pack() -> Lost {
    let env = Env::new();
    let src = env.path("src");
    write_tree(&src, &FILES, 70);
    let first = env.backup(&src, &[]);
    let lost = write_tree(&src, &[("sub/lost.bin", 1_200_000)], 80).remove(0);
    let second = env.backup(&src, &[]);
    let repo = open_repo(&env);
    let tree = repo
        .snapshots()
        .unwrap()
        .into_iter()
        .find(|e| e.id == second)
        .unwrap()
        .snapshot
        .tree;
    let packs = packs_of(&env, tree, &lost);
    assert_eq!(packs.len(), 1, "{packs:?}");
    let pack = packs[0].clone();
    // No other file of either snapshot has data in it.
    for (name, _) in FILES {
        assert!(
            !packs_of(&env, tree, &src.join(name)).contains(&pack),
            "{name}"
        );
    }
    std::fs::remove_file(pack_path(&env, &pack)).unwrap();
    Lost {
        env,
        src,
        lost,
        first,
        second,
        pack,
    }
}

/// The check finding about `pack`, and `check`'s error count.
fn missing_pack_finding(env: &Env, pack: &str) -> (Value, usize) {
    let run = env.lb(&["check", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let report = run.json();
    let errors = errors_of(&report);
    let finding = errors
        .iter()
        .find(|f| f["object"] == format!("pack {pack}"))
        .unwrap_or_else(|| panic!("{report}"))
        .clone();
    (finding, errors.len())
}

#[test]
fn repair_snapshots_leaves_out_the_file_of_a_missing_pack() {
    let Lost {
        env,
        src,
        lost,
        first,
        second,
        pack,
    } = a_snapshot_with_a_missing_pack();
    let lost_path = lost.display().to_string();

    let dry = env
        .lb(&["repair", "snapshots", "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(dry["repaired"][0]["new"], Value::Null, "{dry}");
    assert_eq!(snapshot_list(&env).len(), 2, "a dry run writes nothing");

    let run = env.lb(&["repair", "snapshots", "--json"]).ok().json();
    assert_eq!(
        (run["checked"].as_u64(), run["intact"].as_u64()),
        (Some(2), Some(1))
    );
    let repaired = run["repaired"].as_array().unwrap();
    assert_eq!(repaired.len(), 1, "{run}");
    assert_eq!(repaired[0]["original"], second.as_str());
    assert_eq!(run["indexed_packs_missing"], 1);
    assert_eq!(repaired[0]["lost"], dry["repaired"][0]["lost"]);
    let lost_list = repaired[0]["lost"].as_array().unwrap();
    assert_eq!(lost_list.len(), 1, "{run}");
    assert_eq!(lost_list[0]["path"], lost_path.as_str());
    assert_eq!(lost_list[0]["size"], 1_200_000);
    assert!(
        lost_list[0]["reason"].as_str().unwrap().contains(&pack),
        "{run}"
    );
    let new = repaired[0]["new"].as_str().unwrap().to_string();

    // The originals stay; the new snapshot restores everything but the lost file.
    let list = snapshot_list(&env);
    assert_eq!(list.len(), 3);
    let entry = list.iter().find(|s| s["id"] == new.as_str()).unwrap();
    assert_eq!(entry["original"], second.as_str());
    let original = list.iter().find(|s| s["id"] == second.as_str()).unwrap();
    for field in ["time", "host", "paths", "tags"] {
        assert_eq!(entry[field], original[field], "{field}");
    }
    std::fs::remove_file(&lost).unwrap();
    assert_restores(&env, &new[..8], &src);
    assert_restores(&env, &first[..8], &src);

    // check: the index still lists the missing pack; of the snapshots, only the original
    // uses it.
    let (finding, errors) = missing_pack_finding(&env, &pack);
    assert_eq!(errors, 1, "{finding}");
    let users: Vec<(&str, &str)> = finding["affects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["snapshot"].as_str().unwrap(), a["path"].as_str().unwrap()))
        .collect();
    assert_eq!(users, vec![(second.as_str(), lost_path.as_str())]);

    // --forget now removes the original, without a second copy.
    let human = env.lb(&["repair", "snapshots", "--forget"]).ok();
    assert!(
        human.stdout.contains(&format!(
            "snapshot {} was repaired before, as {}; removed it",
            &second[..8],
            &new[..8]
        )),
        "{}",
        human.stdout
    );
    let ids: Vec<String> = snapshot_list(&env)
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&first) && ids.contains(&new), "{ids:?}");
    let (finding, errors) = missing_pack_finding(&env, &pack);
    assert_eq!(errors, 1);
    assert_eq!(finding["affects"], serde_json::json!([]), "nothing uses it");

    // repair index drops the missing pack's entries: the repository checks clean.
    let index = env.lb(&["repair", "index", "--json"]).ok().json();
    assert_eq!(index["packs_missing"], 1, "{index}");
    assert!(index["entries_dropped"].as_u64().unwrap() >= 1, "{index}");
    let check = env.lb(&["check", "--read-data", "--json"]).ok().json();
    assert_eq!(check["errors"], 0, "{check}");
    assert_restores(&env, &new[..8], &src);
}

#[test]
fn repair_snapshots_forget_removes_the_original_at_once_and_lists_the_loss() {
    let Lost {
        env, lost, second, ..
    } = a_snapshot_with_a_missing_pack();
    let human = env.lb(&["repair", "snapshots", "--forget"]).ok();
    assert!(
        human
            .stdout
            .contains(&format!("  {}: blob ", lost.display())),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("the original was removed"),
        "{}",
        human.stdout
    );
    assert!(human
        .stdout
        .contains("checked 2 snapshot(s): 1 repaired, 1 intact"));
    assert!(
        human
            .stdout
            .contains("index lists 1 pack(s) that are missing"),
        "{}",
        human.stdout
    );
    let list = snapshot_list(&env);
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|s| s["id"] != second.as_str()));
    assert!(list.iter().any(|s| s["original"] == second.as_str()));
}

#[test]
fn repairs_wait_for_every_other_lock() {
    use lifeboat_core::lock::{acquire, LockKind};
    let env = Env::new();
    let src = env.path("src");
    write_tree(&src, &FILES[2..], 90);
    env.backup(&src, &[]);

    let mut backup = env.hold_a_backup_lock();
    for command in [["repair", "index"], ["repair", "snapshots"]] {
        let run = env.lb(&command);
        assert_eq!(run.code, 12, "{command:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("shared lock for backup"),
            "{}",
            run.stderr
        );
    }
    let dry = env.lb(&["repair", "index", "--dry-run"]);
    assert_eq!(dry.code, 0, "a dry run takes no lock: {}", dry.stderr);
    drop(backup.stdin.take());
    assert!(backup.wait().unwrap().success());

    let repo = open_repo(&env);
    let check = acquire(
        repo.storage().clone(),
        repo.keys().seal,
        LockKind::Maintenance,
        "check",
    )
    .unwrap();
    let run = env.lb(&["repair", "snapshots", "--json"]);
    assert_eq!(run.code, 12, "{}", run.stderr);
    assert_eq!(run.json()["exit_code"], 12);
    drop(check);
    env.lb(&["repair", "index"]).ok();
    env.lb(&["repair", "snapshots"]).ok();
    assert_eq!(env.locks(), 0, "the repairs released their locks");
}
