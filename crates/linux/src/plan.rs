//! The stub's plan for one phase of a launch (the core's `plan::plan`, its
//! regions pointed at fd numbers) and the child's fd layout.
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

use zygote_core::image::RegionKind;
pub use zygote_core::plan::Phase;
use zygote_core::plan::{SpawnPlan, comm, plan};
use zygote_plan::{FLAG_WARM_UP, FdMove, Header, Op, PLAN_FD, Region, RestoreOp, Source, encode_plan, plan_size};

use crate::Image;

const FIRST_FILE_FD: RawFd = PLAN_FD + 1;

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
    /// CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN), for every kind of image: a
    /// program that re-execs `/proc/self/exe` must get itself, not the stub.
    pub set_exe: bool,
    /// For a pre-started launcher: the argv and envp it builds the stack from.
    pub prestart: Option<Prestart<'a>>,
    pub phase: Phase,
    /// [`Phase::Finish`]: where the warmed-up launcher kept the program file.
    pub kept_exe_fd: RawFd,
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

/// Where the image's files and objects go in the child, and the caller's fds.
struct Fds {
    placements: Vec<(RawFd, RawFd)>,
    moves: Vec<FdMove>,
    first_object_fd: RawFd,
    status_fd: RawFd,
}

/// Plan `parts.phase` of a launch of `image` for the stub: the core's plan,
/// with its regions pointing at fd numbers and the caller's fds placed.
pub fn build(image: &Image, parts: &SpawnParts<'_>) -> Layout {
    let planned = plan(image, parts.phase);
    let fds = place_fds(image, parts);
    let regions: Vec<Region> = planned.regions.iter().map(|r| region(r, fds.first_object_fd)).collect();
    let mut ops: Vec<Op> = planned.ops.iter().map(RestoreOp::to_op).collect();
    if parts.phase == Phase::Full && parts.set_exe && !planned.prototype {
        // A static image: PR_SET_MM_MAP (which sets the exe file) needs its
        // code and data bounds.
        ops.push(zygote_core::plan::static_layout(image.regions()).to_op());
    }
    let cwd_fd = fds.status_fd + 1;
    let prestart = parts.prestart.as_ref().filter(|_| parts.phase.takes_request());
    let header = header(&planned, parts, fds.status_fd, cwd_fd, prestart);
    let args = prestart.map_or(&[][..], |p| p.args);
    let mut plan = vec![0u8; plan_size(regions.len(), fds.moves.len(), ops.len(), args.len())];
    encode_plan(header, &regions, &fds.moves, &ops, args, &mut plan);
    Layout { placements: fds.placements, status_fd: fds.status_fd, cwd_fd, plan }
}

/// Files at 4.., objects after them, the caller's fds: stdio in place, the
/// rest above every target (moved by the stub), then the status pipe.
fn place_fds(image: &Image, parts: &SpawnParts<'_>) -> Fds {
    let (objects, files) = if parts.phase.maps_image() { (image.objects(), image.files()) } else { (&[][..], &[][..]) };
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
    let user_fds = if parts.phase.takes_request() { parts.fds } else { &[] };
    let max_target = user_fds.iter().map(|f| f.1).max().unwrap_or(0);
    let mut next = image_top.max(max_target + 1);
    let mut moves = Vec::new();
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
    Fds { placements, moves, first_object_fd, status_fd: next }
}

/// A region as the stub maps it: from the fd its file or object is placed at.
fn region(r: &zygote_core::image::ImageRegion, first_object_fd: RawFd) -> Region {
    let (fd, offset, source) = match r.kind {
        RegionKind::File { file, offset } => (FIRST_FILE_FD + file as RawFd, offset, Source::Fd),
        RegionKind::Sealed { object, offset } => (first_object_fd + object as RawFd, offset, Source::Fd),
        RegionKind::Zero => (-1, 0, Source::Zero),
    };
    Region { vaddr: r.vaddr, len: r.len, offset, fd, prot: r.prot, source: source as u32, _reserved: 0 }
}

/// The plan header: the entry state, the name, and the fds the stub reports
/// on, keeps the program at, and changes directory with.
fn header(
    planned: &SpawnPlan<'_>,
    parts: &SpawnParts<'_>,
    status_fd: RawFd,
    cwd_fd: RawFd,
    prestart: Option<&Prestart<'_>>,
) -> Header {
    let e = planned.entry;
    let (name, name_len) = comm(parts.name);
    let exe_fd = match parts.phase {
        _ if !parts.set_exe => -1,
        Phase::Finish => parts.kept_exe_fd,
        _ => FIRST_FILE_FD,
    };
    let takes_request = parts.phase.takes_request();
    Header {
        entry: e.pc,
        rtld_fini: e.rtld_fini,
        at_phdr: e.at_phdr,
        at_phnum: e.at_phnum,
        at_phent: e.at_phent,
        at_entry: e.at_entry,
        at_base: e.at_base,
        sigmask: parts.sigmask,
        status_fd: if takes_request { status_fd } else { -1 },
        name_len: name_len as u32,
        name,
        exe_fd,
        argc: prestart.map_or(0, |p| p.argc),
        envc: prestart.map_or(0, |p| p.envc),
        cwd_fd: if prestart.is_some() { cwd_fd } else { -1 },
        flags: if takes_request { 0 } else { FLAG_WARM_UP },
        ..Header::default()
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::path::PathBuf;
    use std::time::Duration;

    use zygote_core::elf::ProgramKind;
    use zygote_core::image::{
        ContentHash, EntryState, ImageKey, ImageParts, ImageRegion, MappedFile, RegionKind, RelocSummary,
    };
    use zygote_plan::{FLAG_WARM_UP, Op, OpKind, PLAN_FD, Plan, RestoreOp, Source};

    use super::*;
    use crate::SealedObject;

    const R: u32 = 1;
    const W: u32 = 2;
    const X: u32 = 4;
    /// The requester's program fd (placements only record numbers).
    const PROGRAM: RawFd = 900;

    fn op(kind: OpKind, a: u64) -> RestoreOp {
        let arg = if kind == OpKind::Fixup { zygote_plan::FixupKind::StackEnd as u32 } else { 0 };
        RestoreOp::from_op(&Op { kind: kind as u32, arg, a, ..Op::default() }).expect("a known kind")
    }

    /// An image with `files` mapped files and `objects` sealed memfds: the
    /// program's code (file 0), one region per extra file and object, and a
    /// zero-fill region.
    fn image(files: usize, objects: usize, ops: Vec<RestoreOp>) -> Image {
        let mut regions = Vec::new();
        let mut vaddr = 0x40_0000;
        let mut region = |prot, kind| {
            regions.push(ImageRegion { vaddr, len: 0x1000, prot, kind, segment: 0, relro: false });
            vaddr += 0x1000;
        };
        for file in 0..files {
            region(if file == 0 { R | X } else { R }, RegionKind::File { file, offset: 0 });
        }
        for object in 0..objects {
            region(R | W, RegionKind::Sealed { object, offset: 0 });
        }
        region(R | W, RegionKind::Zero);
        let mapped = (0..files)
            .map(|i| {
                let file = crate::dev_null().unwrap();
                let identity = crate::identity_of(&file).unwrap();
                MappedFile { path: PathBuf::from(format!("/file{i}")), file, identity }
            })
            .collect();
        let sealed =
            (0..objects).map(|i| SealedObject::create(&format!("obj{i}"), &[i as u8; 4096]).unwrap()).collect();
        Image::new(ImageParts {
            key: ImageKey::relocate(ContentHash([7; 32])),
            path: PathBuf::from("/file0"),
            files: mapped,
            objects: sealed,
            regions,
            entry: EntryState { pc: 0x40_0123, at_entry: 0x40_0100, at_phnum: 9, ..EntryState::default() },
            ops,
            load_bias: 0,
            kind: if files > 1 { ProgramKind::Dynamic } else { ProgramKind::Static },
            relocs: RelocSummary::default(),
            build_time: Duration::ZERO,
        })
    }

    fn parts<'a>(fds: &'a [(RawFd, RawFd)], phase: Phase) -> SpawnParts<'a> {
        SpawnParts {
            program: PROGRAM,
            fds,
            sigmask: 0x5a,
            name: b"prog",
            set_exe: false,
            prestart: None,
            phase,
            kept_exe_fd: if phase == Phase::Finish { 200 } else { -1 },
        }
    }

    fn moves(plan: &Plan<'_>) -> Vec<(RawFd, RawFd)> {
        (0..plan.header.fd_count).map(|i| plan.fd_move(i)).map(|m| (m.from, m.to)).collect()
    }

    fn op_kinds(plan: &Plan<'_>) -> Vec<OpKind> {
        (0..plan.header.op_count).map(|i| plan.op(i).kind().unwrap()).collect()
    }

    #[test]
    fn full_plan_places_files_objects_then_caller_fds_above_every_target() {
        let img = image(2, 2, Vec::new());
        let fds = [(50, 0), (51, 7), (52, 4)];
        let layout = build(&img, &parts(&fds, Phase::Full));
        let (file1, obj0, obj1) =
            (img.files()[1].file.as_raw_fd(), img.objects()[0].fd().as_raw_fd(), img.objects()[1].fd().as_raw_fd());
        // Files from PLAN_FD + 1 (the requester's program in place of files[0]),
        // then the objects; the image ends at 8, above target 7: base 8.
        assert_eq!(PLAN_FD, 3);
        assert_eq!(layout.placements, [(PROGRAM, 4), (file1, 5), (obj0, 6), (obj1, 7), (50, 0), (51, 8), (52, 9)]);
        assert_eq!((layout.status_fd, layout.cwd_fd), (10, 11));

        let plan = Plan::parse(&layout.plan).unwrap();
        let h = plan.header;
        assert_eq!(h.status_fd, 10);
        assert_eq!((h.cwd_fd, h.exe_fd, h.flags, h.argc, h.envc), (-1, -1, 0, 0, 0));
        assert_eq!((h.entry, h.at_entry, h.at_phnum, h.sigmask), (0x40_0123, 0x40_0100, 9, 0x5a));
        assert_eq!(plan.name(), b"prog");
        // The stub moves the high copies down, sorted by target; stdio went
        // straight to its place.
        assert_eq!(moves(&plan), [(9, 4), (8, 7)]);
        // Regions name the child's fd numbers.
        let regions: Vec<(RawFd, Option<Source>)> =
            (0..h.region_count).map(|i| plan.region(i)).map(|r| (r.fd, r.source())).collect();
        assert_eq!(
            regions,
            [
                (4, Some(Source::Fd)),
                (5, Some(Source::Fd)),
                (6, Some(Source::Fd)),
                (7, Some(Source::Fd)),
                (-1, Some(Source::Zero))
            ]
        );
    }

    #[test]
    fn caller_fds_go_above_a_high_target_and_never_clobber_a_source() {
        let img = image(1, 1, Vec::new());
        let fds = [(60, 100), (61, 2), (62, 5), (63, 4)];
        let layout = build(&img, &parts(&fds, Phase::Full));
        let plan = Plan::parse(&layout.plan).unwrap();
        let moved = moves(&plan);
        assert_eq!(moved, [(103, 4), (102, 5), (101, 100)]);
        let targets: Vec<RawFd> = fds.iter().map(|f| f.1).collect();
        for (from, _) in &moved {
            assert!(targets.iter().all(|t| from > t), "{from} is not above every target");
        }
        assert_eq!(layout.status_fd, 104);
        assert_eq!(plan.header.status_fd, 104);
        assert!(layout.placements.contains(&(61, 2)));
    }

    #[test]
    fn status_fd_follows_the_image_without_caller_fds() {
        let img = image(1, 3, Vec::new());
        let layout = build(&img, &parts(&[], Phase::Full));
        // Program at 4, objects at 5..=7: the status pipe at 8.
        assert_eq!(layout.placements.len(), 4);
        assert_eq!((layout.status_fd, layout.cwd_fd), (8, 9));
        assert!(moves(&Plan::parse(&layout.plan).unwrap()).is_empty());
    }

    #[test]
    fn warm_up_maps_the_image_but_takes_nothing_of_the_callers() {
        let ops = vec![op(OpKind::SetFs, 1), op(OpKind::Fixup, 2), op(OpKind::Rseq, 3), op(OpKind::Canary, 4)];
        let img = image(2, 1, ops);
        let prestart = Prestart { args: b"prog\0", argc: 1, envc: 0 };
        let fds = [(50, 0), (51, 9)];
        let layout = build(&img, &SpawnParts { prestart: Some(prestart), set_exe: true, ..parts(&fds, Phase::WarmUp) });
        assert_eq!(layout.placements.len(), 3, "files and objects only: {:?}", layout.placements);
        assert_eq!(layout.placements[0], (PROGRAM, 4));
        let plan = Plan::parse(&layout.plan).unwrap();
        let h = plan.header;
        assert_eq!(h.flags, FLAG_WARM_UP);
        assert_eq!((h.status_fd, h.cwd_fd, h.argc, h.envc, h.args_len), (-1, -1, 0, 0, 0));
        // A prototype image with set_exe: /proc/self/exe from the program file.
        assert_eq!(h.exe_fd, 4);
        assert_eq!(h.region_count, 4);
        assert!(moves(&plan).is_empty());
        assert_eq!(op_kinds(&plan), [OpKind::SetFs, OpKind::Rseq]);
    }

    #[test]
    fn finish_has_no_image_only_the_spawn() {
        let ops = vec![op(OpKind::SetFs, 1), op(OpKind::Fixup, 2), op(OpKind::MmLayout, 3), op(OpKind::MmBrk, 4)];
        let img = image(2, 2, ops);
        let args = b"prog\0-v\0A=1\0";
        let prestart = Prestart { args, argc: 2, envc: 1 };
        let fds = [(50, 1), (51, 3)];
        let phase = Phase::Finish;
        let layout = build(&img, &SpawnParts { prestart: Some(prestart), set_exe: true, ..parts(&fds, phase) });
        // No files or objects (the launcher mapped them): caller fds from 4.
        assert_eq!(layout.placements, [(50, 1), (51, 4)]);
        assert_eq!((layout.status_fd, layout.cwd_fd), (5, 6));
        let plan = Plan::parse(&layout.plan).unwrap();
        let h = plan.header;
        assert_eq!((h.region_count, h.flags, h.status_fd, h.cwd_fd, h.exe_fd), (0, 0, 5, 6, 200));
        assert_eq!((h.argc, h.envc), (2, 1));
        assert_eq!(plan.args(), args);
        assert_eq!(moves(&plan), [(4, 3)]);
        // The ops a warm-up did not apply, and no second MmLayout.
        assert_eq!(op_kinds(&plan), [OpKind::Fixup, OpKind::MmLayout, OpKind::MmBrk]);
    }

    #[test]
    fn finish_of_a_static_image_gets_its_mm_layout() {
        let img = image(1, 1, Vec::new());
        let layout = build(&img, &SpawnParts { set_exe: true, ..parts(&[], Phase::Finish) });
        let plan = Plan::parse(&layout.plan).unwrap();
        // A static image gets its /proc/self/exe set too.
        assert_eq!(plan.header.exe_fd, 200);
        assert_eq!(plan.header.op_count, 1);
        let mm = plan.op(0);
        assert_eq!(mm.kind(), Some(OpKind::MmLayout));
        // Code: the executable region; data: the first writable one.
        assert_eq!((mm.a, mm.b, mm.c, mm.d), (0x40_0000, 0x40_1000, 0x40_1000, 0x40_2000));
    }

    #[test]
    fn full_plan_keeps_every_op_and_the_exe_only_with_set_exe() {
        let ops = vec![op(OpKind::SetFs, 1), op(OpKind::Canary, 2)];
        let img = image(2, 1, ops);
        let plain = Plan::parse(&build(&img, &parts(&[], Phase::Full)).plan).unwrap().header;
        assert_eq!(plain.exe_fd, -1);
        let layout = build(&img, &SpawnParts { set_exe: true, ..parts(&[], Phase::Full) });
        let plan = Plan::parse(&layout.plan).unwrap();
        assert_eq!(plan.header.exe_fd, 4);
        assert_eq!(op_kinds(&plan), [OpKind::SetFs, OpKind::Canary]);

        // A static image: its code and data bounds come along for PR_SET_MM_MAP.
        let img = image(1, 1, Vec::new());
        assert_eq!(Plan::parse(&build(&img, &parts(&[], Phase::Full)).plan).unwrap().header.op_count, 0);
        let plan = build(&img, &SpawnParts { set_exe: true, ..parts(&[], Phase::Full) }).plan;
        let plan = Plan::parse(&plan).unwrap();
        assert_eq!((plan.header.exe_fd, op_kinds(&plan)), (4, vec![OpKind::MmLayout]));
    }

    #[test]
    fn the_name_is_cut_to_fifteen_bytes() {
        let img = image(1, 0, Vec::new());
        let name = b"a-very-long-program-name";
        let layout = build(&img, &SpawnParts { name, ..parts(&[], Phase::Full) });
        let plan = Plan::parse(&layout.plan).unwrap();
        assert_eq!(plan.name(), &name[..15]);
    }
}
