//! The `lifeboat` binary: arguments in, library calls, results out. No backup logic here.

mod args;
mod commands;
mod open;
mod output;
mod progress;
mod written;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use lifeboat_core::Error as CoreError;

/// Exit codes (documented in docs/cli.md).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FATAL: u8 = 1;
    pub const PARTIAL: u8 = 3;
    pub const NO_REPOSITORY: u8 = 10;
    pub const WRONG_PASSWORD: u8 = 11;
    pub const LOCKED: u8 = 12;
}

fn exit_code_of(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(core) = cause.downcast_ref::<CoreError>() {
            return match core {
                CoreError::NoRepository { .. } => exit::NO_REPOSITORY,
                CoreError::WrongPassword { .. } => exit::WRONG_PASSWORD,
                CoreError::Locked { .. } => exit::LOCKED,
                _ => exit::FATAL,
            };
        }
    }
    exit::FATAL
}

/// Help and version go to stdout with exit 0; a usage error is a fatal error (exit 1), with
/// a JSON error line when --json was asked for.
fn usage_error(e: clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::from(exit::OK);
    }
    if std::env::args().any(|a| a == "--json") {
        let msg = serde_json::json!({"message_type": "error", "error": e.kind().to_string(), "detail": e.to_string(), "exit_code": exit::FATAL});
        println!("{msg}");
    }
    let _ = e.print();
    ExitCode::from(exit::FATAL)
}

/// glibc raises its mmap threshold each time a large block is freed, after which chunk and
/// pack buffers (1-16 MiB) come from the heap and are never given back: peak RSS of a backup
/// was 180 MiB with the dynamic threshold and 94 MiB with a fixed one (generated bench tree).
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// The error and its causes, `: `-separated like `{:#}`, leaving out a cause whose text the
/// message already holds (errors that print their source in their own message).
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// A line that says what to do when the repository itself could not be written: a read-only
/// file system, no permission, no space left (docs/reliability.md, "Environment faults").
fn storage_hint(error: &anyhow::Error) -> Option<String> {
    use lifeboat_core::storage::StorageError;
    let source = error.chain().find_map(|cause| {
        let storage = match cause.downcast_ref::<CoreError>() {
            Some(CoreError::Storage(e)) => Some(e),
            _ => cause.downcast_ref::<StorageError>(),
        };
        match storage {
            Some(StorageError::Io { source, .. }) => Some(source),
            _ => None,
        }
    })?;
    let reading = "snapshots, ls, find, diff, dump, restore, stats and check still read it \
                   (without a lock)";
    match source.raw_os_error() {
        Some(libc::EROFS) => Some(format!(
            "the repository is on a read-only file system: backup, forget, prune and repair \
             need to write to it; {reading}"
        )),
        Some(libc::EACCES | libc::EPERM) => Some(format!(
            "this user (uid {}) may not write to the repository: run as its owner, or fix its \
             permissions; {reading}",
            nix::unistd::geteuid()
        )),
        Some(libc::ENOSPC | libc::EDQUOT) => Some(format!(
            "the file system holding the repository is full: nothing was left half-written \
             (a backup's packs stored before the failure are reused by the next one if their \
             index file fitted); free space and run the command again; {reading}"
        )),
        _ => None,
    }
}

fn main() -> ExitCode {
    // Like other Unix tools, stop quietly when the reader of our output goes away
    // (`lifeboat ls latest | head`) instead of panicking on a write error.
    // SAFETY: setting a signal disposition to its default before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    return_large_buffers_to_the_system();
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match commands::run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let code = exit_code_of(&error);
            if cli.json {
                let msg = serde_json::json!({
                    "message_type": "error",
                    "error": error_text(&error),
                    "exit_code": code,
                });
                println!("{msg}");
            }
            eprintln!("lifeboat: error: {}", error_text(&error));
            if let Some(hint) = storage_hint(&error) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(code)
        }
    }
}
