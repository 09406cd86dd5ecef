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
//! ```
//!
//! `base` is above every target, so the stub's moves never clobber a source.

use std::os::fd::{AsRawFd, RawFd};

use zygote_plan::{FdMove, Header, PLAN_FD, Region, Source, encode_plan, plan_size};

use crate::image::{Image, RegionKind};

const FIRST_FILE_FD: RawFd = PLAN_FD + 1;

/// The per-spawn inputs besides the image.
pub struct SpawnParts<'a> {
    /// Caller fds and the child fd number each must become.
    pub fds: &'a [(RawFd, RawFd)],
    /// The caller's signal mask, to install at entry.
    pub sigmask: u64,
    /// Process name (comm).
    pub name: &'a [u8],
    /// Make `/proc/PID/exe` the program (the process may: it has
    /// CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN). Only prototype images need it.
    pub set_exe: bool,
}

/// The child's fd placements plus the encoded plan.
pub struct Layout {
    /// (caller fd, child fd) for the pre-exec child. The plan fd and the status
    /// pipe are appended by the caller once it has them, at `PLAN_FD` and
    /// `status_fd`.
    pub placements: Vec<(RawFd, RawFd)>,
    pub status_fd: RawFd,
    pub plan: Vec<u8>,
}

pub fn build(image: &Image, parts: &SpawnParts<'_>) -> Layout {
    let objects = image.objects();
    let files = image.files();
    let first_object_fd = FIRST_FILE_FD + files.len() as RawFd;
    let mut placements = Vec::with_capacity(files.len() + objects.len() + parts.fds.len() + 2);
    for (i, f) in files.iter().enumerate() {
        placements.push((f.fd.as_raw_fd(), FIRST_FILE_FD + i as RawFd));
    }
    for (i, o) in objects.iter().enumerate() {
        placements.push((o.fd().as_raw_fd(), first_object_fd + i as RawFd));
    }
    let image_top = first_object_fd + objects.len() as RawFd;
    let max_target = parts.fds.iter().map(|f| f.1).max().unwrap_or(0);
    let base = image_top.max(max_target + 1);

    let mut moves = Vec::new();
    let mut next = base;
    for &(fd, target) in parts.fds {
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

    let regions: Vec<Region> = image
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
        .collect();

    let e = image.entry();
    let mut name = [0u8; 16];
    let name_len = parts.name.len().min(15);
    name[..name_len].copy_from_slice(&parts.name[..name_len]);
    let header = Header {
        entry: e.pc,
        rtld_fini: e.rtld_fini,
        at_phdr: e.at_phdr,
        at_phnum: e.at_phnum,
        at_phent: e.at_phent,
        at_entry: e.at_entry,
        at_base: e.at_base,
        sigmask: parts.sigmask,
        status_fd,
        name_len: name_len as u32,
        name,
        exe_fd: if parts.set_exe && !image.ops().is_empty() { FIRST_FILE_FD } else { -1 },
        ..Header::default()
    };
    let ops = image.ops();
    let mut plan = vec![0u8; plan_size(regions.len(), moves.len(), ops.len())];
    encode_plan(header, &regions, &moves, ops, &mut plan);
    Layout { placements, status_fd, plan }
}
