//! Trees: one serialized directory listing per directory, stored as a tree blob. A node keeps
//! what a restore needs to bring the entry back exactly: type, mode, owner, times with
//! nanoseconds, user xattrs, content blob ids or subtree id, symlink target, and the inode
//! identity that lets hard links be restored as hard links. Names are raw bytes.

mod node;

pub use node::{Node, NodeKind, Xattr};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const TREE_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub version: u32,
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn new(mut nodes: Vec<Node>) -> Tree {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Tree {
            version: TREE_VERSION,
            nodes,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("tree serializes")
    }

    /// Parses and validates a tree: names must be safe and unique, so nothing read from a
    /// repository can make a restore climb out of its target.
    pub fn from_bytes(data: &[u8], object: &str) -> Result<Tree> {
        let mut tree: Tree = postcard::from_bytes(data).map_err(|e| Error::format(object, e))?;
        // The decoder grows the vector by doubling; a large directory's tree is held while
        // the directory is walked, and the slack would be up to half of it.
        tree.nodes.shrink_to_fit();
        if tree.version != TREE_VERSION {
            return Err(Error::format(
                object,
                format!("unknown tree version {}", tree.version),
            ));
        }
        for pair in tree.nodes.windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(Error::format(
                    object,
                    format!(
                        "names not sorted or duplicated near {:?}",
                        String::from_utf8_lossy(&pair[1].name)
                    ),
                ));
            }
        }
        for node in &tree.nodes {
            node.validate(object)?;
        }
        Ok(tree)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

/// A name is safe when it is one path component that names something inside its directory.
pub fn is_safe_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owner names became inline strings; trees written when they were `String`s must
    /// decode to the same names, and new trees encode to the same bytes.
    #[test]
    fn owner_names_keep_the_encoding_of_strings() {
        #[derive(Serialize)]
        struct Owners {
            user: Option<String>,
            group: Option<String>,
        }
        let long = "a-user-name-longer-than-twenty-four-bytes".to_string();
        let mut node = Node::empty(NodeKind::File);
        node.name = b"f".to_vec();
        node.user = Some("root".into());
        node.group = Some(long.as_str().into());
        let encoded = Tree::new(vec![node.clone()]).to_bytes();
        let decoded = Tree::from_bytes(&encoded, "test").expect("decodes");
        assert_eq!(decoded.nodes, vec![node]);
        let as_strings = postcard::to_allocvec(&Owners {
            user: Some("root".into()),
            group: Some(long),
        })
        .expect("encodes");
        let as_inline = postcard::to_allocvec(&(&decoded.nodes[0].user, &decoded.nodes[0].group))
            .expect("encodes");
        assert_eq!(as_strings, as_inline);
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in [&b".."[..], b".", b"", b"a/b", b"/etc", b"x\0y"] {
            let mut node = Node::empty(NodeKind::File);
            node.name = bad.to_vec();
            let bytes = Tree {
                version: TREE_VERSION,
                nodes: vec![node],
            }
            .to_bytes();
            assert!(Tree::from_bytes(&bytes, "t").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn duplicates_are_refused_and_non_utf8_kept() {
        let mut a = Node::empty(NodeKind::File);
        a.name = vec![0xff, 0xfe];
        let tree = Tree::new(vec![a.clone()]);
        assert_eq!(Tree::from_bytes(&tree.to_bytes(), "t").unwrap(), tree);
        let dup = Tree {
            version: TREE_VERSION,
            nodes: vec![a.clone(), a],
        };
        assert!(Tree::from_bytes(&dup.to_bytes(), "t").is_err());
    }
}
