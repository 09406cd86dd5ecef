//! Starting the stub in a fresh process without forking the caller, and
//! waiting for it.
//!
//! `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` runs a tiny child on a
//! separate stack in the caller's address space (so the cost does not grow with
//! the caller's memory, unlike fork), places the fds, changes directory and
//! execs the stub from its sealed memfd. Every signal stays blocked from before
//! the clone until the stub installs the caller's mask right before the jump, so
//! no handler of the caller can ever run in the shared address space.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use zygote_core::{Credentials, ExitStatus};

use zygote_plan::{STUB_FAILURE_EXIT, Stage, StatusRecord};

/// What the pre-exec child execs.
pub enum ExecTarget<'a> {
    /// The stub, from its memfd; it restores the signal mask itself and closes
    /// every fd that is not wanted.
    Stub(BorrowedFd<'a>),
    /// The program itself (plain exec, for programs that cannot be imaged):
    /// the child resets handled signals to their defaults, marks every fd
    /// that is not a placement close-on-exec and restores `sigmask`.
    Program { file: BorrowedFd<'a>, sigmask: &'a libc::sigset_t, keep: &'a [RawFd] },
}

impl ExecTarget<'_> {
    /// The file to exec.
    fn fd(&self) -> RawFd {
        match self {
            ExecTarget::Stub(fd) | ExecTarget::Program { file: fd, .. } => fd.as_raw_fd(),
        }
    }
}

/// Everything the pre-exec child needs, prepared by the parent: the child may
/// not allocate.
pub struct ChildSetup<'a> {
    pub exec: ExecTarget<'a>,
    /// NULL-terminated argv and envp pointer arrays.
    pub argv: &'a [*const c_char],
    pub envp: &'a [*const c_char],
    pub cwd: Option<&'a CStr>,
    /// (fd in the caller, fd number in the child).
    pub placements: &'a [(RawFd, RawFd)],
    /// Write end of the status pipe in the caller (also among `placements`).
    pub status: BorrowedFd<'a>,
    /// Run as these credentials instead of the caller's (a root daemon
    /// serving another allowed user).
    pub creds: Option<Credentials<'a>>,
    /// The RLIMIT_NOFILE soft limit the program gets (the zygote raised its
    /// own to hold many images' fds); `None` leaves it.
    pub nofile: Option<u64>,
    /// The requester's restrictions, when they are not the caller's own
    /// (a daemon serving a client); they include every rlimit.
    pub restrict: Option<&'a crate::restrictions::ChildRestrictions>,
}

/// Raise this process's RLIMIT_NOFILE soft limit to the hard limit (a cache
/// of images holds many fds). Returns the soft limit it had, which children
/// get back (see [`ChildSetup::nofile`]), or `None` if nothing changed.
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // Once per process: later calls report the limit the first one found.
    static ORIGINAL: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *ORIGINAL.get_or_init(|| {
        let lim = getrlimit(Resource::Nofile);
        let (Some(soft), max) = (lim.current, lim.maximum) else { return None };
        let target = max.unwrap_or(1 << 20).min(1 << 20);
        if target <= soft {
            return None;
        }
        setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: max }).ok()?;
        Some(soft)
    })
}

struct ChildArgs<'a> {
    setup: &'a ChildSetup<'a>,
    /// Scratch: CLOEXEC copies of the placements, then stub, then status.
    tmp: &'a mut [RawFd],
    temp_min: RawFd,
    /// Sources and targets do not overlap: no copies needed.
    direct: bool,
}

const CHILD_STACK: usize = 64 * 1024;

fn report(fd: RawFd, stage: Stage, index: usize, errno: i32) -> c_int {
    let rec = StatusRecord { stage: stage as u32, index: index as u32, errno, detail: 0, addr: 0 }.encode();
    // SAFETY: writing a stack buffer to an fd; a short write only loses the detail.
    unsafe { libc::write(fd, rec.as_ptr().cast(), rec.len()) };
    // SAFETY: _exit is async-signal-safe and ends the vfork child.
    unsafe { libc::_exit(STUB_FAILURE_EXIT) }
}

/// The calling thread's errno (also for the pre-exec child's steps in
/// `restrictions`).
pub(super) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Place the fds through CLOEXEC copies above every target, so no placement
/// clobbers a source that is still to come. Returns the (copied) exec and
/// status fds.
fn place_via_copies(args: &mut ChildArgs<'_>, exec_fd: RawFd, status_orig: RawFd) -> Result<(RawFd, RawFd), c_int> {
    let s = args.setup;
    let n = s.placements.len();
    let sources = s.placements.iter().map(|p| p.0).chain([exec_fd, status_orig]);
    for (i, src) in sources.enumerate() {
        // SAFETY: F_DUPFD_CLOEXEC on an fd we own; no memory is touched.
        let t = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, args.temp_min) };
        if t < 0 {
            return Err(report(status_orig, Stage::ChildFd, i, errno()));
        }
        args.tmp[i] = t;
    }
    let (exec_fd, status_fd) = (args.tmp[n], args.tmp[n + 1]);
    // Final places (dup2 clears CLOEXEC on the target).
    for (i, &(_, target)) in s.placements.iter().enumerate() {
        // SAFETY: dup2 between fds of this (copied) fd table.
        if unsafe { libc::dup2(args.tmp[i], target) } < 0 {
            return Err(report(status_fd, Stage::ChildFd, i, errno()));
        }
    }
    Ok((exec_fd, status_fd))
}

extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the &mut ChildArgs the parent passed to clone; the parent
    // is suspended (CLONE_VFORK) until we exec or exit, so nothing aliases it.
    let args = unsafe { &mut *arg.cast::<ChildArgs<'_>>() };
    let s = args.setup;
    let status_orig = s.status.as_raw_fd();
    let exec_fd = s.exec.fd();
    let (exec_fd, status_fd) = if args.direct {
        // No source is a target: straight into place.
        for (i, &(src, target)) in s.placements.iter().enumerate() {
            // SAFETY: dup2 between fds of this (copied) fd table.
            if unsafe { libc::dup2(src, target) } < 0 {
                return report(status_orig, Stage::ChildFd, i, errno());
            }
        }
        (exec_fd, status_orig)
    } else {
        match place_via_copies(args, exec_fd, status_orig) {
            Ok(fds) => fds,
            Err(code) => return code,
        }
    };
    if let Some(soft) = s.nofile.filter(|_| s.restrict.is_none()) {
        // rlimits belong to this child (no CLONE_THREAD): give the program the
        // soft limit the caller started with.
        let mut lim = MaybeUninit::<libc::rlimit64>::zeroed();
        // SAFETY: prlimit64 on ourselves, reading then writing a local struct.
        unsafe {
            if libc::syscall(
                libc::SYS_prlimit64,
                0,
                libc::RLIMIT_NOFILE,
                std::ptr::null::<libc::rlimit64>(),
                lim.as_mut_ptr(),
            ) == 0
            {
                let mut l = lim.assume_init();
                l.rlim_cur = soft;
                libc::syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_NOFILE, &l, std::ptr::null_mut::<libc::rlimit64>());
            }
        }
    }
    // Programs start with SIGPIPE at its default, whatever the caller (a Rust
    // program ignores it) did: dispositions are this child's own.
    // SAFETY: resetting one disposition to SIG_DFL.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if let Some(r) = s.restrict
        && let Err((step, e)) = r.apply_privileged()
    {
        return report(status_fd, Stage::ChildRestrict, step as usize, e);
    }
    if let Some(creds) = s.creds
        && let Err(e) = take_credentials(creds)
    {
        return report(status_fd, Stage::ChildCreds, 0, e);
    }
    if let Some(r) = s.restrict
        && let Err((step, e)) = r.apply_last()
    {
        return report(status_fd, Stage::ChildRestrict, step as usize, e);
    }
    if let Some(cwd) = s.cwd {
        // SAFETY: `cwd` is a valid NUL-terminated string prepared by the parent.
        if unsafe { libc::chdir(cwd.as_ptr()) } < 0 {
            return report(status_fd, Stage::ChildCwd, 0, errno());
        }
    }
    if let ExecTarget::Program { sigmask, keep, .. } = s.exec {
        // SAFETY: sigaction/close_range/sigprocmask on this (copied) process
        // state with valid pointers. No handler of the caller can run here:
        // every signal is blocked until the mask is restored, by which time
        // handled signals are back to SIG_DFL.
        unsafe {
            for sig in 1..=64 {
                if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                    continue;
                }
                let mut old = MaybeUninit::<libc::sigaction>::zeroed();
                if libc::sigaction(sig, std::ptr::null(), old.as_mut_ptr()) == 0 {
                    let h = old.assume_init().sa_sigaction;
                    if h != libc::SIG_DFL && h != libc::SIG_IGN {
                        let mut dfl = MaybeUninit::<libc::sigaction>::zeroed().assume_init();
                        dfl.sa_sigaction = libc::SIG_DFL;
                        libc::sigaction(sig, &dfl, std::ptr::null_mut());
                    }
                }
            }
            let mut lo: RawFd = 3;
            for &k in keep {
                if k >= lo {
                    if k > lo {
                        libc::syscall(libc::SYS_close_range, lo, k - 1, libc::CLOSE_RANGE_CLOEXEC);
                    }
                    lo = k + 1;
                }
            }
            libc::syscall(libc::SYS_close_range, lo, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            libc::pthread_sigmask(libc::SIG_SETMASK, sigmask, std::ptr::null_mut());
        }
    }
    // SAFETY: argv/envp are NULL-terminated arrays of NUL-terminated strings
    // that live in the parent's (shared) memory until the exec completes.
    unsafe {
        libc::syscall(libc::SYS_execveat, exec_fd, c"".as_ptr(), s.argv.as_ptr(), s.envp.as_ptr(), libc::AT_EMPTY_PATH);
    }
    report(status_fd, Stage::ChildExec, 0, errno())
}

/// The set of `signals`, or of every signal for `None`.
fn sigset_of(signals: Option<&[i32]>) -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset/sigemptyset initialise `set`; sigaddset edits it.
    unsafe {
        match signals {
            None => {
                libc::sigfillset(set.as_mut_ptr());
            }
            Some(sigs) => {
                libc::sigemptyset(set.as_mut_ptr());
                for &s in sigs {
                    libc::sigaddset(set.as_mut_ptr(), s);
                }
            }
        }
        set.assume_init()
    }
}

/// Add `set` to this thread's blocked signals; returns the previous mask.
fn block(set: &libc::sigset_t) -> io::Result<libc::sigset_t> {
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: pthread_sigmask reads `set` and writes `old`.
    unsafe {
        let r = libc::pthread_sigmask(libc::SIG_BLOCK, set, old.as_mut_ptr());
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(old.assume_init())
    }
}

/// Move an fd the zygote keeps (image objects and files, plans, pipes) to a
/// high number, above the numbers children get, so spawning can place fds
/// without copies. Keeps the fd where it is if that fails.
pub fn high_fd(fd: OwnedFd) -> OwnedFd {
    const HIGH: RawFd = 256;
    if fd.as_raw_fd() >= HIGH {
        return fd;
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, HIGH).unwrap_or(fd)
}

/// Block every signal; returns the previous mask.
pub fn block_all_signals() -> io::Result<libc::sigset_t> {
    block(&sigset_of(None))
}

/// Block `signals` (they stay pending); returns the previous mask.
pub fn block_signals(signals: &[i32]) -> io::Result<libc::sigset_t> {
    block(&sigset_of(Some(signals)))
}

/// Take on `creds` in a pre-exec child. Raw syscalls: glibc's wrappers would
/// try to change every thread of the caller, whose memory a vfork child
/// shares. Returns the errno on failure.
pub fn take_credentials(creds: Credentials<'_>) -> Result<(), i32> {
    let Credentials { uid, gid, groups } = creds;
    // SAFETY: plain credential syscalls on the calling task with a valid array.
    let ok = unsafe {
        libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) == 0
            && libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
            && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
    };
    if ok { Ok(()) } else { Err(errno()) }
}

/// Restore a mask saved by [`block_all_signals`] or [`block_signals`].
pub fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: `old` is a valid sigset_t.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// A sigset as the kernel's 64-bit mask (signals 1..=64).
pub fn sigset_bits(set: &libc::sigset_t) -> u64 {
    let mut bits = 0u64;
    for sig in 1..=64 {
        // SAFETY: sigismember only reads `set`.
        if unsafe { libc::sigismember(set, sig) } == 1 {
            bits |= 1 << (sig - 1);
        }
    }
    bits
}

/// Clone a vfork child that places fds and execs the stub. Returns the pid and
/// a pidfd. The caller must have blocked all signals (see [`block_all_signals`]).
pub fn clone_exec(setup: &ChildSetup<'_>) -> io::Result<(i32, OwnedFd)> {
    let mut tmp = vec![-1; setup.placements.len() + 2];
    let highest = setup.placements.iter().map(|p| p.1).max().unwrap_or(2);
    // When no fd to place (nor the exec or status fd) sits at a target number,
    // the child can dup2 straight into place; the zygote keeps its own fds high
    // (see `high_fd`) so that this is the usual case.
    let exec_fd = setup.exec.fd();
    let is_target = |fd: RawFd| setup.placements.iter().any(|p| p.1 == fd);
    let direct =
        !setup.placements.iter().any(|p| is_target(p.0)) && !is_target(exec_fd) && !is_target(setup.status.as_raw_fd());
    let mut args = ChildArgs { setup, tmp: &mut tmp, temp_min: highest + 1, direct };
    let mut stack: Box<[MaybeUninit<u8>]> = Box::new_uninit_slice(CHILD_STACK);
    // The stack grows down; keep the top 16-byte aligned.
    let top = {
        let end = stack.as_mut_ptr_range().end as usize;
        (end & !15) as *mut c_void
    };
    let mut pidfd: c_int = -1;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    // SAFETY: child_main only uses `args` (alive until clone returns, because
    // CLONE_VFORK suspends us until the child execs or exits) and its own stack,
    // which is valid for CHILD_STACK bytes below `top`. CLONE_PIDFD stores the
    // pidfd through the parent_tid pointer.
    let pid = unsafe {
        libc::clone(
            child_main,
            top,
            flags,
            (&raw mut args).cast(),
            &raw mut pidfd,
            std::ptr::null_mut::<c_void>(),
            std::ptr::null_mut::<c_int>(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(stack);
    // SAFETY: with CLONE_PIDFD the kernel returned a new pidfd that we now own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((pid, pidfd))
}

/// A raw wait status (waitpid, posix_spawn's children) as an [`ExitStatus`];
/// `None` for a stop or continue report.
pub fn wait_status(raw: i32) -> Option<ExitStatus> {
    if libc::WIFEXITED(raw) {
        Some(ExitStatus::Exited(libc::WEXITSTATUS(raw)))
    } else if libc::WIFSIGNALED(raw) {
        Some(ExitStatus::Signaled(libc::WTERMSIG(raw)))
    } else {
        None
    }
}

/// A raw wait status in words (see [`ExitStatus::describe`]).
pub fn describe_wait_status(raw: i32) -> String {
    wait_status(raw).map_or_else(|| format!("wait status {raw:#x}"), |s| s.describe())
}

/// How a `std::process` child ended, in words.
pub fn describe_std(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    describe_wait_status(st.into_raw())
}

/// Wait for the child behind `pidfd` to exit and reap it.
pub fn wait_pidfd(pidfd: BorrowedFd<'_>) -> io::Result<ExitStatus> {
    loop {
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: waitid writes a siginfo_t into `info`.
        let r =
            unsafe { libc::waitid(libc::P_PIDFD, pidfd.as_raw_fd() as libc::id_t, info.as_mut_ptr(), libc::WEXITED) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid succeeded, so `info` is initialised.
        let info = unsafe { info.assume_init() };
        // SAFETY: for a WEXITED result, si_status is the valid union member.
        let status = unsafe { info.si_status() };
        return Ok(match info.si_code {
            libc::CLD_EXITED => ExitStatus::Exited(status),
            _ => ExitStatus::Signaled(status),
        });
    }
}

/// Send `sig` to the process behind `pidfd` (race-free against pid reuse).
pub fn pidfd_kill(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a NULL siginfo and no flags.
    let r =
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<c_void>(), 0) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The inode number of the mount namespace of the process behind `pidfd`
/// (`PIDFD_GET_MNT_NAMESPACE`, Linux 6.11): what `/proc/PID/ns/mnt` names,
/// without a `/proc` lookup. Fails (ENOTTY, EINVAL) on older kernels.
pub fn pidfd_mnt_ns(pidfd: BorrowedFd<'_>) -> io::Result<u64> {
    const PIDFD_GET_MNT_NAMESPACE: libc::c_ulong = 0xff03; // _IO(0xFF, 3)
    // SAFETY: this ioctl takes no argument (it must be 0) and returns a new
    // fd or -1.
    let fd = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_MNT_NAMESPACE as _, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that we now own.
    let ns = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(rustix::fs::fstat(&ns)?.st_ino)
}

/// Block until `until` is readable, passing `signals` that arrive meanwhile on
/// to the process behind `target` (a pidfd).
///
/// The signals are blocked and read from a signalfd. With `skip_kernel`, a
/// signal the kernel generated (a terminal's Ctrl-C, which reaches the whole
/// foreground process group, the child included when it shares our group) is
/// not sent again. The caller's mask is restored on return.
pub fn relay_signals_until(
    until: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    signals: &[i32],
    skip_kernel: bool,
) -> io::Result<()> {
    let set = sigset_of(Some(signals));
    let old = block(&set)?;
    let result = (|| {
        // SAFETY: `set` is an initialised sigset; signalfd returns a new fd we own.
        let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
        if sfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd from signalfd.
        let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
        loop {
            let mut fds = [
                libc::pollfd { fd: until.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: sfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: `fds` is a valid array of two pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[1].revents & libc::POLLIN != 0 {
                let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
                let size = size_of::<libc::signalfd_siginfo>();
                // SAFETY: reading one signalfd_siginfo into a buffer of that size.
                let n = unsafe { libc::read(sfd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
                if n as usize == size {
                    // SAFETY: the kernel filled the whole struct.
                    let info = unsafe { info.assume_init() };
                    if !(skip_kernel && info.ssi_code == libc::SI_KERNEL) {
                        let _ = pidfd_kill(target, info.ssi_signo as i32);
                    }
                }
            }
            if fds[0].revents != 0 {
                return Ok(());
            }
        }
    })();
    restore_signals(&old);
    result
}

/// Wait for our child behind `pidfd`, relaying `signals` sent to us by other
/// processes (see [`relay_signals_until`]).
pub fn wait_relaying(pidfd: BorrowedFd<'_>, signals: &[i32]) -> io::Result<ExitStatus> {
    relay_signals_until(pidfd, pidfd, signals, true)?;
    wait_pidfd(pidfd)
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

/// Keep big buffers (program files, segment copies: megabytes each) out of
/// glibc's heaps. With the default dynamic mmap threshold, a freed multi-MiB
/// buffer raises the threshold, and later ones are carved from per-thread
/// arenas that keep the memory once freed: a daemon that had built 1,000
/// images held 460 MiB. A fixed threshold maps each big buffer on its own and
/// gives it back when it is freed (the same storm then ends at 18 MiB).
pub fn fixed_mmap_threshold() {
    const THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt changes allocator tuning only; it touches no memory of ours.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) };
}

/// Restore the default SIGPIPE disposition (Rust ignores it), so a command
/// writing into a closed pipe ends quietly, as other Unix tools do.
pub fn default_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_DFL installs no handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Register an owned fd with the tokio reactor (the daemon's event loop).
#[cfg(feature = "tokio")]
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd keeps one fd number for its whole life and closes it
    // only when dropped, which deregisters it first (AsyncFd owns it).
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(io::Error::from)
}
