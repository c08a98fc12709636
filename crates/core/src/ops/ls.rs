//! Listing what a snapshot holds under a path.

use super::walk::{Located, TreeWalker};
use crate::error::Result;
use crate::index::Index;
use crate::repository::Repository;
use crate::tree::Node;

/// Visits the entry `located` names (a file) or everything below it (a directory), in order.
pub fn ls(
    repo: &Repository,
    index: &Index,
    located: &Located,
    recursive: bool,
    visit: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
) -> Result<()> {
    match located {
        Located::Node { path, node } if node.subtree.is_none() => visit(path, node),
        _ => {
            let Some(tree) = located.subtree() else {
                return Ok(());
            };
            let base = located.path();
            TreeWalker::new(repo, index).walk(tree, &base, &mut |path, node| {
                visit(path, node)?;
                Ok(recursive)
            })
        }
    }
}
