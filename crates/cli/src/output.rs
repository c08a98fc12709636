//! Formatting for people and for machines.

use chrono::{DateTime, Local, TimeZone};
use lifeboat_core::snapshot::SnapshotEntry;
use lifeboat_core::tree::{Node, NodeKind};
use serde_json::{json, Value};

pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

pub fn snapshot_json(e: &SnapshotEntry) -> Value {
    let s = &e.snapshot;
    json!({
        "id": e.id,
        "short_id": e.short_id(),
        "time": s.time.to_rfc3339(),
        "host": s.hostname,
        "username": s.username,
        "paths": s.paths,
        "tags": s.tags,
        "source": s.source,
        "tree": s.tree.to_hex(),
        "parent": s.parent,
        "original": s.original,
        "previous": s.previous,
        "program_version": s.program_version,
        "summary": s.summary,
    })
}

pub fn mode_string(node: &Node) -> String {
    let kind = match node.kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
        NodeKind::File => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    for shift in [6, 3, 0] {
        let bits = (node.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

pub fn node_time(node: &Node) -> DateTime<Local> {
    Local
        .timestamp_opt(node.mtime_sec, node.mtime_nsec)
        .single()
        .unwrap_or_else(|| Local.timestamp_opt(0, 0).single().unwrap_or_default())
}

pub fn node_json(path: &[u8], node: &Node) -> Value {
    let mut v = json!({
        "path": String::from_utf8_lossy(path),
        "name": node.name_lossy(),
        "type": node.kind.as_str(),
        "mode": node.mode,
        "permissions": mode_string(node),
        "uid": node.uid,
        "gid": node.gid,
        "user": node.user,
        "group": node.group,
        "size": node.size,
        "mtime": node_time(node).to_rfc3339(),
    });
    if node.kind == NodeKind::Symlink {
        v["link_target"] = json!(String::from_utf8_lossy(&node.link_target));
    }
    if std::str::from_utf8(path).is_err() {
        v["path_bytes"] = json!(path);
    }
    v
}

pub fn node_long(path: &[u8], node: &Node) -> String {
    let owner = node
        .user
        .as_ref()
        .map_or_else(|| node.uid.to_string(), |u| u.to_string());
    let group = node
        .group
        .as_ref()
        .map_or_else(|| node.gid.to_string(), |g| g.to_string());
    let mut line = format!(
        "{} {:>8} {:>8} {:>10} {} {}",
        mode_string(node),
        owner,
        group,
        node.size,
        node_time(node).format("%Y-%m-%d %H:%M:%S"),
        String::from_utf8_lossy(path)
    );
    if node.kind == NodeKind::Symlink {
        line.push_str(" -> ");
        line.push_str(&String::from_utf8_lossy(&node.link_target));
    }
    line
}
