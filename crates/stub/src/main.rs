//! zygote-stub: the no-libc launcher that builds a process's address space
//! from a spawn plan (on `PLAN_FD`), then jumps to the program's entry with
//! the kernel-built stack; as a pre-started launcher it first waits for its
//! plan (`prestart.rs`). The steps and failure reports: docs/ARCHITECTURE.md
//! ("From request to running process", "Pre-started launchers"). With
//! crates/linux, the only place where `unsafe` lives.
#![no_std]
#![no_main]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("the zygote stub supports Linux x86_64 only");

mod prestart;
mod report;
mod restore;

pub(crate) use report::fail;
use report::{no_plan, plan_fail};

use core::arch::{asm, global_asm};
use zygote_plan::{
    FdMove, Header, MAX_PLAN_SIZE, PLAN_FD, Plan, PlanError, STUB_FAILURE_EXIT, Source, Stage, StatusRecord,
};

pub use stack::Stack;

mod stack {
    //! The initial process stack, behind constructors that promise its layout.

    /// The initial stack the program starts on (the kernel's, or one a
    /// pre-started launcher built).
    ///
    /// Invariant (promised by the `unsafe` constructors): `sp` points at
    /// `argc`, followed by `argc` argv pointers and a NULL (at `argv`), envp
    /// pointers and a NULL (at `envp`), then the `AT_NULL`-terminated auxv
    /// pairs (at `auxv`); every argv and envp pointer points at a
    /// NUL-terminated string, and all of it is readable and writable memory
    /// that no Rust reference covers and that stays mapped while the `Stack` is
    /// used. The safe code that reads or rewrites it relies on this.
    pub struct Stack {
        sp: *mut u64,
        argc: usize,
        argv: *mut u64,
        envp: *mut u64,
        auxv: *mut u64,
    }

    impl Stack {
        /// The stack the kernel built for this exec.
        ///
        /// # Safety
        /// `sp` must be the initial stack pointer of this exec (what the kernel
        /// gave `_start`), so the layout above is there.
        pub unsafe fn from_sp(sp: *mut u64) -> Self {
            // SAFETY: argc, then argc argv pointers and a NULL, envp pointers and a
            // NULL, then the auxv, all readable and writable stack memory.
            unsafe {
                let argc = *sp as usize;
                let argv = sp.add(1);
                let envp = argv.add(argc + 1);
                let mut p = envp;
                while *p != 0 {
                    p = p.add(1);
                }
                Stack { sp, argc, argv, envp, auxv: p.add(1) }
            }
        }

        /// A stack built by hand.
        ///
        /// # Safety
        /// The pointers must describe a stack with the layout of the type's
        /// invariant: `*sp == argc`, `argv == sp + 1`, `envp == argv + argc + 1`
        /// and `auxv` just past envp's NULL, with the strings and pairs there,
        /// in writable memory that stays mapped while the `Stack` is used.
        pub unsafe fn new(sp: *mut u64, argc: usize, argv: *mut u64, envp: *mut u64, auxv: *mut u64) -> Self {
            Stack { sp, argc, argv, envp, auxv }
        }

        /// The initial stack pointer (`&argc`).
        pub fn sp(&self) -> *mut u64 {
            self.sp
        }
        pub fn argc(&self) -> usize {
            self.argc
        }
        /// `argc` string pointers, then NULL.
        pub fn argv(&self) -> *mut u64 {
            self.argv
        }
        /// String pointers, then NULL.
        pub fn envp(&self) -> *mut u64 {
            self.envp
        }
        /// `(type, value)` pairs up to `AT_NULL`.
        pub fn auxv(&self) -> *mut u64 {
            self.auxv
        }

        pub fn argv0(&self) -> u64 {
            // SAFETY: by the invariant argv has argc readable entries.
            if self.argc > 0 { unsafe { *self.argv } } else { 0 }
        }
    }
}

pub(crate) mod sys {
    //! Linux x86_64 system calls: the raw entry points (`unsafe`: their
    //! arguments can be any pointers) and safe wrappers for the calls whose
    //! arguments are plain integers or Rust references.
    //!
    //! File descriptors are plain integers in the stub (no `OwnedFd`), and no
    //! mapping depends on an fd staying open, so closing or duplicating one
    //! cannot break memory safety.
    use core::arch::asm;

    pub const SYS_WRITE: usize = 1;
    pub const SYS_CLOSE: usize = 3;
    pub const SYS_MMAP: usize = 9;
    pub const SYS_MUNMAP: usize = 11;
    pub const SYS_RT_SIGPROCMASK: usize = 14;
    pub const SYS_PREAD64: usize = 17;
    pub const SYS_FCHDIR: usize = 81;
    pub const SYS_PRCTL: usize = 157;
    pub const SYS_EXIT_GROUP: usize = 231;
    pub const SYS_DUP3: usize = 292;
    pub const SYS_CLOSE_RANGE: usize = 436;
    pub const SYS_FCNTL: usize = 72;
    pub const SYS_MPROTECT: usize = 10;
    pub const PROT_WRITE: usize = 2;
    pub const PROT_EXEC: usize = 4;

    pub const PROT_READ: usize = 1;
    pub const MAP_PRIVATE: usize = 0x02;
    pub const MAP_ANONYMOUS: usize = 0x20;
    pub const MAP_FIXED_NOREPLACE: usize = 0x10_0000;
    pub const PR_SET_NAME: usize = 15;
    pub const SIG_SETMASK: usize = 2;
    const F_DUPFD: usize = 0;

    /// A raw system call. Returns the raw kernel result: negative errno on
    /// failure.
    ///
    /// # Safety
    /// The arguments must be valid for system call `n`: every pointer argument
    /// points to memory of the size the call reads or writes (writable where
    /// the kernel writes), live for the call, and for as long as the kernel
    /// keeps using it after the call (set_tid_address, set_robust_list, rseq).
    /// A call that changes the address space (mmap over a fixed address,
    /// munmap, mremap, mprotect, brk, ...) must not unmap, remap or take access
    /// away from memory the stub still uses: its own image, its stack, the plan
    /// mapping while the plan is read.
    #[inline(always)]
    pub unsafe fn syscall6(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller guarantees the arguments are valid for call `n`
        // (this function's contract). The kernel clobbers only rcx and r11,
        // which are declared, and uses no user stack.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a,
                in("rsi") b,
                in("rdx") c,
                in("r10") d,
                in("r8") e,
                in("r9") f,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// [`syscall6`] with three arguments (the rest zero).
    ///
    /// # Safety
    /// As for [`syscall6`].
    #[inline(always)]
    pub unsafe fn syscall3(n: usize, a: usize, b: usize, c: usize) -> isize {
        // SAFETY: the caller's arguments are valid for `n` (same contract); the
        // zeros in the unused argument registers are ignored by the kernel.
        unsafe { syscall6(n, a, b, c, 0, 0, 0) }
    }

    /// `close(fd)`.
    #[inline(always)]
    pub fn close(fd: i32) -> isize {
        // SAFETY: close takes only an integer; it touches no memory of ours.
        unsafe { syscall3(SYS_CLOSE, fd as usize, 0, 0) }
    }

    /// `close_range(lo, hi, 0)`.
    #[inline(always)]
    pub fn close_range(lo: u32, hi: u32) -> isize {
        // SAFETY: integers only; closing fds touches no memory of ours.
        unsafe { syscall3(SYS_CLOSE_RANGE, lo as usize, hi as usize, 0) }
    }

    /// `dup3(from, to, 0)`.
    #[inline(always)]
    pub fn dup3(from: i32, to: i32) -> isize {
        // SAFETY: integers only; replacing an fd touches no memory of ours.
        unsafe { syscall3(SYS_DUP3, from as usize, to as usize, 0) }
    }

    /// `fcntl(fd, F_DUPFD, min)`: a copy of `fd` at the lowest free number >= `min`.
    #[inline(always)]
    pub fn fcntl_dupfd(fd: i32, min: i32) -> isize {
        // SAFETY: F_DUPFD takes integers only.
        unsafe { syscall3(SYS_FCNTL, fd as usize, F_DUPFD, min as usize) }
    }

    /// `fchdir(fd)`.
    #[inline(always)]
    pub fn fchdir(fd: i32) -> isize {
        // SAFETY: an integer only; the working directory is no memory of ours.
        unsafe { syscall3(SYS_FCHDIR, fd as usize, 0, 0) }
    }

    /// `write(fd, buf)`: one attempt, the raw result.
    #[inline(always)]
    pub fn write(fd: i32, buf: &[u8]) -> isize {
        // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`, a live slice.
        unsafe { syscall3(SYS_WRITE, fd as usize, buf.as_ptr() as usize, buf.len()) }
    }

    /// `pread64(fd, buf, off)`: one attempt, the raw result.
    #[inline(always)]
    pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> isize {
        // SAFETY: the kernel writes at most `buf.len()` bytes to `buf`, a live,
        // exclusively borrowed slice.
        unsafe { syscall6(SYS_PREAD64, fd as usize, buf.as_mut_ptr() as usize, buf.len(), off as usize, 0, 0) }
    }

    /// `exit_group(code)`.
    pub fn exit_group(code: i32) -> ! {
        loop {
            // SAFETY: exit_group takes an integer and ends the process.
            unsafe { syscall3(SYS_EXIT_GROUP, code as usize, 0, 0) };
        }
    }

    pub fn write_all(fd: i32, mut buf: &[u8]) {
        while !buf.is_empty() {
            let n = write(fd, buf);
            if n == -4 {
                continue; // EINTR
            }
            if n <= 0 {
                return;
            }
            buf = &buf[n as usize..];
        }
    }
}

global_asm!(
    ".globl _start",
    ".type _start,@function",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym stub_main,
);

const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_BASE: u64 = 7;
const AT_ENTRY: u64 = 9;
const AT_EXECFN: u64 = 31;

/// The stub's entry. `sp` is the kernel's initial stack pointer (&argc).
extern "C" fn stub_main(sp: *mut u64) -> ! {
    // SAFETY: `sp` is the initial stack pointer the kernel gave _start.
    let stack = unsafe { Stack::from_sp(sp) };
    if let Some(ctl) = prestart::control_fd(&stack) {
        // A pre-started launcher: wait for the hand-over, build the stack,
        // then `launch` as below.
        prestart::wait_and_launch(&stack, ctl)
    }
    let (base, size) = map_plan(-1);
    // SAFETY: `map_plan` just mapped the plan at `base..base + size`, and
    // nothing else unmaps it; the plan on PLAN_FD is the one the spawner (the
    // only thing that execs the stub) wrote for this process; `stack` is the
    // kernel's initial stack.
    unsafe { launch(&Launch { stack, base, size }) }
}

/// Map the plan on [`PLAN_FD`] read-only (header first, for its size).
/// Returns the mapping's address and length. Failures before the header
/// names the status fd go to `status_fd`.
pub(crate) fn map_plan(status_fd: i32) -> (usize, usize) {
    let mut hb = [0u8; Header::SIZE];
    let n = sys::pread(PLAN_FD, &mut hb, 0);
    if n != Header::SIZE as isize {
        if status_fd < 0 {
            no_plan();
        }
        let errno = if n < 0 { -n as i32 } else { 0 };
        fail(status_fd, Stage::Plan, 0, errno, StatusRecord::plan_error(PlanError::Truncated).0, 0);
    }
    let header = match Header::decode(&hb) {
        Ok(h) => h,
        Err(_) if status_fd < 0 => no_plan(),
        Err(e) => plan_fail(status_fd, e),
    };
    let status_fd = header.status_fd;
    if header.total_size > MAX_PLAN_SIZE || (header.total_size as usize) < Header::SIZE {
        plan_fail(status_fd, PlanError::Truncated);
    }
    let size = header.total_size as usize;
    // SAFETY: no address is asked for (0, no MAP_FIXED): the kernel picks a free
    // range, so no mapping of ours is replaced; no memory of ours is passed.
    let base = unsafe { sys::syscall6(sys::SYS_MMAP, 0, size, sys::PROT_READ, sys::MAP_PRIVATE, PLAN_FD as usize, 0) };
    if base < 0 {
        fail(status_fd, Stage::Plan, 0, -base as i32, 0, 0);
    }
    (base as usize, size)
}

/// The validated plan in a mapping made by [`map_plan`].
///
/// # Safety
/// `base..base + size` must be a readable mapping (one [`map_plan`] returned)
/// that stays mapped, and is not written, for as long as the returned `Plan`
/// (or anything borrowed from it) is used: the `'static` is the caller's
/// promise.
pub(crate) unsafe fn plan_at(base: usize, size: usize, status_fd: i32) -> Plan<'static> {
    // SAFETY: the caller guarantees `size` readable bytes at `base` that stay
    // mapped and unchanged while the plan is used.
    let bytes = unsafe { core::slice::from_raw_parts(base as *const u8, size) };
    match Plan::parse(bytes) {
        Ok(p) => p,
        Err(e) => plan_fail(status_fd, e),
    }
}

/// What [`launch`] works from: the initial stack (the kernel's, or the one a
/// pre-started launcher built) and the mapped plan.
pub(crate) struct Launch {
    pub stack: Stack,
    pub base: usize,
    pub size: usize,
}

/// Build the program's address space from the plan and jump to it.
///
/// # Safety
/// `l.base..l.base + l.size` must be the plan mapping [`map_plan`] made,
/// mapped and used by nothing else (`launch` reads it, then unmaps it); the
/// plan must be the spawner's plan for this process (see [`map_image`]), and
/// `l.stack` the initial stack to start the program on, which nothing of the
/// caller's uses any more (the program gets it).
pub(crate) unsafe extern "C" fn launch(l: &Launch) -> ! {
    let (base, size) = (l.base, l.size);
    let stack = &l.stack;
    // SAFETY: the caller's mapping; it is unmapped below only after the last
    // use of `plan` (and of everything borrowed from it).
    let plan = unsafe { plan_at(base, size, -1) };
    let status_fd = plan.header.status_fd;
    let (argv0, auxv) = (stack.argv0(), stack.auxv());
    let h = plan.header;

    // SAFETY: the spawner's plan for this process (the caller's contract).
    unsafe { map_image(&plan, stack, status_fd) };
    // SAFETY: `auxv` points at the kernel-built auxv pairs on our stack, terminated
    // by AT_NULL; we rewrite values in place.
    unsafe {
        let mut a = auxv;
        let mut guard = 0;
        while *a != AT_NULL {
            let v = a.add(1);
            match *a {
                AT_PHDR => *v = h.at_phdr,
                AT_PHNUM => *v = h.at_phnum,
                AT_PHENT => *v = h.at_phent,
                AT_ENTRY => *v = h.at_entry,
                AT_BASE => *v = h.at_base,
                AT_EXECFN if argv0 != 0 => *v = argv0,
                _ => {}
            }
            a = a.add(2);
            guard += 1;
            if guard > 4096 {
                fail(status_fd, Stage::Auxv, 0, 0, 0, 0);
            }
        }
    }

    let mm = restore::mm_map(&plan, stack);
    if let Some(m) = &mm {
        let r = restore::set_mm(m);
        if r < 0 {
            fail(status_fd, Stage::Op, 0, -r as i32, 0, m.start_brk);
        }
    }

    // 4. Name, fds.
    let name = plan.name();
    if !name.is_empty() {
        let mut comm = [0u8; 16];
        let len = name.len().min(15);
        comm[..len].copy_from_slice(&name[..len]);
        // SAFETY: PR_SET_NAME reads 16 bytes (TASK_COMM_LEN), NUL-terminated:
        // `comm` is a live 16-byte local with at most 15 name bytes.
        unsafe { sys::syscall3(sys::SYS_PRCTL, sys::PR_SET_NAME, comm.as_ptr() as usize, 0) };
    }
    for i in 0..h.fd_count {
        let FdMove { from, to } = plan.fd_move(i);
        let r = sys::dup3(from, to);
        if r < 0 {
            fail(status_fd, Stage::FdMove, i, -r as i32, 0, 0);
        }
    }
    // The program file, kept for /proc/self/exe, above every target.
    let keep_exe: i32 = match (&mm, h.exe_fd) {
        (Some(_), fd) if fd >= 0 => {
            let above = if h.fd_count > 0 { plan.fd_move(h.fd_count - 1).to + 1 } else { 3 };
            let r = sys::fcntl_dupfd(fd, above.max(3));
            if r < 0 { -1 } else { r as i32 }
        }
        _ => -1,
    };
    // Close every fd that is neither stdio nor a move target. Targets are sorted
    // ascending (checked by Plan::parse), so the gaps are ranges.
    let mut lo: u32 = 3;
    for i in 0..h.fd_count {
        let to = plan.fd_move(i).to as u32;
        if to >= lo {
            if to > lo {
                sys::close_range(lo, to - 1);
            }
            lo = to + 1;
        }
    }
    let sigmask = h.sigmask;
    let entry = h.entry;
    let rtld_fini = h.rtld_fini;
    // SAFETY: `base..base + size` is the plan mapping (the caller's contract),
    // and `plan` and everything borrowed from it are dead: what is still
    // needed (sigmask, entry, rtld_fini, the fd numbers) was copied above.
    unsafe { sys::syscall3(sys::SYS_MUNMAP, base, size, 0) };
    // This closes the status pipe too: the spawner sees EOF, meaning success.
    if keep_exe >= 0 {
        let k = keep_exe as u32;
        if k > lo {
            sys::close_range(lo, k - 1);
        }
        sys::close_range(k + 1, u32::MAX);
    } else {
        sys::close_range(lo, u32::MAX);
    }

    // 5. Signal mask, then jump (through the trampoline when /proc/self/exe
    // is to name the program: that needs the stub unmapped first).
    // SAFETY: the new set is the live 8-byte local `sigmask` (sigsetsize 8);
    // the old set is not asked for (NULL).
    unsafe { sys::syscall6(sys::SYS_RT_SIGPROCMASK, sys::SIG_SETMASK, &sigmask as *const u64 as usize, 0, 8, 0, 0) };
    // SAFETY: `map_image` mapped the program's image with its entry at `entry`
    // and `stack` is its initial stack (the caller's contract); `m` is this
    // process's prctl_mm_map and `keep_exe` the open program file. Nothing of
    // the stub is used after the jump.
    unsafe {
        if let (Some(m), true) = (mm, keep_exe >= 0) {
            set_exe_and_jump(m, keep_exe, entry, stack.sp(), rtld_fini);
        }
        jump(entry, stack.sp(), rtld_fini)
    }
}

/// The vDSO where the prototype had it, the regions, then the restore ops
/// (prototype images) that the plan holds.
///
/// # Safety
/// `plan` must be the spawner's plan for this process, so that the addresses
/// in its ops are what [`restore::move_vdso`] and [`restore::apply`] require:
/// its `VdsoSpecial` ops describe this kernel's special mappings, and its
/// other ops name memory in its regions (writable slots for the stores), never
/// the stub's image, its stack or the plan mapping.
pub(crate) unsafe fn map_image(plan: &Plan<'_>, stack: &Stack, status_fd: i32) {
    let h = plan.header;
    // SAFETY: the plan's VdsoSpecial ops are this kernel's layout (our contract).
    unsafe { restore::move_vdso(plan, stack, status_fd) };
    for i in 0..h.region_count {
        let r = plan.region(i);
        let (flags, fd, off) = match r.source() {
            Some(Source::Fd) => {
                (sys::MAP_PRIVATE | sys::MAP_FIXED_NOREPLACE, r.fd as isize as usize, r.offset as usize)
            }
            _ => (sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED_NOREPLACE, usize::MAX, 0),
        };
        // SAFETY: MAP_FIXED_NOREPLACE (without MAP_FIXED) never replaces a
        // mapping: the call fails, or a kernel that ignores the flag takes the
        // address as a hint and maps elsewhere (caught below). No memory of
        // ours is passed.
        let got =
            unsafe { sys::syscall6(sys::SYS_MMAP, r.vaddr as usize, r.len as usize, r.prot as usize, flags, fd, off) };
        if got < 0 {
            fail(status_fd, Stage::Map, i, -got as i32, 0, r.vaddr);
        }
        if got as u64 != r.vaddr {
            // A kernel that ignores MAP_FIXED_NOREPLACE placed it elsewhere.
            fail(status_fd, Stage::Map, i, 17, 0, r.vaddr);
        }
    }

    // SAFETY: the regions are mapped (above) and the ops' addresses lie in them
    // as `apply` requires (our contract).
    unsafe { restore::apply(plan, stack, status_fd) };
}

/// The end of every path into the program, with the entry address on the
/// stack and `rdx` set: every other general register zeroed, the direction
/// flag clear, `ret` to the entry. (One assembler string, for `asm!` and
/// `global_asm!` alike.)
macro_rules! enter_program {
    () => {
        concat!(
            "xor eax, eax\n",
            "xor ebx, ebx\n",
            "xor ecx, ecx\n",
            "xor esi, esi\n",
            "xor edi, edi\n",
            "xor ebp, ebp\n",
            "xor r8d, r8d\n",
            "xor r9d, r9d\n",
            "xor r10d, r10d\n",
            "xor r11d, r11d\n",
            "xor r12d, r12d\n",
            "xor r13d, r13d\n",
            "xor r14d, r14d\n",
            "xor r15d, r15d\n",
            "cld\n",
            "ret",
        )
    };
}

/// Jump to the program's entry point with the initial stack and `rdx`.
///
/// # Safety
/// The program's image must be mapped with its entry point at `entry`, `sp`
/// must be the initial stack pointer of a [`Stack`] built for it, and nothing
/// live may be left on that stack's memory below `sp` that the caller still
/// needs (the program owns the stack from here on).
unsafe fn jump(entry: u64, sp: *mut u64, rtld_fini: u64) -> ! {
    // SAFETY: per the contract, this is the state a process has at its ELF
    // entry point. We never return.
    unsafe {
        asm!(
            "mov rsp, rsi",
            "push rdi",
            enter_program!(),
            in("rsi") sp,
            in("rdi") entry,
            in("rdx") rtld_fini,
            options(noreturn),
        );
    }
}

unsafe extern "C" {
    static __ehdr_start: u8;
    static _end: u8;
    static zygote_tramp_start: u8;
    static zygote_tramp_end: u8;
}

// The trampoline runs from an anonymous page, so it can unmap the stub's own
// image (PR_SET_MM_MAP refuses to change the exe file while the old one is
// mapped). Position independent; `rdi` points at TrampArgs.
global_asm!(
    ".globl zygote_tramp_start",
    ".globl zygote_tramp_end",
    "zygote_tramp_start:",
    "mov r12, rdi",
    "mov eax, 11",
    "mov rdi, [r12]",
    "mov rsi, [r12 + 8]",
    "syscall",
    "mov eax, 157",
    "mov edi, 35",
    "mov esi, 14",
    "mov rdx, [r12 + 16]",
    "mov r10, [r12 + 24]",
    "xor r8d, r8d",
    "syscall",
    "mov eax, 3",
    "mov rdi, [r12 + 32]",
    "syscall",
    "mov rdx, [r12 + 56]",
    "mov rax, [r12 + 40]",
    "mov rsp, [r12 + 48]",
    "push rax",
    enter_program!(),
    "zygote_tramp_end:",
);

#[repr(C)]
struct TrampArgs {
    stub_start: u64,
    stub_len: u64,
    mm: u64,
    mm_size: u64,
    exe_fd: u64,
    entry: u64,
    sp: u64,
    rtld_fini: u64,
}

/// Copy the trampoline to an anonymous page and run it: unmap the stub, set
/// the exe file with PR_SET_MM_MAP, close the fd, jump to the entry. If the
/// page cannot be had, jump without changing the exe file.
///
/// # Safety
/// As for [`jump`]; also the stub's image is unmapped, so nothing the caller
/// has may point into it, and `mm` must describe this process (from
/// [`restore::mm_map`]) with `exe_fd` an open fd of the program file.
unsafe fn set_exe_and_jump(mut mm: restore::MmMap, exe_fd: i32, entry: u64, sp: *mut u64, rtld_fini: u64) -> ! {
    mm.exe_fd = exe_fd as u32;
    // Linker-defined symbols bounding the stub image and the trampoline code
    // (only their addresses are taken).
    let (lo, hi, t0, t1) = (
        &raw const __ehdr_start as u64,
        &raw const _end as u64,
        &raw const zygote_tramp_start as u64,
        &raw const zygote_tramp_end as u64,
    );
    // SAFETY: a fresh anonymous page at an address the kernel picks (0, no
    // MAP_FIXED): no mapping of ours is replaced, no memory of ours is passed.
    let page = unsafe {
        sys::syscall6(
            sys::SYS_MMAP,
            0,
            4096,
            sys::PROT_READ | sys::PROT_WRITE,
            sys::MAP_PRIVATE | sys::MAP_ANONYMOUS,
            usize::MAX,
            0,
        )
    };
    if page < 0 {
        sys::close(exe_fd);
        // SAFETY: the caller's contract is `jump`'s.
        unsafe { jump(entry, sp, rtld_fini) };
    }
    // SAFETY: copying the trampoline's bytes (well under a page) into the fresh page.
    unsafe { memcpy(page as *mut u8, t0 as *const u8, (t1 - t0) as usize) };
    // SAFETY: `page` is the page just mapped, used by nothing but the
    // trampoline's copy; read+exec is all the trampoline needs.
    unsafe { sys::syscall3(sys::SYS_MPROTECT, page as usize, 4096, sys::PROT_READ | sys::PROT_EXEC) };
    let args = TrampArgs {
        stub_start: lo & !4095,
        stub_len: ((hi + 4095) & !4095) - (lo & !4095),
        mm: &mm as *const restore::MmMap as u64,
        mm_size: core::mem::size_of::<restore::MmMap>() as u64,
        exe_fd: exe_fd as u64,
        entry,
        sp: sp as u64,
        rtld_fini,
    };
    // SAFETY: the page holds the position-independent trampoline; `args` and
    // `mm` live on the process stack, which stays mapped. It never returns.
    unsafe {
        asm!("jmp {t}", t = in(reg) page, in("rdi") &args as *const TrampArgs, options(noreturn));
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    sys::write_all(2, b"zygote-stub: internal error\n");
    sys::exit_group(STUB_FAILURE_EXIT)
}

// The compiler lowers copies and fills to these symbols; without libc the stub
// provides them. `rep movsb` / `rep stosb` keep LLVM from turning the loops back
// into calls to themselves.

/// # Safety
/// Standard C `memcpy` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: caller guarantees `dst` and `src` are valid for `n` bytes and do not overlap.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _, options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// Standard C `memmove` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: forward copy is safe when dst is below src or the ranges do not overlap.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: overlapping with dst above src: copy backwards with the direction flag set.
    unsafe {
        asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") n => _,
            inout("rdi") dst.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _,
            options(nostack),
        );
    }
    dst
}

/// # Safety
/// Standard C `memset` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: caller guarantees `dst` is valid for `n` bytes.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8, options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// Standard C `memcmp` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: caller guarantees both pointers are valid for `n` bytes.
        let (x, y) = unsafe { (core::ptr::read_volatile(a.add(i)), core::ptr::read_volatile(b.add(i))) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// # Safety
/// Standard C `bcmp` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}
