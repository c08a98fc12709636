//! Reading snapshots: snapshots, ls, find, dump, diff, snapshot selection, restore options.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{restored, Env};

fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("docs/old")).unwrap();
    std::fs::write(root.join("docs/report.txt"), "report v1\n").unwrap();
    std::fs::write(root.join("docs/old/lost.txt"), "the only copy\n").unwrap();
    std::fs::write(root.join("notes.md"), "# notes\n").unwrap();
    std::os::unix::fs::symlink("notes.md", root.join("link")).unwrap();
}

fn lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn snapshots_json_and_filters() {
    let env = Env::new();
    let src = env.path("src");
    tree(&src);
    let a = env.backup(&src, &["--tag", "daily", "--host", "web1"]);
    let b = env.backup(&src, &["--tag", "weekly", "--host", "web2"]);
    let all = env.lb(&["snapshots", "--json"]).ok().json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2);
    for field in [
        "id", "short_id", "time", "host", "paths", "tags", "parent", "summary",
    ] {
        assert!(all[0].get(field).is_some(), "missing {field}");
    }
    assert_eq!(all[0]["id"], a);
    assert_eq!(all[0]["short_id"], &a[..8]);
    assert_eq!(all[0]["paths"][0], src.to_str().unwrap());
    assert!(all[1]["parent"].is_null(), "another host is not a parent");
    let web2 = env
        .lb(&["snapshots", "--json", "--host", "web2"])
        .ok()
        .json();
    assert_eq!(web2.as_array().unwrap().len(), 1);
    assert_eq!(web2[0]["id"], b);
    let tagged = env
        .lb(&["snapshots", "--json", "--tag", "daily"])
        .ok()
        .json();
    assert_eq!(tagged[0]["id"], a);
    let by_path = env
        .lb(&["snapshots", "--json", "--path", "/nowhere"])
        .ok()
        .json();
    assert!(by_path.as_array().unwrap().is_empty());
    let text = env.lb(&["snapshots"]).ok().stdout;
    assert!(
        text.contains(&a[..8]) && text.contains("web1") && text.contains("2 snapshot(s)"),
        "{text}"
    );
}

#[test]
fn snapshot_selection_by_prefix_latest_and_time() {
    let env = Env::new();
    let src = env.path("src");
    tree(&src);
    let jan = env.backup(&src, &["--time", "2026-01-10T12:00:00Z"]);
    std::fs::write(src.join("docs/report.txt"), "report v2\n").unwrap();
    let feb = env.backup(&src, &["--time", "2026-02-10T12:00:00Z"]);
    let report = src.join("docs/report.txt");
    let report = report.to_str().unwrap();
    let dump = |spec: &str| env.lb(&["dump", spec, report]).ok().stdout;
    assert_eq!(dump("latest"), "report v2\n");
    assert_eq!(dump(&jan[..8]), "report v1\n");
    assert_eq!(dump(&feb), "report v2\n");
    assert_eq!(dump("@2026-01-31T00:00:00Z"), "report v1\n");
    assert_eq!(dump("@2026-02-10T12:00:00Z"), "report v2\n");
    assert_eq!(dump("@2026-03-01"), "report v2\n");
    let early = env.lb(&["dump", "@2025-12-31", report]);
    assert_eq!(early.code, 1);
    assert!(early.stderr.contains("not found"), "{}", early.stderr);
    let restored_dir = env.path("r");
    env.restore("@2026-01-15T00:00:00+00:00", &restored_dir, &[])
        .ok();
    assert_eq!(
        std::fs::read_to_string(restored(&restored_dir, Path::new(report))).unwrap(),
        "report v1\n"
    );
}

#[test]
fn ls_plain_long_and_json() {
    let env = Env::new();
    let src = env.path("src");
    tree(&src);
    let id = env.backup(&src, &[]);
    let docs = src.join("docs");
    let plain = env.lb(&["ls", &id, docs.to_str().unwrap()]).ok().stdout;
    let expected: Vec<String> = ["old", "old/lost.txt", "report.txt"]
        .iter()
        .map(|p| format!("{}/{p}", docs.display()))
        .collect();
    assert_eq!(plain.lines().collect::<Vec<_>>(), expected);
    let long = env
        .lb(&["ls", "latest", src.to_str().unwrap(), "--long"])
        .ok()
        .stdout;
    assert!(
        long.lines()
            .any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("link -> notes.md")),
        "{long}"
    );
    assert!(
        long.lines()
            .any(|l| l.starts_with("-rw") && l.contains(" 10 ") && l.ends_with("report.txt")),
        "{long}"
    );
    let json = lines(
        &env.lb(&["ls", "latest", docs.to_str().unwrap(), "--json"])
            .ok()
            .stdout,
    );
    assert_eq!(json[0]["message_type"], "snapshot");
    assert_eq!(json[1]["type"], "dir");
    assert_eq!(json[3]["size"], 10);
    let missing = env.lb(&["ls", "latest", "/no/such/path"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("not found in snapshot"),
        "{}",
        missing.stderr
    );
}

#[test]
fn find_lists_every_snapshot_holding_a_lost_file_newest_first() {
    let env = Env::new();
    let src = env.path("src");
    tree(&src);
    let first = env.backup(&src, &["--time", "2026-03-01T00:00:00Z"]);
    let second = env.backup(&src, &["--time", "2026-03-02T00:00:00Z"]);
    std::fs::remove_file(src.join("docs/old/lost.txt")).unwrap();
    env.backup(&src, &["--time", "2026-03-03T00:00:00Z"]);
    let found = lines(&env.lb(&["find", "lost.*", "--json"]).ok().stdout);
    let ids: Vec<_> = found
        .iter()
        .map(|m| m["snapshot_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        vec![second.clone(), first.clone()],
        "newest first, deleted in the third"
    );
    let lost = src.join("docs/old/lost.txt");
    assert_eq!(found[0]["path"], lost.to_str().unwrap());
    let by_path = lines(
        &env.lb(&[
            "find",
            &format!("{}/**/*.txt", src.display()),
            "--json",
            "--snapshot",
            &first,
        ])
        .ok()
        .stdout,
    );
    assert_eq!(by_path.len(), 2, "{by_path:?}");
    let text = env.lb(&["find", "lost.txt"]).ok().stdout;
    assert!(
        text.contains(&second[..8]) && text.contains("lost.txt"),
        "{text}"
    );
    // The last good copy is one restore away.
    let out = env.path("back");
    env.restore(&format!("{}:{}", &second[..8], lost.display()), &out, &[])
        .ok();
    assert_eq!(
        std::fs::read_to_string(out.join("lost.txt")).unwrap(),
        "the only copy\n"
    );
}

#[test]
fn dump_writes_files_raw_and_directories_as_tar() {
    let env = Env::new();
    let src = env.path("src");
    tree(&src);
    env.backup(&src, &[]);
    let notes = env
        .lb(&["dump", "latest", src.join("notes.md").to_str().unwrap()])
        .ok();
    assert_eq!(notes.raw_stdout, b"# notes\n");
    let tar = env
        .lb(&["dump", "latest", src.join("docs").to_str().unwrap()])
        .ok();
    let tar_file = env.path("docs.tar");
    std::fs::write(&tar_file, &tar.raw_stdout).unwrap();
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar_file)
        .output()
        .unwrap();
    assert!(listing.status.success());
    let names = String::from_utf8_lossy(&listing.stdout).into_owned();
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(
        names,
        vec!["docs/", "docs/old/", "docs/old/lost.txt", "docs/report.txt"]
    );
    let extract = env.path("x");
    std::fs::create_dir_all(&extract).unwrap();
    let ok = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar_file)
        .arg("-C")
        .arg(&extract)
        .status()
        .unwrap();
    assert!(ok.success());
    assert_eq!(
        std::fs::read_to_string(extract.join("docs/old/lost.txt")).unwrap(),
        "the only copy\n"
    );
}

#[test]
fn diff_shows_added_removed_modified_and_metadata() {
    let env = Env::new();
    let src = env.path("src");
    tree(&src);
    let a = env.backup(&src, &[]);
    std::fs::write(src.join("docs/report.txt"), "report v2, longer\n").unwrap();
    std::fs::remove_file(src.join("notes.md")).unwrap();
    std::fs::write(src.join("added.txt"), "new").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        src.join("docs/old/lost.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let b = env.backup(&src, &[]);
    let out = env.lb(&["diff", &a, &b]).ok().stdout;
    let has = |sym: &str, rel: &str| {
        out.lines()
            .any(|l| l.starts_with(sym) && l.ends_with(&format!("{}/{rel}", src.display())))
    };
    assert!(has("+", "added.txt"), "{out}");
    assert!(has("-", "notes.md"), "{out}");
    assert!(has("M", "docs/report.txt"), "{out}");
    assert!(has("U", "docs/old/lost.txt"), "{out}");
    assert!(
        !out.contains("link\n"),
        "unchanged entries are not listed: {out}"
    );
    let json = lines(&env.lb(&["diff", &a, &b, "--json"]).ok().stdout);
    let summary = json.last().unwrap();
    assert_eq!(summary["added"], 1);
    assert_eq!(summary["removed"], 1);
    assert_eq!(summary["modified"], 1);
    let same = env.lb(&["diff", &b, &b, "--json"]).ok();
    assert_eq!(
        lines(&same.stdout).len(),
        1,
        "identical snapshots differ in nothing"
    );
}

#[test]
fn restore_include_exclude_and_overwrite_modes() {
    let env = Env::new();
    let src = env.path("src");
    tree(&src);
    env.backup(&src, &[]);
    let inc = env.path("inc");
    env.restore(
        "latest",
        &inc,
        &["--include", "*.txt", "--exclude", "report.txt"],
    )
    .ok();
    let base = restored(&inc, &src);
    assert!(base.join("docs/old/lost.txt").exists());
    assert!(!base.join("docs/report.txt").exists());
    assert!(!base.join("notes.md").exists());

    let target = env.path("t");
    env.restore("latest", &target, &[]).ok();
    let notes = restored(&target, &src).join("notes.md");
    std::fs::write(&notes, "# local edit\n").unwrap();
    let never = env
        .restore("latest", &target, &["--overwrite", "never", "--json"])
        .ok()
        .json();
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "# local edit\n");
    assert!(never["files_skipped"].as_u64().unwrap() >= 4);
    let changed = env
        .restore("latest", &target, &["--overwrite", "if-changed", "--json"])
        .ok()
        .json();
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "# notes\n");
    assert_eq!(
        changed["files_restored"], 1,
        "only the edited file is rewritten: {changed}"
    );
    let always = env
        .restore("latest", &target, &["--overwrite", "always", "--json"])
        .ok()
        .json();
    assert_eq!(always["files_skipped"], 0);
    let leftovers: Vec<_> = common::repo_files(&target)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".lifeboat-tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn keys_add_list_remove_and_change_password() {
    let env = Env::new();
    let src = env.path("src");
    tree(&src);
    env.backup(&src, &[]);
    let pw2 = env.path("pw2");
    std::fs::write(&pw2, "second password\n").unwrap();
    env.lb(&[
        "key",
        "add",
        "--new-password-file",
        pw2.to_str().unwrap(),
        "--kdf-memory-kib",
        "64",
        "--kdf-iterations",
        "1",
    ])
    .ok();
    let keys = env.lb(&["key", "list", "--json"]).ok().json();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    let first_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let with_second = |args: &[&str]| {
        let out = env
            .command()
            .env_remove("LIFEBOAT_PASSWORD")
            .arg("--password-file")
            .arg(&pw2)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(with_second(&["snapshots"]).0, Some(0));
    let refuse = env.lb(&["key", "remove", &first_id[..8]]);
    assert_eq!(refuse.code, 1, "the key in use cannot be removed");
    assert!(
        refuse.stderr.contains("in use") || refuse.stderr.contains("opened with"),
        "{}",
        refuse.stderr
    );
    let (code, _, err) = with_second(&["key", "remove", &first_id[..8]]);
    assert_eq!(code, Some(0), "{err}");
    let old = env.lb(&["snapshots"]);
    assert_eq!(
        old.code, 11,
        "the removed password no longer opens the repository"
    );

    let pw3 = env.path("pw3");
    std::fs::write(&pw3, "third").unwrap();
    let (code, _, err) = with_second(&[
        "key",
        "passwd",
        "--new-password-file",
        pw3.to_str().unwrap(),
        "--kdf-memory-kib",
        "64",
        "--kdf-iterations",
        "1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(with_second(&["snapshots"]).0, Some(11));
    let third = env
        .command()
        .env("LIFEBOAT_PASSWORD", "third")
        .args(["dump", "latest", src.join("notes.md").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(third.status.success());
    assert_eq!(
        third.stdout, b"# notes\n",
        "data is readable with the new password without re-encryption"
    );
}

#[test]
fn key_file_repositories_open_without_password_stretching() {
    let env = common::Env::empty();
    let key = env.path("lifeboat.key");
    let key_arg = key.to_str().unwrap();
    let keyed = |args: &[&str]| {
        let mut cmd = env.command();
        cmd.env_remove("LIFEBOAT_PASSWORD")
            .arg("--key-file")
            .arg(&key)
            .args(args);
        cmd.output().unwrap()
    };
    let init = keyed(&["init"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    assert!(String::from_utf8_lossy(&init.stderr).contains(key_arg));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the generated key file is private");
    let secret = std::fs::read_to_string(&key).unwrap();
    assert_eq!(secret.trim().len(), 64, "256 bits as hex: {secret:?}");

    let keys = keyed(&["key", "list", "--json"]);
    assert!(
        keys.status.success(),
        "{}",
        String::from_utf8_lossy(&keys.stderr)
    );
    let listed = String::from_utf8_lossy(&keys.stdout);
    assert!(
        listed.contains("generated-key"),
        "unstretched slot: {listed}"
    );

    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"kept by a key file").unwrap();
    let backup = keyed(&["backup", "--quiet", src.to_str().unwrap()]);
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );

    // A password, even the key's own text typed with a typo, does not open the slot.
    let wrong = env.lb(&["snapshots"]);
    assert_eq!(wrong.code, 11, "{}", wrong.stderr);
    let mut other = secret.trim().to_string();
    other.replace_range(0..1, if other.starts_with('0') { "1" } else { "0" });
    std::fs::write(env.path("other.key"), &other).unwrap();
    let mut cmd = env.command();
    cmd.env_remove("LIFEBOAT_PASSWORD")
        .arg("--key-file")
        .arg(env.path("other.key"))
        .arg("snapshots");
    assert_eq!(cmd.output().unwrap().status.code(), Some(11));

    // --key-file and --password-file together are a usage error, not a guess.
    let both = keyed(&["--password-file", key_arg, "snapshots"]);
    assert_eq!(both.status.code(), Some(1));
}

/// A key file the user brings (here a hashed passphrase: 64 hex digits, like a generated key)
/// is not known to be random, so its slot keeps Argon2id; and the key file's existing
/// directory keeps its permissions.
#[test]
fn a_supplied_key_file_keeps_stretching_and_its_directory_keeps_its_mode() {
    let env = Env::empty();
    let shared = env.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let brought = shared.join("brought.key");
    std::fs::write(&brought, format!("{}\n", "ab".repeat(32))).unwrap();
    let mut cmd = env.command();
    cmd.env_remove("LIFEBOAT_PASSWORD")
        .arg("--key-file")
        .arg(&brought)
        .args(["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slot = std::fs::read_dir(env.repo.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let slot = std::fs::read_to_string(slot.path()).unwrap();
    assert!(
        slot.contains("argon2id"),
        "a brought key is stretched: {slot}"
    );

    let generated = shared.join("new.key");
    let env2 = Env::empty();
    let mut cmd = env2.command();
    cmd.env_remove("LIFEBOAT_PASSWORD")
        .arg("--key-file")
        .arg(&generated)
        .arg("init");
    assert!(cmd.output().unwrap().status.success());
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777, "an existing directory is left as it was");
}
