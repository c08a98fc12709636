//! A command's standard output as a backup source (`lifeboat backup --command NAME -- CMD`).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use crate::read_ahead::ReadAhead;
use crate::SourceError;

/// How much of the end of the command's standard error the error message quotes.
const STDERR_TAIL: usize = 2048;

/// How long to wait, once the command has exited, for its standard error to close (a
/// process it left running may hold it open).
const STDERR_GRACE: Duration = Duration::from_secs(2);

/// How long the command's processes may keep its standard output open after the command
/// itself exited (`sh -c 'dump & exit'`): then they are killed, so the backup cannot hang.
const STDOUT_GRACE: Duration = Duration::from_secs(10);

/// The standard output of a running command. Reading it to the end waits for the command:
/// a non-zero exit or a signal turns the end into an error that quotes the command's last
/// words on standard error. Dropped before the end, the command is killed.
pub struct CommandStream {
    program: String,
    child: Child,
    stdout: ReadAhead,
    stderr: StderrTail,
    finished: bool,
    /// Set once the stream ended or was dropped: the exit watcher has nothing left to do.
    done: Arc<AtomicBool>,
}

impl CommandStream {
    /// Starts `command` with standard input closed and standard output piped, in a process
    /// group of its own (so that stopping it stops what it started, `sh -c 'a | b'`), without
    /// lifeboat's own variables (its passwords are none of the command's business), and with
    /// a signal to end it should lifeboat die. Its standard error is passed on to ours, and
    /// its end kept for the error message.
    pub fn spawn(mut command: Command) -> Result<Self, SourceError> {
        // SAFETY: between fork and exec only async-signal-safe calls are allowed; prctl is
        // one. The signal is sent when the thread that started the command exits, which for
        // lifeboat is the main thread, that is when lifeboat itself ends.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(io::Error::from)
            });
        }
        let (program, mut child, stderr) = start(command, Stdio::null(), Stdio::piped())?;
        let Some(stdout) = child.stdout.take() else {
            return Err(abandon(program, child));
        };
        ReadAhead::widen_pipe(&stdout);
        let stdout = ReadAhead::new(stdout);
        let done = Arc::new(AtomicBool::new(false));
        watch_exit(child.id(), done.clone());
        Ok(CommandStream {
            program,
            child,
            stdout,
            stderr,
            finished: false,
            done,
        })
    }

    fn kill_group(&self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
    }

    fn finish(&mut self) -> io::Result<()> {
        self.finished = true;
        self.done.store(true, Ordering::SeqCst);
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

/// Starts `command` in a process group of its own, without lifeboat's variables, its
/// standard error piped into a [`StderrTail`].
fn start(
    mut command: Command,
    stdin: Stdio,
    stdout: Stdio,
) -> Result<(String, Child, StderrTail), SourceError> {
    let program = command.get_program().to_string_lossy().into_owned();
    without_lifeboat_variables(&mut command);
    command.process_group(0);
    let mut child = command
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SourceError::Spawn {
            program: program.clone(),
            source,
        })?;
    let Some(stderr) = child.stderr.take() else {
        return Err(abandon(program, child));
    };
    Ok((program, child, StderrTail::start(stderr)))
}

/// Stops a command whose pipes were not opened.
fn abandon(program: String, mut child: Child) -> SourceError {
    let _ = child.kill();
    let _ = child.wait();
    SourceError::Spawn {
        program,
        source: io::Error::other("its pipes were not opened"),
    }
}

/// Removes lifeboat's own variables (`LIFEBOAT_PASSWORD`, ...) from what `command` inherits.
pub(crate) fn without_lifeboat_variables(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LIFEBOAT_") {
            command.env_remove(&name);
        }
    }
}

fn failure_message(program: &str, status: ExitStatus, stderr_tail: &str) -> String {
    format!("`{program}` {}", exit_message(status, stderr_tail))
}

/// "failed (exit status: 1): ERROR ..." with the end of the command's standard error.
fn exit_message(status: ExitStatus, stderr_tail: &str) -> String {
    let mut message = format!("failed ({status})");
    let tail = stderr_tail.trim();
    if !tail.is_empty() {
        message.push_str(": ");
        message.push_str(tail);
    }
    message
}

/// A command started on the first read of its output, so that a source of several dumps runs
/// them as they are read (as many at once as the backup has readers), not all at the start.
pub struct DeferredCommand {
    command: Option<Command>,
    stream: Option<CommandStream>,
}

impl DeferredCommand {
    pub fn new(command: Command) -> Self {
        DeferredCommand {
            command: Some(command),
            stream: None,
        }
    }
}

impl Read for DeferredCommand {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(command) = self.command.take() {
            self.stream = Some(CommandStream::spawn(command).map_err(io::Error::other)?);
        }
        match &mut self.stream {
            Some(stream) => stream.read(buf),
            None => Err(io::Error::other("the command could not be started")),
        }
    }
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
        self.done.store(true, Ordering::SeqCst);
        if !self.finished {
            self.kill_group();
            let _ = self.child.wait();
        }
    }
}

/// Waits (without reaping it) for the command to exit; if its standard output is still open
/// [`STDOUT_GRACE`] later, kills its process group, which closes it and ends the stream.
fn watch_exit(pid: u32, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let pid = Pid::from_raw(pid as i32);
        if waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).is_err() {
            return;
        }
        let deadline = std::time::Instant::now() + STDOUT_GRACE;
        while std::time::Instant::now() < deadline {
            if done.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !done.load(Ordering::SeqCst) {
            // Not reaped yet (the stream is still reading), so the pid is still this group's.
            let _ = killpg(pid, Signal::SIGKILL);
        }
    });
}

/// A restore tool (`mariadb`, `pg_restore`, `psql`) fed on its standard input: what is written
/// goes to the command; [`CommandSink::finish`] closes its input and checks its exit. Its
/// standard output and error are passed on to ours, and the end of its standard error is
/// quoted when it fails. Dropped unfinished, the command is killed.
pub struct CommandSink {
    program: String,
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    stderr: StderrTail,
}

impl CommandSink {
    pub fn spawn(command: Command) -> Result<Self, SourceError> {
        let (program, mut child, stderr) = start(command, Stdio::piped(), Stdio::inherit())?;
        let Some(stdin) = child.stdin.take() else {
            return Err(abandon(program, child));
        };
        Ok(CommandSink {
            program,
            child,
            stdin: Some(stdin),
            stderr,
        })
    }

    /// Closes the command's input and waits for it: an error unless it exits 0.
    pub fn finish(mut self) -> Result<(), SourceError> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|source| SourceError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        let tail = self.stderr.end();
        if status.success() {
            return Ok(());
        }
        Err(SourceError::Failed {
            program: self.program.clone(),
            message: exit_message(status, &tail),
        })
    }

    /// Why writing failed: the command stopped reading, most often because it failed, and
    /// then its own words say more than "broken pipe".
    pub fn stopped_reading(mut self, error: io::Error) -> SourceError {
        drop(self.stdin.take());
        match self.child.wait() {
            Ok(status) if !status.success() => SourceError::Failed {
                program: self.program.clone(),
                message: exit_message(status, &self.stderr.end()),
            },
            _ => SourceError::Failed {
                program: self.program.clone(),
                message: format!("writing to it failed: {error}"),
            },
        }
    }
}

impl Write for CommandSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.stdin {
            Some(stdin) => stdin.write(buf),
            None => Err(io::Error::other("the command's input is closed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stdin {
            Some(stdin) => stdin.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for CommandSink {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            drop(self.stdin.take());
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Passes the command's standard error on to ours as it comes and keeps its last
/// [`STDERR_TAIL`] bytes (read in pieces, so a line without end holds no more memory).
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
            let mut stderr = stderr;
            let mut piece = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut piece) {
                if n == 0 {
                    break;
                }
                let _ = io::stderr().write_all(&piece[..n]);
                if let Ok(mut kept) = into.lock() {
                    kept.extend(piece[..n].iter().copied());
                    let excess = kept.len().saturating_sub(STDERR_TAIL);
                    kept.drain(..excess);
                }
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
    fn a_sink_passes_input_and_reports_the_exit() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out");
        let mut sink =
            CommandSink::spawn(sh(&format!("cat > '{}'", out.display()))).expect("starts");
        sink.write_all(b"restored").expect("write");
        sink.finish().expect("exit 0");
        assert_eq!(std::fs::read(&out).expect("out"), b"restored");

        let mut sink =
            CommandSink::spawn(sh("cat >/dev/null; echo 'ERROR 1049: no db' >&2; exit 1"))
                .expect("starts");
        sink.write_all(b"x").expect("write");
        let err = sink.finish().expect_err("exit 1");
        assert!(err.to_string().contains("ERROR 1049"), "{err}");
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
    fn a_deferred_command_starts_on_the_first_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("started");
        let mut deferred =
            DeferredCommand::new(sh(&format!("touch {}; echo out", marker.display())));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!marker.exists(), "not started before it is read");
        let mut out = Vec::new();
        deferred.read_to_end(&mut out).expect("reads");
        assert_eq!(out, b"out\n");
        assert!(marker.exists());
        let err = DeferredCommand::new(Command::new("/nonexistent/pg_dump"))
            .read_to_end(&mut Vec::new())
            .expect_err("cannot start");
        assert!(err.to_string().contains("cannot start"), "{err}");
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
    fn a_process_left_holding_the_output_does_not_hang_the_stream() {
        let started = std::time::Instant::now();
        let err = read_all("echo partial; sleep 60 & exit 4").expect_err("exit 4 fails");
        assert!(err.to_string().contains("exit status: 4"), "{err}");
        assert!(
            started.elapsed() < STDOUT_GRACE + Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_command_does_not_see_lifeboat_s_variables() {
        std::env::set_var("LIFEBOAT_PASSWORD", "secret-for-the-test");
        let out = read_all("env").expect("env runs");
        std::env::remove_var("LIFEBOAT_PASSWORD");
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("secret-for-the-test"), "{text}");
        assert!(text.contains("PATH="), "other variables stay");
    }

    #[test]
    fn dropping_the_stream_kills_the_whole_pipeline() {
        let dir = std::env::temp_dir().join(format!("lifeboat-cmd-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let marker = dir.join("survived");
        let script = format!(
            "echo started; (sleep 2; touch {}) & exec sleep 30",
            marker.display()
        );
        let mut stream = CommandStream::spawn(sh(&script)).expect("starts");
        let mut first = [0u8; 8];
        assert_eq!(stream.read(&mut first).expect("reads"), 8);
        drop(stream);
        std::thread::sleep(Duration::from_secs(3));
        assert!(!marker.exists(), "a process of the command outlived it");
        let _ = std::fs::remove_dir_all(&dir);
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
