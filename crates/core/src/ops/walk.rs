//! Walking a snapshot's trees depth-first, and finding a path inside one.

use crate::blob::BlobId;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind, Tree};

/// Paths inside a snapshot are byte strings starting with `/`.
pub type SnapshotPath = Vec<u8>;

pub fn join(dir: &[u8], name: &[u8]) -> SnapshotPath {
    let mut p = dir.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Splits `/a/b/c` into its components, refusing `..` so a user-given path stays inside.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(Error::InvalidInput(format!(
                    "path {:?} may not contain ..",
                    String::from_utf8_lossy(path)
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// What a path in a snapshot names: the root (a tree with no node of its own) or a node.
#[derive(Clone, Debug)]
pub enum Located {
    Root(BlobId),
    Node { path: SnapshotPath, node: Box<Node> },
}

impl Located {
    pub fn subtree(&self) -> Option<BlobId> {
        match self {
            Located::Root(id) => Some(*id),
            Located::Node { node, .. } => node.subtree,
        }
    }

    pub fn path(&self) -> SnapshotPath {
        match self {
            Located::Root(_) => b"/".to_vec(),
            Located::Node { path, .. } => path.clone(),
        }
    }
}

pub fn locate(
    repo: &Repository,
    index: &Index,
    root: BlobId,
    path: &[u8],
    snapshot: &str,
) -> Result<Located> {
    let parts = components(path)?;
    let mut current = Located::Root(root);
    for part in parts {
        let not_found = || Error::PathNotFound {
            snapshot: snapshot.to_string(),
            path: String::from_utf8_lossy(path).into_owned(),
        };
        let tree_id = current.subtree().ok_or_else(not_found)?;
        let tree = repo.load_tree(index, &tree_id)?;
        let node = tree.find(part).ok_or_else(not_found)?.clone();
        current = Located::Node {
            path: join(&current.path(), part),
            node: Box::new(node),
        };
    }
    Ok(current)
}

/// Calls `visit(path, node)` for every node under `tree_id`, parents before children, in name
/// order. `visit` returns whether to descend into a directory.
pub struct TreeWalker<'a> {
    repo: &'a Repository,
    index: &'a Index,
}

impl<'a> TreeWalker<'a> {
    pub fn new(repo: &'a Repository, index: &'a Index) -> Self {
        TreeWalker { repo, index }
    }

    pub fn walk(
        &self,
        tree_id: BlobId,
        dir: &[u8],
        visit: &mut dyn FnMut(&[u8], &Node) -> Result<bool>,
    ) -> Result<()> {
        let tree: Tree = self.repo.load_tree(self.index, &tree_id)?;
        for node in &tree.nodes {
            let path = join(dir, &node.name);
            let descend = visit(&path, node)?;
            if descend && node.kind == NodeKind::Dir {
                if let Some(sub) = node.subtree {
                    self.walk(sub, &path, visit)?;
                }
            }
        }
        Ok(())
    }
}
