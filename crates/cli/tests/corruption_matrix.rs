//! The corruption matrix: each kind of object (data pack, tree pack, index file, snapshot, key
//! file, config, lock) flipped, truncated or deleted in storage. For every cell: what `check
//! --read-data` says (it must name the damaged object), what still restores (everything the
//! damage does not hold), and what gets the repository back to a clean check. The table in
//! docs/reliability.md ("Corruption matrix") is this test's findings.
//!
//! The fixture: source A backed up twice (A1, then A2 with one more file), source B once (a
//! large file and a small one). The damaged data pack is the one holding B's large file, the
//! tree pack holds B's root directory, the index file names that data pack, the snapshot is
//! A1 (so A2 names it as the one before it).

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use common::{random_bytes, restored, Env, Run};
use lifeboat_core::ops::walk::{locate, Located};

#[derive(Clone, Copy, Debug)]
enum Damage {
    Flip,
    Truncate,
    Delete,
}

const DAMAGES: [Damage; 3] = [Damage::Flip, Damage::Truncate, Damage::Delete];

struct Fixture {
    env: Env,
    /// A pristine copy of the repository; each cell damages a copy of it.
    pristine: PathBuf,
    src_a: PathBuf,
    src_b: PathBuf,
    a1: String,
    a2: String,
    b: String,
    /// The data pack holding B's large file, the pack holding B's root tree, the index file
    /// naming the data pack.
    data_pack: String,
    /// Whether B's small file is stored in the same pack (a shared frame at its end).
    small_b_in_data_pack: bool,
    tree_pack: String,
    index_file: String,
    /// A lock object saved from a running backup.
    lock: PathBuf,
}

fn fixture() -> Fixture {
    let env = Env::new();
    let src_a = env.path("src/a");
    let src_b = env.path("src/b");
    std::fs::create_dir_all(src_a.join("docs")).unwrap();
    std::fs::create_dir_all(&src_b).unwrap();
    std::fs::write(src_a.join("big-a.bin"), random_bytes(1_500_000, 1)).unwrap();
    std::fs::write(src_a.join("docs/notes.txt"), b"notes of A\n").unwrap();
    std::fs::write(src_b.join("big-b.bin"), random_bytes(2_000_000, 2)).unwrap();
    std::fs::write(src_b.join("small-b.txt"), b"small file of B\n").unwrap();
    let a1 = env.backup(&src_a, &[]);
    std::fs::write(src_a.join("docs/later.txt"), b"added before A2\n").unwrap();
    let a2 = env.backup(&src_a, &[]);
    let b = env.backup(&src_b, &[]);

    let repo = common::open_repo(&env);
    let index = repo.load_index().unwrap();
    let snapshots = repo.snapshots().unwrap();
    let b_tree = snapshots.iter().find(|s| s.id == b).unwrap().snapshot.tree;
    let big_b = src_b.join("big-b.bin");
    let content = match locate(&repo, &index, b_tree, big_b.as_os_str().as_bytes(), "b").unwrap() {
        Located::Node { node, .. } => node.content.clone(),
        Located::Root(_) => panic!("big-b.bin is the root"),
    };
    let pack_of = |id| {
        index
            .pack(index.get(id).expect("indexed").pack)
            .name
            .clone()
    };
    let data_pack = pack_of(&content[0]);
    assert!(
        content.iter().all(|id| pack_of(id) == data_pack),
        "big-b.bin is in one pack"
    );
    let small_b = src_b.join("small-b.txt");
    let small_content =
        match locate(&repo, &index, b_tree, small_b.as_os_str().as_bytes(), "b").unwrap() {
            Located::Node { node, .. } => node.content.clone(),
            Located::Root(_) => panic!("small-b.txt is the root"),
        };
    let small_b_in_data_pack = small_content.iter().any(|id| pack_of(id) == data_pack);
    let tree_pack = pack_of(&b_tree);
    let index_file = repo
        .read_index_files(Vec::new, |names, name, file| {
            if file.packs.iter().any(|p| p.name == data_pack) {
                names.push(name.to_string());
            }
        })
        .unwrap()
        .remove(0);

    // A lock as a running backup leaves it, saved aside.
    let before: Vec<_> = entries(&env.repo.join("locks"));
    let mut holder = env.hold_a_backup_lock();
    let lock_file = entries(&env.repo.join("locks"))
        .into_iter()
        .find(|p| !before.contains(p))
        .expect("the backup's lock");
    let lock = env.path("saved-lock");
    std::fs::copy(&lock_file, &lock).unwrap();
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());

    let pristine = env.path("pristine");
    copy_dir(&env.repo, &pristine);
    Fixture {
        env,
        pristine,
        src_a,
        src_b,
        a1,
        a2,
        b,
        data_pack,
        small_b_in_data_pack,
        tree_pack,
        index_file,
        lock,
    }
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// One cell: a fresh copy of the pristine repository, with one object damaged.
struct Cell<'f> {
    fx: &'f Fixture,
    repo: PathBuf,
    what: String,
}

impl<'f> Cell<'f> {
    fn new(fx: &'f Fixture, what: &str, damage: Damage, object: impl Fn(&Path) -> PathBuf) -> Self {
        let repo = fx.env.path(&format!("cell-{what}-{damage:?}"));
        copy_dir(&fx.pristine, &repo);
        let target = object(&repo);
        apply(&target, damage);
        Cell {
            fx,
            repo,
            what: format!("{what} {damage:?}"),
        }
    }

    fn lb(&self, args: &[&str]) -> Run {
        let out = self
            .fx
            .env
            .command_at(&self.repo)
            // Every cell is a copy of one repository: to a shared record of what this client
            // wrote, each new cell would look like the previous one rolled back.
            .env("LIFEBOAT_STATE_DIR", self.repo.with_extension("state"))
            .args(args)
            .output()
            .expect("run lifeboat");
        Run::from_output(out)
    }

    /// `check --read-data`: its exit code, and whether its output names `object`.
    #[track_caller]
    fn check_names(&self, code: i32, object: &str) {
        let run = self.lb(&["check", "--read-data"]);
        assert_no_panic(&run, &self.what);
        assert_eq!(
            run.code, code,
            "{}: check\n{}{}",
            self.what, run.stdout, run.stderr
        );
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(
            said.contains(object),
            "{}: check does not name {object}:\n{said}",
            self.what
        );
    }

    #[track_caller]
    fn check_clean(&self) {
        let run = self.lb(&["check", "--read-data"]);
        assert_eq!(
            run.code, 0,
            "{}: check after repair\n{}{}",
            self.what, run.stdout, run.stderr
        );
    }

    /// Restores `snapshot` and returns the run and the target.
    fn restore(&self, snapshot: &str) -> (Run, PathBuf) {
        let target = self.repo.with_extension(format!("restore-{snapshot}"));
        let _ = std::fs::remove_dir_all(&target);
        let target_arg = target.to_str().unwrap().to_string();
        let run = self.lb(&["restore", snapshot, "--target", &target_arg]);
        assert_no_panic(&run, &self.what);
        (run, target)
    }

    /// `snapshot` restores completely and every file equals its source.
    #[track_caller]
    fn restores_whole(&self, snapshot: &str, files: &[PathBuf]) {
        let (run, target) = self.restore(snapshot);
        assert_eq!(
            run.code, 0,
            "{}: restore {snapshot}\n{}",
            self.what, run.stderr
        );
        for f in files {
            assert_same(f, &target, &self.what);
        }
    }

    #[track_caller]
    fn fails_cleanly(&self, args: &[&str], code: i32, says: &str) {
        let run = self.lb(args);
        assert_no_panic(&run, &self.what);
        assert_eq!(run.code, code, "{}: {args:?}\n{}", self.what, run.stderr);
        assert!(
            run.stderr.contains(says),
            "{}: {args:?} does not say {says:?}:\n{}",
            self.what,
            run.stderr
        );
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.lb(args);
        assert_eq!(
            run.code, 0,
            "{}: {args:?}\n{}{}",
            self.what, run.stdout, run.stderr
        );
        run
    }
}

fn apply(target: &Path, damage: Damage) {
    match damage {
        Damage::Flip => {
            let mut bytes = std::fs::read(target).unwrap();
            let at = bytes.len() / 2;
            bytes[at] ^= 0x01;
            std::fs::write(target, bytes).unwrap();
        }
        Damage::Truncate => {
            let bytes = std::fs::read(target).unwrap();
            std::fs::write(target, &bytes[..bytes.len() / 2]).unwrap();
        }
        Damage::Delete => std::fs::remove_file(target).unwrap(),
    }
}

#[track_caller]
fn assert_no_panic(run: &Run, what: &str) {
    assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
}

#[track_caller]
fn assert_same(src_file: &Path, target: &Path, what: &str) {
    let copy = restored(target, src_file);
    let got = std::fs::read(&copy)
        .unwrap_or_else(|e| panic!("{what}: {} not restored: {e}", copy.display()));
    assert!(
        got == std::fs::read(src_file).unwrap(),
        "{what}: {} differs",
        copy.display()
    );
}

fn pack_path(repo: &Path, name: &str) -> PathBuf {
    repo.join("data").join(&name[..2]).join(name)
}

impl Fixture {
    fn files_a2(&self) -> Vec<PathBuf> {
        ["big-a.bin", "docs/notes.txt", "docs/later.txt"]
            .iter()
            .map(|f| self.src_a.join(f))
            .collect()
    }
}

#[test]
fn a_damaged_data_pack_costs_exactly_its_files_and_repair_makes_check_pass() {
    let fx = fixture();
    for damage in DAMAGES {
        let cell = Cell::new(&fx, "data pack", damage, |repo| {
            pack_path(repo, &fx.data_pack)
        });
        cell.check_names(1, &fx.data_pack);
        // A's snapshots do not use the pack. B loses its large file; a pack cut short or
        // gone also costs the small file when its (shared) frame is in the same pack.
        cell.restores_whole(&fx.a2, &fx.files_a2());
        let small_lost = fx.small_b_in_data_pack && !matches!(damage, Damage::Flip);
        let (run, target) = cell.restore(&fx.b);
        assert_eq!(run.code, 1, "{}: restore B\n{}", cell.what, run.stderr);
        let errors = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count();
        assert_eq!(
            errors,
            1 + small_lost as usize,
            "{}: {}",
            cell.what,
            run.stderr
        );
        assert!(
            run.stderr.contains("big-b.bin"),
            "{}: {}",
            cell.what,
            run.stderr
        );
        assert!(!restored(&target, &fx.src_b.join("big-b.bin")).exists());
        if small_lost {
            assert!(
                run.stderr.contains("small-b.txt"),
                "{}: {}",
                cell.what,
                run.stderr
            );
        } else {
            assert_same(&fx.src_b.join("small-b.txt"), &target, &cell.what);
        }
        // Repair: an index without what is lost (with --read-data: a flipped blob in a pack
        // whose header is intact too), B rewritten without the lost file, and the damaged
        // data, now used by no snapshot, pruned.
        cell.ok(&["repair", "index", "--read-data"]);
        cell.ok(&["repair", "snapshots", "--forget"]);
        cell.ok(&["prune"]);
        cell.check_clean();
        let target = cell.repo.with_extension("repaired-b");
        let (src_b, target_arg) = (fx.src_b.display().to_string(), target.display().to_string());
        let run = cell.lb(&[
            "restore",
            "latest",
            "--path",
            &src_b,
            "--target",
            &target_arg,
        ]);
        assert_eq!(
            run.code, 0,
            "{}: restore of repaired B\n{}",
            cell.what, run.stderr
        );
        if !small_lost {
            assert_same(&fx.src_b.join("small-b.txt"), &target, &cell.what);
        }
    }
}

#[test]
fn a_damaged_tree_pack_costs_the_directories_it_holds() {
    let fx = fixture();
    assert_ne!(fx.tree_pack, fx.data_pack);
    for damage in DAMAGES {
        let cell = Cell::new(&fx, "tree pack", damage, |repo| {
            pack_path(repo, &fx.tree_pack)
        });
        cell.check_names(1, &fx.tree_pack);
        cell.restores_whole(&fx.a2, &fx.files_a2());
        let (run, _) = cell.restore(&fx.b);
        assert_eq!(run.code, 1, "{}: restore B\n{}", cell.what, run.stderr);
        assert!(
            run.stderr.contains("listing lost"),
            "{}: {}",
            cell.what,
            run.stderr
        );
        cell.ok(&["repair", "index"]);
        cell.ok(&["repair", "snapshots", "--forget"]);
        cell.ok(&["prune"]);
        cell.check_clean();
        cell.restores_whole(&fx.a2, &fx.files_a2());
    }
}

#[test]
fn a_damaged_index_file_loses_nothing_still_stored() {
    let fx = fixture();
    for damage in DAMAGES {
        let cell = Cell::new(&fx, "index", damage, |repo| {
            repo.join("index").join(&fx.index_file)
        });
        match damage {
            // An index file that is there but unreadable: named, and its packs are indexed
            // from their own headers, so every snapshot still restores whole.
            Damage::Flip | Damage::Truncate => {
                cell.check_names(1, &fx.index_file);
                let files_b = [fx.src_b.join("big-b.bin"), fx.src_b.join("small-b.txt")];
                cell.restores_whole(&fx.b, &files_b);
            }
            // A deleted index file leaves nothing to name: check reports its packs as not
            // indexed and the blobs as missing from the index.
            Damage::Delete => cell.check_names(1, &fx.data_pack),
        }
        cell.restores_whole(&fx.a2, &fx.files_a2());
        let run = cell.ok(&["backup", &fx.src_a.display().to_string()]);
        assert_no_panic(&run, &cell.what);
        cell.ok(&["repair", "index"]);
        cell.check_clean();
        let files_b = [fx.src_b.join("big-b.bin"), fx.src_b.join("small-b.txt")];
        cell.restores_whole(&fx.b, &files_b);
    }
}

#[test]
fn a_damaged_snapshot_stops_neither_backups_nor_other_restores() {
    let fx = fixture();
    for damage in DAMAGES {
        let cell = Cell::new(&fx, "snapshot", damage, |repo| {
            repo.join("snapshots").join(&fx.a1)
        });
        // Damaged: its name; deleted: A2 names it as the snapshot before it.
        cell.check_names(1, &fx.a1);
        cell.restores_whole(&fx.a2, &fx.files_a2());
        cell.restores_whole(&fx.b, &[fx.src_b.join("big-b.bin")]);
        cell.ok(&["backup", &fx.src_b.display().to_string()]);
        if let Damage::Delete = damage {
            continue;
        }
        // Listed without it, and said; naming it says why it cannot be restored.
        let run = cell.lb(&["snapshots"]);
        assert_eq!(run.code, 1, "{}: snapshots\n{}", cell.what, run.stderr);
        assert!(
            run.stderr.contains(&fx.a1[..8]),
            "{}: {}",
            cell.what,
            run.stderr
        );
        assert!(
            run.stdout.contains(&fx.a2[..8]),
            "{}: {}",
            cell.what,
            run.stdout
        );
        let target = cell.repo.with_extension("named").display().to_string();
        cell.fails_cleanly(
            &["restore", &fx.a1[..8], "--target", &target],
            1,
            "cannot be read",
        );
        // Prune cannot know what the snapshot used: it deletes nothing and says what to do.
        cell.fails_cleanly(&["prune"], 1, "lifeboat forget");
        cell.ok(&["repair", "snapshots", "--forget"]);
        cell.check_clean();
        cell.ok(&["prune"]);
        cell.check_clean();
    }
}

#[test]
fn a_damaged_key_file_is_refused_like_a_wrong_password_and_a_copy_brings_it_back() {
    let fx = fixture();
    let key = entries(&fx.pristine.join("keys")).remove(0);
    let key_name = key.file_name().unwrap().to_owned();
    for damage in DAMAGES {
        let cell = Cell::new(&fx, "key", damage, |repo| repo.join("keys").join(&key_name));
        let says = match damage {
            Damage::Delete => "no key files",
            Damage::Flip | Damage::Truncate => "key",
        };
        cell.fails_cleanly(&["check"], 11, says);
        cell.fails_cleanly(&["snapshots"], 11, says);
        std::fs::copy(&key, cell.repo.join("keys").join(&key_name)).unwrap();
        cell.check_clean();
    }
}

#[test]
fn a_damaged_config_is_named_and_a_copy_brings_it_back() {
    let fx = fixture();
    for damage in DAMAGES {
        let cell = Cell::new(&fx, "config", damage, |repo| {
            let config = repo.join("config");
            // The config is JSON: a flip in its first byte breaks it for certain (a flip in
            // a value can change a setting; see docs/security.md on the plaintext config).
            if let Damage::Flip = damage {
                let mut bytes = std::fs::read(&config).unwrap();
                bytes[0] ^= 0x01;
                std::fs::write(&config, bytes).unwrap();
                let scratch = repo.with_extension("flip-scratch");
                std::fs::write(&scratch, b"not the repository").unwrap();
                return scratch;
            }
            config
        });
        let (code, says) = match damage {
            Damage::Delete => (10, "no config object"),
            _ => (1, "config"),
        };
        cell.fails_cleanly(&["check"], code, says);
        cell.fails_cleanly(&["snapshots"], code, says);
        std::fs::copy(fx.pristine.join("config"), cell.repo.join("config")).unwrap();
        cell.check_clean();
    }
}

#[test]
fn a_damaged_lock_stops_writers_not_restores() {
    let fx = fixture();
    let lock_name = "0123456789abcdef0123456789abcdef";
    for damage in DAMAGES {
        let cell = Cell::new(&fx, "lock", damage, |repo| {
            let path = repo.join("locks").join(lock_name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::copy(&fx.lock, &path).unwrap();
            path
        });
        if let Damage::Delete = damage {
            cell.check_clean();
            continue;
        }
        // Readers go on, with a warning; writers stop and say how to clear it.
        cell.restores_whole(&fx.a2, &fx.files_a2());
        let src_b = fx.src_b.display().to_string();
        cell.fails_cleanly(&["backup", &src_b], 1, "unlock --remove-all");
        cell.fails_cleanly(&["check"], 1, lock_name);
        cell.ok(&["unlock", "--remove-all"]);
        cell.ok(&["backup", &src_b]);
        cell.check_clean();
    }
}

/// The fixture itself: a clean check, and every snapshot restores whole.
#[test]
fn the_undamaged_fixture_checks_clean_and_restores() {
    let fx = fixture();
    let run = fx.env.lb(&["check", "--read-data"]).ok();
    assert_no_panic(&run, "fixture");
    let target = fx.env.path("restore-a1");
    let run = fx.env.restore(&fx.a1, &target, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_same(&fx.src_a.join("docs/notes.txt"), &target, "fixture");
}
