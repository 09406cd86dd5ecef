//! Restore ops: bring a fresh process to the state a prototype had at its
//! entry point (see `zygote_plan::OpKind`).

use zygote_plan::{FixupKind, Op, OpKind, Plan, Stage};

use crate::sys;
use crate::{Stack, fail};

const AT_NULL: u64 = 0;
pub const AT_SYSINFO_EHDR: u64 = 33;
pub const AT_RANDOM: u64 = 25;
pub const AT_PLATFORM: u64 = 15;

const SYS_MPROTECT: usize = 10;
const SYS_BRK: usize = 12;
const SYS_MREMAP: usize = 25;
const SYS_ARCH_PRCTL: usize = 158;
const SYS_SET_TID_ADDRESS: usize = 218;
const SYS_SET_ROBUST_LIST: usize = 273;
const SYS_RSEQ: usize = 334;
const ARCH_SET_FS: usize = 0x1002;
const ARCH_MAP_VDSO_64: usize = 0x2003;
const PR_SET_MM: usize = 35;
const PR_SET_MM_MAP: usize = 14;

/// Value of auxv entry `ty`, or 0.
pub fn auxval(stack: &Stack, ty: u64) -> u64 {
    let mut a = stack.auxv();
    // SAFETY: by `Stack`'s invariant the auxv is a readable, AT_NULL-terminated
    // array of pairs.
    unsafe {
        while *a != AT_NULL {
            if *a == ty {
                return *a.add(1);
            }
            a = a.add(2);
        }
    }
    0
}

/// Set auxv entry `ty` to `v` if present.
pub fn set_auxval(stack: &Stack, ty: u64, v: u64) {
    let mut a = stack.auxv();
    // SAFETY: as above; by `Stack`'s invariant the auxv is writable memory no
    // Rust reference covers.
    unsafe {
        while *a != AT_NULL {
            if *a == ty {
                *a.add(1) = v;
                return;
            }
            a = a.add(2);
        }
    }
}

fn ops_of<'a>(plan: &'a Plan<'a>, kind: OpKind) -> impl Iterator<Item = (u32, Op)> + 'a {
    (0..plan.header.op_count).map(|i| (i, plan.op(i))).filter(move |(_, o)| o.kind() == Some(kind))
}

fn check(status_fd: i32, stage: Stage, index: u32, r: isize, addr: u64) -> isize {
    if r < 0 {
        fail(status_fd, stage, index, -r as i32, 0, addr);
    }
    r
}

/// Put the kernel's special mappings ([vvar], [vvar_vclock], [vdso]) where
/// the prototype had them: unmap ours, then have the kernel map the same vDSO
/// image again at the old address (`ARCH_MAP_VDSO_64`, which maps [vvar] at
/// the address given and the rest at the image's fixed offsets). If the target
/// was taken, the kernel maps it elsewhere: the result is verified, and a miss
/// is EEXIST, on which the spawner retries with another exec (another random
/// placement of our own mappings).
///
/// # Safety
/// The plan's `VdsoSpecial` ops must describe this kernel's special mappings
/// (offsets from the vDSO base, as the prototype had them on this kernel), so
/// the range unmapped holds only [vvar], [vvar_vclock] and [vdso], which the
/// stub never uses (it makes no vDSO calls).
pub unsafe fn move_vdso(plan: &Plan<'_>, stack: &Stack, status_fd: i32) {
    let cur = auxval(stack, AT_SYSINFO_EHDR);
    let (mut lo, mut hi, mut tlo, mut vdso, mut moved) = (i64::MAX, i64::MIN, u64::MAX, None, false);
    for (_, o) in ops_of(plan, OpKind::VdsoSpecial) {
        let off = o.a as i64;
        lo = lo.min(off);
        hi = hi.max(off + o.b as i64);
        tlo = tlo.min(o.c);
        moved |= cur.wrapping_add(off as u64) != o.c;
        if o.arg == 1 {
            vdso = Some((o.c, o.b));
        }
    }
    let Some((vdso_at, vdso_len)) = vdso else { return };
    if !moved || cur == 0 {
        return;
    }
    let taken = |addr: u64| -> ! { fail(status_fd, Stage::Vdso, 0, 17, 0, addr) };
    // 1. Drop ours (one contiguous range on every kernel seen; the offsets come
    //    from the prototype, which ran on this kernel).
    let from = cur.wrapping_add(lo as u64);
    // SAFETY: `from..from + (hi - lo)` spans only our special mappings (the
    // contract), which nothing in the stub uses.
    let r = unsafe { sys::syscall3(sys::SYS_MUNMAP, from as usize, (hi - lo) as usize, 0) };
    check(status_fd, Stage::Vdso, 0, r, from);
    // 2. Map the vDSO again at the prototype's address.
    // SAFETY: ARCH_MAP_VDSO_64 takes the address as a hint only (the kernel
    // never maps over an existing mapping), and passes no memory of ours.
    let r = unsafe { sys::syscall3(SYS_ARCH_PRCTL, ARCH_MAP_VDSO_64, tlo as usize, 0) };
    check(status_fd, Stage::Vdso, 1, r, tlo);
    // 3. It must have landed exactly there (if the target was taken, the
    //    kernel chose another place): a no-move mremap of the [vdso] range
    //    succeeds only if one mapping covers it.
    // SAFETY: same old and new size, no MREMAP_MAYMOVE: the mapping (if any)
    // stays where and as it is; the call only checks.
    let r = unsafe { sys::syscall6(SYS_MREMAP, vdso_at as usize, vdso_len as usize, vdso_len as usize, 0, 0, 0) };
    if r as u64 != vdso_at {
        taken(vdso_at);
    }
    set_auxval(stack, AT_SYSINFO_EHDR, vdso_at);
}

/// Length of a NUL-terminated string.
///
/// # Safety
/// `p` must point at a NUL-terminated string.
pub unsafe fn cstrlen(p: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller guarantees a terminator.
    while unsafe { core::ptr::read_volatile(p.add(n)) } != 0 {
        n += 1;
    }
    n
}

/// Fixups, protections, thread registration and the canary.
///
/// # Safety
/// The plan's regions must be mapped (by `map_image`), and its ops must name
/// memory in them, never the stub's image, its stack or the plan mapping:
/// `Fixup`, `SetTidAddress` and `Canary` addresses are writable slots of the
/// op's size (4 bytes for `Argc32` and the tid, else 8), `Protect` ranges
/// cover only the regions, and the `SetTidAddress`, `RobustList` and `Rseq`
/// areas stay mapped (writable for the tid and rseq) for the program, since the
/// kernel keeps using them.
pub unsafe fn apply(plan: &Plan<'_>, stack: &Stack, status_fd: i32) {
    let argv0 = stack.argv0();
    let base = if argv0 == 0 {
        0
    } else {
        // SAFETY: argv[0] is a NUL-terminated string (`Stack`'s invariant).
        let len = unsafe { cstrlen(argv0 as *const u8) };
        // SAFETY: within that string.
        let s = unsafe { core::slice::from_raw_parts(argv0 as *const u8, len) };
        argv0 + s.iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1) as u64
    };
    for (i, o) in ops_of(plan, OpKind::Fixup) {
        let v = match FixupKind::from_u32(o.arg) {
            Some(FixupKind::StackEnd) => stack.sp() as u64,
            Some(FixupKind::Argv) => stack.argv() as u64,
            Some(FixupKind::Envp) => stack.envp() as u64,
            Some(FixupKind::Auxv) => stack.auxv() as u64,
            Some(FixupKind::Argv0) => argv0,
            Some(FixupKind::Argv0Base) => base,
            Some(FixupKind::AuxVal) => auxval(stack, o.b),
            Some(FixupKind::Argc32) => {
                // SAFETY: a 4-byte writable slot in a region (the contract); it
                // held argc in the prototype.
                unsafe { core::ptr::write_volatile(o.a as *mut u32, stack.argc() as u32) };
                continue;
            }
            None => fail(status_fd, Stage::Op, i, 22, 0, o.a),
        };
        // SAFETY: an 8-byte writable slot in a region (the contract); it
        // pointed into the prototype's stack.
        unsafe { core::ptr::write_volatile(o.a as *mut u64, v) };
    }
    for (i, o) in ops_of(plan, OpKind::Protect) {
        // SAFETY: the range covers only the plan's regions (the contract), none
        // of which the stub itself uses.
        let r = unsafe { sys::syscall3(SYS_MPROTECT, o.a as usize, o.b as usize, o.c as usize) };
        check(status_fd, Stage::Op, i, r, o.a);
    }
    for (i, o) in ops_of(plan, OpKind::SetFs) {
        // SAFETY: the stub has no thread-local storage, so moving fs touches
        // nothing of ours; the kernel only stores the base.
        let r = unsafe { sys::syscall3(SYS_ARCH_PRCTL, ARCH_SET_FS, o.a as usize, 0) };
        check(status_fd, Stage::Op, i, r, o.a);
    }
    for (_, o) in ops_of(plan, OpKind::SetTidAddress) {
        // SAFETY: `a` is the thread block's 4-byte tid field in a writable
        // region (the contract) that stays mapped for the program, which is
        // when the kernel writes it (at thread exit).
        let tid = unsafe { sys::syscall3(SYS_SET_TID_ADDRESS, o.a as usize, 0, 0) };
        // SAFETY: the same writable 4-byte slot.
        unsafe { core::ptr::write_volatile(o.a as *mut u32, tid as u32) };
    }
    for (i, o) in ops_of(plan, OpKind::RobustList) {
        // SAFETY: the list head (`a`, of length `b`) is in a region (the
        // contract); the kernel reads it only at thread exit, as the program.
        let r = unsafe { sys::syscall3(SYS_SET_ROBUST_LIST, o.a as usize, o.b as usize, 0) };
        check(status_fd, Stage::Op, i, r, o.a);
    }
    for (i, o) in ops_of(plan, OpKind::Rseq) {
        // SAFETY: the rseq area (`a`, `b` bytes) is writable memory in a
        // region (the contract), which the stub does not use; the kernel
        // writes it from now on.
        let r = unsafe { sys::syscall6(SYS_RSEQ, o.a as usize, o.b as usize, o.c as usize, o.d as usize, 0, 0) };
        check(status_fd, Stage::Op, i, r, o.a);
    }
    let random = auxval(stack, AT_RANDOM);
    for (_, o) in ops_of(plan, OpKind::Canary) {
        if random != 0 {
            // SAFETY: AT_RANDOM points at 16 random bytes on our stack; `a` is
            // the 8-byte canary slot in the thread block, writable (the contract).
            unsafe {
                let r = core::ptr::read_unaligned(random as *const u64);
                core::ptr::write_volatile(o.a as *mut u64, r & !0xff);
            }
        }
    }
}

/// `struct prctl_mm_map`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MmMap {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub auxv: u64,
    pub auxv_size: u32,
    pub exe_fd: u32,
}

/// The prctl_mm_map for this process, if the plan has an `MmLayout`: with its
/// `MmBrk` (a prototype image), or else (a pre-started launcher's static
/// image) with the brk the launcher has.
pub fn mm_map(plan: &Plan<'_>, stack: &Stack) -> Option<MmMap> {
    let (_, l) = ops_of(plan, OpKind::MmLayout).next()?;
    let [start_code, end_code, start_data, end_data, start_brk, brk] = match ops_of(plan, OpKind::MmBrk).next() {
        Some((_, b)) => [l.a, l.b, l.c, l.d, b.a, b.b],
        None => {
            // The stub never moves the brk, so it is also where the heap
            // starts. The kernel wants the data below it (a traditional
            // layout); an image above the launcher's brk gets an empty data
            // segment below it instead (the bounds are only shown in /proc).
            // SAFETY: brk(0) only reports the current break; it moves nothing.
            let brk = unsafe { sys::syscall3(SYS_BRK, 0, 0, 0) } as u64;
            let (c, d) = if l.d < brk { (l.c, l.d) } else { (brk - 4096, brk - 4096) };
            [l.a, l.b, c, d, brk, brk]
        }
    };
    // SAFETY: argv/envp entries are NUL-terminated strings (`Stack`'s invariant).
    let end_of = |p: u64| p + unsafe { cstrlen(p as *const u8) } as u64 + 1;
    // SAFETY: argv has argc entries, envp is NULL-terminated (`Stack`'s invariant).
    let (arg_start, arg_end, env_start, env_end) = unsafe {
        let arg_start = stack.argv0();
        let arg_end = if stack.argc() > 0 { end_of(*stack.argv().add(stack.argc() - 1)) } else { arg_start };
        let mut n = 0;
        while *stack.envp().add(n) != 0 {
            n += 1;
        }
        let (env_start, env_end) =
            if n > 0 { (*stack.envp(), end_of(*stack.envp().add(n - 1))) } else { (arg_end, arg_end) };
        (arg_start, arg_end, env_start, env_end)
    };
    let mut pairs = 0;
    // SAFETY: the AT_NULL-terminated auxv (`Stack`'s invariant).
    unsafe {
        while *stack.auxv().add(2 * pairs) != AT_NULL {
            pairs += 1;
        }
    }
    Some(MmMap {
        start_code,
        end_code,
        start_data,
        end_data,
        start_brk,
        brk,
        start_stack: stack.sp() as u64,
        arg_start,
        arg_end,
        env_start,
        env_end,
        auxv: stack.auxv() as u64,
        auxv_size: ((pairs + 1) * 16) as u32,
        exe_fd: u32::MAX,
    })
}

/// PR_SET_MM_MAP: brk, code/data/stack/arg/env bounds and the saved auxv.
pub fn set_mm(map: &MmMap) -> isize {
    // SAFETY: the kernel reads exactly `size_of::<MmMap>()` bytes from `map`, a
    // live reference to a `struct prctl_mm_map`; it changes only the bounds the
    // kernel reports (and the exe file, if `exe_fd` names one), no mapping.
    unsafe {
        sys::syscall6(
            sys::SYS_PRCTL,
            PR_SET_MM,
            PR_SET_MM_MAP,
            map as *const MmMap as usize,
            core::mem::size_of::<MmMap>(),
            0,
            0,
        )
    }
}
