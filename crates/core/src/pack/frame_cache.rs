//! The last few frames opened, so that reading the blobs of a shared frame one after another
//! (a restore of a directory of small files, a walk over trees) decompresses it once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Frames kept, by total plaintext size: a few frames per restore worker.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Default)]
pub struct FrameCache {
    frames: Mutex<VecDeque<CachedFrame>>,
}

struct CachedFrame {
    pack: String,
    offset: u32,
    plaintext: Arc<Vec<u8>>,
}

impl FrameCache {
    /// The plaintext of the frame at `offset` in `pack`, if it is still cached.
    pub fn get(&self, pack: &str, offset: u32) -> Option<Arc<Vec<u8>>> {
        let mut frames = self.frames.lock().ok()?;
        let at = frames
            .iter()
            .position(|f| f.offset == offset && f.pack == pack)?;
        let frame = frames.remove(at)?;
        let plaintext = frame.plaintext.clone();
        frames.push_front(frame);
        Some(plaintext)
    }

    /// Keeps an opened (authenticated, decompressed) frame, evicting the least recently used.
    pub fn insert(&self, pack: &str, offset: u32, plaintext: Arc<Vec<u8>>) {
        let Ok(mut frames) = self.frames.lock() else {
            return;
        };
        frames.push_front(CachedFrame {
            pack: pack.to_string(),
            offset,
            plaintext,
        });
        let mut total = 0;
        let keep = frames
            .iter()
            .take_while(|f| {
                total += f.plaintext.len();
                total <= CACHE_BYTES
            })
            .count()
            .max(1);
        frames.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_frames_within_the_byte_budget() {
        let cache = FrameCache::default();
        let frame = |fill: u8| Arc::new(vec![fill; 6 * 1024 * 1024]);
        cache.insert("a", 0, frame(1));
        cache.insert("a", 100, frame(2));
        assert_eq!(cache.get("a", 0).map(|f| f[0]), Some(1));
        assert!(cache.get("b", 0).is_none(), "the pack is part of the key");
        // A third 6 MiB frame exceeds 16 MiB: the least recently used ("a", 100) goes.
        cache.insert("b", 0, frame(3));
        assert!(cache.get("a", 100).is_none());
        assert_eq!(cache.get("a", 0).map(|f| f[0]), Some(1));
        assert_eq!(cache.get("b", 0).map(|f| f[0]), Some(3));
        // A frame larger than the budget is still kept, alone.
        cache.insert("c", 0, Arc::new(vec![4; CACHE_BYTES + 1]));
        assert_eq!(cache.get("c", 0).map(|f| f[0]), Some(4));
        assert!(cache.get("b", 0).is_none());
    }
}
