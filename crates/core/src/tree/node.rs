use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::blob::BlobId;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::CharDevice => "chardev",
            NodeKind::BlockDevice => "blockdev",
            NodeKind::Socket => "socket",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission and special bits (the low 12 bits of st_mode).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Owner names: inline up to 24 bytes (every name in practice), so the nodes of a large
    /// tree cost no allocation for them, decoded or stat-ed.
    pub user: Option<CompactString>,
    pub group: Option<CompactString>,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
    pub device: u64,
    pub inode: u64,
    pub links: u64,
    pub rdev: u64,
    pub size: u64,
    pub content: Vec<BlobId>,
    pub subtree: Option<BlobId>,
    #[serde(with = "serde_bytes")]
    pub link_target: Vec<u8>,
    pub xattrs: Vec<Xattr>,
}

impl Node {
    pub fn empty(kind: NodeKind) -> Node {
        Node {
            name: Vec::new(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime_sec: 0,
            mtime_nsec: 0,
            ctime_sec: 0,
            ctime_nsec: 0,
            device: 0,
            inode: 0,
            links: 1,
            rdev: 0,
            size: 0,
            content: Vec::new(),
            subtree: None,
            link_target: Vec::new(),
            xattrs: Vec::new(),
        }
    }

    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    pub fn validate(&self, object: &str) -> Result<()> {
        if !super::is_safe_name(&self.name) {
            return Err(Error::UnsafeName {
                name: self.name_lossy(),
                context: object.to_string(),
            });
        }
        if self.mtime_nsec >= 1_000_000_000 || self.ctime_nsec >= 1_000_000_000 {
            return Err(Error::format(
                object,
                format!("{}: nanoseconds out of range", self.name_lossy()),
            ));
        }
        match self.kind {
            NodeKind::Dir if self.subtree.is_none() => Err(Error::format(
                object,
                format!("directory {} has no subtree", self.name_lossy()),
            )),
            NodeKind::File => Ok(()),
            _ if !self.content.is_empty() => Err(Error::format(
                object,
                format!("{} {} has content", self.kind.as_str(), self.name_lossy()),
            )),
            _ => Ok(()),
        }
    }

    /// Whether a file on disk with these stat values is the one this node recorded, so its
    /// content need not be read again.
    pub fn unchanged(&self, other: &Node) -> bool {
        self.kind == other.kind
            && self.size == other.size
            && self.mtime_sec == other.mtime_sec
            && self.mtime_nsec == other.mtime_nsec
            && self.ctime_sec == other.ctime_sec
            && self.ctime_nsec == other.ctime_nsec
            && self.inode == other.inode
            && self.device == other.device
    }
}
