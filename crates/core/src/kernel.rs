//! The kernel interface: what a backend provides so that the core can build
//! images and a service can start, wait for and measure processes. Linux
//! implements it in `zygote-linux` (memfds with seals, fds, the stub, pidfds,
//! `/proc`); Zircon implements it with VMOs, handles and `zx_process_*`.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::image::{FileIdentity, Image};
use crate::metrics::smaps::{ImageLayout, ProcessUsage};

/// What images need from a kernel: sealed memory objects, open files with an
/// identity, and randomness for load biases.
pub trait Kernel: Sized + Send + Sync + 'static {
    /// An immutable memory object that processes map copy-on-write (a sealed
    /// memfd; a VMO whose handles lack WRITE).
    type Object: SealedObject;
    /// An open file an image maps from (an fd; a VMO of the file).
    type File: fmt::Debug + Send + Sync;

    /// A sealed object holding exactly `bytes`, named `name` for diagnostics.
    fn seal(name: &str, bytes: &[u8]) -> io::Result<Self::Object>;
    /// A random value from the kernel's generator.
    fn random_u64() -> io::Result<u64>;
    /// What the kernel says about an open file now.
    fn identify(file: &Self::File) -> io::Result<FileIdentity>;
    /// What the kernel says about the file a path names now.
    fn identify_path(path: &Path) -> io::Result<FileIdentity>;
    /// Read `file` from `offset` until `buf` is full or the file ends; the
    /// number of bytes read.
    fn read_at(file: &Self::File, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Prepare a file for being held by a cached image for its lifetime (Linux
    /// moves the fd out of the low numbers a spawn assigns).
    fn keep(file: Self::File) -> Self::File {
        file
    }
}

/// A sealed memory object.
pub trait SealedObject: fmt::Debug + Send + Sync {
    /// Its size in bytes.
    fn len(&self) -> u64;
    /// Is it empty?
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Who a started process runs as: a user, its primary group and its
/// supplementary groups (a root daemon runs another user's programs as that
/// user).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Credentials<'a> {
    pub uid: u32,
    pub gid: u32,
    pub groups: &'a [u32],
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The status a shell reports: the exit code, or 128 + the signal number.
    pub fn shell_code(&self) -> i32 {
        match *self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }
    /// In words, for messages: `exited with status 3`, `killed by signal 9`.
    pub fn describe(&self) -> String {
        match *self {
            ExitStatus::Exited(c) => format!("exited with status {c}"),
            ExitStatus::Signaled(s) => format!("killed by signal {s}"),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exit status {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// A process a backend started from an image.
pub trait Process {
    /// The kernel's id for it (a pid; a koid).
    fn id(&self) -> u64;
    /// Wait for it to end and collect its status.
    fn wait(&mut self) -> io::Result<ExitStatus>;
    /// Send it `signal` (Zircon: any signal kills).
    fn kill(&self, signal: i32) -> io::Result<()>;
    /// Its mappings of `layout`, or `None` if it has ended.
    fn measure(&self, layout: &ImageLayout) -> io::Result<Option<ProcessUsage>>;
}

/// Map an image's plan into a fresh process and start it.
pub trait Starter<K: Kernel> {
    /// What a start needs besides the image: argv, environment, handles or
    /// fds, the program file, the caller's restrictions.
    type Options<'a>;
    type Process: Process;
    type Error: std::error::Error;
    fn start(&self, image: &Arc<Image<K>>, options: &Self::Options<'_>) -> Result<Self::Process, Self::Error>;
}
