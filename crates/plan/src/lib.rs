//! The spawn-plan wire format, shared by the zygote daemon (which writes plans)
//! and the no_std stub (which reads them), so the two sides cannot drift.
//!
//! A plan is one contiguous byte buffer, little-endian, 8-byte aligned records:
//!
//! ```text
//! Header                      (Header::SIZE bytes, at offset 0)
//! Region  * header.region_count (at header.region_off)
//! FdMove  * header.fd_count     (at header.fd_off)
//! Op      * header.op_count     (at header.op_off)
//! ```
//!
//! Ops restore the state a prototype had at its entry point (images of
//! dynamically linked programs): the vDSO position, stack-pointer fixups,
//! protections, the thread pointer, tid/robust-list/rseq registration, a fresh
//! stack canary and the mm layout (brk). Static images have none.
//!
//! The daemon hands the plan to the stub on [`PLAN_FD`]. The stub `mmap`s it
//! (never `read`s it: children spawned from one fd would share its offset),
//! validates it with [`Plan::parse`], maps every [`Region`], patches the auxiliary
//! vector, moves the caller's fds into place, closes everything else and jumps to
//! the entry point.
//!
//! Every record is encoded and decoded field by field with explicit
//! little-endian conversions, so this crate needs no `unsafe` and the layout is
//! the same whatever the compiler does with struct padding.
#![no_std]
#![forbid(unsafe_code)]

/// "ZYGPLAN\0" as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"ZYGPLAN\0");
/// Bumped on every incompatible change of the layout below.
pub const VERSION: u32 = 3;
/// The fd on which the stub finds its plan.
pub const PLAN_FD: i32 = 3;
/// Largest plan the stub accepts (a sanity bound, not a tuning knob).
pub const MAX_PLAN_SIZE: u64 = 16 << 20;
/// `argv[1]` of a pre-started launcher: the stub execs with
/// `[name, PRESTART_ARG, control fd]` and waits on the control socket for its
/// fds and plan (see [`Header::args_len`]).
pub const PRESTART_ARG: &[u8] = b"--wait-for-plan";
/// Most fds one hand-over to a pre-started launcher carries (the kernel's
/// SCM_MAX_FD is 253).
pub const MAX_HANDOVER_FDS: usize = 250;
/// The status index of a "replicate" hand-over to a warmed-up launcher: its
/// one fd is the control socket of a replacement, which the launcher forks
/// (`CLONE_PARENT`: the spawner is its parent) before it takes its spawn. The
/// replacement keeps the warmed-up image, registers its own thread and waits;
/// the launcher sends its pid (u32) on its own control socket.
pub const HANDOVER_REPLICATE: u32 = 0xffff_fffe;
/// Exit status of a stub that failed before jumping to the program.
pub const STUB_FAILURE_EXIT: i32 = 127;

/// Where the pages of a [`Region`] come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Source {
    /// Map `fd` at `offset` (the program file itself, or a sealed memfd holding
    /// relocated pages): `MAP_PRIVATE`, so writes stay in the process (a
    /// copy-on-write child of the shared object).
    Fd = 1,
    /// Anonymous zero-filled memory (bss).
    Zero = 2,
}

impl Source {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Source::Fd),
            2 => Some(Source::Zero),
            _ => None,
        }
    }
}

/// Protection bits, identical to Linux `PROT_*`.
pub const PROT_READ: u32 = 1;
pub const PROT_WRITE: u32 = 2;
pub const PROT_EXEC: u32 = 4;

/// Errors from [`Plan::parse`]. Small and `Copy` so the stub can report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Shorter than the header, or a table runs past the end.
    Truncated,
    BadMagic,
    BadVersion(u32),
    /// A table offset is not 8-byte aligned or sizes overflow.
    BadLayout,
    /// A region has an unknown source, a zero or unaligned range.
    BadRegion(u32),
}

/// Read helpers over a byte slice; all bounds-checked.
fn rd_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}
fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}
fn rd_i32(b: &[u8], at: usize) -> i32 {
    rd_u32(b, at) as i32
}
fn wr_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn wr_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Plan header: the entry state plus the table directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Total size of the plan in bytes.
    pub total_size: u64,
    /// Program counter to jump to.
    pub entry: u64,
    /// Value for `rdx` at entry (the dynamic linker's `rtld_fini`; 0 when static).
    pub rtld_fini: u64,
    /// Auxv patches: AT_PHDR, AT_PHNUM, AT_PHENT, AT_ENTRY (= `entry`'s program
    /// entry, which may differ from `entry` for an interpreter), AT_BASE.
    pub at_phdr: u64,
    pub at_phnum: u64,
    pub at_phent: u64,
    pub at_entry: u64,
    pub at_base: u64,
    /// Signal mask to install right before the jump (the spawner blocks every
    /// signal around clone+exec, and exec keeps the mask).
    pub sigmask: u64,
    /// fd the stub writes a [`StatusRecord`] to if it fails; -1 for none. It is
    /// closed with every other fd right before the jump, so EOF means success.
    pub status_fd: i32,
    /// Number of valid bytes in `name` (0: keep the kernel's comm).
    pub name_len: u32,
    /// Process name for PR_SET_NAME (the kernel keeps 15 bytes).
    pub name: [u8; 16],
    pub region_off: u32,
    pub region_count: u32,
    pub fd_off: u32,
    pub fd_count: u32,
    pub op_off: u32,
    pub op_count: u32,
    /// Program file to make `/proc/self/exe` (PR_SET_MM_MAP exe_fd, needs
    /// CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN); -1 to leave it.
    pub exe_fd: i32,
    /// For a pre-started launcher only (0 otherwise: the kernel built the
    /// stack at exec): `argc` argument strings then `envc` environment
    /// strings, each NUL-terminated, at `args_off`, from which the stub
    /// builds the program's initial stack itself.
    pub args_off: u32,
    pub args_len: u32,
    pub argc: u32,
    pub envc: u32,
    /// Directory fd to `fchdir` to (pre-started launchers); -1 to stay.
    pub cwd_fd: i32,
    /// [`FLAG_WARM_UP`] or 0.
    pub flags: u32,
}

/// A pre-started launcher's first plan: map the regions and apply the ops
/// that do not depend on the spawn (vDSO, thread pointer and registrations),
/// keep the program file for `/proc/self/exe` just below the control fd, close
/// the rest and wait for the spawn's plan, which then has no regions and only
/// the ops that need the new stack (fixups, protections, canary, mm bounds).
pub const FLAG_WARM_UP: u32 = 1;

impl Header {
    pub const SIZE: usize = 168;

    pub fn encode(&self, out: &mut [u8]) {
        let b = &mut out[..Self::SIZE];
        wr_u64(b, 0, MAGIC);
        wr_u32(b, 8, VERSION);
        wr_u32(b, 12, Self::SIZE as u32);
        wr_u64(b, 16, self.total_size);
        wr_u64(b, 24, self.entry);
        wr_u64(b, 32, self.rtld_fini);
        wr_u64(b, 40, self.at_phdr);
        wr_u64(b, 48, self.at_phnum);
        wr_u64(b, 56, self.at_phent);
        wr_u64(b, 64, self.at_entry);
        wr_u64(b, 72, self.at_base);
        wr_u64(b, 80, self.sigmask);
        wr_u32(b, 88, self.status_fd as u32);
        wr_u32(b, 92, self.name_len);
        b[96..112].copy_from_slice(&self.name);
        wr_u32(b, 112, self.region_off);
        wr_u32(b, 116, self.region_count);
        wr_u32(b, 120, self.fd_off);
        wr_u32(b, 124, self.fd_count);
        wr_u32(b, 128, self.op_off);
        wr_u32(b, 132, self.op_count);
        wr_u32(b, 136, self.exe_fd as u32);
        wr_u32(b, 140, self.args_off);
        wr_u32(b, 144, self.args_len);
        wr_u32(b, 148, self.argc);
        wr_u32(b, 152, self.envc);
        wr_u32(b, 156, self.cwd_fd as u32);
        wr_u32(b, 160, self.flags);
        wr_u32(b, 164, 0);
    }

    pub fn decode(b: &[u8]) -> Result<Self, PlanError> {
        if b.len() < Self::SIZE {
            return Err(PlanError::Truncated);
        }
        if rd_u64(b, 0) != MAGIC {
            return Err(PlanError::BadMagic);
        }
        let version = rd_u32(b, 8);
        if version != VERSION || rd_u32(b, 12) as usize != Self::SIZE {
            return Err(PlanError::BadVersion(version));
        }
        let mut name = [0u8; 16];
        name.copy_from_slice(&b[96..112]);
        Ok(Header {
            total_size: rd_u64(b, 16),
            entry: rd_u64(b, 24),
            rtld_fini: rd_u64(b, 32),
            at_phdr: rd_u64(b, 40),
            at_phnum: rd_u64(b, 48),
            at_phent: rd_u64(b, 56),
            at_entry: rd_u64(b, 64),
            at_base: rd_u64(b, 72),
            sigmask: rd_u64(b, 80),
            status_fd: rd_i32(b, 88),
            name_len: rd_u32(b, 92),
            name,
            region_off: rd_u32(b, 112),
            region_count: rd_u32(b, 116),
            fd_off: rd_u32(b, 120),
            fd_count: rd_u32(b, 124),
            op_off: rd_u32(b, 128),
            op_count: rd_u32(b, 132),
            exe_fd: rd_i32(b, 136),
            args_off: rd_u32(b, 140),
            args_len: rd_u32(b, 144),
            argc: rd_u32(b, 148),
            envc: rd_u32(b, 152),
            cwd_fd: rd_i32(b, 156),
            flags: rd_u32(b, 160),
        })
    }
}

/// One mapping of the new address space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    /// Page-aligned start address.
    pub vaddr: u64,
    /// Page-aligned length.
    pub len: u64,
    /// Page-aligned offset into `fd` (0 for [`Source::Zero`]).
    pub offset: u64,
    /// fd in the stub's table (for [`Source::Fd`]); -1 otherwise.
    pub fd: i32,
    /// `PROT_*` bits.
    pub prot: u32,
    /// A [`Source`] value.
    pub source: u32,
    pub _reserved: u32,
}

impl Region {
    pub const SIZE: usize = 40;

    pub fn encode(&self, b: &mut [u8]) {
        wr_u64(b, 0, self.vaddr);
        wr_u64(b, 8, self.len);
        wr_u64(b, 16, self.offset);
        wr_u32(b, 24, self.fd as u32);
        wr_u32(b, 28, self.prot);
        wr_u32(b, 32, self.source);
        wr_u32(b, 36, 0);
    }

    pub fn decode(b: &[u8]) -> Self {
        Region {
            vaddr: rd_u64(b, 0),
            len: rd_u64(b, 8),
            offset: rd_u64(b, 16),
            fd: rd_i32(b, 24),
            prot: rd_u32(b, 28),
            source: rd_u32(b, 32),
            _reserved: 0,
        }
    }

    pub fn source(&self) -> Option<Source> {
        Source::from_u32(self.source)
    }
}

/// Move fd `from` to `to` in the program (`dup3(from, to, 0)`). The spawner
/// guarantees every `from` is above every `to`, and the list is sorted by `to`
/// ascending without duplicates, so the moves never clobber one another and the
/// stub can close the gaps between targets with `close_range`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdMove {
    pub from: i32,
    pub to: i32,
}

impl FdMove {
    pub const SIZE: usize = 8;

    pub fn encode(&self, b: &mut [u8]) {
        wr_u32(b, 0, self.from as u32);
        wr_u32(b, 4, self.to as u32);
    }

    pub fn decode(b: &[u8]) -> Self {
        FdMove { from: rd_i32(b, 0), to: rd_i32(b, 4) }
    }
}

/// One restore step; `kind` is an [`OpKind`], the meaning of `arg` and `a`..`d`
/// depends on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Op {
    pub kind: u32,
    pub arg: u32,
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub d: u64,
}

/// Restore steps, executed by the stub in this order: all `VdsoSpecial`s
/// (before any region is mapped), then the regions, then `Fixup`s,
/// `Protect`s, `SetFs`, `SetTidAddress`, `RobustList`, `Rseq`, `Canary`, and
/// last `MmLayout` (PR_SET_MM_MAP, once the auxv is final).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum OpKind {
    /// A kernel special mapping ([vvar], [vvar_vclock], [vdso]) to move: `a` =
    /// its offset from the vDSO start (two's complement), `b` = length, `c` =
    /// target address. `arg` = 1 for the [vdso] itself (AT_SYSINFO_EHDR).
    VdsoSpecial = 1,
    /// Write a stack-derived value at `a`; `arg` is a [`FixupKind`], `b` its
    /// parameter (the auxv type for `AuxVal`).
    Fixup = 2,
    /// mprotect(`a`, `b`, `c`): regions mapped writable for fixups.
    Protect = 3,
    /// arch_prctl(ARCH_SET_FS, `a`).
    SetFs = 4,
    /// set_tid_address(`a`), then store the returned tid (u32) at `a`.
    SetTidAddress = 5,
    /// set_robust_list(`a`, `b`).
    RobustList = 6,
    /// rseq(`a`, `b` = len, `c` = flags, `d` = signature).
    Rseq = 7,
    /// Stack canary at `a` (fs:0x28): the first 8 bytes of AT_RANDOM with the
    /// low byte cleared, as glibc computes it.
    Canary = 8,
    /// PR_SET_MM_MAP with `a` start_code, `b` end_code, `c` start_data, `d`
    /// end_data; the following op (`MmBrk`) carries start_brk and brk. Stack,
    /// argument, environment and auxv bounds come from the new stack.
    MmLayout = 9,
    /// `a` = start_brk, `b` = brk (must follow `MmLayout`).
    MmBrk = 10,
}

impl OpKind {
    /// Whether a pre-started launcher applies ops of this kind at its warm-up
    /// (they do not depend on the spawn's stack or randomness).
    pub fn at_warm_up(self) -> bool {
        matches!(self, OpKind::VdsoSpecial | OpKind::SetFs | OpKind::SetTidAddress | OpKind::RobustList | OpKind::Rseq)
    }

    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => OpKind::VdsoSpecial,
            2 => OpKind::Fixup,
            3 => OpKind::Protect,
            4 => OpKind::SetFs,
            5 => OpKind::SetTidAddress,
            6 => OpKind::RobustList,
            7 => OpKind::Rseq,
            8 => OpKind::Canary,
            9 => OpKind::MmLayout,
            10 => OpKind::MmBrk,
            _ => return None,
        })
    }
}

/// What a `Fixup` op writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum FixupKind {
    /// The initial stack pointer (&argc): `__libc_stack_end`.
    StackEnd = 1,
    /// &argv[0].
    Argv = 2,
    /// &envp[0].
    Envp = 3,
    /// The auxv array.
    Auxv = 4,
    /// argv[0] itself (the string).
    Argv0 = 5,
    /// The basename within argv[0].
    Argv0Base = 6,
    /// The value of auxv entry `b` (e.g. the AT_PLATFORM string pointer).
    AuxVal = 7,
    /// argc as a 32-bit integer (`__libc_argc`, `_dl_argc`).
    Argc32 = 8,
}

impl FixupKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => FixupKind::StackEnd,
            2 => FixupKind::Argv,
            3 => FixupKind::Envp,
            4 => FixupKind::Auxv,
            5 => FixupKind::Argv0,
            6 => FixupKind::Argv0Base,
            7 => FixupKind::AuxVal,
            8 => FixupKind::Argc32,
            _ => return None,
        })
    }
}

impl Op {
    pub const SIZE: usize = 40;

    pub fn encode(&self, b: &mut [u8]) {
        wr_u32(b, 0, self.kind);
        wr_u32(b, 4, self.arg);
        wr_u64(b, 8, self.a);
        wr_u64(b, 16, self.b);
        wr_u64(b, 24, self.c);
        wr_u64(b, 32, self.d);
    }

    pub fn decode(b: &[u8]) -> Self {
        Op {
            kind: rd_u32(b, 0),
            arg: rd_u32(b, 4),
            a: rd_u64(b, 8),
            b: rd_u64(b, 16),
            c: rd_u64(b, 24),
            d: rd_u64(b, 32),
        }
    }

    pub fn kind(&self) -> Option<OpKind> {
        OpKind::from_u32(self.kind)
    }
}

/// What failed, reported by the stub (or by the pre-exec child) on the status fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// The pre-exec child could not place an fd.
    ChildFd = 1,
    /// The pre-exec child could not change directory.
    ChildCwd = 2,
    /// The pre-exec child could not exec the stub.
    ChildExec = 3,
    /// The stub could not map or parse its plan.
    Plan = 4,
    /// The stub could not map a region (`index` names it).
    Map = 5,
    /// The stub could not move an fd (`index` names the move).
    FdMove = 6,
    /// The stub found a malformed auxiliary vector.
    Auxv = 7,
    /// Moving the vDSO failed (`errno` EEXIST: its target is taken).
    Vdso = 8,
    /// A restore op failed (`index` names it).
    Op = 9,
    /// The pre-exec child could not take on the requested credentials.
    ChildCreds = 10,
    /// A pre-started launcher could not take its hand-over (fds, stack).
    Handover = 11,
    /// The pre-exec child could not give the program one of the requester's
    /// restrictions (`index` names the step: cgroup, rlimit, nice, ...).
    ChildRestrict = 12,
}

impl Stage {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Stage::ChildFd,
            2 => Stage::ChildCwd,
            3 => Stage::ChildExec,
            4 => Stage::Plan,
            5 => Stage::Map,
            6 => Stage::FdMove,
            7 => Stage::Auxv,
            8 => Stage::Vdso,
            9 => Stage::Op,
            10 => Stage::ChildCreds,
            11 => Stage::Handover,
            12 => Stage::ChildRestrict,
            _ => return None,
        })
    }
}

/// Failure report: 24 bytes on the status fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRecord {
    pub stage: u32,
    /// Region or fd-move index, or 0.
    pub index: u32,
    /// Positive errno, or 0 when the failure is not a syscall's.
    pub errno: i32,
    /// Plan error code for [`Stage::Plan`] (see [`StatusRecord::plan_error`]).
    pub detail: u32,
    /// Address involved (region start), or 0.
    pub addr: u64,
}

impl StatusRecord {
    pub const SIZE: usize = 24;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        wr_u32(&mut b, 0, self.stage);
        wr_u32(&mut b, 4, self.index);
        wr_u32(&mut b, 8, self.errno as u32);
        wr_u32(&mut b, 12, self.detail);
        wr_u64(&mut b, 16, self.addr);
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < Self::SIZE {
            return None;
        }
        Some(StatusRecord {
            stage: rd_u32(b, 0),
            index: rd_u32(b, 4),
            errno: rd_i32(b, 8),
            detail: rd_u32(b, 12),
            addr: rd_u64(b, 16),
        })
    }

    /// Encode a [`PlanError`] into `detail`.
    pub fn plan_error(e: PlanError) -> (u32, u32) {
        match e {
            PlanError::Truncated => (1, 0),
            PlanError::BadMagic => (2, 0),
            PlanError::BadVersion(v) => (3, v),
            PlanError::BadLayout => (4, 0),
            PlanError::BadRegion(i) => (5, i),
        }
    }
}

/// A validated, zero-copy view of a plan.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'a> {
    pub header: Header,
    bytes: &'a [u8],
}

const PAGE: u64 = 4096;

fn table_ok(len: usize, off: u32, count: u32, size: usize) -> bool {
    let off = off as usize;
    off.is_multiple_of(8)
        && (count as usize).checked_mul(size).and_then(|n| n.checked_add(off)).is_some_and(|end| end <= len)
}

impl<'a> Plan<'a> {
    /// Validate the header and every table; after this, accessors cannot fail.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PlanError> {
        let header = Header::decode(bytes)?;
        if header.total_size as usize > bytes.len() || header.total_size > MAX_PLAN_SIZE {
            return Err(PlanError::Truncated);
        }
        let bytes = &bytes[..header.total_size as usize];
        if !table_ok(bytes.len(), header.region_off, header.region_count, Region::SIZE)
            || !table_ok(bytes.len(), header.fd_off, header.fd_count, FdMove::SIZE)
            || !table_ok(bytes.len(), header.op_off, header.op_count, Op::SIZE)
            || header.name_len as usize > header.name.len()
            || !args_ok(bytes, &header)
        {
            return Err(PlanError::BadLayout);
        }
        let plan = Plan { header, bytes };
        for i in 0..header.region_count {
            let r = plan.region(i);
            let aligned = r.vaddr.is_multiple_of(PAGE) && r.len.is_multiple_of(PAGE) && r.offset.is_multiple_of(PAGE);
            if r.source().is_none() || r.len == 0 || !aligned || r.vaddr.checked_add(r.len).is_none() {
                return Err(PlanError::BadRegion(i));
            }
        }
        for i in 0..header.op_count {
            if plan.op(i).kind().is_none() {
                return Err(PlanError::BadLayout);
            }
        }
        let mut last_to = -1;
        for i in 0..header.fd_count {
            let m = plan.fd_move(i);
            if m.to <= last_to || m.from < 0 {
                return Err(PlanError::BadLayout);
            }
            last_to = m.to;
        }
        Ok(plan)
    }

    pub fn region(&self, i: u32) -> Region {
        let at = self.header.region_off as usize + i as usize * Region::SIZE;
        Region::decode(&self.bytes[at..at + Region::SIZE])
    }

    pub fn fd_move(&self, i: u32) -> FdMove {
        let at = self.header.fd_off as usize + i as usize * FdMove::SIZE;
        FdMove::decode(&self.bytes[at..at + FdMove::SIZE])
    }

    pub fn op(&self, i: u32) -> Op {
        let at = self.header.op_off as usize + i as usize * Op::SIZE;
        Op::decode(&self.bytes[at..at + Op::SIZE])
    }

    pub fn name(&self) -> &[u8] {
        &self.header.name[..self.header.name_len as usize]
    }

    /// The argument and environment strings of a pre-started launch (empty
    /// for an exec'd stub). Validated: `argc + envc` NUL-terminated strings.
    pub fn args(&self) -> &'a [u8] {
        let off = self.header.args_off as usize;
        &self.bytes[off..off + self.header.args_len as usize]
    }
}

/// The args block is inside the plan and holds exactly `argc + envc` strings.
fn args_ok(bytes: &[u8], h: &Header) -> bool {
    if h.args_len == 0 {
        return h.argc == 0 && h.envc == 0;
    }
    let (off, len) = (h.args_off as usize, h.args_len as usize);
    let Some(block) = off.checked_add(len).and_then(|end| bytes.get(off..end)) else { return false };
    let strings = block.iter().filter(|&&c| c == 0).count();
    block.last() == Some(&0) && h.argc >= 1 && Some(strings) == (h.argc as usize).checked_add(h.envc as usize)
}

/// Size in bytes of a plan with the given table lengths and args block.
pub fn plan_size(regions: usize, fds: usize, ops: usize, args: usize) -> usize {
    Header::SIZE + regions * Region::SIZE + fds * FdMove::SIZE + ops * Op::SIZE + args
}

/// Encode a complete plan into `out` (which must be [`plan_size`] bytes).
/// `header`'s table fields are filled in here.
/// `header`'s `argc` and `envc` describe `args` (see [`Header::args_len`]).
pub fn encode_plan(mut header: Header, regions: &[Region], fds: &[FdMove], ops: &[Op], args: &[u8], out: &mut [u8]) {
    let region_off = Header::SIZE;
    let fd_off = region_off + regions.len() * Region::SIZE;
    let op_off = fd_off + fds.len() * FdMove::SIZE;
    let args_off = op_off + ops.len() * Op::SIZE;
    let total = args_off + args.len();
    header.total_size = total as u64;
    header.args_off = if args.is_empty() { 0 } else { args_off as u32 };
    header.args_len = args.len() as u32;
    header.region_off = region_off as u32;
    header.region_count = regions.len() as u32;
    header.fd_off = fd_off as u32;
    header.fd_count = fds.len() as u32;
    header.op_off = op_off as u32;
    header.op_count = ops.len() as u32;
    header.encode(out);
    for (i, r) in regions.iter().enumerate() {
        let at = region_off + i * Region::SIZE;
        r.encode(&mut out[at..at + Region::SIZE]);
    }
    for (i, m) in fds.iter().enumerate() {
        let at = fd_off + i * FdMove::SIZE;
        m.encode(&mut out[at..at + FdMove::SIZE]);
    }
    for (i, o) in ops.iter().enumerate() {
        let at = op_off + i * Op::SIZE;
        o.encode(&mut out[at..at + Op::SIZE]);
    }
    out[args_off..total].copy_from_slice(args);
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    fn sample() -> (Header, [Region; 2], [FdMove; 2]) {
        let mut name = [0u8; 16];
        name[..4].copy_from_slice(b"prog");
        let h = Header {
            entry: 0x5a00_0000_1000,
            at_phdr: 0x5a00_0000_0040,
            at_phnum: 9,
            at_phent: 56,
            at_entry: 0x5a00_0000_1000,
            sigmask: 0,
            status_fd: 7,
            name_len: 4,
            name,
            ..Header::default()
        };
        let regions = [
            Region {
                vaddr: 0x5a00_0000_0000,
                len: 0x2000,
                offset: 0,
                fd: 4,
                prot: PROT_READ | PROT_EXEC,
                source: Source::Fd as u32,
                _reserved: 0,
            },
            Region {
                vaddr: 0x5a00_0000_4000,
                len: 0x1000,
                offset: 0,
                fd: -1,
                prot: PROT_READ | PROT_WRITE,
                source: Source::Zero as u32,
                _reserved: 0,
            },
        ];
        let fds = [FdMove { from: 20, to: 5 }, FdMove { from: 21, to: 9 }];
        (h, regions, fds)
    }

    #[test]
    fn round_trip() {
        let (h, regions, fds) = sample();
        let ops = [Op { kind: OpKind::Fixup as u32, arg: FixupKind::Argv as u32, a: 0x1000, ..Op::default() }];
        let mut buf = vec![0u8; plan_size(2, 2, 1, 0)];
        encode_plan(h, &regions, &fds, &ops, &[], &mut buf);
        let p = Plan::parse(&buf).unwrap();
        assert_eq!(p.op(0), ops[0]);
        assert_eq!(p.header.entry, h.entry);
        assert_eq!(p.header.status_fd, 7);
        assert_eq!(p.name(), b"prog");
        assert_eq!(p.region(0), regions[0]);
        assert_eq!(p.region(1), regions[1]);
        assert_eq!(p.fd_move(1), fds[1]);
    }

    #[test]
    fn rejects_bad_input() {
        let (h, mut regions, fds) = sample();
        let mut buf = vec![0u8; plan_size(2, 2, 0, 0)];
        encode_plan(h, &regions, &fds, &[], &[], &mut buf);
        assert_eq!(Plan::parse(&buf[..100]).unwrap_err(), PlanError::Truncated);
        assert_eq!(Plan::parse(&buf[..buf.len() - 1]).unwrap_err(), PlanError::Truncated);
        let mut bad = buf.clone();
        bad[0] ^= 1;
        assert_eq!(Plan::parse(&bad).unwrap_err(), PlanError::BadMagic);
        let mut bad = buf.clone();
        bad[8] = 99;
        assert_eq!(Plan::parse(&bad).unwrap_err(), PlanError::BadVersion(99));
        regions[1].vaddr += 1;
        encode_plan(h, &regions, &fds, &[], &[], &mut buf);
        assert_eq!(Plan::parse(&buf).unwrap_err(), PlanError::BadRegion(1));
        regions[1].vaddr -= 1;
        let unsorted = [fds[1], fds[0]];
        encode_plan(h, &regions, &unsorted, &[], &[], &mut buf);
        assert_eq!(Plan::parse(&buf).unwrap_err(), PlanError::BadLayout);
    }

    #[test]
    fn args_block_round_trip_and_validation() {
        let (mut h, regions, fds) = sample();
        let args = b"prog\0-x\0HOME=/\0";
        h.argc = 2;
        h.envc = 1;
        let mut buf = vec![0u8; plan_size(2, 2, 0, args.len())];
        encode_plan(h, &regions, &fds, &[], args, &mut buf);
        let p = Plan::parse(&buf).unwrap();
        assert_eq!(p.args(), args);
        assert_eq!((p.header.argc, p.header.envc), (2, 1));
        // A count that does not match the strings, or a missing terminator.
        h.envc = 2;
        encode_plan(h, &regions, &fds, &[], args, &mut buf);
        assert_eq!(Plan::parse(&buf).unwrap_err(), PlanError::BadLayout);
        h.envc = 1;
        encode_plan(h, &regions, &fds, &[], b"prog\0-x\0HOME=/x", &mut buf);
        assert_eq!(Plan::parse(&buf).unwrap_err(), PlanError::BadLayout);
        // argc 0 with a block is refused too: the program needs argv[0].
        h.argc = 0;
        h.envc = 3;
        encode_plan(h, &regions, &fds, &[], args, &mut buf);
        assert_eq!(Plan::parse(&buf).unwrap_err(), PlanError::BadLayout);
    }

    #[test]
    fn status_round_trip() {
        let r = StatusRecord { stage: Stage::Map as u32, index: 3, errno: 17, detail: 0, addr: 0x1000 };
        assert_eq!(StatusRecord::decode(&r.encode()), Some(r));
        assert_eq!(Stage::from_u32(5), Some(Stage::Map));
    }
}
