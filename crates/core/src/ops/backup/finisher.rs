//! The tree finisher: receives entries in walk order, waits for each file's content ids, and
//! writes one tree blob per directory as soon as the directory is complete (bottom-up).

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender};

use super::saver::{BlobJob, BlobSaver, SaveJob};
use super::source::FileResult;
use super::{BackupProgress, SourceError};
use crate::blob::{BlobId, BlobKind};
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::snapshot::Summary;
use crate::tree::{Node, Tree};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    New,
    Changed,
    Unmodified,
    /// Not a regular file: no content to compare.
    Other,
}

/// A file's content ids: none (not a file, or unchanged), already known (small files are
/// read by the walker itself), or still being read by a file worker.
pub enum Content {
    None,
    Ready(FileResult),
    Pending(Receiver<FileResult>),
}

pub enum Event {
    Entry {
        path: PathBuf,
        node: Node,
        content: Content,
        change: Change,
    },
    EnterDir {
        /// Entries listed: room for the directory's nodes, which a large directory would
        /// otherwise hold with up to as much again of slack.
        entries: usize,
    },
    LeaveDir {
        node: Node,
        /// The directory's tree in the parent snapshot, with its id.
        parent: Option<(BlobId, Tree)>,
    },
    Error(SourceError),
}

/// Stores a directory's tree blob unless the repository (or this run) has it already; returns
/// its id. Repair writes its trees through this too.
pub(crate) fn save_tree(
    repo: &Repository,
    saver: &BlobSaver,
    blobs: &Sender<SaveJob>,
    nodes: Vec<Node>,
) -> Result<BlobId> {
    let bytes = Tree::new(nodes).to_bytes();
    if bytes.len() > crate::pack::max_raw_length(BlobKind::Tree) {
        return Err(Error::InvalidInput(format!(
            "a directory listing of {} bytes exceeds the tree size limit; split the directory",
            bytes.len()
        )));
    }
    let id = repo.tree_id(&bytes);
    if saver.claim(BlobKind::Tree, id)
        && blobs
            .send(SaveJob::Blob(BlobJob {
                kind: BlobKind::Tree,
                id,
                data: bytes,
            }))
            .is_err()
    {
        return Err(saver
            .take_failure()
            .unwrap_or_else(|| Error::InvalidInput("backup pipeline stopped".into())));
    }
    Ok(id)
}

/// The parent snapshot's tree id for a directory whose nodes all came out as they were: the
/// same tree, so encoding and hashing it again would only find the id already stored. An id
/// the index no longer has is written again instead, like any tree.
fn unchanged_tree(
    saver: &BlobSaver,
    parent: Option<(BlobId, Tree)>,
    nodes: &[Node],
) -> Option<BlobId> {
    let (id, tree) = parent?;
    (tree.nodes == nodes && saver.known().trees().contains(&id)).then_some(id)
}

/// What the finisher made of the walk.
pub struct Finished {
    pub root: BlobId,
    pub summary: Summary,
    /// Entries left out: they could not be read.
    pub errors: Vec<SourceError>,
    /// Files stored that kept changing while they were read.
    pub warnings: Vec<SourceError>,
}

pub fn run(
    repo: &Repository,
    saver: &BlobSaver,
    events: Receiver<Vec<Event>>,
    blobs: Sender<SaveJob>,
    progress: &BackupProgress,
) -> Result<Finished> {
    let mut stack: Vec<Vec<Node>> = vec![Vec::new()];
    let mut summary = Summary::default();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for event in events.into_iter().flatten() {
        match event {
            Event::EnterDir { entries } => stack.push(Vec::with_capacity(entries)),
            Event::LeaveDir { mut node, parent } => {
                let nodes = stack
                    .pop()
                    .ok_or_else(|| Error::InvalidInput("unbalanced walk".into()))?;
                node.subtree = Some(match unchanged_tree(saver, parent, &nodes) {
                    Some(id) => id,
                    None => save_tree(repo, saver, &blobs, nodes)?,
                });
                summary.dirs += 1;
                stack
                    .last_mut()
                    .ok_or_else(|| Error::InvalidInput("unbalanced walk".into()))?
                    .push(node);
            }
            Event::Error(e) => {
                errors.push(e);
            }
            Event::Entry {
                path,
                mut node,
                content,
                change,
            } => {
                let result = match content {
                    Content::None => None,
                    Content::Ready(result) => Some(Ok(result)),
                    Content::Pending(reply) => Some(reply.recv()),
                };
                if let Some(result) = result {
                    match result {
                        Ok(Ok(file)) => {
                            if let Some(message) = file.changed {
                                warnings.push(SourceError {
                                    path: path.clone(),
                                    message,
                                });
                            }
                            summary.bytes_read += file.size;
                            node.size = file.size;
                            node.content = file.ids;
                        }
                        Ok(Err(message)) => {
                            errors.push(SourceError { path, message });
                            continue;
                        }
                        Err(_) => {
                            return Err(saver.take_failure().unwrap_or_else(|| {
                                Error::InvalidInput("file reader stopped".into())
                            }))
                        }
                    }
                }
                match change {
                    Change::New => summary.files_new += 1,
                    Change::Changed => summary.files_changed += 1,
                    Change::Unmodified => summary.files_unmodified += 1,
                    Change::Other => {}
                }
                if let Some(report) = &progress.on_file {
                    report(&path, change);
                }
                if change != Change::Other {
                    summary.total_files += 1;
                    summary.total_bytes += node.size;
                    progress.files_done.fetch_add(1, Ordering::Relaxed);
                    if change == Change::Unmodified {
                        // Files that were read counted their bytes chunk by chunk.
                        progress.bytes_done.fetch_add(node.size, Ordering::Relaxed);
                    }
                }
                stack
                    .last_mut()
                    .ok_or_else(|| Error::InvalidInput("unbalanced walk".into()))?
                    .push(node);
            }
        }
    }
    if stack.len() != 1 {
        return Err(saver
            .take_failure()
            .unwrap_or_else(|| Error::InvalidInput("walk ended early".into())));
    }
    let root_nodes = stack.pop().unwrap_or_default();
    let root = save_tree(repo, saver, &blobs, root_nodes)?;
    Ok(Finished {
        root,
        summary,
        errors,
        warnings,
    })
}
