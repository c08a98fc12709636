//! The front half of the backup: which paths, what to exclude, walking them in a stable order,
//! and reading changed files into chunks.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::finisher::{Change, Content, Event};
use super::listing::{judge_node, ListJob, Listed, Listing, Previous, Unstated, MAX_LISTED_AHEAD};
use super::metadata::{node_from_metadata, node_without_xattrs, user_xattrs, OwnerNames};
use super::saver::{BlobSaver, BlobSink, ChunkRun, SaveJob};
use super::{BackupProgress, SourceError};
use crate::blob::{BlobId, BlobKind};
use crate::chunker::ChunkReader;
use crate::error::{Error, Result};
use crate::patterns::PathPatterns;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind, Tree};

/// Makes a path absolute and removes `.` and `..` lexically (without following symlinks, so
/// a symlink given as a source is stored as a symlink).
pub fn normalize_path(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let mut out = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(c) => out.push(c),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Normalized, existing, sorted paths with those inside another listed path dropped.
pub fn normalize_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let mut out = Vec::new();
    for p in paths {
        let n = normalize_path(p)?;
        std::fs::symlink_metadata(&n).map_err(|e| Error::io(&n, e))?;
        out.push(n);
    }
    out.sort();
    out.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for p in out {
        if !kept.iter().any(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    Ok(kept)
}

pub struct WalkPlan {
    pub paths: Vec<PathBuf>,
    pub excludes: PathPatterns,
    pub parent_tree: Option<BlobId>,
    pub one_file_system: bool,
}

pub struct FileContent {
    pub ids: Vec<BlobId>,
    pub size: u64,
    /// The warning for a file that kept changing while it was read: what is stored is what
    /// the last read found, consistent in itself but maybe no state the file ever had.
    pub changed: Option<String>,
}

/// Ok, or the message for a source file that could not be read (the backup goes on).
pub type FileResult = std::result::Result<FileContent, String>;

pub struct FileJob {
    pub path: PathBuf,
    /// The size the walker saw, to size the read buffer (the file may change meanwhile).
    pub size: u64,
    pub reader: Option<Box<dyn Read + Send>>,
    pub reply: Sender<FileResult>,
}

pub fn run_file_worker(
    repo: &Repository,
    saver: &BlobSaver,
    jobs: Receiver<FileJob>,
    blobs: Sender<SaveJob>,
    progress: &BackupProgress,
) {
    let mut blobs = BlobSink::new(blobs);
    for mut job in jobs {
        let result = if saver.is_aborted() {
            Err("backup aborted".to_string())
        } else {
            match job.reader.take() {
                Some(mut reader) => {
                    chunk_stream(repo, saver, &mut blobs, &mut *reader, 0, progress)
                }
                None => open_regular(&job.path).and_then(|(mut file, opened)| {
                    read_file(
                        repo, saver, &mut blobs, &mut file, &opened, job.size, progress,
                    )
                }),
            }
        };
        let _ = job.reply.send(result);
    }
}

pub fn chunk_stream(
    repo: &Repository,
    saver: &BlobSaver,
    blobs: &mut BlobSink,
    reader: &mut dyn Read,
    size_hint: u64,
    progress: &BackupProgress,
) -> FileResult {
    let mut counted = CountingReader {
        inner: reader,
        read: 0,
    };
    let mut chunks = ChunkReader::with_size_hint(&mut counted, repo.chunker(), size_hint);
    let mut content = FileContent {
        ids: Vec::new(),
        size: 0,
        changed: None,
    };
    let mut run = ChunkRun::default();
    let aborted = || "backup aborted".to_string();
    let read = loop {
        let chunk = match chunks.next_chunk_into(|| saver.chunk_buffer()) {
            Ok(Some(c)) => c,
            Ok(None) => break Ok(()),
            Err(e) => break Err(Some(e)),
        };
        let id = repo.blob_id(&chunk);
        content.size += chunk.len() as u64;
        progress
            .bytes_done
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        content.ids.push(id);
        if saver.claim(BlobKind::Data, id) && !saver.save_chunk(blobs, &mut run, id, chunk) {
            // The compressors stopped: the backup has failed already.
            break Err(None);
        }
    };
    drop(chunks);
    // Even after a read error: the chunks waiting in the run are claimed, and other files
    // may already count on them.
    if !saver.end_run(blobs, &mut run) {
        return Err(aborted());
    }
    match read {
        Ok(()) => Ok(content),
        Err(Some(e)) => Err(format!("read error after {} bytes: {e}", counted.read)),
        Err(None) => Err(aborted()),
    }
}

/// What tells that a file's content changed: its size and modification time.
fn content_stamp(meta: &std::fs::Metadata) -> (u64, i64, i64) {
    (meta.len(), meta.mtime(), meta.mtime_nsec())
}

/// Reads an opened regular file into chunks and makes sure that what is stored is one state
/// of it: its size and modification time after the read must be those it had before. A file
/// written meanwhile is read once more from the start (the blobs of the first read are left
/// to prune); if it changes during that read too, what the second read found is stored,
/// with a warning: its size and blobs agree, but it may mix old and new content.
#[allow(clippy::too_many_arguments)]
fn read_file(
    repo: &Repository,
    saver: &BlobSaver,
    blobs: &mut BlobSink,
    file: &mut File,
    opened: &std::fs::Metadata,
    size_hint: u64,
    progress: &BackupProgress,
) -> FileResult {
    let stat_after = |file: &File| {
        file.metadata()
            .map(|m| content_stamp(&m))
            .map_err(|e| format!("cannot stat it after reading it: {e}"))
    };
    let mut before = content_stamp(opened);
    let mut content = chunk_stream(repo, saver, blobs, file, size_hint, progress)?;
    let after = stat_after(file)?;
    if after == before {
        return Ok(content);
    }
    // Read again; the second read counts its own bytes.
    progress
        .bytes_done
        .fetch_sub(content.size, Ordering::Relaxed);
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("changed while being read, and cannot be read again: {e}"))?;
    before = after;
    content = chunk_stream(repo, saver, blobs, file, size_hint, progress)?;
    let again = stat_after(file)?;
    if again != before {
        let how = if again.0 != before.0 {
            format!("its size went from {} to {} bytes", before.0, again.0)
        } else {
            "its modification time changed".to_string()
        };
        content.changed = Some(format!(
            "changed while being read, twice ({how} during the second read); stored as the \
             second read found it ({} bytes), which may mix old and new content",
            content.size
        ));
    }
    Ok(content)
}

/// The message for an entry that could not be stat-ed or opened: one deleted since its
/// directory was listed has vanished, which says more than "No such file or directory".
fn entry_error(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("vanished during the backup ({e}); not in the snapshot")
    } else {
        e.to_string()
    }
}

/// Counts the bytes read, for the message of a read that fails (chunks are cut behind it).
struct CountingReader<'r> {
    inner: &'r mut dyn Read,
    read: u64,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Counts what there is to do, in parallel with the backup, so progress can show an ETA. It
/// follows the walk's rules (excludes, --one-file-system) and stops as soon as `stop` is set,
/// so a slow filesystem can delay the estimate but never the backup.
pub fn scan_totals(
    paths: &[PathBuf],
    excludes: &PathPatterns,
    one_file_system: bool,
    progress: &BackupProgress,
    stop: &AtomicBool,
) {
    struct Scan<'a> {
        excludes: &'a PathPatterns,
        one_file_system: bool,
        progress: &'a BackupProgress,
        stop: &'a AtomicBool,
    }
    impl Scan<'_> {
        fn visit(&self, path: &Path, device: Option<u64>) {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(meta) = std::fs::symlink_metadata(path) else {
                return;
            };
            let here = std::os::unix::fs::MetadataExt::dev(&meta);
            if meta.is_dir() {
                if self.one_file_system && device.is_some_and(|d| d != here) {
                    return;
                }
                let Ok(entries) = std::fs::read_dir(path) else {
                    return;
                };
                for entry in entries.flatten() {
                    let child = entry.path();
                    if !self
                        .excludes
                        .matches(child.as_os_str().as_bytes(), entry.file_name().as_bytes())
                    {
                        self.visit(&child, Some(device.unwrap_or(here)));
                    }
                }
            } else if meta.is_file() {
                self.progress.total_files.fetch_add(1, Ordering::Relaxed);
                self.progress
                    .total_bytes
                    .fetch_add(meta.len(), Ordering::Relaxed);
            }
        }
    }
    let scan = Scan {
        excludes,
        one_file_system,
        progress,
        stop,
    };
    for p in paths {
        scan.visit(p, None);
    }
    progress
        .scan_finished
        .store(!stop.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// The directories leading to the backed-up paths, so the snapshot mirrors absolute paths.
#[derive(Default)]
struct PathTrie {
    leaf: bool,
    children: BTreeMap<Vec<u8>, PathTrie>,
}

impl PathTrie {
    fn build(paths: &[PathBuf]) -> PathTrie {
        let mut root = PathTrie::default();
        for p in paths {
            let mut node = &mut root;
            for c in p.components() {
                if let Component::Normal(name) = c {
                    node = node.children.entry(name.as_bytes().to_vec()).or_default();
                }
            }
            node.leaf = true;
        }
        root
    }
}

/// Files up to this size are read by the walker itself: for them, handing the read to a
/// worker and waiting for the answer costs more than the read.
pub const INLINE_READ_MAX: u64 = 128 * 1024;

/// Entries of a directory stat-ed, and small files opened, ahead of the one being walked.
/// Files are opened only up to the next subdirectory, so the walk never descends with files
/// of the levels above it held open: at most this many are open at any time.
const LOOK_AHEAD: usize = 128;

/// Subdirectories of the directory being walked whose listings are requested ahead (while
/// fewer than [`MAX_LISTED_AHEAD`] listed entries wait).
const LIST_AHEAD: usize = 8;

/// Opens a file the backup is about to read, for reading only if it still is a regular file:
/// the entry was stat-ed a while ago, and a symlink or FIFO put in its place since must be
/// neither followed nor waited on.
fn open_regular(path: &Path) -> std::result::Result<(File, std::fs::Metadata), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "was replaced by a symlink during the backup".to_string(),
            _ => entry_error(&e),
        })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is no longer a regular file (replaced during the backup)".into());
    }
    Ok((file, meta))
}

/// Opens a small file the walker will read soon and asks for all its pages at once
/// (`posix_fadvise(WILLNEED)` starts the reads and returns). A file that cannot be opened here
/// is opened again, with its error reported, when its turn comes.
fn open_for_reading(path: &Path, size: u64) -> Option<(File, std::fs::Metadata)> {
    let (file, meta) = open_regular(path).ok()?;
    let _ = nix::fcntl::posix_fadvise(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        0,
        size as i64,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
    );
    Some((file, meta))
}

/// Events per hand-off from the walker to the tree finisher.
const EVENT_BATCH: usize = 256;

pub struct Walker<'a> {
    repo: &'a Repository,
    saver: &'a BlobSaver<'a>,
    blobs: std::cell::RefCell<BlobSink>,
    progress: &'a BackupProgress,
    plan: &'a WalkPlan,
    force: bool,
    files: Sender<FileJob>,
    lists: Sender<ListJob>,
    listed_ahead: &'a AtomicUsize,
    events: Sender<Vec<Event>>,
    batch: std::cell::RefCell<Vec<Event>>,
    owners: std::cell::RefCell<OwnerNames>,
    top_device: std::cell::Cell<u64>,
}

/// The receiver went away: the finisher stopped, and its error is what the caller reports.
struct Stopped;

type Step = std::result::Result<(), Stopped>;

impl<'a> Walker<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        repo: &'a Repository,
        saver: &'a BlobSaver<'a>,
        blobs: Sender<SaveJob>,
        progress: &'a BackupProgress,
        plan: &'a WalkPlan,
        force: bool,
        files: Sender<FileJob>,
        lists: Sender<ListJob>,
        listed_ahead: &'a AtomicUsize,
        events: Sender<Vec<Event>>,
    ) -> Self {
        Walker {
            repo,
            saver,
            blobs: std::cell::RefCell::new(BlobSink::new(blobs)),
            progress,
            plan,
            force,
            files,
            lists,
            listed_ahead,
            events,
            batch: Default::default(),
            owners: Default::default(),
            top_device: Default::default(),
        }
    }

    /// Queues an event; they travel to the finisher in batches, because one channel hand-off
    /// per entry costs more than stat-ing an unchanged file.
    fn send(&self, event: Event) -> Step {
        let mut batch = self.batch.borrow_mut();
        batch.push(event);
        if batch.len() < EVENT_BATCH {
            return Ok(());
        }
        let full = std::mem::replace(&mut *batch, Vec::with_capacity(EVENT_BATCH));
        drop(batch);
        self.events.send(full).map_err(|_| Stopped)
    }

    fn flush(&self) {
        let rest = std::mem::take(&mut *self.batch.borrow_mut());
        if !rest.is_empty() {
            let _ = self.events.send(rest);
        }
    }

    fn error(&self, path: &Path, message: impl ToString) -> Step {
        self.send(Event::Error(SourceError {
            path: path.to_path_buf(),
            message: message.to_string(),
        }))
    }

    fn load_parent(&self, id: Option<BlobId>) -> Option<Tree> {
        // A damaged parent must not stop new backups: without it every file is read again.
        id.and_then(|id| self.repo.load_tree(self.saver.known().trees(), &id).ok())
    }

    pub fn walk(self) -> Result<()> {
        let trie = PathTrie::build(&self.plan.paths);
        let _ = if trie.leaf {
            // Backing up "/" itself: its device is the one not to leave with --one-file-system.
            if let Ok(meta) = std::fs::symlink_metadata("/") {
                self.top_device
                    .set(std::os::unix::fs::MetadataExt::dev(&meta));
            }
            self.walk_contents(Path::new("/"), self.plan.parent_tree, None)
                .map(|_| ())
        } else {
            let parent = self.load_parent(self.plan.parent_tree);
            self.walk_virtual(Path::new("/"), &trie, parent.as_ref())
        };
        self.flush();
        Ok(())
    }

    /// Streams, each one file at the root, in the order given (sorted by name).
    pub fn walk_streams(self, streams: Vec<(String, Box<dyn Read + Send>)>) -> Result<()> {
        for (filename, reader) in streams {
            if self.walk_stream(filename, reader).is_err() {
                break;
            }
        }
        self.flush();
        Ok(())
    }

    fn walk_stream(&self, filename: String, reader: Box<dyn Read + Send>) -> Step {
        let (reply, content) = bounded(1);
        let mut node = Node::empty(NodeKind::File);
        node.name = filename.clone().into_bytes();
        node.mode = 0o600;
        node.uid = nix::unistd::geteuid().as_raw();
        node.gid = nix::unistd::getegid().as_raw();
        let now = chrono::Utc::now();
        node.mtime_sec = now.timestamp();
        node.mtime_nsec = now.timestamp_subsec_nanos();
        let path = PathBuf::from(format!("/{filename}"));
        let job = FileJob {
            path: path.clone(),
            size: 0,
            reader: Some(reader),
            reply,
        };
        self.files.send(job).map_err(|_| Stopped)?;
        self.send(Event::Entry {
            path,
            node,
            content: Content::Pending(content),
            change: Change::New,
        })
    }

    fn walk_virtual(&self, dir: &Path, trie: &PathTrie, parent: Option<&Tree>) -> Step {
        for (name, child) in &trie.children {
            let path = dir.join(OsStr::from_bytes(name));
            let parent_node = parent.and_then(|t| t.find(name));
            if child.leaf {
                let meta = match std::fs::symlink_metadata(&path) {
                    Ok(m) => m,
                    Err(e) => {
                        self.error(&path, entry_error(&e))?;
                        continue;
                    }
                };
                self.top_device
                    .set(std::os::unix::fs::MetadataExt::dev(&meta));
                self.walk_entry(&path, name, Ok(meta), parent_node)?;
                continue;
            }
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    self.error(&path, e)?;
                    continue;
                }
            };
            let node = node_from_metadata(name, &path, &meta, &mut self.owners.borrow_mut());
            let sub_id = parent_node.and_then(|n| n.subtree);
            let sub = self.load_parent(sub_id);
            self.send(Event::EnterDir {
                entries: child.children.len(),
            })?;
            self.walk_virtual(&path, child, sub.as_ref())?;
            self.send(Event::LeaveDir {
                node,
                parent: sub_id.zip(sub),
            })?;
        }
        Ok(())
    }

    /// A path named on the command line (or the root of one): stat-ed here, not listed.
    fn walk_entry(
        &self,
        path: &Path,
        name: &[u8],
        meta: std::io::Result<std::fs::Metadata>,
        parent_node: Option<&Node>,
    ) -> Step {
        let mut node = match meta {
            Ok(m) => self.node_of(name, path, &m),
            Err(e) => return self.error(path, entry_error(&e)),
        };
        let known = self.saver.known();
        let previous = judge_node(&mut node, path, parent_node, self.force, |id| {
            known.probably_stored(id)
        });
        self.walk_listed(path.to_path_buf(), Ok(node), previous, None, None)
    }

    fn node_of(&self, name: &[u8], path: &Path, meta: &std::fs::Metadata) -> Node {
        node_without_xattrs(name, path, meta, &mut self.owners.borrow_mut())
    }

    /// `opened`: the file, already opened by the look-ahead of `walk_listing`; `listing`: the
    /// directory's listing, already requested.
    fn walk_listed(
        &self,
        path: PathBuf,
        node: std::result::Result<Node, Unstated>,
        previous: Previous,
        opened: Option<(File, std::fs::Metadata)>,
        listing: Option<Receiver<Listing>>,
    ) -> Step {
        let node = match node {
            Ok(n) => n,
            Err(unstated) => return self.error(&path, entry_error(&unstated.error)),
        };
        match (node.kind, previous) {
            (NodeKind::Dir, Previous::Other { subtree }) => {
                self.walk_dir(&path, node, subtree, listing)
            }
            (NodeKind::File, previous) => self.walk_file(path, node, previous, opened),
            _ => self.send(Event::Entry {
                path,
                node,
                content: Content::None,
                change: Change::Other,
            }),
        }
    }

    /// Whether the walk goes into this directory (not with --one-file-system onto another
    /// filesystem).
    fn descends(&self, dir: &Node) -> bool {
        !self.plan.one_file_system || dir.device == self.top_device.get()
    }

    /// Asks the listers for a directory's listing.
    fn request(&self, dir: PathBuf, parent_tree: Option<BlobId>, ahead: bool) -> Receiver<Listing> {
        let (job, listing) = ListJob::new(dir, parent_tree, ahead);
        // If the listers are gone, the dropped job makes `recv` fail, which is reported.
        let _ = self.lists.send(job);
        listing
    }

    fn request_ahead(
        &self,
        dir: PathBuf,
        parent_tree: Option<BlobId>,
    ) -> Option<Receiver<Listing>> {
        (self.listed_ahead.load(Ordering::Relaxed) < MAX_LISTED_AHEAD)
            .then(|| self.request(dir, parent_tree, true))
    }

    fn walk_dir(
        &self,
        path: &Path,
        node: Node,
        parent_tree: Option<BlobId>,
        listing: Option<Receiver<Listing>>,
    ) -> Step {
        if !self.descends(&node) {
            self.send(Event::EnterDir { entries: 0 })?;
            return self.send(Event::LeaveDir { node, parent: None });
        }
        let listing = self.receive(path, parent_tree, listing);
        let entries = listing.as_ref().map_or(0, |l| l.entries.len());
        self.send(Event::EnterDir { entries })?;
        let parent = self.walk_received(path, listing)?;
        self.send(Event::LeaveDir { node, parent })
    }

    /// Walks a directory's entries; returns its tree in the parent snapshot, if any.
    fn walk_contents(
        &self,
        path: &Path,
        parent_tree: Option<BlobId>,
        listing: Option<Receiver<Listing>>,
    ) -> std::result::Result<Option<(BlobId, Tree)>, Stopped> {
        let listing = self.receive(path, parent_tree, listing);
        self.walk_received(path, listing)
    }

    /// A directory's listing, asked for ahead (`listing`) or now; `None` if the listers
    /// stopped.
    fn receive(
        &self,
        path: &Path,
        parent_tree: Option<BlobId>,
        listing: Option<Receiver<Listing>>,
    ) -> Option<Listing> {
        let asked = listing.unwrap_or_else(|| self.request(path.to_path_buf(), parent_tree, false));
        let listing = match asked.recv() {
            Ok(listing) if listing.declined => {
                self.request(path.to_path_buf(), parent_tree, false).recv()
            }
            other => other,
        }
        .ok()?;
        self.listed_ahead
            .fetch_sub(listing.entries.len(), Ordering::Relaxed);
        Some(listing)
    }

    fn walk_received(
        &self,
        path: &Path,
        listing: Option<Listing>,
    ) -> std::result::Result<Option<(BlobId, Tree)>, Stopped> {
        match listing {
            Some(mut listing) => {
                let parent = listing.parent.take();
                self.walk_listing(path, listing)?;
                Ok(parent)
            }
            None => self
                .error(path, "cannot list directory: the lister thread stopped")
                .map(|()| None),
        }
    }

    fn walk_listing(&self, dir: &Path, listing: Listing) -> Step {
        for message in listing.errors {
            self.error(dir, message)?;
        }
        let subdirs: Vec<(PathBuf, Option<BlobId>)> = listing
            .entries
            .iter()
            .filter_map(|e| match (&e.node, &e.previous) {
                (Ok(n), Previous::Other { subtree })
                    if n.kind == NodeKind::Dir && self.descends(n) =>
                {
                    Some((dir.join(e.name()), *subtree))
                }
                _ => None,
            })
            .collect();
        let mut subdirs = subdirs.into_iter();
        // In the order of `subdirs`; `None` where too much was waiting: requested on arrival.
        let mut requested: VecDeque<Option<Receiver<Listing>>> = subdirs
            .by_ref()
            .take(LIST_AHEAD)
            .map(|(path, tree)| self.request_ahead(path, tree))
            .collect();
        let mut entries = VecDeque::from(listing.entries);
        // One slot for each entry at the front of `entries` already considered for opening
        // (the file, if it was one to open ahead); it stops at a subdirectory until the walk
        // has been inside it.
        let mut opened: VecDeque<Option<(File, std::fs::Metadata)>> =
            VecDeque::with_capacity(LOOK_AHEAD);
        loop {
            while opened.len() < LOOK_AHEAD.min(entries.len()) {
                let next = &entries[opened.len()];
                let is_dir = next.is_dir();
                if is_dir && !opened.is_empty() {
                    break;
                }
                let file = match &next.node {
                    Ok(node) if next.will_read && !self.saver.is_aborted() => {
                        open_for_reading(&dir.join(next.name()), node.size)
                    }
                    _ => None,
                };
                opened.push_back(file);
                if is_dir {
                    break;
                }
            }
            let Some(listed) = entries.pop_front() else {
                break;
            };
            let file = opened.pop_front().flatten();
            let listing = match &listed.node {
                Ok(n) if n.kind == NodeKind::Dir && self.descends(n) => {
                    let listing = requested.pop_front().flatten();
                    if let Some((path, tree)) = subdirs.next() {
                        requested.push_back(self.request_ahead(path, tree));
                    }
                    listing
                }
                _ => None,
            };
            let path = dir.join(listed.name());
            let Listed { node, previous, .. } = listed;
            self.walk_listed(path, node, previous, file, listing)?;
        }
        Ok(())
    }

    fn walk_file(
        &self,
        path: PathBuf,
        mut node: Node,
        previous: Previous,
        opened: Option<(File, std::fs::Metadata)>,
    ) -> Step {
        let change = match previous {
            Previous::Unchanged => {
                return self.send(Event::Entry {
                    path,
                    node,
                    content: Content::None,
                    change: Change::Unmodified,
                })
            }
            Previous::Changed => Change::Changed,
            Previous::New | Previous::Other { .. } => Change::New,
        };
        node.xattrs = user_xattrs(&path);
        if node.size <= INLINE_READ_MAX && !self.saver.is_aborted() {
            let opened = match opened {
                Some(opened) => Ok(opened),
                None => open_regular(&path),
            };
            if let Ok((_, meta)) = &opened {
                if (meta.dev(), meta.ino()) != (node.device, node.inode) {
                    // Replaced since the stat: describe the file whose bytes are stored.
                    node = self.node_of(&node.name, &path, meta);
                    node.xattrs = user_xattrs(&path);
                }
            }
            let result = opened.and_then(|(mut file, opened)| {
                let (repo, saver) = (self.repo, self.saver);
                read_file(
                    repo,
                    saver,
                    &mut self.blobs.borrow_mut(),
                    &mut file,
                    &opened,
                    node.size,
                    self.progress,
                )
            });
            return self.send(Event::Entry {
                path,
                node,
                content: Content::Ready(result),
                change,
            });
        }
        let (reply, content) = bounded(1);
        self.files
            .send(FileJob {
                path: path.to_path_buf(),
                size: node.size,
                reader: None,
                reply,
            })
            .map_err(|_| Stopped)?;
        self.send(Event::Entry {
            path,
            node,
            content: Content::Pending(content),
            change,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the walker finds when it opens an entry it stat-ed earlier as a regular file.
    #[test]
    fn open_regular_neither_follows_symlinks_nor_waits_on_fifos() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, b"content").expect("write");
        let (mut opened, meta) = open_regular(&file).expect("a regular file opens");
        assert_eq!(meta.len(), 7);
        let mut back = Vec::new();
        opened.read_to_end(&mut back).expect("read");
        assert_eq!(back, b"content");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let err = open_regular(&link).expect_err("a symlink is refused");
        assert!(err.contains("symlink"), "{err}");

        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // Without O_NONBLOCK this open would wait for a writer forever.
        let err = open_regular(&fifo).expect_err("a FIFO is refused");
        assert!(err.contains("no longer a regular file"), "{err}");

        assert!(open_for_reading(&link, 7).is_none());
        assert!(open_for_reading(&file, 7).is_some());
    }
}
