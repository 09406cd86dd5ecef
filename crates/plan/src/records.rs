//! The plan's fixed records: the header, regions and fd moves.

use crate::wire::*;
use crate::*;

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
