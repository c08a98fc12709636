//! Putting a node's metadata back on a restored entry: owner first (it clears set-id bits),
//! then xattrs, then mode, then times last (everything before changes them).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use filetime::FileTime;

use crate::tree::{Node, NodeKind};

/// Problems setting metadata are reported, not fatal: the data is what matters most.
pub fn apply(path: &Path, node: &Node, as_root: bool) -> Result<(), String> {
    let mut problems = Vec::new();
    if as_root {
        if let Err(e) = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid)) {
            problems.push(format!("owner: {e}"));
        }
    }
    if node.kind != NodeKind::Symlink {
        // xattrs before the mode: a read-only mode would forbid setting them as non-root.
        for x in &node.xattrs {
            if let Err(e) = xattr::set(path, OsStr::from_bytes(&x.name), &x.value) {
                problems.push(format!("xattr {}: {e}", String::from_utf8_lossy(&x.name)));
            }
        }
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode)) {
            problems.push(format!("mode: {e}"));
        }
    }
    let mtime = FileTime::from_unix_time(node.mtime_sec, node.mtime_nsec);
    if let Err(e) = filetime::set_symlink_file_times(path, mtime, mtime) {
        problems.push(format!("times: {e}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
