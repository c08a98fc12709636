//! Hostile snapshots, forged with the library, cannot make `restore` write outside its target,
//! and `ls` / `dump` on them fail cleanly instead of panicking.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::Env;
use lifeboat_core::blob::{BlobId, BlobKind, Compression};
use lifeboat_core::index::{IndexFile, IndexPack};
use lifeboat_core::pack::PackWriter;
use lifeboat_core::snapshot::select::parse_time;
use lifeboat_core::snapshot::{Snapshot, SNAPSHOT_VERSION};
use lifeboat_core::storage::{LocalStorage, ObjectKind};
use lifeboat_core::tree::{Node, NodeKind, Tree, TREE_VERSION};
use lifeboat_core::Repository;

/// Builds blobs, trees and snapshots by hand, without any of the validation the library does.
struct Forge {
    repo: Repository,
    blobs: Vec<(BlobKind, BlobId, usize, bool, Vec<u8>)>,
    snapshots: u32,
}

impl Forge {
    fn new(env: &Env) -> Forge {
        let storage = Arc::new(LocalStorage::new(&env.repo));
        let repo = Repository::open(storage, common::PASSWORD.as_bytes()).expect("open repo");
        Forge {
            repo,
            blobs: Vec::new(),
            snapshots: 0,
        }
    }

    /// Stores `payload` under an index entry saying exactly what the caller says.
    fn raw(
        &mut self,
        kind: BlobKind,
        id: BlobId,
        raw_len: usize,
        compressed: bool,
        payload: Vec<u8>,
    ) {
        if !self.blobs.iter().any(|b| b.1 == id) {
            self.blobs.push((kind, id, raw_len, compressed, payload));
        }
    }

    fn data(&mut self, bytes: &[u8]) -> BlobId {
        let id = self.repo.blob_id(bytes);
        self.raw(BlobKind::Data, id, bytes.len(), false, bytes.to_vec());
        id
    }

    /// A tree with exactly these nodes in exactly this order, unvalidated.
    fn tree_unsorted(&mut self, nodes: Vec<Node>) -> BlobId {
        let bytes = Tree {
            version: TREE_VERSION,
            nodes,
        }
        .to_bytes();
        let id = self.repo.tree_id(&bytes);
        self.raw(BlobKind::Tree, id, bytes.len(), false, bytes);
        id
    }

    /// A tree sorted by name (so that only the names themselves are hostile), unvalidated.
    fn tree(&mut self, mut nodes: Vec<Node>) -> BlobId {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.tree_unsorted(nodes)
    }

    fn file(&mut self, name: &[u8], content: &[u8]) -> Node {
        let mut n = Node::empty(NodeKind::File);
        n.name = name.to_vec();
        n.size = content.len() as u64;
        n.content = vec![self.data(content)];
        n
    }

    fn dir(&mut self, name: &[u8], nodes: Vec<Node>) -> Node {
        let mut n = Node::empty(NodeKind::Dir);
        n.name = name.to_vec();
        n.mode = 0o755;
        n.subtree = Some(self.tree(nodes));
        n
    }

    /// Writes one pack with every blob added so far, an index file for it and a snapshot.
    fn commit(&mut self, root: BlobId) -> String {
        let mut writer = PackWriter::new(&self.repo.keys().seal, self.repo.pack_version());
        for (kind, id, raw_len, compressed, payload) in self.blobs.drain(..) {
            writer
                .add(kind, id, raw_len, compressed, &payload)
                .expect("in memory");
        }
        let pack = writer.finish().expect("in memory");
        self.repo
            .storage()
            .write(
                ObjectKind::Pack,
                &pack.name,
                pack.bytes().expect("in memory"),
            )
            .expect("write pack");
        let mut index = IndexFile::new(self.repo.pack_version());
        index.packs.push(IndexPack {
            name: pack.name,
            salt: pack.salt,
            blobs: pack.entries,
        });
        self.repo.save_index_file(&index).expect("write index");
        self.snapshots += 1;
        let time = parse_time(&format!("2024-01-01T00:00:{:02}Z", self.snapshots)).unwrap();
        self.repo
            .save_snapshot(&Snapshot {
                version: SNAPSHOT_VERSION,
                time,
                hostname: "forge".into(),
                username: "mallory".into(),
                paths: vec!["/".into()],
                tags: vec![],
                source: "files".into(),
                tree: root,
                parent: None,
                program_version: "forged".into(),
                summary: Default::default(),
                original: None,
                previous: None,
            })
            .expect("write snapshot")
    }
}

fn symlink_node(name: &[u8], target: &Path) -> Node {
    use std::os::unix::ffi::OsStrExt;
    let mut n = Node::empty(NodeKind::Symlink);
    n.name = name.to_vec();
    n.mode = 0o777;
    n.link_target = target.as_os_str().as_bytes().to_vec();
    n
}

/// A directory outside every restore target, holding one file that must never change.
fn outside(env: &Env) -> PathBuf {
    let dir = env.path("outside");
    if !dir.exists() {
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("victim"), b"original").unwrap();
    }
    dir
}

/// Every path under `dir` (not following symlinks), relative to it.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The sentinel directory holds exactly its victim, unchanged, and nothing whose name says
/// it came from a hostile entry exists anywhere under the test's directory.
#[track_caller]
fn assert_nothing_escaped(env: &Env) {
    let out = outside(env);
    assert_eq!(
        listing(&out),
        vec![PathBuf::from("victim")],
        "something was written to the outside directory"
    );
    assert_eq!(
        std::fs::read(out.join("victim")).unwrap(),
        b"original",
        "outside victim changed"
    );
    let meta = std::fs::metadata(out.join("victim")).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o644,
        "outside victim's mode changed"
    );
    let pwned: Vec<_> = listing(env.dir.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().contains("pwned"))
                .unwrap_or(false)
        })
        .collect();
    assert!(pwned.is_empty(), "hostile entries were written: {pwned:?}");
}

#[track_caller]
fn assert_clean_failure(run: &common::Run, what: &str) {
    assert_ne!(
        run.code, 0,
        "{what}: expected failure\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(
        run.code, 1,
        "{what}: expected exit code 1 (clean error)\nstderr:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked"),
        "{what}: panicked\n{}",
        run.stderr
    );
    assert!(!run.stderr.is_empty(), "{what}: no message");
}

/// Every name that is not one safe path component, as a file and (where it means something)
/// as a directory leading further out, inside `evil/` next to legitimate siblings.
#[test]
fn unsafe_names_are_refused_and_nothing_escapes() {
    let env = Env::new();
    let out = outside(&env);
    let abs = out.join("pwned-abs");
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        // (label, hostile name, whether it is a directory holding a further climb)
        ("dotdot dir", b"..".to_vec(), true),
        ("dotdot file", b"..".to_vec(), false),
        (
            "absolute file",
            abs.to_string_lossy().as_bytes().to_vec(),
            false,
        ),
        (
            "absolute dir",
            out.to_string_lossy().as_bytes().to_vec(),
            true,
        ),
        (
            "relative climb",
            b"a/../../../outside/pwned-rel".to_vec(),
            false,
        ),
        (
            "leading climb",
            b"../../outside/pwned-climb".to_vec(),
            false,
        ),
        ("dot dir", b".".to_vec(), true),
        ("empty", b"".to_vec(), false),
        ("slash", b"sub/pwned-slash".to_vec(), false),
        ("nul", b"pwned\0nul".to_vec(), false),
    ];
    for (i, (label, name, is_dir)) in cases.into_iter().enumerate() {
        let mut f = Forge::new(&env);
        let hostile = if is_dir {
            // `..` / `..` / pwned: from target/evil this climbs to the test's directory.
            let payload = f.file(b"pwned-in-dir", b"PWNED");
            let climb_file = f.file(b"pwned-climb", b"PWNED");
            let inner_up = f.dir(b"..", vec![climb_file]);
            f.dir(&name, vec![payload, inner_up])
        } else {
            f.file(&name, b"PWNED")
        };
        let sibling = f.file(b"sibling.txt", b"sibling");
        let evil = f.dir(b"evil", vec![hostile.clone(), sibling]);
        let good_file = f.file(b"good.txt", b"good");
        let inner = f.file(b"inner.txt", b"inner");
        let good_dir = f.dir(b"good", vec![inner]);
        let root = f.tree(vec![evil, good_file.clone(), good_dir]);
        let snap = f.commit(root);

        let expected_name = format!("{:?}", String::from_utf8_lossy(&name));
        let target = env.path(&format!("target-{i}"));
        let run = env.restore(&snap, &target, &[]);
        assert_clean_failure(&run, label);
        assert!(
            run.stderr.contains("unsafe name"),
            "{label}: message does not name the problem:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&expected_name),
            "{label}: message does not name {expected_name}:\n{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains(&target.join("evil").display().to_string()),
            "{label}: message does not say where:\n{}",
            run.stderr
        );
        // The legitimate parts of the snapshot are restored.
        assert_eq!(
            std::fs::read(target.join("good.txt")).unwrap(),
            b"good",
            "{label}"
        );
        assert_eq!(
            std::fs::read(target.join("good/inner.txt")).unwrap(),
            b"inner",
            "{label}"
        );
        assert!(!abs.exists(), "{label}: absolute path was written");
        assert_nothing_escaped(&env);

        // Restoring the hostile directory alone fails the same way.
        let sub_target = env.path(&format!("sub-target-{i}"));
        let run = env.restore(&format!("{snap}:/evil"), &sub_target, &[]);
        assert_clean_failure(&run, label);
        assert!(
            run.stderr.contains("unsafe name"),
            "{label}: {}",
            run.stderr
        );
        assert_nothing_escaped(&env);

        // The same hostile node at the root of a snapshot.
        let mut f = Forge::new(&env);
        let good_file = f.file(b"good.txt", b"good");
        let hostile = if is_dir {
            let payload = f.file(b"pwned-root", b"PWNED");
            f.dir(&name, vec![payload])
        } else {
            f.file(&name, b"PWNED")
        };
        let root = f.tree(vec![hostile, good_file]);
        let root_snap = f.commit(root);
        let root_target = env.path(&format!("root-target-{i}"));
        let run = env.restore(&root_snap, &root_target, &[]);
        assert_clean_failure(&run, label);
        assert!(
            run.stderr.contains("unsafe name") && run.stderr.contains(&expected_name),
            "{label}: {}",
            run.stderr
        );
        assert_nothing_escaped(&env);

        // ls and dump: a clean error, never a panic; untouched paths still dump.
        let run = env.lb(&["ls", &snap]);
        assert_clean_failure(&run, &format!("{label}: ls"));
        assert!(
            run.stderr.contains("unsafe name"),
            "{label}: ls: {}",
            run.stderr
        );
        let run = env.lb(&["ls", &root_snap]);
        assert_clean_failure(&run, &format!("{label}: ls root"));
        let run = env.lb(&["ls", &snap, "/evil"]);
        assert_clean_failure(&run, &format!("{label}: ls /evil"));
        let run = env.lb(&["dump", &snap, "/evil"]);
        assert_clean_failure(&run, &format!("{label}: dump /evil"));
        assert!(
            run.stderr.contains("unsafe name"),
            "{label}: dump: {}",
            run.stderr
        );
        let run = env.lb(&["dump", &snap, "/"]);
        assert_clean_failure(&run, &format!("{label}: dump /"));
        let run = env.lb(&["dump", &root_snap, "/good.txt"]);
        assert_clean_failure(&run, &format!("{label}: dump from a hostile root"));
        let run = env.lb(&["dump", &snap, "/good/inner.txt"]).ok();
        assert_eq!(run.raw_stdout, b"inner");
        assert_nothing_escaped(&env);
    }
}

/// Two entries with one name (a symlink out and a directory to write through it, or two files)
/// and unsorted listings are refused before anything in them is written.
#[test]
fn duplicate_and_unsorted_names_are_refused() {
    let env = Env::new();
    let out = outside(&env);
    let mut f = Forge::new(&env);
    let link = symlink_node(b"link", &out);
    let through = f.file(b"pwned-through-link", b"PWNED");
    let link_dir = f.dir(b"link", vec![through]);
    let dup_a = f.file(b"same", b"pwned one");
    let dup_b = f.file(b"same", b"pwned two");
    let b = f.file(b"b-pwned", b"PWNED");
    let a = f.file(b"a-pwned", b"PWNED");
    let ok = f.file(b"ok.txt", b"ok");
    let variants: Vec<(&str, BlobId, &str)> = vec![
        (
            "symlink then dir",
            f.tree_unsorted(vec![link.clone(), link_dir.clone()]),
            "link",
        ),
        (
            "dir then symlink",
            f.tree_unsorted(vec![link_dir.clone(), link.clone()]),
            "link",
        ),
        ("two files", f.tree_unsorted(vec![dup_a, dup_b]), "same"),
        ("unsorted", f.tree_unsorted(vec![b, a]), "a-pwned"),
    ];
    let mut snaps = Vec::new();
    for (label, bad_tree, named) in variants {
        let mut evil = Node::empty(NodeKind::Dir);
        evil.name = b"evil".to_vec();
        evil.mode = 0o755;
        evil.subtree = Some(bad_tree);
        let root = f.tree(vec![evil.clone(), ok.clone()]);
        // A second level: the bad listing one directory deeper, so its parent exists first.
        let deeper_parent = f.dir(b"deeper", vec![evil]);
        let root2 = f.tree(vec![deeper_parent, ok.clone()]);
        snaps.push((label, f.commit(root), named));
        snaps.push((label, f.commit(root2), named));
    }
    for (i, (label, snap, named)) in snaps.iter().enumerate() {
        let target = env.path(&format!("t{i}"));
        let run = env.restore(snap, &target, &[]);
        assert_clean_failure(&run, label);
        assert!(
            run.stderr.contains("not sorted or duplicated"),
            "{label}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(named),
            "{label}: message does not name {named}: {}",
            run.stderr
        );
        assert_eq!(
            std::fs::read(target.join("ok.txt")).unwrap(),
            b"ok",
            "{label}"
        );
        assert!(!target.join("evil/link").exists() && !target.join("deeper/evil/link").exists());
        assert_nothing_escaped(&env);
        let run = env.lb(&["ls", snap]);
        assert_clean_failure(&run, &format!("{label}: ls"));
        let run = env.lb(&["dump", snap, "/"]);
        assert_clean_failure(&run, &format!("{label}: dump"));
    }
}

/// A target that already holds symlinks pointing outside: restore replaces the links, it never
/// writes through them, whatever the overwrite mode.
#[test]
fn symlinks_already_in_the_target_are_not_followed() {
    let env = Env::new();
    let out = outside(&env);
    let mut f = Forge::new(&env);
    let payload = f.file(b"payload", b"snapshot data");
    let deep_payload = f.file(b"deep-payload", b"deep data");
    let b = f.dir(b"b", vec![deep_payload]);
    let a = f.dir(b"a", vec![payload, b]);
    let victim_file = f.file(b"victim", b"snapshot victim");
    let mut executable = f.file(b"exe", b"#!/bin/sh\n");
    executable.mode = 0o4755;
    let root = f.tree(vec![a, victim_file, executable]);
    let snap = f.commit(root);

    for mode in ["always", "if-changed", "never"] {
        let target = env.path(&format!("target-{mode}"));
        std::fs::create_dir(&target).unwrap();
        // a -> outside (a directory the snapshot wants to fill); victim and exe -> files outside.
        std::os::unix::fs::symlink(&out, target.join("a")).unwrap();
        std::os::unix::fs::symlink(out.join("victim"), target.join("victim")).unwrap();
        std::os::unix::fs::symlink(out.join("victim"), target.join("exe")).unwrap();
        let run = env.restore(&snap, &target, &["--overwrite", mode]);
        assert_nothing_escaped(&env);
        if mode == "never" {
            assert_clean_failure(&run, mode);
            assert!(
                run.stderr.contains("not a directory"),
                "{mode}: {}",
                run.stderr
            );
            assert!(
                run.stderr.contains(&target.join("a").display().to_string()),
                "{mode}: {}",
                run.stderr
            );
            // Existing entries are kept as they are.
            assert!(std::fs::symlink_metadata(target.join("a"))
                .unwrap()
                .file_type()
                .is_symlink());
            assert!(std::fs::symlink_metadata(target.join("victim"))
                .unwrap()
                .file_type()
                .is_symlink());
        } else {
            let run = run.ok();
            assert!(run.stdout.contains("restored"), "{}", run.stdout);
            let a = std::fs::symlink_metadata(target.join("a")).unwrap();
            assert!(
                a.is_dir() && !a.file_type().is_symlink(),
                "{mode}: a was not replaced by a directory"
            );
            assert_eq!(
                std::fs::read(target.join("a/payload")).unwrap(),
                b"snapshot data"
            );
            assert_eq!(
                std::fs::read(target.join("a/b/deep-payload")).unwrap(),
                b"deep data"
            );
            for name in ["victim", "exe"] {
                let m = std::fs::symlink_metadata(target.join(name)).unwrap();
                assert!(m.is_file(), "{mode}: {name} is still a symlink");
            }
            assert_eq!(
                std::fs::read(target.join("victim")).unwrap(),
                b"snapshot victim"
            );
            assert_eq!(
                std::fs::metadata(target.join("exe")).unwrap().mode() & 0o7777,
                0o4755
            );
        }
    }
}

/// One restore plants symlinks out of the target; a second snapshot restored into the same
/// target then tries to write through them.
#[test]
fn a_second_restore_does_not_write_through_links_planted_by_the_first() {
    let env = Env::new();
    let out = outside(&env);
    let mut f = Forge::new(&env);
    let link_dir = symlink_node(b"a", &out);
    let link_file = symlink_node(b"victim", &out.join("victim"));
    let mut nested_link_parent = {
        let l = symlink_node(b"up", &out);
        f.dir(b"n", vec![l])
    };
    nested_link_parent.mode = 0o700;
    let root = f.tree(vec![link_dir, link_file, nested_link_parent]);
    let first = f.commit(root);

    let through = f.file(b"through", b"written into the target");
    let a = f.dir(b"a", vec![through]);
    let victim = f.file(b"victim", b"from snapshot two");
    let mut chmod_victim = f.file(b"up", b"pwned-content");
    chmod_victim.mode = 0o777;
    let inner = f.file(b"inner", b"inner");
    let mut up_dir = f.dir(b"up", vec![inner]);
    up_dir.mode = 0o777;
    let n = f.dir(b"n", vec![up_dir]);
    let root = f.tree(vec![a, victim, n]);
    let second = f.commit(root);
    // A third one puts a file where the second put a directory.
    let n2 = f.dir(b"n", vec![chmod_victim]);
    let root = f.tree(vec![n2]);
    let third = f.commit(root);

    let target = env.path("target");
    env.restore(&first, &target, &[]).ok();
    assert!(std::fs::symlink_metadata(target.join("a"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_link(target.join("n/up")).unwrap(), out);
    assert_nothing_escaped(&env);

    env.restore(&second, &target, &[]).ok();
    assert_nothing_escaped(&env);
    assert!(!std::fs::symlink_metadata(target.join("a"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read(target.join("a/through")).unwrap(),
        b"written into the target"
    );
    assert_eq!(std::fs::read(target.join("n/up/inner")).unwrap(), b"inner");
    assert_eq!(
        std::fs::read(target.join("victim")).unwrap(),
        b"from snapshot two"
    );
    assert!(std::fs::symlink_metadata(target.join("n/up"))
        .unwrap()
        .is_dir());

    // A fresh target: the first plants n/up -> outside, the third puts a file with mode 0777
    // there (a chmod through the link would change the outside directory's mode).
    let target = env.path("target2");
    env.restore(&first, &target, &[]).ok();
    env.restore(&third, &target, &[]).ok();
    assert_nothing_escaped(&env);
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o755,
        "outside dir mode changed"
    );
    let m = std::fs::symlink_metadata(target.join("n/up")).unwrap();
    assert!(m.is_file() && m.permissions().mode() & 0o777 == 0o777);
    assert_eq!(
        std::fs::read(target.join("n/up")).unwrap(),
        b"pwned-content"
    );
}

fn hard_link(f: &mut Forge, name: &[u8], content: &[u8], inode: u64, links: u64) -> Node {
    let mut n = f.file(name, content);
    n.device = 77;
    n.inode = inode;
    n.links = links;
    n
}

/// Hard-link groups that make no sense (a lone member, members with different content, a
/// first member that cannot be restored, a first member the target already holds as a
/// symlink out) never link to anything outside the target and never panic.
#[test]
fn hard_link_groups_cannot_reach_outside() {
    let env = Env::new();
    let out = outside(&env);
    let mut f = Forge::new(&env);
    // A lone member claiming 5 links.
    let lone = hard_link(&mut f, b"lone", b"lone content", 1, 5);
    // Two members with different content: the later one in walk order (d/second) becomes a
    // link to the earlier one (a-first).
    let first = hard_link(&mut f, b"a-first", b"first content", 2, 2);
    let second = hard_link(&mut f, b"second", b"other content", 2, 2);
    let d = f.dir(b"d", vec![second]);
    // A group whose first member's blob is not in any index.
    let mut broken = hard_link(&mut f, b"broken-first", b"x", 3, 2);
    broken.content = vec![BlobId([0xab; 32])];
    let broken_second = hard_link(&mut f, b"broken-second", b"y", 3, 2);
    let root = f.tree(vec![lone, first, d, broken, broken_second]);
    let snap = f.commit(root);

    let target = env.path("target");
    let run = env.restore(&snap, &target, &[]);
    assert_clean_failure(&run, "hard links");
    assert!(
        run.stderr.contains("broken-first") && run.stderr.contains(&"ab".repeat(32)),
        "{}",
        run.stderr
    );
    // The group's first member failed, so the second is restored from its own content
    // rather than linked to nothing.
    assert!(!run.stderr.contains("broken-second"), "{}", run.stderr);
    assert_eq!(std::fs::read(target.join("broken-second")).unwrap(), b"y");
    assert_eq!(std::fs::read(target.join("lone")).unwrap(), b"lone content");
    assert_eq!(
        std::fs::read(target.join("d/second")).unwrap(),
        b"first content"
    );
    assert_eq!(
        std::fs::read(target.join("a-first")).unwrap(),
        b"first content"
    );
    let a = std::fs::symlink_metadata(target.join("a-first")).unwrap();
    let b = std::fs::symlink_metadata(target.join("d/second")).unwrap();
    assert!(b.is_file());
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "members are linked");
    assert!(!target.join("broken-first").exists());
    assert_nothing_escaped(&env);

    // The target already holds the group's first member (a-first) as a symlink out of it.
    // Whatever the mode, the other member must not become a link to that symlink.
    for mode in ["always", "if-changed", "never"] {
        let target = env.path(&format!("target-{mode}"));
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(out.join("victim"), target.join("a-first")).unwrap();
        let run = env.restore(&snap, &target, &["--overwrite", mode]);
        assert_eq!(run.code, 1, "{mode}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"));
        assert_nothing_escaped(&env);
        if let Ok(m) = std::fs::symlink_metadata(target.join("d/second")) {
            assert!(
                !m.file_type().is_symlink(),
                "{mode}: d/second was restored as a symlink to {:?}",
                std::fs::read_link(target.join("d/second"))
            );
        }
        let first = std::fs::symlink_metadata(target.join("a-first")).unwrap();
        if mode == "never" {
            assert!(first.file_type().is_symlink(), "never keeps what exists");
            // Nothing of the group was written, so the member gets its own content.
            assert_eq!(
                std::fs::read(target.join("d/second")).unwrap(),
                b"other content"
            );
        } else {
            assert!(first.is_file(), "{mode}: the symlink was replaced");
            assert_eq!(
                std::fs::read(target.join("d/second")).unwrap(),
                b"first content"
            );
        }
    }
}

/// `--overwrite never` keeps every existing entry, hard-linked members included.
#[test]
fn overwrite_never_keeps_existing_hard_link_members() {
    let env = Env::new();
    let mut f = Forge::new(&env);
    let first = hard_link(&mut f, b"first", b"snapshot content", 9, 2);
    let second = hard_link(&mut f, b"second", b"snapshot content", 9, 2);
    let root = f.tree(vec![first, second]);
    let snap = f.commit(root);
    let target = env.path("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("second"), b"keep me").unwrap();
    let run = env.restore(&snap, &target, &["--overwrite", "never"]).ok();
    assert!(run.stdout.contains("skipped 1"), "{}", run.stdout);
    assert_eq!(
        std::fs::read(target.join("first")).unwrap(),
        b"snapshot content"
    );
    assert_eq!(
        std::fs::read(target.join("second")).unwrap(),
        b"keep me",
        "--overwrite never replaced an existing file"
    );
}

/// An index entry that claims 10 bytes but holds a zstd frame expanding to 100 MB, and one
/// that claims 4 GiB: the file fails with a decompression/integrity error, its siblings restore.
#[test]
fn decompression_bombs_fail_cleanly() {
    let env = Env::new();
    let mut f = Forge::new(&env);
    let zeros = vec![0u8; 100 * 1024 * 1024];
    let bomb = lifeboat_core::blob::compress(&zeros, Compression::Fast).expect("zeros compress");
    assert!(bomb.len() < 1024 * 1024);
    drop(zeros);
    let small_claim = BlobId([0x5a; 32]);
    let huge_claim = BlobId([0x6b; 32]);
    f.raw(BlobKind::Data, small_claim, 10, true, bomb.clone());
    f.raw(BlobKind::Data, huge_claim, u32::MAX as usize, true, bomb);
    let mut small = Node::empty(NodeKind::File);
    small.name = b"bomb-small".to_vec();
    small.size = 10;
    small.content = vec![small_claim];
    let mut huge = Node::empty(NodeKind::File);
    huge.name = b"bomb-huge".to_vec();
    huge.size = u32::MAX as u64;
    huge.content = vec![huge_claim];
    let ok = f.file(b"ok.txt", b"fine");
    let root = f.tree(vec![small, huge, ok]);
    let snap = f.commit(root);

    let target = env.path("target");
    let run = env.restore(&snap, &target, &["--verify"]);
    assert_clean_failure(&run, "bomb");
    for (name, id) in [("bomb-small", small_claim), ("bomb-huge", huge_claim)] {
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not reported:\n{}", run.stderr));
        assert!(line.contains(&id.to_hex()), "{line}");
        assert!(
            line.contains("integrity") || line.contains("decompress"),
            "{line}"
        );
        assert!(!target.join(name).exists());
    }
    assert_eq!(std::fs::read(target.join("ok.txt")).unwrap(), b"fine");
    let leftovers: Vec<_> = listing(&target)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let run = env.lb(&["dump", &snap, "/bomb-small"]);
    assert_clean_failure(&run, "dump bomb");
    assert!(run.stderr.contains(&small_claim.to_hex()), "{}", run.stderr);
    assert!(
        run.raw_stdout.len() <= 10,
        "dump wrote {} bytes of the bomb",
        run.raw_stdout.len()
    );
    let run = env.lb(&["dump", &snap, "/"]);
    assert_clean_failure(&run, "dump tar with bomb");
    env.lb(&["ls", &snap]).ok();
}

/// A snapshot whose root is missing from the index, or names a data blob instead of a tree.
#[test]
fn snapshots_with_bogus_roots_fail_cleanly() {
    let env = Env::new();
    let mut f = Forge::new(&env);
    let missing = f.commit(BlobId([0x11; 32]));
    let data = f.data(b"not a tree at all");
    let not_a_tree = f.commit(data);
    for (label, snap, why) in [
        ("missing", missing, "not in the index"),
        ("data as tree", not_a_tree, "names a data blob"),
    ] {
        let target = env.path(&format!("t-{}", label.replace(' ', "-")));
        let run = env.restore(&snap, &target, &[]);
        assert_clean_failure(&run, label);
        assert!(run.stderr.contains(why), "{label}: {}", run.stderr);
        assert_clean_failure(&env.lb(&["ls", &snap]), label);
        assert_clean_failure(&env.lb(&["dump", &snap, "/"]), label);
    }
}

/// An index entry claiming 4 GiB for a blob that holds 4 bytes, behind a node of size 0:
/// `--overwrite if-changed` compares the existing (empty) file with it and must not allocate
/// what the index claims; the restore fails cleanly and keeps the existing file.
#[test]
fn claimed_blob_lengths_do_not_decide_allocations() {
    let env = Env::new();
    let mut f = Forge::new(&env);
    let liar_blob = BlobId([0x7c; 32]);
    f.raw(
        BlobKind::Data,
        liar_blob,
        u32::MAX as usize,
        false,
        b"tiny".to_vec(),
    );
    let mut liar = Node::empty(NodeKind::File);
    liar.name = b"liar".to_vec();
    liar.content = vec![liar_blob];
    let ok = f.file(b"ok.txt", b"fine");
    let root = f.tree(vec![liar, ok]);
    let snap = f.commit(root);

    for mode in ["if-changed", "always"] {
        let target = env.path(&format!("target-{mode}"));
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("liar"), b"").unwrap();
        let run = env.restore(&snap, &target, &["--overwrite", mode, "--verify"]);
        assert_clean_failure(&run, mode);
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains("liar"))
            .unwrap_or_else(|| panic!("{mode}: liar not reported:\n{}", run.stderr));
        assert!(line.contains(&liar_blob.to_hex()), "{line}");
        assert!(
            line.contains("integrity") && line.contains("claims"),
            "{line}"
        );
        assert_eq!(std::fs::read(target.join("liar")).unwrap(), b"", "{mode}");
        assert_eq!(std::fs::read(target.join("ok.txt")).unwrap(), b"fine");
    }
}

/// A name longer than any file system takes (4,000 bytes), as a file and as a directory: that
/// entry fails with the system's reason, and its siblings restore.
#[test]
fn over_long_names_fail_that_entry_only() {
    let env = Env::new();
    let mut f = Forge::new(&env);
    let long = vec![b'n'; 4000];
    let long_file = f.file(&long, b"long");
    let inner = f.file(b"inner.txt", b"inner");
    let mut long_dir_name = long.clone();
    long_dir_name[0] = b'd';
    let long_dir = f.dir(&long_dir_name, vec![inner]);
    let ok = f.file(b"ok.txt", b"fine");
    let root = f.tree(vec![long_file, long_dir, ok]);
    let snap = f.commit(root);

    let target = env.path("target");
    let run = env.restore(&snap, &target, &[]);
    assert_clean_failure(&run, "over-long names");
    assert!(
        run.stderr.contains("too long"),
        "the reason is not given:\n{}",
        run.stderr
    );
    assert_eq!(std::fs::read(target.join("ok.txt")).unwrap(), b"fine");
    assert_eq!(listing(&target), vec![PathBuf::from("ok.txt")]);
    env.lb(&["ls", &snap]).ok();
    assert_nothing_escaped(&env);
}

/// 5,000 directories, each inside the last: deeper than any path the kernel takes whole
/// (4,096 bytes). Restore, ls and dump must not overflow a stack: each either works or fails
/// with a message, and the top-level file beside the chain restores.
#[test]
fn deeply_nested_trees_fail_or_work_without_crashing() {
    let env = Env::new();
    let mut f = Forge::new(&env);
    let bottom = f.file(b"bottom.txt", b"bottom");
    let mut chain = f.dir(b"d", vec![bottom]);
    for _ in 1..5000 {
        chain = f.dir(b"d", vec![chain]);
    }
    let ok = f.file(b"ok.txt", b"fine");
    let root = f.tree(vec![chain, ok]);
    let snap = f.commit(root);

    let target = env.path("target");
    let run = env.restore(&snap, &target, &[]);
    assert!(
        run.code == 0 || run.code == 1,
        "restore crashed (exit {}):\n{}",
        run.code,
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    if run.code == 1 {
        assert!(!run.stderr.is_empty());
    }
    assert_eq!(std::fs::read(target.join("ok.txt")).unwrap(), b"fine");
    for args in [vec!["ls", &snap], vec!["dump", &snap, "/ok.txt"]] {
        let run = env.lb(&args);
        assert!(
            run.code == 0 || run.code == 1,
            "{args:?} crashed (exit {}):\n{}",
            run.code,
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    assert_nothing_escaped(&env);
}

/// A file node that claims 1 PiB over 4 bytes of content: restore must not make a file of
/// the claimed length (sparse or not); it reports the mismatch.
#[test]
fn a_claimed_file_size_is_not_trusted() {
    let env = Env::new();
    let mut f = Forge::new(&env);
    let mut liar = f.file(b"liar", b"tiny");
    liar.size = 1 << 50;
    let ok = f.file(b"ok.txt", b"fine");
    let root = f.tree(vec![liar, ok]);
    let snap = f.commit(root);

    let target = env.path("target");
    let run = env.restore(&snap, &target, &[]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    if let Ok(meta) = std::fs::metadata(target.join("liar")) {
        assert!(
            meta.len() <= 4,
            "restore made a file of {} bytes from 4 bytes of content",
            meta.len()
        );
    }
    assert_eq!(std::fs::read(target.join("ok.txt")).unwrap(), b"fine");
}
