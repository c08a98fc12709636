//! Failing tests for bugs found in review. Each test states the behaviour the docs promise.
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::{Env, Run};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The command runs without root's privileges: as nobody (owning `target`) when the test runs
/// as root, as the current user otherwise.
fn unprivileged<'c>(cmd: &'c mut Command, target: &Path) -> &'c mut Command {
    if is_root() {
        nix::unistd::chown(target, Some(65534.into()), Some(65534.into())).unwrap();
        cmd.uid(65534).gid(65534);
    }
    cmd
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run lifeboat");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        raw_stdout: out.stdout,
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Makes `dir` and everything below it readable (and searchable) by every user.
fn open_up(dir: &Path) {
    let m = std::fs::symlink_metadata(dir).unwrap();
    if m.is_dir() {
        chmod(dir, 0o755);
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            open_up(&e.path());
        }
    } else if m.is_file() {
        chmod(dir, 0o644);
    }
}

/// Data and tree blobs share one id space and one dedup set (`BlobSaver::claim`, the index).
/// The empty tree serializes to the two bytes 01 00, so a file holding exactly those bytes
/// takes the id of every empty directory's tree as a *data* blob; the tree is then never
/// stored and `load_tree` refuses it ("names a data blob"). The backup exits 0.
#[test]
fn a_file_with_the_empty_tree_bytes_does_not_break_empty_directories() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("zz-empty")).unwrap();
    std::fs::write(src.join("a.bin"), [0x01u8, 0x00]).unwrap();
    let snap = env.backup(&src, &[]);
    let ls = env.lb(&["ls", &snap]);
    assert_eq!(ls.code, 0, "ls of a fresh snapshot fails: {}", ls.stderr);
    let target = env.path("target");
    let r = env.restore(&snap, &target, &[]);
    assert_eq!(r.code, 0, "restore fails: {}", r.stderr);
    assert!(common::restored(&target, &src).join("zz-empty").is_dir());
}

/// With the whole filesystem as the backup path (`/`), `top_device` is never set (it is set
/// only for leaf paths in `walk_virtual`), so `--one-file-system` treats every directory as a
/// mount point and stores all of them empty.
#[test]
fn one_file_system_backup_of_root_keeps_same_device_directories() {
    let root_dev = std::fs::metadata("/").unwrap().dev();
    assert_eq!(
        std::fs::metadata("/etc").unwrap().dev(),
        root_dev,
        "this test needs /etc on the root filesystem"
    );
    assert!(Path::new("/etc/passwd").is_file());
    let env = Env::new();
    // Keep the backup small: exclude every top-level entry but /etc.
    let mut args: Vec<String> = vec!["backup".into(), "--json".into(), "-x".into()];
    for e in std::fs::read_dir("/").unwrap().flatten() {
        let name = e.file_name().into_string().unwrap();
        if name != "etc" {
            args.push("--exclude".into());
            args.push(format!("/{name}"));
        }
    }
    args.push("/".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = env.lb(&args);
    assert!(r.code == 0 || r.code == 3, "{}", r.stderr);
    let snap = r.json()["snapshot_id"].as_str().unwrap().to_string();
    let ls = env.lb(&["ls", &snap, "/etc"]).ok();
    assert!(
        ls.stdout.lines().any(|l| l == "/etc/passwd"),
        "/etc (same device as /) was stored empty:\n{}",
        ls.stdout
    );
}

/// `--overwrite never` keeps an existing first member of a hard-link group; the deferred
/// link then makes a *new* path a hard link to that unrelated file: wrong content, reported as
/// restored, exit 0, and the user's file is now shared with the restored path.
#[test]
fn overwrite_never_does_not_link_a_new_path_to_unrelated_existing_content() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a"), b"snapshot content").unwrap();
    std::fs::hard_link(src.join("a"), src.join("d/b")).unwrap();
    let snap = env.backup(&src, &[]);
    let target = env.path("target");
    let in_target = common::restored(&target, &src);
    std::fs::create_dir_all(&in_target).unwrap();
    std::fs::write(in_target.join("a"), b"unrelated file the user keeps").unwrap();
    let _ = env.restore(&snap, &target, &["--overwrite", "never"]);
    assert_eq!(
        std::fs::read(in_target.join("a")).unwrap(),
        b"unrelated file the user keeps",
        "never keeps what exists"
    );
    assert_eq!(
        std::fs::read(in_target.join("d/b")).unwrap(),
        b"snapshot content",
        "d/b did not exist, so it must get the snapshot's content"
    );
}

/// Restore applies directory metadata parents-first (`dirs_done` is post-order and is walked
/// with `.rev()`), contrary to its comment. A non-root user restoring a directory whose mode
/// lacks the search bit can then no longer set mode and times of the directories inside it.
#[test]
fn non_root_restore_sets_metadata_of_directories_inside_an_unsearchable_one() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("p/c")).unwrap();
    std::fs::write(src.join("p/c/f"), b"x").unwrap();
    chmod(&src.join("p/c"), 0o700);
    filetime::set_file_mtime(
        src.join("p/c"),
        filetime::FileTime::from_unix_time(978_307_200, 0),
    )
    .unwrap();
    chmod(&src.join("p"), 0o600);
    let snap = env.backup(&src, &[]);
    open_up(env.dir.path());
    let target = env.path("target");
    std::fs::create_dir(&target).unwrap();
    let spec = format!("{snap}:{}", src.display());
    let r = run(unprivileged(&mut env.command(), &target)
        .args(["restore", &spec, "--target"])
        .arg(&target));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = std::fs::metadata(target.join("p/c")).unwrap();
    assert_eq!(
        (c.mode() & 0o7777, c.mtime()),
        (0o700, 978_307_200),
        "p/c lost its mode and time; stderr: {}",
        r.stderr
    );
    assert_eq!(
        std::fs::metadata(target.join("p")).unwrap().mode() & 0o7777,
        0o600
    );
}

/// `metadata::apply` sets the mode before the xattrs: for a read-only file restored by a
/// non-root user, setting `user.*` xattrs then fails (EACCES) and they are silently dropped
/// (a warning, exit 0).
#[test]
fn non_root_restore_keeps_xattrs_of_read_only_files() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("ro");
    std::fs::write(&file, b"data").unwrap();
    xattr::set(&file, "user.origin", b"hello").expect("user xattrs on the test filesystem");
    chmod(&file, 0o444);
    let snap = env.backup(&src, &[]);
    open_up(env.dir.path());
    let target = env.path("target");
    std::fs::create_dir(&target).unwrap();
    let spec = format!("{snap}:{}", src.display());
    let r = run(unprivileged(&mut env.command(), &target)
        .args(["restore", &spec, "--target"])
        .arg(&target));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        xattr::get(target.join("ro"), "user.origin").unwrap(),
        Some(b"hello".to_vec()),
        "xattr lost; stderr: {}",
        r.stderr
    );
}

fn rewrite_key(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    // Same directory entry, new content.
    std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// `Repository::open` skips key files that fail to *parse*, but a key file that parses and is
/// damaged further in (bad base64, bad salt), or a key of another repository with the same
/// password, ends the loop with an error, so a good key listed after it is never tried.
#[test]
fn a_damaged_or_foreign_key_file_does_not_stop_a_good_key() {
    let env = Env::new();
    let cheap = ["--kdf-memory-kib", "64", "--kdf-iterations", "1"];
    let mut add = env.command();
    add.env("LIFEBOAT_NEW_PASSWORD", "second password")
        .args(["key", "add"])
        .args(cheap);
    run(&mut add).ok();
    let keys: Vec<_> = std::fs::read_dir(env.repo.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 2);
    let open_with = |pw: &str| run(env.command().env("LIFEBOAT_PASSWORD", pw).arg("snapshots"));
    // Find which key belongs to which password: the current one is marked in `key list`.
    let list = env.lb(&["key", "list", "--json"]).ok().json();
    let first_pw_key = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Damage each key in turn (its directory entry stays where it is) and open with the other.
    for damaged in &keys {
        let backup = std::fs::read(damaged).unwrap();
        rewrite_key(damaged, |v| v["sealed_master"] = "not base64!".into());
        let is_first = damaged.file_name().unwrap().to_str().unwrap() == first_pw_key;
        let pw = if is_first {
            "second password"
        } else {
            common::PASSWORD
        };
        let r = open_with(pw);
        std::fs::write(damaged, backup).unwrap();
        assert_eq!(
            r.code, 0,
            "a damaged key stopped the good one from opening: {}",
            r.stderr
        );
    }
    // A key file of another repository with the same password (as an interrupted `init`
    // that is run again leaves behind: key written, config not yet).
    let other = Env::new();
    let foreign: Vec<_> = std::fs::read_dir(other.repo.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for (i, f) in foreign.iter().enumerate() {
        std::fs::copy(f, env.repo.join("keys").join(format!("{:064x}", i + 1))).unwrap();
    }
    let r = env.lb(&["snapshots"]);
    assert_eq!(
        r.code, 0,
        "a foreign key stopped the good one: {}",
        r.stderr
    );
}

/// Zero-config: the default repository exists but its key file was lost. `lifeboat init`
/// writes a *new* random key file, announces "Created a new repository ... keep a copy of that
/// key file", and only then fails because the repository exists. The operator is told to
/// safeguard a key that opens nothing, and later commands fail with "wrong password" (11)
/// instead of "key file is missing".
#[test]
fn init_on_an_existing_default_repository_does_not_write_a_new_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let lb = |args: &[&str]| {
        run(Command::new(common::binary())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .args(args)
            .stdin(std::process::Stdio::null()))
    };
    lb(&["backup", src.to_str().unwrap()]).ok();
    let key_file = home.join(".config/lifeboat/repository.key");
    std::fs::remove_file(&key_file).unwrap();
    let init = lb(&["init"]);
    assert_ne!(init.code, 0);
    assert!(
        !init.stderr.contains("Created a new repository"),
        "claims to have created a repository: {}",
        init.stderr
    );
    assert!(
        !key_file.exists(),
        "a key file that cannot open the repository was written"
    );
}

/// docs/cli.md: bad arguments exit 1, and with --json every fatal error prints
/// {"message_type":"error",...}. Usage errors found by clap exit 2 with plain text.
#[test]
fn usage_errors_exit_1_with_a_json_error_line() {
    let env = Env::new();
    let r = env.lb(&["--json", "restore", "latest"]); // --target missing
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = r.stdout.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("no JSON error line ({e}): stdout {:?}", r.stdout));
    assert_eq!(v["message_type"], "error");
}
