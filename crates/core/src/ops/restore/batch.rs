//! Hands files to restore workers in the order of the frames that hold them.
//!
//! Small files (and the tails of large ones) share compressed frames of about 2 MiB. Handed out
//! a directory at a time, the files of one frame went to several workers at different moments,
//! and each of them opened (read, authenticated, decompressed) it again: 1158 frame opens for
//! 253 frames on the generated dataset. Here a window of files in tree order is sorted by the
//! frame of their shared blob and cut at frame boundaries, so each frame of the window goes to
//! one worker, once.

use crossbeam_channel::Sender;

use super::FileJob;
use crate::index::Index;

/// Files held before sorting: enough to gather every file of the frames they touch (a frame
/// holds tens of small files), little enough to start the workers soon.
const WINDOW_FILES: usize = 4096;

/// A batch is closed at the first frame boundary after this many bytes of file content.
const BATCH_BYTES: u64 = 8 * 1024 * 1024;

/// A file this large goes out alone at once: its own frames are read once anyway, and it is
/// worth a worker of its own.
const ALONE_BYTES: u64 = 32 * 1024 * 1024;

/// Where a file's last shared-frame blob lies: (pack, frame offset). Frames shared between
/// files hold blobs below the chunker's minimum size, so only a file's last chunk can be in
/// one; the other shared frames are runs of one file's own chunks, which no other file needs
/// (their key only places the file). Files without one sort first.
type FrameKey = Option<(u32, u32)>;

pub(super) struct FrameBatcher<'a> {
    index: &'a Index,
    jobs: &'a Sender<Vec<FileJob>>,
    window: Vec<(FrameKey, FileJob)>,
}

impl<'a> FrameBatcher<'a> {
    pub fn new(index: &'a Index, jobs: &'a Sender<Vec<FileJob>>) -> Self {
        FrameBatcher {
            index,
            jobs,
            window: Vec::new(),
        }
    }

    pub fn push(&mut self, job: FileJob) {
        if job.node.size >= ALONE_BYTES {
            self.send(vec![job]);
            return;
        }
        let key = self.frame_of(&job);
        self.window.push((key, job));
        if self.window.len() >= WINDOW_FILES {
            self.flush();
        }
    }

    fn frame_of(&self, job: &FileJob) -> FrameKey {
        job.node
            .content
            .iter()
            .rev()
            .filter_map(|id| self.index.get(id))
            .find(|loc| loc.is_shared_frame())
            .map(|loc| (loc.pack, loc.offset))
    }

    /// Sends what the window holds, sorted by frame (tree order within a frame).
    pub fn flush(&mut self) {
        let mut window = std::mem::take(&mut self.window);
        window.sort_by_key(|(key, _)| *key);
        let mut batch = Vec::new();
        let mut batch_bytes = 0u64;
        let mut previous: FrameKey = None;
        for (key, job) in window {
            let boundary = key != previous || key.is_none();
            if boundary && batch_bytes >= BATCH_BYTES {
                self.send(std::mem::take(&mut batch));
                batch_bytes = 0;
            }
            previous = key;
            batch_bytes += job.node.size;
            batch.push(job);
        }
        if !batch.is_empty() {
            self.send(batch);
        }
    }

    fn send(&self, batch: Vec<FileJob>) {
        // A closed channel means the workers are gone; the caller reports why.
        let _ = self.jobs.send(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{BlobId, BlobKind};
    use crate::pack::PackEntry;
    use crate::tree::{Node, NodeKind};

    /// A blob of `size` bytes in the frame at `frame` of pack "p" (alone in its frame when
    /// `frame` is None).
    fn entry(n: u8, frame: Option<u32>, size: u32) -> PackEntry {
        let id = BlobId([n; 32]);
        match frame {
            Some(offset) => PackEntry {
                frame_offset: u32::from(n) * 16,
                frame_length: 2 << 20,
                ..PackEntry::single(BlobKind::Data, id, offset, 1000, size, true)
            },
            None => PackEntry::single(BlobKind::Data, id, u32::from(n) * 8192, size, size, true),
        }
    }

    fn job(n: u8, content: &[u8], size: u64) -> FileJob {
        let mut node = Node::empty(NodeKind::File);
        node.size = size;
        node.content = content.iter().map(|b| BlobId([*b; 32])).collect();
        FileJob {
            path: format!("/t/{n}").into(),
            display: n.to_string(),
            node,
            fresh: true,
        }
    }

    #[test]
    fn files_of_one_frame_go_out_together_in_frame_order() {
        let mut index = Index::default();
        let entries = [
            entry(1, Some(100), 4000),
            entry(2, Some(200), 4000),
            entry(3, Some(100), 4000),
            entry(4, None, 600_000),
            entry(5, Some(200), 4000),
            entry(6, None, 600_000),
        ];
        index.add_pack("p", [0; 32], &entries);
        index.finish();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut batcher = FrameBatcher::new(&index, &tx);
        batcher.push(job(10, &[1], 4000));
        batcher.push(job(11, &[2], 4000));
        // A large file: its first blob alone in a frame, its tail in the frame at 100.
        batcher.push(job(12, &[4, 3], 604_000));
        batcher.push(job(13, &[5], 4000));
        batcher.push(job(14, &[6], 600_000));
        batcher.push(job(15, &[1], 4000));
        batcher.flush();
        drop(batcher);
        drop(tx);
        let order: Vec<String> = rx.iter().flatten().map(|j| j.display).collect();
        // No shared frame first (14), then frame 100 (10, 12, 15), then frame 200 (11, 13),
        // each in tree order.
        assert_eq!(order, ["14", "10", "12", "15", "11", "13"]);
    }

    #[test]
    fn large_files_leave_at_once_and_batches_close_at_frame_boundaries() {
        let mut index = Index::default();
        let entries: Vec<PackEntry> = (1..=40)
            .map(|n| entry(n, Some(u32::from(n) / 2 * 1000), 400_000))
            .collect();
        index.add_pack("p", [0; 32], &entries);
        index.finish();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut batcher = FrameBatcher::new(&index, &tx);
        batcher.push(job(99, &[], ALONE_BYTES));
        assert_eq!(
            rx.try_recv().map(|b| b.len()).ok(),
            Some(1),
            "sent before any flush"
        );
        for n in 1..=40u8 {
            batcher.push(job(n, &[n], 400_000));
        }
        batcher.flush();
        drop(batcher);
        drop(tx);
        let batches: Vec<Vec<FileJob>> = rx.iter().collect();
        assert!(
            batches.len() >= 2,
            "16 MB of files make more than one batch"
        );
        let mut frames_seen = Vec::new();
        for batch in &batches {
            let frames: Vec<u32> = batch
                .iter()
                .map(|j| (j.node.content[0].0[0] as u32) / 2)
                .collect();
            assert!(
                frames.windows(2).all(|w| w[0] <= w[1]),
                "frame order in a batch"
            );
            frames_seen.extend(frames.iter().copied());
            let bytes: u64 = batch.iter().map(|j| j.node.size).sum();
            assert!(
                bytes < BATCH_BYTES + 2 * 400_000,
                "closed at the first boundary after {BATCH_BYTES}"
            );
        }
        let mut dedup = frames_seen.clone();
        dedup.dedup();
        let mut sorted = dedup.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(dedup, sorted, "no frame is split over two batches");
    }
}
