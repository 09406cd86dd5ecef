//! What the stub reports on its status fd when it fails.

use crate::wire::*;
use crate::*;

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
