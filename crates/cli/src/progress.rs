//! Progress: bars on a terminal, JSON status lines with --json, nothing with --quiet.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use lifeboat_core::ops::backup::BackupProgress;
use lifeboat_core::ops::restore::RestoreProgress;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Json,
    Silent,
}

pub fn mode(json: bool, quiet: bool) -> Mode {
    if json {
        Mode::Json
    } else if quiet || !std::io::stderr().is_terminal() {
        Mode::Silent
    } else {
        Mode::Bar
    }
}

/// A reading of an operation's counters.
pub struct Counts {
    pub files_done: u64,
    pub bytes_done: u64,
    pub total_files: u64,
    pub total_bytes: u64,
    /// Totals are final (the scan finished, or they were known from the start).
    pub totals_known: bool,
}

pub trait Counters: Send + Sync + 'static {
    fn read(&self) -> Counts;
}

impl Counters for BackupProgress {
    fn read(&self) -> Counts {
        Counts {
            files_done: self.files_done.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            total_files: self.total_files.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
            totals_known: self.scan_finished.load(Ordering::Relaxed),
        }
    }
}

/// Restore counters with totals taken from the snapshot's summary.
pub struct RestoreCounters {
    pub progress: RestoreProgress,
    pub total_files: u64,
    pub total_bytes: u64,
}

impl Counters for RestoreCounters {
    fn read(&self) -> Counts {
        Counts {
            files_done: self.progress.files_done.load(Ordering::Relaxed),
            bytes_done: self.progress.bytes_done.load(Ordering::Relaxed),
            total_files: self.total_files,
            total_bytes: self.total_bytes,
            totals_known: self.total_bytes > 0,
        }
    }
}

/// Polls an operation's counters on its own thread until dropped.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Reporter {
    pub fn start<C: Counters>(mode: Mode, counters: Arc<C>) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = match mode {
            Mode::Silent => None,
            Mode::Bar => Some(std::thread::spawn({
                let stop = stop.clone();
                move || bar_loop(counters.as_ref(), &stop)
            })),
            Mode::Json => Some(std::thread::spawn({
                let stop = stop.clone();
                move || json_loop(counters.as_ref(), &stop)
            })),
        };
        Reporter { stop, handle }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn bar_loop(c: &dyn Counters, stop: &AtomicBool) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while !stop.load(Ordering::SeqCst) {
        let n = c.read();
        bar.set_length(n.total_bytes.max(n.bytes_done));
        bar.set_position(n.bytes_done);
        let scanning = if n.totals_known { "" } else { " (counting)" };
        bar.set_message(format!(
            "{}/{} files{scanning}",
            n.files_done, n.total_files
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

fn json_loop(c: &dyn Counters, stop: &AtomicBool) {
    let started = Instant::now();
    let mut last = Instant::now() - Duration::from_secs(1);
    while !stop.load(Ordering::SeqCst) {
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let n = c.read();
            let line = serde_json::json!({
                "message_type": "status",
                "seconds_elapsed": started.elapsed().as_secs_f64(),
                "files_done": n.files_done,
                "bytes_done": n.bytes_done,
                "total_files": n.total_files,
                "total_bytes": n.total_bytes,
                "totals_known": n.totals_known,
                "percent_done": if n.total_bytes > 0 { (n.bytes_done as f64 / n.total_bytes as f64).min(1.0) } else { 0.0 },
            });
            println!("{line}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
