use super::*;
use crate::blob::IdKeys;
use crate::storage::{LocalStorage, ObjectKind, Storage};

fn store() -> (tempfile::TempDir, LocalStorage) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::new(dir.path());
    store.create().unwrap();
    // Pack fan-out directories are only made in a repository that has its config.
    store.write(ObjectKind::Config, "config", b"{}").unwrap();
    (dir, store)
}

fn read_back(
    seal: &[u8; 32],
    idk: &IdKeys,
    store: &LocalStorage,
    pack: &SealedPack,
) -> Vec<Vec<u8>> {
    let (salt, entries) = read_header(store, seal, &pack.name).unwrap();
    assert_eq!(entries, pack.entries);
    entries
        .iter()
        .map(|entry| {
            let sealed = &pack.bytes().unwrap()
                [entry.offset as usize..(entry.offset + entry.length) as usize];
            let frame = open_frame(seal, &pack.name, &salt, entry, sealed).unwrap();
            blob_in_frame(idk, &pack.name, entry, &frame)
                .unwrap()
                .to_vec()
        })
        .collect()
}

#[test]
fn pack_round_trip_and_header() {
    let seal = [3u8; 32];
    let idk = IdKeys::new(&[4u8; 32]);
    for version in [PACK_VERSION_1, PACK_VERSION_2] {
        let mut writer = PackWriter::new(&seal, version);
        let blobs: Vec<Vec<u8>> = vec![b"alpha".to_vec(), vec![9u8; 5000], b"".to_vec()];
        for b in &blobs {
            let id = idk.id(BlobKind::Data, b);
            writer.add(BlobKind::Data, id, b.len(), false, b).unwrap();
        }
        let pack = writer.finish().unwrap();
        assert_eq!(pack.bytes().unwrap()[4], version);
        let (_dir, store) = store();
        store
            .write(ObjectKind::Pack, &pack.name, pack.bytes().unwrap())
            .unwrap();
        assert_eq!(read_back(&seal, &idk, &store, &pack), blobs);
        // The kind is authenticated: a data blob cannot be read as a tree.
        let (salt, entries) = read_header(&store, &seal, &pack.name).unwrap();
        let mut as_tree = entries[0];
        as_tree.kind = BlobKind::Tree;
        let sealed = &pack.bytes().unwrap()
            [as_tree.offset as usize..(as_tree.offset + as_tree.length) as usize];
        assert!(open_frame(&seal, &pack.name, &salt, &as_tree, sealed).is_err());
    }
}

/// Three blobs compressed and sealed as one frame, next to a blob alone: each reads back by
/// its own entry, and an entry pointing at the wrong bytes of the frame fails its id check.
#[test]
fn shared_frames_round_trip() {
    let seal = [5u8; 32];
    let idk = IdKeys::new(&[6u8; 32]);
    let blobs: Vec<Vec<u8>> = vec![
        b"one small file\n".repeat(40),
        b"".to_vec(),
        vec![7u8; 3000],
    ];
    let mut plaintext = Vec::new();
    let mut members = Vec::new();
    for b in &blobs {
        members.push(FrameMember {
            id: idk.id(BlobKind::Data, b),
            frame_offset: plaintext.len() as u32,
            raw_length: b.len() as u32,
        });
        plaintext.extend_from_slice(b);
    }
    let compressed = crate::blob::compress(&plaintext, crate::blob::Compression::Level(3))
        .expect("repetitive data compresses");
    let mut writer = PackWriter::new(&seal, PACK_VERSION_2);
    writer
        .add_frame(BlobKind::Data, &members, plaintext.len(), true, &compressed)
        .unwrap();
    let alone = b"a blob with a frame of its own".to_vec();
    let alone_id = idk.id(BlobKind::Data, &alone);
    writer
        .add(BlobKind::Data, alone_id, alone.len(), false, &alone)
        .unwrap();
    let pack = writer.finish().unwrap();
    let (_dir, store) = store();
    store
        .write(ObjectKind::Pack, &pack.name, pack.bytes().unwrap())
        .unwrap();
    let mut want = blobs.clone();
    want.push(alone);
    assert_eq!(read_back(&seal, &idk, &store, &pack), want);
    assert_eq!(pack.entries[0].offset, pack.entries[2].offset, "one frame");
    assert!(!pack.entries[0].is_single() && pack.entries[3].is_single());

    let (salt, entries) = read_header(&store, &seal, &pack.name).unwrap();
    let sealed = &pack.bytes().unwrap()[entries[0].offset as usize..][..entries[0].length as usize];
    let frame = open_frame(&seal, &pack.name, &salt, &entries[0], sealed).unwrap();
    let mut shifted = entries[0];
    shifted.frame_offset += 1;
    let err = blob_in_frame(&idk, &pack.name, &shifted, &frame).unwrap_err();
    assert!(err.to_string().contains("does not match its id"), "{err}");
    let mut outside = entries[2];
    outside.frame_offset = frame.len() as u32 - 10;
    let err = blob_in_frame(&idk, &pack.name, &outside, &frame).unwrap_err();
    assert!(err.to_string().contains("outside its frame"), "{err}");
    // A frame that claims more plaintext than it has fails; so does one that claims less.
    for frame_length in [entries[0].frame_length + 1, entries[0].frame_length - 1] {
        let mut lying = entries[0];
        lying.frame_length = frame_length;
        assert!(open_frame(&seal, &pack.name, &salt, &lying, sealed).is_err());
    }
}

#[test]
#[should_panic(expected = "one blob per frame")]
fn version_1_packs_refuse_shared_frames() {
    let members = [
        FrameMember {
            id: BlobId([1; 32]),
            frame_offset: 0,
            raw_length: 1,
        },
        FrameMember {
            id: BlobId([2; 32]),
            frame_offset: 1,
            raw_length: 1,
        },
    ];
    let _ = PackWriter::new(&[0; 32], PACK_VERSION_1).add_frame(
        BlobKind::Data,
        &members,
        2,
        false,
        b"ab",
    );
}

#[test]
fn unknown_pack_versions_are_refused() {
    let seal = [3u8; 32];
    let pack = PackWriter::new(&seal, PACK_VERSION_2).finish().unwrap();
    let mut bytes = pack.bytes().unwrap().to_vec();
    bytes[4] = 9;
    let (_dir, store) = store();
    store.write(ObjectKind::Pack, &pack.name, &bytes).unwrap();
    let err = read_header(&store, &seal, &pack.name).unwrap_err();
    assert!(err.to_string().contains("unknown pack version 9"), "{err}");
}

/// A pack written frame by frame into a staged object stores under the hash of its bytes and
/// reads back like one built in memory; the temporary file is gone afterwards.
#[test]
fn staged_packs_store_under_their_hash() {
    let seal = [8u8; 32];
    let idk = IdKeys::new(&[9u8; 32]);
    let (dir, store) = store();
    let staged = store.stage(ObjectKind::Pack).unwrap();
    let mut writer = PackWriter::staged(&seal, PACK_VERSION_2, staged).unwrap();
    let blobs: Vec<Vec<u8>> = vec![vec![1u8; 70_000], b"second".to_vec()];
    for b in &blobs {
        writer
            .add(BlobKind::Data, idk.id(BlobKind::Data, b), b.len(), false, b)
            .unwrap();
    }
    let pack = writer.finish().unwrap();
    let PackContent::Staged(staged) = pack.content else {
        panic!("a staged writer gives a staged pack");
    };
    let temp = staged.path().unwrap().to_path_buf();
    store
        .write_staged(ObjectKind::Pack, &pack.name, staged)
        .unwrap();
    assert!(!temp.exists(), "the temporary file is gone");
    let bytes = store.read(ObjectKind::Pack, &pack.name).unwrap();
    assert_eq!(pack_name(&bytes), pack.name);
    let (salt, entries) = read_header(&store, &seal, &pack.name).unwrap();
    assert_eq!(entries, pack.entries);
    for (entry, want) in entries.iter().zip(&blobs) {
        let sealed = &bytes[entry.offset as usize..][..entry.length as usize];
        let frame = open_frame(&seal, &pack.name, &salt, entry, sealed).unwrap();
        assert_eq!(
            blob_in_frame(&idk, &pack.name, entry, &frame).unwrap(),
            &want[..]
        );
    }
    drop(dir);
}
