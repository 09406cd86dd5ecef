//! Pre-started launchers: stubs exec'd ahead of time, each waiting on a
//! control socket for one spawn (the stub's side is `stub/src/prestart.rs`).
//!
//! Exec is the costliest step of a spawn on a small machine: a new address
//! space, and (on a paravirtualised machine like the one this was measured on)
//! a page-table switch that costs tens of µs. A launcher takes it before the
//! request comes: a spawn hands the fds and the plan over with one `sendmsg`
//! and starts the next launcher while the program runs. Android's "USAP pool"
//! of pre-forked app processes is the same idea.
//!
//! A launcher is this process's child from the start, with every signal
//! blocked, an empty environment and only its control socket open. What it
//! carries from the moment it was started rather than from the spawn: its pid
//! and start time, rlimits, umask and ignored signal dispositions.

use std::ffi::{CString, c_char};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType, sendmsg, socketpair,
};
use zygote_plan::{HANDOVER_REPLICATE, MAX_HANDOVER_FDS, PRESTART_ARG};

use crate::process::{self, ChildSetup, ExecTarget};

/// A launcher's control socket goes just below this fd number (or below
/// the soft RLIMIT_NOFILE, if lower).
const CTL_FD_LIMIT: u64 = 1024;

/// One waiting launcher.
#[derive(Debug)]
pub struct Launcher {
    pid: i32,
    pidfd: Option<OwnedFd>,
    ctl: Option<OwnedFd>,
    /// It reported its warm-up done.
    ready: bool,
}

impl Launcher {
    /// Clone and exec the stub as a launcher whose control socket is fd
    /// `ctl_fd`. The caller must have blocked every signal.
    fn start(stub: BorrowedFd<'_>, nofile: Option<u64>, ctl_fd: RawFd) -> io::Result<Launcher> {
        let (ours, theirs) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
        let ours = process::high_fd(ours);
        let prestart = CString::new(PRESTART_ARG).map_err(io::Error::other)?;
        let ctl_arg = CString::new(ctl_fd.to_string()).map_err(io::Error::other)?;
        let argv: [*const c_char; 4] =
            [c"zygote-launcher".as_ptr(), prestart.as_ptr(), ctl_arg.as_ptr(), std::ptr::null()];
        let envp: [*const c_char; 1] = [std::ptr::null()];
        let placements = [(theirs.as_raw_fd(), ctl_fd)];
        let setup = ChildSetup {
            exec: ExecTarget::Stub(stub),
            argv: &argv,
            envp: &envp,
            cwd: None,
            placements: &placements,
            // A failure before the exec lands on the socket; the launcher is
            // then gone and its hand-over fails with EPIPE.
            status: theirs.as_fd(),
            creds: None,
            nofile,
            restrict: None,
        };
        let (pid, pidfd) = process::clone_exec(&setup)?;
        Ok(Launcher { pid, pidfd: Some(pidfd), ctl: Some(ours), ready: false })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Collect the warm-up's ready byte (waiting for it with `block`).
    /// `false`: the launcher is gone (its warm-up failed, or it was killed).
    fn check_ready(&mut self, block: bool) -> bool {
        if self.ready {
            return true;
        }
        let Some(ctl) = self.ctl.as_ref() else { return false };
        let flags = if block { rustix::net::RecvFlags::empty() } else { rustix::net::RecvFlags::DONTWAIT };
        let mut b = [0u8; 1];
        match crate::fd::retry(|| rustix::net::recv(ctl, &mut b, flags)) {
            Ok((1, _)) => {
                self.ready = true;
                true
            }
            Err(rustix::io::Errno::AGAIN) => true,
            _ => false,
        }
    }

    /// Have a warmed-up launcher fork its replacement before its spawn (see
    /// `zygote_plan::HANDOVER_REPLICATE`): `theirs` becomes the replacement's
    /// control socket; adopt it with [`Launcher::replica`].
    pub fn replicate(&self, theirs: BorrowedFd<'_>) -> io::Result<()> {
        self.send(&[(theirs.as_raw_fd(), 0)], HANDOVER_REPLICATE)
    }

    /// Give the launcher its fds: `(fd here, fd number there)`, in ascending
    /// target order; `status` indexes the status pipe among them (a warm-up
    /// has none). The plan must be among them at `PLAN_FD`.
    pub fn hand_over(&self, fds: &[(RawFd, RawFd)], status: Option<usize>) -> io::Result<()> {
        if fds.len() > MAX_HANDOVER_FDS || status.is_some_and(|s| s >= fds.len()) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        self.send(fds, status.map_or(u32::MAX, |s| s as u32))
    }

    fn send(&self, fds: &[(RawFd, RawFd)], status: u32) -> io::Result<()> {
        let ctl = self.ctl.as_ref().ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let mut payload = Vec::with_capacity(8 + 4 * fds.len());
        payload.extend_from_slice(&(fds.len() as u32).to_le_bytes());
        payload.extend_from_slice(&status.to_le_bytes());
        for &(_, target) in fds {
            payload.extend_from_slice(&target.to_le_bytes());
        }
        // SAFETY: the caller passes fds it holds open for the duration of
        // this call; sendmsg only reads them (the kernel dups them).
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|&(fd, _)| unsafe { BorrowedFd::borrow_raw(fd) }).collect();
        let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(borrowed.len()))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        crate::fd::retry(|| sendmsg(ctl, &[IoSlice::new(&payload)], &mut control, SendFlags::NOSIGNAL))?;
        Ok(())
    }

    /// The replacement a launcher forked when it took a spawn (see
    /// `zygote_plan::FLAG_REPLICATE`): its pid, sent on `parent_ctl` before
    /// the spawn's status pipe closed, and `ctl`, the other end of the socket
    /// it took as its control socket. `None` if it sent none (its fork failed).
    pub fn replica(parent_ctl: &OwnedFd, ctl: OwnedFd) -> Option<Launcher> {
        // Messages are whole (SEQPACKET): skip the warm-up's ready byte if no
        // one collected it, then the pid.
        let mut b = [0u8; 4];
        loop {
            match rustix::net::recv(parent_ctl, &mut b, rustix::net::RecvFlags::DONTWAIT) {
                Err(rustix::io::Errno::INTR) | Ok((1, _)) => continue,
                Ok((4, _)) => break,
                _ => return None,
            }
        }
        let pid = rustix::process::Pid::from_raw(u32::from_le_bytes(b) as i32)?;
        // Our child (CLONE_PARENT), not reaped yet: the pid names it.
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
        Some(Launcher { pid: pid.as_raw_nonzero().get(), pidfd: Some(pidfd), ctl: Some(ctl), ready: true })
    }

    /// The process, now the program's: its pid, its pidfd and our end of
    /// its control socket (keep it until the launch is confirmed, so that
    /// the last close, which costs, is not the launcher's).
    pub fn into_process(mut self) -> (i32, OwnedFd, Option<OwnedFd>) {
        let ctl = self.ctl.take();
        let pidfd = self.pidfd.take().expect("a launcher holds its pidfd until handed out");
        (self.pid, pidfd, ctl)
    }
}

impl Drop for Launcher {
    /// An unused launcher: closing its control socket makes it exit; reap it.
    fn drop(&mut self) {
        self.ctl = None;
        if let Some(pidfd) = self.pidfd.take() {
            let _ = process::wait_pidfd(pidfd.as_fd());
        }
    }
}

/// Idle launchers, each warmed up for one image (tagged with a `T` the
/// caller matches on), least recently started first, at most `capacity`.
#[derive(Debug)]
pub struct LauncherPool<T> {
    idle: Mutex<Vec<(T, Launcher)>>,
    capacity: AtomicUsize,
    /// The control socket's number in a launcher; the number below it holds
    /// the program file it keeps; every placement is below both.
    ctl_fd: RawFd,
    nofile: Option<u64>,
}

impl<T> LauncherPool<T> {
    /// A pool of at most `capacity` launchers. `nofile` is the RLIMIT_NOFILE
    /// soft limit programs get.
    pub fn new(capacity: usize, nofile: Option<u64>) -> Self {
        let soft = nofile.unwrap_or_else(|| {
            rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1 << 20)
        });
        // Low enough to keep the launcher's fd table small (closing ranges
        // costs in proportion to its size), high enough for the fds a spawn
        // places; a spawn with a higher target execs the stub instead.
        let ctl_fd = soft.min(CTL_FD_LIMIT) as RawFd - 1;
        let capacity = if ctl_fd < 64 { 0 } else { capacity };
        LauncherPool { idle: Mutex::new(Vec::new()), capacity: AtomicUsize::new(capacity), ctl_fd, nofile }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(T, Launcher)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Highest fd number a launcher can place (the three below its control
    /// fd are its own: the program file, a replacement's control socket).
    pub fn max_target(&self) -> RawFd {
        self.ctl_fd - 3
    }

    /// Where a warmed-up launcher keeps the program file.
    pub fn exe_fd(&self) -> RawFd {
        self.ctl_fd - 1
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Change the capacity; launchers beyond it are ended now.
    pub fn set_capacity(&self, n: usize) {
        let n = if self.ctl_fd < 64 { 0 } else { n };
        self.capacity.store(n, Ordering::Relaxed);
        drop(self.trim());
    }

    /// Take the oldest launchers out until at most `capacity` are idle. The
    /// caller ends them by dropping them, outside the lock.
    fn trim(&self) -> Vec<(T, Launcher)> {
        let mut idle = self.lock();
        let over = idle.len().saturating_sub(self.capacity());
        idle.drain(..over).collect()
    }

    /// Take out the launchers `out` picks (the caller ends or puts them back).
    fn remove_where(&self, out: impl Fn(&(T, Launcher)) -> bool) -> Vec<(T, Launcher)> {
        let mut idle = self.lock();
        let (gone, kept) = std::mem::take(&mut *idle).into_iter().partition(out);
        *idle = kept;
        gone
    }

    /// The idle launcher whose tag matches, if any.
    pub fn take(&self, matches: impl Fn(&T) -> bool) -> Option<Launcher> {
        let mut idle = self.lock();
        let at = idle.iter().position(|(t, _)| matches(t))?;
        Some(idle.remove(at).1)
    }

    /// Whether a launcher with a matching tag is idle.
    pub fn has(&self, matches: impl Fn(&T) -> bool) -> bool {
        self.lock().iter().any(|(t, _)| matches(t))
    }

    /// End the launchers whose tag fails `keep`.
    pub fn retain(&self, keep: impl Fn(&T) -> bool) {
        drop(self.remove_where(|(t, _)| !keep(t)));
    }

    /// Idle launchers now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    /// Pids of the idle launchers.
    pub fn pids(&self) -> Vec<i32> {
        self.lock().iter().map(|(_, l)| l.pid).collect()
    }

    /// Collect ready reports; with `block`, wait until every launcher has
    /// finished its warm-up. Launchers that are gone are reaped.
    pub fn settle(&self, block: bool) {
        let pending = self.remove_where(|(_, l)| !l.ready);
        let (live, gone): (Vec<_>, Vec<_>) =
            pending.into_iter().map(|(t, mut l)| (l.check_ready(block), (t, l))).partition(|(live, _)| *live);
        drop(gone);
        self.lock().extend(live.into_iter().map(|(_, e)| e));
    }

    /// Keep `l` under `tag`, ending the oldest one if the pool is full.
    pub fn add(&self, tag: T, l: Launcher) {
        self.lock().push((tag, l));
        drop(self.trim());
    }

    /// Start a launcher and hand it its warm-up (`fds` as for
    /// [`Launcher::hand_over`], without a status pipe), then keep it under
    /// `tag`, ending the oldest one if the pool is full. The caller must have
    /// blocked every signal.
    pub fn warm_up(&self, stub: BorrowedFd<'_>, tag: T, fds: &[(RawFd, RawFd)]) -> io::Result<()> {
        if self.capacity() == 0 {
            return Ok(());
        }
        let l = Launcher::start(stub, self.nofile, self.ctl_fd)?;
        l.hand_over(fds, None)?;
        self.add(tag, l);
        Ok(())
    }
}

/// Whether `fd` is open in this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the fd table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}
