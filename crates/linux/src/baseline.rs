//! Baseline process spawners for `zygote bench`: what a program pays without the zygote.
//!
//! Two ways to start a program the ordinary way, each followed by `waitpid`:
//!
//! - [`Baseline::posix_spawn_wait`]: glibc's `posix_spawn` (itself a
//!   `clone(CLONE_VM | CLONE_VFORK)` + `execve` on Linux), the way
//!   `std::process::Command` starts programs;
//! - [`Baseline::vfork_exec_wait`]: a hand-rolled `clone(CLONE_VM | CLONE_VFORK)` +
//!   `execve`, without the file-action and attribute machinery.
//!
//! Both give the child the same stdio (inherited, or `/dev/null` on fds 0, 1 and 2), reset
//! `SIGPIPE` to its default disposition (as `std::process::Command` does; Rust programs
//! ignore it) and return the raw wait status (decode it with [`describe_wait_status`] or
//! `libc::WIFEXITED` and friends).
//!
//! Everything `unsafe` in the benchmark lives in this file.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// What the spawned child gets as fds 0, 1 and 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio {
    /// The caller's fds 0, 1 and 2.
    Inherit,
    /// `/dev/null` (opened read-write) on fds 0, 1 and 2.
    Null,
}

/// One more than the highest signal number on Linux (the kernel's `_NSIG` is 64 + 1).
const NSIG: c_int = 65;

/// Stack size for the `vfork` child: it only calls `dup2`, `sigaction`, `sigprocmask`,
/// `execve` and `_exit`.
const CHILD_STACK_BYTES: usize = 64 * 1024;

/// One program invocation (path, argv, envp) with everything that `posix_spawn` and
/// `execve` need built once, so repeated spawns measure only the spawn itself.
pub struct Baseline {
    path: CString,
    // The CStrings own the bytes that `argv_ptrs` and `envp_ptrs` point to; they are
    // never modified or dropped before `self`, and moving a CString does not move its
    // heap buffer.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*mut c_char>,
    envp_ptrs: Vec<*mut c_char>,
    null: Option<OwnedFd>,
    actions: Box<libc::posix_spawn_file_actions_t>,
    attr: Box<libc::posix_spawnattr_t>,
    stack: Vec<u128>,
}

impl std::fmt::Debug for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baseline")
            .field("path", &self.path)
            .field("argc", &self._argv.len())
            .field("envc", &self._envp.len())
            .field("null", &self.null)
            .finish_non_exhaustive()
    }
}

/// Turn a libc return value that is an error number (posix_spawn family) into a Result.
fn check_errno(rc: c_int) -> io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
}

/// Pointer array for `execve`: one pointer per string, then a null pointer.
fn pointer_array(strings: &[CString]) -> Vec<*mut c_char> {
    strings.iter().map(|s| s.as_ptr().cast_mut()).chain(std::iter::once(std::ptr::null_mut())).collect()
}

impl Baseline {
    /// Prepare spawns of `path` with `argv` (argv[0] included) and `envp` (`KEY=VALUE`
    /// strings). With [`Stdio::Null`], `/dev/null` is opened once here.
    pub fn new(path: &CStr, argv: &[CString], envp: &[CString], stdio: Stdio) -> io::Result<Self> {
        let null = match stdio {
            Stdio::Inherit => None,
            // Rust opens with O_CLOEXEC: the parent's copy never leaks into children
            // except through the explicit dup2 below.
            Stdio::Null => Some(crate::dev_null()?),
        };
        let argv = argv.to_vec();
        let envp = envp.to_vec();
        let argv_ptrs = pointer_array(&argv);
        let envp_ptrs = pointer_array(&envp);

        // SAFETY: posix_spawn_file_actions_t is a plain C struct of integers and a
        // pointer, for which all-zero is a valid (if uninitialised) value; it is
        // initialised by posix_spawn_file_actions_init right below before any other use.
        let mut actions: Box<libc::posix_spawn_file_actions_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `actions` points to writable, properly aligned storage owned by the Box.
        check_errno(unsafe { libc::posix_spawn_file_actions_init(&mut *actions) })?;
        // SAFETY: as for `actions`; the attr is initialised before any other use.
        let mut attr: Box<libc::posix_spawnattr_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `attr` points to writable, properly aligned storage owned by the Box.
        let rc = unsafe { libc::posix_spawnattr_init(&mut *attr) };
        if rc != 0 {
            // SAFETY: `actions` was initialised above and is not used afterwards.
            unsafe { libc::posix_spawn_file_actions_destroy(&mut *actions) };
            return Err(io::Error::from_raw_os_error(rc));
        }
        // From here on, Drop destroys both objects on every path.
        let mut this = Baseline {
            path: path.to_owned(),
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
            null,
            actions,
            attr,
            stack: vec![0u128; CHILD_STACK_BYTES / std::mem::size_of::<u128>()],
        };
        this.configure_posix_spawn()?;
        Ok(this)
    }

    fn configure_posix_spawn(&mut self) -> io::Result<()> {
        if let Some(null) = &self.null {
            for target in 0..=2 {
                // SAFETY: `actions` was initialised in `new`; the fd is open and stays
                // open for the life of `self` (it is an OwnedFd field).
                check_errno(unsafe {
                    libc::posix_spawn_file_actions_adddup2(&mut *self.actions, null.as_raw_fd(), target)
                })?;
            }
        }
        // SAFETY: sigset_t is plain data; sigemptyset initialises it fully.
        let mut sigdef: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `sigdef` is a valid, writable sigset_t.
        unsafe {
            libc::sigemptyset(&mut sigdef);
            libc::sigaddset(&mut sigdef, libc::SIGPIPE);
        }
        // SAFETY: as above.
        let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `mask` is a valid, writable sigset_t.
        unsafe { libc::sigemptyset(&mut mask) };
        let flags = (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short;
        // SAFETY: `attr` was initialised in `new`; the sigsets are valid and only read.
        check_errno(unsafe { libc::posix_spawnattr_setsigdefault(&mut *self.attr, &sigdef) })?;
        // SAFETY: as above.
        check_errno(unsafe { libc::posix_spawnattr_setsigmask(&mut *self.attr, &mask) })?;
        // SAFETY: as above.
        check_errno(unsafe { libc::posix_spawnattr_setflags(&mut *self.attr, flags) })
    }

    /// `posix_spawn` the program, then `waitpid` for it. Returns the raw wait status.
    pub fn posix_spawn_wait(&mut self) -> io::Result<i32> {
        wait_pid(self.posix_spawn()?)
    }

    /// `clone(CLONE_VM | CLONE_VFORK)` + `execve` the program, then `waitpid` for it.
    /// Returns the raw wait status; a failed `execve` is returned as its error.
    pub fn vfork_exec_wait(&mut self) -> io::Result<i32> {
        wait_pid(self.vfork_exec()?)
    }

    /// `posix_spawn` the program and return its pid once it has been exec'd (glibc
    /// reports a failed exec as the error, having reaped the child). The caller must
    /// [`wait_pid`] for it.
    pub fn posix_spawn(&mut self) -> io::Result<libc::pid_t> {
        let mut pid: libc::pid_t = 0;
        // SAFETY: `path` is a NUL-terminated string; `argv_ptrs` and `envp_ptrs` are
        // null-terminated arrays of pointers to NUL-terminated strings owned by `self`
        // (posix_spawn does not write through them despite the `*mut` type);
        // `actions` and `attr` were initialised in `new`. All outlive the call.
        check_errno(unsafe {
            libc::posix_spawn(
                &mut pid,
                self.path.as_ptr(),
                &*self.actions,
                &*self.attr,
                self.argv_ptrs.as_ptr(),
                self.envp_ptrs.as_ptr(),
            )
        })?;
        Ok(pid)
    }

    /// `clone(CLONE_VM | CLONE_VFORK)` + `execve` the program and return its pid once it
    /// has been exec'd. A failed `execve` is returned as its error (the child is reaped).
    /// The caller must [`wait_pid`] for it.
    pub fn vfork_exec(&mut self) -> io::Result<libc::pid_t> {
        let mut args = VforkArgs {
            path: self.path.as_ptr(),
            argv: self.argv_ptrs.as_ptr(),
            envp: self.envp_ptrs.as_ptr(),
            null_fd: self.null.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
            // SAFETY: sigset_t is plain data; filled in below before the child reads it.
            old_mask: unsafe { std::mem::zeroed() },
            exec_errno: 0,
        };

        // Block every signal around the clone: the child shares our memory, so none of
        // our handlers may run in it. It restores the mask only after resetting handled
        // signals to SIG_DFL (as glibc's posix_spawn child does).
        // SAFETY: sigset_t is plain data; sigfillset initialises it fully.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `all` and `args.old_mask` are valid, writable sigsets.
        let rc = unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut args.old_mask)
        };
        check_errno(rc)?;

        // The stack grows down: start at the 16-byte-aligned end of the buffer (a Vec of
        // u128 is 16-byte aligned and so is its length in bytes).
        let stack_top = self.stack.as_mut_ptr_range().end.cast::<c_void>();
        // SAFETY: `vfork_child` only makes async-signal-safe calls and touches nothing
        // but `args` and its own stack frame; it runs on `self.stack` (CHILD_STACK_BYTES,
        // far more than it needs, and not otherwise used while the child runs). With
        // CLONE_VFORK this thread is suspended until the child has exec'd or exited, so
        // `args`, the strings it points to and the stack outlive every use by the child.
        // All signals are blocked, so no handler of ours runs in the shared memory.
        let pid = unsafe {
            libc::clone(
                vfork_child,
                stack_top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&raw mut args).cast::<c_void>(),
            )
        };
        let clone_err = io::Error::last_os_error();
        // SAFETY: `args.old_mask` holds the mask saved above.
        let restored =
            check_errno(unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &args.old_mask, std::ptr::null_mut()) });
        if pid < 0 {
            return Err(clone_err);
        }

        // The child wrote `exec_errno` (through the shared memory) before exiting, and it
        // has exited or exec'd by now (CLONE_VFORK). Read it volatile: the compiler
        // cannot see the write done by the other task.
        // SAFETY: `args` is a live, aligned local.
        let exec_errno = unsafe { std::ptr::read_volatile(&raw const args.exec_errno) };
        if exec_errno != 0 {
            wait_pid(pid)?;
            return Err(io::Error::from_raw_os_error(exec_errno));
        }
        if let Err(e) = restored {
            // Cannot happen with valid arguments; do not leave the child unreaped.
            wait_pid(pid)?;
            return Err(e);
        }
        Ok(pid)
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        // SAFETY: both objects were initialised in `new` (Baseline is only built after
        // both inits succeeded) and are destroyed exactly once, here.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut *self.actions);
            libc::posix_spawnattr_destroy(&mut *self.attr);
        }
    }
}

/// What the parent shares with the `vfork` child (through CLONE_VM).
#[repr(C)]
struct VforkArgs {
    path: *const c_char,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
    /// fd to dup onto 0, 1 and 2, or -1 to inherit.
    null_fd: c_int,
    /// The parent's signal mask, restored in the child right before `execve`.
    old_mask: libc::sigset_t,
    /// Set by the child when `execve` fails.
    exec_errno: c_int,
}

/// The `vfork` child. Runs on its own stack in the parent's memory with all signals blocked,
/// so it must not allocate, unwind, take locks or touch thread-local state other than
/// errno; it only makes async-signal-safe calls.
extern "C" fn vfork_child(arg: *mut c_void) -> c_int {
    let args = arg.cast::<VforkArgs>();
    // SAFETY: `arg` is the `&mut VforkArgs` passed to clone by `vfork_exec_wait`, which is
    // suspended (CLONE_VFORK) and so does not touch it while we run. Every libc call
    // below is async-signal-safe and gets valid pointers: the strings and arrays are
    // owned by the suspended parent's `Baseline`, the sigaction/sigset structs are locals.
    unsafe {
        let fd = (*args).null_fd;
        if fd >= 0 {
            for target in 0..=2 {
                let ok = if fd == target {
                    // dup2 onto itself is a no-op that leaves O_CLOEXEC set: clear it.
                    libc::fcntl(fd, libc::F_SETFD, 0) == 0
                } else {
                    libc::dup2(fd, target) == target
                };
                if !ok {
                    return child_fail(args);
                }
            }
        }

        // No handler of the parent may run in this shared address space once signals
        // are unblocked: reset every handled signal to SIG_DFL (SIGPIPE always, as
        // `std::process::Command` does). Ignored signals stay ignored across exec.
        let mut sa: libc::sigaction = std::mem::zeroed();
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..NSIG {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            // Errors (signals reserved by libc) just mean there is nothing to reset.
            if libc::sigaction(sig, std::ptr::null(), &mut sa) != 0 {
                continue;
            }
            let handled = sa.sa_sigaction != libc::SIG_DFL && sa.sa_sigaction != libc::SIG_IGN;
            if handled || sig == libc::SIGPIPE {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        if libc::sigprocmask(libc::SIG_SETMASK, &(*args).old_mask, std::ptr::null_mut()) != 0 {
            return child_fail(args);
        }

        libc::execve((*args).path, (*args).argv.cast(), (*args).envp.cast());
        child_fail(args)
    }
}

/// Record errno for the parent and leave the child without running any exit handlers.
///
/// # Safety
/// Only from `vfork_child`, with its `args` pointer.
unsafe fn child_fail(args: *mut VforkArgs) -> c_int {
    // SAFETY: see `vfork_child`; errno is read from the (shared) thread's TLS, which
    // the suspended parent does not touch meanwhile. The parent reads `exec_errno`
    // volatile once we are gone.
    unsafe {
        let err = *libc::__errno_location();
        std::ptr::write_volatile(&raw mut (*args).exec_errno, if err == 0 { libc::EINVAL } else { err });
        libc::_exit(127)
    }
}

/// `waitpid(pid, 0)`, retried on EINTR: wait for a child to end and reap it. Returns
/// the raw wait status.
pub fn wait_pid(pid: libc::pid_t) -> io::Result<i32> {
    let mut status: c_int = 0;
    loop {
        // SAFETY: `status` is a valid, writable int; waitpid accepts any pid (not our
        // child: ECHILD).
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `posix_spawn` `path` with `argv` and `envp` once and wait for it; stdio is `/dev/null`
/// when `quiet`, inherited otherwise. Returns the raw wait status.
pub fn posix_spawn_wait(path: &CStr, argv: &[CString], envp: &[CString], quiet: bool) -> io::Result<i32> {
    let stdio = if quiet { Stdio::Null } else { Stdio::Inherit };
    Baseline::new(path, argv, envp, stdio)?.posix_spawn_wait()
}

/// True when a raw wait status says the child exited with status 0.
pub fn wait_status_success(status: i32) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

pub use crate::process::describe_wait_status;

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).expect("no NUL in test strings")
    }

    fn env() -> Vec<CString> {
        vec![c("PATH=/usr/bin:/bin")]
    }

    #[test]
    fn posix_spawn_reports_exit_status() {
        let st =
            posix_spawn_wait(&c("/bin/sh"), &[c("sh"), c("-c"), c("exit 3")], &env(), true).expect("spawn /bin/sh");
        assert!(libc::WIFEXITED(st));
        assert_eq!(libc::WEXITSTATUS(st), 3);
        assert!(!wait_status_success(st));
        assert_eq!(describe_wait_status(st), "exited with status 3");
    }

    #[test]
    fn vfork_reports_exit_status_and_signal() {
        let mut b =
            Baseline::new(&c("/bin/sh"), &[c("sh"), c("-c"), c("exit 0")], &env(), Stdio::Null).expect("prepare");
        for _ in 0..3 {
            assert!(wait_status_success(b.vfork_exec_wait().expect("vfork")));
            assert!(wait_status_success(b.posix_spawn_wait().expect("posix_spawn")));
        }
        let mut k =
            Baseline::new(&c("/bin/sh"), &[c("sh"), c("-c"), c("kill -9 $$")], &env(), Stdio::Null).expect("prepare");
        let st = k.vfork_exec_wait().expect("vfork");
        assert_eq!(describe_wait_status(st), "killed by signal 9");
    }

    #[test]
    fn missing_program_is_an_error() {
        let mut b = Baseline::new(&c("/nonexistent/prog"), &[c("prog")], &env(), Stdio::Null).expect("prepare");
        let e = b.vfork_exec_wait().expect_err("must fail");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let e = b.posix_spawn_wait().expect_err("must fail");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn argv_env_and_stdio_reach_the_child() {
        let dir = std::env::temp_dir().join(format!("zygote-baseline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (i, method) in ["posix_spawn", "vfork"].iter().enumerate() {
            let out = dir.join(format!("out{i}"));
            let script =
                format!("printf '%s %s %s' \"$0\" \"$1\" \"$FOO\" > {}; echo noise; echo noise >&2", out.display());
            let mut b = Baseline::new(
                &c("/bin/sh"),
                &[c("sh"), c("-c"), c(&script), c("zero"), c("one")],
                &[c("FOO=bar")],
                Stdio::Null,
            )
            .expect("prepare");
            let st = if *method == "vfork" { b.vfork_exec_wait() } else { b.posix_spawn_wait() }.expect("spawn");
            assert!(wait_status_success(st), "{method}: {}", describe_wait_status(st));
            assert_eq!(std::fs::read_to_string(&out).expect("read"), "zero one bar", "{method}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sigpipe_is_default_in_the_child() {
        // Rust ignores SIGPIPE in its own process (tests included); the child must not.
        for vfork in [false, true] {
            let mut b = Baseline::new(&c("/bin/sh"), &[c("sh"), c("-c"), c("kill -PIPE $$")], &env(), Stdio::Null)
                .expect("prepare");
            let st = if vfork { b.vfork_exec_wait() } else { b.posix_spawn_wait() }.expect("spawn");
            assert_eq!(describe_wait_status(st), format!("killed by signal {}", libc::SIGPIPE));
        }
    }
}
