use super::*;
use crate::blob::IdKeys;
use crate::storage::{LocalStorage, ObjectKind, Storage};

#[test]
fn pack_round_trip_and_header() {
    let seal = [3u8; 32];
    let idk = IdKeys::new(&[4u8; 32]);
    let mut writer = PackWriter::new(&seal);
    let blobs: Vec<Vec<u8>> = vec![b"alpha".to_vec(), vec![9u8; 5000], b"".to_vec()];
    for b in &blobs {
        let id = idk.id(BlobKind::Data, b);
        writer.add(BlobKind::Data, id, b.len(), false, b);
    }
    let pack = writer.finish();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStorage::new(dir.path());
    store.create().unwrap();
    store
        .write(ObjectKind::Pack, &pack.name, &pack.bytes)
        .unwrap();
    let (salt, entries) = read_header(&store, &seal, &pack.name).unwrap();
    assert_eq!(entries, pack.entries);
    for (entry, want) in entries.iter().zip(&blobs) {
        let sealed = &pack.bytes[entry.offset as usize..(entry.offset + entry.length) as usize];
        let plain = open_blob(&seal, &idk, &pack.name, &salt, entry, sealed).unwrap();
        assert_eq!(&plain, want);
    }
    // The kind is authenticated: a data blob cannot be read as a tree.
    let mut as_tree = entries[0];
    as_tree.kind = BlobKind::Tree;
    let sealed = &pack.bytes[as_tree.offset as usize..(as_tree.offset + as_tree.length) as usize];
    assert!(open_blob(&seal, &idk, &pack.name, &salt, &as_tree, sealed).is_err());
}
