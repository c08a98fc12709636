//! Writing one file's content, or a directory as a tar stream, to any writer.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::content::{frame_units, UnitReader};
use super::walk::{Located, TreeWalker};
use std::collections::HashSet;

use crate::blob::{BlobId, BlobKind};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind};

/// Streams a file's blobs in order, one blob in memory at a time.
struct ContentReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    ids: &'a [BlobId],
    current: Vec<u8>,
    pos: usize,
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            let Some((id, rest)) = self.ids.split_first() else {
                return Ok(0);
            };
            self.current = self
                .repo
                .read_blob(self.index, id)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            self.pos = 0;
            self.ids = rest;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn write_file(repo: &Repository, index: &Index, node: &Node, out: &mut dyn Write) -> Result<()> {
    for_each_blob_in_order(repo, index, &node.content, |data| {
        out.write_all(data).map_err(|e| Error::io("<output>", e))
    })
}

/// Reads, authenticates and decompresses `ids` on every core, handing the contents to `f` in
/// order. The blobs are read in units of one frame ([`frame_units`]) by one reader per core,
/// each taking the next unit from a shared counter when it is free: frames differ in size
/// (chunks of 0.5 to 8 MiB), and readers given units in turn waited for each other at every
/// pair. The calling thread only writes, in order. A reader takes a buffer before it takes a
/// unit and has at most [`READER_BUFFERS`], given back once `f` is done with them, so memory
/// stays at a few frames however long the file, and no blob pays for a fresh buffer.
pub fn for_each_blob_in_order(
    repo: &Repository,
    index: &Index,
    ids: &[BlobId],
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let units = frame_units(index, ids);
    let readers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(units.len())
        .max(1);
    if readers == 1 {
        let (mut reader, mut frame) = (UnitReader::default(), Vec::new());
        for unit in units {
            for blob in reader.read(repo, index, ids, unit, &mut frame)? {
                f(&frame[blob])?;
            }
        }
        return Ok(());
    }
    let units = &units;
    let next_unit = &AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (done_tx, done) = crossbeam_channel::bounded::<ReadUnit>(READER_BUFFERS * readers);
        let give_backs: Vec<_> = (0..readers)
            .map(|reader_number| {
                let (give_back, returned) = crossbeam_channel::bounded::<Vec<u8>>(READER_BUFFERS);
                let done_tx = done_tx.clone();
                scope.spawn(move || {
                    let mut reader = UnitReader::default();
                    let mut new_buffers = READER_BUFFERS;
                    loop {
                        let mut frame = match returned.try_recv() {
                            Ok(frame) => frame,
                            Err(_) if new_buffers > 0 => {
                                new_buffers -= 1;
                                Vec::new()
                            }
                            // Every buffer is waiting to be written; a closed channel means
                            // the writer stopped.
                            Err(_) => match returned.recv() {
                                Ok(frame) => frame,
                                Err(_) => return,
                            },
                        };
                        let k = next_unit.fetch_add(1, Ordering::Relaxed);
                        let Some(unit) = units.get(k) else { return };
                        let read = reader
                            .read(repo, index, ids, unit.clone(), &mut frame)
                            .map(|blobs| (frame, blobs));
                        let failed = read.is_err();
                        if done_tx.send((k, reader_number, read)).is_err() || failed {
                            return;
                        }
                    }
                });
                give_back
            })
            .collect();
        drop(done_tx);
        // Units read ahead of the one to write next.
        let mut ahead: BTreeMap<usize, (usize, Result<ReadFrame>)> = BTreeMap::new();
        for write_next in 0..units.len() {
            let (reader_number, read) = loop {
                if let Some(read) = ahead.remove(&write_next) {
                    break read;
                }
                let (k, reader_number, read) = done
                    .recv()
                    .map_err(|_| Error::InvalidInput("blob reader stopped".into()))?;
                ahead.insert(k, (reader_number, read));
            };
            let (buffer, blobs) = read?;
            for blob in blobs {
                f(&buffer[blob])?;
            }
            // The reader may have run out of units and ended.
            let _ = give_backs[reader_number].try_send(buffer);
        }
        Ok(())
    })
}

/// Buffers each reader of [`for_each_blob_in_order`] may fill before the first is written.
const READER_BUFFERS: usize = 2;

/// A unit's frame, and where each of its blobs lies in it.
type ReadFrame = (Vec<u8>, Vec<Range<usize>>);

/// A unit's number, the reader that read it, and its frame and blobs.
type ReadUnit = (usize, usize, Result<ReadFrame>);

fn tar_header(node: &Node, entry_type: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(node.mode);
    header.set_uid(node.uid as u64);
    header.set_gid(node.gid as u64);
    header.set_mtime(node.mtime_sec.max(0) as u64);
    header.set_size(size);
    if let Some(u) = &node.user {
        let _ = header.set_username(u);
    }
    if let Some(g) = &node.group {
        let _ = header.set_groupname(g);
    }
    header
}

fn write_tar(
    repo: &Repository,
    index: &Index,
    located: &Located,
    out: &mut dyn Write,
) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    let base = located.path();
    let strip = if base == b"/" {
        1
    } else {
        base.len() - located_name_len(located)
    };
    let tar_err = |e: io::Error| Error::io("<tar output>", e);
    let tree = located
        .subtree()
        .ok_or_else(|| Error::InvalidInput("not a directory".into()))?;
    if let Located::Node { node, .. } = located {
        let mut h = tar_header(node, tar::EntryType::Directory, 0);
        builder
            .append_data(&mut h, dir_name(&node.name), io::empty())
            .map_err(tar_err)?;
    }
    TreeWalker::new(repo, index).walk(tree, &base, &mut |path, node| {
        let rel = Path::new(OsStr::from_bytes(&path[strip..]));
        match node.kind {
            NodeKind::Dir => {
                let mut h = tar_header(node, tar::EntryType::Directory, 0);
                builder
                    .append_data(&mut h, dir_name(&path[strip..]), io::empty())
                    .map_err(tar_err)?;
            }
            NodeKind::File => {
                let mut h = tar_header(node, tar::EntryType::Regular, node.size);
                let reader = ContentReader {
                    repo,
                    index,
                    ids: &node.content,
                    current: Vec::new(),
                    pos: 0,
                };
                builder.append_data(&mut h, rel, reader).map_err(tar_err)?;
            }
            NodeKind::Symlink => {
                let mut h = tar_header(node, tar::EntryType::Symlink, 0);
                builder
                    .append_link(&mut h, rel, Path::new(OsStr::from_bytes(&node.link_target)))
                    .map_err(tar_err)?;
            }
            _ => {}
        }
        Ok(true)
    })?;
    builder.finish().map_err(tar_err)
}

/// Directory entries end in `/`, as tar(1) writes them.
fn dir_name(path: &[u8]) -> std::path::PathBuf {
    let mut name = path.to_vec();
    name.push(b'/');
    std::path::PathBuf::from(OsStr::from_bytes(&name))
}

fn located_name_len(located: &Located) -> usize {
    match located {
        Located::Root(_) => 0,
        Located::Node { node, .. } => node.name.len(),
    }
}

/// The index a dump of `located` needs: the trees (`trees`, as [`Repository::load_tree_index`]
/// gives them) and the data blobs of the files it writes, so that dumping one file of a large
/// repository does not hold the location of every blob in it.
pub fn index_for(repo: &Repository, trees: &Index, located: &Located) -> Result<Index> {
    let mut needed: HashSet<BlobId> = HashSet::new();
    match located {
        Located::Node { node, .. } if node.kind != NodeKind::Dir => {
            needed.extend(node.content.iter().copied());
            return repo.load_index_where(|e| needed.contains(&e.id));
        }
        _ => {
            if let Some(tree) = located.subtree() {
                TreeWalker::new(repo, trees).walk(tree, b"", &mut |_, node| {
                    needed.extend(node.content.iter().copied());
                    Ok(true)
                })?;
            }
        }
    }
    repo.load_index_where(|e| e.kind == BlobKind::Tree || needed.contains(&e.id))
}

/// A file goes out as its bytes; a directory (or the snapshot root) as a tar archive.
pub fn dump(
    repo: &Repository,
    index: &Index,
    located: &Located,
    out: &mut dyn Write,
) -> Result<()> {
    match located {
        Located::Node { node, .. } if node.kind == NodeKind::File => {
            write_file(repo, index, node, out)
        }
        Located::Node { node, .. } if node.kind != NodeKind::Dir => {
            Err(Error::InvalidInput(format!(
                "{} is a {}, not a file or directory",
                node.name_lossy(),
                node.kind.as_str()
            )))
        }
        _ => write_tar(repo, index, located, out),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::kdf::KdfParams;
    use crate::ops::backup::{backup, BackupOptions, BackupProgress, BackupSource};
    use crate::ops::walk::locate;
    use crate::repository::InitOptions;
    use crate::storage::LocalStorage;

    /// A repository with one backup of `files` (name, bytes) under `src`.
    fn backed_up(
        dir: &Path,
        files: &[(&str, Vec<u8>)],
    ) -> (Repository, crate::blob::BlobId, std::path::PathBuf) {
        let src = dir.join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        for (name, bytes) in files {
            std::fs::write(src.join(name), bytes).expect("write");
        }
        let options = InitOptions {
            kdf: KdfParams::generated_key(),
            ..InitOptions::default()
        };
        let storage = Arc::new(LocalStorage::new(dir.join("repo")));
        let repo = Repository::init(storage, &[b'a'; 64], options).expect("init");
        let done = backup(
            &repo,
            BackupOptions::new(BackupSource::Paths(vec![src.clone()])),
            &BackupProgress::default(),
        )
        .expect("backup");
        (repo, done.snapshot.tree, src)
    }

    /// Bytes no compressor shrinks, in chunks of every size the chunker makes.
    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// A backup of one 40 MiB file of noise: the repository, its whole index, the file found
    /// in the snapshot, and the file's bytes.
    fn one_big_file(dir: &Path) -> (Repository, Index, Located, Vec<u8>) {
        let bytes = noise(40 << 20);
        let (repo, tree, src) = backed_up(dir, &[("big", bytes.clone())]);
        let index = repo.load_index().expect("index");
        let located = locate(
            &repo,
            &index,
            tree,
            src.join("big").as_os_str().as_bytes(),
            "s",
        )
        .expect("located");
        (repo, index, located, bytes)
    }

    #[test]
    fn a_file_of_many_frames_comes_out_whole_and_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (repo, index, located, bytes) = one_big_file(dir.path());
        let Located::Node { node, .. } = &located else {
            panic!("a file")
        };
        assert!(
            frame_units(&index, &node.content).len() >= 20,
            "enough units for every thread to take several"
        );
        let mut out = Vec::new();
        dump(&repo, &index, &located, &mut out).expect("dump");
        assert!(out == bytes, "the file's bytes, in order");
    }

    #[test]
    fn a_damaged_frame_in_the_middle_fails_the_dump_and_stops_every_reader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (repo, index, located, _) = one_big_file(dir.path());
        let Located::Node { node, .. } = &located else {
            panic!("a file")
        };
        let damaged = node.content[node.content.len() / 2];
        let loc = index.get(&damaged).expect("indexed");
        let name = &index.pack(loc.pack).name;
        let pack = dir.path().join("repo/data").join(&name[..2]).join(name);
        let mut stored = std::fs::read(&pack).expect("pack");
        stored[loc.offset as usize + loc.length as usize / 2] ^= 0x5a;
        std::fs::write(&pack, stored).expect("damage");
        let mut out = Vec::new();
        let err = dump(&repo, &index, &located, &mut out).expect_err("a damaged frame");
        assert!(
            matches!(err, Error::Integrity { .. }),
            "an integrity error, not {err:?}"
        );
        assert!(
            out.len() < 40 << 20,
            "the file is not written past the damage"
        );
    }

    #[test]
    fn a_dump_loads_the_index_of_what_it_writes_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        for i in 0..20u8 {
            std::fs::write(src.join(format!("f{i}")), vec![i; 1000 + i as usize]).expect("write");
        }
        std::fs::write(src.join("sub/one"), b"the file dumped".repeat(100)).expect("write");
        let options = InitOptions {
            kdf: KdfParams::generated_key(),
            ..InitOptions::default()
        };
        let storage = Arc::new(LocalStorage::new(dir.path().join("repo")));
        let repo = Repository::init(storage, &[b'a'; 64], options).expect("init");
        let done = backup(
            &repo,
            BackupOptions::new(BackupSource::Paths(vec![src.clone()])),
            &BackupProgress::default(),
        )
        .expect("backup");
        let full = repo.load_index().expect("index");
        let trees = repo.load_tree_index().expect("trees");
        assert!(trees.iter().all(|(_, loc)| loc.kind == BlobKind::Tree));
        assert!(trees.blob_count() < full.blob_count());

        let path = src.join("sub/one");
        let located = locate(
            &repo,
            &trees,
            done.snapshot.tree,
            path.as_os_str().as_bytes(),
            "s",
        )
        .expect("located");
        let file_index = index_for(&repo, &trees, &located).expect("index for a file");
        assert_eq!(
            file_index.blob_count(),
            1,
            "the file's one blob, nothing else"
        );
        let mut out = Vec::new();
        dump(&repo, &file_index, &located, &mut out).expect("dump");
        assert_eq!(out, b"the file dumped".repeat(100));

        let dir_located = locate(
            &repo,
            &trees,
            done.snapshot.tree,
            src.as_os_str().as_bytes(),
            "s",
        )
        .expect("located");
        let dir_index = index_for(&repo, &trees, &dir_located).expect("index for a directory");
        assert_eq!(
            dir_index.blob_count(),
            full.blob_count(),
            "everything under it"
        );
    }
}
