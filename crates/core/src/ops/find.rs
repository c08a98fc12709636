//! Finding files by pattern across snapshots, newest first: a lost file's last good copy is
//! one command away.

use std::collections::HashMap;
use std::rc::Rc;

use super::walk::join;
use crate::blob::BlobId;
use crate::error::Result;
use crate::index::Index;
use crate::patterns::PathPatterns;
use crate::repository::Repository;
use crate::snapshot::SnapshotEntry;
use crate::tree::{Node, NodeKind};

pub struct FindMatch<'s> {
    pub snapshot: &'s SnapshotEntry,
    pub path: Vec<u8>,
    pub node: Node,
}

/// A glob under the rules of [`PathPatterns`]: with a `/` it matches the whole path in the
/// snapshot, without one the name alone.
pub struct FindPattern {
    patterns: PathPatterns,
    whole_path: bool,
}

impl FindPattern {
    pub fn new(pattern: &str) -> Result<FindPattern> {
        let patterns = PathPatterns::new(&[pattern.to_string()])?;
        let whole_path = patterns.has_path_patterns();
        Ok(FindPattern {
            patterns,
            whole_path,
        })
    }

    fn matches(&self, path: &[u8], name: &[u8]) -> bool {
        self.patterns.matches(path, name)
    }
}

type Matches = Rc<Vec<(Vec<u8>, Node)>>;

struct Finder<'a> {
    repo: &'a Repository,
    index: &'a Index,
    pattern: &'a FindPattern,
    /// Name patterns give the same matches for the same tree wherever it appears, so a tree
    /// shared by many snapshots is searched once.
    memo: HashMap<BlobId, Matches>,
}

impl Finder<'_> {
    /// Path-pattern search: the match depends on where the tree sits, so nothing is memoized.
    fn search(&mut self, tree: BlobId, dir: &[u8]) -> Result<Matches> {
        let listing = self.repo.load_tree(self.index, &tree)?;
        let mut out = Vec::new();
        for node in listing.nodes {
            let path = join(dir, &node.name);
            if self.pattern.matches(&path, &node.name) {
                out.push((path.clone(), node.clone()));
            }
            if node.kind == NodeKind::Dir {
                if let Some(sub) = node.subtree {
                    out.extend(self.search(sub, &path)?.iter().cloned());
                }
            }
        }
        Ok(Rc::new(out))
    }
}

pub fn find<'s>(
    repo: &Repository,
    index: &Index,
    snapshots: &'s [SnapshotEntry],
    pattern: &FindPattern,
) -> Result<Vec<FindMatch<'s>>> {
    let mut ordered: Vec<&SnapshotEntry> = snapshots.iter().collect();
    ordered.sort_by_key(|e| std::cmp::Reverse(e.snapshot.time));
    let mut finder = Finder {
        repo,
        index,
        pattern,
        memo: HashMap::new(),
    };
    let mut out = Vec::new();
    for snapshot in ordered {
        let root = snapshot.snapshot.tree;
        let found = if pattern.whole_path {
            finder.search(root, b"/")?
        } else {
            finder.search_rooted(root)?
        };
        for (path, node) in found.iter() {
            out.push(FindMatch {
                snapshot,
                path: path.clone(),
                node: node.clone(),
            });
        }
    }
    Ok(out)
}

impl Finder<'_> {
    /// Name-pattern search that keeps memoized subtrees relative and prefixes them on the way up.
    fn search_rooted(&mut self, tree: BlobId) -> Result<Matches> {
        self.search_relative(tree)
            .map(|m| Rc::new(m.iter().map(|(p, n)| (join(b"/", p), n.clone())).collect()))
    }

    fn search_relative(&mut self, tree: BlobId) -> Result<Matches> {
        if let Some(m) = self.memo.get(&tree) {
            return Ok(m.clone());
        }
        let listing = self.repo.load_tree(self.index, &tree)?;
        let mut out = Vec::new();
        for node in listing.nodes {
            if self.pattern.matches(&node.name, &node.name) {
                out.push((node.name.clone(), node.clone()));
            }
            if node.kind == NodeKind::Dir {
                if let Some(sub) = node.subtree {
                    for (p, n) in self.search_relative(sub)?.iter() {
                        let mut path = node.name.clone();
                        path.push(b'/');
                        path.extend_from_slice(p);
                        out.push((path, n.clone()));
                    }
                }
            }
        }
        let out = Rc::new(out);
        self.memo.insert(tree, out.clone());
        Ok(out)
    }
}
