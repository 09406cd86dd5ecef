//! `zygote experiment`'s instances: started by plain exec or from the zygote's image,
//! waited for until ready, measured, and always killed and reaped at the end.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zygote_linux::{SpawnRequest, Zygote};

use super::interrupt::{self, check_interrupt};
use super::report::{InstanceUsage, UsageSample};
use super::usage::{Usage, parse_rollup};
use super::{ExperimentError, ExperimentOptions, OUTPUT_TAIL, TICK};
use crate::launch::describe_std;
use crate::report::Method;

/// A started instance.
pub(super) enum Proc {
    Exec(std::process::Child),
    Zygote(zygote_linux::Child),
}

pub(super) struct Instance {
    /// 1-based, per method.
    index: usize,
    pid: i32,
    proc: Proc,
    /// Read end of its stdout, with `--ready-line`.
    stdout: Option<OwnedFd>,
    /// The line being read.
    line: Vec<u8>,
    /// The last bytes read, for messages.
    tail: Vec<u8>,
    ready: bool,
    reaped: bool,
}

impl Instance {
    /// How it ended, if it has (it is reaped then).
    fn ended(&mut self) -> Result<Option<String>, io::Error> {
        match &mut self.proc {
            Proc::Exec(c) => Ok(c.try_wait()?.map(|st| {
                self.reaped = true;
                describe_std(st)
            })),
            Proc::Zygote(c) => {
                if !pidfd_readable(c.pidfd())? {
                    return Ok(None);
                }
                let st = c.wait()?;
                self.reaped = true;
                Ok(Some(st.describe()))
            }
        }
    }

    fn output(&self) -> String {
        if self.tail.is_empty() {
            return String::new();
        }
        format!("; its last output: {:?}", String::from_utf8_lossy(&self.tail))
    }

    pub(super) fn feed(&mut self, bytes: &[u8], ready_line: &str) {
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > OUTPUT_TAIL {
            self.tail.drain(..self.tail.len() - OUTPUT_TAIL);
        }
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() < 64 * 1024 {
                    self.line.push(b);
                }
                continue;
            }
            if self.line.strip_suffix(b"\r").unwrap_or(&self.line).starts_with(ready_line.as_bytes()) {
                self.ready = true;
            }
            self.line.clear();
        }
    }

    fn kill(&self) {
        if self.reaped {
            return;
        }
        // Errors: it is gone already (a zombie still takes the signal; nothing to do).
        match &self.proc {
            Proc::Exec(c) => {
                let _ = rustix::process::Pid::from_raw(c.id() as i32)
                    .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::KILL));
            }
            Proc::Zygote(c) => {
                let _ = c.kill(libc::SIGKILL);
            }
        }
    }

    pub(super) fn reap(&mut self) -> io::Result<()> {
        if self.reaped {
            return Ok(());
        }
        match &mut self.proc {
            Proc::Exec(c) => c.wait().map(drop)?,
            Proc::Zygote(c) => c.wait().map(drop)?,
        }
        self.reaped = true;
        Ok(())
    }
}

/// Is the pidfd readable (its process exited)?
fn pidfd_readable(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    loop {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&zero)) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// What every spawn of a run shares.
pub(super) struct Launch<'a> {
    pub(super) label: String,
    pub(super) path: PathBuf,
    pub(super) opts: &'a ExperimentOptions,
    pub(super) zygote: &'a Zygote,
    pub(super) null: OwnedFd,
}

impl Launch<'_> {
    fn dup_null(&self) -> Result<OwnedFd, ExperimentError> {
        self.null.try_clone().map_err(|source| ExperimentError::Io { path: "/dev/null".into(), what: "dup", source })
    }

    /// A pipe for the instance's stdout, when readiness is a line.
    fn stdout_pipe(&self) -> Result<Option<(OwnedFd, OwnedFd)>, ExperimentError> {
        if self.opts.ready_line.is_none() {
            return Ok(None);
        }
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map(Some).map_err(|e| ExperimentError::Io {
            path: "pipe".into(),
            what: "creating the stdout pipe",
            source: e.into(),
        })
    }

    pub(super) fn start(&self, method: Method, index: usize) -> Result<Instance, ExperimentError> {
        let pipe = self.stdout_pipe()?;
        let (read_end, write_end) = match pipe {
            Some((r, w)) => (Some(r), w),
            None => (None, self.dup_null()?),
        };
        let (pid, proc) = match method {
            Method::Exec => {
                let mut cmd = Command::new(&self.path);
                cmd.arg0(&self.opts.program)
                    .args(&self.opts.args)
                    .stdin(Stdio::from(self.dup_null()?))
                    .stdout(Stdio::from(write_end))
                    .stderr(Stdio::from(self.dup_null()?));
                let child = cmd.spawn().map_err(|source| ExperimentError::Spawn {
                    program: self.label.clone(),
                    method,
                    index,
                    source,
                })?;
                // `cmd` holds the parent's copies of the child's stdio: close them now, so
                // the pipe sees EOF once the child is gone.
                drop(cmd);
                (child.id() as i32, Proc::Exec(child))
            }
            _ => {
                let req = SpawnRequest::new(self.path.clone())
                    .argv0(self.opts.program.clone())
                    .args(self.opts.args.iter().cloned())
                    .fd(self.dup_null()?, 0)
                    .fd(write_end, 1)
                    .fd(self.dup_null()?, 2);
                let child = self.zygote.spawn(req).map_err(|e| ExperimentError::ZygoteSpawn {
                    program: self.label.clone(),
                    index,
                    source: Box::new(e),
                })?;
                (child.pid(), Proc::Zygote(child))
            }
        };
        Ok(Instance {
            index,
            pid,
            proc,
            stdout: read_end,
            line: Vec::new(),
            tail: Vec::new(),
            ready: false,
            reaped: false,
        })
    }
}

/// The instances of one method; all killed and reaped on drop.
pub(super) struct InstanceSet {
    method: Method,
    pub(super) instances: Vec<Instance>,
}

impl InstanceSet {
    pub(super) fn new(method: Method) -> InstanceSet {
        InstanceSet { method, instances: Vec::new() }
    }

    pub(super) fn len(&self) -> usize {
        self.instances.len()
    }

    /// Kill every instance (SIGKILL), then reap them all.
    pub(super) fn stop(&mut self) -> Result<(), ExperimentError> {
        for i in &self.instances {
            i.kill();
        }
        let mut first_err = None;
        for mut i in self.instances.drain(..) {
            if let Err(source) = i.reap() {
                first_err.get_or_insert(ExperimentError::Wait {
                    what: self.method,
                    index: i.index,
                    pid: i.pid,
                    source,
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// An error for an instance that ended, or `Interrupted` if a signal asked us to stop
    /// (a terminal's Ctrl-C reaches the instances too).
    fn ended_error(&self, label: &str, i: &Instance, how: String) -> ExperimentError {
        // A terminal's Ctrl-C reaches the instances and us at once; give the thread that
        // sets the flag a moment before calling this an early exit.
        let deadline = Instant::now() + Duration::from_millis(200);
        while interrupt::pending().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(signal) = interrupt::pending() {
            return ExperimentError::Interrupted { signal };
        }
        ExperimentError::Exited {
            program: label.to_string(),
            method: self.method,
            index: i.index,
            pid: i.pid,
            how,
            output: i.output(),
        }
    }

    /// Every instance must still run.
    fn check_alive(&mut self, label: &str) -> Result<(), ExperimentError> {
        (0..self.instances.len()).try_for_each(|k| self.check_running(label, k))
    }

    /// How instance `k` ended, if it has (it is reaped then).
    fn ended(&mut self, k: usize) -> Result<Option<String>, ExperimentError> {
        let i = &mut self.instances[k];
        i.ended().map_err(|source| ExperimentError::Wait { what: self.method, index: i.index, pid: i.pid, source })
    }

    /// Instance `k` must still run.
    fn check_running(&mut self, label: &str, k: usize) -> Result<(), ExperimentError> {
        match self.ended(k)? {
            Some(how) => Err(self.ended_error(label, &self.instances[k], how)),
            None => Ok(()),
        }
    }

    /// Wait until the instances from `from` on are ready (docs/TOOLS.md, Readiness).
    pub(super) fn wait_ready(
        &mut self,
        from: usize,
        label: &str,
        opts: &ExperimentOptions,
    ) -> Result<(), ExperimentError> {
        let Some(ready_line) = opts.ready_line.as_deref() else {
            let start = Instant::now();
            while start.elapsed() < opts.settle {
                check_interrupt()?;
                std::thread::sleep(TICK.min(opts.settle.saturating_sub(start.elapsed())));
            }
            check_interrupt()?;
            return self.check_alive(label);
        };
        let start = Instant::now();
        loop {
            check_interrupt()?;
            let pending: Vec<usize> = (from..self.instances.len()).filter(|&k| !self.instances[k].ready).collect();
            let Some(&first) = pending.first() else { return Ok(()) };
            let waited = start.elapsed();
            if waited >= opts.ready_timeout {
                let i = &self.instances[first];
                return Err(ExperimentError::NotReady {
                    program: label.to_string(),
                    method: self.method,
                    index: i.index,
                    pid: i.pid,
                    why: format!("printed no line starting with {ready_line:?} within {:?}", opts.ready_timeout),
                    output: i.output(),
                });
            }
            let readable = self.poll_stdout(&pending, TICK.min(opts.ready_timeout - waited))?;
            for k in readable {
                let mut buf = [0u8; 4096];
                let i = &mut self.instances[k];
                let Some(fd) = i.stdout.as_ref() else { continue };
                let n = match rustix::io::read(fd, &mut buf) {
                    Ok(n) => n,
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                    Err(e) => {
                        return Err(ExperimentError::Io {
                            path: format!("stdout of pid {}", i.pid).into(),
                            what: "read",
                            source: e.into(),
                        });
                    }
                };
                if n == 0 {
                    // EOF: it closed its stdout (or ended) without the line.
                    i.stdout = None;
                    let ended = self.ended(k)?;
                    let i = &self.instances[k];
                    return Err(match ended {
                        Some(how) => self.ended_error(label, i, how),
                        None => ExperimentError::NotReady {
                            program: label.to_string(),
                            method: self.method,
                            index: i.index,
                            pid: i.pid,
                            why: format!("closed its stdout without printing a line starting with {ready_line:?}"),
                            output: i.output(),
                        },
                    });
                }
                i.feed(&buf[..n], ready_line);
            }
        }
    }

    /// Indices (among `pending`) whose stdout is readable or closed, waiting up to `limit`.
    fn poll_stdout(&self, pending: &[usize], limit: Duration) -> Result<Vec<usize>, ExperimentError> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let with_fd: Vec<usize> = pending.iter().copied().filter(|&k| self.instances[k].stdout.is_some()).collect();
        let mut fds: Vec<PollFd<'_>> = with_fd
            .iter()
            .filter_map(|&k| self.instances[k].stdout.as_ref().map(|fd| PollFd::new(fd, PollFlags::IN)))
            .collect();
        let ts = Timespec { tv_sec: limit.as_secs() as i64, tv_nsec: i64::from(limit.subsec_nanos()) };
        match poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(ExperimentError::Io { path: "stdout pipes".into(), what: "poll", source: e.into() }),
        }
        Ok(with_fd.into_iter().zip(fds.iter()).filter(|(_, f)| !f.revents().is_empty()).map(|(k, _)| k).collect())
    }

    /// Measure every instance (all must still run, before and after the read).
    pub(super) fn measure(&mut self, label: &str) -> Result<UsageSample, ExperimentError> {
        let mut processes = Vec::with_capacity(self.instances.len());
        let mut total = Usage::default();
        for k in 0..self.instances.len() {
            check_interrupt()?;
            let i = &self.instances[k];
            let path = PathBuf::from(format!("/proc/{}/smaps_rollup", i.pid));
            let measure_err = |why: String| ExperimentError::Measure {
                program: label.to_string(),
                method: self.method,
                index: i.index,
                pid: i.pid,
                path: path.clone(),
                why,
            };
            let text = fs::read_to_string(&path).map_err(|e| measure_err(e.to_string()));
            let usage = text.and_then(|t| parse_rollup(&t).map_err(measure_err));
            // A process that ended (a zombie reads as empty) is reported as such, even
            // when the read failed because of it.
            self.check_running(label, k)?;
            let usage = usage?;
            total.add(&usage);
            processes.push(InstanceUsage { pid: self.instances[k].pid, usage });
        }
        Ok(UsageSample { method: self.method, instances: processes.len(), processes, total })
    }
}

impl Drop for InstanceSet {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn ready_lines_match_at_the_start() {
        let null = OwnedFd::from(File::open("/dev/null").expect("/dev/null"));
        let child = Command::new("true").spawn().expect("spawn true");
        let mut i = Instance {
            index: 1,
            pid: child.id() as i32,
            proc: Proc::Exec(child),
            stdout: Some(null),
            line: Vec::new(),
            tail: Vec::new(),
            ready: false,
            reaped: false,
        };
        i.feed(b"starting\nrea", "ready");
        assert!(!i.ready);
        i.feed(b"dy 42\r\nmore", "ready");
        assert!(i.ready);
        let _ = i.reap();
    }
}
