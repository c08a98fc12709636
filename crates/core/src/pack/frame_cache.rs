//! The last few frames opened, so that reading the blobs of a shared frame one after another
//! (a restore of a directory of small files, a walk over trees) decompresses it once.
//!
//! Misses are coalesced: restore workers on neighbouring directories ask for the same frame at
//! the same moment, and without this each of them read, authenticated and decompressed it
//! (measured: 1470 frame opens for 253 distinct frames on the generated dataset, 4 workers).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::SHARED_FRAME_BYTES;

/// Frames kept by default, by total plaintext size: about one 2 MiB shared frame per restore
/// worker, which the frame-ordered restore needs (16 MiB cost 9 MiB of restore peak RSS for a
/// few percent of CPU). Callers that read frames in order set less
/// ([`FrameCache::set_budget`]).
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// Buffers kept for the next frames opened (those of evicted frames, and the sealed bytes
/// of the last ones), at most one per [`SHARED_FRAME_BYTES`] of the budget. A fresh 2 MiB
/// buffer is faulted in page by page: a restore of 118k small files spent 8% of its time in
/// page faults on them.
const SPARE_BUFFERS: usize = 4;

pub type Frame = Arc<Vec<u8>>;

pub struct FrameCache {
    frames: Mutex<VecDeque<CachedFrame>>,
    spare: Mutex<Vec<Vec<u8>>>,
    /// Plaintext bytes of frames kept.
    budget: AtomicUsize,
}

impl Default for FrameCache {
    fn default() -> Self {
        FrameCache {
            frames: Mutex::default(),
            spare: Mutex::default(),
            budget: AtomicUsize::new(CACHE_BYTES),
        }
    }
}

/// One frame, or the promise of it: the thread opening it holds `value`'s lock until it is
/// there, so others that want it wait on that lock instead of opening it again.
#[derive(Default)]
struct Slot {
    value: Mutex<Option<Frame>>,
}

struct CachedFrame {
    pack: String,
    offset: u32,
    slot: Arc<Slot>,
    /// Plaintext bytes; 0 while the frame is being opened.
    size: usize,
}

impl FrameCache {
    /// Keeps frames up to `bytes` of plaintext from now on (at least the one last opened);
    /// returns the budget before.
    pub fn set_budget(&self, bytes: usize) -> usize {
        self.budget.swap(bytes, Ordering::Relaxed)
    }

    fn spare_limit(&self) -> usize {
        (self.budget.load(Ordering::Relaxed) / SHARED_FRAME_BYTES).clamp(1, SPARE_BUFFERS)
    }

    /// The plaintext of the frame at `offset` in `pack`: from the cache, from another thread
    /// that is opening it right now, or from `open`, which is handed a buffer to fill (empty,
    /// perhaps with capacity). A failed `open` caches nothing; a thread that waited on it then
    /// calls its own `open`, uncached, so each caller sees its own error.
    pub fn get_or_open<E>(
        &self,
        pack: &str,
        offset: u32,
        open: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, E>,
    ) -> Result<Frame, E> {
        let open = || open(self.spare_buffer());
        if let Some(slot) = self.find(pack, offset) {
            if let Some(frame) = slot.value.lock().ok().and_then(|v| v.clone()) {
                return Ok(frame);
            }
        }
        // A miss: offer a slot of our own, locked before anyone can see it, and look again
        // under the same lock that publishes it, so two misses cannot both open the frame.
        let fresh = Arc::new(Slot::default());
        let Ok(mut value) = fresh.value.lock() else {
            return open().map(Arc::new);
        };
        let Ok(mut frames) = self.frames.lock() else {
            return open().map(Arc::new);
        };
        if let Some(at) = Self::position(&frames, pack, offset) {
            let slot = frames[at].slot.clone();
            drop(frames);
            drop(value);
            return match slot.value.lock().ok().and_then(|v| v.clone()) {
                Some(frame) => Ok(frame),
                None => open().map(Arc::new),
            };
        }
        frames.push_front(CachedFrame {
            pack: pack.to_string(),
            offset,
            slot: fresh.clone(),
            size: 0,
        });
        drop(frames);
        match open() {
            Ok(plaintext) => {
                let frame = Arc::new(plaintext);
                *value = Some(frame.clone());
                drop(value);
                self.account(&fresh, frame.len());
                Ok(frame)
            }
            Err(e) => {
                drop(value);
                self.forget(&fresh);
                Err(e)
            }
        }
    }

    /// An empty buffer, with the capacity of one a frame left behind when there is one.
    pub fn spare_buffer(&self) -> Vec<u8> {
        let mut buffer = self
            .spare
            .lock()
            .ok()
            .and_then(|mut spare| spare.pop())
            .unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// Keeps the buffer of an evicted frame nobody else holds any more.
    fn recycle(&self, evicted: CachedFrame) {
        let Some(frame) = evicted.slot.value.lock().ok().and_then(|mut v| v.take()) else {
            return;
        };
        if let Ok(buffer) = Arc::try_unwrap(frame) {
            self.recycle_buffer(buffer);
        }
    }

    /// Keeps `buffer` for a later [`FrameCache::spare_buffer`], unless enough are kept.
    pub fn recycle_buffer(&self, buffer: Vec<u8>) {
        if let Ok(mut spare) = self.spare.lock() {
            if spare.len() < self.spare_limit() {
                spare.push(buffer);
            }
        }
    }

    fn position(frames: &VecDeque<CachedFrame>, pack: &str, offset: u32) -> Option<usize> {
        frames
            .iter()
            .position(|f| f.offset == offset && f.pack == pack)
    }

    /// The slot of a cached (or being opened) frame, made the most recently used.
    fn find(&self, pack: &str, offset: u32) -> Option<Arc<Slot>> {
        let mut frames = self.frames.lock().ok()?;
        let at = Self::position(&frames, pack, offset)?;
        let slot = frames[at].slot.clone();
        if at != 0 {
            if let Some(frame) = frames.remove(at) {
                frames.push_front(frame);
            }
        }
        Some(slot)
    }

    fn forget(&self, slot: &Arc<Slot>) {
        if let Ok(mut frames) = self.frames.lock() {
            frames.retain(|f| !Arc::ptr_eq(&f.slot, slot));
        }
    }

    /// Records the size of an opened frame and evicts the least recently used beyond the
    /// budget (always keeping the frame just opened, however large).
    fn account(&self, slot: &Arc<Slot>, size: usize) {
        let Ok(mut frames) = self.frames.lock() else {
            return;
        };
        let mine = frames.iter().position(|f| Arc::ptr_eq(&f.slot, slot));
        if let Some(at) = mine {
            frames[at].size = size;
        }
        let budget = self.budget.load(Ordering::Relaxed);
        let mut total = 0;
        let within_budget = frames
            .iter()
            .take_while(|f| {
                total += f.size;
                total <= budget
            })
            .count();
        let keep = within_budget.max(mine.map_or(1, |at| at + 1));
        let keep = keep.min(frames.len());
        let evicted: Vec<CachedFrame> = frames.drain(keep..).collect();
        drop(frames);
        for frame in evicted {
            self.recycle(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(cache: &FrameCache, pack: &str, offset: u32, fill: u8, size: usize) -> Frame {
        cache
            .get_or_open(pack, offset, |_| Ok::<_, ()>(vec![fill; size]))
            .expect("open")
    }

    fn cached(cache: &FrameCache, pack: &str, offset: u32) -> Option<u8> {
        cache
            .get_or_open(pack, offset, |_| Err::<Vec<u8>, _>(()))
            .ok()
            .map(|f| f[0])
    }

    #[test]
    fn keeps_recent_frames_within_the_byte_budget() {
        let cache = FrameCache::default();
        // Three eighths of the budget each: two fit, a third does not.
        let part = CACHE_BYTES * 3 / 8;
        get(&cache, "a", 0, 1, part);
        get(&cache, "a", 100, 2, part);
        assert_eq!(cached(&cache, "a", 0), Some(1));
        assert_eq!(cached(&cache, "b", 0), None, "the pack is part of the key");
        // A third exceeds the budget: the least recently used ("a", 100) goes.
        get(&cache, "b", 0, 3, part);
        assert_eq!(cached(&cache, "a", 100), None);
        assert_eq!(cached(&cache, "a", 0), Some(1));
        assert_eq!(cached(&cache, "b", 0), Some(3));
        // A frame larger than the budget is still kept, alone.
        get(&cache, "c", 0, 4, CACHE_BYTES + 1);
        assert_eq!(cached(&cache, "c", 0), Some(4));
        assert_eq!(cached(&cache, "b", 0), None);
    }

    #[test]
    fn a_smaller_budget_keeps_fewer_frames_and_buffers() {
        let cache = FrameCache::default();
        cache.set_budget(SHARED_FRAME_BYTES);
        get(&cache, "a", 0, 1, SHARED_FRAME_BYTES / 2);
        get(&cache, "a", 100, 2, SHARED_FRAME_BYTES / 2);
        assert_eq!(cached(&cache, "a", 0), Some(1), "two halves fit");
        get(&cache, "a", 200, 3, SHARED_FRAME_BYTES / 2);
        assert_eq!(cached(&cache, "a", 100), None, "a third does not");
        for _ in 0..SPARE_BUFFERS {
            cache.recycle_buffer(Vec::with_capacity(1024));
        }
        let spare = cache.spare.lock().expect("spare").len();
        assert_eq!(spare, 1, "one spare buffer for a budget of one frame");
    }

    #[test]
    fn concurrent_misses_open_a_frame_once() {
        let cache = FrameCache::default();
        let opens = AtomicUsize::new(0);
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    barrier.wait();
                    let frame = cache
                        .get_or_open("p", 8, |_| {
                            opens.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok::<_, ()>(vec![7; 1024])
                        })
                        .expect("open");
                    assert_eq!(frame[0], 7);
                });
            }
        });
        assert_eq!(opens.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_open_is_not_cached() {
        let cache = FrameCache::default();
        assert_eq!(
            cache.get_or_open("p", 8, |_| Err::<Vec<u8>, _>("broken")),
            Err("broken")
        );
        assert_eq!(
            get(&cache, "p", 8, 5, 16)[0],
            5,
            "the next reader opens it again"
        );
    }
}
