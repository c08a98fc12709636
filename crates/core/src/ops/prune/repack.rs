//! Copying the used blobs of packs that are mostly garbage into new packs.
//!
//! Frames are copied, not blobs: a frame whose blobs are all used is decrypted and sealed
//! again into the new pack as it is (its compressed bytes unchanged); a shared frame that
//! holds unused blobs too is decompressed and its used blobs compressed again as a smaller
//! frame. Every blob is checked against its id on the way, so a repack never copies damage.

use crate::blob::{compress, BlobKind, Compression};
use crate::error::{Error, Result};
use crate::index::{IndexFile, IndexPack, BLOBS_PER_INDEX_FILE};
use crate::pack::{
    blob_in_frame, open_frame_into, FrameMember, PackEntry, PackWriter, MAX_BLOBS_PER_PACK,
};
use crate::repository::Repository;
use crate::storage::{ObjectKind, StorageError};

pub struct Repacker<'a> {
    repo: &'a Repository,
    /// The pack being filled, per blob kind (data and trees never share a pack).
    writers: [Option<PackWriter>; 2],
    /// Packs written, for the index file that must name them before anything is deleted.
    pub written: Vec<IndexPack>,
    pub bytes_written: u64,
    sealed: Vec<u8>,
    frame: Vec<u8>,
}

impl<'a> Repacker<'a> {
    pub fn new(repo: &'a Repository) -> Self {
        Repacker {
            repo,
            writers: [None, None],
            written: Vec::new(),
            bytes_written: 0,
            sealed: Vec::new(),
            frame: Vec::new(),
        }
    }

    /// Copies the blobs of `pack` for which `keep` says yes.
    pub fn copy(&mut self, pack: &IndexPack, keep: impl Fn(&PackEntry) -> bool) -> Result<()> {
        let mut entries: Vec<&PackEntry> = pack.blobs.iter().collect();
        entries.sort_by_key(|e| (e.offset, e.frame_offset));
        for frame in entries.chunk_by(|a, b| a.offset == b.offset) {
            let kept: Vec<&PackEntry> = frame.iter().copied().filter(|e| keep(e)).collect();
            if !kept.is_empty() {
                self.copy_frame(pack, &kept, kept.len() == frame.len())?;
            }
        }
        Ok(())
    }

    fn copy_frame(&mut self, pack: &IndexPack, kept: &[&PackEntry], whole: bool) -> Result<()> {
        let first = kept[0];
        self.repo.storage().read_range_into(
            ObjectKind::Pack,
            &pack.name,
            u64::from(first.offset),
            u64::from(first.length),
            &mut self.sealed,
        )?;
        let key = self.repo.keys().seal;
        open_frame_into(
            &key,
            &pack.name,
            &pack.salt,
            first,
            &mut self.sealed,
            &mut self.frame,
        )?;
        let ids = crate::blob::IdKeys::new(&self.repo.keys().blob_id);
        for entry in kept {
            blob_in_frame(&ids, &pack.name, entry, &self.frame)?;
        }
        if whole {
            // `sealed` now holds the frame as stored (compressed), decrypted; an uncompressed
            // frame is in `frame`. Either is sealed again as it is.
            let members: Vec<FrameMember> =
                kept.iter().map(|e| member(e, e.frame_offset)).collect();
            let frame_length = self.frame.len();
            let buffer = if first.compressed {
                &mut self.sealed
            } else {
                &mut self.frame
            };
            let payload = std::mem::take(buffer);
            let added = self.add(
                first.kind,
                &members,
                frame_length,
                first.compressed,
                &payload,
            );
            if first.compressed {
                self.sealed = payload;
            } else {
                self.frame = payload;
            }
            return added;
        }
        let mut plain = Vec::new();
        let mut members = Vec::new();
        for entry in kept {
            let start = entry.frame_offset as usize;
            members.push(member(entry, plain.len() as u32));
            plain.extend_from_slice(&self.frame[start..start + entry.raw_length as usize]);
        }
        match compress(&plain, Compression::Level(3)).filter(|_| first.compressed) {
            Some(packed) => self.add(first.kind, &members, plain.len(), true, &packed),
            None => self.add(first.kind, &members, plain.len(), false, &plain),
        }
    }

    fn add(
        &mut self,
        kind: BlobKind,
        members: &[FrameMember],
        frame_length: usize,
        compressed: bool,
        payload: &[u8],
    ) -> Result<()> {
        let slot = kind.as_byte() as usize;
        let mut writer = match self.writers[slot].take() {
            Some(writer) => writer,
            None => self.new_pack()?,
        };
        writer
            .add_frame(kind, members, frame_length, compressed, payload)
            .map_err(|e| self.pack_error(e))?;
        let full = writer.size() >= self.repo.config().pack_size as usize
            || writer.blob_count() >= MAX_BLOBS_PER_PACK;
        if full {
            self.store(writer)
        } else {
            self.writers[slot] = Some(writer);
            Ok(())
        }
    }

    /// Stores the packs still open and returns the index files that name every pack written.
    pub fn finish(mut self) -> Result<(Vec<IndexFile>, u64)> {
        for slot in 0..self.writers.len() {
            if let Some(writer) = self.writers[slot].take() {
                self.store(writer)?;
            }
        }
        let mut files = Vec::new();
        let mut file = IndexFile::new(self.repo.pack_version());
        let mut blobs = 0;
        for pack in self.written {
            blobs += pack.blobs.len();
            file.packs.push(pack);
            if blobs >= BLOBS_PER_INDEX_FILE {
                files.push(std::mem::replace(
                    &mut file,
                    IndexFile::new(self.repo.pack_version()),
                ));
                blobs = 0;
            }
        }
        if !file.packs.is_empty() {
            files.push(file);
        }
        Ok((files, self.bytes_written))
    }

    fn new_pack(&self) -> Result<PackWriter> {
        let staged = self.repo.storage().stage(ObjectKind::Pack)?;
        PackWriter::staged(&self.repo.keys().seal, self.repo.pack_version(), staged)
            .map_err(|e| self.pack_error(e))
    }

    fn store(&mut self, writer: PackWriter) -> Result<()> {
        let size = writer.size() as u64;
        let pack = writer.finish().map_err(|e| self.pack_error(e))?;
        let listed = pack.store(self.repo.storage().as_ref())?;
        self.bytes_written += size;
        self.written.push(listed);
        Ok(())
    }

    fn pack_error(&self, source: std::io::Error) -> Error {
        StorageError::Io {
            location: format!("{} (a pack being repacked)", self.repo.storage().location()),
            source,
            retryable: false,
        }
        .into()
    }
}

fn member(entry: &PackEntry, frame_offset: u32) -> FrameMember {
    FrameMember {
        id: entry.id,
        frame_offset,
        raw_length: entry.raw_length,
    }
}
