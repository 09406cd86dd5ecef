//! Linux x86_64 system calls: the raw entry points (`unsafe`: their
//! arguments can be any pointers) and safe wrappers for the calls whose
//! arguments are plain integers or Rust references.
//!
//! File descriptors are plain integers in the stub (no `OwnedFd`), and no
//! mapping depends on an fd staying open, so closing or duplicating one
//! cannot break memory safety.
use core::arch::asm;

pub const SYS_READ: usize = 0;
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
pub const SYS_SOCKET: usize = 41;
pub const SYS_CONNECT: usize = 42;
pub const SYS_SENDMSG: usize = 46;
pub const SYS_RECVMSG: usize = 47;
pub const SYS_SETSOCKOPT: usize = 54;
pub const SYS_GETSOCKOPT: usize = 55;
pub const SYS_EXECVE: usize = 59;
pub const SYS_GETUID: usize = 102;
pub const SYS_CAPGET: usize = 125;
pub const SYS_PERSONALITY: usize = 135;
pub const SYS_OPENAT: usize = 257;
pub const SYS_NEWFSTATAT: usize = 262;
pub const SYS_FACCESSAT: usize = 269;
pub const AT_FDCWD: isize = -100;
pub const O_RDONLY_CLOEXEC: usize = 0o2000000;
/// `O_PATH | O_DIRECTORY | O_CLOEXEC`.
pub const O_PATH_DIR_CLOEXEC: usize = 0o10000000 | 0o200000 | 0o2000000;
pub const PROT_WRITE: usize = 2;
pub const PROT_EXEC: usize = 4;

pub const PROT_READ: usize = 1;
pub const SOL_SOCKET: u32 = 1;
pub const SCM_RIGHTS: u32 = 1;
pub const MSG_CTRUNC: i32 = 8;
pub const EINTR: isize = -4;

/// `struct iovec`.
#[repr(C)]
pub struct IoVec {
    pub base: *mut u8,
    pub len: usize,
}

/// `struct msghdr` (x86_64), without a name.
#[repr(C)]
pub struct MsgHdr {
    name: *mut u8,
    namelen: u32,
    _pad: u32,
    pub iov: *mut IoVec,
    pub iovlen: usize,
    pub control: *mut u8,
    pub controllen: usize,
    pub flags: i32,
    _pad2: i32,
}

impl MsgHdr {
    /// One iovec and a control buffer (null and 0 for none).
    pub fn new(iov: *mut IoVec, control: *mut u8, controllen: usize) -> Self {
        MsgHdr {
            name: core::ptr::null_mut(),
            namelen: 0,
            _pad: 0,
            iov,
            iovlen: 1,
            control,
            controllen,
            flags: 0,
            _pad2: 0,
        }
    }
}
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

/// `getuid()`.
#[inline(always)]
pub fn getuid() -> u32 {
    // SAFETY: no arguments.
    unsafe { syscall3(SYS_GETUID, 0, 0, 0) as u32 }
}

/// `personality(0xffffffff)`: the current persona, unchanged.
#[inline(always)]
pub fn personality() -> u32 {
    // SAFETY: an integer argument that only queries.
    unsafe { syscall3(SYS_PERSONALITY, 0xffff_ffff, 0, 0) as u32 }
}

/// `munmap(addr, len)` of a mapping the caller owns and no longer uses.
///
/// # Safety
/// `addr..addr + len` must hold nothing still used (no live reference,
/// not the stub's image or stack).
#[inline(always)]
pub unsafe fn munmap(addr: usize, len: usize) -> isize {
    // SAFETY: the caller's contract.
    unsafe { syscall3(SYS_MUNMAP, addr, len, 0) }
}

/// A fresh private anonymous read+write mapping of `len` bytes at an address
/// the kernel picks; the raw result.
#[inline(always)]
pub fn mmap_anon(len: usize) -> isize {
    // SAFETY: no address is asked for (0, no MAP_FIXED): no mapping of ours
    // is replaced; no memory of ours is passed.
    unsafe { syscall6(SYS_MMAP, 0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, usize::MAX, 0) }
}

/// `len` writable bytes: the front of a caller's buffer when they fit,
/// else a fresh anonymous mapping (which takes the buffer's first `keep`
/// bytes with it), unmapped on drop. Stack buffers spare the common case a
/// mapping and its unmap (a TLB flush).
pub struct Block<'a> {
    ptr: *mut u8,
    len: usize,
    mapped: bool,
    _local: core::marker::PhantomData<&'a mut [u8]>,
}

impl<'a> Block<'a> {
    /// The errno when a mapping was needed and failed.
    pub fn new(local: &'a mut [u8], len: usize, keep: usize) -> Result<Self, i32> {
        let _local = core::marker::PhantomData;
        if len <= local.len() {
            return Ok(Block { ptr: local.as_mut_ptr(), len, mapped: false, _local });
        }
        let m = mmap_anon(len);
        if m < 0 {
            return Err((-m) as i32);
        }
        let keep = keep.min(local.len()).min(len);
        // SAFETY: a fresh mapping of `len` bytes (more than `keep`), ours
        // alone, and `local` is live and at least `keep` bytes long.
        unsafe { crate::memcpy(m as *mut u8, local.as_ptr(), keep) };
        Ok(Block { ptr: m as *mut u8, len, mapped: true, _local })
    }

    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes at `ptr`, in the exclusively borrowed buffer
        // or our own mapping, both live as long as `self`.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: as for `bytes`, shared.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Block<'_> {
    fn drop(&mut self) {
        if self.mapped {
            // SAFETY: our mapping; nothing borrows it past `self`.
            unsafe { munmap(self.ptr as usize, self.len) };
        }
    }
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
