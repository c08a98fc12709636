use proptest::prelude::*;

use super::*;

fn small_params() -> ChunkerParams {
    ChunkerParams {
        min_size: 256,
        avg_size: 1024,
        max_size: 8192,
    }
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.finalize_xof().fill(&mut out);
    out
}

fn chunks_of(chunker: &Chunker, data: &[u8]) -> Vec<Vec<u8>> {
    let mut reader = ChunkReader::new(data, chunker);
    let mut out = Vec::new();
    while let Some(chunk) = reader.next_chunk().unwrap() {
        out.push(chunk);
    }
    out
}

#[test]
fn default_sizes_average_near_one_mebibyte() {
    let chunker = Chunker::new(&[1u8; 32], ChunkerParams::default());
    let data = pseudo_random(64 * 1024 * 1024, 3);
    let lengths = chunker.chunk_lengths(&data);
    let avg = data.len() / lengths.len();
    assert!(
        (700 * 1024..1500 * 1024).contains(&avg),
        "average chunk {avg}"
    );
}

/// The reader looks for cuts in a window of about two average chunks, not a whole maximum
/// chunk: its cuts must still be those of the whole buffer, or dedup against chunks stored by
/// earlier versions breaks.
#[test]
fn reader_cuts_match_whole_buffer_cuts_with_default_sizes() {
    let chunker = Chunker::new(&[7u8; 32], ChunkerParams::default());
    let mut data = pseudo_random(24 * 1024 * 1024, 5);
    // A long run of zeros: no cut until the maximum chunk size.
    data.splice(
        3_000_000..3_000_000,
        std::iter::repeat_n(0u8, 12 * 1024 * 1024),
    );
    let lengths: Vec<usize> = chunks_of(&chunker, &data).iter().map(Vec::len).collect();
    assert_eq!(lengths, chunker.chunk_lengths(&data));
    let max = ChunkerParams::default().max_size as usize;
    assert!(lengths.contains(&max), "the zeros give a maximum chunk");
}

#[test]
fn gear_table_depends_on_seed() {
    let data = pseudo_random(200_000, 9);
    let a = Chunker::new(&[1u8; 32], small_params()).chunk_lengths(&data);
    let b = Chunker::new(&[2u8; 32], small_params()).chunk_lengths(&data);
    assert_ne!(a, b);
}

/// Pins the boundaries so an accidental change of the chunker (which would silently break
/// dedup against existing repositories) fails loudly.
#[test]
fn boundaries_are_stable() {
    let data = pseudo_random(20_000, 1);
    let lengths = Chunker::new(&[0u8; 32], small_params()).chunk_lengths(&data);
    assert_eq!(lengths.iter().sum::<usize>(), data.len());
    let expected: Vec<usize> = STABLE_LENGTHS.to_vec();
    assert_eq!(lengths, expected);
}

const STABLE_LENGTHS: &[usize] = &[
    2209, 717, 609, 2438, 1635, 2120, 1094, 1475, 504, 429, 2070, 1081, 477, 613, 1233, 1018, 278,
];

/// FastCDC's cut byte by byte, as first written: `Chunker::cut` must agree with it exactly,
/// or existing repositories lose their dedup.
fn cut_byte_by_byte(chunker: &Chunker, data: &[u8]) -> usize {
    let params = chunker.params();
    let min = params.min_size as usize;
    if data.len() <= min {
        return data.len();
    }
    let max = data.len().min(params.max_size as usize);
    let normal = data.len().min(params.avg_size as usize).max(min);
    let mut hash = 0u64;
    for (i, &byte) in data.iter().enumerate().take(max).skip(min) {
        hash = (hash << 1).wrapping_add(chunker.gear[byte as usize]);
        let mask = if i < normal {
            chunker.mask_small
        } else {
            chunker.mask_large
        };
        if hash & mask == 0 {
            return i + 1;
        }
    }
    max
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cut_matches_the_byte_by_byte_loop(len in 0usize..40_000, seed in any::<u64>(), key in any::<[u8; 32]>(), min in 64u32..1500, avg_bits in 11u32..13) {
        let params = ChunkerParams { min_size: min, avg_size: 1 << avg_bits, max_size: 12_000 + min };
        let chunker = Chunker::new(&key, params);
        let mut data = &pseudo_random(len, seed)[..];
        while !data.is_empty() {
            let len = chunker.cut(data);
            prop_assert_eq!(len, cut_byte_by_byte(&chunker, data));
            data = &data[len..];
        }
    }

    /// A search resumed over ever longer prefixes (how the reader reads a stream) finds the
    /// cut of one search over the whole data, including steps that end inside the minimum
    /// size, at the average size, and in a run of zeros with no cut before the maximum.
    #[test]
    fn resumed_search_finds_the_cut_of_one_search(len in 0usize..40_000, seed in any::<u64>(), zeros in 0usize..20_000, steps in proptest::collection::vec(1usize..3000, 1..40)) {
        let chunker = Chunker::new(&[3u8; 32], small_params());
        let mut data = pseudo_random(len, seed);
        let at = len / 3;
        data.splice(at..at, std::iter::repeat_n(0u8, zeros));
        let mut rest = &data[..];
        while !rest.is_empty() {
            let whole = chunker.cut(rest);
            let mut search = CutSearch::default();
            let mut end = 0;
            let resumed = loop {
                end = (end + steps[end % steps.len()]).min(rest.len());
                if let Some(cut) = chunker.find_cut(&rest[..end], &mut search) {
                    break cut;
                }
                if end == rest.len() {
                    break end;
                }
            };
            prop_assert_eq!(resumed, whole);
            rest = &rest[whole..];
        }
    }

    #[test]
    fn deterministic_and_within_bounds(len in 0usize..60_000, seed in any::<u64>(), key in any::<[u8; 32]>()) {
        let data = pseudo_random(len, seed);
        let chunker = Chunker::new(&key, small_params());
        let chunks = chunks_of(&chunker, &data);
        let again = chunks_of(&chunker, &data);
        prop_assert_eq!(&chunks, &again);
        prop_assert_eq!(chunks.concat(), data.clone());
        let lengths = chunker.chunk_lengths(&data);
        prop_assert_eq!(lengths.clone(), chunks.iter().map(Vec::len).collect::<Vec<_>>());
        for (i, c) in chunks.iter().enumerate() {
            prop_assert!(c.len() <= 8192);
            if i + 1 < chunks.len() {
                prop_assert!(c.len() >= 256, "chunk {} of {} has {} bytes", i, chunks.len(), c.len());
            }
        }
    }

    #[test]
    fn insertion_changes_only_nearby_chunks(seed in any::<u64>(), at in 0usize..100_000, insert in proptest::collection::vec(any::<u8>(), 1..200)) {
        let data = pseudo_random(100_000, seed);
        let mut edited = data[..at].to_vec();
        edited.extend_from_slice(&insert);
        edited.extend_from_slice(&data[at..]);
        let chunker = Chunker::new(&[5u8; 32], small_params());
        let before = chunker.chunk_lengths(&data);
        let after = chunker.chunk_lengths(&edited);
        // Chunking is deterministic from the start: every chunk that ends before the insertion
        // is unchanged.
        let prefix = before.iter().zip(&after).take_while(|(b, a)| b == a).count();
        let untouched: usize = before.iter().scan(0, |end, len| { *end += len; Some(*end) }).take_while(|end| *end <= at).count();
        prop_assert!(prefix >= untouched, "prefix {} < untouched {}", prefix, untouched);
        // After it, boundaries resynchronise: the chunks that differ span at most the insertion
        // plus two maximum-size chunks (measured worst case over 3000 edits: 7848 bytes).
        let suffix = before.iter().rev().zip(after.iter().rev()).take_while(|(b, a)| b == a).count();
        let middle: usize = after[prefix..after.len() - suffix.min(after.len() - prefix)].iter().sum();
        prop_assert!(middle <= insert.len() + 2 * 8192, "{} bytes differ", middle);
        prop_assert!(before.len() >= 10);
    }
}

#[test]
fn a_small_stream_of_known_length_gets_a_buffer_of_its_size() {
    let chunker = Chunker::new(&[1u8; 32], ChunkerParams::default());
    let data = pseudo_random(4096, 5);
    let mut reader = ChunkReader::with_size_hint(&data[..], &chunker, 4096);
    let chunk = reader.next_chunk().unwrap().unwrap();
    assert_eq!(chunk, data);
    assert!(chunk.capacity() <= 8192, "capacity {}", chunk.capacity());
    assert!(reader.next_chunk().unwrap().is_none());
}

#[test]
fn a_stream_longer_or_shorter_than_its_size_hint_is_chunked_as_without_one() {
    let chunker = Chunker::new(&[1u8; 32], ChunkerParams::default());
    let data = pseudo_random(5 * 1024 * 1024 + 77, 6);
    let plain = chunks_of(&chunker, &data);
    assert!(plain.len() > 2);
    for hint in [1, 4096, 700 * 1024, data.len() as u64, 64 * 1024 * 1024] {
        let mut reader = ChunkReader::with_size_hint(&data[..], &chunker, hint);
        let mut hinted = Vec::new();
        while let Some(chunk) = reader.next_chunk().unwrap() {
            hinted.push(chunk);
        }
        assert_eq!(hinted, plain, "size hint {hint}");
    }
}
