//! Progress: bars on a terminal, JSON status lines with --json, nothing with --quiet.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use lifeboat_core::ops::backup::BackupProgress;

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

/// Polls the engine's counters on its own thread until dropped.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Reporter {
    pub fn backup(mode: Mode, counters: Arc<BackupProgress>) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = match mode {
            Mode::Silent => None,
            Mode::Bar => Some(std::thread::spawn({
                let stop = stop.clone();
                move || bar_loop(&counters, &stop)
            })),
            Mode::Json => Some(std::thread::spawn({
                let stop = stop.clone();
                move || json_loop(&counters, &stop)
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

fn bar_loop(c: &BackupProgress, stop: &AtomicBool) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while !stop.load(Ordering::SeqCst) {
        let total = c.total_bytes.load(Ordering::Relaxed);
        bar.set_length(total.max(c.bytes_done.load(Ordering::Relaxed)));
        bar.set_position(c.bytes_done.load(Ordering::Relaxed));
        let files = c.files_done.load(Ordering::Relaxed);
        let total_files = c.total_files.load(Ordering::Relaxed);
        let scanning = if c.scan_finished.load(Ordering::Relaxed) {
            ""
        } else {
            " (scanning)"
        };
        bar.set_message(format!("{files}/{total_files} files{scanning}"));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

fn json_loop(c: &BackupProgress, stop: &AtomicBool) {
    let started = Instant::now();
    let mut last = Instant::now() - Duration::from_secs(1);
    while !stop.load(Ordering::SeqCst) {
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let total = c.total_bytes.load(Ordering::Relaxed);
            let done = c.bytes_done.load(Ordering::Relaxed);
            let line = serde_json::json!({
                "message_type": "status",
                "seconds_elapsed": started.elapsed().as_secs_f64(),
                "files_done": c.files_done.load(Ordering::Relaxed),
                "bytes_done": done,
                "total_files": c.total_files.load(Ordering::Relaxed),
                "total_bytes": total,
                "scan_finished": c.scan_finished.load(Ordering::Relaxed),
                "percent_done": if total > 0 { (done as f64 / total as f64).min(1.0) } else { 0.0 },
            });
            println!("{line}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
