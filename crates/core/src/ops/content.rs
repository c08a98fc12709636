//! Reading a file's content frame by frame.
//!
//! A backup compresses consecutive chunks of one file as one frame (a "run"). Read blob by
//! blob, such a frame would be decompressed once per blob, or kept in the shared frame cache
//! where it crowds out the small-file frames a restore needs. Grouped by frame, each run is
//! decompressed once and its blobs handed out from it.

use std::ops::Range;

use crate::blob::BlobId;
use crate::error::Result;
use crate::index::Index;
use crate::repository::Repository;

/// `ids` cut into ranges of consecutive blobs in the same frame. A range of one blob is read
/// as a blob (through the frame cache when its frame is shared with other files).
pub fn frame_units(index: &Index, ids: &[BlobId]) -> Vec<Range<usize>> {
    let frame_of = |id: &BlobId| {
        index
            .get(id)
            .filter(|loc| loc.is_shared_frame())
            .map(|loc| (loc.pack, loc.offset))
    };
    let mut units: Vec<Range<usize>> = Vec::new();
    let mut previous = None;
    for (at, id) in ids.iter().enumerate() {
        let frame = frame_of(id);
        match units.last_mut() {
            Some(unit) if frame.is_some() && frame == previous => unit.end = at + 1,
            _ => units.push(at..at + 1),
        }
        previous = frame;
    }
    units
}

/// The buffers of one reader, kept between units so that no blob pays for fresh ones.
#[derive(Default)]
pub struct UnitReader {
    scratch: Vec<u8>,
}

impl UnitReader {
    /// Reads the blobs `ids[unit]` into `out`; returns where each lies in it, in order.
    pub fn read(
        &mut self,
        repo: &Repository,
        index: &Index,
        ids: &[BlobId],
        unit: Range<usize>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<Range<usize>>> {
        let blobs = &ids[unit];
        if let [id] = blobs {
            repo.read_blob_into(index, id, &mut self.scratch, out)?;
            let whole_blob = 0..out.len();
            return Ok(vec![whole_blob]);
        }
        let Some(first) = blobs.first() else {
            out.clear();
            return Ok(Vec::new());
        };
        repo.read_frame_into(index, first, &mut self.scratch, out)?;
        blobs
            .iter()
            .map(|id| repo.blob_range_in_frame(index, id, out))
            .collect()
    }
}
