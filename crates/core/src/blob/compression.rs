//! zstd compression that gives up on data that does not shrink.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Compression {
    Off,
    /// zstd level 3, after a cheap probe says the data is compressible.
    #[default]
    Auto,
    Fast,
    Max,
    Level(i32),
}

/// The zstd levels `Compression::Level` may name.
const LEVELS: std::ops::RangeInclusive<i32> = 1..=22;

impl Compression {
    /// Refuses a level outside zstd's 1-22 (a config object decoded from storage is not
    /// checked by `FromStr`).
    pub fn validate(self) -> Result<(), String> {
        match self {
            Compression::Level(l) if !LEVELS.contains(&l) => Err(format!(
                "compression level {l} is outside zstd's {}-{}",
                LEVELS.start(),
                LEVELS.end()
            )),
            _ => Ok(()),
        }
    }

    fn level(self) -> Option<i32> {
        match self {
            Compression::Off => None,
            Compression::Auto => Some(3),
            Compression::Fast => Some(1),
            Compression::Max => Some(19),
            Compression::Level(l) => Some(l),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Off => f.write_str("off"),
            Compression::Auto => f.write_str("auto"),
            Compression::Fast => f.write_str("fast"),
            Compression::Max => f.write_str("max"),
            Compression::Level(l) => write!(f, "{l}"),
        }
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Compression::Off),
            "auto" => Ok(Compression::Auto),
            "fast" => Ok(Compression::Fast),
            "max" => Ok(Compression::Max),
            _ => match s.parse::<i32>() {
                Ok(l) if LEVELS.contains(&l) => Ok(Compression::Level(l)),
                _ => Err(format!(
                    "invalid compression {s:?}: use off, auto, fast, max or a zstd level 1-22"
                )),
            },
        }
    }
}

/// Probe size: big enough to judge, small enough to be cheap next to the full compression.
const PROBE: usize = 64 * 1024;

thread_local! {
    /// One zstd context per thread and level: creating a context costs more than compressing
    /// a small file.
    static COMPRESSORS: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(Vec::new()) };
}

fn zstd_compress_into(data: &[u8], level: i32, out: &mut Vec<u8>) -> Option<()> {
    COMPRESSORS.with(|cell| {
        let mut compressors = cell.borrow_mut();
        let at = match compressors.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                compressors.push((level, zstd::bulk::Compressor::new(level).ok()?));
                compressors.len() - 1
            }
        };
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        compressors[at].1.compress_to_buffer(data, out).ok()?;
        Some(())
    })
}

thread_local! {
    /// Where [`compress_with`] puts its output: reused, since the caller copies it on.
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Like [`compress`], but lends the compressed bytes to `f` from a reused per-thread buffer
/// instead of allocating one per blob (`None` when the data is stored raw).
pub fn compress_with<T>(data: &[u8], mode: Compression, f: impl FnOnce(Option<&[u8]>) -> T) -> T {
    OUTPUT.with(|cell| {
        let mut out = cell.borrow_mut();
        let kept = compress_to(data, mode, &mut out);
        f(kept.then_some(out.as_slice()))
    })
}

/// Whether `auto` would compress `data`: a sample of its middle must shrink by 3% at level 1.
/// Data too small to sample is worth trying whole.
pub fn probably_compressible(data: &[u8]) -> bool {
    OUTPUT.with(|cell| probe_compresses(data, &mut cell.borrow_mut()))
}

fn probe_compresses(data: &[u8], scratch: &mut Vec<u8>) -> bool {
    if data.len() <= 4 * PROBE {
        return true;
    }
    let mid = data.len() / 2;
    let probe = &data[mid - PROBE / 2..mid + PROBE / 2];
    matches!(zstd_compress_into(probe, 1, scratch), Some(()) if scratch.len() * 100 < probe.len() * 97)
}

/// Bytes of a small blob that [`looks_random`] samples.
const SPREAD_SAMPLE: usize = 512;

/// Whether a small blob's bytes look random (compressed, encrypted, or random data): the
/// chance that two bytes of a sample of its middle are equal is below 1/128, as if drawn from
/// more than 128 equally likely values (text draws from a few dozen). It costs a pass over 512
/// bytes. A wrong answer costs a little speed or ratio, never data: text frames are compressed
/// whenever that saves space, random ones when a probe of their middle shrinks.
pub fn looks_random(data: &[u8]) -> bool {
    let n = data.len().min(SPREAD_SAMPLE);
    if n < 64 {
        return false;
    }
    let start = (data.len() - n) / 2;
    let mut counts = [0u32; 256];
    for &b in &data[start..start + n] {
        counts[b as usize] += 1;
    }
    let equal_pairs: u64 = counts
        .iter()
        .map(|&c| u64::from(c) * u64::from(c.saturating_sub(1)))
        .sum();
    let n = n as u64;
    equal_pairs * 128 < n * (n - 1)
}

/// Compresses into `out`; false when storing the data raw is as good.
fn compress_to(data: &[u8], mode: Compression, out: &mut Vec<u8>) -> bool {
    let Some(level) = mode.level() else {
        return false;
    };
    if data.len() < 64 {
        return false;
    }
    if mode == Compression::Auto && !probe_compresses(data, out) {
        return false;
    }
    if zstd_compress_into(data, level, out).is_none() {
        return false;
    }
    // Keep the compressed form only when it saves at least 1/64 of the size.
    out.len() < data.len() - data.len() / 64
}

/// Compresses `data`, or returns `None` when storing it raw is as good (already compressed,
/// random, or tiny).
pub fn compress(data: &[u8], mode: Compression) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    compress_to(data, mode, &mut out).then_some(out)
}

/// Above this, decompression streams so that memory follows the real output; below it, one
/// reused context decompresses into a buffer of exactly the declared size.
const BULK_DECOMPRESS_MAX: usize = 16 * 1024 * 1024;

thread_local! {
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Decompresses into exactly `raw_len` bytes. Memory follows the real output, never the
/// declared length alone, and output beyond `raw_len` is an error, not an allocation: a
/// decompression bomb costs at most `raw_len + 1` bytes.
pub fn decompress(data: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    decompress_into(data, raw_len, &mut out)?;
    Ok(out)
}

/// [`decompress`] into a buffer the caller reuses: a fresh multi-MiB buffer per blob costs
/// its page faults every time (a fifth of the CPU of reading a 100 MiB file).
pub fn decompress_into(data: &[u8], raw_len: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Read;
    out.clear();
    if raw_len <= BULK_DECOMPRESS_MAX {
        // Exactly: a reused buffer grown by doubling would keep twice the largest blob.
        out.reserve_exact(raw_len);
        let bulk = DECOMPRESSOR.with(|cell| -> std::io::Result<usize> {
            let mut slot = cell.borrow_mut();
            let d = match slot.as_mut() {
                Some(d) => d,
                None => slot.insert(zstd::bulk::Decompressor::new()?),
            };
            // Output beyond the buffer's capacity fails here; the length check below
            // catches output beyond `raw_len` within it.
            d.decompress_to_buffer(data, out)
        });
        return match bulk {
            Ok(n) if n == raw_len => Ok(()),
            Ok(n) => Err(wrong_length(n, raw_len)),
            Err(e) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("does not decompress to {raw_len} bytes: {e}"),
            )),
        };
    }
    // Streamed: the buffer doubles as the real output grows, but never past `raw_len + 1` (one
    // byte more than declared tells a bomb apart). `read_to_end` would double it past that: a
    // 1 GiB index file whose stream runs on allocated 2 GiB to find its extra byte.
    let mut decoder = zstd::stream::read::Decoder::new(data)?;
    let limit = raw_len.saturating_add(1);
    out.reserve(raw_len.min(4 * 1024 * 1024));
    let mut scratch = vec![0u8; 256 * 1024];
    while out.len() < limit {
        let want = scratch.len().min(limit - out.len());
        let n = match decoder.read(&mut scratch[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if out.len() + n > out.capacity() {
            let grown = (out.capacity() * 2).max(out.len() + n).min(limit);
            out.reserve_exact(grown - out.len());
        }
        out.extend_from_slice(&scratch[..n]);
    }
    if out.len() != raw_len {
        return Err(wrong_length(out.len(), raw_len));
    }
    Ok(())
}

fn wrong_length(got: usize, raw_len: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "decompressed to {got}{} bytes, expected {raw_len}",
            if got > raw_len { "+" } else { "" }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_data_shrinks_and_round_trips() {
        let data = b"lifeboat ".repeat(100_000);
        let c = compress(&data, Compression::Auto).unwrap();
        assert!(c.len() < data.len() / 10);
        assert_eq!(decompress(&c, data.len()).unwrap(), data);
        assert!(
            decompress(&c, data.len() - 1).is_err(),
            "a bomb larger than declared fails"
        );
    }

    /// A reused buffer has room for more than the declared length: the check must not lean
    /// on its capacity.
    #[test]
    fn a_reused_buffer_still_rejects_output_beyond_the_declared_length() {
        let big = b"a larger blob ".repeat(50_000);
        let small = b"lifeboat ".repeat(10_000);
        let mut out = Vec::new();
        decompress_into(
            &compress(&big, Compression::Auto).unwrap(),
            big.len(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, big);
        let c = compress(&small, Compression::Auto).unwrap();
        let err = decompress_into(&c, small.len() - 1, &mut out).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
        decompress_into(&c, small.len(), &mut out).unwrap();
        assert_eq!(out, small, "the old contents are gone");
    }

    /// Found with the `index` fuzz target: an index file declaring 1 GiB of plaintext whose
    /// zstd stream (38 KB of zeros' frames) runs on past it made the streamed path allocate
    /// 2 GiB, twice the declared size, to find the extra byte. The same, scaled down to a
    /// 20 MiB declaration (above the bulk path's 16 MiB), with the exact bytes of the artifact's
    /// shape: a declared length, then zeros compressed past it.
    #[test]
    fn fuzz_index_bomb_past_declared_length_allocates_double() {
        let raw_len = 20 * 1024 * 1024;
        let bomb = zstd::bulk::compress(&vec![0u8; 2 * raw_len], 19).unwrap();
        assert!(bomb.len() < 4096, "{} bytes", bomb.len());
        let mut out = Vec::new();
        let err = decompress_into(&bomb, raw_len, &mut out).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
        assert!(
            out.capacity() <= raw_len + 1,
            "a bomb declared as {raw_len} bytes allocated {}",
            out.capacity()
        );
        // An honest stream of that length still reads whole, and a short one fails.
        let honest: Vec<u8> = (0..raw_len).map(|i| (i % 251) as u8).collect();
        let packed = zstd::bulk::compress(&honest, 1).unwrap();
        decompress_into(&packed, raw_len, &mut out).unwrap();
        assert_eq!(out, honest);
        assert!(decompress_into(&packed, raw_len + 1, &mut out).is_err());
    }

    #[test]
    fn random_data_is_stored_raw() {
        let mut data = vec![0u8; 1 << 20];
        blake3::Hasher::new().finalize_xof().fill(&mut data);
        assert!(compress(&data, Compression::Auto).is_none());
        assert!(compress(&data, Compression::Max).is_none());
        assert!(compress(b"x".repeat(1000).as_slice(), Compression::Off).is_none());
    }

    #[test]
    fn random_bytes_look_random_and_text_does_not() {
        let mut random = vec![0u8; 8192];
        blake3::Hasher::new().finalize_xof().fill(&mut random);
        assert!(looks_random(&random));
        assert!(looks_random(&random[..200]));
        let text = b"fn main() { println!(\"lifeboat {}\", 42); } // a comment\n".repeat(100);
        assert!(!looks_random(&text));
        let json = br#"{"id": 12345, "name": "Mary Smith", "tags": ["a", "b"]}"#.repeat(50);
        assert!(!looks_random(&json));
        // Too short to judge: goes with the text.
        assert!(!looks_random(&random[..40]));
        // Random bytes drawn from 64 values (base64) are text to zstd too.
        let base64: Vec<u8> = random
            .iter()
            .map(|b| {
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [(b & 63) as usize]
            })
            .collect();
        assert!(!looks_random(&base64));
    }

    #[test]
    fn parses_levels() {
        assert_eq!("7".parse::<Compression>().unwrap(), Compression::Level(7));
        assert!("0".parse::<Compression>().is_err());
        assert!("fastest".parse::<Compression>().is_err());
    }
}
