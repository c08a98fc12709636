//! Chunking a stream with a buffer of a few average chunks.
//!
//! The chunker needs up to a maximum chunk (8 MiB) of data to place a cut, but usually finds
//! one within twice the average (1 MiB). So the reader keeps about two average chunks ahead
//! and reads more only when the cut is not yet decided: a cut found in part of the data is
//! the cut the whole data would give (the rolling hash starts at the chunk's minimum size and
//! looks only backwards). Reading a maximum chunk ahead kept two 8-16 MiB buffers per reader
//! thread resident, the largest part of a backup's memory.

use std::io::{self, Read};

use super::Chunker;

pub struct ChunkReader<'c, R> {
    reader: R,
    chunker: &'c Chunker,
    buf: Vec<u8>,
    start: usize,
    eof: bool,
}

impl<'c, R: Read> ChunkReader<'c, R> {
    pub fn new(reader: R, chunker: &'c Chunker) -> Self {
        ChunkReader {
            reader,
            chunker,
            buf: Vec::new(),
            start: 0,
            eof: false,
        }
    }

    /// Like `new`, with room reserved for a stream expected to be `size` bytes long (a file's
    /// length), so that reading it does not grow the buffer step by step.
    pub fn with_size_hint(reader: R, chunker: &'c Chunker, size: u64) -> Self {
        let mut this = Self::new(reader, chunker);
        let cap = size.min(this.ahead() as u64 + this.step() as u64) as usize;
        this.buf.reserve_exact(cap);
        this
    }

    /// Bytes kept ahead before a cut is looked for.
    fn ahead(&self) -> usize {
        let params = self.chunker.params();
        (2 * params.avg_size).min(params.max_size) as usize
    }

    /// Bytes read at a time when the cut is not decided yet.
    fn step(&self) -> usize {
        self.chunker.params().avg_size as usize
    }

    /// Reads until `want` bytes are unread (or the stream ends).
    fn fill(&mut self, want: usize) -> io::Result<()> {
        let buffered = self.buf.len() - self.start;
        if self.eof || buffered >= want {
            return Ok(());
        }
        // Drop consumed bytes once they are as many as the unread ones: each byte is moved
        // at most once on average, and the buffer stays within about twice what is unread.
        if self.start > 0 && self.start >= buffered {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        // `read_to_end` reads into spare capacity without zero-filling it first and grows
        // the buffer with the data, so a 1 KiB file costs a 1 KiB buffer.
        let missing = (want - buffered) as u64;
        let n = (&mut self.reader)
            .take(missing)
            .read_to_end(&mut self.buf)?;
        self.eof = (n as u64) < missing;
        Ok(())
    }

    /// The length of the next chunk: the first cut in the unread data, read further while
    /// the data at hand ends before a cut is decided.
    fn next_len(&mut self) -> io::Result<usize> {
        let max = self.chunker.params().max_size as usize;
        let mut want = self.ahead();
        loop {
            self.fill(want)?;
            let rest = &self.buf[self.start..];
            let len = self.chunker.cut(rest);
            if len < rest.len() || self.eof || rest.len() >= max {
                return Ok(len);
            }
            want = (rest.len() + self.step()).min(max);
        }
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.next_chunk_into(Vec::new)
    }

    /// Like [`next_chunk`](Self::next_chunk), copying the chunk into a buffer from
    /// `buffer` (a recycled one) rather than a new allocation. `buffer` is called only when a
    /// copy is needed: a stream that is one chunk hands over the read buffer itself.
    pub fn next_chunk_into(
        &mut self,
        buffer: impl FnOnce() -> Vec<u8>,
    ) -> io::Result<Option<Vec<u8>>> {
        let len = self.next_len()?;
        let rest = &self.buf[self.start..];
        if rest.is_empty() {
            return Ok(None);
        }
        if self.eof && self.start == 0 && len == self.buf.len() {
            // The whole stream is one chunk (most small files): hand over the buffer.
            let chunk = std::mem::take(&mut self.buf);
            return Ok(Some(chunk));
        }
        let mut buf = buffer();
        buf.clear();
        buf.extend_from_slice(&rest[..len]);
        self.start += len;
        Ok(Some(buf))
    }
}
