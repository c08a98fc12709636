//! The back half of the backup pipeline, shared by file data and trees: deduplicate, compress,
//! seal into packs, upload packs, and record them in index files.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender};

use crate::blob::{compress_with, BlobId, BlobKind, Compression};
use crate::error::{Error, Result};
use crate::index::{IdHasher, Index, IndexFile, IndexPack};
use crate::pack::{PackWriter, SealedPack};
use crate::repository::Repository;
use crate::storage::{ObjectKind, StorageError};

/// Write an index file after this many packs, so a crashed backup's packs are still found
/// (and reused) by the next run.
const PACKS_PER_INDEX_FILE: usize = 64;

pub struct BlobJob {
    pub kind: BlobKind,
    pub id: BlobId,
    pub data: Vec<u8>,
}

#[derive(Default)]
pub struct SaverStats {
    pub blobs_added: AtomicU64,
    pub bytes_added: AtomicU64,
    pub bytes_added_packed: AtomicU64,
}

pub struct BlobSaver<'a> {
    repo: &'a Repository,
    index: &'a Index,
    claimed: Mutex<HashSet<BlobId, std::hash::BuildHasherDefault<IdHasher>>>,
    packers: Mutex<[Option<PackWriter>; 2]>,
    compression: Compression,
    pub stats: SaverStats,
    failure: Mutex<Option<Error>>,
    pub aborted: AtomicBool,
    pack_buffers: BufferPool,
    chunk_buffers: BufferPool,
}

/// Large buffers handed back for reuse: allocating and faulting in fresh megabytes for every
/// chunk and pack cost more CPU than the copying they hold.
struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl BufferPool {
    fn new(keep: usize) -> Self {
        BufferPool {
            free: Mutex::new(Vec::new()),
            keep,
        }
    }

    fn take(&self) -> Option<Vec<u8>> {
        self.free.lock().ok()?.pop()
    }

    fn put(&self, mut buf: Vec<u8>) {
        // Tiny buffers are cheap to allocate; huge ones (a rare 8 MiB chunk) not worth keeping.
        if !(64 * 1024..=32 * 1024 * 1024).contains(&buf.capacity()) {
            return;
        }
        buf.clear();
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.keep {
                free.push(buf);
            }
        }
    }
}

impl<'a> BlobSaver<'a> {
    pub fn new(repo: &'a Repository, index: &'a Index, compression: Compression) -> Self {
        BlobSaver {
            repo,
            index,
            claimed: Mutex::new(HashSet::default()),
            packers: Mutex::new([None, None]),
            compression,
            stats: SaverStats::default(),
            failure: Mutex::new(None),
            aborted: AtomicBool::new(false),
            pack_buffers: BufferPool::new(2),
            chunk_buffers: BufferPool::new(8),
        }
    }

    /// True when the caller is the first to see this blob and must send it to be saved.
    pub fn claim(&self, id: BlobId) -> bool {
        if self.index.contains(&id) {
            return false;
        }
        self.claimed
            .lock()
            .map(|mut set| set.insert(id))
            .unwrap_or(false)
    }

    pub fn fail(&self, error: Error) {
        self.aborted.store(true, Ordering::SeqCst);
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(error);
        }
    }

    pub fn take_failure(&self) -> Option<Error> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Compressor stage: compress and seal each job into the open pack of its kind; hand full
    /// packs to the uploader.
    pub fn run_compressor(&self, jobs: Receiver<BlobJob>, packs: Sender<SealedPack>) {
        let pack_size = self.repo.config().pack_size as usize;
        for job in jobs {
            if self.is_aborted() {
                continue;
            }
            let mode = match job.kind {
                BlobKind::Data => self.compression,
                BlobKind::Tree => Compression::Auto,
            };
            let full = compress_with(&job.data, mode, |compressed| {
                let payload = compressed.unwrap_or(&job.data);
                let Ok(mut packers) = self.packers.lock() else {
                    return Err(());
                };
                let slot = &mut packers[job.kind.as_byte() as usize];
                let writer = slot.get_or_insert_with(|| self.new_pack(job.kind, pack_size));
                writer.add(
                    job.kind,
                    job.id,
                    job.data.len(),
                    compressed.is_some(),
                    payload,
                );
                self.stats
                    .bytes_added_packed
                    .fetch_add(payload.len() as u64 + 16, Ordering::Relaxed);
                Ok(if writer.size() >= pack_size {
                    slot.take()
                } else {
                    None
                })
            });
            let Ok(full) = full else {
                return;
            };
            self.stats.blobs_added.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_added
                .fetch_add(job.data.len() as u64, Ordering::Relaxed);
            self.chunk_buffers.put(job.data);
            if let Some(writer) = full {
                if packs.send(writer.finish()).is_err() {
                    return;
                }
            }
        }
    }

    /// A pack writer, on a recycled buffer when one is free. Data packs get room for a full
    /// pack; only a pack closed by an unusually large last blob grows beyond it.
    fn new_pack(&self, kind: BlobKind, pack_size: usize) -> PackWriter {
        let seal = &self.repo.keys().seal;
        match kind {
            BlobKind::Data => match self.pack_buffers.take() {
                Some(buf) => PackWriter::with_buffer(seal, buf),
                None => PackWriter::with_capacity(seal, pack_size + 64 * 1024),
            },
            BlobKind::Tree => PackWriter::with_capacity(seal, 1 << 20),
        }
    }

    /// An empty buffer for the next chunk, recycled when one is free.
    pub fn chunk_buffer(&self) -> Vec<u8> {
        self.chunk_buffers.take().unwrap_or_default()
    }

    /// The packs still open when every blob has been sent.
    pub fn take_open_packs(&self) -> Vec<SealedPack> {
        let Ok(mut packers) = self.packers.lock() else {
            return Vec::new();
        };
        packers
            .iter_mut()
            .filter_map(|slot| slot.take())
            .filter(|w| !w.is_empty())
            .map(PackWriter::finish)
            .collect()
    }

    /// Uploader stage: write packs, then index files naming them. Returns once `packs` closes,
    /// after the last index file is written.
    pub fn run_uploader(&self, packs: Receiver<SealedPack>) {
        let mut pending = IndexFile::new();
        for pack in packs {
            if self.is_aborted() {
                continue;
            }
            match self
                .repo
                .storage()
                .write(ObjectKind::Pack, &pack.name, &pack.bytes)
            {
                // Same name means same bytes: the pack is already there.
                Ok(()) | Err(StorageError::AlreadyExists { .. }) => {}
                Err(e) => {
                    self.fail(e.into());
                    continue;
                }
            }
            pending.packs.push(IndexPack {
                name: pack.name,
                salt: pack.salt,
                blobs: pack.entries,
            });
            self.pack_buffers.put(pack.bytes);
            if pending.packs.len() >= PACKS_PER_INDEX_FILE {
                if let Err(e) = self.flush_index(&mut pending) {
                    self.fail(e);
                }
            }
        }
        if !self.is_aborted() {
            if let Err(e) = self.flush_index(&mut pending) {
                self.fail(e);
            }
        }
    }

    fn flush_index(&self, pending: &mut IndexFile) -> Result<()> {
        if pending.packs.is_empty() {
            return Ok(());
        }
        self.repo.save_index_file(pending)?;
        pending.packs.clear();
        Ok(())
    }
}
