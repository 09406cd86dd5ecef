//! `zygote bench`'s spawners: one spawn-and-wait round by each method, timed from the
//! spawn call to the reaped child, with everything else prepared before.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Instant;

use zygote_linux::baseline::{self, Baseline};
use zygote_linux::{ExitStatus, SpawnRequest, Zygote};

use super::{BenchError, Round};
use crate::report::{Method, Outcome};

/// Everything a round needs, prepared once.
pub(super) struct Bench<'a> {
    pub(super) zygote: &'a Zygote,
    pub(super) label: String,
    pub(super) path: PathBuf,
    pub(super) argv: Vec<OsString>,
    pub(super) null: OwnedFd,
    pub(super) baseline: Baseline,
}

impl Bench<'_> {
    /// One zygote spawn and wait.
    pub(super) fn zygote(&self, round: Round) -> Result<Outcome, BenchError> {
        // Prepare the request, stdio fds included, before the clock starts (the baselines
        // build theirs once, in `Baseline::new`).
        let dup = || self.null.try_clone().map_err(|source| BenchError::DevNull { source });
        let (fd0, fd1, fd2) = (dup()?, dup()?, dup()?);
        let mut argv = self.argv.iter();
        let argv0 = argv.next().cloned().unwrap_or_default();
        let req =
            SpawnRequest::new(self.path.clone()).argv0(argv0).args(argv.cloned()).fd(fd0, 0).fd(fd1, 1).fd(fd2, 2);

        let start = Instant::now();
        let mut child = self.zygote.spawn(req).map_err(|e| BenchError::ZygoteSpawn {
            program: self.label.clone(),
            round,
            source: Box::new(e),
        })?;
        let call = start.elapsed();
        let status = child.wait().map_err(|source| BenchError::Wait {
            program: self.label.clone(),
            method: Method::Zygote,
            round,
            source,
        })?;
        // The launcher warming up for the next spawn is this spawn's work:
        // timed here, and finished before another method runs.
        self.zygote.settle_launchers();
        let total = start.elapsed();
        let failure = match status {
            ExitStatus::Exited(0) => None,
            other => Some(other.describe()),
        };
        Ok(Outcome::ended(call, total, failure))
    }

    /// One baseline spawn and wait.
    fn baseline(&mut self, method: Method, round: Round) -> Result<Outcome, BenchError> {
        let start = Instant::now();
        let pid = match method {
            Method::VforkExec => self.baseline.vfork_exec(),
            _ => self.baseline.posix_spawn(),
        }
        .map_err(|source| BenchError::Spawn { program: self.label.clone(), method, round, source })?;
        let call = start.elapsed();
        let status = baseline::wait_pid(pid).map_err(|source| BenchError::Wait {
            program: self.label.clone(),
            method,
            round,
            source,
        })?;
        let total = start.elapsed();
        let failure = (!baseline::wait_status_success(status)).then(|| baseline::describe_wait_status(status));
        Ok(Outcome::ended(call, total, failure))
    }

    /// One `std::process::Command` spawn and wait, same argv, environment and
    /// /dev/null stdio.
    fn command(&mut self, round: Round) -> Result<Outcome, BenchError> {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut argv = self.argv.iter();
        let argv0 = argv.next().cloned().unwrap_or_default();
        let mut cmd = std::process::Command::new(&self.path);
        cmd.arg0(argv0)
            .args(argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(|source| BenchError::Spawn {
            program: self.label.clone(),
            method: Method::Command,
            round,
            source,
        })?;
        let call = start.elapsed();
        let status = child.wait().map_err(|source| BenchError::Wait {
            program: self.label.clone(),
            method: Method::Command,
            round,
            source,
        })?;
        let total = start.elapsed();
        let failure = (!status.success()).then(|| baseline::describe_wait_status(status.into_raw()));
        Ok(Outcome::ended(call, total, failure))
    }

    pub(super) fn spawn(&mut self, method: Method, round: Round) -> Result<Outcome, BenchError> {
        match method {
            Method::Zygote => self.zygote(round),
            Method::Command => self.command(round),
            _ => self.baseline(method, round),
        }
    }
}
