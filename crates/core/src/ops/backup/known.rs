//! What the repository already holds, in the shape a backup needs it.
//!
//! A backup needs the locations of tree blobs (to read the parent snapshot) and, for data, only
//! whether a blob is stored. Loading the whole index for that cost 60 bytes per blob before the
//! first file was looked at (a million-file tree: 60 MB, for an unchanged run that stores
//! nothing). Here trees are indexed exactly, every blob is kept as a 64-bit fingerprint, and
//! the full index is loaded only when a new chunk's fingerprint is already there, the one
//! question a fingerprint cannot settle.

use std::sync::{Mutex, OnceLock};

use crate::blob::{BlobId, BlobKind};
use crate::error::{Error, Result};
use crate::index::{IdFingerprints, Index};
use crate::pack::PackEntry;
use crate::repository::Repository;

pub struct KnownBlobs<'a> {
    repo: &'a Repository,
    trees: Index,
    fingerprints: IdFingerprints,
    everything: OnceLock<Index>,
    /// Held while the full index loads, so that it is loaded once.
    loading: Mutex<()>,
}

impl<'a> KnownBlobs<'a> {
    pub fn load(repo: &'a Repository) -> Result<Self> {
        // An index file that cannot be read is left out: its blobs are stored again if met
        // (check reports the file; repair index replaces it). A backup must not stop on it.
        let ((mut trees, prints), _unreadable) = repo.read_readable_index_files(
            || (Index::default(), Vec::new()),
            |(trees, prints), _, file| {
                for pack in &file.packs {
                    prints.extend(pack.blobs.iter().map(|e| IdFingerprints::of(&e.id)));
                    let tree_entries: Vec<PackEntry> = pack
                        .blobs
                        .iter()
                        .filter(|e| e.kind == BlobKind::Tree)
                        .cloned()
                        .collect();
                    if !tree_entries.is_empty() {
                        trees.add_pack(&pack.name, pack.salt, &tree_entries);
                    }
                }
            },
        )?;
        trees.finish();
        Ok(KnownBlobs {
            repo,
            trees,
            fingerprints: IdFingerprints::new(prints),
            everything: OnceLock::new(),
            loading: Mutex::new(()),
        })
    }

    /// Every stored tree blob, with its location.
    pub fn trees(&self) -> &Index {
        &self.trees
    }

    /// Whether the blob is (all but certainly) stored: for an unchanged file's blobs, taken
    /// from the parent snapshot, so that a blob lost from the index since is stored again.
    pub fn probably_stored(&self, id: &BlobId) -> bool {
        self.fingerprints.contains(id)
    }

    /// Whether the blob is stored, exactly: a new blob is written unless this says yes.
    pub fn stored(&self, kind: BlobKind, id: &BlobId) -> Result<bool> {
        if kind == BlobKind::Tree {
            return Ok(self.trees.contains(id));
        }
        if !self.fingerprints.contains(id) {
            return Ok(false);
        }
        Ok(self.everything()?.contains(id))
    }

    /// The full index, loaded on first use; a failed load is not remembered, so the caller
    /// gets the storage's own error and a later call tries again.
    fn everything(&self) -> Result<&Index> {
        if let Some(index) = self.everything.get() {
            return Ok(index);
        }
        let _loading = self.loading.lock().map_err(|_| {
            Error::InvalidInput("a backup thread panicked loading the index".into())
        })?;
        if let Some(index) = self.everything.get() {
            return Ok(index);
        }
        let index = self.repo.load_index()?;
        Ok(self.everything.get_or_init(|| index))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::kdf::KdfParams;
    use crate::ops::backup::{backup, BackupOptions, BackupProgress, BackupSource};
    use crate::repository::InitOptions;
    use crate::storage::LocalStorage;

    #[test]
    fn trees_exact_data_by_fingerprint_and_the_full_index_only_when_needed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        std::fs::write(src.join("a.txt"), b"alpha ".repeat(1000)).expect("write");
        std::fs::write(src.join("sub/b.bin"), [7u8; 3000]).expect("write");
        let options = InitOptions {
            kdf: KdfParams::generated_key(),
            ..InitOptions::default()
        };
        let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
        let repo = Repository::init(storage, &[b'a'; 64], options).expect("init");
        let done = backup(
            &repo,
            BackupOptions::new(BackupSource::Paths(vec![src.clone()])),
            &BackupProgress::default(),
        )
        .expect("backup");
        let root = done.snapshot.tree;

        let known = KnownBlobs::load(&repo).expect("load");
        assert!(known.trees().contains(&root));
        assert_eq!(known.stored(BlobKind::Tree, &root).ok(), Some(true));
        let unknown = BlobId([0x5a; 32]);
        assert_eq!(known.stored(BlobKind::Data, &unknown).ok(), Some(false));
        assert!(
            known.everything.get().is_none(),
            "a fingerprint miss settles it without the full index"
        );

        let full = repo.load_index().expect("index");
        let data: Vec<BlobId> = full
            .iter()
            .filter(|(_, loc)| loc.kind == BlobKind::Data)
            .map(|(id, _)| *id)
            .collect();
        assert!(!data.is_empty());
        for id in &data {
            assert!(known.probably_stored(id));
            assert!(
                !known.trees().contains(id),
                "data blobs stay out of the tree index"
            );
        }
        assert_eq!(known.stored(BlobKind::Data, &data[0]).ok(), Some(true));
        assert!(
            known.everything.get().is_some(),
            "a fingerprint hit is confirmed exactly"
        );
        assert!(!known.probably_stored(&unknown));
    }
}
