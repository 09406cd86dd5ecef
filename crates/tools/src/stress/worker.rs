//! `zygote stress`'s rounds: the programs prepared (run once directly for the expected
//! output, their images' fds counted), and a client thread's `Spawn`, `Wait`, stdout
//! to EOF and check.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use zygote_core::CacheConfig;
use zygote_linux::Zygote;
use zygote_linux::exec as resolve;
use zygote_protocol::client::{Client, ClientError};
use zygote_protocol::message::Request;

use super::options::{MAX_STDOUT, ProgramSpec, ROUND_TIMEOUT, StressError, io_err};
use crate::client::{self, Exit};
use crate::launch::{Env, describe_std, spawn_request};
use crate::report::{Outcome, Tally};

/// A program, with everything the rounds need built once.
pub(super) struct Program {
    pub(super) label: String,
    pub(super) daemon_path: PathBuf,
    request: Request,
    pub(super) expected: Vec<u8>,
    pub(super) image_fds: usize,
    pub(super) image_objects: usize,
}

/// Resolve, run directly, and count the image's fds, for every entry; and the number of
/// distinct images.
pub(super) fn prepare(specs: &[ProgramSpec]) -> Result<(Vec<Program>, usize), StressError> {
    let cwd = std::env::current_dir().map_err(|source| StressError::Cwd { source })?;
    let env = Env::current();
    let zygote = Zygote::new(CacheConfig::default())
        .map_err(|e| StressError::Prepare { program: "(the stub)".into(), source: Box::new(e) })?;
    let mut keys = BTreeSet::new();
    let mut programs = Vec::with_capacity(specs.len());
    for spec in specs {
        let label = spec.label();
        let found = resolve::find_program(&spec.program, env.path.as_deref(), Some(&cwd))
            .map_err(|source| StressError::Resolve { program: label.clone(), source })?;
        let mut argv = vec![spec.program.clone()];
        argv.extend(spec.args.iter().cloned());
        let launch = resolve::follow_interpreters(found, argv, Some(&cwd))
            .map_err(|source| StressError::Resolve { program: label.clone(), source })?;

        let out = Command::new(&spec.program)
            .args(&spec.args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|source| StressError::DirectRun { program: label.clone(), source })?;
        if !out.status.success() {
            return Err(StressError::DirectStatus { program: label, how: describe_std(out.status) });
        }

        let image = zygote
            .prepare(&launch.program)
            .map_err(|e| StressError::Prepare { program: label.clone(), source: Box::new(e) })?;
        keys.insert(image.key().to_string());
        programs.push(Program {
            label,
            request: spawn_request(&launch, &env.environ, &cwd),
            daemon_path: launch.program,
            expected: out.stdout,
            image_fds: image.objects().len() + image.files().len(),
            image_objects: image.objects().len(),
        });
    }
    Ok((programs, keys.len()))
}

/// How one round ended.
struct RoundResult {
    outcome: Outcome,
    key: Option<String>,
    /// The connection is in an unknown state: make a new one.
    reconnect: bool,
}

impl RoundResult {
    fn failed(how: String, key: Option<String>) -> RoundResult {
        RoundResult { outcome: Outcome::failed(how), key, reconnect: false }
    }
}

/// Read `fd` to EOF (keeping at most [`MAX_STDOUT`] bytes) until `deadline`.
/// `Ok((bytes, overflowed, eof))`.
fn drain(fd: &OwnedFd, deadline: Instant) -> io::Result<(Vec<u8>, bool, bool)> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut out = Vec::new();
    let mut overflow = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((out, overflow, false));
        }
        let ts = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return Ok((out, overflow, true)),
            Ok(n) => {
                let keep = n.min(MAX_STDOUT.saturating_sub(out.len()));
                out.extend_from_slice(&buf[..keep]);
                overflow |= keep < n;
            }
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// How `got` differs from `want`, for a failure message.
fn difference(got: &[u8], want: &[u8]) -> String {
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    let show = |b: &[u8]| {
        let end = (at + 40).min(b.len());
        format!("{:?}", String::from_utf8_lossy(&b[at.min(end)..end]))
    };
    format!(
        "stdout differs from the direct run's at byte {at} ({} bytes, expected {}): got {}, expected {}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    )
}

/// What a client did: its rounds, and the daemon's keys of the images it started.
#[derive(Default)]
pub(super) struct ClientTally {
    pub(super) tally: Tally,
    pub(super) keys: BTreeMap<usize, String>,
}

/// A client thread's connection and open files.
pub(super) struct Worker {
    index: usize,
    socket: PathBuf,
    client: Client,
    exes: Vec<OwnedFd>,
    null: OwnedFd,
}

impl Worker {
    pub(super) fn connect(index: usize, socket: &Path, programs: &[Program]) -> Result<Worker, StressError> {
        let client = Client::connect(socket)
            .map_err(|source| StressError::Client { what: format!("client {index}: connecting"), source })?;
        let exes = client::open_all(programs.iter().map(|p| p.daemon_path.as_path())).map_err(|(i, source)| {
            let p = &programs[i];
            StressError::Open { program: p.label.clone(), path: p.daemon_path.clone(), source }
        })?;
        let null = zygote_linux::dev_null().map_err(io_err("opening /dev/null"))?;
        Ok(Worker { index, socket: socket.to_path_buf(), client, exes, null })
    }

    /// `Spawn`, `Wait`, stdout to EOF, and the check.
    fn round(&mut self, p: &Program, index: usize) -> Result<RoundResult, ClientError> {
        let exe = self.exes.get(index).ok_or_else(|| ClientError::Protocol(format!("no program {index}")))?;
        let (out_r, out_w) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| ClientError::Io(e.into()))?;
        let null = self.null.as_fd();
        let start = Instant::now();
        self.client.send(&p.request, &[exe.as_fd(), null, out_w.as_fd(), null])?;
        // Ours closed, only the child's copy keeps the pipe open.
        drop(out_w);
        let (pid, key, pidfd) = match client::recv_spawned(&mut self.client)? {
            Ok(spawned) => spawned,
            Err(r) => return Ok(RoundResult::failed(r.describe("Spawn"), None)),
        };
        let call = start.elapsed();
        self.client.send(&Request::Wait { pid }, &[])?;
        let (stdout, overflow, eof) = drain(&out_r, start + ROUND_TIMEOUT)?;
        if !eof {
            let how = format!("pid {pid}: no EOF on its stdout within {ROUND_TIMEOUT:?}");
            return Ok(RoundResult { reconnect: true, ..RoundResult::failed(how, Some(key)) });
        }
        let exit = match client::recv_exited(&mut self.client)? {
            Ok(exit) => exit,
            Err(r) => return Ok(RoundResult::failed(format!("pid {pid}: {}", r.describe("Wait")), Some(key))),
        };
        let total = start.elapsed();
        drop(pidfd);
        let status = match exit {
            Exit::Code(0) => None,
            Exit::Code(c) => Some(format!("pid {pid} exited with status {c}")),
            Exit::Signal(s) => Some(format!("pid {pid} was killed by signal {s}")),
            Exit::Unknown => Some(format!("pid {pid} ended, the daemon could not tell how")),
        };
        let failure = status.or_else(|| {
            if overflow {
                Some(format!("pid {pid}: more than {MAX_STDOUT} bytes on stdout"))
            } else if stdout != p.expected {
                Some(format!("pid {pid}: {}", difference(&stdout, &p.expected)))
            } else {
                None
            }
        });
        // Only rounds that passed are timed.
        let times = Some((call, total)).filter(|_| failure.is_none());
        Ok(RoundResult { outcome: Outcome { times, failure }, key: Some(key), reconnect: false })
    }

    /// `rounds` rounds: client `index`'s cycle through the programs (`cycle`), or each
    /// program in order.
    pub(super) fn run(
        &mut self,
        programs: &[Program],
        rounds: usize,
        cycle: bool,
        t: &mut ClientTally,
    ) -> Result<(), StressError> {
        for r in 0..rounds {
            let index = if cycle { (self.index + r) % programs.len() } else { r % programs.len() };
            let p = &programs[index];
            let res = self.round(p, index).map_err(|source| StressError::Client {
                what: format!("client {}, {}", self.index, p.label),
                source,
            })?;
            if let Some(k) = res.key {
                t.keys.entry(index).or_insert(k);
            }
            t.tally.record(index, res.outcome, |f| format!("client {}, {}: {f}", self.index, p.label));
            if res.reconnect {
                // Dropping the old connection makes the daemon kill what it started.
                self.client = Client::connect(&self.socket).map_err(|source| StressError::Client {
                    what: format!("client {}: reconnecting", self.index),
                    source,
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_located() {
        let d = difference(b"hello world", b"hello there");
        assert!(d.contains("at byte 6") && d.contains("world") && d.contains("there"), "{d}");
        let d = difference(b"abc", b"abcdef");
        assert!(d.contains("at byte 3") && d.contains("3 bytes, expected 6"), "{d}");
    }
}
