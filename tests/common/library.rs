//! The in-process library harness: a `Zygote`, guarded children, spawning
//! with piped output, and following a live child's stdout line by line.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zygote_linux::{Child, ExitStatus, SpawnRequest, Zygote};

use super::{DEADLINE, Outcome, collect, dev_null, lib_shell_code, line_channel, pipe, spawn_reader};

/// A new `Zygote` with the default cache configuration.
pub fn new_zygote() -> Zygote {
    Zygote::new(zygote_core::CacheConfig::default()).expect("Zygote::new(CacheConfig::default())")
}

/// Kills (SIGKILL) and reaps a library child on drop unless it was waited for.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn new(c: Child) -> Self {
        ChildGuard(Some(c))
    }
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child already reaped")
    }
    pub fn pid(&self) -> i32 {
        self.0.as_ref().expect("child already reaped").pid()
    }
    /// Wait (with the safety deadline) and disarm the guard.
    pub fn wait(&mut self) -> ExitStatus {
        let st = wait_deadline(self.child(), DEADLINE);
        self.0 = None;
        st
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill(libc::SIGKILL);
            let _ = c.wait();
        }
    }
}

/// Wait for a library child, but SIGKILL it and panic if it has not exited
/// by `deadline` (a safety net against hangs, not a timing assertion).
pub fn wait_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    use rustix::event::{PollFd, PollFlags, poll};
    let start = Instant::now();
    loop {
        let exited = {
            let pidfd = child.pidfd();
            let mut fds = [PollFd::from_borrowed_fd(pidfd, PollFlags::IN)];
            let ts = rustix::event::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
            match poll(&mut fds, Some(&ts)) {
                Ok(n) => n > 0,
                Err(rustix::io::Errno::INTR) => false,
                Err(e) => panic!("poll(pidfd of {}): {e}", child.pid()),
            }
        };
        if exited {
            break;
        }
        if start.elapsed() > deadline {
            let pid = child.pid();
            let _ = child.kill(libc::SIGKILL);
            let _ = child.wait();
            panic!("child {pid} still running after {deadline:?}; killed");
        }
    }
    child.wait().expect("Child::wait")
}

/// Spawn via the library with stdin = /dev/null and stdout/stderr piped
/// back to the test; wait (with the safety deadline) and collect output.
pub fn lib_run(z: &Zygote, req: SpawnRequest) -> (ExitStatus, Outcome) {
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let req = req.fd(dev_null(), 0).fd(out_w, 1).fd(err_w, 2);
    let child = z.spawn(req).unwrap_or_else(|e| panic!("Zygote::spawn failed: {e}"));
    let mut g = ChildGuard::new(child);
    let out_rx = spawn_reader(fs::File::from(out_r));
    let err_rx = spawn_reader(fs::File::from(err_r));
    let st = g.wait();
    let outcome = Outcome {
        code: lib_shell_code(&st),
        stdout: collect(out_rx, "child stdout pipe"),
        stderr: collect(err_rx, "child stderr pipe"),
    };
    (st, outcome)
}

/// A library child whose stdout is piped to the test and read line by line.
pub struct LiveChild {
    pub guard: ChildGuard,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl LiveChild {
    /// Spawn `req` with stdin /dev/null, stdout piped, stderr inherited.
    pub fn spawn(z: &Zygote, req: SpawnRequest) -> LiveChild {
        Self::start(z, req, dev_null())
    }

    /// Like [`LiveChild::spawn`], with stdin a pipe whose write end is
    /// returned (write lines to it; drop it for EOF).
    pub fn spawn_with_stdin(z: &Zygote, req: SpawnRequest) -> (LiveChild, fs::File) {
        let (in_r, in_w) = pipe();
        (Self::start(z, req, in_r), fs::File::from(in_w))
    }

    fn start(z: &Zygote, req: SpawnRequest, stdin: OwnedFd) -> LiveChild {
        let (out_r, out_w) = pipe();
        let stderr: OwnedFd = io::stderr().as_fd().try_clone_to_owned().expect("dup stderr");
        let req = req.fd(stdin, 0).fd(out_w, 1).fd(stderr, 2);
        let child = z.spawn(req).unwrap_or_else(|e| panic!("Zygote::spawn failed: {e}"));
        LiveChild { guard: ChildGuard::new(child), lines: line_channel(fs::File::from(out_r)), seen: Vec::new() }
    }

    /// Wait until the child prints exactly `want` on a line; panics (the
    /// guard then kills it) if it exits or stays silent past the deadline.
    pub fn wait_for_line(&mut self, want: &str) {
        let start = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l == want;
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "pid {}: no {want:?} line within {DEADLINE:?}; output so far: {:?}",
                    self.guard.pid(),
                    self.seen
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("pid {}: stdout closed before {want:?}; output: {:?}", self.guard.pid(), self.seen)
                }
            }
        }
    }

    /// All remaining stdout lines (after the child exited).
    pub fn rest(&mut self) -> Vec<String> {
        let start = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.seen.clone(),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("stdout pipe never reached EOF (write end leaked?)")
                }
            }
        }
    }
}

/// One-line summary of cache statistics for assertion messages.
pub fn stats_line(s: &zygote_core::CacheStats) -> String {
    format!(
        "entries={} bytes={} max_entries={} max_bytes={} hits={} misses={} evictions={} builds={}",
        s.entries, s.bytes, s.max_entries, s.max_bytes, s.hits, s.misses, s.evictions, s.builds
    )
}

/// Send `sig` to the child, panicking with context on failure.
pub fn signal(child: &Child, sig: i32) {
    child.kill(sig).unwrap_or_else(|e| panic!("kill({}, {sig}): {e}", child.pid()));
}

/// The cached image that spawns with no loader variables in their
/// environment (`env_clear`, no `LD_*`/`GLIBC_TUNABLES`) were started from.
/// (`Zygote::prepare` would key on this test process's environment, where
/// cargo sets LD_LIBRARY_PATH.) Panics unless it is a cache hit, so it is the
/// very image those spawns used.
pub fn cached_clear_env_image(z: &Zygote, prog: &Path) -> std::sync::Arc<zygote_linux::Image> {
    let before = z.stats();
    let img = z
        .prepare_for(prog, &zygote_linux::prototype::Environment { loader_env: &[], creds: None })
        .unwrap_or_else(|e| panic!("prepare_for({}): {e}", prog.display()));
    let after = z.stats();
    assert_eq!(
        (after.misses, after.builds, after.hits),
        (before.misses, before.builds, before.hits + 1),
        "{}: expected a cache hit for the image spawns used; before: {}; after: {}",
        prog.display(),
        stats_line(&before),
        stats_line(&after)
    );
    img
}
