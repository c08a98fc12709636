//! Backup behaviour: dedup, parent snapshots, secrecy, exit codes, zero-config start.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{random_bytes, repo_files, restored, Env};

fn make_tree(root: &Path, seed: u64) {
    for d in 0..5 {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..20 {
            std::fs::write(
                dir.join(format!("small{f}.txt")),
                format!("file {d}/{f} {seed}\n").repeat(40),
            )
            .unwrap();
        }
    }
    std::fs::write(root.join("big1.bin"), random_bytes(6 * 1024 * 1024, seed)).unwrap();
    std::fs::write(
        root.join("big2.bin"),
        random_bytes(5 * 1024 * 1024, seed + 1),
    )
    .unwrap();
}

fn backup_json(env: &Env, path: &Path, extra: &[&str]) -> serde_json::Value {
    let mut cmd = env.command();
    cmd.args(["backup", "--json"]).args(extra).arg(path);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout.lines().last().unwrap();
    serde_json::from_str(line).unwrap()
}

#[test]
fn json_summary_has_every_field() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 1);
    let s = backup_json(&env, &src, &[]);
    for field in [
        "snapshot_id",
        "files_new",
        "files_changed",
        "files_unmodified",
        "dirs",
        "bytes_read",
        "bytes_added",
        "bytes_added_packed",
        "duration_seconds",
    ] {
        assert!(!s[field].is_null(), "missing {field} in {s}");
    }
    assert_eq!(s["files_new"], 102);
    assert_eq!(s["files_changed"], 0);
    assert_eq!(
        s["bytes_read"].as_u64().unwrap(),
        s["total_bytes_processed"].as_u64().unwrap()
    );
    assert!(
        s["bytes_added_packed"].as_u64().unwrap() < s["bytes_added"].as_u64().unwrap(),
        "small text compresses"
    );
}

#[test]
fn unchanged_files_are_not_read_again_and_changes_are_seen() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 2);
    let first = backup_json(&env, &src, &[]);
    let second = backup_json(&env, &src, &[]);
    assert_eq!(second["parent"], first["snapshot_id"]);
    assert_eq!(second["files_unmodified"], 102);
    assert_eq!(
        second["bytes_read"], 0,
        "an unchanged file costs a stat, not a read"
    );

    std::fs::write(src.join("d0/small0.txt"), "changed\n").unwrap();
    std::fs::write(src.join("new.txt"), "new\n").unwrap();
    let third = backup_json(&env, &src, &[]);
    assert_eq!(third["files_changed"], 1);
    assert_eq!(third["files_new"], 1);
    assert_eq!(third["files_unmodified"], 101);

    let forced = backup_json(&env, &src, &["--force"]);
    assert_eq!(forced["files_unmodified"], 0);
    assert_eq!(forced["bytes_read"], forced["total_bytes_processed"]);
    // Every data blob is found already stored; only trees whose parents' times moved are new.
    assert!(
        forced["bytes_added"].as_u64().unwrap() < 16 * 1024,
        "{forced}"
    );
}

/// An unchanged directory's tree is taken from the parent snapshot as it is; a change to a
/// directory's own metadata, or to a file's, must still reach the new snapshot.
#[test]
fn metadata_changes_under_unchanged_directories_reach_the_new_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 4);
    std::fs::create_dir_all(src.join("d1/deep/deeper")).unwrap();
    std::fs::write(src.join("d1/deep/deeper/leaf.txt"), "leaf\n").unwrap();
    backup_json(&env, &src, &[]);

    std::fs::set_permissions(src.join("d1/deep"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let leaf = src.join("d1/deep/deeper/leaf.txt");
    filetime::set_file_mtime(&leaf, filetime::FileTime::from_unix_time(1_500_000_000, 0)).unwrap();
    std::fs::set_permissions(
        src.join("d3/small7.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let second = backup_json(&env, &src, &[]);
    assert_eq!(second["files_changed"], 2, "{second}");

    let target = env.path("restored");
    env.lb(&["restore", "latest", "--target", target.to_str().unwrap()])
        .ok();
    let back = restored(&target, &src);
    let mode = |p: &str| {
        std::fs::metadata(back.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("d1/deep"), 0o700);
    assert_eq!(mode("d3/small7.txt"), 0o600);
    let untouched = std::fs::metadata(src.join("d3/small6.txt")).unwrap();
    assert_eq!(
        mode("d3/small6.txt"),
        untouched.permissions().mode() & 0o777
    );
    let leaf_mtime = std::fs::metadata(back.join("d1/deep/deeper/leaf.txt")).unwrap();
    assert_eq!(
        filetime::FileTime::from_last_modification_time(&leaf_mtime).unix_seconds(),
        1_500_000_000
    );
    assert_eq!(common::manifest(&back), common::manifest(&src));
}

#[test]
fn same_tree_again_adds_under_one_percent() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 3);
    let tree_size: u64 = 11 * 1024 * 1024;
    backup_json(&env, &src, &[]);
    let before = env.repo_size();
    // A copy of the same tree under another path: every file is new to the walker but not to
    // the repository.
    let copy = env.path("copy");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let s = backup_json(&env, &copy, &[]);
    let grown = env.repo_size() - before;
    assert!(
        s["bytes_added"].as_u64().unwrap() < 64 * 1024,
        "only trees are new: {s}"
    );
    assert!(
        grown * 100 < tree_size,
        "repository grew by {grown} bytes for an identical tree"
    );
}

#[test]
fn a_moved_file_adds_nothing_and_an_append_adds_about_one_chunk() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::write(src.join("a/big.bin"), random_bytes(24 * 1024 * 1024, 4)).unwrap();
    backup_json(&env, &src, &[]);

    std::fs::rename(src.join("a/big.bin"), src.join("b/moved.bin")).unwrap();
    let moved = backup_json(&env, &src, &[]);
    assert_eq!(moved["files_new"], 1);
    let data_added = moved["bytes_added"].as_u64().unwrap();
    assert!(
        data_added < 16 * 1024,
        "a moved file re-stored {data_added} bytes (only trees should change)"
    );

    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(src.join("b/moved.bin"))
        .unwrap();
    f.write_all(&random_bytes(1000, 5)).unwrap();
    drop(f);
    let appended = backup_json(&env, &src, &[]);
    let added = appended["bytes_added"].as_u64().unwrap();
    assert!(added > 1000, "the appended bytes must be stored");
    assert!(
        added < 8 * 1024 * 1024 + 16 * 1024,
        "an append re-stored {added} bytes: more than one chunk"
    );
}

#[test]
fn no_plaintext_reaches_the_repository() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let marker = "LIFEBOAT-PLAINTEXT-MARKER-7f3a";
    std::fs::write(src.join(format!("{marker}.txt")), marker.repeat(10_000)).unwrap();
    std::fs::write(src.join("short"), marker).unwrap();
    env.backup(&src, &["--tag", marker]);
    let files = repo_files(&env.repo);
    assert!(files.len() >= 5);
    for file in files {
        let data = std::fs::read(&file).unwrap();
        assert!(
            !data.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{} contains the plaintext marker",
            file.display()
        );
    }
}

#[test]
fn wrong_password_fails_with_11_and_writes_nothing() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 6);
    env.backup(&src, &[]);
    let before = repo_files(&env.repo);
    let run = {
        let mut cmd = env.command();
        cmd.env("LIFEBOAT_PASSWORD", "not the password")
            .arg("backup")
            .arg(&src);
        cmd.output().unwrap()
    };
    assert_eq!(run.status.code(), Some(11));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("wrong password"), "{stderr}");
    assert_eq!(
        repo_files(&env.repo),
        before,
        "a failed open must not write"
    );
}

#[test]
fn missing_repository_fails_with_10() {
    let env = Env::empty();
    let run = env.lb(&["snapshots"]);
    assert_eq!(run.code, 10, "{}", run.stderr);
    assert!(run.stderr.contains("no repository"), "{}", run.stderr);
    assert!(!env.repo.exists(), "reading must not create a repository");
}

#[test]
fn init_twice_refuses() {
    let env = Env::new();
    let run = env.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
}

#[test]
fn held_exclusive_lock_fails_with_12_and_names_holder() {
    use lifeboat_core::storage::LocalStorage;
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 7);
    let storage = std::sync::Arc::new(LocalStorage::new(&env.repo));
    let repo =
        lifeboat_core::Repository::open(storage.clone(), common::PASSWORD.as_bytes()).unwrap();
    let guard = lifeboat_core::lock::acquire(
        storage,
        repo.keys().seal,
        lifeboat_core::lock::LockKind::Exclusive,
        "repair",
    )
    .unwrap();
    let mut cmd = env.command();
    let out = cmd.arg("backup").arg(&src).output().unwrap();
    assert_eq!(out.status.code(), Some(12));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exclusive lock for repair"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    drop(guard);
    env.backup(&src, &[]);
}

#[test]
fn unreadable_file_and_directory_give_exit_3_and_the_rest_is_saved() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 8);
    let locked = src.join("d1/locked.txt");
    std::fs::write(&locked, "you cannot read me").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    // A directory that cannot be listed, between readable ones: its listing is requested
    // ahead of the walk, and its error must still land on it.
    let locked_dir = src.join("d2/locked-dir");
    std::fs::create_dir_all(locked_dir.join("inner")).unwrap();
    std::fs::write(locked_dir.join("inner/hidden.txt"), "hidden").unwrap();
    std::fs::create_dir_all(src.join("d2/open-dir")).unwrap();
    std::fs::write(src.join("d2/open-dir/seen.txt"), "seen").unwrap();
    std::fs::set_permissions(&locked_dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = env.command();
    cmd.args(["backup", "--json"]).arg(&src);
    if nix::unistd::geteuid().is_root() {
        // root reads everything: run as nobody, who owns the repository and home.
        let nobody = 65534;
        let chown = |p: &Path| {
            let s = std::process::Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(p)
                .status()
                .unwrap();
            assert!(s.success());
        };
        chown(&env.repo);
        std::fs::create_dir_all(env.home()).unwrap();
        chown(&env.home());
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        use std::os::unix::process::CommandExt;
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setgid(nix::unistd::Gid::from_raw(nobody))
                    .map_err(std::io::Error::from)?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(nobody))
                    .map_err(std::io::Error::from)
            });
        }
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("locked.txt"),
        "the error names the file: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("locked-dir") && l.contains("cannot list directory")),
        "the error names the directory: {stdout}"
    );
    let s: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(s["errors"], 2);
    assert_eq!(s["files_new"], 103, "everything else is in the snapshot");
    let id = s["snapshot_id"].as_str().unwrap().to_string();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&locked_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ls = env.lb(&["ls", &id]).ok();
    assert!(ls.stdout.contains("small19.txt"));
    assert!(ls.stdout.contains("seen.txt"));
    assert!(
        ls.stdout.contains("locked-dir"),
        "the directory itself is kept"
    );
    assert!(!ls.stdout.contains("locked.txt"));
    assert!(!ls.stdout.contains("hidden.txt"));
}

#[test]
fn zero_config_first_backup_creates_repository_and_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let src = dir.path().join("src");
    make_tree(&src, 9);
    let run = |args: &[&str]| {
        std::process::Command::new(common::binary())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let src_str = src.to_str().unwrap();
    let first = run(&["backup", src_str]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stderr = String::from_utf8_lossy(&first.stderr);
    let key_file = home.join(".config/lifeboat/repository.key");
    assert!(
        stderr.contains(key_file.to_str().unwrap()),
        "says where the key is: {stderr}"
    );
    assert!(
        stderr.contains("without it"),
        "says what losing it means: {stderr}"
    );
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(home
        .join(".local/share/lifeboat/repository/config")
        .exists());

    let second = run(&["backup", src_str]);
    assert!(second.status.success());
    assert!(
        !String::from_utf8_lossy(&second.stderr).contains("key"),
        "the key notice is said once"
    );
    let list = run(&["snapshots", "--json"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

#[test]
fn dry_run_writes_nothing() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 10);
    let before = repo_files(&env.repo);
    let s = backup_json(&env, &src, &["--dry-run"]);
    assert!(s["snapshot_id"].is_null());
    assert!(
        s["bytes_added"].as_u64().unwrap() > 10 * 1024 * 1024,
        "reports what it would add: {s}"
    );
    assert_eq!(repo_files(&env.repo), before);
}

#[test]
fn excludes_by_name_by_path_and_from_file() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 11);
    std::fs::write(src.join("d2/skip.tmp"), "tmp").unwrap();
    let exclude_file = env.path("excludes");
    std::fs::write(
        &exclude_file,
        format!("# comment\n\n{}/d3\n", src.display()),
    )
    .unwrap();
    let id = env.backup(
        &src,
        &[
            "--exclude",
            "*.tmp",
            "--exclude",
            "big1.bin",
            "--exclude-file",
            exclude_file.to_str().unwrap(),
        ],
    );
    let ls = env.lb(&["ls", &id]).ok().stdout;
    assert!(!ls.contains("skip.tmp"));
    assert!(!ls.contains("big1.bin"));
    assert!(ls.contains("big2.bin"));
    assert!(!ls.contains("/d3/"), "{ls}");
    assert!(ls.contains("/d4/small3.txt"));
}

#[test]
fn stdin_backup_round_trips_through_dump() {
    let env = Env::new();
    let data = random_bytes(3 * 1024 * 1024, 12);
    let mut cmd = env.command();
    cmd.args([
        "backup",
        "--stdin",
        "--stdin-filename",
        "dump.sql",
        "--json",
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dumped = env.lb(&["dump", "latest", "/dump.sql"]).ok();
    assert_eq!(dumped.raw_stdout, data);
    let bad = env.lb(&["backup", "--stdin", "--stdin-filename", "../escape"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("plain file name"), "{}", bad.stderr);
}

#[test]
fn bad_arguments_give_clear_errors() {
    let env = Env::new();
    let r = env.lb(&["restore", "nonsense!", "--target", "/tmp/x"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is not a snapshot"), "{}", r.stderr);
    let r = env.lb(&["backup", "--compression", "extreme", "/tmp"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("invalid compression"), "{}", r.stderr);
    let r = env.lb(&["backup", env.path("does-not-exist").to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("does-not-exist"), "{}", r.stderr);
    let r = env.lb(&[
        "restore",
        "latest",
        "--target",
        env.path("t").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("snapshot latest not found"),
        "{}",
        r.stderr
    );
}

#[test]
fn compression_levels_are_accepted() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 13);
    let off = backup_json(&env, &src, &["--compression", "off", "--force"]);
    let target = env.path("t");
    env.restore("latest", &target, &["--verify"]).ok();
    let r = std::process::Command::new("diff")
        .arg("-r")
        .arg(&src)
        .arg(common::restored(&target, &src))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stdout));
    assert!(off["bytes_added"].as_u64().unwrap() >= off["bytes_read"].as_u64().unwrap());
}

#[test]
fn one_file_system_stops_at_mount_points() {
    use std::os::unix::fs::MetadataExt;
    // /dev/shm is its own filesystem (tmpfs) inside /dev on Linux; a file there is visible
    // from a backup of /dev only when crossing filesystems is allowed.
    let dev = std::fs::metadata("/dev").unwrap().dev();
    let shm = std::fs::metadata("/dev/shm").unwrap().dev();
    assert_ne!(
        dev, shm,
        "this test needs /dev/shm mounted separately from /dev"
    );
    let env = Env::new();
    let marker = tempfile::Builder::new()
        .prefix("lifeboat-xdev-")
        .tempfile_in("/dev/shm")
        .unwrap();
    let name = marker
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let crossing = env.backup(Path::new("/dev"), &[]);
    let staying = env.backup(Path::new("/dev"), &["--one-file-system"]);
    let listed = |id: &str| env.lb(&["ls", id, "/dev"]).ok().stdout;
    assert!(listed(&crossing).contains(&name));
    let stayed = listed(&staying);
    assert!(!stayed.contains(&name), "{stayed}");
    assert!(
        stayed.lines().any(|l| l == "/dev/shm"),
        "the mount point itself is kept as an empty directory"
    );
}

#[test]
fn verbose_lists_each_file_with_what_happened_to_it() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 14);
    let first = env.lb(&["backup", "-v", src.to_str().unwrap()]).ok().stdout;
    let line = |change: &str, rel: &str| format!("{change:<9} {}", src.join(rel).display());
    assert!(
        first.lines().any(|l| l == line("new", "d0/small0.txt")),
        "{first}"
    );
    std::fs::write(src.join("d0/small0.txt"), "edited").unwrap();
    let second = env
        .lb(&["backup", "--verbose", src.to_str().unwrap()])
        .ok()
        .stdout;
    assert!(
        second
            .lines()
            .any(|l| l == line("modified", "d0/small0.txt")),
        "{second}"
    );
    assert!(
        second.lines().any(|l| l == line("unchanged", "big1.bin")),
        "{second}"
    );
    assert_eq!(
        second
            .lines()
            .filter(|l| l.starts_with("unchanged"))
            .count(),
        101
    );
}

/// Unchanged files take their xattrs from the parent snapshot without listing them again;
/// changing an xattr changes the ctime, so the next backup sees it.
#[test]
fn xattrs_carry_over_for_unchanged_files_and_changes_are_seen() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("tagged.txt");
    std::fs::write(&file, b"content stays the same").unwrap();
    xattr::set(&file, "user.colour", b"blue").expect("user xattrs on the test filesystem");
    let colour_after_restore = |snapshot: &str, dir: &str| {
        let target = env.path(dir);
        env.restore(snapshot, &target, &[]).ok();
        xattr::get(restored(&target, &file), "user.colour").unwrap()
    };
    env.backup(&src, &[]);
    let second = env.backup(&src, &[]);
    assert_eq!(
        colour_after_restore(&second, "t2").as_deref(),
        Some(&b"blue"[..]),
        "an unchanged file keeps its xattrs"
    );

    xattr::set(&file, "user.colour", b"green").unwrap();
    let third = env.backup(&src, &[]);
    assert_eq!(
        colour_after_restore(&third, "t3").as_deref(),
        Some(&b"green"[..]),
        "a changed xattr is backed up"
    );
}

/// The walker opens small files ahead of reading them (so a cold page cache reads them in
/// parallel); on a deep tree every level has its own look-ahead window, and without a global
/// cap the open files would run into the process limit and the backup would fail on them.
#[test]
fn a_deep_tree_of_small_files_backs_up_under_a_low_open_file_limit() {
    let env = Env::new();
    let src = env.path("deep");
    let mut dir = src.clone();
    for level in 0..12 {
        // "a" sorts before the files: the level's window of opened files stays open while
        // the walk descends into it.
        dir = dir.join(format!("a{level}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..150 {
            let body = format!("level {level} file {f}\n").repeat(1 + f % 7);
            std::fs::write(dir.join(format!("f{f:03}")), body).unwrap();
        }
    }
    // 12 levels x 128 look-ahead files would be 1536 descriptors: far over the limit of 200.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 200 && exec \"$0\" \"$@\"")
        .arg(common::binary())
        .args(env.command().get_args())
        .envs(env.command().get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env_remove("LIFEBOAT_KEY_FILE")
        .args(["backup", "--json"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backup under ulimit -n 200 failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let target = env.path("out");
    env.restore("latest", &target, &[]).ok();
    let back = restored(&target, &src);
    let mut dir = src.clone();
    let mut back_dir = back.clone();
    for level in 0..12 {
        dir = dir.join(format!("a{level}"));
        back_dir = back_dir.join(format!("a{level}"));
        for f in 0..150 {
            let name = format!("f{f:03}");
            assert_eq!(
                std::fs::read(back_dir.join(&name)).unwrap(),
                std::fs::read(dir.join(&name)).unwrap(),
                "level {level} {name}"
            );
        }
    }
}
