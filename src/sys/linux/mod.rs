//! The Linux kernel layer: sealed memfds, the embedded stub, clone+exec,
//! pidfds, randomness. Everything above `sys` is kernel-neutral; this module and
//! the stub are the only places with `unsafe`.

pub mod baseline;
pub mod launcher;
pub mod memfd;
pub mod process;
pub mod ptrace;
pub mod restrictions;

use std::os::fd::BorrowedFd;

use rustix::io::Errno;

pub use memfd::SealedObject;
pub use process::ExitStatus;

/// The stub binary, built by build.rs and embedded here.
pub static STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/zygote-stub"));

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

/// Take ownership of an fd inherited at a known number (systemd socket
/// activation passes listeners from fd 3), if it is open.
pub fn claim_inherited_fd(fd: std::os::fd::RawFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only queries the fd table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the fd is open, and by the protocol that passed it nothing else in
    // this process owns it; this is called once per fd.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// The value of field `key` (without its colon) in a `/proc/PID/status`
/// text, trimmed: the one parser of those lines.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(str::trim)
}

/// A hexadecimal `/proc/PID/status` field (signal and capability masks).
pub fn status_mask(status: &str, key: &str) -> Option<u64> {
    status_field(status, key).and_then(|v| u64::from_str_radix(v, 16).ok())
}

/// Does this process hold CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN in its
/// effective set (what PR_SET_MM_MAP needs to change `/proc/self/exe`)?
pub fn may_set_exe() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_CHECKPOINT_RESTORE: u32 = 40;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    let eff = status_mask(&status, "CapEff").unwrap_or(0);
    eff & (1 << CAP_SYS_ADMIN) != 0 || eff & (1 << CAP_CHECKPOINT_RESTORE) != 0
}

/// Restore the default SIGPIPE disposition (Rust ignores it), so a command
/// writing into a closed pipe ends quietly, as other Unix tools do.
pub fn default_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_DFL installs no handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// `/dev/null`, open for reading and writing (CLOEXEC, as Rust opens files):
/// the stdio benchmarks and experiments give their programs.
pub fn dev_null() -> std::io::Result<std::os::fd::OwnedFd> {
    Ok(std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?.into())
}

/// Register an owned fd with the tokio reactor.
pub fn async_fd(fd: std::os::fd::OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: an OwnedFd keeps one fd number for its whole life and closes it
    // only when dropped, which deregisters it first (AsyncFd owns it).
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(std::io::Error::from)
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
