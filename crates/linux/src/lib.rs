//! zygote's Linux backend: the [`Linux`] kernel (sealed memfds, fds,
//! getrandom), the embedded stub and its plans, clone+exec, pre-started
//! launchers, ptrace prototypes, caller restrictions, procfs and pidfds, the
//! memory cgroup's headroom, the in-process [`Zygote`], and the caller-side
//! client library ([`client`]). With the stub, the only code that is
//! `unsafe`; each module that needs it opts in.

#![deny(unsafe_code)]

pub mod account;
#[allow(unsafe_code)]
pub mod baseline;
pub mod cgroup;
#[allow(unsafe_code)]
pub mod client;
pub mod exec;
pub mod fd;
#[allow(unsafe_code)]
pub mod launcher;
pub mod memfd;
pub mod plan;
#[allow(unsafe_code)]
pub mod process;
pub mod procfs;
pub mod prototype;
#[allow(unsafe_code)]
pub mod ptrace;
#[allow(unsafe_code)]
pub mod restrictions;
pub mod smaps;
pub mod spawn;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use zygote_core::image::FileIdentity;

pub use memfd::SealedObject;
pub use spawn::{Child, Requester, SpawnError, SpawnRequest, StartOptions, Zygote};
pub use zygote_core::ExitStatus;

/// The Linux kernel as zygote-core sees it.
#[derive(Debug)]
pub struct Linux;

/// An image of Linux objects and files.
pub type Image = zygote_core::image::Image<Linux>;
/// The image cache over Linux objects.
pub type Cache = zygote_core::cache::Cache<Linux>;

impl zygote_core::Kernel for Linux {
    type Object = SealedObject;
    type File = OwnedFd;

    fn seal(name: &str, bytes: &[u8]) -> std::io::Result<SealedObject> {
        Ok(SealedObject::create(name, bytes)?)
    }
    fn random_u64() -> std::io::Result<u64> {
        Ok(random_u64()?)
    }
    fn identify(file: &OwnedFd) -> std::io::Result<FileIdentity> {
        Ok(identity_of(file)?)
    }
    fn identify_path(path: &std::path::Path) -> std::io::Result<FileIdentity> {
        Ok(identity_from_stat(&rustix::fs::stat(path)?))
    }
    fn read_at(file: &OwnedFd, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        Ok(fd::pread_full(file, buf, offset)?)
    }
    fn keep(file: OwnedFd) -> OwnedFd {
        process::high_fd(file)
    }
}

/// What the kernel says about an open file now.
pub fn identity_of(fd: impl AsFd) -> Result<FileIdentity, Errno> {
    Ok(identity_from_stat(&rustix::fs::fstat(fd)?))
}

/// A file identity from `stat` results.
pub fn identity_from_stat(st: &rustix::fs::Stat) -> FileIdentity {
    FileIdentity {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime: (st.st_mtime, st.st_mtime_nsec as i64),
        ctime: (st.st_ctime, st.st_ctime_nsec as i64),
        mode: st.st_mode,
    }
}

/// The stub binary, built by build.rs and embedded here.
pub static STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/zygote-stub"));
/// The thin exec client (`zygote-exec`), which `zygote install-links`
/// writes out: the caller-side path (docs/ARCHITECTURE.md, "Caller-side
/// spawning").
pub static EXEC_CLIENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/zygote-exec"));

/// The stub, held in a sealed executable memfd and exec'd with execveat.
#[derive(Debug)]
pub struct Stub {
    object: SealedObject,
}

impl Stub {
    pub fn load() -> Result<Self, Errno> {
        Ok(Stub { object: SealedObject::create_exec("zygote-stub", STUB)? })
    }
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.object.fd()
    }
}

/// `/dev/null`, open for reading and writing (CLOEXEC, as Rust opens files):
/// the stdio benchmarks and experiments give their programs.
pub fn dev_null() -> std::io::Result<std::os::fd::OwnedFd> {
    Ok(std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?.into())
}

/// 64 random bits from the kernel.
pub fn random_u64() -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    let mut filled = 0;
    while filled < b.len() {
        filled += rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(u64::from_le_bytes(b))
}
