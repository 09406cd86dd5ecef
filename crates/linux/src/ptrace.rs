//! Prototype processes: start a program under ptrace and stop it at its entry
//! point, recording the system calls made on the way (the dynamic linker's
//! and the constructors').

use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};
use zygote_core::Credentials;

const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;
const SYSCALL_INFO_ENTRY: u8 = 1;
const SYSCALL_INFO_EXIT: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum PtraceError {
    #[error("starting the prototype: {0}")]
    Start(io::Error),
    #[error("the prototype could not exec the program: {0}")]
    Exec(io::Error),
    #[error("ptrace {what}: {source}")]
    Ptrace { what: &'static str, source: io::Error },
    #[error("the prototype ended before reaching its entry point ({0})")]
    Ended(String),
    #[error("the prototype got signal {0} before reaching its entry point")]
    Signal(i32),
    #[error("reading /proc/{pid}/{what}: {source}")]
    Proc { pid: i32, what: &'static str, source: io::Error },
}

/// One system call made before the entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallRecord {
    pub nr: u64,
    pub args: [u64; 6],
    pub ret: i64,
}

/// Registers at the entry point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryRegs {
    pub rip: u64,
    pub rsp: u64,
    pub rdx: u64,
    pub fs_base: u64,
}

/// A traced process stopped at its entry point; killed when dropped.
#[derive(Debug)]
pub struct Prototype {
    pub pid: i32,
    pub regs: EntryRegs,
    pub syscalls: Vec<SyscallRecord>,
    mem: Option<std::fs::File>,
}

fn perr(what: &'static str) -> impl FnOnce(io::Error) -> PtraceError {
    move |source| PtraceError::Ptrace { what, source }
}

/// A raw ptrace(2) request on tracee `pid`. Returns the kernel's result (for
/// the PEEK requests, the word read: errno tells it from an error).
///
/// # Safety
/// `addr` and `data` must be valid for `req` as ptrace(2) describes it: where
/// the request reads or writes this process's memory through one of them
/// (GETREGS, SETREGS, GET_SYSCALL_INFO, ...), that argument points to memory
/// of the size the request uses (`user_regs_struct`, or the size passed in
/// `addr` for GET_SYSCALL_INFO), live for the call and writable where the
/// kernel writes. Where the request takes an integer (options, a signal) or an
/// address in the tracee (PEEK, POKE), any value is allowed: it is not
/// dereferenced in this process.
unsafe fn ptrace(req: libc::c_uint, pid: i32, addr: *mut c_void, data: *mut c_void) -> io::Result<i64> {
    // SAFETY: the caller guarantees `addr` and `data` are valid for `req`.
    // errno is this thread's; clearing it first tells a PEEK result of -1
    // from a failure.
    unsafe {
        *libc::__errno_location() = 0;
        let r = libc::ptrace(req, pid, addr, data);
        if r == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r)
    }
}

/// An integer argument of a ptrace request (never dereferenced here).
fn int_arg(v: u64) -> *mut c_void {
    std::ptr::without_provenance_mut(v as usize)
}

/// PTRACE_SETOPTIONS.
fn set_options(pid: i32, opts: c_int) -> io::Result<()> {
    // SAFETY: SETOPTIONS takes the options as an integer in `data`; `addr` is ignored.
    unsafe { ptrace(libc::PTRACE_SETOPTIONS, pid, std::ptr::null_mut(), int_arg(opts as u64)) }.map(drop)
}

/// PTRACE_PEEKTEXT: the word at `addr` in the tracee.
fn peek_text(pid: i32, addr: u64) -> io::Result<u64> {
    // SAFETY: `addr` is an address in the tracee, read by the kernel there,
    // not here; `data` is ignored.
    unsafe { ptrace(libc::PTRACE_PEEKTEXT, pid, int_arg(addr), std::ptr::null_mut()) }.map(|w| w as u64)
}

/// PTRACE_POKETEXT: store `word` at `addr` in the tracee.
fn poke_text(pid: i32, addr: u64, word: u64) -> io::Result<()> {
    // SAFETY: `addr` is an address in the tracee (written there, not here) and
    // `data` is the word itself, an integer.
    unsafe { ptrace(libc::PTRACE_POKETEXT, pid, int_arg(addr), int_arg(word)) }.map(drop)
}

/// PTRACE_SYSCALL: resume the tracee to its next system call stop,
/// delivering signal `sig` (0: none).
fn resume_to_syscall(pid: i32, sig: c_int) -> io::Result<()> {
    // SAFETY: `data` is the signal number, an integer; `addr` is ignored.
    unsafe { ptrace(libc::PTRACE_SYSCALL, pid, std::ptr::null_mut(), int_arg(sig as u64)) }.map(drop)
}

/// PTRACE_GET_SYSCALL_INFO into `buf` (a `struct ptrace_syscall_info`, see
/// [`Prototype::record_syscall`]).
fn get_syscall_info(pid: i32, buf: &mut [u64; 16]) -> io::Result<()> {
    let size = size_of_val(buf) as u64;
    // SAFETY: `addr` is the buffer's size, and the kernel writes at most that
    // many bytes to `data`, the exclusively borrowed `buf`.
    unsafe { ptrace(PTRACE_GET_SYSCALL_INFO, pid, int_arg(size), buf.as_mut_ptr().cast()) }.map(drop)
}

/// PTRACE_GETREGS.
fn get_regs(pid: i32) -> io::Result<libc::user_regs_struct> {
    let mut regs = MaybeUninit::<libc::user_regs_struct>::zeroed();
    // SAFETY: GETREGS writes one `user_regs_struct` to `data`, which points at
    // `regs`, a local of that type; `addr` is ignored.
    unsafe { ptrace(libc::PTRACE_GETREGS, pid, std::ptr::null_mut(), regs.as_mut_ptr().cast()) }?;
    // SAFETY: GETREGS filled the struct (it was zeroed anyway).
    Ok(unsafe { regs.assume_init() })
}

/// PTRACE_SETREGS.
fn set_regs(pid: i32, regs: &libc::user_regs_struct) -> io::Result<()> {
    let data = std::ptr::from_ref(regs).cast_mut().cast();
    // SAFETY: SETREGS only reads one `user_regs_struct` from `data`, which
    // points at `*regs`; `addr` is ignored.
    unsafe { ptrace(libc::PTRACE_SETREGS, pid, std::ptr::null_mut(), data) }.map(drop)
}

fn wait_stop(pid: i32) -> io::Result<c_int> {
    let mut status: c_int = 0;
    loop {
        // SAFETY: waitpid writes the status word.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(status);
    }
}

struct ChildArgs<'a> {
    exe: c_int,
    creds: Option<Credentials<'a>>,
    argv: &'a [*const c_char],
    envp: &'a [*const c_char],
    no_randomize: bool,
    errfd: c_int,
    /// /dev/null: the prototype's stdin, stdout and stderr (what its start-up
    /// code writes goes nowhere, never into the zygote's own stdio).
    null: c_int,
}

extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the ChildArgs the parent passed; it is suspended
    // (CLONE_VFORK) until we exec or exit.
    let a = unsafe { &*arg.cast::<ChildArgs<'_>>() };
    // SAFETY: plain syscalls on our own process, then execve with
    // NULL-terminated arrays of NUL-terminated strings owned by the parent.
    unsafe {
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) < 0 {
            libc::_exit(126);
        }
        if a.no_randomize {
            libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong);
        }
        // The prototype runs the program's start-up code (library
        // constructors): with the requesting user's credentials, never more.
        if let Some(creds) = a.creds
            && let Err(e) = crate::process::take_credentials(creds)
        {
            libc::write(a.errfd, (&e as *const c_int).cast(), size_of::<c_int>());
            libc::_exit(126);
        }
        for fd in 0..3 {
            if libc::dup2(a.null, fd) < 0 {
                let e = *libc::__errno_location();
                libc::write(a.errfd, (&e as *const c_int).cast(), size_of::<c_int>());
                libc::_exit(126);
            }
        }
        // Only stdio goes to the prototype, so any other fd it has at its
        // entry point was opened by its own start-up code.
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
        // Every signal is blocked around the clone; the exec's SIGTRAP must
        // get through for the tracer to see the exec stop.
        let mut trap = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
        libc::sigemptyset(&mut trap);
        libc::sigaddset(&mut trap, libc::SIGTRAP);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &trap, std::ptr::null_mut());
        // The file the caller opened, not a path that could name another.
        libc::syscall(libc::SYS_execveat, a.exe, c"".as_ptr(), a.argv.as_ptr(), a.envp.as_ptr(), libc::AT_EMPTY_PATH);
        let e = *libc::__errno_location();
        libc::write(a.errfd, (&e as *const c_int).cast(), size_of::<c_int>());
        libc::_exit(127)
    }
}

impl Prototype {
    /// Start `path` traced, run it to its entry point. Signals stay blocked in
    /// the prototype until then (they are never unblocked: the prototype is
    /// killed at the stop). `creds`: who the prototype runs as.
    pub fn start(
        exe: BorrowedFd<'_>,
        argv: &[*const c_char],
        envp: &[*const c_char],
        no_randomize: bool,
        creds: Option<Credentials<'_>>,
    ) -> Result<Self, PtraceError> {
        let (err_r, err_w) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| PtraceError::Start(e.into()))?;
        let null = crate::dev_null().map_err(PtraceError::Start)?;
        let null = crate::process::high_fd(null);
        let args = ChildArgs {
            exe: exe.as_raw_fd(),
            creds,
            argv,
            envp,
            no_randomize,
            errfd: err_w.as_raw_fd(),
            null: null.as_raw_fd(),
        };
        let mut stack: Box<[MaybeUninit<u8>]> = Box::new_uninit_slice(64 * 1024);
        let top = ((stack.as_mut_ptr_range().end as usize) & !15) as *mut c_void;
        let old = crate::process::block_all_signals().map_err(PtraceError::Start)?;
        // SAFETY: child_main only reads `args` (alive until clone returns, as
        // CLONE_VFORK suspends us until the exec) and uses its own stack.
        let pid = unsafe {
            libc::clone(
                child_main,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&raw const args).cast_mut().cast(),
            )
        };
        let clone_err = io::Error::last_os_error();
        crate::process::restore_signals(&old);
        drop(stack);
        if pid < 0 {
            return Err(PtraceError::Start(clone_err));
        }
        drop(err_w);
        let mut errno = [0u8; 4];
        if rustix::io::read(&err_r, &mut errno).unwrap_or(0) == 4 {
            let _ = wait_stop(pid);
            return Err(PtraceError::Exec(io::Error::from_raw_os_error(i32::from_ne_bytes(errno))));
        }
        let mut proto = Prototype { pid, regs: EntryRegs::default(), syscalls: Vec::new(), mem: None };
        proto.run_to_entry()?;
        let mem = std::fs::File::open(format!("/proc/{pid}/mem")).map_err(|source| PtraceError::Proc {
            pid,
            what: "mem",
            source,
        })?;
        proto.mem = Some(mem);
        Ok(proto)
    }

    fn run_to_entry(&mut self) -> Result<(), PtraceError> {
        let pid = self.pid;
        // The exec stop.
        let st = wait_stop(pid).map_err(perr("waiting for the exec stop"))?;
        if !libc::WIFSTOPPED(st) {
            return Err(PtraceError::Ended(crate::process::describe_wait_status(st)));
        }
        let opts = libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACESYSGOOD;
        set_options(pid, opts).map_err(perr("SETOPTIONS"))?;
        let entry = self.auxv()?.iter().find(|(t, _)| *t == libc::AT_ENTRY).map(|&(_, v)| v).unwrap_or(0);
        if entry == 0 {
            return Err(PtraceError::Ended("no AT_ENTRY in the auxiliary vector".into()));
        }
        let orig = peek_text(pid, entry).map_err(perr("PEEKTEXT"))?;
        poke_text(pid, entry, (orig & !0xff) | 0xcc).map_err(perr("POKETEXT"))?;
        let mut sig = 0;
        loop {
            resume_to_syscall(pid, sig).map_err(perr("SYSCALL"))?;
            sig = 0;
            let st = wait_stop(pid).map_err(perr("waitpid"))?;
            if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
                return Err(PtraceError::Ended(crate::process::describe_wait_status(st)));
            }
            let stopsig = libc::WSTOPSIG(st);
            if stopsig == libc::SIGTRAP | 0x80 {
                self.record_syscall()?;
                continue;
            }
            if stopsig == libc::SIGTRAP {
                let mut regs = get_regs(pid).map_err(perr("GETREGS"))?;
                if regs.rip == entry + 1 {
                    regs.rip = entry;
                    set_regs(pid, &regs).map_err(perr("SETREGS"))?;
                    poke_text(pid, entry, orig).map_err(perr("POKETEXT restore"))?;
                    self.regs = EntryRegs { rip: regs.rip, rsp: regs.rsp, rdx: regs.rdx, fs_base: regs.fs_base };
                    return Ok(());
                }
                continue;
            }
            // Any other signal before entry means a start-up that cannot be
            // snapshotted (it is delivered, so a fatal one ends the prototype).
            if stopsig == libc::SIGSEGV || stopsig == libc::SIGBUS || stopsig == libc::SIGILL {
                return Err(PtraceError::Signal(stopsig));
            }
            sig = stopsig;
        }
    }

    fn record_syscall(&mut self) -> Result<(), PtraceError> {
        // struct ptrace_syscall_info: op u8, pad, arch u32, ip u64, sp u64,
        // then entry {nr u64, args[6] u64} or exit {rval i64, is_error u8}.
        let mut buf = [0u64; 16];
        get_syscall_info(self.pid, &mut buf).map_err(perr("GET_SYSCALL_INFO"))?;
        let op = (buf[0] & 0xff) as u8;
        match op {
            SYSCALL_INFO_ENTRY => {
                let mut args = [0u64; 6];
                args.copy_from_slice(&buf[4..10]);
                self.syscalls.push(SyscallRecord { nr: buf[3], args, ret: 0 });
            }
            SYSCALL_INFO_EXIT => {
                if let Some(last) = self.syscalls.last_mut() {
                    last.ret = buf[3] as i64;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The auxiliary vector as (type, value) pairs.
    pub fn auxv(&self) -> Result<Vec<(u64, u64)>, PtraceError> {
        Ok(crate::procfs::auxv_entries(&self.proc_file("auxv")?).collect())
    }

    /// A /proc/PID file.
    pub fn proc_file(&self, what: &'static str) -> Result<Vec<u8>, PtraceError> {
        std::fs::read(format!("/proc/{}/{what}", self.pid)).map_err(|source| PtraceError::Proc {
            pid: self.pid,
            what,
            source,
        })
    }

    /// Entries of /proc/PID/fd and /proc/PID/task.
    pub fn proc_dir(&self, what: &'static str) -> Result<Vec<String>, PtraceError> {
        let dir = std::fs::read_dir(format!("/proc/{}/{what}", self.pid)).map_err(|source| PtraceError::Proc {
            pid: self.pid,
            what,
            source,
        })?;
        Ok(dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
    }

    /// Read `len` bytes of its memory at `addr`.
    pub fn read_mem(&self, addr: u64, len: usize) -> Result<Vec<u8>, PtraceError> {
        let mut buf = vec![0u8; len];
        let done = match &self.mem {
            Some(mem) => crate::fd::pread_full(mem, &mut buf, addr).map_err(|e| PtraceError::Proc {
                pid: self.pid,
                what: "mem",
                source: e.into(),
            })?,
            None => 0,
        };
        if done < len {
            return Err(PtraceError::Proc {
                pid: self.pid,
                what: "mem",
                source: io::Error::from(io::ErrorKind::UnexpectedEof),
            });
        }
        Ok(buf)
    }
}

impl Drop for Prototype {
    fn drop(&mut self) {
        // SAFETY: kill and reap our traced child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
        let _ = wait_stop(self.pid);
    }
}
