//! One flipped byte in a pack, or a truncated pack, costs exactly the files whose blobs it
//! held (with every file that shares the damaged frame of small blobs): restore and dump name
//! the damaged file and blob, and everything else comes back.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{random_bytes, restored, Env};
use lifeboat_core::blob::BlobId;
use lifeboat_core::index::{Index, Location};
use lifeboat_core::ops::walk::{locate, Located};
use lifeboat_core::storage::LocalStorage;
use lifeboat_core::Repository;

/// Sizes of the large files: each well over 1 MiB of random data, so each has its own blobs,
/// and together (about 12 MiB) they fit in one 16 MiB data pack.
const BIG: [(&str, usize); 5] = [
    ("big-a.bin", 1_300_000),
    ("big-b.bin", 1_700_000),
    ("nested/big-c.bin", 2_200_000),
    ("big-d.bin", 2_900_000),
    ("nested/deeper/big-e.bin", 3_400_000),
];
const SMALL: [(&str, usize); 4] = [
    ("small-1.txt", 100),
    ("small-2.bin", 5_000),
    ("nested/small-3.bin", 40_000),
    ("empty", 0),
];

struct Fixture {
    env: Env,
    files: Vec<PathBuf>,
    repo: Repository,
    index: Index,
    tree: BlobId,
}

fn fixture() -> Fixture {
    let env = Env::new();
    let src = env.path("src");
    let mut files = Vec::new();
    // Thirty more small files, walked first: they fill (and close) a shared frame of their
    // own before the large files' chunks are sealed, whose tails share the last frame.
    let many_small = (0..30).map(|i| (format!("a-small/s{i:02}.bin"), 100_000));
    let named = BIG
        .iter()
        .chain(SMALL.iter())
        .map(|(name, len)| (name.to_string(), *len))
        .chain(many_small);
    for (i, (name, len)) in named.enumerate() {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, random_bytes(len, 1000 + i as u64)).unwrap();
        files.push(path);
    }
    env.backup(&src, &[]);
    Fixture::open(env, files)
}

impl Fixture {
    /// The repository of `env` opened in-process, with its index and newest snapshot's tree.
    fn open(env: Env, files: Vec<PathBuf>) -> Fixture {
        let repo = Repository::open(
            Arc::new(LocalStorage::new(&env.repo)),
            common::PASSWORD.as_bytes(),
        )
        .unwrap();
        let index = repo.load_index().unwrap();
        let tree = repo.snapshots().unwrap().last().unwrap().snapshot.tree;
        Fixture {
            env,
            files,
            repo,
            index,
            tree,
        }
    }
}

impl Fixture {
    fn content(&self, file: &Path) -> Vec<BlobId> {
        match locate(
            &self.repo,
            &self.index,
            self.tree,
            file.as_os_str().as_bytes(),
            "x",
        )
        .unwrap()
        {
            Located::Node { node, .. } => node.content.clone(),
            Located::Root(_) => panic!("{} is the root", file.display()),
        }
    }

    fn location(&self, id: &BlobId) -> Location {
        *self.index.get(id).expect("indexed")
    }

    fn pack_path(&self, loc: &Location) -> PathBuf {
        let name = &self.index.pack(loc.pack).name;
        self.env.repo.join("data").join(&name[..2]).join(name)
    }

    fn big_files(&self) -> &[PathBuf] {
        &self.files[..BIG.len()]
    }
}

#[track_caller]
fn assert_restored_same(src_file: &Path, target: &Path) {
    let copy = restored(target, src_file);
    let want = std::fs::read(src_file).unwrap();
    let got =
        std::fs::read(&copy).unwrap_or_else(|e| panic!("{} not restored: {e}", copy.display()));
    assert!(got == want, "{} differs after restore", copy.display());
}

/// A full restore fails (exit 1) reporting exactly the `lost` files, writes none of them, and
/// restores every `kept` file intact, leaving no temporary files behind.
#[track_caller]
fn assert_restore_loses_exactly(env: &Env, lost: &[PathBuf], kept: &[PathBuf]) {
    let target = env.path("restore");
    let run = env.restore("latest", &target, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let error_lines: Vec<_> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(error_lines.len(), lost.len(), "{}", run.stderr);
    for f in lost {
        let name = f.display().to_string();
        assert!(
            error_lines.iter().any(|l| l.contains(&name)),
            "{name} not reported:\n{}",
            run.stderr
        );
        assert!(!restored(&target, f).exists());
    }
    for f in kept {
        assert_restored_same(f, &target);
    }
    assert_eq!(temp_leftovers(&target), Vec::<PathBuf>::new());
}

fn temp_leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(temp_leftovers(&p));
        } else if p.file_name().unwrap().to_string_lossy().contains("tmp") {
            out.push(p);
        }
    }
    out
}

#[test]
fn one_flipped_byte_costs_exactly_one_file() {
    let fx = fixture();
    // Damage the middle blob of the large file with the most blobs (the chunker key is random
    // per repository, so which file is cut where varies from run to run).
    let damaged = fx
        .big_files()
        .iter()
        .max_by_key(|f| fx.content(f).len())
        .unwrap()
        .clone();
    let blobs = fx.content(&damaged);
    assert!(
        blobs.len() >= 2,
        "{} has {} blobs",
        damaged.display(),
        blobs.len()
    );
    // A blob with a frame of its own (a chunk of at least the minimum size; the file's first
    // always is): damage to a shared frame is the next test's subject.
    let own: Vec<BlobId> = blobs
        .iter()
        .copied()
        .filter(|id| !fx.location(id).is_shared_frame())
        .collect();
    let bad = own[own.len() / 2];
    let loc = fx.location(&bad);
    // The other large files have blobs in the same pack, so the test shows they survive.
    let sharing: Vec<&PathBuf> = fx
        .files
        .iter()
        .filter(|f| {
            **f != damaged
                && fx
                    .content(f)
                    .iter()
                    .any(|id| fx.location(id).pack == loc.pack)
        })
        .collect();
    assert!(
        sharing.len() >= 4,
        "only {} other files share the damaged pack",
        sharing.len()
    );
    for f in &fx.files {
        if *f != damaged {
            assert!(
                !fx.content(f).contains(&bad),
                "{} shares the damaged blob",
                f.display()
            );
        }
    }

    let pack = fx.pack_path(&loc);
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = loc.offset as usize + loc.length as usize / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&pack, &bytes).unwrap();

    let env = &fx.env;
    let target = env.path("restore");
    let run = env.restore("latest", &target, &[]);
    assert_eq!(
        run.code, 1,
        "restore of a damaged snapshot must fail\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains(&bad.to_hex()))
        .unwrap_or_else(|| panic!("damaged blob {} not named:\n{}", bad.to_hex(), run.stderr));
    assert!(
        line.contains(&damaged.display().to_string()),
        "damaged file not named: {line}"
    );
    assert!(line.contains("integrity"), "{line}");
    let error_lines: Vec<_> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(
        error_lines.len(),
        1,
        "only the damaged file fails:\n{}",
        run.stderr
    );
    for f in &fx.files {
        if *f != damaged {
            assert_restored_same(f, &target);
        }
    }
    assert!(
        !restored(&target, &damaged).exists(),
        "a damaged file must not appear under its name"
    );
    assert_eq!(temp_leftovers(&target), Vec::<PathBuf>::new());

    // dump: the damaged file fails naming the blob, a neighbour in the same pack is fine.
    let run = env.lb(&["dump", "latest", &damaged.display().to_string()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"));
    assert!(
        run.stderr.contains(&bad.to_hex()),
        "dump does not name the blob: {}",
        run.stderr
    );
    let neighbour = sharing.iter().find(|f| fx.big_files().contains(f)).unwrap();
    let run = env
        .lb(&["dump", "latest", &neighbour.display().to_string()])
        .ok();
    assert!(
        run.raw_stdout == std::fs::read(neighbour).unwrap(),
        "dump of {} differs",
        neighbour.display()
    );

    // Restoring only an undamaged file from the same pack succeeds outright.
    let one = env.path("one");
    let spec = format!("latest:{}", neighbour.display());
    env.restore(&spec, &one, &["--verify"]).ok();
    assert!(
        std::fs::read(one.join(neighbour.file_name().unwrap())).unwrap()
            == std::fs::read(neighbour).unwrap()
    );
}

/// A flipped byte in a frame of small files costs exactly the files with a blob in that frame;
/// the rest, including small files in other frames of the same pack, restore.
#[test]
fn a_flipped_byte_in_a_shared_frame_costs_the_files_sharing_it() {
    let fx = fixture();
    let first_small = fx
        .files
        .iter()
        .find(|f| f.to_string_lossy().contains("a-small/s00"))
        .unwrap();
    let loc = fx.location(&fx.content(first_small)[0]);
    assert!(loc.is_shared_frame());
    let frame = (loc.pack, loc.offset);
    let (lost, kept): (Vec<PathBuf>, Vec<PathBuf>) = fx.files.iter().cloned().partition(|f| {
        fx.content(f).iter().any(|id| {
            let l = fx.location(id);
            (l.pack, l.offset) == frame
        })
    });
    // 30 files of 100 kB: a 2 MiB frame holds about 20 of them, the rest go on.
    assert!(lost.len() >= 10, "{} files in the frame", lost.len());
    let kept_small = kept
        .iter()
        .filter(|f| f.to_string_lossy().contains("a-small/"))
        .count();
    assert!(kept_small >= 1, "every small file is in the damaged frame");

    let pack = fx.pack_path(&loc);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[loc.offset as usize + loc.length as usize / 3] ^= 0x40;
    std::fs::write(&pack, &bytes).unwrap();

    assert_restore_loses_exactly(&fx.env, &lost, &kept);
}

/// Files split by a cut at `cut` bytes into `pack`: those with a frame reaching past it (lost),
/// and the others.
fn split_at_cut(fx: &Fixture, pack: u32, cut: u64) -> (Vec<PathBuf>, Vec<PathBuf>) {
    fx.files.iter().cloned().partition(|f| {
        fx.content(f).iter().any(|id| {
            let l = fx.location(id);
            l.pack == pack && l.offset as u64 + l.length as u64 > cut
        })
    })
}

#[test]
fn truncated_pack_fails_only_the_files_past_the_cut() {
    let fx = fixture();
    // A cut through the middle of a frame that loses some files of the pack and keeps others
    // of the same pack: the latest such frame of any data pack.
    let mut frames: Vec<Location> = fx
        .index
        .iter()
        .filter(|(_, l)| l.kind == lifeboat_core::blob::BlobKind::Data)
        .map(|(_, l)| *l)
        .collect();
    frames.sort_by_key(|l| std::cmp::Reverse((l.pack, l.offset)));
    frames.dedup_by_key(|l| (l.pack, l.offset));
    let in_pack =
        |f: &PathBuf, pack: u32| fx.content(f).iter().any(|id| fx.location(id).pack == pack);
    let (loc, cut, lost, kept) = frames
        .iter()
        .find_map(|l| {
            let cut = l.offset as u64 + l.length as u64 / 2;
            let (lost, kept) = split_at_cut(&fx, l.pack, cut);
            let survivor = kept.iter().any(|f| in_pack(f, l.pack));
            (!lost.is_empty() && survivor).then_some((*l, cut, lost, kept))
        })
        .expect("a frame whose truncation spares files of the same pack");
    let pack = fx.pack_path(&loc);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let env = &fx.env;
    assert_restore_loses_exactly(env, &lost, &kept);

    let run = env.lb(&["dump", "latest", &lost[0].display().to_string()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"));
    let run = env
        .lb(&["dump", "latest", &kept[0].display().to_string()])
        .ok();
    assert!(run.raw_stdout == std::fs::read(&kept[0]).unwrap());
}

/// `dump` reads a file's blobs on several threads; a damaged blob at the end still fails the
/// command instead of hanging or writing a silently short file, and the blobs before it come
/// out in order.
#[test]
fn dump_of_a_file_with_a_damaged_last_blob_fails_cleanly() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("big.bin");
    // Over three maximum-size chunks (8 MiB): at least four blobs whatever the chunker key.
    std::fs::write(&file, random_bytes(25 * 1024 * 1024, 77)).unwrap();
    env.backup(&src, &[]);
    let fx = Fixture::open(env, vec![file.clone()]);
    let blobs = fx.content(&file);
    assert!(blobs.len() >= 4, "{} blobs", blobs.len());
    let whole = fx
        .env
        .lb_os(&["dump".as_ref(), "latest".as_ref(), file.as_os_str()]);
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    assert!(
        whole.raw_stdout == std::fs::read(&file).unwrap(),
        "dump differs from the file"
    );

    let bad = *blobs.last().unwrap();
    let loc = fx.location(&bad);
    let pack = fx.pack_path(&loc);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[loc.offset as usize + 7] ^= 0x01;
    std::fs::write(&pack, &bytes).unwrap();
    let run = fx
        .env
        .lb_os(&["dump".as_ref(), "latest".as_ref(), file.as_os_str()]);
    assert_ne!(run.code, 0, "a damaged blob must fail the dump");
    assert!(
        run.stderr.contains(&bad.to_hex()[..8]) || run.stderr.contains("authentic"),
        "{}",
        run.stderr
    );
    let want = std::fs::read(&file).unwrap();
    assert!(
        want.starts_with(&run.raw_stdout) && run.raw_stdout.len() < want.len(),
        "what came out ({} bytes) is a prefix of the file, in order",
        run.raw_stdout.len()
    );
}

/// The paths a `check --json` finding lists as affected.
fn affected_paths(finding: &serde_json::Value) -> Vec<String> {
    finding["affects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap().to_string())
        .collect()
}

fn errors_of(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["error"] == true)
        .cloned()
        .collect()
}

#[test]
fn check_passes_a_healthy_repository_and_its_parts_read_every_pack_once() {
    let fx = fixture();
    let env = &fx.env;
    let run = env.lb(&["check"]).ok();
    assert!(run.stdout.contains("no errors found"), "{}", run.stdout);
    let all = env.lb(&["check", "--read-data", "--json"]).ok().json();
    assert_eq!(all["errors"], 0, "{all}");
    let packs = all["packs"].as_u64().unwrap();
    assert!(packs >= 2, "data and tree packs: {all}");
    assert_eq!(all["packs_read"].as_u64(), Some(packs));
    assert!(all["bytes_read"].as_u64().unwrap() > 12_000_000);
    let parts: u64 = (1..=3)
        .map(|k| {
            let subset = format!("{k}/3");
            let r = env
                .lb(&["check", "--read-data-subset", &subset, "--json"])
                .ok()
                .json();
            r["packs_read"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(parts, packs, "parts 1/3..3/3 read each pack once");
    let some = env
        .lb(&["check", "--read-data-subset", "50%", "--json"])
        .ok()
        .json();
    assert_eq!(some["packs_read"].as_u64(), Some(packs.div_ceil(2)));
    for bad in ["0/3", "4/3", "0%", "150%", "half"] {
        let run = env.lb(&["check", "--read-data-subset", bad]);
        assert_ne!(run.code, 0, "{bad} accepted");
        assert!(run.stderr.contains("not a subset"), "{bad}: {}", run.stderr);
    }
}

#[test]
fn check_read_data_names_the_damaged_blob_its_pack_and_the_file() {
    let fx = fixture();
    let damaged = fx.big_files()[2].clone();
    let bad = fx.content(&damaged)[0]; // a file's first chunk has a frame of its own
    let loc = fx.location(&bad);
    assert!(!loc.is_shared_frame());
    let pack = fx.pack_path(&loc);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[loc.offset as usize + loc.length as usize / 2] ^= 0x40;
    std::fs::write(&pack, &bytes).unwrap();

    let env = &fx.env;
    env.lb(&["check"]).ok(); // the structure is intact
    let run = env.lb(&["check", "--read-data", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let report = run.json();
    let errors = errors_of(&report);
    assert_eq!(errors.len(), 1, "{report}");
    let finding = &errors[0];
    assert_eq!(finding["object"], format!("blob {}", bad.to_hex()));
    let pack_name = pack.file_name().unwrap().to_str().unwrap();
    assert!(
        finding["message"].as_str().unwrap().contains(pack_name),
        "{finding}"
    );
    assert_eq!(
        affected_paths(finding),
        vec![damaged.display().to_string()],
        "only the damaged file is named"
    );
    let human = env.lb(&["check", "--read-data"]);
    assert_eq!(human.code, 1);
    assert!(
        human.stdout.contains(&damaged.display().to_string()),
        "{}",
        human.stdout
    );
    assert!(human.stderr.contains("1 error(s)"), "{}", human.stderr);
}

#[test]
fn check_names_a_missing_pack_and_the_files_of_every_snapshot_it_costs() {
    let fx = fixture();
    let env = &fx.env;
    env.backup(&env.path("src"), &["--force"]);
    let lost = fx.big_files()[0].clone();
    let loc = fx.location(&fx.content(&lost)[0]);
    std::fs::remove_file(fx.pack_path(&loc)).unwrap();

    let run = env.lb(&["check", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let report = run.json();
    let errors = errors_of(&report);
    let missing = errors
        .iter()
        .find(|f| f["message"].as_str().unwrap().contains("is missing"))
        .unwrap_or_else(|| panic!("no missing-pack finding: {report}"));
    let paths = affected_paths(missing);
    let lost_path = lost.display().to_string();
    assert_eq!(
        paths.iter().filter(|p| **p == lost_path).count(),
        2,
        "the file is named once per snapshot: {paths:?}"
    );
    let snapshots: std::collections::BTreeSet<&str> = missing["affects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(snapshots.len(), 2);
}

#[test]
fn check_reports_a_damaged_index_file_and_notes_an_unindexed_pack() {
    let fx = fixture();
    let env = &fx.env;
    // A pack that no index lists (as a running backup leaves one) is a note, not an error.
    let loc = fx.location(&fx.content(&fx.big_files()[0])[0]);
    let stray = env.repo.join("data").join("ff").join("f".repeat(64));
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::copy(fx.pack_path(&loc), &stray).unwrap();
    let report = env.lb(&["check", "--json"]).ok().json();
    assert_eq!(report["errors"], 0, "{report}");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["message"].as_str().unwrap().contains("not in the index")),
        "{report}"
    );

    let index_dir = env.repo.join("index");
    let index_file = std::fs::read_dir(&index_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .unwrap();
    std::fs::write(&index_file, b"not an index").unwrap();
    let run = env.lb(&["check", "--json"]);
    assert_eq!(run.code, 1);
    let report = run.json();
    let name = index_file.file_name().unwrap().to_str().unwrap();
    assert!(
        errors_of(&report)
            .iter()
            .any(|f| f["object"] == format!("index {name}")),
        "{report}"
    );
}
