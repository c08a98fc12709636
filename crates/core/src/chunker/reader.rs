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

    fn fill(&mut self) -> io::Result<()> {
        let max = self.chunker.params().max_size as usize;
        // Shift the unread tail down only once a whole maximum chunk has been consumed, so
        // each byte is moved at most once instead of once per chunk.
        if self.start >= max && self.buf.len() - self.start < max {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        while !self.eof && self.buf.len() - self.start < max {
            let have = self.buf.len();
            let want = (self.start + max).max(have + 64 * 1024);
            self.buf.resize(want, 0);
            match self.reader.read(&mut self.buf[have..]) {
                Ok(0) => {
                    self.buf.truncate(have);
                    self.eof = true;
                }
                Ok(n) => self.buf.truncate(have + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(have),
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.fill()?;
        let rest = &self.buf[self.start..];
        if rest.is_empty() {
            return Ok(None);
        }
        let len = self.chunker.cut(rest);
        let chunk = rest[..len].to_vec();
        self.start += len;
        Ok(Some(chunk))
    }
}
