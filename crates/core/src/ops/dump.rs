//! Writing one file's content, or a directory as a tar stream, to any writer.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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
/// order. The blobs are read in units of one frame ([`frame_units`]). With `n` cores, the
/// calling thread reads every `n`-th unit itself and `n - 1` helpers read the others (unit `k`
/// by helper `k % n - 1`): on a machine as busy as it has cores, no thread sits waiting to be
/// woken for each hand-over, which is what a consumer that only writes would do. A helper keeps
/// at most one finished unit waiting and gets its buffer back once `f` is done with it, so
/// memory stays at a few frames however long the file, and no blob pays for a fresh buffer.
pub fn for_each_blob_in_order(
    repo: &Repository,
    index: &Index,
    ids: &[BlobId],
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let units = frame_units(index, ids);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(units.len())
        .max(1);
    let (mut reader, mut frame) = (UnitReader::default(), Vec::new());
    let mut read_here = |unit: Range<usize>, f: &mut dyn FnMut(&[u8]) -> Result<()>| {
        for blob in reader.read(repo, index, ids, unit, &mut frame)? {
            f(&frame[blob])?;
        }
        Ok::<(), Error>(())
    };
    if threads == 1 {
        for unit in units {
            read_here(unit, &mut f)?;
        }
        return Ok(());
    }
    let units = &units;
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .map(|first| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                // Two buffers circulate per helper: one being filled, one waiting or in `f`.
                let (give_back, returned) = crossbeam_channel::bounded::<Vec<u8>>(2);
                scope.spawn(move || {
                    let mut reader = UnitReader::default();
                    for unit in units.iter().skip(first).step_by(threads) {
                        let mut frame = returned.try_recv().unwrap_or_default();
                        let read = reader
                            .read(repo, index, ids, unit.clone(), &mut frame)
                            .map(|blobs| (frame, blobs));
                        let failed = read.is_err();
                        // A closed channel means the consumer stopped: stop too.
                        if tx.send(read).is_err() || failed {
                            return;
                        }
                    }
                });
                (rx, give_back)
            })
            .collect();
        for (k, unit) in units.iter().enumerate() {
            let Some((read, give_back)) = (k % threads).checked_sub(1).map(|h| &helpers[h]) else {
                read_here(unit.clone(), &mut f)?;
                continue;
            };
            let (frame, blobs) = read
                .recv()
                .map_err(|_| Error::InvalidInput("blob reader stopped".into()))??;
            for blob in blobs {
                f(&frame[blob])?;
            }
            let _ = give_back.try_send(frame);
        }
        Ok(())
    })
}

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
