//! Copying snapshots into another repository (another password, another place).
//!
//! Each snapshot's trees are walked in the source; every data blob the destination lacks is
//! read, authenticated and stored there, trees are stored bottom-up, and the snapshot is
//! written last, once every pack and index file it needs is durable (the write order of a
//! backup). A snapshot the destination already holds (same time, host, user, paths, tags and
//! source) is skipped, so a scheduled copy sends only what is new.
//!
//! When the destination shares the source's blob-id key and chunker (`init
//! --copy-chunker-params --from-repo`), blob and tree ids are the same in both, and a blob the
//! destination holds is recognised without reading it. Otherwise every blob is read to compute
//! its id under the destination's key; the chunks keep the source's boundaries, so they do not
//! deduplicate against what the destination's own backups chunked differently.

use std::collections::HashMap;

use crossbeam_channel::Sender;

use crate::blob::{BlobId, BlobKind};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::lock::LockKind;
use crate::ops::backup::{save_tree, with_blob_saver, BlobJob, BlobSaver, SaveJob};
use crate::repository::Repository;
use crate::snapshot::{Snapshot, SnapshotEntry};
use crate::tree::{Node, NodeKind};

#[derive(Clone, Debug, Default)]
pub struct CopyReport {
    /// Source snapshot id and the id of its copy.
    pub copied: Vec<(String, String)>,
    /// Source snapshots the destination already held.
    pub skipped: Vec<String>,
    pub blobs_stored: u64,
    /// Plaintext bytes of the blobs stored.
    pub bytes_stored: u64,
    /// Whether the two repositories share blob ids (no blob read to find out it is there).
    pub same_ids: bool,
    /// Packs an interrupted copy (or backup) into the destination left, indexed and reused.
    pub resumed: crate::ops::backup::Resumed,
}

/// What makes two snapshots the same backup, whichever repository holds them.
pub(crate) fn same_backup(a: &Snapshot, b: &Snapshot) -> bool {
    a.time == b.time
        && a.hostname == b.hostname
        && a.username == b.username
        && a.paths == b.paths
        && a.tags == b.tags
        && a.source == b.source
}

/// Copies `snapshots` (entries of `from`) into `to`, skipping those `to` already holds.
/// `all` is every snapshot of `from` (as `Repository::snapshots` lists them), to link the
/// copies to those an earlier run copied.
pub fn copy(
    from: &Repository,
    to: &Repository,
    all: &[SnapshotEntry],
    snapshots: &[SnapshotEntry],
) -> Result<CopyReport> {
    // Readers and writers both: a prune in either repository waits for this run.
    let _reading = from.lock(LockKind::Shared, "copy (source)")?;
    let writing = to.lock(LockKind::Shared, "copy")?;
    // A damaged snapshot in the destination cannot count as a copy: its source is copied again.
    let held = to.snapshot_listing()?.readable;
    let mut report = CopyReport {
        same_ids: from.keys().blob_id == to.keys().blob_id,
        ..CopyReport::default()
    };
    let mut todo: Vec<&SnapshotEntry> = snapshots
        .iter()
        .filter(|s| {
            let done = held.iter().any(|h| same_backup(&h.snapshot, &s.snapshot));
            if done {
                report.skipped.push(s.id.clone());
            }
            !done
        })
        .collect();
    if todo.is_empty() {
        return Ok(report);
    }
    // Oldest first, so that the snapshot a copy names as its previous is copied before it.
    todo.sort_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)));
    let index = from.load_index()?;
    // Before the destination's index is read: what an interrupted copy stored is reused.
    report.resumed = crate::ops::backup::resume::adopt_interrupted(to, &writing)?;
    let roots = with_blob_saver(to, Some(&writing), |saver, jobs| {
        let mut copier = Copier {
            from,
            to,
            index: &index,
            saver,
            jobs,
            same_ids: report.same_ids,
            trees: HashMap::new(),
            blobs: HashMap::new(),
            report: &mut report,
        };
        todo.iter()
            .map(|s| copier.tree(&s.snapshot.tree, &s.id))
            .collect::<Result<Vec<BlobId>>>()
    })?;
    // Every pack and index file the copies need is durable: now the snapshots.
    writing.ensure_held()?;
    // Source id -> id in the destination, of what this run copied and what was there before
    // (also copies of source snapshots not selected this time): `parent` and `previous`
    // name snapshots of the destination.
    let mut copied_ids: HashMap<&str, String> = all
        .iter()
        .filter_map(|s| {
            let held = held
                .iter()
                .find(|h| same_backup(&h.snapshot, &s.snapshot))?;
            Some((s.id.as_str(), held.id.clone()))
        })
        .collect();
    for (source, root) in todo.into_iter().zip(roots) {
        let in_destination =
            |id: &Option<String>| id.as_deref().and_then(|p| copied_ids.get(p).cloned());
        let snapshot = Snapshot {
            tree: root,
            parent: in_destination(&source.snapshot.parent),
            previous: in_destination(&source.snapshot.previous),
            ..source.snapshot.clone()
        };
        let id = to.save_snapshot(&snapshot)?;
        copied_ids.insert(&source.id, id.clone());
        report.copied.push((source.id.clone(), id));
    }
    Ok(report)
}

struct Copier<'a, 'r> {
    from: &'a Repository,
    to: &'a Repository,
    index: &'a Index,
    saver: &'a BlobSaver<'a>,
    jobs: &'a Sender<SaveJob>,
    same_ids: bool,
    /// Source tree id -> destination tree id, for trees already copied in this run.
    trees: HashMap<BlobId, BlobId>,
    /// Source data blob id -> destination id.
    blobs: HashMap<BlobId, BlobId>,
    report: &'r mut CopyReport,
}

impl Copier<'_, '_> {
    /// Copies the tree `id` and everything under it; returns its id in the destination.
    fn tree(&mut self, id: &BlobId, snapshot: &str) -> Result<BlobId> {
        if let Some(done) = self.trees.get(id) {
            return Ok(*done);
        }
        let tree = self.from.load_tree(self.index, id).map_err(|e| {
            Error::InvalidInput(format!(
                "snapshot {snapshot} cannot be read ({e}); run `lifeboat check` on the source"
            ))
        })?;
        let mut nodes: Vec<Node> = Vec::with_capacity(tree.nodes.len());
        for mut node in tree.nodes {
            if node.kind == NodeKind::Dir {
                if let Some(sub) = node.subtree {
                    node.subtree = Some(self.tree(&sub, snapshot)?);
                }
            } else {
                for blob in node.content.iter_mut() {
                    *blob = self.data_blob(blob)?;
                }
            }
            nodes.push(node);
        }
        let copied = save_tree(self.to, self.saver, self.jobs, nodes)?;
        self.trees.insert(*id, copied);
        Ok(copied)
    }

    /// Stores the data blob `id` in the destination unless it is there; returns its id there.
    fn data_blob(&mut self, id: &BlobId) -> Result<BlobId> {
        if let Some(done) = self.blobs.get(id) {
            return Ok(*done);
        }
        let (copied, data) = if self.same_ids {
            // Same key, same id: the destination's index answers without a read.
            if !self.saver.claim(BlobKind::Data, *id) {
                self.blobs.insert(*id, *id);
                return self.check_saver(*id);
            }
            (*id, self.from.read_blob(self.index, id)?)
        } else {
            let data = self.from.read_blob(self.index, id)?;
            let copied = self.to.blob_id(&data);
            if !self.saver.claim(BlobKind::Data, copied) {
                self.blobs.insert(*id, copied);
                return self.check_saver(copied);
            }
            (copied, data)
        };
        self.report.blobs_stored += 1;
        self.report.bytes_stored += data.len() as u64;
        let job = SaveJob::Blob(BlobJob {
            kind: BlobKind::Data,
            id: copied,
            data,
        });
        if self.jobs.send(job).is_err() {
            return Err(self.stopped());
        }
        self.blobs.insert(*id, copied);
        Ok(copied)
    }

    /// A claim that said "stored" may instead have failed (the index could not be loaded).
    fn check_saver(&self, id: BlobId) -> Result<BlobId> {
        if self.saver.is_aborted() {
            return Err(self.stopped());
        }
        Ok(id)
    }

    fn stopped(&self) -> Error {
        self.saver
            .take_failure()
            .unwrap_or_else(|| Error::InvalidInput("the copy's writer stopped".into()))
    }
}
