//! Pre-started launchers: a stub exec'd ahead of time, waiting for its spawn.
//!
//! The spawner execs the stub with `[name, PRESTART_ARG, control fd]`, an
//! empty environment and every signal blocked, so the exec (a new address
//! space, the costliest step of a spawn) is off the spawn's critical path.
//! Each message on the control socket (SOCK_SEQPACKET) is a hand-over:
//!
//! ```text
//! data:  u32 count, u32 status index (u32::MAX: none), i32 target[count]
//! fds:   SCM_RIGHTS, count fds, in ascending target order
//! ```
//!
//! The launcher keeps only the control socket (at a number above every
//! target; the number below it is its own too) open while it waits, so the
//! kernel installs the received fds at the lowest numbers, in order: fd `i`
//! lands at or below `target[i]` and is moved from the highest down, which
//! never clobbers a source still to move. The plan is then on
//! [`PLAN_FD`](zygote_plan::PLAN_FD) as for an exec'd stub.
//!
//! The first hand-over is a warm-up ([`FLAG_WARM_UP`]): map the image and
//! apply the ops that do not depend on the spawn, keep the program file (for
//! `/proc/self/exe`) just below the control fd, close the rest, report ready
//! with one byte, and wait again. A replicate hand-over
//! ([`HANDOVER_REPLICATE`]) makes a warm launcher fork its replacement. The
//! last is the spawn: its plan carries
//! the program's argv and envp (the kernel built this process's stack for the
//! launcher's own exec), from which the launcher builds the initial stack
//! below its own frames, moves its own stack pointer beneath that, and goes on
//! with [`launch`](crate::launch) like an exec'd stub.

use core::arch::asm;

use zygote_plan::{
    FLAG_WARM_UP, HANDOVER_REPLICATE, MAX_HANDOVER_FDS, OpKind, PRESTART_ARG, Plan, STUB_FAILURE_EXIT, Stage,
};

use crate::restore::{AT_PLATFORM, AT_RANDOM, auxval, cstrlen};
use crate::sys::{EINTR, IoVec, MSG_CTRUNC, MsgHdr, SCM_RIGHTS, SOL_SOCKET};
use crate::{Launch, Stack, fail, map_image, map_plan, plan_at, sys};

const SYS_RT_SIGTIMEDWAIT: usize = 128;
const SYS_GETRANDOM: usize = 318;
const SYS_CLONE: usize = 56;
const SYS_SET_TID_ADDRESS: usize = 218;
const SYS_SET_ROBUST_LIST: usize = 273;
const CLONE_PARENT: usize = 0x8000;
const SIGCHLD: usize = 17;
const EINVAL: i32 = 22;
const AT_NULL: u64 = 0;
const AT_EXECFN: u64 = 31;

/// The control fd if this exec is a pre-started launcher's.
pub fn control_fd(stack: &Stack) -> Option<i32> {
    if stack.argc() != 3 {
        return None;
    }
    // SAFETY: argv has argc (3) NUL-terminated strings (`Stack`'s invariant).
    let arg = |i: usize| unsafe {
        let p = *stack.argv().add(i) as *const u8;
        core::slice::from_raw_parts(p, cstrlen(p))
    };
    if arg(1) != PRESTART_ARG {
        return None;
    }
    let digits = arg(2);
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0i32, |n, d| n * 10 + (d - b'0') as i32))
}

/// Discard signals that became pending while the launcher waited (it
/// inherited the spawner's process group, so a terminal's Ctrl-C reached it):
/// they were sent before this process became the program.
fn drain_pending_signals() {
    let all: u64 = !0;
    let zero = [0i64; 2];
    loop {
        // SAFETY: the set is the live 8-byte local `all` (sigsetsize 8), the
        // timeout the live 16-byte timespec `zero`; no siginfo is asked for
        // (NULL). The kernel only reads.
        let r = unsafe {
            sys::syscall6(SYS_RT_SIGTIMEDWAIT, &all as *const u64 as usize, 0, zero.as_ptr() as usize, 8, 0, 0)
        };
        if r <= 0 && r != EINTR {
            return;
        }
    }
}

/// [`receive`]'s answer to a replicate hand-over (its fd is at `ctl - 2`).
const REPLICATE: i32 = -2;

/// Receive one hand-over on `ctl` and move its fds into place (see the
/// module docs). Returns the status fd's number (-1 if the hand-over has
/// none: a warm-up; [`REPLICATE`] for a replicate hand-over). Exits quietly
/// when the spawner closed its end.
fn receive(ctl: i32) -> i32 {
    let mut data = [0u8; 8 + 4 * MAX_HANDOVER_FDS];
    // cmsghdr (16 bytes) plus the fds, 8-byte aligned.
    let mut control = [0u64; 2 + MAX_HANDOVER_FDS.div_ceil(2) + 1];
    let mut iov = IoVec { base: data.as_mut_ptr(), len: data.len() };
    let mut msg = MsgHdr::new(&mut iov, control.as_mut_ptr().cast(), core::mem::size_of_val(&control));
    let n = loop {
        // SAFETY: `msg` is a live msghdr whose iov (`iov`, over `data`) and
        // control buffer (`control`) are live locals of the lengths given; the
        // kernel writes only into those and into `msg` itself.
        let r = unsafe { sys::syscall3(sys::SYS_RECVMSG, ctl as usize, &mut msg as *mut MsgHdr as usize, 0) };
        if r != EINTR {
            break r;
        }
    };
    if n == 0 {
        // The spawner closed its end: this launcher is not needed.
        sys::exit_group(0);
    }
    if n < 8 {
        sys::exit_group(STUB_FAILURE_EXIT);
    }
    let rd = |at: usize| u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let (count, status_index) = (rd(0) as usize, rd(4) as usize);
    let (len, level, kind) = (control[0] as usize, control[1] as u32, (control[1] >> 32) as u32);
    let nfds = if msg.controllen >= 16 && level == SOL_SOCKET && kind == SCM_RIGHTS { (len - 16) / 4 } else { 0 };
    let fds = control[2..].as_ptr().cast::<i32>();
    // SAFETY: the kernel wrote `nfds` fds after the 16-byte cmsghdr, inside `control`.
    let received = |i: usize| unsafe { *fds.add(i) };
    let status_now = if status_index < nfds { received(status_index) } else { -1 };
    if msg.flags & MSG_CTRUNC != 0 || count != nfds || n as usize != 8 + 4 * count {
        fail(status_now, Stage::Handover, 0, EINVAL, 0, 0);
    }
    if status_index as u32 == HANDOVER_REPLICATE {
        if count != 1 || sys::dup3(received(0), ctl - 2) < 0 {
            sys::exit_group(STUB_FAILURE_EXIT);
        }
        sys::close(received(0));
        return REPLICATE;
    }
    let target = |i: usize| rd(8 + 4 * i) as i32;
    // fd `i` arrived at received(i), ascending, each at or below its target:
    // moving from the highest down never overwrites a source still to move.
    // The three numbers below the control fd are the launcher's own.
    for i in 0..count {
        let ok = received(i) <= target(i) && (i == 0 || (received(i - 1) < received(i) && target(i - 1) < target(i)));
        if !ok || target(i) >= ctl - 2 {
            fail(status_now, Stage::Handover, i as u32, EINVAL, 0, 0);
        }
    }
    for i in (0..count).rev() {
        if received(i) != target(i) {
            let r = sys::dup3(received(i), target(i));
            if r < 0 {
                fail(status_now, Stage::Handover, i as u32, -r as i32, 0, 0);
            }
        }
    }
    // Stdio the spawner did not send is closed, as it would be in its own
    // process; other leftovers (>= 3) go with the launch's close_range.
    for fd in 0..3 {
        if !(0..count).any(|i| target(i) == fd) {
            sys::close(fd);
        }
    }
    if status_index < count { target(status_index) } else { -1 }
}

/// What a warmed-up launcher registered for its thread (see [`replicate`]).
#[derive(Default, Clone, Copy)]
struct Thread {
    tid_address: u64,
    robust_list: (u64, u64),
}

impl Thread {
    fn of(plan: &Plan<'_>) -> Thread {
        let mut t = Thread::default();
        for i in 0..plan.header.op_count {
            let o = plan.op(i);
            match o.kind() {
                Some(OpKind::SetTidAddress) => t.tid_address = o.a,
                Some(OpKind::RobustList) => t.robust_list = (o.a, o.b),
                _ => {}
            }
        }
        t
    }
}

/// Fork the replacement launcher (see [`HANDOVER_REPLICATE`]); its control
/// socket is at `ctl - 2`. Returns `true` in the replacement, ready to wait;
/// `false` in the launcher, which sent the replacement's pid (nothing if the
/// fork failed: the spawner then warms up a new launcher itself).
///
/// # Safety
/// `thread` must be what [`Thread::of`] read from a warm-up plan whose image
/// this process has mapped ([`map_image`]): its tid address a writable 4-byte
/// slot and its robust list head in a region, as `restore::apply` requires.
unsafe fn replicate(ctl: i32, thread: &Thread) -> bool {
    let next = ctl - 2;
    // SAFETY: a fork (no CLONE_VM, no new stack, no tid pointers): the child
    // runs on its own copy of this address space and stack, the parent's
    // memory is untouched.
    let r = unsafe { sys::syscall6(SYS_CLONE, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0, 0) };
    if r != 0 {
        if r > 0 {
            sys::write(ctl, &(r as u32).to_le_bytes());
        }
        return false;
    }
    // The replacement: its own control socket and thread registration.
    if sys::dup3(next, ctl) < 0 {
        sys::exit_group(STUB_FAILURE_EXIT);
    }
    sys::close(next);
    if thread.tid_address != 0 {
        // SAFETY: the thread block's 4-byte tid field, in a region the warm-up
        // mapped writable (the contract), which stays mapped for the program.
        let tid = unsafe { sys::syscall3(SYS_SET_TID_ADDRESS, thread.tid_address as usize, 0, 0) };
        // SAFETY: the same slot (the same write the warm-up's SetTidAddress op made).
        unsafe { core::ptr::write_volatile(thread.tid_address as *mut u32, tid as u32) };
    }
    if thread.robust_list.0 != 0 {
        // SAFETY: the robust list head the warm-up registered, in a mapped
        // region (the contract); the kernel reads it only at thread exit.
        unsafe { sys::syscall3(SYS_SET_ROBUST_LIST, thread.robust_list.0 as usize, thread.robust_list.1 as usize, 0) };
    }
    true
}

/// Wait for hand-overs: at most one warm-up, then the spawn, whose stack it
/// builds before it launches. Never returns.
pub fn wait_and_launch(stack: &Stack, ctl: i32) -> ! {
    // Only the control socket stays open while waiting.
    if ctl > 0 {
        sys::close_range(0, (ctl - 1) as u32);
    }
    sys::close_range((ctl + 1) as u32, u32::MAX);
    let mut warm = false;
    // Thread registration the warm-up made, for a replacement to make again
    // (a forked child gets no tid address or robust list from its parent).
    let mut thread = Thread::default();
    let (status_fd, base, size, plan) = loop {
        let status_fd = receive(ctl);
        if status_fd == REPLICATE {
            // SAFETY: `warm`: the warm-up mapped the image `thread` was read from.
            if warm && unsafe { replicate(ctl, &thread) } {
                // This is the replacement: warm already, wait for its spawn.
                continue;
            }
            sys::close(ctl - 2);
            continue;
        }
        let (base, size) = map_plan(status_fd);
        // SAFETY: `map_plan` just mapped it; it is unmapped only after the last
        // use of `plan` (a warm-up's below, the spawn's in `launch`).
        let plan = unsafe { plan_at(base, size, status_fd) };
        let h = plan.header;
        if h.flags & FLAG_WARM_UP == 0 {
            break (status_fd, base, size, plan);
        }
        if warm || h.args_len != 0 || status_fd >= 0 {
            fail(status_fd, Stage::Handover, 0, EINVAL, 0, 0);
        }
        // Warm-up: map the image now; keep the program file (for
        // /proc/self/exe) just below the control fd; drop the rest.
        // SAFETY: the plan on PLAN_FD is the spawner's, for this process (the
        // spawner alone starts launchers and sends hand-overs).
        unsafe { map_image(&plan, stack, status_fd, |fd| fd) };
        thread = Thread::of(&plan);
        if h.exe_fd >= 0 {
            sys::dup3(h.exe_fd, ctl - 1);
        }
        // SAFETY: the warm-up plan's own mapping; `plan` is not used after this
        // (`thread` and `h` are copies), and the next hand-over maps its own.
        unsafe { sys::syscall3(sys::SYS_MUNMAP, base, size, 0) };
        sys::close_range(0, (ctl - 2) as u32);
        warm = true;
        // Tell the spawner the launcher is ready (one byte).
        sys::write(ctl, b"R");
    };
    drain_pending_signals();
    sys::close(ctl);
    let h = plan.header;
    if !warm || status_fd < 0 || h.args_len == 0 || h.status_fd != status_fd || h.region_count != 0 {
        fail(status_fd, Stage::Handover, 0, EINVAL, 0, 0);
    }
    if h.cwd_fd >= 0 {
        let r = sys::fchdir(h.cwd_fd);
        if r < 0 {
            fail(status_fd, Stage::ChildCwd, 0, -r as i32, 0, 0);
        }
    }
    let (argc, envc) = (plan.header.argc as usize, plan.header.envc as usize);
    let (new, below) = build_stack(stack, plan.args(), argc, envc, None, status_fd);
    let l = Launch { stack: new, base, size };
    // SAFETY: `below` is 16-byte aligned, beneath the new initial stack and
    // beneath nothing live (our frames, with `l`, are above the new stack).
    // `launch` takes `&Launch` in rdi and never returns; its contract holds:
    // `base..base + size` is the spawn plan's mapping from `map_plan`, used by
    // nothing after this, the plan is the spawner's, and `l.stack` is the
    // program's new stack.
    unsafe {
        asm!(
            "mov rsp, {sp}",
            "call {f}",
            "ud2",
            sp = in(reg) below,
            f = sym crate::launch,
            in("rdi") &l as *const Launch,
            options(noreturn),
        );
    }
}

/// Write the program's initial stack (argc, argv, envp, auxv and the strings
/// they point to, 16 fresh AT_RANDOM bytes, the AT_PLATFORM string) below
/// our frames, from `args`: `argc` then `envc` NUL-terminated strings
/// (anything else fails), and AT_EXECFN pointing at `execfn` (a copy after
/// them, as the kernel places it) or else at argv[0]. Returns it and the
/// stack pointer for the stub to go on with.
pub(crate) fn build_stack(
    stack: &Stack,
    args: &[u8],
    argc: usize,
    envc: usize,
    execfn: Option<&[u8]>,
    status_fd: i32,
) -> (Stack, usize) {
    if args.iter().filter(|&&c| c == 0).count() != argc + envc || args.last().is_some_and(|&c| c != 0) {
        fail(status_fd, Stage::Handover, 0, EINVAL, 0, 0);
    }
    let rsp: usize;
    // SAFETY: reads the stack pointer.
    unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    let platform = auxval(stack, AT_PLATFORM);
    // SAFETY: AT_PLATFORM points at a NUL-terminated string on the kernel's stack
    // (the auxv of a `Stack` built by the kernel).
    let plen = if platform != 0 { unsafe { cstrlen(platform as *const u8) + 1 } } else { 0 };
    let mut pairs = 0;
    // SAFETY: the AT_NULL-terminated auxv (`Stack`'s invariant).
    unsafe {
        while *stack.auxv().add(2 * pairs) != AT_NULL {
            pairs += 1;
        }
    }
    let hi = (rsp - 4096) & !15;
    let execfn_len = execfn.map_or(0, |e| e.len() + 1);
    let strings = (hi - args.len() - execfn_len) & !15;
    let plat = (strings - plen) & !15;
    let random = (plat - 16) & !15;
    let words = 1 + (argc + 1) + (envc + 1) + 2 * (pairs + 1);
    let sp = (random - words * 8) & !15;

    // SAFETY: [sp, hi) is below every live frame of ours, in the stack mapping
    // (which grows down on first touch); the sources (`args` and `execfn`:
    // the plan mapping, or the thin client's block and its frame; the
    // kernel's auxv and AT_PLATFORM string) are outside it, in live memory. getrandom writes
    // at most the `16 - got` bytes left of the 16 at `random`, inside [sp, hi).
    // The args block holds exactly argc + envc NUL-terminated strings
    // (checked above), so the `cstrlen` walks stay inside `strings`.
    // The execfn copy and its NUL fit in the `execfn_len` bytes kept for them.
    // The result satisfies `Stack::new`: argc, argv, envp and auxv are laid out
    // from `sp` as the kernel does.
    unsafe {
        crate::memcpy(strings as *mut u8, args.as_ptr(), args.len());
        if let Some(e) = execfn {
            crate::memcpy((strings + args.len()) as *mut u8, e.as_ptr(), e.len());
            *((strings + args.len() + e.len()) as *mut u8) = 0;
        }
        if plen > 0 {
            crate::memcpy(plat as *mut u8, platform as *const u8, plen);
        }
        let mut got = 0;
        while got < 16 {
            let r = sys::syscall3(SYS_GETRANDOM, random + got, 16 - got, 0);
            if r == EINTR {
                continue;
            }
            if r <= 0 {
                fail(status_fd, Stage::Handover, 0, -r as i32, 0, 0);
            }
            got += r as usize;
        }
        let p = sp as *mut u64;
        *p = argc as u64;
        let argv = p.add(1);
        let envp = argv.add(argc + 1);
        let auxv = envp.add(envc + 1);
        let mut at = strings;
        for i in 0..argc + envc {
            let slot = if i < argc { argv.add(i) } else { envp.add(i - argc) };
            *slot = at as u64;
            at += cstrlen(at as *const u8) + 1;
        }
        *argv.add(argc) = 0;
        *envp.add(envc) = 0;
        for k in 0..pairs {
            let (t, v) = (*stack.auxv().add(2 * k), *stack.auxv().add(2 * k + 1));
            let v = match t {
                AT_RANDOM => random as u64,
                AT_PLATFORM if plen > 0 => plat as u64,
                AT_EXECFN if execfn.is_some() => (strings + args.len()) as u64,
                AT_EXECFN => strings as u64,
                _ => v,
            };
            *auxv.add(2 * k) = t;
            *auxv.add(2 * k + 1) = v;
        }
        *auxv.add(2 * pairs) = AT_NULL;
        *auxv.add(2 * pairs + 1) = 0;
        let new = Stack::new(p, argc, argv, envp, auxv);
        (new, (sp - 1024) & !15)
    }
}
