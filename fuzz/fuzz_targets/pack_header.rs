//! Pack files as a reader meets them in storage: magic, version, trailer, header length, the
//! sealed header (authenticated under a fixed test key), the plaintext header decoder of both
//! pack versions and its bounds checks, and opening a frame an entry names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_core::blob::{BlobKind, IdKeys};
use lifeboat_core::fuzzing::{self, KEY, PACK_NAME};
use lifeboat_core::pack::{blob_in_frame, open_frame, PackEntry};

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Opens the frames the first entries name, as a restore would after reading the header.
fn open_frames(pack: &[u8], salt: &[u8; 32], entries: &[PackEntry]) {
    let ids = IdKeys::new(&KEY);
    for entry in entries.iter().take(8) {
        let end = entry.offset as u64 + entry.length as u64;
        // read_header promises that every frame lies inside the pack body.
        let sealed = pack
            .get(entry.offset as usize..end as usize)
            .unwrap_or_else(|| panic!("accepted entry {entry:?} lies outside the pack"));
        if let Ok(frame) = open_frame(&KEY, PACK_NAME, salt, entry, sealed) {
            let _ = blob_in_frame(&ids, PACK_NAME, entry, &frame);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        // The input is the pack file: almost never authenticates, but everything in front of
        // the authentication (sizes, magic, version, trailer, header length) is parsed.
        0 => {
            let _ = fuzzing::pack_header(rest.to_vec());
        }
        // version, body length (u16), body, header plaintext: the header is sealed under the
        // test key, so the plaintext decoder and the checks after it run on fuzzed bytes.
        1 => {
            if rest.len() < 3 {
                return;
            }
            let version = rest[0];
            let body_len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
            let rest = &rest[3..];
            let (body, header) = rest.split_at(body_len.min(rest.len()));
            let pack = fuzzing::seal_pack(version, body, header);
            if let Ok((salt, entries)) = fuzzing::pack_header(pack.clone()) {
                open_frames(&pack, &salt, &entries);
            }
        }
        // The plaintext header decoder alone, in the layout of pack version 1 or 2.
        2 => {
            let version = if rest.first().is_some_and(|b| b & 1 == 0) {
                1
            } else {
                2
            };
            let _ = fuzzing::decode_pack_header(version, rest.get(1..).unwrap_or_default());
        }
        // One frame: kind, compressed, frame offset, raw length, frame length, then the frame's
        // stored plaintext (zstd or raw), sealed under the test key: decompression with its
        // declared length, and the cut of the blob out of the frame.
        _ => {
            if rest.len() < 14 {
                return;
            }
            let kind = if rest[0] & 1 == 0 {
                BlobKind::Data
            } else {
                BlobKind::Tree
            };
            let compressed = rest[1] & 1 == 1;
            let frame_offset = u32_at(rest, 2);
            let raw_length = u32_at(rest, 6);
            let frame_length = u32_at(rest, 10);
            let payload = &rest[14..];
            let sealed = fuzzing::seal_frame(kind, 8, payload);
            let entry = PackEntry {
                kind,
                id: lifeboat_core::blob::BlobId([0; 32]),
                offset: 8,
                length: sealed.len() as u32,
                raw_length,
                compressed,
                frame_offset,
                frame_length,
            };
            if let Ok(frame) = open_frame(&KEY, PACK_NAME, &fuzzing::SALT, &entry, &sealed) {
                assert_eq!(frame.len(), frame_length as usize);
                let _ = blob_in_frame(&IdKeys::new(&KEY), PACK_NAME, &entry, &frame);
            }
        }
    }
});
