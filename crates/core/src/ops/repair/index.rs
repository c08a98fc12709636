//! `repair index`: a new index built from the pack headers alone.
//!
//! Every pack carries a sealed header listing its blobs, so the index can always be rebuilt
//! from the packs. New index files are written first and the old ones (those listed at the
//! start, and only those) deleted last: a crash in between leaves both, which readers merge.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::index::{IndexFile, IndexPack, BLOBS_PER_INDEX_FILE};
use crate::pack::read_header;
use crate::repository::Repository;
use crate::storage::ObjectKind;

#[derive(Clone, Debug, Default)]
pub struct RepairIndexOptions {
    /// Read and report, write and delete nothing.
    pub dry_run: bool,
    /// Also read every blob (authenticate, decompress, compare with its id) and leave out
    /// of the new index those that fail: a pack whose header is intact can still hold a
    /// damaged blob, which the header alone would index as good.
    pub read_data: bool,
}

/// A blob left out of the new index because it cannot be read intact (`read_data`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedBlob {
    pub pack: String,
    pub blob: String,
    pub reason: String,
}

/// A pack left out of the new index because its header cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedPack {
    pub name: String,
    pub reason: String,
    /// Blobs the old index listed in it, which the new one no longer lists.
    pub blobs_indexed_before: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairIndexReport {
    pub dry_run: bool,
    /// Packs whose header was read and indexed.
    pub packs_read: usize,
    pub blobs_indexed: usize,
    pub index_files_written: usize,
    /// Packs in storage whose header is damaged: not indexed, not deleted.
    pub skipped_packs: Vec<SkippedPack>,
    /// Indexed packs that no old index file listed (from an interrupted backup).
    pub packs_found: usize,
    /// Packs old index files listed that are no longer in storage...
    pub packs_missing: usize,
    /// ... and the entries that pointed into them.
    pub entries_dropped: usize,
    /// Old index files that could not be read (name, reason); removed with the others.
    pub unreadable_index_files: Vec<(String, String)>,
    pub old_index_files_removed: usize,
    /// With `read_data`: blobs that failed to read, not indexed (their packs stay; prune
    /// removes what no snapshot uses once `repair snapshots` has dropped the files).
    pub damaged_blobs: Vec<DamagedBlob>,
}

/// Rebuilds the index from every readable pack header; see the module documentation.
pub fn repair_index(repo: &Repository, options: &RepairIndexOptions) -> Result<RepairIndexReport> {
    rebuild(repo, options, BLOBS_PER_INDEX_FILE)
}

fn rebuild(
    repo: &Repository,
    options: &RepairIndexOptions,
    blobs_per_file: usize,
) -> Result<RepairIndexReport> {
    let (dry, _lock) = super::prepare(repo, options.dry_run, "repair index")?;
    let repo = dry.as_ref().unwrap_or(repo);
    let mut report = RepairIndexReport {
        dry_run: options.dry_run,
        ..RepairIndexReport::default()
    };
    // Listed before the packs: an index file is only ever deleted once every pack it could
    // name has been read again.
    let old_files: Vec<String> = names(repo, ObjectKind::Index)?;
    let old = old_entries(repo, &old_files, &mut report);
    let stored = names(repo, ObjectKind::Pack)?;
    let written = write_new_index(
        repo,
        &stored,
        &old,
        blobs_per_file,
        options.read_data,
        &mut report,
    )?;

    let stored: HashSet<&str> = stored.iter().map(String::as_str).collect();
    for (pack, entries) in &old {
        if !stored.contains(pack.as_str()) {
            report.packs_missing += 1;
            report.entries_dropped += entries;
        }
    }
    for name in old_files.iter().filter(|n| !written.contains(*n)) {
        if repo.storage().delete_if_present(ObjectKind::Index, name)? {
            report.old_index_files_removed += 1;
        }
    }
    Ok(report)
}

fn names(repo: &Repository, kind: ObjectKind) -> Result<Vec<String>> {
    let mut names: Vec<String> = repo
        .storage()
        .list(kind)?
        .into_iter()
        .map(|info| info.name)
        .collect();
    names.sort_unstable();
    Ok(names)
}

/// How many entries the old index files list per pack. Only for the report: an index file
/// that cannot be read is noted, and the packs it listed show up as found again.
fn old_entries(
    repo: &Repository,
    files: &[String],
    report: &mut RepairIndexReport,
) -> HashMap<String, usize> {
    let mut per_pack: HashMap<String, usize> = HashMap::new();
    for name in files {
        let object = format!("index {name}");
        let opened = repo
            .storage()
            .read(ObjectKind::Index, name)
            .map_err(Error::from)
            .and_then(|data| IndexFile::open(&repo.keys().seal, data, &object));
        match opened {
            Ok(file) => {
                for pack in file.packs {
                    *per_pack.entry(pack.name).or_default() += pack.blobs.len();
                }
            }
            Err(e) => report
                .unreadable_index_files
                .push((name.clone(), e.to_string())),
        }
    }
    per_pack
}

/// Whether a failure to read a pack header means the pack itself is damaged (so it is left
/// out), rather than that the storage failed (so the repair stops before deleting anything:
/// a pack must not drop out of the index because of a passing I/O error).
fn is_damage(error: &Error) -> bool {
    match error {
        Error::Integrity { .. } | Error::Format { .. } => true,
        Error::Storage(e) => e.is_not_found(),
        _ => false,
    }
}

/// Reads every pack's header and writes index files of at most about `blobs_per_file` blobs
/// (a file is closed once it reaches that). Returns the names of the files written.
fn write_new_index(
    repo: &Repository,
    packs: &[String],
    old: &HashMap<String, usize>,
    blobs_per_file: usize,
    read_data: bool,
    report: &mut RepairIndexReport,
) -> Result<HashSet<String>> {
    let mut written = HashSet::new();
    let mut pending = IndexFile::new(repo.pack_version());
    let mut pending_blobs = 0;
    for name in packs {
        let (salt, mut blobs) = match read_header(repo.storage().as_ref(), &repo.keys().seal, name)
        {
            Ok(header) => header,
            Err(e) if is_damage(&e) => {
                report.skipped_packs.push(SkippedPack {
                    name: name.clone(),
                    reason: e.to_string(),
                    blobs_indexed_before: old.get(name).copied().unwrap_or(0),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        if read_data {
            blobs = intact_blobs(repo, name, salt, blobs, report)?;
        }
        report.packs_read += 1;
        report.blobs_indexed += blobs.len();
        if !old.contains_key(name) {
            report.packs_found += 1;
        }
        pending_blobs += blobs.len();
        pending.packs.push(IndexPack {
            name: name.clone(),
            salt,
            blobs,
        });
        if pending_blobs >= blobs_per_file {
            written.insert(flush(repo, &mut pending, report)?);
            pending_blobs = 0;
        }
    }
    if !pending.packs.is_empty() {
        written.insert(flush(repo, &mut pending, report)?);
    }
    Ok(written)
}

/// The blobs of pack `name` that read back intact; the others go into the report.
fn intact_blobs(
    repo: &Repository,
    name: &str,
    salt: crate::crypto::Salt,
    blobs: Vec<crate::pack::PackEntry>,
    report: &mut RepairIndexReport,
) -> Result<Vec<crate::pack::PackEntry>> {
    let mut one_pack = crate::index::Index::default();
    one_pack.add_pack(name, salt, &blobs);
    one_pack.finish();
    let (mut scratch, mut blob) = (Vec::new(), Vec::new());
    let mut intact = Vec::with_capacity(blobs.len());
    for entry in blobs {
        match repo.read_blob_into(&one_pack, &entry.id, &mut scratch, &mut blob) {
            Ok(()) => intact.push(entry),
            Err(e) if is_damage(&e) => report.damaged_blobs.push(DamagedBlob {
                pack: name.to_string(),
                blob: entry.id.to_hex(),
                reason: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(intact)
}

fn flush(
    repo: &Repository,
    pending: &mut IndexFile,
    report: &mut RepairIndexReport,
) -> Result<String> {
    let name = repo.save_index_file(pending)?;
    report.index_files_written += 1;
    pending.packs.clear();
    Ok(name)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::kdf::KdfParams;
    use crate::ops::backup::{backup, BackupOptions, BackupProgress, BackupSource};
    use crate::repository::InitOptions;
    use crate::storage::{LocalStorage, StorageError};

    /// A repository with one backup of a few files, small packs so that there are several.
    fn repository(dir: &std::path::Path) -> Repository {
        let src = dir.join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        for i in 0..6 {
            // Random, so each file takes its 600 kB of pack.
            let mut bytes = vec![0u8; 600_000];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
            std::fs::write(src.join(format!("f{i}")), bytes).expect("write");
        }
        let options = InitOptions {
            kdf: KdfParams::generated_key(),
            pack_size: 1024 * 1024,
            ..InitOptions::default()
        };
        let storage = Arc::new(LocalStorage::new(dir.join("repo")));
        let repo = Repository::init(storage, &[b'a'; 64], options).expect("init");
        let mut backup_options = BackupOptions::new(BackupSource::Paths(vec![src]));
        backup_options.count_totals = false;
        backup(&repo, backup_options, &BackupProgress::default()).expect("backup");
        repo
    }

    fn index_files(repo: &Repository) -> Vec<IndexFile> {
        repo.read_index_files(Vec::new, |files, _, f| files.push(f))
            .expect("index")
    }

    #[test]
    fn index_files_are_closed_at_the_blob_limit_and_cover_every_pack() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = repository(dir.path());
        let before = repo.load_index().expect("index");
        let packs = names(&repo, ObjectKind::Pack).expect("packs");
        assert!(packs.len() >= 3, "{} packs", packs.len());

        let report = rebuild(&repo, &RepairIndexOptions::default(), 2).expect("repair");
        assert_eq!(report.packs_read, packs.len());
        assert_eq!(report.blobs_indexed, before.blob_count());
        assert_eq!((report.packs_found, report.packs_missing), (0, 0));
        let files = index_files(&repo);
        assert_eq!(files.len(), report.index_files_written);
        assert!(files.len() >= 2, "{} index files", files.len());
        for file in &files {
            let blobs: usize = file.packs.iter().map(|p| p.blobs.len()).sum();
            let last = file.packs.last().map_or(0, |p| p.blobs.len());
            assert!(blobs - last < 2, "closed once it reached the limit");
        }
        let after = repo.load_index().expect("index");
        assert_eq!(after.blob_count(), before.blob_count());
        for (id, loc) in before.iter() {
            let now = after.get(id).expect("still indexed");
            assert_eq!(now.entry(*id), loc.entry(*id));
            assert_eq!(after.pack(now.pack).name, before.pack(loc.pack).name);
        }
    }

    #[test]
    fn a_dry_run_changes_nothing_and_reports_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = repository(dir.path());
        let old = names(&repo, ObjectKind::Index).expect("list");
        let dry = RepairIndexOptions {
            dry_run: true,
            ..Default::default()
        };
        let report = repair_index(&repo, &dry).expect("dry run");
        assert_eq!(names(&repo, ObjectKind::Index).expect("list"), old);
        assert_eq!(report.old_index_files_removed, old.len());
        let real = repair_index(&repo, &RepairIndexOptions::default()).expect("repair");
        assert_eq!(
            RepairIndexReport {
                dry_run: true,
                ..real
            },
            report
        );
    }

    #[test]
    fn only_damage_skips_a_pack() {
        assert!(is_damage(&Error::integrity("pack p", "bad magic")));
        assert!(is_damage(&Error::format("pack p", "header")));
        let not_found = StorageError::NotFound {
            location: "r".into(),
            kind: ObjectKind::Pack,
            name: "p".into(),
        };
        assert!(is_damage(&not_found.into()));
        let io = StorageError::Io {
            location: "r".into(),
            source: std::io::Error::other("disk gone"),
            retryable: true,
        };
        assert!(!is_damage(&io.into()), "an I/O error stops the repair");
    }
}
