//! Build the per-spawn plan and the child's fd layout from an image.
//!
//! Child fd layout while the stub runs:
//!
//! ```text
//! 0..2                 stdio (inherited, or the caller's fds placed directly)
//! 3                    the plan (PLAN_FD)
//! 4 .. 4+f             the files the image maps (the program first)
//! 4+f .. 4+f+k         the image's sealed objects
//! base .. base+n       the caller's fds for targets >= 3 (moved by the stub)
//! base+n               the status pipe
//! base+n+1             the working directory (pre-started launchers only)
//! ```
//!
//! `base` is above every target, so the stub's moves never clobber a source.
//! A launcher's warm-up plan has the plan, files and objects only; the plan
//! that finishes a warmed-up launch has no files or objects (they are mapped).

use std::os::fd::{AsRawFd, RawFd};

use zygote_plan::{
    FLAG_WARM_UP, FdMove, Header, Op, OpKind, PLAN_FD, Region, RestoreOp, Source, encode_plan, plan_size,
};

use crate::Image;
use zygote_core::image::RegionKind;

const FIRST_FILE_FD: RawFd = PLAN_FD + 1;

/// Which part of a launch a plan is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Everything: an exec'd stub, or a launcher not warmed up.
    Full,
    /// A launcher's warm-up: regions and the ops that do not depend on the
    /// spawn, nothing of the caller's.
    WarmUp,
    /// The spawn for a warmed-up launcher: no regions, only the ops that need
    /// the new stack. `exe_fd` names where the launcher kept the program file.
    Finish { exe_fd: RawFd },
}

/// The per-spawn inputs besides the image.
pub struct SpawnParts<'a> {
    /// The requester's program file: mapped in place of the image's own
    /// (`files[0]`), so a process maps only its requester's file and sealed
    /// objects.
    pub program: RawFd,
    /// Caller fds and the child fd number each must become.
    pub fds: &'a [(RawFd, RawFd)],
    /// The caller's signal mask, to install at entry.
    pub sigmask: u64,
    /// Process name (comm).
    pub name: &'a [u8],
    /// Make `/proc/PID/exe` the program (the process may: it has
    /// CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN). Only prototype images need it.
    pub set_exe: bool,
    /// For a pre-started launcher: the argv and envp it builds the stack from.
    pub prestart: Option<Prestart<'a>>,
    pub phase: Phase,
}

/// What a pre-started launcher needs beyond an exec'd stub's plan.
pub struct Prestart<'a> {
    /// `argc` arguments then `envc` environment entries, NUL-terminated.
    pub args: &'a [u8],
    pub argc: u32,
    pub envc: u32,
}

/// The child's fd placements plus the encoded plan.
pub struct Layout {
    /// (caller fd, child fd) for the pre-exec child. The plan fd and the status
    /// pipe are appended by the caller once it has them, at `PLAN_FD` and
    /// `status_fd`.
    pub placements: Vec<(RawFd, RawFd)>,
    pub status_fd: RawFd,
    /// Where the working directory fd goes (pre-started launchers).
    pub cwd_fd: RawFd,
    pub plan: Vec<u8>,
}

pub fn build(image: &Image, parts: &SpawnParts<'_>) -> Layout {
    let with_image = parts.phase != Phase::WarmUp;
    let (objects, files) = match parts.phase {
        Phase::Finish { .. } => (&[][..], &[][..]),
        _ => (image.objects(), image.files()),
    };
    let first_object_fd = FIRST_FILE_FD + files.len() as RawFd;
    let mut placements = Vec::with_capacity(files.len() + objects.len() + parts.fds.len() + 2);
    for (i, f) in files.iter().enumerate() {
        let fd = if i == 0 { parts.program } else { f.file.as_raw_fd() };
        placements.push((fd, FIRST_FILE_FD + i as RawFd));
    }
    for (i, o) in objects.iter().enumerate() {
        placements.push((o.fd().as_raw_fd(), first_object_fd + i as RawFd));
    }
    let image_top = first_object_fd + objects.len() as RawFd;
    let user_fds = if with_image { parts.fds } else { &[] };
    let max_target = user_fds.iter().map(|f| f.1).max().unwrap_or(0);
    let base = image_top.max(max_target + 1);

    let mut moves = Vec::new();
    let mut next = base;
    for &(fd, target) in user_fds {
        if target < 3 {
            placements.push((fd, target));
        } else {
            placements.push((fd, next));
            moves.push(FdMove { from: next, to: target });
            next += 1;
        }
    }
    moves.sort_by_key(|m| m.to);
    let status_fd = next;
    let cwd_fd = status_fd + 1;

    let regions: Vec<Region> = if matches!(parts.phase, Phase::Finish { .. }) {
        Vec::new()
    } else {
        image
            .regions()
            .iter()
            .map(|r| {
                let (fd, offset, source) = match r.kind {
                    RegionKind::File { file, offset } => (FIRST_FILE_FD + file as RawFd, offset, Source::Fd),
                    RegionKind::Sealed { object, offset } => (first_object_fd + object as RawFd, offset, Source::Fd),
                    RegionKind::Zero => (-1, 0, Source::Zero),
                };
                Region { vaddr: r.vaddr, len: r.len, offset, fd, prot: r.prot, source: source as u32, _reserved: 0 }
            })
            .collect()
    };
    let ops: Vec<Op> = match parts.phase {
        Phase::Full => image.ops().iter().map(RestoreOp::to_op).collect(),
        Phase::WarmUp => image.ops().iter().filter(|o| o.kind().at_warm_up()).map(RestoreOp::to_op).collect(),
        Phase::Finish { .. } => {
            let mut ops: Vec<Op> =
                image.ops().iter().filter(|o| !o.kind().at_warm_up()).map(RestoreOp::to_op).collect();
            if !ops.iter().any(|o| o.kind() == Some(OpKind::MmLayout)) {
                // A static image: the launcher sets the mm bounds (its own
                // describe its exec), so give it the code and data bounds.
                ops.push(static_layout(image));
            }
            ops
        }
    };

    let e = image.entry();
    let mut name = [0u8; 16];
    let name_len = parts.name.len().min(15);
    name[..name_len].copy_from_slice(&parts.name[..name_len]);
    let prototype = !image.ops().is_empty();
    let exe_fd = match parts.phase {
        _ if !(parts.set_exe && prototype) => -1,
        Phase::Finish { exe_fd } => exe_fd,
        _ => FIRST_FILE_FD,
    };
    let prestart = parts.prestart.as_ref().filter(|_| with_image);
    let header = Header {
        entry: e.pc,
        rtld_fini: e.rtld_fini,
        at_phdr: e.at_phdr,
        at_phnum: e.at_phnum,
        at_phent: e.at_phent,
        at_entry: e.at_entry,
        at_base: e.at_base,
        sigmask: parts.sigmask,
        status_fd: if with_image { status_fd } else { -1 },
        name_len: name_len as u32,
        name,
        exe_fd,
        argc: prestart.map_or(0, |p| p.argc),
        envc: prestart.map_or(0, |p| p.envc),
        cwd_fd: if prestart.is_some() { cwd_fd } else { -1 },
        flags: if with_image { 0 } else { FLAG_WARM_UP },
        ..Header::default()
    };
    let args = prestart.map_or(&[][..], |p| p.args);
    let mut plan = vec![0u8; plan_size(regions.len(), moves.len(), ops.len(), args.len())];
    encode_plan(header, &regions, &moves, &ops, args, &mut plan);
    Layout { placements, status_fd, cwd_fd, plan }
}

/// `MmLayout` for an image without one: its first executable region as code,
/// its first writable one as data. The launcher takes the brk it has.
fn static_layout(image: &Image) -> Op {
    const PROT_WRITE: u32 = 2;
    const PROT_EXEC: u32 = 4;
    let regions = image.regions();
    let span = |want: u32| regions.iter().find(|r| r.prot & want != 0).map(|r| (r.vaddr, r.vaddr + r.len));
    let first = regions.first().map_or((0, 0), |r| (r.vaddr, r.vaddr + r.len));
    let code = span(PROT_EXEC).unwrap_or(first);
    let data = span(PROT_WRITE).unwrap_or((code.1, code.1));
    RestoreOp::MmLayout { start_code: code.0, end_code: code.1, start_data: data.0, end_data: data.1 }.to_op()
}
