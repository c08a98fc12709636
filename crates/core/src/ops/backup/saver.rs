//! The back half of the backup pipeline, shared by file data and trees: deduplicate, compress,
//! seal into packs, upload packs, and record them in index files.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::blob::{
    compress_with, looks_random, probably_compressible, BlobId, BlobKind, Compression,
};
use crate::error::{Error, Result};
use crate::index::IndexFile;
use crate::lock::LockGuard;

use super::claimed::ClaimedSet;
use super::known::KnownBlobs;
use crate::pack::{FrameMember, PackWriter, SealedPack};
use crate::repository::Repository;
use crate::storage::{ObjectKind, StorageError};

/// Write an index file after this many packs (or [`BLOBS_PER_INDEX_FILE`] blobs, or once the
/// oldest pack not yet named is [`INDEX_FILE_MAX_AGE`] old), so a crashed backup's packs are
/// still found (and reused) by the next run: on a slow uplink 64 packs are an hour of upload.
const PACKS_PER_INDEX_FILE: usize = 64;
const INDEX_FILE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether the packs waiting for an index file should get it now.
fn index_file_due(packs: usize, blobs: usize, oldest: Option<std::time::Instant>) -> bool {
    packs >= PACKS_PER_INDEX_FILE
        || blobs >= BLOBS_PER_INDEX_FILE
        || oldest.is_some_and(|t| packs > 0 && t.elapsed() >= INDEX_FILE_MAX_AGE)
}
use crate::index::BLOBS_PER_INDEX_FILE;
use crate::pack::MAX_BLOBS_PER_PACK;

/// Blobs smaller than this (whole small files, and the tails of large ones) are grouped into
/// shared frames, so zstd sees many small files at once; larger blobs are chunks with context
/// enough of their own. Measured on a 118k-file toolchain tree: its small files compress to 264
/// MiB one by one and to 77 MiB in frames of 2 MiB.
const GROUP_BELOW: usize = 512 * 1024;
/// A shared frame is closed once its plaintext reaches this size. Reading one blob of it
/// decompresses the whole frame, so frames stay small next to a pack.
const FRAME_TARGET: usize = crate::pack::SHARED_FRAME_BYTES;
/// Tree frames are closed much earlier. A snapshot's trees end up spread over the frames of
/// every backup that changed a directory, so a walk of one snapshot (the next backup's parent,
/// prune, check, restore) opens many frames for a few trees each. On a 50-snapshot rustup
/// history, an unchanged backup took 5.0-5.4 s with 2 MiB tree frames (1.3 GiB decompressed
/// for 15 MB of trees), 1.1-1.2 s with 256 KiB, 0.94-0.99 s with 128 KiB and 0.53-0.69 s with
/// 64 KiB (0.54 s on a fresh repository); a fresh repository of the tree took 481, 477, 478 and
/// 487 MiB. 128 KiB keeps the size and most of the speed.
const TREE_FRAME_TARGET: usize = 128 * 1024;

/// Consecutive compressible chunks of one file are compressed together in frames of about
/// this much plaintext: a 1 MiB chunk gives zstd less context than it can use. The text half
/// of the 4 GiB benchmark file took 87 MB per 256 MiB compressed in 1 MiB chunks, 66 MB in
/// 4 MiB pieces; with runs of 3-4 MiB the whole file's repository went from 2649 to 2563 MiB.
const RUN_TARGET: usize = 3 * 1024 * 1024;
/// ... and in no frame larger than this: reading one chunk decompresses its whole frame, and
/// readers keep 16 MiB of frames. Larger runs shrank the repository a little more (2535 MiB
/// with 4-6 MiB) but held more memory in flight (+13 MiB peak on the generated tree).
const RUN_MAX: usize = 4 * 1024 * 1024;

fn poisoned() -> Error {
    Error::InvalidInput("a backup worker thread panicked".into())
}

pub struct BlobJob {
    pub kind: BlobKind,
    pub id: BlobId,
    pub data: Vec<u8>,
}

/// What the compressors receive.
pub enum SaveJob {
    /// A blob, compressed as the backup's setting says (small ones join a shared frame).
    Blob(BlobJob),
    /// A data chunk the probe found incompressible: stored raw without a second probe.
    Raw(BlobJob),
    /// Consecutive compressible chunks of one file, compressed as one frame.
    Run(ChunkRun),
    /// Small blobs, each handled as [`SaveJob::Blob`], handed over together (see [`BlobSink`]).
    Batch(Vec<BlobJob>),
}

/// Small blobs per hand-off to the compressors, and their bytes at most. A hand-off per small
/// file woke a compressor per file: on 196k files of 1-8 KiB that was 140k context switches.
const BATCH_BLOBS: usize = 64;
const BATCH_BYTES: usize = 256 * 1024;

/// One reader's way to the compressors: small blobs wait in a batch and go over together, the
/// rest at once. Whatever waits is sent when the sink is flushed or dropped, so a claimed blob
/// always reaches a compressor (unless the compressors have stopped, which fails the backup).
pub struct BlobSink {
    jobs: Sender<SaveJob>,
    batch: Vec<BlobJob>,
    batch_bytes: usize,
}

impl BlobSink {
    pub fn new(jobs: Sender<SaveJob>) -> Self {
        BlobSink {
            jobs,
            batch: Vec::new(),
            batch_bytes: 0,
        }
    }

    /// False when the compressors have stopped.
    pub fn send(&mut self, job: SaveJob) -> bool {
        match job {
            SaveJob::Blob(blob) if blob.data.len() < GROUP_BELOW => {
                self.batch_bytes += blob.data.len();
                self.batch.push(blob);
                if self.batch.len() >= BATCH_BLOBS || self.batch_bytes >= BATCH_BYTES {
                    return self.flush();
                }
                true
            }
            other => self.jobs.send(other).is_ok(),
        }
    }

    /// Sends the waiting small blobs. False when the compressors have stopped.
    pub fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.batch_bytes = 0;
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_BLOBS));
        self.jobs.send(SaveJob::Batch(batch)).is_ok()
    }
}

impl Drop for BlobSink {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Chunks of one file gathered for one frame (see [`RUN_TARGET`]).
#[derive(Default)]
pub struct ChunkRun {
    data: Vec<u8>,
    members: Vec<FrameMember>,
}

#[derive(Default)]
pub struct SaverStats {
    pub blobs_added: AtomicU64,
    pub bytes_added: AtomicU64,
    pub bytes_added_packed: AtomicU64,
}

pub struct BlobSaver<'a> {
    repo: &'a Repository,
    known: KnownBlobs<'a>,
    claimed: Mutex<ClaimedSet>,
    packers: Mutex<[Option<PackWriter>; 2]>,
    /// The shared frames being filled, one per [`FrameSlot`].
    frames: Mutex<[OpenFrame; FrameSlot::COUNT]>,
    groups_blobs: bool,
    compression: Compression,
    pub stats: SaverStats,
    failure: Mutex<Option<Error>>,
    pub aborted: AtomicBool,
    chunk_buffers: BufferPool,
    /// The plaintext buffers of sealed frames (2 MiB each), for the next frames.
    frame_buffers: BufferPool,
    run_buffers: RunBuffers,
    /// The backup's lock, confirmed before each index file: an index file must not name
    /// packs whose blobs a prune may have judged unused while this run was cut off.
    lock: Option<&'a LockGuard>,
}

/// Which shared frame a small blob waits in. Data that looks random has frames of its own:
/// zstd -3 runs through a frame of random bytes about 15 times as fast as through text, but
/// mixed into text frames the random files slowed them instead. On 500 MB of the million-file
/// benchmark tree, 2 MiB frames of files in walk order took 4.4 s to compress, the same files
/// split by kind 2.8 s (text 2.77 s, random 0.07 s), at the same size.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FrameSlot {
    Data,
    Tree,
    RandomData,
}

impl FrameSlot {
    const COUNT: usize = 3;
    const ALL: [FrameSlot; FrameSlot::COUNT] =
        [FrameSlot::Data, FrameSlot::Tree, FrameSlot::RandomData];

    fn of(kind: BlobKind, data: &[u8]) -> FrameSlot {
        match kind {
            BlobKind::Tree => FrameSlot::Tree,
            BlobKind::Data if looks_random(data) => FrameSlot::RandomData,
            BlobKind::Data => FrameSlot::Data,
        }
    }

    fn kind(self) -> BlobKind {
        match self {
            FrameSlot::Tree => BlobKind::Tree,
            FrameSlot::Data | FrameSlot::RandomData => BlobKind::Data,
        }
    }
}

/// Small blobs waiting to be compressed and sealed together.
#[derive(Default)]
struct OpenFrame {
    plaintext: Vec<u8>,
    members: Vec<FrameMember>,
}

/// Fails the backup when the thread holding it panics, at once rather than when the thread is
/// joined: readers waiting for a run buffer the dead thread held stop waiting.
struct FailOnPanic<'s, 'a>(&'s BlobSaver<'a>);

impl Drop for FailOnPanic<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail(poisoned());
        }
    }
}

/// Runs being filled, queued or compressed at once: each holds a buffer of [`RUN_MAX`], and
/// without a bound a queue of runs instead of chunks held four times the memory.
const RUNS_IN_FLIGHT: usize = 3;

/// The buffers runs are gathered in, a fixed number of them, so that readers wait for the
/// compressors rather than fill more. Kept apart from the chunk buffers: a buffer that once
/// held a run would stay run-sized in the chunk pool.
struct RunBuffers {
    give: Sender<Vec<u8>>,
    take: Receiver<Vec<u8>>,
}

impl RunBuffers {
    fn new(count: usize) -> Self {
        let (give, take) = crossbeam_channel::bounded(count);
        for _ in 0..count {
            let _ = give.send(Vec::new());
        }
        RunBuffers { give, take }
    }

    /// Waits for a free buffer. A backup that failed needs no more runs, and its compressors
    /// may have stopped giving buffers back: then a new one is made, so no reader waits on.
    fn take(&self, aborted: &AtomicBool) -> Vec<u8> {
        loop {
            match self
                .take
                .recv_timeout(std::time::Duration::from_millis(100))
            {
                Ok(mut buf) => {
                    // Exactly: grown by doubling, a run buffer would hold twice what it needs.
                    buf.reserve_exact(RUN_MAX.saturating_sub(buf.capacity()));
                    return buf;
                }
                Err(_) if aborted.load(Ordering::SeqCst) => return Vec::new(),
                Err(_) => {}
            }
        }
    }

    fn put(&self, mut buf: Vec<u8>) {
        buf.clear();
        let _ = self.give.try_send(buf);
    }
}

/// Large buffers handed back for reuse: allocating and faulting in fresh megabytes for every
/// chunk cost more CPU than the copying they hold.
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
    pub fn new(repo: &'a Repository, known: KnownBlobs<'a>, compression: Compression) -> Self {
        BlobSaver {
            repo,
            known,
            claimed: Mutex::new(ClaimedSet::default()),
            packers: Mutex::new([None, None]),
            frames: Mutex::new(Default::default()),
            groups_blobs: repo.pack_version() > crate::pack::PACK_VERSION_1,
            compression,
            stats: SaverStats::default(),
            failure: Mutex::new(None),
            aborted: AtomicBool::new(false),
            chunk_buffers: BufferPool::new(8),
            frame_buffers: BufferPool::new(FrameSlot::ALL.len()),
            run_buffers: RunBuffers::new(RUNS_IN_FLIGHT),
            lock: None,
        }
    }

    /// Confirms `lock` before every index file it writes.
    pub fn with_lock(mut self, lock: &'a LockGuard) -> Self {
        self.lock = Some(lock);
        self
    }

    /// True when the caller is the first to see this blob and must send it to be saved.
    /// A failure to answer (the full index could not be loaded) fails the backup.
    pub fn claim(&self, kind: BlobKind, id: BlobId) -> bool {
        match self.known.stored(kind, &id) {
            Ok(false) => {}
            Ok(true) => return false,
            Err(e) => {
                self.fail(e);
                return false;
            }
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

    pub fn known(&self) -> &KnownBlobs<'a> {
        &self.known
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Sends a new data chunk of a file to be saved. Compressible chunks too large for the
    /// shared frames wait in `run` for the file's next ones; [`BlobSaver::end_run`] sends the
    /// rest. False when the compressors have stopped.
    ///
    /// Every chunk handed here must reach a compressor, even if the file's read fails later:
    /// it is claimed, so other files count on it being stored.
    pub fn save_chunk(
        &self,
        blobs: &mut BlobSink,
        run: &mut ChunkRun,
        id: BlobId,
        chunk: Vec<u8>,
    ) -> bool {
        let job = BlobJob {
            kind: BlobKind::Data,
            id,
            data: chunk,
        };
        if !self.groups_blobs
            || job.data.len() < GROUP_BELOW
            || self.compression == Compression::Off
        {
            return blobs.send(SaveJob::Blob(job));
        }
        if self.compression == Compression::Auto && !probably_compressible(&job.data) {
            return blobs.send(SaveJob::Raw(job));
        }
        if job.data.len() >= RUN_TARGET {
            // A run of its own: and a run buffer grown to hold it would stay that large.
            return blobs.send(SaveJob::Blob(job));
        }
        if !run.data.is_empty()
            && run.data.len() + job.data.len() > RUN_MAX
            && !self.end_run(blobs, run)
        {
            return false;
        }
        if run.members.is_empty() {
            run.data = self.run_buffers.take(&self.aborted);
        }
        run.members.push(FrameMember {
            id,
            frame_offset: run.data.len() as u32,
            raw_length: job.data.len() as u32,
        });
        run.data.extend_from_slice(&job.data);
        self.chunk_buffers.put(job.data);
        if run.data.len() >= RUN_TARGET {
            return self.end_run(blobs, run);
        }
        true
    }

    /// Sends the chunks waiting in `run`. False when the compressors have stopped.
    pub fn end_run(&self, blobs: &mut BlobSink, run: &mut ChunkRun) -> bool {
        if run.members.is_empty() {
            return true;
        }
        blobs.send(SaveJob::Run(std::mem::take(run)))
    }

    /// Compressor stage: compress and seal each job (or each frame of small jobs) into the open
    /// pack of its kind; hand full packs to the uploader.
    pub fn run_compressor(&self, jobs: Receiver<SaveJob>, packs: Sender<SealedPack>) {
        let _guard = FailOnPanic(self);
        for job in jobs {
            if self.is_aborted() {
                if let SaveJob::Run(run) = job {
                    self.run_buffers.put(run.data);
                }
                continue;
            }
            let stopped = match job {
                SaveJob::Batch(jobs) => jobs.into_iter().any(|job| {
                    if self.is_aborted() {
                        return false;
                    }
                    let mode = self.mode(job.kind);
                    !self.pass_on(self.save_blob(job, mode), &packs)
                }),
                SaveJob::Blob(job) => {
                    let mode = self.mode(job.kind);
                    !self.pass_on(self.save_blob(job, mode), &packs)
                }
                SaveJob::Raw(job) => !self.pass_on(self.save_blob(job, Compression::Off), &packs),
                SaveJob::Run(run) => !self.pass_on(self.save_run(run), &packs),
            };
            if stopped {
                return;
            }
        }
    }

    /// Hands a full pack to the uploader, or records a failure (later jobs are then drained
    /// unprocessed). False when the uploader is gone.
    fn pass_on(&self, full: Result<Option<SealedPack>>, packs: &Sender<SealedPack>) -> bool {
        match full {
            Ok(Some(pack)) => {
                if packs.send(pack).is_err() {
                    // The uploader is gone: readers waiting for run buffers must not wait on.
                    self.fail(Error::InvalidInput("the pack uploader stopped".into()));
                    return false;
                }
            }
            Ok(None) => {}
            Err(e) => self.fail(e),
        }
        true
    }

    fn count_added(&self, blobs: usize, bytes: usize) {
        self.stats
            .blobs_added
            .fetch_add(blobs as u64, Ordering::Relaxed);
        self.stats
            .bytes_added
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn save_blob(&self, job: BlobJob, mode: Compression) -> Result<Option<SealedPack>> {
        self.count_added(1, job.data.len());
        let full = if self.groups_blobs && job.data.len() < GROUP_BELOW {
            match self.add_to_frame(&job) {
                Ok(Some((slot, frame))) => self.seal_frame(slot, frame),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        } else {
            let member = FrameMember {
                id: job.id,
                frame_offset: 0,
                raw_length: job.data.len() as u32,
            };
            self.seal(job.kind, &[member], &job.data, mode)
        };
        self.chunk_buffers.put(job.data);
        full
    }

    fn save_run(&self, run: ChunkRun) -> Result<Option<SealedPack>> {
        self.count_added(run.members.len(), run.data.len());
        // Every chunk of the run passed the probe already.
        let mode = match self.compression {
            Compression::Auto => Compression::Level(3),
            other => other,
        };
        let full = self.seal(BlobKind::Data, &run.members, &run.data, mode);
        self.run_buffers.put(run.data);
        full
    }

    fn mode(&self, kind: BlobKind) -> Compression {
        match kind {
            BlobKind::Data => self.compression,
            BlobKind::Tree => Compression::Auto,
        }
    }

    /// Appends a small blob to its open frame; returns the frame once it is full.
    fn add_to_frame(&self, job: &BlobJob) -> Result<Option<(FrameSlot, OpenFrame)>> {
        let slot = FrameSlot::of(job.kind, &job.data);
        let mut frames = self.frames.lock().map_err(|_| poisoned())?;
        let frame = &mut frames[slot as usize];
        let target = match job.kind {
            BlobKind::Data => FRAME_TARGET,
            BlobKind::Tree => TREE_FRAME_TARGET,
        };
        if frame.plaintext.capacity() == 0 {
            if let Some(reused) = self.frame_buffers.take() {
                frame.plaintext = reused;
            }
            frame.plaintext.reserve(target + job.data.len());
        }
        frame.members.push(FrameMember {
            id: job.id,
            frame_offset: frame.plaintext.len() as u32,
            raw_length: job.data.len() as u32,
        });
        frame.plaintext.extend_from_slice(&job.data);
        Ok((frame.plaintext.len() >= target).then(|| (slot, std::mem::take(frame))))
    }

    fn seal_frame(&self, slot: FrameSlot, frame: OpenFrame) -> Result<Option<SealedPack>> {
        let kind = slot.kind();
        // A frame of text-like blobs mixes files, so a probe of its middle says little:
        // compress it whole (the result is still dropped unless it saves 1/64). A frame of
        // random-looking ones is probed: most of them are stored raw.
        let mode = match self.mode(kind) {
            Compression::Auto if slot != FrameSlot::RandomData => Compression::Level(3),
            other => other,
        };
        let sealed = self.seal(kind, &frame.members, &frame.plaintext, mode);
        self.frame_buffers.put(frame.plaintext);
        sealed
    }

    /// Compresses `plaintext` (the blobs `members`) and seals it as one frame into the open
    /// pack of `kind`; returns that pack, finished, once it is full.
    fn seal(
        &self,
        kind: BlobKind,
        members: &[FrameMember],
        plaintext: &[u8],
        mode: Compression,
    ) -> Result<Option<SealedPack>> {
        let pack_size = self.repo.config().pack_size as usize;
        let full = compress_with(plaintext, mode, |compressed| -> Result<_> {
            let payload = compressed.unwrap_or(plaintext);
            let mut packers = self.packers.lock().map_err(|_| poisoned())?;
            let slot = &mut packers[kind.as_byte() as usize];
            let writer = match slot {
                Some(writer) => writer,
                None => slot.insert(self.new_pack()?),
            };
            writer
                .add_frame(
                    kind,
                    members,
                    plaintext.len(),
                    compressed.is_some(),
                    payload,
                )
                .map_err(|e| self.pack_error(e))?;
            self.stats
                .bytes_added_packed
                .fetch_add(payload.len() as u64 + 16, Ordering::Relaxed);
            Ok(
                if writer.size() >= pack_size || writer.blob_count() >= MAX_BLOBS_PER_PACK {
                    slot.take()
                } else {
                    None
                },
            )
        })?;
        full.map(|writer| writer.finish().map_err(|e| self.pack_error(e)))
            .transpose()
    }

    /// A pack writer that writes into a staged object of the storage as it fills, so a pack
    /// costs memory for one frame, not 16 MiB.
    fn new_pack(&self) -> Result<PackWriter> {
        let staged = self.repo.storage().stage(ObjectKind::Pack)?;
        PackWriter::staged(&self.repo.keys().seal, self.repo.pack_version(), staged)
            .map_err(|e| self.pack_error(e))
    }

    fn pack_error(&self, source: std::io::Error) -> Error {
        StorageError::Io {
            location: format!("{} (a pack being written)", self.repo.storage().location()),
            source,
            retryable: false,
        }
        .into()
    }

    /// An empty buffer for the next chunk, recycled when one is free.
    pub fn chunk_buffer(&self) -> Vec<u8> {
        self.chunk_buffers.take().unwrap_or_default()
    }

    /// The packs still open when every blob has been sent, with the last frames sealed in.
    pub fn take_open_packs(&self) -> Vec<SealedPack> {
        match self.finish_open_packs() {
            Ok(packs) => packs,
            Err(e) => {
                self.fail(e);
                Vec::new()
            }
        }
    }

    fn finish_open_packs(&self) -> Result<Vec<SealedPack>> {
        let mut out = Vec::new();
        for slot in FrameSlot::ALL {
            let frame = {
                let mut frames = self.frames.lock().map_err(|_| poisoned())?;
                std::mem::take(&mut frames[slot as usize])
            };
            if !frame.members.is_empty() {
                out.extend(self.seal_frame(slot, frame)?);
            }
        }
        let open: Vec<PackWriter> = {
            let mut packers = self.packers.lock().map_err(|_| poisoned())?;
            packers.iter_mut().filter_map(|slot| slot.take()).collect()
        };
        for writer in open.into_iter().filter(|w| !w.is_empty()) {
            out.push(writer.finish().map_err(|e| self.pack_error(e))?);
        }
        Ok(out)
    }

    /// Uploader stage: write packs, then index files naming them. Returns once `packs` closes,
    /// after the last index file is written.
    pub fn run_uploader(&self, packs: Receiver<SealedPack>) {
        let _guard = FailOnPanic(self);
        let mut pending = IndexFile::new(self.repo.pack_version());
        let mut oldest: Option<std::time::Instant> = None;
        loop {
            // Wake up when the oldest waiting pack is due, even if no pack comes meanwhile
            // (a long stretch of unchanged files).
            let wait = oldest.map_or(INDEX_FILE_MAX_AGE, |t| {
                INDEX_FILE_MAX_AGE.saturating_sub(t.elapsed())
            });
            match packs.recv_timeout(wait) {
                Ok(pack) if !self.is_aborted() => match pack.store(self.repo.storage().as_ref()) {
                    Ok(listed) => {
                        pending.packs.push(listed);
                        oldest.get_or_insert_with(std::time::Instant::now);
                    }
                    Err(e) => self.fail(e.into()),
                },
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let blobs: usize = pending.packs.iter().map(|p| p.blobs.len()).sum();
            if index_file_due(pending.packs.len(), blobs, oldest) {
                if let Err(e) = self.flush_index(&mut pending) {
                    self.fail(e);
                }
                oldest = None;
            }
        }
        // Also after a failure: the packs stored are whole, and named they are reused by the
        // next run (if the lock is still held; flush_index checks).
        if let Err(e) = self.flush_index(&mut pending) {
            self.fail(e);
        }
    }

    fn flush_index(&self, pending: &mut IndexFile) -> Result<()> {
        if pending.packs.is_empty() {
            return Ok(());
        }
        if let Some(lock) = self.lock {
            lock.ensure_held()?;
        }
        self.repo.save_index_file(pending)?;
        pending.packs.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn blob(len: usize, seed: u8) -> SaveJob {
        SaveJob::Blob(BlobJob {
            kind: BlobKind::Data,
            id: BlobId([seed; 32]),
            data: vec![seed; len],
        })
    }

    fn batch_len(job: SaveJob) -> Option<usize> {
        match job {
            SaveJob::Batch(jobs) => Some(jobs.len()),
            _ => None,
        }
    }

    #[test]
    fn a_sink_hands_small_blobs_over_in_batches_and_sends_the_rest_when_dropped() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut sink = BlobSink::new(tx);
        for i in 0..BATCH_BLOBS + 3 {
            assert!(sink.send(blob(100, i as u8)));
        }
        assert_eq!(rx.try_recv().ok().and_then(batch_len), Some(BATCH_BLOBS));
        assert!(rx.try_recv().is_err(), "three blobs still wait");
        // A large blob does not wait, and does not push the small ones out.
        assert!(sink.send(blob(GROUP_BELOW, 1)));
        assert!(matches!(rx.try_recv(), Ok(SaveJob::Blob(b)) if b.data.len() == GROUP_BELOW));
        drop(sink);
        assert_eq!(rx.try_recv().ok().and_then(batch_len), Some(3));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_batch_is_sent_once_its_bytes_reach_the_limit() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut sink = BlobSink::new(tx);
        let len = BATCH_BYTES / 4;
        for i in 0..4 {
            assert!(sink.send(blob(len, i)));
        }
        assert_eq!(rx.try_recv().ok().and_then(batch_len), Some(4));
        drop(rx);
        assert!(
            !sink.send(blob(GROUP_BELOW, 9)),
            "stopped compressors are reported"
        );
    }

    #[test]
    fn index_files_are_written_by_count_or_by_age() {
        let now = Instant::now();
        assert!(!index_file_due(0, 0, None));
        assert!(!index_file_due(3, 100, Some(now)));
        assert!(index_file_due(PACKS_PER_INDEX_FILE, 100, Some(now)));
        assert!(index_file_due(1, BLOBS_PER_INDEX_FILE, Some(now)));
        if let Some(long_ago) = now.checked_sub(INDEX_FILE_MAX_AGE + Duration::from_secs(1)) {
            assert!(index_file_due(1, 1, Some(long_ago)));
            assert!(!index_file_due(0, 0, Some(long_ago)));
        }
    }
}
