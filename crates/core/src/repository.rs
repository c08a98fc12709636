//! Opening and creating repositories, and the reads every operation shares.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::blob::{BlobId, BlobKind, Compression, IdKeys};
use crate::chunker::{Chunker, ChunkerParams};
use crate::crypto::kdf::KdfParams;
use crate::crypto::keys::{KeyFile, MasterKeys};
use crate::error::{Error, Result};
use crate::index::{Index, IndexFile};
use crate::pack::{blob_in_frame, open_frame_into, FrameCache, PackEntry};
use crate::snapshot::{Snapshot, SnapshotEntry};
use crate::storage::{ObjectKind, Storage, StorageError, StorageResult};
use crate::tree::Tree;

/// The repository format this program creates and the newest it reads. Version 2 groups small
/// blobs into shared frames; version 1 repositories stay version 1 (readable by older
/// programs): this program writes them in the version 1 layout.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest repository format this program reads and writes.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// The `config` object: plaintext JSON, because it holds nothing secret and says what a
/// directory is before any password is asked for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub version: u32,
    pub id: String,
    pub created: DateTime<Utc>,
    pub chunker: ChunkerParams,
    pub compression: Compression,
    /// Packs are closed when they reach this many bytes.
    pub pack_size: u32,
}

impl Config {
    /// Decodes and checks the `config` object: a version this program reads, chunker
    /// parameters within their limits.
    pub fn parse(data: &[u8]) -> Result<Config> {
        let config: Config =
            serde_json::from_slice(data).map_err(|e| Error::format("config", e))?;
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&config.version) {
            return Err(Error::UnsupportedVersion {
                found: config.version,
                supported: FORMAT_VERSION,
            });
        }
        config
            .chunker
            .validate()
            .map_err(|e| Error::format("config", e))?;
        config
            .compression
            .validate()
            .map_err(|e| Error::format("config", e))?;
        Ok(config)
    }
}

/// An index file that cannot be read: damaged or rewritten in storage.
#[derive(Debug)]
pub struct UnreadableIndexFile {
    pub name: String,
    pub error: Error,
}

/// An index loaded around unreadable index files (see [`Repository::recover_index_where`]).
pub struct RecoveredIndex {
    pub index: Index,
    pub unreadable: Vec<UnreadableIndexFile>,
    /// Pack headers read to make up for them.
    pub packs_read: usize,
}

/// A stored snapshot object that cannot be read: damaged or rewritten in storage, or written
/// by a newer program.
#[derive(Debug)]
pub struct UnreadableSnapshot {
    pub id: String,
    pub error: Error,
}

/// The snapshots that can be read, and those that cannot.
#[derive(Debug, Default)]
pub struct SnapshotListing {
    pub readable: Vec<SnapshotEntry>,
    pub unreadable: Vec<UnreadableSnapshot>,
}

impl SnapshotListing {
    /// The unreadable snapshot `spec` names by id or id prefix, if any: naming a damaged
    /// snapshot must say so rather than "no such snapshot".
    pub fn unreadable_named(&self, spec: &str) -> Option<&UnreadableSnapshot> {
        if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.unreadable.iter().find(|u| u.id.starts_with(spec))
    }
}

/// The chunker and blob-id keys of a repository, to share with a new one (`init
/// --copy-chunker-params`): both then cut and name blobs alike, so `copy` between them moves
/// blobs without reading them, and they deduplicate the same way. The sealing key is never
/// shared.
#[derive(Clone)]
pub struct SharedChunking {
    pub params: ChunkerParams,
    pub chunker: [u8; 32],
    pub blob_id: [u8; 32],
}

impl std::fmt::Debug for SharedChunking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedChunking")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The repository format version to create (`OLDEST_FORMAT_VERSION..=FORMAT_VERSION`).
    pub version: u32,
    pub kdf: KdfParams,
    pub chunker: ChunkerParams,
    pub compression: Compression,
    pub pack_size: u32,
    /// Chunk and name blobs as this other repository does (its `chunker` field is ignored).
    pub shared_chunking: Option<SharedChunking>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            version: FORMAT_VERSION,
            kdf: KdfParams::default(),
            chunker: ChunkerParams::default(),
            compression: Compression::Auto,
            pack_size: 16 * 1024 * 1024,
            shared_chunking: None,
        }
    }
}

/// Index files read at once when the index is loaded.
fn index_readers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

/// Restores the frame cache's budget when dropped ([`Repository::limit_frame_cache`]).
pub struct FrameCacheLimit<'a> {
    frames: &'a FrameCache,
    before: usize,
}

impl Drop for FrameCacheLimit<'_> {
    fn drop(&mut self) {
        self.frames.set_budget(self.before);
    }
}

pub struct Repository {
    storage: Arc<dyn Storage>,
    config: Config,
    keys: MasterKeys,
    key_name: String,
    chunker: Chunker,
    ids: IdKeys,
    frames: FrameCache,
}

fn key_name(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

impl Repository {
    pub fn init(
        storage: Arc<dyn Storage>,
        password: &[u8],
        options: InitOptions,
    ) -> Result<Repository> {
        if storage.exists()? {
            return Err(Error::RepositoryExists {
                location: storage.location(),
            });
        }
        options.chunker.validate().map_err(Error::InvalidInput)?;
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&options.version) {
            return Err(Error::InvalidInput(format!(
                "format version {} is not one this lifeboat writes ({OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})",
                options.version
            )));
        }
        storage.create()?;
        let config = Config {
            version: options.version,
            id: hex::encode(rand::random::<[u8; 16]>()),
            created: Utc::now(),
            chunker: options
                .shared_chunking
                .as_ref()
                .map_or(options.chunker, |shared| shared.params),
            compression: options.compression,
            pack_size: options.pack_size,
        };
        let mut keys = MasterKeys::generate(&config.id);
        if let Some(shared) = &options.shared_chunking {
            keys.chunker = shared.chunker;
            keys.blob_id = shared.blob_id;
        }
        let key_file = KeyFile::create(&keys, password, options.kdf)?.to_bytes();
        let key_name = key_name(&key_file);
        // The key goes first: a config without a key would be a repository nobody can open.
        storage.write(ObjectKind::Key, &key_name, &key_file)?;
        let config_bytes = serde_json::to_vec_pretty(&config).expect("config serializes");
        storage.write(ObjectKind::Config, "config", &config_bytes)?;
        Ok(Repository::assemble(storage, config, keys, key_name))
    }

    fn assemble(
        storage: Arc<dyn Storage>,
        config: Config,
        keys: MasterKeys,
        key_name: String,
    ) -> Repository {
        let chunker = Chunker::new(&keys.chunker, config.chunker);
        let ids = IdKeys::new(&keys.blob_id);
        Repository {
            storage,
            config,
            keys,
            key_name,
            chunker,
            ids,
            frames: FrameCache::default(),
        }
    }

    /// Keeps at most `bytes` of decompressed frames while the returned guard lives (the
    /// default, 8 MiB, is what a restore's workers need).
    pub fn limit_frame_cache(&self, bytes: usize) -> FrameCacheLimit<'_> {
        let before = self.frames.set_budget(bytes);
        FrameCacheLimit {
            frames: &self.frames,
            before,
        }
    }

    pub fn read_config(storage: &dyn Storage) -> Result<Config> {
        let data = match storage.read(ObjectKind::Config, "config") {
            Ok(d) => d,
            Err(StorageError::NotFound { .. }) => {
                return Err(Error::NoRepository {
                    location: storage.location(),
                    reason: "no config object (run `lifeboat init` to create one)".into(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        Config::parse(&data)
    }

    /// Tries every key file, the cheapest to derive first: a key file storage added with
    /// costly KDF parameters is then tried only if no genuine one opens. A damaged key file,
    /// or one left from another repository (an interrupted `init` run again), is skipped so
    /// it cannot hide a key that works.
    pub fn open(storage: Arc<dyn Storage>, password: &[u8]) -> Result<Repository> {
        let config = Self::read_config(storage.as_ref())?;
        let mut skipped = Vec::new();
        let mut key_files = Vec::new();
        for info in storage.list(ObjectKind::Key)? {
            let object = format!("key {}", info.name);
            let data = storage.read(ObjectKind::Key, &info.name)?;
            match KeyFile::parse(&data, &object) {
                Ok(key) => key_files.push((key.kdf.cost(), info.name, object, key)),
                Err(e) => skipped.push(e.to_string()),
            }
        }
        let tried = key_files.len() + skipped.len();
        key_files.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, name, object, key) in key_files {
            match key.open(password, &object) {
                Ok(Some(keys)) if keys.repository_id == config.id => {
                    return Ok(Repository::assemble(storage, config, keys, name));
                }
                Ok(Some(_)) => skipped.push(format!("{object} belongs to another repository")),
                Ok(None) => {}
                Err(e) => skipped.push(e.to_string()),
            }
        }
        // The password may simply be wrong; but say what else was seen. A key file damaged
        // inside its sealed keys fails exactly like a wrong password: say that it can.
        let detail = if tried == 0 {
            " (it has no key files: put a copy of one back into its keys/)".to_string()
        } else if skipped.is_empty() {
            format!(" (tried {tried} key file(s); a damaged key file fails like a wrong password)")
        } else {
            format!(" (unusable key files: {})", skipped.join("; "))
        };
        Err(Error::WrongPassword {
            location: storage.location(),
            detail,
        })
    }

    /// Takes a lock of `kind` for `operation`, held until the guard drops.
    pub fn lock(
        &self,
        kind: crate::lock::LockKind,
        operation: &str,
    ) -> Result<crate::lock::LockGuard> {
        crate::lock::acquire(self.storage.clone(), self.keys.seal, kind, operation)
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn keys(&self) -> &MasterKeys {
        &self.keys
    }

    /// What a new repository needs to chunk and name blobs as this one does.
    pub fn shared_chunking(&self) -> SharedChunking {
        SharedChunking {
            params: self.config.chunker,
            chunker: self.keys.chunker,
            blob_id: self.keys.blob_id,
        }
    }

    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// The name of the key file this session opened the repository with.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// Returns a handle to the same repository over another storage (e.g. dry-run).
    pub fn with_storage(&self, storage: Arc<dyn Storage>) -> Repository {
        Repository {
            storage,
            config: self.config.clone(),
            keys: self.keys.clone(),
            key_name: self.key_name.clone(),
            chunker: self.chunker.clone(),
            ids: self.ids.clone(),
            frames: FrameCache::default(),
        }
    }

    /// The pack (and index file) format this repository's packs are written in.
    pub fn pack_version(&self) -> u8 {
        if self.config.version <= 1 {
            crate::pack::PACK_VERSION_1
        } else {
            crate::pack::PACK_VERSION_2
        }
    }

    /// The id of a data blob (a chunk of a file).
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        self.ids.id(BlobKind::Data, data)
    }

    /// The id of a tree blob (a serialized directory).
    pub fn tree_id(&self, bytes: &[u8]) -> BlobId {
        self.ids.id(BlobKind::Tree, bytes)
    }

    pub fn load_index(&self) -> Result<Index> {
        self.load_index_where(|_| true)
    }

    /// The index of the blobs `keep` accepts only: a command that reads a few blobs holds 60
    /// bytes for each of those, not for every blob in the repository.
    pub fn load_index_where(&self, keep: impl Fn(&PackEntry) -> bool) -> Result<Index> {
        Ok(self.recover_index_where(keep)?.index)
    }

    /// The stored size of every index file together: what loading the whole index reads.
    pub fn index_bytes(&self) -> Result<u64> {
        Ok(self
            .storage
            .list(ObjectKind::Index)?
            .iter()
            .map(|info| info.size)
            .sum())
    }

    /// The index of the tree blobs: all that listing, finding and comparing files read.
    pub fn load_tree_index(&self) -> Result<Index> {
        self.load_index_where(|e| e.kind == BlobKind::Tree)
    }

    /// Like [`Self::load_index_where`], saying which index files could not be read. Their
    /// packs are then indexed from the packs' own sealed headers (what `repair index` writes
    /// down for good): one damaged index file must not make data that is still stored
    /// unreachable. Every pack no readable index file names is read for its header then,
    /// the packs of a running backup included (their blobs are as good as any).
    pub fn recover_index_where(&self, keep: impl Fn(&PackEntry) -> bool) -> Result<RecoveredIndex> {
        let add = |index: &mut Index, name: &str, salt, blobs: &[PackEntry]| {
            index.add_pack_where(name, salt, blobs, &keep);
        };
        let ((mut index, indexed), unreadable) = self.read_readable_index_files(
            || (Index::default(), std::collections::HashSet::new()),
            |(index, indexed), _, file| {
                for pack in &file.packs {
                    indexed.insert(pack.name.clone());
                    add(index, &pack.name, pack.salt, &pack.blobs);
                }
            },
        )?;
        let mut packs_read = 0;
        if !unreadable.is_empty() {
            for info in self.storage.list(ObjectKind::Pack)? {
                if indexed.contains(&info.name) {
                    continue;
                }
                match crate::pack::read_header(self.storage.as_ref(), &self.keys.seal, &info.name) {
                    Ok((salt, blobs)) => {
                        packs_read += 1;
                        add(&mut index, &info.name, salt, &blobs);
                    }
                    // A damaged or vanished pack indexes nothing; check reports it.
                    Err(Error::Integrity { .. } | Error::Format { .. }) => {}
                    Err(Error::Storage(e)) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        index.finish();
        Ok(RecoveredIndex {
            index,
            unreadable,
            packs_read,
        })
    }

    /// Opens every index file in turn, holding one at a time, into a state that `start`
    /// makes; an index file that cannot be read fails the call. Operations that must know
    /// every indexed blob (prune) use this.
    pub fn read_index_files<T>(
        &self,
        start: impl Fn() -> T,
        each: impl FnMut(&mut T, &str, IndexFile),
    ) -> Result<T> {
        let (state, unreadable) = self.read_readable_index_files(start, each)?;
        match unreadable.into_iter().next() {
            Some(damaged) => Err(damaged.error),
            None => Ok(state),
        }
    }

    /// Like [`Self::read_index_files`], setting aside the index files that cannot be read
    /// (authentication or decoding fails: damaged in storage), which are returned.
    ///
    /// A prune replaces index files while backups run (new files first, then the old ones
    /// go): when a listed file has vanished by the time it is read, the pass starts over from
    /// a new listing, which holds the replacements.
    pub fn read_readable_index_files<T>(
        &self,
        start: impl Fn() -> T,
        mut each: impl FnMut(&mut T, &str, IndexFile),
    ) -> Result<(T, Vec<UnreadableIndexFile>)> {
        const ATTEMPTS: usize = 5;
        let mut attempt = 0;
        'pass: loop {
            attempt += 1;
            let mut state = start();
            let mut unreadable = Vec::new();
            let infos = self.storage.list(ObjectKind::Index)?;
            // Read, authenticate and decompress a few files at once (the cores are otherwise
            // idle while an operation starts); hand them to `each` in listing order. A window
            // at a time, so that memory holds a few decoded files, never the whole index.
            let window = index_readers().min(infos.len()).max(1);
            for batch in infos.chunks(window) {
                let opened: Vec<StorageResult<Result<IndexFile>>> = std::thread::scope(|scope| {
                    let readers: Vec<_> = batch
                        .iter()
                        .map(|info| scope.spawn(|| self.open_index_file(&info.name)))
                        .collect();
                    readers
                        .into_iter()
                        .map(|r| {
                            r.join()
                                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                        })
                        .collect()
                });
                for (info, file) in batch.iter().zip(opened) {
                    let file = match file {
                        Ok(file) => file,
                        Err(e) if e.is_not_found() && attempt < ATTEMPTS => continue 'pass,
                        Err(e) => return Err(e.into()),
                    };
                    match file {
                        Ok(file) => each(&mut state, &info.name, file),
                        Err(
                            error @ (Error::Integrity { .. }
                            | Error::Format { .. }
                            | Error::UnsupportedVersion { .. }),
                        ) => unreadable.push(UnreadableIndexFile {
                            name: info.name.clone(),
                            error,
                        }),
                        Err(e) => return Err(e),
                    }
                }
            }
            return Ok((state, unreadable));
        }
    }

    /// An index file opened; the outer error is the storage's (not found: deleted by a
    /// concurrent prune since it was listed).
    fn open_index_file(&self, name: &str) -> StorageResult<Result<IndexFile>> {
        let data = self.storage.read(ObjectKind::Index, name)?;
        Ok(IndexFile::open(
            &self.keys.seal,
            data,
            &format!("index {name}"),
        ))
    }

    pub fn save_index_file(&self, file: &IndexFile) -> Result<String> {
        debug_assert_eq!(file.version, self.pack_version() as u32);
        let bytes = file.seal(&self.keys.seal);
        let name = blake3::hash(&bytes).to_hex().to_string();
        self.storage.write(ObjectKind::Index, &name, &bytes)?;
        Ok(name)
    }

    /// All snapshots, oldest first; an unreadable one fails the call. Operations that must
    /// know every snapshot (prune) use this; the others use [`Self::snapshot_listing`].
    pub fn snapshots(&self) -> Result<Vec<SnapshotEntry>> {
        let listing = self.snapshot_listing()?;
        match listing.unreadable.into_iter().next() {
            Some(damaged) => Err(damaged.error),
            None => Ok(listing.readable),
        }
    }

    /// The snapshots that can be read, oldest first, and those that cannot: one damaged
    /// snapshot object must not stop backups, nor the restore of every other snapshot. Only
    /// the object's own damage (authentication, decoding, an unknown version) is set aside;
    /// a storage that cannot be read fails the call, since then nothing is known.
    pub fn snapshot_listing(&self) -> Result<SnapshotListing> {
        let mut listing = SnapshotListing::default();
        for info in self.storage.list(ObjectKind::Snapshot)? {
            let data = match self.storage.read(ObjectKind::Snapshot, &info.name) {
                Ok(data) => data,
                // Forgotten by another run since the listing.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let object = format!("snapshot {}", info.name);
            match Snapshot::open(&self.keys.seal, &data, &object) {
                Ok(snapshot) => listing.readable.push(SnapshotEntry {
                    id: info.name,
                    snapshot,
                }),
                Err(
                    error @ (Error::Integrity { .. }
                    | Error::Format { .. }
                    | Error::UnsupportedVersion { .. }),
                ) => listing.unreadable.push(UnreadableSnapshot {
                    id: info.name,
                    error,
                }),
                Err(e) => return Err(e),
            }
        }
        listing
            .readable
            .sort_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)));
        Ok(listing)
    }

    /// Refuses an operation that deletes objects where the storage would refuse the deletes,
    /// before it changes anything.
    pub fn ensure_can_delete(&self, operation: &str) -> Result<()> {
        if self.storage.capabilities().delete {
            return Ok(());
        }
        Err(Error::DeleteRefused {
            operation: operation.to_string(),
            location: self.storage.location(),
        })
    }

    /// Records, durably and before anything is deleted, that `operation` removes `ids`: the
    /// snapshot chain then knows these removals from tampering (`snapshot::chain`).
    pub fn record_forgotten(&self, operation: &str, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let record = crate::snapshot::chain::ForgetRecord::new(operation, ids.to_vec());
        let bytes = record.seal(&self.keys.seal);
        let name = blake3::hash(&bytes).to_hex().to_string();
        self.storage.write(ObjectKind::Forgotten, &name, &bytes)?;
        Ok(())
    }

    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<String> {
        let bytes = snapshot.seal(&self.keys.seal);
        let name = blake3::hash(&bytes).to_hex().to_string();
        self.storage.write(ObjectKind::Snapshot, &name, &bytes)?;
        Ok(name)
    }

    /// Reads, authenticates and id-checks one blob. A blob that shares its frame with others
    /// is cut from the frame, which stays cached for the next blob of it.
    pub fn read_blob(&self, index: &Index, id: &BlobId) -> Result<Vec<u8>> {
        let mut blob = Vec::new();
        self.read_blob_into(index, id, &mut Vec::new(), &mut blob)?;
        Ok(blob)
    }

    /// [`Repository::read_blob`] into `blob`, with `scratch` for the sealed bytes: a reader of
    /// many blobs keeps both, rather than faulting in fresh multi-MiB buffers for each.
    pub fn read_blob_into(
        &self,
        index: &Index,
        id: &BlobId,
        scratch: &mut Vec<u8>,
        blob: &mut Vec<u8>,
    ) -> Result<()> {
        let loc = index
            .get(id)
            .ok_or_else(|| Error::BlobNotIndexed(id.to_hex()))?;
        let pack = index.pack(loc.pack);
        let entry = loc.entry(*id);
        if !loc.is_shared_frame() {
            self.read_sealed(&pack.name, &entry, scratch)?;
            open_frame_into(
                &self.keys.seal,
                &pack.name,
                &pack.salt,
                &entry,
                scratch,
                blob,
            )?;
            blob_in_frame(&self.ids, &pack.name, &entry, blob)?;
            return Ok(());
        }
        let frame = self.frames.get_or_open(&pack.name, loc.offset, |buffer| {
            self.open_frame(&pack.name, &pack.salt, &entry, buffer)
        })?;
        let plain = blob_in_frame(&self.ids, &pack.name, &entry, &frame)?;
        blob.clear();
        blob.reserve_exact(plain.len());
        blob.extend_from_slice(plain);
        Ok(())
    }

    /// The whole frame that holds `id`, read and opened without the frame cache: for a reader
    /// that takes several blobs of it at once ([`Repository::blob_range_in_frame`]).
    pub fn read_frame_into(
        &self,
        index: &Index,
        id: &BlobId,
        scratch: &mut Vec<u8>,
        frame: &mut Vec<u8>,
    ) -> Result<()> {
        let loc = index
            .get(id)
            .ok_or_else(|| Error::BlobNotIndexed(id.to_hex()))?;
        let pack = index.pack(loc.pack);
        let entry = loc.entry(*id);
        self.read_sealed(&pack.name, &entry, scratch)?;
        open_frame_into(
            &self.keys.seal,
            &pack.name,
            &pack.salt,
            &entry,
            scratch,
            frame,
        )
    }

    /// Where blob `id` lies in `frame` (read for it or for another blob of the same frame),
    /// checked against its id.
    pub fn blob_range_in_frame(
        &self,
        index: &Index,
        id: &BlobId,
        frame: &[u8],
    ) -> Result<std::ops::Range<usize>> {
        let loc = index
            .get(id)
            .ok_or_else(|| Error::BlobNotIndexed(id.to_hex()))?;
        let pack = index.pack(loc.pack);
        let entry = loc.entry(*id);
        if entry.frame_length as usize != frame.len() {
            return Err(Error::integrity(
                format!("blob {id} in pack {}", pack.name),
                "its frame is not the one read for it",
            ));
        }
        blob_in_frame(&self.ids, &pack.name, &entry, frame)?;
        let start = entry.frame_offset as usize;
        Ok(start..start + entry.raw_length as usize)
    }

    /// The sealed bytes of `entry`'s frame; tree frames through the storage's metadata path
    /// (which a cache keeps).
    fn read_sealed(
        &self,
        pack: &str,
        entry: &crate::pack::PackEntry,
        sealed: &mut Vec<u8>,
    ) -> Result<()> {
        let (offset, length) = (entry.offset as u64, entry.length as u64);
        let read = if entry.kind == BlobKind::Tree {
            self.storage
                .read_metadata_range_into(ObjectKind::Pack, pack, offset, length, sealed)
        } else {
            self.storage
                .read_range_into(ObjectKind::Pack, pack, offset, length, sealed)
        };
        Ok(read?)
    }

    /// Opens a frame for the frame cache into `frame`, with a spare buffer of the cache for
    /// the sealed bytes.
    fn open_frame(
        &self,
        pack: &str,
        salt: &crate::crypto::Salt,
        entry: &crate::pack::PackEntry,
        mut frame: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let mut sealed = self.frames.spare_buffer();
        let opened = self.read_sealed(pack, entry, &mut sealed).and_then(|()| {
            open_frame_into(&self.keys.seal, pack, salt, entry, &mut sealed, &mut frame)
        });
        self.frames.recycle_buffer(sealed);
        opened.map(|()| frame)
    }

    pub fn load_tree(&self, index: &Index, id: &BlobId) -> Result<Tree> {
        if index.get(id).map(|l| l.kind) == Some(BlobKind::Data) {
            return Err(Error::format(format!("tree {id}"), "names a data blob"));
        }
        let data = self.read_blob(index, id)?;
        Tree::from_bytes(&data, &format!("tree {id}"))
    }

    pub fn list_keys(&self) -> Result<Vec<(String, KeyFile)>> {
        let mut out = Vec::new();
        for info in self.storage.list(ObjectKind::Key)? {
            let data = self.storage.read(ObjectKind::Key, &info.name)?;
            out.push((
                info.name.clone(),
                KeyFile::parse(&data, &format!("key {}", info.name))?,
            ));
        }
        out.sort_by_key(|k| k.1.created);
        Ok(out)
    }

    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<String> {
        let bytes = KeyFile::create(&self.keys, password, kdf)?.to_bytes();
        let name = key_name(&bytes);
        self.storage.write(ObjectKind::Key, &name, &bytes)?;
        Ok(name)
    }

    /// Removes a key other than the one in use; the last key can never go.
    pub fn remove_key(&self, name: &str) -> Result<()> {
        if name == self.key_name {
            return Err(Error::InvalidInput(
                "refusing to remove the key this command was opened with; open with another password to remove it".into(),
            ));
        }
        let keys = self.list_keys()?;
        if !keys.iter().any(|(n, _)| n == name) {
            return Err(Error::InvalidInput(format!("no key {name}")));
        }
        self.storage.delete(ObjectKind::Key, name)?;
        Ok(())
    }

    /// Replaces the key in use with one for `new_password`: the new key is written before the
    /// old one is removed, so a crash in between leaves both passwords working.
    pub fn change_password(&mut self, new_password: &[u8], kdf: KdfParams) -> Result<String> {
        let name = self.add_key(new_password, kdf)?;
        self.storage.delete(ObjectKind::Key, &self.key_name)?;
        self.key_name = name.clone();
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::kdf::KdfParams;

    fn config_with(compression: Compression) -> Vec<u8> {
        serde_json::to_vec(&Config {
            version: FORMAT_VERSION,
            id: "00".repeat(32),
            created: Utc::now(),
            chunker: crate::chunker::ChunkerParams::default(),
            compression,
            pack_size: 16 << 20,
        })
        .expect("encode")
    }

    #[test]
    fn the_cheapest_key_file_is_tried_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage: Arc<dyn Storage> = Arc::new(crate::storage::LocalStorage::new(dir.path()));
        let cheap = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            ..KdfParams::default()
        };
        let options = InitOptions {
            kdf: cheap,
            ..InitOptions::default()
        };
        let repo = Repository::init(storage.clone(), b"pw", options).expect("init");
        let cheap_name = repo.key_name().to_string();
        let costly = KdfParams {
            memory_kib: 4096,
            iterations: 2,
            parallelism: 1,
            ..KdfParams::default()
        };
        // Costlier slots for the same password, one at least named (and listed) first.
        let mut added = Vec::new();
        while !added.iter().any(|n: &String| *n < cheap_name) || added.len() < 2 {
            added.push(repo.add_key(b"pw", costly.clone()).expect("add key"));
        }
        let opened = Repository::open(storage, b"pw").expect("open");
        assert_eq!(opened.key_name(), cheap_name, "costlier keys: {added:?}");
    }

    #[test]
    fn a_config_naming_a_compression_level_zstd_lacks_is_refused() {
        assert!(Config::parse(&config_with(Compression::Level(19))).is_ok());
        for level in [0, 23, 99, -5, i32::MAX] {
            let err =
                Config::parse(&config_with(Compression::Level(level))).expect_err("outside 1-22");
            assert!(err.to_string().contains("outside zstd's 1-22"), "{err}");
        }
    }
}
