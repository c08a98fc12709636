//! Turning what `lstat` says about a file into a tree node.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use compact_str::CompactString;

use crate::tree::{Node, NodeKind, Xattr};

fn kind_of(meta: &Metadata) -> NodeKind {
    let t = meta.file_type();
    if t.is_dir() {
        NodeKind::Dir
    } else if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_fifo() {
        NodeKind::Fifo
    } else if t.is_char_device() {
        NodeKind::CharDevice
    } else if t.is_block_device() {
        NodeKind::BlockDevice
    } else if t.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// Caches uid and gid lookups: a tree of 100k files has a handful of owners.
#[derive(Default)]
pub struct OwnerNames {
    users: HashMap<u32, Option<CompactString>>,
    groups: HashMap<u32, Option<CompactString>>,
}

impl OwnerNames {
    fn user(&mut self, uid: u32) -> Option<CompactString> {
        self.users
            .entry(uid)
            .or_insert_with(|| crate::host::user_name(uid).map(CompactString::from))
            .clone()
    }
    fn group(&mut self, gid: u32) -> Option<CompactString> {
        self.groups
            .entry(gid)
            .or_insert_with(|| crate::host::group_name(gid).map(CompactString::from))
            .clone()
    }
}

/// Only the `user.` namespace: the others need privileges or belong to the filesystem.
pub fn user_xattrs(path: &Path) -> Vec<Xattr> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<Xattr> = names
        .filter(|n| n.as_bytes().starts_with(b"user."))
        .filter_map(|n| {
            let value = xattr::get(path, &n).ok()??;
            Some(Xattr {
                name: n.as_bytes().to_vec(),
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The node `lstat` describes, with its extended attributes read.
pub fn node_from_metadata(
    name: &[u8],
    path: &Path,
    meta: &Metadata,
    owners: &mut OwnerNames,
) -> Node {
    let mut node = node_without_xattrs(name, path, meta, owners);
    node.xattrs = user_xattrs(path);
    node
}

/// The node `lstat` describes, extended attributes left empty: an unchanged file takes them
/// from its previous node (changing an attribute changes the ctime), saving a syscall per file.
pub fn node_without_xattrs(
    name: &[u8],
    path: &Path,
    meta: &Metadata,
    owners: &mut OwnerNames,
) -> Node {
    let kind = kind_of(meta);
    let mut node = Node::empty(kind);
    node.name = name.to_vec();
    node.mode = meta.mode() & 0o7777;
    node.uid = meta.uid();
    node.gid = meta.gid();
    node.user = owners.user(meta.uid());
    node.group = owners.group(meta.gid());
    node.mtime_sec = meta.mtime();
    node.mtime_nsec = meta.mtime_nsec() as u32;
    node.ctime_sec = meta.ctime();
    node.ctime_nsec = meta.ctime_nsec() as u32;
    node.device = meta.dev();
    node.inode = meta.ino();
    node.links = meta.nlink();
    node.rdev = meta.rdev();
    node.size = if kind == NodeKind::File {
        meta.len()
    } else {
        0
    };
    if kind == NodeKind::Symlink {
        if let Ok(target) = std::fs::read_link(path) {
            node.link_target = target.as_os_str().as_bytes().to_vec();
        }
    }
    node
}
