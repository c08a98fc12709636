//! Index files: the sealed object opened under a fixed test key, the declared length, zstd
//! decompression and the postcard decoder of both index versions, then the in-memory index
//! built from what was decoded, as the index loader does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_core::fuzzing;
use lifeboat_core::index::{Index, IndexFile};

fn load(file: &IndexFile) {
    let mut index = Index::default();
    index.merge_file(file);
    index.finish();
    for pack in &file.packs {
        for entry in &pack.blobs {
            assert!(index.contains(&entry.id), "a decoded blob is not found");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let opened = match mode % 4 {
        // The input is the stored file (authentication fails unless the fuzzer forges a tag).
        0 => fuzzing::open_index(rest.to_vec()),
        // The input is the sealed plaintext: declared length (u64 LE) and a zstd frame.
        1 => fuzzing::open_index(fuzzing::seal_index(rest)),
        // The input is the decompressed plaintext, compressed and sealed as a writer would.
        2 => {
            let mut body = (rest.len() as u64).to_le_bytes().to_vec();
            body.extend_from_slice(&zstd::bulk::compress(rest, 1).expect("zstd"));
            fuzzing::open_index(fuzzing::seal_index(&body))
        }
        // The plaintext decoder alone.
        _ => fuzzing::decode_index(rest),
    };
    if let Ok(file) = opened {
        load(&file);
    }
});
