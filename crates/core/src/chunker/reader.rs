//! Chunking a stream with a buffer of at most twice the maximum chunk size.

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
        let cap = size.min(chunker.params().max_size as u64) as usize;
        this.buf.reserve_exact(cap);
        this
    }

    fn fill(&mut self) -> io::Result<()> {
        let max = self.chunker.params().max_size as usize;
        // Shift the unread tail down only once a whole maximum chunk has been consumed, so
        // each byte is moved at most once instead of once per chunk.
        if self.start >= max && self.buf.len() - self.start < max {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let buffered = self.buf.len() - self.start;
        if !self.eof && buffered < max {
            // `read_to_end` reads into spare capacity without zero-filling it first and
            // grows the buffer with the data, so a 1 KiB file costs a 1 KiB buffer.
            let want = (max - buffered) as u64;
            let n = (&mut self.reader).take(want).read_to_end(&mut self.buf)?;
            self.eof = (n as u64) < want;
        }
        Ok(())
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
        self.fill()?;
        let rest = &self.buf[self.start..];
        if rest.is_empty() {
            return Ok(None);
        }
        let len = self.chunker.cut(rest);
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
