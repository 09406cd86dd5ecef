//! [`Child`]: a process the zygote started, with its pidfd; waiting, relaying
//! signals and killing go through the pidfd, never through a reusable pid.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use zygote_core::image::ImageKey;
use zygote_core::metrics::smaps::{ImageLayout, ProcessUsage};

use crate::ExitStatus;
use crate::process;

/// A started process.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    pidfd: OwnedFd,
    key: ImageKey,
    status: Option<ExitStatus>,
}

impl Child {
    pub(super) fn new(pid: i32, pidfd: OwnedFd, key: ImageKey) -> Self {
        Child { pid, pidfd, key, status: None }
    }
    pub fn pid(&self) -> i32 {
        self.pid
    }
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }
    /// The image the process was started from.
    pub fn image_key(&self) -> &ImageKey {
        &self.key
    }
    /// Wait for the process to end and reap it (idempotent).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = process::wait_pidfd(self.pidfd.as_fd())?;
        self.status = Some(s);
        Ok(s)
    }
    /// Like [`Child::wait`], passing SIGINT, SIGTERM, SIGHUP and SIGQUIT that
    /// other processes send to the caller on to the child meanwhile.
    pub fn wait_relaying_signals(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let sigs = [
            rustix::process::Signal::INT,
            rustix::process::Signal::TERM,
            rustix::process::Signal::HUP,
            rustix::process::Signal::QUIT,
        ];
        let sigs = sigs.map(|s| s.as_raw());
        let s = process::wait_relaying(self.pidfd.as_fd(), &sigs)?;
        self.status = Some(s);
        Ok(s)
    }

    pub fn kill(&self, sig: i32) -> io::Result<()> {
        process::pidfd_kill(self.pidfd.as_fd(), sig)
    }
}

/// The kernel interface's view of a started process.
impl zygote_core::kernel::Process for Child {
    fn id(&self) -> u64 {
        self.pid as u64
    }
    fn wait(&mut self) -> io::Result<ExitStatus> {
        Child::wait(self)
    }
    fn kill(&self, signal: i32) -> io::Result<()> {
        Child::kill(self, signal)
    }
    fn measure(&self, layout: &ImageLayout) -> io::Result<Option<ProcessUsage>> {
        crate::smaps::measure(self.pid, Some(self.pidfd()), layout).map_err(io::Error::other)
    }
}
