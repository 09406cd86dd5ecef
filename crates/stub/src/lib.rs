//! zygote-stub: the no-libc launchers that build a process's address space
//! from a spawn plan, then jump to the program's entry with the kernel-built
//! stack. Two executables share this library: `zygote-stub` (the daemon's:
//! its plan on `PLAN_FD`, or, pre-started, from a control socket:
//! `prestart.rs`) and `zygote-exec` (the thin exec client: it asks the
//! daemon for the image of the program it was run for and becomes that
//! program, or execs it: `client/`). The steps and failure reports:
//! docs/ARCHITECTURE.md ("From request to running process", "Pre-started
//! launchers", "Caller-side spawning"). With crates/linux, the only place
//! where `unsafe` lives.
#![no_std]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("the zygote stub supports Linux x86_64 only");

pub mod client;
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

mod stack;
pub(crate) mod sys;

const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_BASE: u64 = 7;
const AT_ENTRY: u64 = 9;
pub(crate) const AT_EXECFN: u64 = 31;

/// The `_start` of an executable: align the stack and call `$main` with the
/// kernel's initial stack pointer (&argc).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        core::arch::global_asm!(
            ".globl _start",
            ".type _start,@function",
            "_start:",
            "xor ebp, ebp",
            "mov rdi, rsp",
            "and rsp, -16",
            "call {main}",
            "ud2",
            main = sym $main,
        );
    };
}

/// The stub's entry (called by `_start` only).
///
/// # Safety
/// `sp` must be the kernel's initial stack pointer (&argc) of this exec.
pub unsafe extern "C" fn stub_main(sp: *mut u64) -> ! {
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
    let h = plan.header;

    // SAFETY: the spawner's plan for this process (the caller's contract).
    unsafe { map_image(&plan, stack, status_fd, |fd| fd) };
    patch_auxv(&h, stack, status_fd, false);
    let mm = restore::mm_map(&plan, stack);
    if let Some(m) = &mm {
        let r = restore::set_mm(m);
        if r < 0 {
            fail(status_fd, Stage::Op, 0, -r as i32, 0, m.start_brk);
        }
    }

    // 4. Name, fds.
    set_name(&plan);
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

/// Point the auxv at the program: its headers, entry and interpreter base,
/// and (unless `keep_execfn`: the stack was built with it) AT_EXECFN at its
/// argv[0].
pub(crate) fn patch_auxv(h: &Header, stack: &Stack, status_fd: i32, keep_execfn: bool) {
    let (argv0, auxv) = (if keep_execfn { 0 } else { stack.argv0() }, stack.auxv());
    // SAFETY: by the Stack invariant `auxv` points at the auxv pairs on the
    // initial stack, terminated by AT_NULL; values are rewritten in place.
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
}

/// The plan's process name (comm), if it has one.
pub(crate) fn set_name(plan: &Plan<'_>) {
    let name = plan.name();
    if !name.is_empty() {
        let mut comm = [0u8; 16];
        let len = name.len().min(15);
        comm[..len].copy_from_slice(&name[..len]);
        // SAFETY: PR_SET_NAME reads 16 bytes (TASK_COMM_LEN), NUL-terminated:
        // `comm` is a live 16-byte local with at most 15 name bytes.
        unsafe { sys::syscall3(sys::SYS_PRCTL, sys::PR_SET_NAME, comm.as_ptr() as usize, 0) };
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
/// the stub's image, its stack or the plan mapping. `local_fd` maps the fd
/// numbers of the plan's regions to this process's.
pub(crate) unsafe fn map_image(plan: &Plan<'_>, stack: &Stack, status_fd: i32, local_fd: impl Fn(i32) -> i32) {
    let h = plan.header;
    // SAFETY: the plan's VdsoSpecial ops are this kernel's layout (our contract).
    unsafe { restore::move_vdso(plan, stack, status_fd) };
    for i in 0..h.region_count {
        let r = plan.region(i);
        let (flags, fd, off) = match r.source() {
            Some(Source::Fd) => {
                (sys::MAP_PRIVATE | sys::MAP_FIXED_NOREPLACE, local_fd(r.fd) as isize as usize, r.offset as usize)
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
pub(crate) unsafe fn jump(entry: u64, sp: *mut u64, rtld_fini: u64) -> ! {
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
pub(crate) unsafe fn set_exe_and_jump(
    mut mm: restore::MmMap,
    exe_fd: i32,
    entry: u64,
    sp: *mut u64,
    rtld_fini: u64,
) -> ! {
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
