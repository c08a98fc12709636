//! A command's standard output as a backup source (`lifeboat backup --command NAME -- CMD`).

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::SourceError;

/// How much of the end of the command's standard error the error message quotes.
const STDERR_TAIL: usize = 2048;

/// How long to wait, once the command has exited, for its standard error to close (a
/// process it left running may hold it open).
const STDERR_GRACE: Duration = Duration::from_secs(2);

/// The standard output of a running command. Reading it to the end waits for the command:
/// a non-zero exit or a signal turns the end into an error that quotes the command's last
/// words on standard error. Dropped before the end, the command is killed.
pub struct CommandStream {
    program: String,
    child: Child,
    stdout: ChildStdout,
    stderr: StderrTail,
    finished: bool,
}

impl CommandStream {
    /// Starts `command` with standard input closed and standard output piped. Its standard
    /// error is passed on to ours line by line, and its end kept for the error message.
    pub fn spawn(mut command: Command) -> Result<Self, SourceError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| SourceError::Spawn {
                program: program.clone(),
                source,
            })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SourceError::Spawn {
                program,
                source: io::Error::other("its output pipes were not opened"),
            });
        };
        Ok(CommandStream {
            program,
            child,
            stdout,
            stderr: StderrTail::start(stderr),
            finished: false,
        })
    }

    fn finish(&mut self) -> io::Result<()> {
        self.finished = true;
        let status = self.child.wait()?;
        let tail = self.stderr.end();
        if status.success() {
            return Ok(());
        }
        Err(io::Error::other(failure_message(
            &self.program,
            status,
            &tail,
        )))
    }
}

fn failure_message(program: &str, status: ExitStatus, stderr_tail: &str) -> String {
    let mut message = format!("`{program}` failed ({status})");
    let tail = stderr_tail.trim();
    if !tail.is_empty() {
        message.push_str(": ");
        message.push_str(tail);
    }
    message
}

impl Read for CommandStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.finish()?;
        }
        Ok(n)
    }
}

impl Drop for CommandStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Passes the command's standard error on to ours and keeps its last [`STDERR_TAIL`] bytes.
struct StderrTail {
    kept: Arc<Mutex<VecDeque<u8>>>,
    closed: mpsc::Receiver<()>,
}

impl StderrTail {
    fn start(stderr: std::process::ChildStderr) -> Self {
        let kept = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let (done, closed) = mpsc::channel();
        let into = kept.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr);
            let mut line = Vec::new();
            while matches!(lines.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let _ = io::stderr().write_all(&line);
                if let Ok(mut kept) = into.lock() {
                    kept.extend(line.iter().copied());
                    let excess = kept.len().saturating_sub(STDERR_TAIL);
                    kept.drain(..excess);
                }
                line.clear();
            }
            let _ = done.send(());
        });
        StderrTail { kept, closed }
    }

    /// What was kept, once standard error closed or [`STDERR_GRACE`] passed.
    fn end(&self) -> String {
        let _ = self.closed.recv_timeout(STDERR_GRACE);
        let kept = match self.kept.lock() {
            Ok(kept) => kept.iter().copied().collect::<Vec<u8>>(),
            Err(_) => Vec::new(),
        };
        String::from_utf8_lossy(&kept).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    fn read_all(script: &str) -> io::Result<Vec<u8>> {
        let mut stream = CommandStream::spawn(sh(script)).expect("sh starts");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn a_command_that_succeeds_gives_its_whole_output() {
        let out = read_all("printf 'one\\n'; printf 'two\\n'").expect("exit 0");
        assert_eq!(out, b"one\ntwo\n");
    }

    #[test]
    fn a_non_zero_exit_is_an_error_that_quotes_standard_error() {
        let err = read_all("echo partial; echo 'dump: connection refused' >&2; exit 3")
            .expect_err("exit 3 fails");
        let text = err.to_string();
        assert!(text.contains("`sh` failed (exit status: 3)"), "{text}");
        assert!(text.contains("connection refused"), "{text}");
    }

    #[test]
    fn a_command_killed_by_a_signal_is_an_error() {
        let err = read_all("echo partial; kill -9 $$").expect_err("killed fails");
        assert!(err.to_string().contains("signal: 9"), "{err}");
    }

    #[test]
    fn only_the_end_of_a_long_standard_error_is_quoted() {
        let err = read_all(
            "i=0; while [ $i -lt 400 ]; do echo \"noise line $i\" >&2; i=$((i+1)); done; exit 1",
        )
        .expect_err("exit 1 fails");
        let text = err.to_string();
        assert!(text.contains("noise line 399"), "{text}");
        assert!(!text.contains("noise line 1\n"), "{text}");
        assert!(text.len() < STDERR_TAIL + 200, "{} bytes", text.len());
    }

    #[test]
    fn a_missing_program_cannot_start() {
        let err = CommandStream::spawn(Command::new("/nonexistent/dump-tool"))
            .err()
            .expect("spawn fails");
        let text = err.to_string();
        assert!(
            text.contains("cannot start `/nonexistent/dump-tool`"),
            "{text}"
        );
    }

    #[test]
    fn dropping_the_stream_early_kills_the_command() {
        let mut stream = CommandStream::spawn(sh("echo started; exec sleep 30")).expect("starts");
        let mut first = [0u8; 8];
        assert_eq!(stream.read(&mut first).expect("reads"), 8);
        let pid = nix::unistd::Pid::from_raw(stream.child.id() as i32);
        let started = std::time::Instant::now();
        drop(stream);
        assert!(started.elapsed() < Duration::from_secs(10));
        // Reaped: the pid no longer names our child.
        assert!(nix::sys::wait::waitpid(pid, None).is_err());
    }
}
