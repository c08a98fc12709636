//! Repository format versions: a version 1 repository written by lifeboat 0.1 still opens,
//! restores and takes new backups (in the version 1 layout, so 0.1 can still read it), and new
//! repositories are version 2 with small files grouped into shared frames.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use lifeboat_core::blob::BlobKind;
use lifeboat_core::storage::LocalStorage;
use lifeboat_core::Repository;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1")
}

/// The fixture repository, copied so the test never changes the checked-in bytes.
fn v1_env() -> Env {
    let env = Env::empty();
    copy_tree(&fixture().join("repo"), &env.repo);
    env
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn config_version(repo: &Path) -> u64 {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("config")).unwrap()).unwrap();
    config["version"].as_u64().expect("version")
}

/// The format byte of every pack in the repository.
fn pack_versions(repo: &Path) -> Vec<u8> {
    repo_files(&repo.join("data"))
        .iter()
        .map(|p| std::fs::read(p).unwrap()[4])
        .collect()
}

fn assert_same_tree(a: &Path, b: &Path) {
    let mut names: Vec<_> = std::fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut other: Vec<_> = std::fs::read_dir(b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    other.sort();
    assert_eq!(
        names,
        other,
        "{} and {} list different names",
        a.display(),
        b.display()
    );
    for name in names {
        let (x, y) = (a.join(&name), b.join(&name));
        let kind = std::fs::symlink_metadata(&x).unwrap().file_type();
        if kind.is_symlink() {
            assert_eq!(
                std::fs::read_link(&x).unwrap(),
                std::fs::read_link(&y).unwrap()
            );
        } else if kind.is_dir() {
            assert_same_tree(&x, &y);
        } else {
            assert_eq!(
                std::fs::read(&x).unwrap(),
                std::fs::read(&y).unwrap(),
                "{}",
                x.display()
            );
        }
    }
}

const SOURCE_PATH: &str = "/tmp/lifeboat-v1-fixture-source";

#[test]
fn a_version_1_repository_restores_and_stays_version_1() {
    let env = v1_env();
    assert_eq!(config_version(&env.repo), 1);
    let snaps = env.lb(&["snapshots", "--json"]).ok().json();
    let snaps = snaps.as_array().expect("snapshot list");
    assert_eq!(snaps.len(), 2, "{snaps:?}");

    // The newest snapshot is the checked-in source tree; the first lacks the appended row.
    let target = env.path("latest");
    env.restore("latest", &target, &[]).ok();
    let restored_source = restored(&target, Path::new(SOURCE_PATH));
    assert_same_tree(&fixture().join("source"), &restored_source);
    let first = env
        .lb(&["dump", "1122e897", &format!("{SOURCE_PATH}/data/5.csv")])
        .ok();
    let now = std::fs::read(fixture().join("source/data/5.csv")).unwrap();
    assert_eq!(
        [first.raw_stdout.as_slice(), b"row 6, appended\n"].concat(),
        now,
        "the first snapshot holds the file before the append"
    );

    // A new backup into it: many small files, which version 2 would group into frames.
    let src = env.path("more");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..50 {
        std::fs::write(
            src.join(format!("f{i}.txt")),
            format!("small file {i}\n").repeat(20),
        )
        .unwrap();
    }
    env.backup(&src, &[]);
    assert_eq!(
        config_version(&env.repo),
        1,
        "the repository stays version 1"
    );
    let versions = pack_versions(&env.repo);
    assert!(versions.len() > 4, "new packs were written");
    assert!(
        versions.iter().all(|v| *v == 1),
        "pack versions {versions:?}"
    );
    let target = env.path("more-restored");
    env.restore("latest", &target, &[]).ok();
    assert_same_tree(&src, &restored(&target, &src));
}

/// Initializes a format version 1 repository in `env` (cheap KDF, as `Env::new`).
fn init_version_1(env: &Env) {
    env.lb(&[
        "init",
        "--format-version",
        "1",
        "--kdf-memory-kib",
        "64",
        "--kdf-iterations",
        "1",
    ])
    .ok();
}

/// Data pack bytes and the number of distinct data frames after backing up `src` into `env`.
fn data_frames(env: &Env, src: &Path) -> (u64, usize) {
    env.backup(src, &[]);
    let bytes = repo_files(&env.repo.join("data"))
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .filter(|b| b.len() > 16 * 1024) // the tree pack of this tiny tree is smaller
        .map(|b| b.len() as u64)
        .sum();
    let repo =
        Repository::open(Arc::new(LocalStorage::new(&env.repo)), PASSWORD.as_bytes()).unwrap();
    let index = repo.load_index().unwrap();
    let frames: HashSet<(u32, u32)> = index
        .iter()
        .filter(|(_, l)| l.kind == BlobKind::Data)
        .map(|(_, l)| (l.pack, l.offset))
        .collect();
    (bytes, frames.len())
}

#[test]
fn new_repositories_are_version_2_and_share_frames() {
    let v1 = Env::empty();
    let src = v1.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // 200 small files, alike but not equal (as a source tree's are), 3.5 KiB each. The pack
    // header (an entry per blob) is the same size in both versions.
    for i in 0..200 {
        let text: String = (0..100)
            .map(|j| format!("let value_{j} = compute({i}, {j});\n"))
            .collect();
        std::fs::write(src.join(format!("f{i:03}.rs")), text).unwrap();
    }
    let v1 = Env::empty();
    init_version_1(&v1);
    let (v1_bytes, v1_frames) = data_frames(&v1, &src);
    let env = Env::new();
    assert_eq!(config_version(&env.repo), 2);
    let (v2_bytes, v2_frames) = data_frames(&env, &src);
    assert_eq!(v1_frames, 200, "version 1: one frame per blob");
    assert_eq!(v2_frames, 1, "version 2: the small files share one frame");
    assert!(pack_versions(&env.repo).iter().all(|v| *v == 2));
    assert!(
        v2_bytes * 2 < v1_bytes,
        "shared frames compress better: {v2_bytes} bytes against {v1_bytes}"
    );
    let target = env.path("restored");
    env.restore("latest", &target, &[]).ok();
    assert_same_tree(&src, &restored(&target, &src));
    // One file out of the middle of a shared frame.
    let one = env
        .lb(&["dump", "latest", src.join("f117.rs").to_str().unwrap()])
        .ok();
    assert_eq!(one.raw_stdout, std::fs::read(src.join("f117.rs")).unwrap());
}

/// Text-like bytes: compressible (about 3x), but not so repetitive that the chunker's cut
/// points or zstd's work become trivial.
fn text_like(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let (a, b) = ((state >> 33) % 10_000, (state >> 17) % 997);
        out.extend_from_slice(format!("let value_{a} = compute({b}, \"{a:x}\");\n").as_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn consecutive_compressible_chunks_of_a_file_share_a_frame() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // Text, then a random stretch (incompressible chunks get frames of their own), then text.
    let mut content = text_like(14 << 20, 1);
    content.extend_from_slice(&random_bytes(4 << 20, 2));
    content.extend_from_slice(&text_like(10 << 20, 3));
    std::fs::write(src.join("big.log"), &content).unwrap();
    env.backup(&src, &[]);

    let repo =
        Repository::open(Arc::new(LocalStorage::new(&env.repo)), PASSWORD.as_bytes()).unwrap();
    let index = repo.load_index().unwrap();
    let mut frames: std::collections::HashMap<(u32, u32), Vec<u32>> = Default::default();
    for (_, loc) in index.iter().filter(|(_, l)| l.kind == BlobKind::Data) {
        frames
            .entry((loc.pack, loc.offset))
            .or_default()
            .push(loc.frame_length);
        assert!(loc.frame_length <= 8 << 20, "a run stays small");
    }
    let runs = frames.values().filter(|blobs| blobs.len() > 1).count();
    let alone = frames.values().filter(|blobs| blobs.len() == 1).count();
    assert!(runs >= 4, "24 MiB of text in runs of 3-4 MiB: {runs} runs");
    assert!(alone >= 2, "the random chunks are alone: {alone}");

    let target = env.path("restored");
    env.restore("latest", &target, &[]).ok();
    assert_same_tree(&src, &restored(&target, &src));
    let dumped = env
        .lb(&["dump", "latest", src.join("big.log").to_str().unwrap()])
        .ok();
    assert!(dumped.raw_stdout == content, "dump returns the same bytes");
}

#[test]
fn init_can_create_version_1_and_refuses_unknown_versions() {
    let env = Env::empty();
    init_version_1(&env);
    assert_eq!(config_version(&env.repo), 1);
    let bad = Env::empty();
    let run = bad.lb(&["init", "--format-version", "3"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("format-version"), "{}", run.stderr);
    assert!(!bad.repo.exists(), "nothing was created");
}

/// Trees share frames too, but small ones (128 KiB of plaintext): a snapshot's trees end up
/// spread over the frames of many backups, and reading one tree decompresses its frame.
#[test]
fn tree_frames_stay_small() {
    let env = Env::new();
    let src = env.path("src");
    // 300 directories of 40 files with long names: about 1.5 MB of trees.
    for d in 0..300 {
        let dir = src.join(format!("directory-with-a-long-name-{d:04}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..40 {
            std::fs::write(
                dir.join(format!("a-file-with-a-rather-long-name-{f:03}.txt")),
                format!("{d} {f}"),
            )
            .unwrap();
        }
    }
    env.backup(&src, &[]);
    let repo =
        Repository::open(Arc::new(LocalStorage::new(&env.repo)), PASSWORD.as_bytes()).unwrap();
    let index = repo.load_index().unwrap();
    let trees: Vec<_> = index
        .iter()
        .filter(|(_, l)| l.kind == BlobKind::Tree)
        .map(|(_, l)| *l)
        .collect();
    let frames: HashSet<(u32, u32)> = trees.iter().map(|l| (l.pack, l.offset)).collect();
    let largest = trees.iter().map(|l| l.raw_length).max().unwrap();
    assert!(frames.len() >= 5, "{} tree frames", frames.len());
    for l in &trees {
        assert!(
            l.frame_length <= 128 * 1024 + largest,
            "a tree frame of {} bytes",
            l.frame_length
        );
    }
    let target = env.path("restored");
    env.restore("latest", &target, &[]).ok();
    assert_same_tree(&src, &restored(&target, &src));
}
