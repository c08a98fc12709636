//! Faults of the machine rather than of the repository (issue 8): a full disk, a read-only
//! file system, permission denied, a file changing while it is read, a file vanishing
//! mid-backup. Each must end in a clear message naming the path, the documented exit code and
//! a repository that `check --read-data` accepts, whose snapshots restore
//! (docs/reliability.md, "Environment faults").
//!
//! These tests need root: they mount small tmpfs file systems (to fill them, or to remount them
//! read-only) and run lifeboat as `nobody` where permissions matter (root reads everything).
//! Without root they fail with a message saying so; they are never skipped silently.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{manifest, random_bytes, restored, Env, Run};
use lifeboat_core::chunker::ChunkerParams;
use lifeboat_core::crypto::kdf::KdfParams;
use lifeboat_core::storage::LocalStorage;
use lifeboat_core::{InitOptions, Repository};
use serde_json::Value;

const NOBODY: u32 = 65534;

fn require_root(what: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{what} needs root (it mounts tmpfs file systems and runs lifeboat as uid {NOBODY}); \
         run the tests as root, as .ci/run does"
    );
}

/// A tmpfs mounted for one test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size_kib: u64) -> Tmpfs {
        require_root("mounting a tmpfs");
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_kib}k,mode=0755"))
            .arg("tmpfs")
            .arg(dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Tmpfs {
                dir: dir.to_path_buf(),
            },
            Ok(out) => panic!(
                "cannot mount a {size_kib} KiB tmpfs at {}: {}; these tests need root with \
                 CAP_SYS_ADMIN (a container without it cannot run them)",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!("cannot run mount(8): {e}; these tests need it"),
        }
    }

    /// `mount -o remount,OPTIONS`: `ro`, `rw`, `size=8m`.
    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount,{options} of {}: {}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a lifeboat a failed test left running): detach it now, freed when idle.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Runs `cmd` (its program may be the copy [`nobody_binary`] made).
fn run(cmd: &mut Command) -> Run {
    Run::from_output(common::output_of_copied_binary(cmd))
}

/// `cmd` as uid/gid 65534 (std drops root's supplementary groups too).
fn as_nobody(cmd: &mut Command) -> &mut Command {
    cmd.uid(NOBODY).gid(NOBODY)
}

/// The lifeboat binary where uid 65534 can run it: the build's own may sit below a directory
/// only root can enter (a checkout in /root). A hard link, or a copy, in a directory of its own
/// under the temporary directory, made once per test process.
fn nobody_binary() -> &'static Path {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join("lifeboat-test-nobody-bin");
        std::fs::create_dir_all(&dir).unwrap();
        chmod(&dir, 0o755);
        let staged = dir.join(format!("lifeboat.{}", std::process::id()));
        let _ = std::fs::remove_file(&staged);
        if std::fs::hard_link(common::binary(), &staged).is_err() {
            std::fs::copy(common::binary(), &staged).unwrap();
        }
        chmod(&staged, 0o755);
        let path = dir.join("lifeboat");
        std::fs::rename(&staged, &path).unwrap();
        path
    })
}

/// [`Env::command`] running [`nobody_binary`], to be run [`as_nobody`].
fn nobody_command(env: &Env) -> Command {
    env.command_of(nobody_binary(), &env.repo)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_nobody(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown -R {}", path.display());
}

/// Makes `dir` and everything below it readable (and searchable) by every user.
fn open_up(dir: &Path) {
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "chmod -R a+rX {}", dir.display());
}

/// The JSON lines of a `--json` run.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect()
}

fn messages<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["message_type"] == kind).collect()
}

fn summary(lines: &[Value]) -> &Value {
    messages(lines, "summary").pop().expect("a summary line")
}

/// Every file under `dir` whose name starts with `prefix` (temporary files left behind).
fn leftovers(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    common::repo_files(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect()
}

/// `check --read-data` as root: exit 0 and no error; returns the findings (notes).
#[track_caller]
fn check_passes(env: &Env) -> Vec<Value> {
    let run = env.lb(&["check", "--read-data", "--json"]);
    assert_eq!(
        run.code, 0,
        "check --read-data failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let report = run.json();
    assert_eq!(report["errors"], 0, "{report}");
    report["findings"].as_array().cloned().unwrap_or_default()
}

/// Restores `snapshot` into a fresh directory and compares it with `src` as it is now.
#[track_caller]
fn restores_to(env: &Env, snapshot: &str, src: &Path, target: &str) {
    let target = env.path(target);
    env.restore(snapshot, &target, &[]).ok();
    assert_eq!(
        manifest(&restored(&target, src)),
        manifest(src),
        "{snapshot}"
    );
}

fn assert_no_panic(run: &Run) {
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "lifeboat panicked:\n{}",
        run.stderr
    );
}

/// A repository at `env.repo` with packs of one frame each (2 MiB of small chunks), so that
/// a backup of a few MiB writes several packs (the disk then fills between two of them).
fn init_small_packs(env: &Env) {
    let options = InitOptions {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            ..KdfParams::default()
        },
        chunker: ChunkerParams {
            min_size: 16 * 1024,
            avg_size: 32 * 1024,
            max_size: 128 * 1024,
        },
        pack_size: 64 * 1024,
        ..InitOptions::default()
    };
    Repository::init(
        Arc::new(LocalStorage::new(&env.repo)),
        common::PASSWORD.as_bytes(),
        options,
    )
    .expect("init");
}

/// Writes into `path` until its file system is full.
fn fill_up(path: &Path) {
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(path)
        .unwrap();
    let block = vec![0x5au8; 4096];
    let mut at = 0u64;
    loop {
        match file.write_at(&block, at) {
            Ok(n) => at += n as u64,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

#[test]
fn disk_full_under_the_repository() {
    require_root("disk_full_under_the_repository");
    let mut env = Env::empty();
    let mount = Tmpfs::mount(&env.path("mnt"), 8 * 1024);
    env.repo = mount.dir.join("repo");
    init_small_packs(&env);

    let first = env.path("src/first");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::write(first.join("a.bin"), random_bytes(150_000, 1)).unwrap();
    std::fs::write(first.join("b.txt"), "small\n".repeat(1000)).unwrap();
    let snap_a = env.backup(&first, &[]);
    let packs_before = common::repo_files(&env.repo.join("data")).len();

    // 12 MiB of incompressible data into an 8 MiB file system: packs are stored until the
    // disk is full, then the pack being written fails.
    let big = env.path("src/big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..6 {
        std::fs::write(big.join(format!("{i}.bin")), random_bytes(2 << 20, 10 + i)).unwrap();
    }
    let mut cmd = env.command();
    let full = run(cmd.arg("backup").arg(&big));
    assert_no_panic(&full);
    assert_eq!(full.code, 1, "{}", full.stderr);
    assert!(
        full.stderr.contains("No space left on device"),
        "{}",
        full.stderr
    );
    assert!(
        full.stderr.contains(&*env.repo.to_string_lossy()),
        "the message names the repository: {}",
        full.stderr
    );
    assert!(
        full.stderr
            .contains("hint: the file system holding the repository is full"),
        "{}",
        full.stderr
    );
    assert_eq!(
        env.snapshot_count(),
        1,
        "the failed backup wrote no snapshot"
    );
    assert_eq!(env.locks(), 0, "the failed backup removed its lock");
    assert_eq!(
        leftovers(&env.repo, ".tmp-stage-"),
        Vec::<PathBuf>::new(),
        "no temporary file is left behind"
    );
    let stored_packs = common::repo_files(&env.repo.join("data")).len();
    assert!(
        stored_packs >= packs_before + 2,
        "the failed backup stored packs before the disk was full ({packs_before} before it, \
         {stored_packs} after)"
    );
    // Those packs are complete. The failed backup lists them in an index file when there is
    // room for one; if not, check notes them (not an error) and the next backup takes them in.
    let unindexed = check_passes(&env);
    for note in &unindexed {
        assert!(
            note["message"]
                .as_str()
                .unwrap()
                .contains("is not in the index"),
            "{note}"
        );
    }

    // The disk to the last byte: no lock can be written. Backups fail with the same clear
    // error; reading commands go on without a lock.
    fill_up(&mount.dir.join("filler"));
    let mut cmd = env.command();
    let no_lock = run(cmd.arg("backup").arg(&first));
    assert_no_panic(&no_lock);
    assert_eq!(no_lock.code, 1, "{}", no_lock.stderr);
    assert!(
        no_lock.stderr.contains("No space left on device")
            && no_lock
                .stderr
                .contains(&*env.repo.join("locks").to_string_lossy()),
        "{}",
        no_lock.stderr
    );
    env.lb(&["snapshots"]).ok();
    let target = env.path("restore-full-disk");
    let restore = env.restore(&snap_a, &target, &[]).ok();
    assert!(
        restore.stderr.contains("reading without a lock"),
        "{}",
        restore.stderr
    );
    assert_eq!(manifest(&restored(&target, &first)), manifest(&first));
    check_passes(&env);
    assert_eq!(leftovers(&env.repo, ".tmp-stage-"), Vec::<PathBuf>::new());

    // The volume is grown: the same backup now succeeds and reuses the packs stored before
    // the disk was full; the repository has no loose ends any more.
    std::fs::remove_file(mount.dir.join("filler")).unwrap();
    mount.remount("size=32m");
    let mut cmd = env.command();
    let again = run(cmd.args(["backup", "--json"]).arg(&big)).ok();
    let done = again.json();
    if unindexed.is_empty() {
        assert!(
            done["bytes_added"].as_u64().unwrap() < (12 << 20) - (2 << 20),
            "the packs of the failed backup are reused: {done}"
        );
    } else {
        // No room was left for their index file: the backup failed cleanly and removed its
        // lock, so nothing marks them as an interrupted run's to take in. They are stored
        // again, and `repair index` (or prune) deals with the unindexed copies.
        env.lb(&["repair", "index"]).ok();
    }
    let snap_b = done["snapshot_id"].as_str().unwrap().to_string();
    let notes = check_passes(&env);
    assert!(notes.is_empty(), "{notes:?}");
    restores_to(&env, &snap_a, &first, "restore-a");
    restores_to(&env, &snap_b, &big, "restore-b");
    env.backup(&first, &[]);
}

#[test]
fn disk_full_under_the_restore_target() {
    require_root("disk_full_under_the_restore_target");
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        std::fs::write(
            src.join(format!("{i}.bin")),
            random_bytes(300 * 1024, 100 + i),
        )
        .unwrap();
    }
    let snap = env.backup(&src, &[]);
    let mount = Tmpfs::mount(&env.path("mnt"), 1024);
    let target = mount.dir.join("out");

    let full = env.restore(&snap, &target, &[]);
    assert_no_panic(&full);
    assert_eq!(full.code, 1, "{}", full.stderr);
    assert!(
        full.stderr.contains("No space left on device"),
        "{}",
        full.stderr
    );
    assert!(
        full.stderr
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains(&*target.to_string_lossy())),
        "each failure names its path: {}",
        full.stderr
    );
    assert!(
        full.stderr.contains("entries could not be restored"),
        "{}",
        full.stderr
    );
    // What is there is complete: no file under its name with part of its content, and no
    // temporary file left.
    assert_eq!(leftovers(&target, ".lifeboat-tmp-"), Vec::<PathBuf>::new());
    let wanted = manifest(&src);
    let got = manifest(&restored(&target, &src));
    assert!(got.len() < wanted.len(), "the disk was too small for all");
    for (path, file) in &got {
        assert_eq!(
            Some(file),
            wanted.get(path),
            "{} is incomplete",
            path.display()
        );
    }

    // With room, the same restore completes.
    mount.remount("size=8m");
    env.restore(&snap, &target, &[]).ok();
    assert_eq!(manifest(&restored(&target, &src)), wanted);
}

#[test]
fn read_only_repository() {
    require_root("read_only_repository");
    let mut env = Env::empty();
    let mount = Tmpfs::mount(&env.path("mnt"), 8 * 1024);
    env.repo = mount.dir.join("repo");
    env.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .ok();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.bin"), random_bytes(200_000, 7)).unwrap();
    std::fs::write(src.join("sub/b.txt"), "read-only\n").unwrap();
    let snap = env.backup(&src, &[]);
    mount.remount("ro");

    // Writers fail at once, naming the repository and the cause.
    std::fs::write(src.join("new.txt"), "not backed up").unwrap();
    for args in [
        vec!["backup", &*src.to_string_lossy()],
        vec!["forget", "--keep-last", "1"],
        vec!["prune"],
    ] {
        let run = env.lb(&args);
        assert_no_panic(&run);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("Read-only file system")
                && run.stderr.contains(&*env.repo.to_string_lossy()),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("hint: the repository is on a read-only file system"),
            "{args:?}: {}",
            run.stderr
        );
    }
    std::fs::remove_file(src.join("new.txt")).unwrap();

    // Readers work without a lock, and say so.
    let listed = env.lb(&["snapshots", "--json"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let ls = env.lb(&["ls", &snap]).ok();
    assert!(ls.stdout.contains("sub/b.txt"), "{}", ls.stdout);
    assert!(
        ls.stderr.contains("reading without a lock"),
        "{}",
        ls.stderr
    );
    let dump = env.lb_os(&[
        "dump".as_ref(),
        snap.as_ref(),
        src.join("sub/b.txt").as_os_str(),
    ]);
    assert_eq!(dump.ok().stdout, "read-only\n");
    env.lb(&["stats"]).ok();
    let target = env.path("restored");
    let restore = env.restore(&snap, &target, &[]).ok();
    assert!(
        restore.stderr.contains("reading without a lock"),
        "{}",
        restore.stderr
    );
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
    let check = env.lb(&["check", "--read-data"]).ok();
    assert!(
        check.stderr.contains("checking without a lock"),
        "{}",
        check.stderr
    );
    assert!(check.stdout.contains("no errors found"), "{}", check.stdout);

    // Writable again: nothing was left behind, the next backup works.
    mount.remount("rw");
    assert!(check_passes(&env).is_empty());
    env.backup(&src, &[]);
}

#[test]
fn read_only_restore_target() {
    require_root("read_only_restore_target");
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "a\n").unwrap();
    let snap = env.backup(&src, &[]);
    let mount = Tmpfs::mount(&env.path("mnt"), 1024);
    std::fs::create_dir(mount.dir.join("existing")).unwrap();
    mount.remount("ro");

    for target in [mount.dir.join("new"), mount.dir.join("existing")] {
        let run = env.restore(&snap, &target, &[]);
        assert_no_panic(&run);
        assert_eq!(run.code, 1, "{}: {}", target.display(), run.stderr);
        assert!(
            run.stderr.contains("Read-only file system")
                && run.stderr.contains(&*target.to_string_lossy()),
            "the error names the target and the cause: {}",
            run.stderr
        );
    }
    drop(mount);
    check_passes(&env);
}

#[test]
fn permission_denied_on_source_files() {
    require_root("permission_denied_on_source_files");
    let env = Env::new();
    chmod(env.dir.path(), 0o755);
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("readable.txt"), "for everyone\n").unwrap();
    std::fs::write(src.join("sub/ok.bin"), random_bytes(200_000, 3)).unwrap();
    // Unreadable to nobody: a small file (read by the walker), a large one (read by a file
    // worker), a directory that cannot be listed, and one that can be listed but not entered.
    std::fs::write(src.join("secret.txt"), "root only\n").unwrap();
    std::fs::write(src.join("secret.bin"), random_bytes(300_000, 4)).unwrap();
    std::fs::create_dir_all(src.join("closed")).unwrap();
    std::fs::write(src.join("closed/inner.txt"), "hidden\n").unwrap();
    std::fs::create_dir_all(src.join("no-search")).unwrap();
    std::fs::write(src.join("no-search/listed.txt"), "named, not readable\n").unwrap();
    open_up(&src);
    chmod(&src.join("secret.txt"), 0o600);
    chmod(&src.join("secret.bin"), 0o600);
    chmod(&src.join("closed"), 0o700);
    chmod(&src.join("no-search"), 0o744);
    chown_nobody(&env.repo);

    let mut cmd = nobody_command(&env);
    let partial = run(as_nobody(cmd.args(["backup", "--json"]).arg(&src)));
    assert_no_panic(&partial);
    assert_eq!(partial.code, 3, "{}\n{}", partial.stdout, partial.stderr);
    let lines = json_lines(&partial.stdout);
    let errors: Vec<(String, String)> = messages(&lines, "error")
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let denied: Vec<&str> = errors
        .iter()
        .filter(|(_, message)| message.contains("Permission denied"))
        .map(|(path, _)| path.as_str())
        .collect();
    for unreadable in ["secret.txt", "secret.bin", "closed", "no-search/listed.txt"] {
        let path = src.join(unreadable);
        assert!(
            denied.contains(&&*path.to_string_lossy()),
            "{unreadable} is named: {errors:?}"
        );
    }
    assert_eq!(errors.len(), 4, "{errors:?}");
    let done = summary(&lines);
    assert_eq!(done["errors"], 4, "{done}");
    let snap = done["snapshot_id"].as_str().unwrap().to_string();

    // The snapshot holds everything else, and is consistent.
    let ls = env.lb(&["ls", &snap]).ok().stdout;
    for kept in ["readable.txt", "sub/ok.bin", "closed", "no-search"] {
        assert!(
            ls.lines().any(|l| l == src.join(kept).to_string_lossy()),
            "{kept}: {ls}"
        );
    }
    for left_out in ["secret.txt", "secret.bin", "inner.txt", "listed.txt"] {
        assert!(!ls.contains(left_out), "{left_out}: {ls}");
    }
    check_passes(&env);
    let target = env.path("restored");
    env.restore(&snap, &target, &[]).ok();
    let back = restored(&target, &src);
    assert_eq!(
        std::fs::read(back.join("sub/ok.bin")).unwrap(),
        std::fs::read(src.join("sub/ok.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(back.join("readable.txt")).unwrap(),
        "for everyone\n"
    );
    assert!(!back.join("secret.txt").exists());
}

#[test]
fn repository_and_restore_target_not_writable_by_the_user() {
    require_root("repository_and_restore_target_not_writable_by_the_user");
    let env = Env::new();
    chmod(env.dir.path(), 0o755);
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), random_bytes(100_000, 5)).unwrap();
    let snap = env.backup(&src, &[]);
    // root's repository, readable by all, writable by root only.
    open_up(&env.repo);
    open_up(&src);

    let mut cmd = nobody_command(&env);
    let refused = run(as_nobody(cmd.arg("backup").arg(&src)));
    assert_no_panic(&refused);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("Permission denied")
            && refused.stderr.contains(&*env.repo.to_string_lossy()),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains(&format!("hint: this user (uid {NOBODY}) may not write")),
        "{}",
        refused.stderr
    );
    assert_eq!(env.snapshot_count(), 1);

    // Reading works without a lock: into a directory of nobody's...
    let mine = env.path("nobody");
    std::fs::create_dir(&mine).unwrap();
    chown_nobody(&mine);
    let mut cmd = nobody_command(&env);
    let restore = run(as_nobody(
        cmd.args(["restore", &snap, "--target"])
            .arg(mine.join("out")),
    ))
    .ok();
    assert!(
        restore.stderr.contains("reading without a lock"),
        "{}",
        restore.stderr
    );
    assert_eq!(manifest(&restored(&mine.join("out"), &src)), manifest(&src));
    let mut cmd = nobody_command(&env);
    let check = run(as_nobody(cmd.args(["check", "--read-data"]))).ok();
    assert!(
        check.stderr.contains("checking without a lock"),
        "{}",
        check.stderr
    );

    // ...but not into root's.
    let roots = env.path("root-only");
    std::fs::create_dir(&roots).unwrap();
    chmod(&roots, 0o755);
    let mut cmd = nobody_command(&env);
    let denied = run(as_nobody(
        cmd.args(["restore", &snap, "--target"])
            .arg(roots.join("out")),
    ));
    assert_no_panic(&denied);
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    assert!(
        denied.stderr.contains("Permission denied")
            && denied
                .stderr
                .contains(&*roots.join("out").to_string_lossy()),
        "{}",
        denied.stderr
    );
    assert_eq!(env.locks(), 0);
    check_passes(&env);
}

/// The file position of `path` in process `pid` while the process has it open.
fn open_position(pid: u32, path: &Path) -> Option<u64> {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if std::fs::read_link(fd.path()).ok().as_deref() != Some(path) {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .ok()?;
        return info
            .lines()
            .find_map(|l| l.strip_prefix("pos:"))
            .and_then(|v| v.trim().parse().ok());
    }
    None
}

/// Large enough that reading it takes far longer than the polling below (it is sparse: no
/// disk space, and its zero chunks deduplicate).
const BIG: u64 = 48 << 20;

fn write_block(path: &Path, offset: u64, byte: u8) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&[byte; 4096], offset).unwrap();
}

/// A sparse file of [`BIG`] bytes whose first and last 4 KiB blocks are `byte`, with an old
/// modification time (so that any write changes it).
fn sparse_file(path: &Path, byte: u8) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(BIG).unwrap();
    drop(file);
    write_block(path, 0, byte);
    write_block(path, BIG - 4096, byte);
    filetime::set_file_mtime(path, filetime::FileTime::from_unix_time(1_600_000_000, 0)).unwrap();
}

/// The first and last byte of the file `path` as snapshot `snap` holds it, after checking
/// that it has [`BIG`] bytes and zeros between its first and last block.
fn stored_ends(env: &Env, snap: &str, path: &Path) -> (u8, u8) {
    let dump = env.lb_os(&["dump".as_ref(), snap.as_ref(), path.as_os_str()]);
    assert_eq!(dump.code, 0, "{}", dump.stderr);
    let data = dump.raw_stdout;
    assert_eq!(data.len() as u64, BIG);
    let (first, last) = (&data[..4096], &data[data.len() - 4096..]);
    assert!(first.iter().all(|b| *b == first[0]), "a torn block");
    assert!(last.iter().all(|b| *b == last[0]), "a torn block");
    assert!(data[4096..data.len() - 4096].iter().all(|b| *b == 0));
    (first[0], last[0])
}

/// The file is rewritten (first block, then last block) while lifeboat is in the middle of
/// reading it. Stored as read, it would be a state the file never had: the old first block
/// with the new last one. lifeboat sees the size or modification time change across the
/// read and reads it again.
#[test]
fn file_rewritten_while_read_is_read_again_never_stored_torn() {
    let mut hits = 0;
    for attempt in 0..5 {
        let env = Env::new();
        let src = env.path("src");
        std::fs::create_dir_all(&src).unwrap();
        let file = src.join("data.bin");
        sparse_file(&file, b'A');
        let mut child = env
            .command()
            .args(["backup", "--json"])
            .arg(&src)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut hit = false;
        loop {
            match open_position(pid, &file) {
                Some(pos) if (4 << 20..BIG / 2).contains(&pos) => {
                    write_block(&file, 0, b'B');
                    write_block(&file, BIG - 4096, b'B');
                    // Still in the same read, before the last block: a read that does not
                    // notice the change stores the old first block with the new last one.
                    hit =
                        open_position(pid, &file).is_some_and(|now| now >= pos && now < BIG - 4096);
                    break;
                }
                _ if Instant::now() > deadline => panic!("the backup never read the file"),
                _ => {}
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let out = Run::from_output(child.wait_with_output().unwrap());
        eprintln!("attempt {attempt}: the writes landed mid-read: {hit}");
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        let lines = json_lines(&out.stdout);
        assert!(messages(&lines, "warning").is_empty(), "{}", out.stdout);
        let snap = summary(&lines)["snapshot_id"].as_str().unwrap().to_string();
        let ends = stored_ends(&env, &snap, &file);
        assert_ne!(
            ends,
            (b'A', b'B'),
            "attempt {attempt}: a torn file was stored"
        );
        check_passes(&env);
        if hit {
            assert_eq!(ends, (b'B', b'B'), "read again after the change");
            hits += 1;
            break;
        }
    }
    assert!(
        hits > 0,
        "in 5 attempts the writes never landed while lifeboat was in the middle of the file"
    );
}

/// A file written to all the time (a busy log): both reads see it change, so what the second
/// read found is stored, with a warning naming it, and exit code 3.
#[test]
fn file_changing_during_both_reads_is_stored_with_a_warning() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let busy = src.join("busy.log");
    sparse_file(&busy, 1);
    std::fs::write(src.join("calm.txt"), "unchanged\n").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (busy, stop) = (busy.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut generation = 1u8;
            while !stop.load(Ordering::Relaxed) {
                generation = generation.wrapping_add(1).max(1);
                write_block(&busy, 0, generation);
                write_block(&busy, BIG - 4096, generation);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut cmd = env.command();
    let out = run(cmd.args(["backup", "--json"]).arg(&src));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_no_panic(&out);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let lines = json_lines(&out.stdout);
    let warnings = messages(&lines, "warning");
    assert_eq!(warnings.len(), 1, "{}", out.stdout);
    assert_eq!(warnings[0]["path"], busy.to_string_lossy().as_ref());
    assert!(
        warnings[0]["warning"]
            .as_str()
            .unwrap()
            .contains("changed while being read"),
        "{}",
        warnings[0]
    );
    let done = summary(&lines);
    assert_eq!(done["warnings"], 1, "{done}");
    assert_eq!(done["errors"], 0, "{done}");
    let snap = done["snapshot_id"].as_str().unwrap().to_string();

    // Stored as one read found it: the size the tree records is the bytes stored, the
    // repository is consistent, and the other files are intact.
    let (first, last) = stored_ends(&env, &snap, &busy);
    assert!(first > 1 && last > 1, "read while written: {first} {last}");
    check_passes(&env);
    let calm = env.lb_os(&[
        "dump".as_ref(),
        snap.as_ref(),
        src.join("calm.txt").as_os_str(),
    ]);
    assert_eq!(calm.ok().stdout, "unchanged\n");

    // In text mode the warning names the file too.
    let mut cmd = env.command();
    let writer = {
        let stop = Arc::new(AtomicBool::new(false));
        let (busy, flag) = (busy.clone(), stop.clone());
        (
            stop,
            std::thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    write_block(&busy, 0, 9);
                    std::thread::sleep(Duration::from_millis(2));
                }
            }),
        )
    };
    let text = run(cmd.args(["backup", "--force"]).arg(&src));
    writer.0.store(true, Ordering::Relaxed);
    writer.1.join().unwrap();
    assert_eq!(text.code, 3, "{}", text.stderr);
    assert!(
        text.stderr.lines().any(|l| l.starts_with("warning: ")
            && l.contains(&*busy.to_string_lossy())
            && l.contains("changed while being read")),
        "{}",
        text.stderr
    );
}

/// A file deleted after its directory was listed and before it was opened: every file worker
/// is busy with a large file when it is deleted, so its read comes after.
#[test]
fn file_vanishing_after_listing_is_reported_and_left_out() {
    let readers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    let mut hits = 0;
    for attempt in 0..5 {
        let env = Env::new();
        let src = env.path("src");
        std::fs::create_dir_all(&src).unwrap();
        let busy: Vec<PathBuf> = (0..readers)
            .map(|i| src.join(format!("a{i:03}.bin")))
            .collect();
        for file in &busy {
            sparse_file(file, b'x');
        }
        // Larger than what the walker reads itself: it waits for a file worker.
        let victim = src.join("b-victim.bin");
        std::fs::write(&victim, random_bytes(300_000, 9)).unwrap();
        std::fs::write(src.join("c-stays.txt"), "stays\n").unwrap();
        let mut child = env
            .command()
            .args(["backup", "--json"])
            .arg(&src)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let all_open = || busy.iter().all(|f| open_position(pid, f).is_some());
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut hit = false;
        loop {
            if all_open() {
                std::fs::remove_file(&victim).unwrap();
                // Every worker was still busy after the deletion: none had opened it.
                hit = all_open();
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "the backup never read the files");
            std::thread::sleep(Duration::from_micros(200));
        }
        let out = Run::from_output(child.wait_with_output().unwrap());
        eprintln!("attempt {attempt}: deleted while every worker was busy: {hit}");
        assert_no_panic(&out);
        let lines = json_lines(&out.stdout);
        let done = summary(&lines);
        let snap = done["snapshot_id"].as_str().unwrap().to_string();
        let ls = env.lb(&["ls", &snap]).ok().stdout;
        assert!(ls.contains("c-stays.txt"), "{ls}");
        check_passes(&env);
        let errors = messages(&lines, "error");
        if victim.exists() || errors.is_empty() {
            // Read before it was deleted (or not deleted): stored whole.
            assert_eq!(out.code, 0, "attempt {attempt}: {}", out.stdout);
            assert!(
                !hit,
                "the workers were busy, yet it was read: {}",
                out.stdout
            );
            continue;
        }
        assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
        assert_eq!(errors.len(), 1, "{}", out.stdout);
        assert_eq!(errors[0]["path"], victim.to_string_lossy().as_ref());
        let message = errors[0]["error"].as_str().unwrap();
        assert!(message.contains("vanished during the backup"), "{message}");
        assert_eq!(done["errors"], 1, "{done}");
        assert!(
            !ls.contains("b-victim.bin"),
            "left out of the snapshot: {ls}"
        );
        hits += 1;
        if hit {
            break;
        }
    }
    assert!(
        hits > 0,
        "in 5 attempts the file was never deleted between its listing and its read"
    );
}
