//! Putting a node's metadata back on a restored entry: owner first (it clears set-id bits),
//! then xattrs, then mode, then times last (everything before changes them).

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use filetime::FileTime;

use crate::tree::{Node, NodeKind};

/// The same as [`apply`] for a regular file still open for writing, through its descriptor:
/// no path lookups, and nothing can swap the file under us between the calls.
pub fn apply_to_file(file: &File, node: &Node, as_root: bool) -> Result<(), String> {
    use xattr::FileExt as _;
    let mut problems = Vec::new();
    if as_root {
        if let Err(e) = std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid)) {
            problems.push(format!("owner: {e}"));
        }
    }
    for x in &node.xattrs {
        if let Err(e) = file.set_xattr(OsStr::from_bytes(&x.name), &x.value) {
            problems.push(format!("xattr {}: {e}", String::from_utf8_lossy(&x.name)));
        }
    }
    if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(node.mode)) {
        problems.push(format!("mode: {e}"));
    }
    let mtime = FileTime::from_unix_time(node.mtime_sec, node.mtime_nsec);
    if let Err(e) = filetime::set_file_handle_times(file, Some(mtime), Some(mtime)) {
        problems.push(format!("times: {e}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

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
