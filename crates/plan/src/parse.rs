//! Validating a plan ([`Plan::parse`], a zero-copy view) and encoding one.

use crate::*;

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
        // No block: no strings, and no offset for `Plan::args` to slice at.
        return h.argc == 0 && h.envc == 0 && h.args_off == 0;
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
