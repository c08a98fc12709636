//! Restore: bring a snapshot (or a path inside it) back into a target directory.
//!
//! Every name comes from a validated tree (one safe component each), every path is built
//! under the target, directories are checked to be real directories before anything is put
//! in them, and files are written through a temporary name and renamed into place, so restore
//! never writes outside its target and never leaves a half-written file under a real name.

mod batch;
mod metadata;
mod write;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_channel::{bounded, Receiver};
use serde::Serialize;

use self::batch::FrameBatcher;
use super::walk::{join, Located};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::patterns::PathPatterns;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overwrite {
    #[default]
    Always,
    /// Replace a file only when its content differs from the snapshot's.
    IfChanged,
    Never,
}

impl FromStr for Overwrite {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "always" => Ok(Overwrite::Always),
            "if-changed" => Ok(Overwrite::IfChanged),
            "never" => Ok(Overwrite::Never),
            _ => Err(format!(
                "invalid overwrite mode {s:?}: use always, if-changed or never"
            )),
        }
    }
}

pub struct RestoreOptions {
    pub target: PathBuf,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub overwrite: Overwrite,
    /// Read every restored file back and check it against the snapshot's blob ids.
    pub verify: bool,
    pub workers: usize,
}

impl RestoreOptions {
    pub fn new(target: impl Into<PathBuf>) -> Self {
        RestoreOptions {
            target: target.into(),
            include: Vec::new(),
            exclude: Vec::new(),
            overwrite: Overwrite::Always,
            verify: false,
            workers: 4,
        }
    }
}

#[derive(Default)]
pub struct RestoreProgress {
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreError {
    pub path: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreSummary {
    pub files_restored: u64,
    pub files_skipped: u64,
    pub files_verified: u64,
    pub dirs: u64,
    pub bytes_written: u64,
    pub errors: Vec<RestoreError>,
    /// Metadata that could not be set (owner without privileges, xattrs on a filesystem
    /// without them); the content was restored.
    pub warnings: Vec<RestoreError>,
}

/// A later member of a hard-link group, linked once the first member is written.
struct DeferredLink {
    first: PathBuf,
    job: FileJob,
}

struct FileJob {
    path: PathBuf,
    display: String,
    node: Node,
    /// Its directory was created by this restore, so `path` does not exist yet.
    fresh: bool,
}

struct Restorer<'a> {
    repo: &'a Repository,
    index: &'a Index,
    options: &'a RestoreOptions,
    include: PathPatterns,
    exclude: PathPatterns,
    as_root: bool,
    /// Files in directories this restore created are written unnamed and linked into place.
    unnamed_files: bool,
    summary: Mutex<RestoreSummary>,
    progress: &'a RestoreProgress,
    /// Hard-linked files this restore wrote, or found identical to the snapshot: the only
    /// ones a later member of their group may be linked to.
    written: Mutex<HashSet<PathBuf>>,
}

/// A directory on the way down: created only once something inside it is restored.
struct PendingDir {
    path: PathBuf,
    node: Option<Node>,
    created: bool,
    /// Created by this restore: nothing in it can exist yet, so no need to look.
    fresh: bool,
}

impl<'a> Restorer<'a> {
    fn record(&self, f: impl FnOnce(&mut RestoreSummary)) {
        if let Ok(mut s) = self.summary.lock() {
            f(&mut s);
        }
    }

    fn error(&self, path: &Path, message: impl ToString) {
        let e = RestoreError {
            path: path.display().to_string(),
            message: message.to_string(),
        };
        self.record(|s| s.errors.push(e));
    }

    /// Makes sure `path` is a real directory (not a symlink to somewhere else). True when
    /// this call created it, i.e. it is empty.
    fn ensure_dir(&self, path: &Path) -> std::result::Result<bool, String> {
        let create = |path: &Path| std::fs::create_dir(path).map(|()| true);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Ok(false),
            Ok(_) if self.options.overwrite == Overwrite::Never => {
                Err("exists and is not a directory (--overwrite never)".into())
            }
            Ok(_) => {
                std::fs::remove_file(path)
                    .map_err(|e| format!("cannot replace with a directory: {e}"))?;
                create(path).map_err(|e| e.to_string())
            }
            Err(_) => create(path).map_err(|e| e.to_string()),
        }
    }

    fn create_pending(&self, stack: &mut [PendingDir]) -> bool {
        for dir in stack.iter_mut().filter(|d| !d.created) {
            match self.ensure_dir(&dir.path) {
                Ok(fresh) => dir.fresh = fresh,
                Err(e) => {
                    self.error(&dir.path, e);
                    return false;
                }
            }
            dir.created = true;
        }
        true
    }

    /// Walks the tree, creating directories and queueing files in order.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        tree_id: crate::blob::BlobId,
        snap_dir: &[u8],
        stack: &mut Vec<PendingDir>,
        included_above: bool,
        batcher: &mut FrameBatcher,
        dirs_done: &mut Vec<(PathBuf, Node)>,
        links: &mut HashMap<(u64, u64), PathBuf>,
        deferred_links: &mut Vec<DeferredLink>,
    ) -> Result<()> {
        let tree = match self.repo.load_tree(self.index, &tree_id) {
            Ok(t) => t,
            Err(e) => {
                let here = stack
                    .last()
                    .map(|d| d.path.clone())
                    .unwrap_or_else(|| self.options.target.clone());
                self.error(&here, format!("directory listing lost: {e}"));
                return Ok(());
            }
        };
        let base = stack
            .last()
            .map(|d| d.path.clone())
            .unwrap_or_else(|| self.options.target.clone());
        for node in tree.nodes {
            let snap_path = join(snap_dir, &node.name);
            if self.exclude.matches(&snap_path, &node.name) {
                continue;
            }
            let included = included_above
                || self.include.is_empty()
                || self.include.matches(&snap_path, &node.name);
            let path = base.join(OsStr::from_bytes(&node.name));
            if node.kind == NodeKind::Dir {
                stack.push(PendingDir {
                    path: path.clone(),
                    node: Some(node.clone()),
                    created: false,
                    fresh: false,
                });
                if included && !self.create_pending(stack) {
                    stack.pop();
                    continue;
                }
                if let Some(sub) = node.subtree {
                    self.walk(
                        sub,
                        &snap_path,
                        stack,
                        included,
                        batcher,
                        dirs_done,
                        links,
                        deferred_links,
                    )?;
                }
                if let Some(done) = stack.pop() {
                    if done.created {
                        self.record(|s| s.dirs += 1);
                        if let Some(n) = done.node {
                            dirs_done.push((done.path, n));
                        }
                    }
                }
                continue;
            }
            if !included || !self.create_pending(stack) {
                continue;
            }
            if node.kind == NodeKind::File && node.links > 1 {
                let key = (node.device, node.inode);
                if let Some(first) = links.get(&key) {
                    let display = String::from_utf8_lossy(&snap_path).into_owned();
                    deferred_links.push(DeferredLink {
                        first: first.clone(),
                        job: FileJob {
                            path,
                            display,
                            node,
                            fresh: false,
                        },
                    });
                    continue;
                }
                links.insert(key, path.clone());
            }
            let display = String::from_utf8_lossy(&snap_path).into_owned();
            let fresh = stack.last().is_some_and(|d| d.fresh);
            batcher.push(FileJob {
                path,
                display,
                node,
                fresh,
            });
        }
        Ok(())
    }

    fn exists(path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }

    fn restore_entry(&self, job: FileJob) {
        let FileJob {
            path,
            display,
            node,
            fresh,
        } = job;
        if !fresh && Self::exists(&path) {
            let skip = match self.options.overwrite {
                Overwrite::Always => false,
                Overwrite::Never => true,
                Overwrite::IfChanged => self.unchanged_on_disk(&path, &node),
            };
            if skip && self.options.overwrite == Overwrite::IfChanged {
                self.mark_written(&path, &node);
            }
            if skip {
                self.record(|s| s.files_skipped += 1);
                return;
            }
        }
        let unnamed = fresh && self.unnamed_files;
        let (temp, metadata_set) = match node.kind {
            NodeKind::File => {
                match write::write_content(
                    self.repo,
                    self.index,
                    &node,
                    &path,
                    self.as_root,
                    unnamed,
                ) {
                    Ok((write::Written::Temp(temp), warning)) => (Some(temp), Some(warning)),
                    Ok((write::Written::InPlace, warning)) => (None, Some(warning)),
                    Err(e) => return self.error(&path, format!("{display}: {e}")),
                }
            }
            NodeKind::Symlink => {
                let temp = write::temp_path(&path);
                if let Err(e) =
                    std::os::unix::fs::symlink(OsStr::from_bytes(&node.link_target), &temp)
                {
                    return self.error(&path, format!("symlink: {e}"));
                }
                (Some(temp), None)
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                let temp = write::temp_path(&path);
                if let Err(e) = make_special(&temp, &node) {
                    return self.error(&path, format!("{}: {e}", node.kind.as_str()));
                }
                (Some(temp), None)
            }
            NodeKind::Socket | NodeKind::Dir => return,
        };
        let warning = match (metadata_set, &temp) {
            (Some(warning), _) => warning,
            (None, Some(temp)) => metadata::apply(temp, &node, self.as_root).err(),
            (None, None) => None,
        };
        if let Some(e) = warning {
            let w = RestoreError {
                path: path.display().to_string(),
                message: e,
            };
            self.record(|s| s.warnings.push(w));
        }
        if let Some(temp) = temp {
            if let Err(e) = std::fs::rename(&temp, &path) {
                let _ = std::fs::remove_file(&temp);
                return self.error(&path, format!("rename into place: {e}"));
            }
        }
        self.mark_written(&path, &node);
        let bytes = node.size;
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        self.progress.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.record(|s| {
            s.files_restored += 1;
            s.bytes_written += bytes;
        });
        if self.options.verify && node.kind == NodeKind::File {
            match write::content_matches(self.repo, self.index, &path, &node.content) {
                Ok(true) => self.record(|s| s.files_verified += 1),
                Ok(false) => self.error(
                    &path,
                    "verification failed: restored content differs from the snapshot",
                ),
                Err(e) => self.error(&path, format!("verification failed: {e}")),
            }
        }
    }

    /// Only members of hard-link groups are remembered: a set of every restored path cost
    /// 20 MiB on a tree of 118k files, for the few that are ever linked to.
    fn mark_written(&self, path: &Path, node: &Node) {
        if node.kind != NodeKind::File || node.links < 2 {
            return;
        }
        if let Ok(mut w) = self.written.lock() {
            w.insert(path.to_path_buf());
        }
    }

    fn was_written(&self, path: &Path) -> bool {
        self.written
            .lock()
            .map(|w| w.contains(path))
            .unwrap_or(false)
    }

    /// Links a later hard-link member to a file of its group that this restore wrote; when
    /// there is none (the first failed, or was kept under `--overwrite never`), the member
    /// gets its own copy and becomes the group's file for the members after it.
    fn restore_link(&self, link: DeferredLink, sources: &mut HashMap<PathBuf, PathBuf>) {
        let DeferredLink { first, job } = link;
        if self.options.overwrite == Overwrite::Never && Self::exists(&job.path) {
            self.record(|s| s.files_skipped += 1);
            return;
        }
        let source = sources.get(&first).cloned().unwrap_or(first.clone());
        let linkable = self.was_written(&source)
            && std::fs::symlink_metadata(&source)
                .map(|m| m.is_file())
                .unwrap_or(false);
        if !linkable {
            let path = job.path.clone();
            self.restore_entry(job);
            if self.was_written(&path) {
                sources.insert(first, path);
            }
            return;
        }
        let _ = std::fs::remove_file(&job.path);
        match std::fs::hard_link(&source, &job.path) {
            Ok(()) => self.record(|s| s.files_restored += 1),
            Err(e) => self.error(&job.path, format!("hard link to {}: {e}", source.display())),
        }
    }

    /// Whether the entry at `path` already is what the snapshot holds (for `if-changed`).
    fn unchanged_on_disk(&self, path: &Path, node: &Node) -> bool {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return false;
        };
        match node.kind {
            NodeKind::File => {
                meta.is_file()
                    && meta.len() == node.size
                    && write::content_matches(self.repo, self.index, path, &node.content)
                        .unwrap_or(false)
            }
            NodeKind::Symlink => std::fs::read_link(path)
                .map(|t| t.as_os_str().as_bytes() == node.link_target.as_slice())
                .unwrap_or(false),
            _ => false,
        }
    }

    fn run_worker(&self, jobs: Receiver<Vec<FileJob>>) {
        for job in jobs.into_iter().flatten() {
            self.restore_entry(job);
        }
    }
}

fn make_special(path: &Path, node: &Node) -> std::result::Result<(), String> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let kind = match node.kind {
        NodeKind::Fifo => SFlag::S_IFIFO,
        NodeKind::CharDevice => SFlag::S_IFCHR,
        _ => SFlag::S_IFBLK,
    };
    mknod(
        path,
        kind,
        Mode::from_bits_truncate(0o600),
        node.rdev as nix::libc::dev_t,
    )
    .map_err(|e| e.to_string())
}

/// Restores what `located` names into `options.target`: a directory's contents, or one entry.
pub fn restore(
    repo: &Repository,
    index: &Index,
    located: &Located,
    options: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreSummary> {
    std::fs::create_dir_all(&options.target).map_err(|e| Error::io(&options.target, e))?;
    let target_meta =
        std::fs::metadata(&options.target).map_err(|e| Error::io(&options.target, e))?;
    if !target_meta.is_dir() {
        return Err(Error::InvalidInput(format!(
            "target {} is not a directory",
            options.target.display()
        )));
    }
    let restorer = Restorer {
        repo,
        index,
        options,
        include: PathPatterns::new(&options.include)?,
        exclude: PathPatterns::new(&options.exclude)?,
        as_root: nix::unistd::geteuid().is_root(),
        unnamed_files: write::unnamed_files_work(&options.target),
        summary: Mutex::new(RestoreSummary::default()),
        progress,
        written: Mutex::new(HashSet::new()),
    };
    let (job_tx, job_rx) = bounded::<Vec<FileJob>>(16);
    let mut dirs_done = Vec::new();
    let mut deferred_links = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..options.workers.max(1))
            .map(|_| {
                let rx = job_rx.clone();
                let r = &restorer;
                scope.spawn(move || r.run_worker(rx))
            })
            .collect();
        drop(job_rx);
        let mut links = HashMap::new();
        let mut stack = Vec::new();
        let mut batcher = FrameBatcher::new(index, &job_tx);
        let walked = match located {
            Located::Root(id) => restorer.walk(
                *id,
                b"/",
                &mut stack,
                false,
                &mut batcher,
                &mut dirs_done,
                &mut links,
                &mut deferred_links,
            ),
            Located::Node { path, node } if node.kind == NodeKind::Dir => {
                let snap_dir = path.clone();
                let root_included = restorer.include.matches(&snap_dir, &node.name);
                match node.subtree {
                    Some(sub) => restorer.walk(
                        sub,
                        &snap_dir,
                        &mut stack,
                        root_included,
                        &mut batcher,
                        &mut dirs_done,
                        &mut links,
                        &mut deferred_links,
                    ),
                    None => Ok(()),
                }
            }
            Located::Node { path, node } => {
                let display = String::from_utf8_lossy(path).into_owned();
                let file_path = options.target.join(OsStr::from_bytes(&node.name));
                batcher.push(FileJob {
                    path: file_path,
                    display,
                    node: (**node).clone(),
                    fresh: false,
                });
                Ok(())
            }
        };
        batcher.flush();
        drop(batcher);
        drop(job_tx);
        for w in workers {
            let _ = w.join();
        }
        walked
    })?;
    let mut link_sources = HashMap::new();
    for link in deferred_links {
        restorer.restore_link(link, &mut link_sources);
    }
    // Children before parents, so setting a directory's time is the last change inside it.
    for (path, node) in dirs_done.iter() {
        if let Err(e) = metadata::apply(path, node, restorer.as_root) {
            let w = RestoreError {
                path: path.display().to_string(),
                message: e,
            };
            restorer.record(|s| s.warnings.push(w));
        }
    }
    let mut summary = restorer.summary.into_inner().unwrap_or_default();
    summary.errors.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(summary)
}
