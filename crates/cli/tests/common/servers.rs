//! Servers the tests start (Garage, Azurite, ...): on free loopback ports, killed with the
//! test process.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Spawns the server from a thread that lives as long as the process: the child is killed
/// (PR_SET_PDEATHSIG) when its parent thread ends, i.e. when the test process does.
pub fn spawn_server(mut command: Command, log: &Path) -> u32 {
    let (tx, rx) = std::sync::mpsc::channel();
    let log = log.to_path_buf();
    std::thread::spawn(move || {
        let log = std::fs::File::create(&log).expect("server log");
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        // SAFETY: prctl only changes a property of the new process before exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start server");
        let _ = tx.send(child.id());
        let _ = child.wait();
        // Keep this thread (the child's parent) alive until the process ends.
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("server spawned")
}

/// Waits until something listens on `port` of 127.0.0.1.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
