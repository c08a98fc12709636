//! Microbenchmarks of the backup pipeline's CPU stages (chunking, blob ids, compression,
//! sealing), each next to the raw library it wraps on the same input, so that a regression in
//! lifeboat's own wrapping shows up as a falling ratio rather than hiding in a noisy end-to-end
//! run.
//!
//! Two deterministic 8 MiB inputs: `text` (lines of words drawn from a small pool, compressible)
//! and `random` (seeded random bytes, incompressible). The per-blob stages work on the input cut
//! into 1 MiB pieces, the default average chunk size.
//!
//! Run with `cargo bench -p lifeboat-core --bench pipeline`; results are summarised in the
//! "Microbenchmarks" section of docs/benchmarks.md.

use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use lifeboat_core::blob::{compress, decompress, BlobKind, Compression, IdKeys};
use lifeboat_core::chunker::{ChunkReader, Chunker, ChunkerParams};
use lifeboat_core::crypto::{NonceDomain, Salt, UnitCipher};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use ring::aead::{Aad, LessSafeKey, Nonce as RingNonce, UnboundKey, AES_256_GCM};

const INPUT_LEN: usize = 8 << 20;
const CHUNK_LEN: usize = 1 << 20;
/// The level lifeboat's `Compression::Auto` uses.
const ZSTD_LEVEL: i32 = 3;
/// The level lifeboat's `Compression::Fast` uses.
const ZSTD_FAST_LEVEL: i32 = 1;

const KEY: [u8; 32] = [0x42; 32];
const SALT: Salt = [0x17; 32];
/// The additional data lifeboat seals a data blob with (`pack::blob_aad(BlobKind::Data)`, which
/// is crate-private, so it is spelled out here).
const BLOB_AAD: [u8; 4] = [b'L', b'B', b'b', 0];

/// The word pool of the text input, separated by whitespace.
const WORDS: &str = "the of and a to in is you that it he was for on are as with his they at be \
    this have from or one had by word but not what all were we when your can said there use an \
    each which she do how their if will up other about out many then them these so some her \
    would make like backup snapshot repository chunk fn let mut impl struct return { } ( ); = ->";

/// Lines of 4 to 13 words from `WORDS`, seeded, so every run benchmarks the same bytes.
fn text_like(len: usize) -> Vec<u8> {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = StdRng::seed_from_u64(0x6c69_6665_626f_6174);
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        for i in 0..rng.gen_range(4..14) {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(words[rng.gen_range(0..words.len())].as_bytes());
        }
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(0x7261_6e64_6f6d);
    let mut out = vec![0u8; len];
    rng.fill_bytes(&mut out);
    out
}

fn inputs() -> [(&'static str, Vec<u8>); 2] {
    [
        ("text", text_like(INPUT_LEN)),
        ("random", random_bytes(INPUT_LEN)),
    ]
}

fn bytes_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(INPUT_LEN as u64));
    group
}

fn chunking(c: &mut Criterion) {
    let params = ChunkerParams::default();
    let chunker = Chunker::new(&KEY, params);
    let (min, avg, max) = (
        params.min_size as usize,
        params.avg_size as usize,
        params.max_size as usize,
    );
    for (name, data) in inputs() {
        let lifeboat_n = chunker.chunk_lengths(&data).len();
        let fastcdc_n = fastcdc::v2020::FastCDC::new(&data, min, avg, max).count();
        eprintln!("chunking/{name}: lifeboat {lifeboat_n} chunks, fastcdc {fastcdc_n} chunks");

        let mut group = bytes_group(c, &format!("chunking/{name}"));
        group.bench_function("lifeboat_chunk_lengths", |b| {
            b.iter(|| chunker.chunk_lengths(black_box(&data)))
        });
        // What a backup really runs: the streaming reader, with its buffer and per-chunk copy.
        group.bench_function("lifeboat_chunk_reader", |b| {
            b.iter(|| {
                let mut reader = ChunkReader::new(Cursor::new(black_box(&data[..])), &chunker);
                let mut total = 0;
                while let Some(chunk) = reader.next_chunk().expect("reading from memory") {
                    total += chunk.len();
                }
                total
            })
        });
        group.bench_function("fastcdc_v2020", |b| {
            b.iter(|| {
                fastcdc::v2020::FastCDC::new(black_box(&data), min, avg, max)
                    .map(|chunk| chunk.length)
                    .collect::<Vec<_>>()
            })
        });
        group.finish();
    }
}

fn hashing(c: &mut Criterion) {
    let keys = IdKeys::new(&KEY);
    for (name, data) in inputs() {
        let mut group = bytes_group(c, &format!("hashing/{name}"));
        group.bench_function("lifeboat_id_data", |b| {
            b.iter(|| {
                for chunk in black_box(&data).chunks(CHUNK_LEN) {
                    black_box(keys.id(BlobKind::Data, chunk));
                }
            })
        });
        group.bench_function("blake3_keyed_hash", |b| {
            b.iter(|| {
                for chunk in black_box(&data).chunks(CHUNK_LEN) {
                    black_box(blake3::keyed_hash(&KEY, chunk));
                }
            })
        });
        group.finish();
    }
}

fn compression(c: &mut Criterion) {
    for (name, data) in inputs() {
        let stored: usize = data
            .chunks(CHUNK_LEN)
            .map(|chunk| compress(chunk, Compression::Auto).map_or(chunk.len(), |z| z.len()))
            .sum();
        eprintln!(
            "compress/{name}: lifeboat auto stores {:.1}% of the input",
            stored as f64 * 100.0 / data.len() as f64
        );

        let mut group = bytes_group(c, &format!("compress/{name}"));
        for (label, mode) in [
            ("lifeboat_auto", Compression::Auto),
            ("lifeboat_level3", Compression::Level(ZSTD_LEVEL)),
            ("lifeboat_fast", Compression::Fast),
        ] {
            group.bench_function(label, |b| {
                b.iter(|| {
                    for chunk in black_box(&data).chunks(CHUNK_LEN) {
                        black_box(compress(chunk, mode));
                    }
                })
            });
        }
        for (label, level) in [
            ("zstd_bulk_level3", ZSTD_LEVEL),
            ("zstd_bulk_level1", ZSTD_FAST_LEVEL),
        ] {
            group.bench_function(label, |b| {
                b.iter(|| {
                    for chunk in black_box(&data).chunks(CHUNK_LEN) {
                        black_box(zstd::bulk::compress(chunk, level).expect("zstd compress"));
                    }
                })
            });
        }
        group.finish();
    }
}

fn decompression(c: &mut Criterion) {
    for (name, data) in inputs() {
        // Both sides decode the same zstd level-3 frames. (lifeboat would store the random
        // chunks raw; decoding their frames still measures the decoder's per-byte cost.)
        let frames: Vec<Vec<u8>> = data
            .chunks(CHUNK_LEN)
            .map(|chunk| zstd::bulk::compress(chunk, ZSTD_LEVEL).expect("zstd compress"))
            .collect();
        let mut group = bytes_group(c, &format!("decompress/{name}"));
        group.bench_function("lifeboat_decompress", |b| {
            b.iter(|| {
                for frame in black_box(&frames) {
                    black_box(decompress(frame, CHUNK_LEN).expect("lifeboat decompress"));
                }
            })
        });
        group.bench_function("zstd_bulk_decompress", |b| {
            b.iter(|| {
                for frame in black_box(&frames) {
                    black_box(zstd::bulk::decompress(frame, CHUNK_LEN).expect("zstd decompress"));
                }
            })
        });
        group.finish();
    }
}

fn sealing(c: &mut Criterion) {
    let cipher = UnitCipher::new(&KEY, &SALT);
    let raw = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&KEY));
    let nonce = [0u8; 12];
    for (name, data) in inputs() {
        let mut group = bytes_group(c, &format!("seal/{name}"));
        group.bench_function("lifeboat_unit_cipher_seal", |b| {
            b.iter(|| {
                // As in a pack: the nonce counter is the blob's offset.
                for (i, chunk) in black_box(&data).chunks(CHUNK_LEN).enumerate() {
                    let offset = (i * CHUNK_LEN) as u64;
                    black_box(cipher.seal(NonceDomain::Blob, offset, &BLOB_AAD, chunk));
                }
            })
        });
        // The library lifeboat seals with (ring), on the same buffer sizes.
        let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).expect("key"));
        group.bench_function("ring_seal_in_place", |b| {
            let mut buf = Vec::with_capacity(CHUNK_LEN + 16);
            b.iter(|| {
                for chunk in black_box(&data).chunks(CHUNK_LEN) {
                    buf.clear();
                    buf.extend_from_slice(chunk);
                    let tag = ring_key
                        .seal_in_place_separate_tag(
                            RingNonce::assume_unique_for_key(nonce),
                            Aad::from(&BLOB_AAD),
                            &mut buf,
                        )
                        .expect("ring seal");
                    let _ = black_box(tag);
                }
            })
        });
        // The pure-Rust implementation lifeboat used before, for comparison.
        group.bench_function("aes_gcm_encrypt", |b| {
            b.iter(|| {
                for chunk in black_box(&data).chunks(CHUNK_LEN) {
                    let payload = Payload {
                        msg: chunk,
                        aad: &BLOB_AAD,
                    };
                    black_box(
                        raw.encrypt(Nonce::from_slice(&nonce), payload)
                            .expect("AES-GCM encrypt"),
                    );
                }
            })
        });
        group.finish();
    }
}

/// The fixed cost of each sealed unit (pack, index, snapshot): HKDF-SHA256 plus the AES key
/// schedule, against the key schedule alone.
fn unit_cipher_new(c: &mut Criterion) {
    let mut group = c.benchmark_group("unit_cipher_new");
    group.bench_function("lifeboat_unit_cipher_new", |b| {
        b.iter(|| UnitCipher::new(black_box(&KEY), black_box(&SALT)))
    });
    group.bench_function("aes256gcm_new", |b| {
        b.iter(|| Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(black_box(&KEY))))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = chunking, hashing, compression, decompression, sealing, unit_cipher_new
}
criterion_main!(benches);
