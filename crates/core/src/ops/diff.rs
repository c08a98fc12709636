//! Differences between two snapshots, skipping every subtree whose id is the same.

use serde::Serialize;

use super::walk::join;
use crate::blob::BlobId;
use crate::error::Result;
use crate::index::Index;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind, Tree};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Change {
    /// Only in the second snapshot.
    Added,
    /// Only in the first.
    Removed,
    /// Content (or symlink target) differs.
    Modified,
    /// Same content, other metadata (mode, owner, times, xattrs).
    Metadata,
    /// Same name, another kind of entry.
    TypeChanged,
}

impl Change {
    pub fn symbol(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Metadata => 'U',
            Change::TypeChanged => 'T',
        }
    }
}

#[derive(Clone, Debug)]
pub struct DiffEntry {
    pub change: Change,
    pub path: Vec<u8>,
    pub kind: NodeKind,
}

fn metadata_differs(a: &Node, b: &Node) -> bool {
    a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.mtime_sec != b.mtime_sec
        || a.mtime_nsec != b.mtime_nsec
        || a.xattrs != b.xattrs
}

struct Differ<'a> {
    repo: &'a Repository,
    index: &'a Index,
    out: &'a mut dyn FnMut(DiffEntry) -> Result<()>,
}

impl Differ<'_> {
    fn load(&self, id: Option<BlobId>) -> Result<Tree> {
        match id {
            Some(id) => self.repo.load_tree(self.index, &id),
            None => Ok(Tree::default()),
        }
    }

    /// Reports `node` and, for a directory, everything under it.
    fn all(&mut self, change: Change, path: Vec<u8>, node: &Node) -> Result<()> {
        (self.out)(DiffEntry {
            change,
            path: path.clone(),
            kind: node.kind,
        })?;
        if node.kind == NodeKind::Dir {
            for child in self.load(node.subtree)?.nodes {
                self.all(change, join(&path, &child.name), &child)?;
            }
        }
        Ok(())
    }

    fn trees(&mut self, a: Option<BlobId>, b: Option<BlobId>, dir: &[u8]) -> Result<()> {
        if a == b {
            return Ok(());
        }
        let (left, right) = (self.load(a)?, self.load(b)?);
        let (mut i, mut j) = (0, 0);
        while i < left.nodes.len() || j < right.nodes.len() {
            let order = match (left.nodes.get(i), right.nodes.get(j)) {
                (Some(l), Some(r)) => l.name.cmp(&r.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let l = &left.nodes[i];
                    self.all(Change::Removed, join(dir, &l.name), l)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let r = &right.nodes[j];
                    self.all(Change::Added, join(dir, &r.name), r)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    self.nodes(
                        &left.nodes[i],
                        &right.nodes[j],
                        join(dir, &left.nodes[i].name),
                    )?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    fn nodes(&mut self, l: &Node, r: &Node, path: Vec<u8>) -> Result<()> {
        if l.kind != r.kind {
            return (self.out)(DiffEntry {
                change: Change::TypeChanged,
                path,
                kind: r.kind,
            });
        }
        let content_differs =
            l.content != r.content || l.link_target != r.link_target || l.rdev != r.rdev;
        let change = if l.kind != NodeKind::Dir && content_differs {
            Some(Change::Modified)
        } else if metadata_differs(l, r) {
            Some(Change::Metadata)
        } else {
            None
        };
        if let Some(change) = change {
            (self.out)(DiffEntry {
                change,
                path: path.clone(),
                kind: r.kind,
            })?;
        }
        if l.kind == NodeKind::Dir {
            self.trees(l.subtree, r.subtree, &path)?;
        }
        Ok(())
    }
}

/// Calls `out` for every difference between the trees `a` and `b`, in path order.
pub fn diff(
    repo: &Repository,
    index: &Index,
    a: BlobId,
    b: BlobId,
    out: &mut dyn FnMut(DiffEntry) -> Result<()>,
) -> Result<()> {
    Differ { repo, index, out }.trees(Some(a), Some(b), b"/")
}
