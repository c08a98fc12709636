//! Chunking a stream into buffers that become the chunks.
//!
//! The chunker needs up to a maximum chunk (8 MiB) of data to place a cut, but usually finds
//! one within twice the average (1 MiB). So the reader reads the minimum size and then a
//! quarter of the average at a time, going on with the cut search where it stopped, until a
//! cut is found: a cut found in part of the data is the cut the whole data would give (the
//! rolling hash starts at the chunk's minimum size and looks only backwards). The chunk is
//! then the buffer it was read into; only the bytes read past the cut are copied, into the
//! next chunk's buffer. (Keeping two chunks ahead in one buffer and copying each chunk out
//! of it moved every byte twice: 10% of a base backup's CPU.) Reading a maximum chunk ahead
//! kept two 8-16 MiB buffers per reader thread resident, the largest part of a backup's
//! memory.

use std::io::{self, Read};

use super::{Chunker, CutSearch};

pub struct ChunkReader<'c, R> {
    reader: R,
    chunker: &'c Chunker,
    /// The next chunk's bytes read so far, from its first byte: a cut hands this buffer over
    /// as the chunk, and only the bytes read past the cut (less than one step) are copied.
    buf: Vec<u8>,
    /// The stream's expected length (a file's size), 0 when unknown, and what was handed
    /// out: a small file gets a buffer of its size, not of a chunk.
    size_hint: u64,
    handed_out: u64,
    eof: bool,
}

impl<'c, R: Read> ChunkReader<'c, R> {
    pub fn new(reader: R, chunker: &'c Chunker) -> Self {
        Self::with_size_hint(reader, chunker, 0)
    }

    /// Like `new`, for a stream expected to be `size` bytes long (a file's length), so that
    /// its buffer is made as large as the stream and no larger.
    pub fn with_size_hint(reader: R, chunker: &'c Chunker, size: u64) -> Self {
        ChunkReader {
            reader,
            chunker,
            buf: Vec::new(),
            size_hint: size,
            handed_out: 0,
            eof: false,
        }
    }

    /// Bytes read at a time past the minimum size, until a cut is found: the most that is
    /// copied into the next chunk's buffer after a cut.
    fn step(&self) -> usize {
        (self.chunker.params().avg_size as usize / 4).max(64)
    }

    /// The room a new chunk's buffer is made with: two average chunks hold most chunks, so
    /// few are moved to a larger buffer; a stream of known length needs no more than its rest.
    fn room(&self) -> usize {
        let params = self.chunker.params();
        let room = (2 * params.avg_size).min(params.max_size) as usize;
        room.min(self.expected_rest())
    }

    /// The stream's bytes from the current chunk's first byte to its expected end, or no
    /// limit for a stream of unknown length.
    fn expected_rest(&self) -> usize {
        match self.size_hint.checked_sub(self.handed_out) {
            Some(rest) if self.size_hint > 0 => usize::try_from(rest).unwrap_or(usize::MAX),
            _ => usize::MAX,
        }
    }

    /// Reads until the chunk's buffer holds `want` bytes (or the stream ends).
    fn fill(&mut self, want: usize) -> io::Result<()> {
        let missing = want.saturating_sub(self.buf.len());
        if self.eof || missing == 0 {
            return Ok(());
        }
        if self.buf.capacity() < want {
            // Grown by doubling: a long chunk is moved a few times, not at every step. A
            // stream of known length needs no room past its end (a 4 KiB file asked for a
            // first step of 768 KiB, and each such buffer was a fresh mmap, zeroed and
            // unmapped: a fifth of an initial backup's CPU time); one that grew past its
            // length is grown by `read_to_end`.
            let max = self.chunker.params().max_size as usize;
            let needed = want.min(self.expected_rest()).max(self.buf.len());
            let room = self
                .room()
                .max(2 * self.buf.capacity())
                .min(max)
                .max(needed);
            self.buf.reserve_exact(room - self.buf.len());
        }
        // `read_to_end` reads into the spare capacity reserved above and stops at the
        // `take` limit, so the buffer is not grown behind our back.
        let n = (&mut self.reader)
            .take(missing as u64)
            .read_to_end(&mut self.buf)?;
        self.eof = n < missing;
        Ok(())
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.next_chunk_into(Vec::new)
    }

    /// Like [`next_chunk`](Self::next_chunk); the bytes read past the cut go into a buffer
    /// from `buffer` (a recycled one), which becomes the next chunk's. `buffer` is called
    /// only after a cut: a stream that is one chunk (most small files) makes no second buffer.
    pub fn next_chunk_into(
        &mut self,
        buffer: impl FnOnce() -> Vec<u8>,
    ) -> io::Result<Option<Vec<u8>>> {
        let params = self.chunker.params();
        let max = params.max_size as usize;
        let mut search = CutSearch::default();
        // Nothing below the minimum size is searched: it is read with the first step.
        let mut want = (params.min_size as usize + self.step()).min(max);
        loop {
            self.fill(want)?;
            if let Some(len) = self.chunker.find_cut(&self.buf, &mut search) {
                return Ok(Some(self.hand_out(len, buffer)));
            }
            if self.eof {
                let rest = std::mem::take(&mut self.buf);
                self.handed_out += rest.len() as u64;
                return Ok((!rest.is_empty()).then_some(rest));
            }
            want = (self.buf.len() + self.step()).min(max);
        }
    }

    /// The first `len` bytes as a chunk; what follows them starts the next chunk's buffer.
    fn hand_out(&mut self, len: usize, buffer: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
        self.handed_out += len as u64;
        let mut next = buffer();
        next.clear();
        let past_cut = &self.buf[len..];
        if next.capacity() < self.room().max(past_cut.len()) {
            next.reserve_exact(self.room().max(past_cut.len()));
        }
        next.extend_from_slice(past_cut);
        self.buf.truncate(len);
        std::mem::replace(&mut self.buf, next)
    }
}
