//! Restore ops: what the stub does after mapping the regions of a prototype
//! image, on the wire ([`Op`]) and typed ([`RestoreOp`]).

use crate::wire::*;

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

/// A restore op, typed: what the daemon builds and reasons about. It becomes
/// an [`Op`] only at the edge, when the plan is encoded ([`RestoreOp::to_op`]),
/// and the stub reads the wire form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreOp {
    /// A kernel special mapping to move: `offset` from the vDSO start (may be
    /// negative), `len` bytes, to `target`; `is_vdso` for the [vdso] itself.
    VdsoSpecial { offset: i64, len: u64, target: u64, is_vdso: bool },
    /// Write a stack-derived value of `kind` at `addr`; `param` is the auxv
    /// type for [`FixupKind::AuxVal`].
    Fixup { addr: u64, kind: FixupKind, param: u64 },
    /// mprotect(`addr`, `len`, `prot`).
    Protect { addr: u64, len: u64, prot: u32 },
    /// arch_prctl(ARCH_SET_FS, `fs_base`).
    SetFs { fs_base: u64 },
    /// set_tid_address(`addr`), then store the tid there.
    SetTidAddress { addr: u64 },
    /// set_robust_list(`head`, `len`).
    RobustList { head: u64, len: u64 },
    /// rseq(`addr`, `len`, `flags`, `signature`).
    Rseq { addr: u64, len: u64, flags: u64, signature: u64 },
    /// A fresh stack canary at `addr`.
    Canary { addr: u64 },
    /// PR_SET_MM_MAP code and data bounds.
    MmLayout { start_code: u64, end_code: u64, start_data: u64, end_data: u64 },
    /// start_brk and brk (follows `MmLayout`).
    MmBrk { start_brk: u64, brk: u64 },
}

impl RestoreOp {
    /// The wire form.
    pub fn to_op(&self) -> Op {
        let op = |kind: OpKind, arg: u32, a: u64, b: u64, c: u64, d: u64| Op { kind: kind as u32, arg, a, b, c, d };
        match *self {
            RestoreOp::VdsoSpecial { offset, len, target, is_vdso } => {
                op(OpKind::VdsoSpecial, is_vdso as u32, offset as u64, len, target, 0)
            }
            RestoreOp::Fixup { addr, kind, param } => op(OpKind::Fixup, kind as u32, addr, param, 0, 0),
            RestoreOp::Protect { addr, len, prot } => op(OpKind::Protect, 0, addr, len, u64::from(prot), 0),
            RestoreOp::SetFs { fs_base } => op(OpKind::SetFs, 0, fs_base, 0, 0, 0),
            RestoreOp::SetTidAddress { addr } => op(OpKind::SetTidAddress, 0, addr, 0, 0, 0),
            RestoreOp::RobustList { head, len } => op(OpKind::RobustList, 0, head, len, 0, 0),
            RestoreOp::Rseq { addr, len, flags, signature } => op(OpKind::Rseq, 0, addr, len, flags, signature),
            RestoreOp::Canary { addr } => op(OpKind::Canary, 0, addr, 0, 0, 0),
            RestoreOp::MmLayout { start_code, end_code, start_data, end_data } => {
                op(OpKind::MmLayout, 0, start_code, end_code, start_data, end_data)
            }
            RestoreOp::MmBrk { start_brk, brk } => op(OpKind::MmBrk, 0, start_brk, brk, 0, 0),
        }
    }

    /// The typed form of a wire op; `None` for an unknown kind or fixup kind.
    pub fn from_op(o: &Op) -> Option<Self> {
        Some(match o.kind()? {
            OpKind::VdsoSpecial => {
                RestoreOp::VdsoSpecial { offset: o.a as i64, len: o.b, target: o.c, is_vdso: o.arg == 1 }
            }
            OpKind::Fixup => RestoreOp::Fixup { addr: o.a, kind: FixupKind::from_u32(o.arg)?, param: o.b },
            OpKind::Protect => RestoreOp::Protect { addr: o.a, len: o.b, prot: o.c as u32 },
            OpKind::SetFs => RestoreOp::SetFs { fs_base: o.a },
            OpKind::SetTidAddress => RestoreOp::SetTidAddress { addr: o.a },
            OpKind::RobustList => RestoreOp::RobustList { head: o.a, len: o.b },
            OpKind::Rseq => RestoreOp::Rseq { addr: o.a, len: o.b, flags: o.c, signature: o.d },
            OpKind::Canary => RestoreOp::Canary { addr: o.a },
            OpKind::MmLayout => RestoreOp::MmLayout { start_code: o.a, end_code: o.b, start_data: o.c, end_data: o.d },
            OpKind::MmBrk => RestoreOp::MmBrk { start_brk: o.a, brk: o.b },
        })
    }

    /// Its kind on the wire.
    pub fn kind(&self) -> OpKind {
        match self {
            RestoreOp::VdsoSpecial { .. } => OpKind::VdsoSpecial,
            RestoreOp::Fixup { .. } => OpKind::Fixup,
            RestoreOp::Protect { .. } => OpKind::Protect,
            RestoreOp::SetFs { .. } => OpKind::SetFs,
            RestoreOp::SetTidAddress { .. } => OpKind::SetTidAddress,
            RestoreOp::RobustList { .. } => OpKind::RobustList,
            RestoreOp::Rseq { .. } => OpKind::Rseq,
            RestoreOp::Canary { .. } => OpKind::Canary,
            RestoreOp::MmLayout { .. } => OpKind::MmLayout,
            RestoreOp::MmBrk { .. } => OpKind::MmBrk,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> [RestoreOp; 10] {
        [
            RestoreOp::VdsoSpecial { offset: -0x4000, len: 0x2000, target: 0x7f00_0000_0000, is_vdso: false },
            RestoreOp::Fixup { addr: 0x1000, kind: FixupKind::AuxVal, param: 15 },
            RestoreOp::Protect { addr: 0x2000, len: 0x1000, prot: crate::PROT_READ },
            RestoreOp::SetFs { fs_base: 0x3000 },
            RestoreOp::SetTidAddress { addr: 0x3010 },
            RestoreOp::RobustList { head: 0x3020, len: 24 },
            RestoreOp::Rseq { addr: 0x3100, len: 32, flags: 0, signature: 0x5305_3053 },
            RestoreOp::Canary { addr: 0x3028 },
            RestoreOp::MmLayout { start_code: 1, end_code: 2, start_data: 3, end_data: 4 },
            RestoreOp::MmBrk { start_brk: 5, brk: 6 },
        ]
    }

    #[test]
    fn typed_ops_survive_the_wire() {
        for r in all() {
            let mut buf = [0u8; Op::SIZE];
            r.to_op().encode(&mut buf);
            let back = Op::decode(&buf);
            assert_eq!(back.kind(), Some(r.kind()), "{r:?}");
            assert_eq!(RestoreOp::from_op(&back), Some(r));
        }
    }

    #[test]
    fn unknown_kinds_are_not_typed() {
        assert_eq!(RestoreOp::from_op(&Op { kind: 99, ..Op::default() }), None);
        let bad_fixup = Op { kind: OpKind::Fixup as u32, arg: 99, ..Op::default() };
        assert_eq!(RestoreOp::from_op(&bad_fixup), None);
    }
}
