//! Bytes and metadata of every kind of entry are identical after backup and restore.

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{random_bytes, restored, Env};
use filetime::FileTime;

fn set_mtime(path: &Path, sec: i64, nsec: u32) {
    filetime::set_symlink_file_times(
        path,
        FileTime::from_unix_time(sec, nsec),
        FileTime::from_unix_time(sec, nsec),
    )
    .unwrap();
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tree with one of everything a tree must keep.
fn build_tree(root: &Path) {
    std::fs::create_dir_all(root.join("dir/nested/deeper")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::write(root.join("plain.txt"), b"hello lifeboat\n").unwrap();
    std::fs::write(
        root.join("dir/random.bin"),
        random_bytes(3 * 1024 * 1024 + 17, 1),
    )
    .unwrap();
    std::fs::write(root.join("dir/nested/deeper/text"), "line\n".repeat(50_000)).unwrap();
    std::fs::write(root.join("empty-file"), b"").unwrap();
    // Symlinks: relative, absolute, dangling, to a directory.
    std::os::unix::fs::symlink("plain.txt", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("link-abs")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("link-dangling")).unwrap();
    std::os::unix::fs::symlink("dir", root.join("link-dir")).unwrap();
    // Hard links: a group of three across directories, and a pair.
    std::fs::write(root.join("hl-a"), b"linked content").unwrap();
    std::fs::hard_link(root.join("hl-a"), root.join("dir/hl-b")).unwrap();
    std::fs::hard_link(root.join("hl-a"), root.join("dir/nested/hl-c")).unwrap();
    std::fs::write(root.join("pair-1"), random_bytes(10_000, 2)).unwrap();
    std::fs::hard_link(root.join("pair-1"), root.join("pair-2")).unwrap();
    // A name that is not UTF-8, and one with spaces and newlines.
    std::fs::write(root.join(OsStr::from_bytes(b"latin1-\xe9t\xe9")), b"bytes").unwrap();
    std::fs::write(root.join("odd name\nwith newline"), b"odd").unwrap();
    // Modes.
    std::fs::write(root.join("secret"), b"0600").unwrap();
    std::fs::set_permissions(root.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(root.join("script.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        root.join("script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("dir/nested"),
        std::fs::Permissions::from_mode(0o2750),
    )
    .unwrap();
    // User xattrs on a file and a directory.
    xattr::set(root.join("plain.txt"), "user.color", b"blue").unwrap();
    xattr::set(root.join("plain.txt"), "user.binary", &[0u8, 1, 2, 255]).unwrap();
    xattr::set(root.join("dir"), "user.role", b"container").unwrap();
    // A sparse file: a hole, data, a hole, data at the end.
    let sparse = std::fs::File::create(root.join("sparse.img")).unwrap();
    sparse.set_len(64 * 1024 * 1024).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"middle", 20 * 1024 * 1024).unwrap();
    sparse.write_all_at(b"end", 64 * 1024 * 1024 - 3).unwrap();
    drop(sparse);
    // A FIFO.
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    // Owners other than ours, where we may set them.
    if is_root() {
        std::os::unix::fs::lchown(root.join("secret"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("link-rel"), Some(4321), Some(8765)).unwrap();
    }
    // Times with nanoseconds, set last (everything above changes them); directories too.
    let mut n = 0u32;
    for entry in walk(root) {
        n += 1;
        set_mtime(&entry, 1_600_000_000 + n as i64 * 1000, 123_456_789 + n);
    }
    set_mtime(root, 1_500_000_000, 987_654_321);
}

/// Every path under `root`, children before their directory (so setting times is safe).
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[derive(Debug, PartialEq)]
struct Facts {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    link: Option<PathBuf>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    content: Option<Vec<u8>>,
}

fn facts(path: &Path) -> Facts {
    let m = std::fs::symlink_metadata(path).unwrap();
    let is_symlink = m.file_type().is_symlink();
    let mut xattrs = Vec::new();
    if !is_symlink {
        for name in xattr::list(path).unwrap() {
            if name.as_bytes().starts_with(b"user.") {
                xattrs.push((
                    name.as_bytes().to_vec(),
                    xattr::get(path, &name).unwrap().unwrap(),
                ));
            }
        }
        xattrs.sort();
    }
    Facts {
        kind: m.mode() & 0o170000,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        size: if m.is_file() { m.len() } else { 0 },
        mtime: (m.mtime(), m.mtime_nsec()),
        link: is_symlink.then(|| std::fs::read_link(path).unwrap()),
        xattrs,
        content: m.is_file().then(|| std::fs::read(path).unwrap()),
    }
}

#[test]
fn every_kind_of_entry_round_trips() {
    let env = Env::new();
    let src = env.path("src");
    build_tree(&src);
    let snap = env.backup(&src, &[]);
    let target = env.path("restore");
    env.restore(&snap, &target, &["--verify"]).ok();
    let out = restored(&target, &src);

    let originals = walk(&src);
    assert!(
        originals.len() >= 20,
        "tree has {} entries",
        originals.len()
    );
    for original in &originals {
        let rel = original.strip_prefix(&src).unwrap();
        let copy = out.join(rel);
        assert_eq!(facts(original), facts(&copy), "{}", rel.display());
    }
    assert_eq!(
        walk(&out).len(),
        originals.len(),
        "restore added or lost entries"
    );
    assert_eq!(facts(&src).mtime, facts(&out).mtime, "top directory time");
    assert_eq!(facts(&src).mode, facts(&out).mode);

    // Hard links come back as hard links, grouped as they were.
    let mut groups: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    for p in walk(&out) {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_file() {
            groups
                .entry(m.ino())
                .or_default()
                .push(p.strip_prefix(&out).unwrap().to_path_buf());
        }
    }
    let mut linked: Vec<Vec<PathBuf>> = groups.into_values().filter(|g| g.len() > 1).collect();
    for g in &mut linked {
        g.sort();
    }
    linked.sort();
    assert_eq!(
        linked,
        vec![
            vec![
                PathBuf::from("dir/hl-b"),
                PathBuf::from("dir/nested/hl-c"),
                PathBuf::from("hl-a")
            ],
            vec![PathBuf::from("pair-1"), PathBuf::from("pair-2")],
        ]
    );

    // The sparse file is sparse again: far fewer blocks than its size.
    let m = std::fs::metadata(out.join("sparse.img")).unwrap();
    assert_eq!(m.len(), 64 * 1024 * 1024);
    assert!(
        m.blocks() * 512 < 1024 * 1024,
        "sparse file uses {} bytes",
        m.blocks() * 512
    );

    if is_root() {
        assert_eq!(facts(&out.join("secret")).uid, 1234);
        assert_eq!(facts(&out.join("link-rel")).gid, 8765);
    }
}

#[test]
fn restores_a_single_file_and_a_subdirectory() {
    let env = Env::new();
    let src = env.path("src");
    build_tree(&src);
    env.backup(&src, &[]);

    let one = env.path("one");
    let spec = format!("latest:{}", src.join("dir/random.bin").display());
    env.restore(&spec, &one, &[]).ok();
    assert_eq!(
        std::fs::read(one.join("random.bin")).unwrap(),
        std::fs::read(src.join("dir/random.bin")).unwrap()
    );
    assert_eq!(std::fs::read_dir(&one).unwrap().count(), 1);

    let sub = env.path("sub");
    let spec = format!("latest:{}", src.join("dir").display());
    env.restore(&spec, &sub, &[]).ok();
    assert_eq!(
        facts(&sub.join("nested/deeper/text")),
        facts(&src.join("dir/nested/deeper/text"))
    );
    assert!(
        !sub.join("plain.txt").exists(),
        "only the subdirectory's contents are restored"
    );
}
