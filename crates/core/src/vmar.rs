//! The region-to-mapping policy for a kernel that maps memory objects into
//! address-space regions (Zircon: VMOs into a VMAR): for each region of an
//! image, which object (the file's, the sealed one, a copy-on-write child, a
//! fresh one), which handle rights, which mapping permissions, in what order.
//!
//! Pure, so it is tested here; the Zircon backend (`zygote-zircon`) executes
//! the steps with system calls. It follows elfldltl's `SegmentWithVmo::Copy`:
//! constant segments map the file's VMO, relocated constant data (RELRO) maps
//! the sealed VMO read-only and shared, writable data maps a per-process
//! `SNAPSHOT_AT_LEAST_ON_WRITE` child of the sealed VMO, bss a fresh VMO. The
//! partial page before bss was zeroed in the sealed copy when the image was
//! built (AlignSegments), so no process writes to zero it.

use crate::elf::{PAGE_SIZE, ProgramKind, page_down, page_up};
use crate::image::{ImageRegion, RegionKind};

/// Mapping permissions (the VMAR `PERM_*` flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl Perms {
    pub const R: Perms = Perms { read: true, write: false, execute: false };
    pub const RW: Perms = Perms { read: true, write: true, execute: false };
    pub const RX: Perms = Perms { read: true, write: false, execute: true };

    /// From `PROT_*` bits.
    pub fn from_prot(prot: u32) -> Self {
        Perms {
            read: prot & zygote_plan::PROT_READ != 0,
            write: prot & zygote_plan::PROT_WRITE != 0,
            execute: prot & zygote_plan::PROT_EXEC != 0,
        }
    }
    pub fn is_none(self) -> bool {
        !(self.read || self.write || self.execute)
    }
}

/// The handle rights a step needs on the object it maps (besides the basic
/// ones), which the backend asks the kernel for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
    pub map: bool,
}

impl Rights {
    /// What mapping with `perms` needs.
    pub fn for_perms(perms: Perms) -> Self {
        Rights { read: perms.read, write: perms.write, execute: perms.execute, map: true }
    }
}

/// Where the pages of one mapping come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The file's own VMO (`Image::files()[file]`), mapped directly: pages
    /// shared with every process and the page cache.
    File { file: usize, offset: u64 },
    /// A per-process `SNAPSHOT_AT_LEAST_ON_WRITE` child of the file's VMO
    /// (`offset..offset + len`): writable file-backed pages no preparer
    /// copied (only prototype images have them).
    FileChild { file: usize, offset: u64, len: u64 },
    /// The sealed VMO (`Image::objects()[object]`), mapped directly and
    /// read-only: relocated constant data shared by every process.
    Sealed { object: usize, offset: u64 },
    /// The sealed VMO made executable (`replace_as_executable` with the VMEX
    /// resource, on a duplicate handle): relocated text (DT_TEXTREL).
    SealedExecutable { object: usize, offset: u64 },
    /// A per-process `SNAPSHOT_AT_LEAST_ON_WRITE` child of the sealed VMO
    /// (`offset..offset + len`), mapped read-write: the Copy-mode child.
    SealedChild { object: usize, offset: u64, len: u64 },
    /// A fresh VMO of `len` bytes: bss.
    Fresh { len: u64 },
}

/// One mapping, in the order the backend makes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapStep {
    /// Offset from the start of the image's VMAR.
    pub vmar_offset: u64,
    pub len: u64,
    pub source: Source,
    /// Rights the mapped handle must carry.
    pub rights: Rights,
    /// Mapping permissions; every mapping is also `SPECIFIC` (at
    /// `vmar_offset`, never where the kernel chooses).
    pub perms: Perms,
    /// The program header the region comes from (names the child VMO).
    pub segment: usize,
}

/// How the image's VMAR is allocated, and what is mapped into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmarPlan {
    /// Absolute address of the image's VMAR (load bias included), page-aligned.
    pub base: u64,
    /// Its size in bytes, page-aligned.
    pub size: u64,
    /// The permissions the VMAR must allow (`CAN_MAP_*`), the union of the
    /// steps'; it is always `CAN_MAP_SPECIFIC` and allocated `SPECIFIC`.
    pub can_map: Perms,
    pub steps: Vec<MapStep>,
}

/// What the image's start-up code still does to RELRO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relro {
    /// Nothing: every relocation was applied ahead of time, so RELRO is
    /// mapped read-only from the sealed VMO and shared (elfldltl's
    /// `ConstantSegment` for RELRO).
    Sealed,
    /// The program's start-up writes there before protecting it (a static
    /// PIE that relocates what the preparer left): RELRO is mapped like the
    /// rest of its segment, as a copy-on-write child.
    AsSegment,
}

impl Relro {
    /// The policy for an image: `Sealed` for a static PIE whose relocations
    /// were all applied ahead of time (its start-up finds nothing to write
    /// in RELRO); `AsSegment` for the rest: a fixed-address program's
    /// start-up applies IRELATIVE entries to its GOT, a program with
    /// entries left relocates them, and an interpreter relocates itself.
    pub fn for_image(kind: ProgramKind, left_to_program: usize) -> Self {
        if kind == ProgramKind::StaticPie && left_to_program == 0 { Relro::Sealed } else { Relro::AsSegment }
    }
}

/// A region the policy cannot map.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the image has no regions to map")]
    Empty,
    #[error("region {index} at {vaddr:#x} (+{len:#x}) is not page-aligned")]
    Unaligned { index: usize, vaddr: u64, len: u64 },
    #[error("region {index} at {vaddr:#x} overlaps or precedes region {prev}")]
    Unsorted { index: usize, vaddr: u64, prev: usize },
    #[error("region {index} at {vaddr:#x} is both writable and executable (Zircon's W^X policy refuses it)")]
    WriteExecute { index: usize, vaddr: u64 },
}

/// The mapping plan of `regions` (an image's, in address order).
pub fn plan(regions: &[ImageRegion], relro: Relro) -> Result<VmarPlan, PlanError> {
    let (first, last) = match (regions.first(), regions.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err(PlanError::Empty),
    };
    let base = page_down(first.vaddr);
    let size = page_up(last.vaddr.saturating_add(last.len)) - base;
    let mut steps = Vec::with_capacity(regions.len());
    let mut can_map = Perms::default();
    let mut end = base;
    for (index, r) in regions.iter().enumerate() {
        if r.vaddr % PAGE_SIZE != 0 || r.len % PAGE_SIZE != 0 {
            return Err(PlanError::Unaligned { index, vaddr: r.vaddr, len: r.len });
        }
        if r.vaddr < end {
            return Err(PlanError::Unsorted { index, vaddr: r.vaddr, prev: index.saturating_sub(1) });
        }
        end = r.vaddr + r.len;
        let Some(step) = step(r, base, relro).map_err(|()| PlanError::WriteExecute { index, vaddr: r.vaddr })? else {
            continue;
        };
        can_map.read |= step.perms.read;
        can_map.write |= step.perms.write;
        can_map.execute |= step.perms.execute;
        steps.push(step);
    }
    Ok(VmarPlan { base, size, can_map, steps })
}

/// The step for one region: `None` for an inaccessible gap (reserved in the
/// VMAR, nothing mapped), `Err` for a writable and executable region.
fn step(r: &ImageRegion, base: u64, relro: Relro) -> Result<Option<MapStep>, ()> {
    let mut perms = Perms::from_prot(r.prot);
    if perms.write && perms.execute {
        return Err(());
    }
    if perms.is_none() {
        return Ok(None);
    }
    let source = match r.kind {
        RegionKind::File { file, offset } if perms.write => Source::FileChild { file, offset, len: r.len },
        RegionKind::File { file, offset } => Source::File { file, offset },
        RegionKind::Sealed { object, offset } if r.relro && relro == Relro::Sealed => {
            perms.write = false;
            Source::Sealed { object, offset }
        }
        RegionKind::Sealed { object, offset } if perms.write => Source::SealedChild { object, offset, len: r.len },
        RegionKind::Sealed { object, offset } if perms.execute => Source::SealedExecutable { object, offset },
        RegionKind::Sealed { object, offset } => Source::Sealed { object, offset },
        RegionKind::Zero => Source::Fresh { len: r.len },
    };
    let rights = Rights::for_perms(perms);
    Ok(Some(MapStep { vmar_offset: r.vaddr - base, len: r.len, source, rights, perms, segment: r.segment }))
}

/// The name of a sealed segment VMO, `zyg:<key8>:<segment>` (memory tools
/// attribute VMOs by name), cut to fit Zircon's `ZX_MAX_NAME_LEN` (32 bytes
/// with the terminating NUL).
pub fn vmo_name(key_hex: &str, segment: &str) -> String {
    const MAX: usize = 31;
    let key8: String = key_hex.chars().take(8).collect();
    let mut name = format!("zyg:{key8}:{segment}");
    if name.len() > MAX {
        let mut cut = MAX;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: u32 = zygote_plan::PROT_READ;
    const W: u32 = zygote_plan::PROT_WRITE;
    const X: u32 = zygote_plan::PROT_EXEC;
    const BASE: u64 = 0x5a00_0000_0000;

    fn region(page: u64, pages: u64, prot: u32, kind: RegionKind, relro: bool) -> ImageRegion {
        ImageRegion { vaddr: BASE + page * PAGE_SIZE, len: pages * PAGE_SIZE, prot, kind, segment: 1, relro }
    }

    fn one(r: ImageRegion, relro: Relro) -> Vec<MapStep> {
        plan(&[r], relro).expect("plan").steps
    }

    #[test]
    fn constant_segment_maps_the_file_vmo() {
        let steps = one(region(0, 2, R | X, RegionKind::File { file: 0, offset: 0x1000 }, false), Relro::Sealed);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].source, Source::File { file: 0, offset: 0x1000 });
        assert_eq!(steps[0].perms, Perms::RX);
        assert_eq!(steps[0].rights, Rights { read: true, write: false, execute: true, map: true });
        assert_eq!((steps[0].vmar_offset, steps[0].len), (0, 2 * PAGE_SIZE));
    }

    #[test]
    fn relocated_constant_maps_the_sealed_vmo_read_only_or_executable() {
        let ro = one(region(0, 1, R, RegionKind::Sealed { object: 2, offset: 0 }, false), Relro::Sealed);
        assert_eq!(ro[0].source, Source::Sealed { object: 2, offset: 0 });
        assert_eq!(ro[0].rights, Rights { read: true, write: false, execute: false, map: true });
        // Relocated text needs an executable handle (the VMEX resource).
        let rx = one(region(0, 1, R | X, RegionKind::Sealed { object: 2, offset: 0 }, false), Relro::Sealed);
        assert_eq!(rx[0].source, Source::SealedExecutable { object: 2, offset: 0 });
        assert!(rx[0].rights.execute && !rx[0].rights.write);
    }

    #[test]
    fn relro_is_shared_read_only_when_nothing_relocates_it_later() {
        let r = region(3, 2, R | W, RegionKind::Sealed { object: 0, offset: 0 }, true);
        let sealed = one(r, Relro::Sealed);
        assert_eq!(sealed[0].source, Source::Sealed { object: 0, offset: 0 });
        assert_eq!(sealed[0].perms, Perms::R, "RELRO is never writable in the process");
        assert!(!sealed[0].rights.write);
        // A program that still writes RELRO at start-up gets its own copy.
        let own = one(r, Relro::AsSegment);
        assert_eq!(own[0].source, Source::SealedChild { object: 0, offset: 0, len: 2 * PAGE_SIZE });
        assert_eq!(own[0].perms, Perms::RW);
    }

    #[test]
    fn relro_is_shared_only_when_start_up_has_nothing_to_write() {
        assert_eq!(Relro::for_image(ProgramKind::StaticPie, 0), Relro::Sealed);
        assert_eq!(Relro::for_image(ProgramKind::StaticPie, 3), Relro::AsSegment);
        assert_eq!(Relro::for_image(ProgramKind::Static, 0), Relro::AsSegment);
        assert_eq!(Relro::for_image(ProgramKind::Dynamic, 0), Relro::AsSegment);
    }

    #[test]
    fn data_is_a_copy_on_write_child_mapped_read_write() {
        let steps = one(region(4, 3, R | W, RegionKind::Sealed { object: 1, offset: 0x2000 }, false), Relro::Sealed);
        assert_eq!(steps[0].source, Source::SealedChild { object: 1, offset: 0x2000, len: 3 * PAGE_SIZE });
        assert_eq!(steps[0].perms, Perms::RW);
        assert_eq!(steps[0].rights, Rights { read: true, write: true, execute: false, map: true });
        assert_eq!(steps[0].vmar_offset, 0);
    }

    #[test]
    fn data_with_zero_fill_is_a_child_then_a_fresh_vmo() {
        // The preparer zeroed the tail of the last file page in the sealed
        // copy: the child covers it, and bss starts on the next page.
        let rs = [
            region(0, 1, R | X, RegionKind::File { file: 0, offset: 0 }, false),
            region(2, 1, R | W, RegionKind::Sealed { object: 0, offset: 0 }, false),
            region(3, 4, R | W, RegionKind::Zero, false),
        ];
        let p = plan(&rs, Relro::Sealed).expect("plan");
        assert_eq!((p.base, p.size), (BASE, 7 * PAGE_SIZE));
        assert_eq!(p.can_map, Perms { read: true, write: true, execute: true });
        let sources: Vec<_> = p.steps.iter().map(|s| (s.vmar_offset / PAGE_SIZE, s.source)).collect();
        assert_eq!(
            sources,
            [
                (0, Source::File { file: 0, offset: 0 }),
                (2, Source::SealedChild { object: 0, offset: 0, len: PAGE_SIZE }),
                (3, Source::Fresh { len: 4 * PAGE_SIZE }),
            ],
            "address order, one step per region"
        );
    }

    #[test]
    fn zero_fill_only_is_a_fresh_vmo_and_gaps_are_left_unmapped() {
        let rs = [region(0, 2, R | W, RegionKind::Zero, false), region(2, 1, 0, RegionKind::Zero, false)];
        let p = plan(&rs, Relro::Sealed).expect("plan");
        assert_eq!(p.steps.len(), 1, "the PROT_NONE gap is reserved, not mapped");
        assert_eq!(p.steps[0].source, Source::Fresh { len: 2 * PAGE_SIZE });
        assert_eq!(p.steps[0].perms, Perms::RW);
        assert_eq!(p.size, 3 * PAGE_SIZE);
        assert_eq!(p.can_map, Perms::RW);
    }

    #[test]
    fn writable_file_pages_are_a_child_of_the_file_vmo() {
        let steps = one(region(0, 1, R | W, RegionKind::File { file: 1, offset: 0x3000 }, false), Relro::Sealed);
        assert_eq!(steps[0].source, Source::FileChild { file: 1, offset: 0x3000, len: PAGE_SIZE });
    }

    #[test]
    fn refuses_what_cannot_be_mapped() {
        assert_eq!(plan(&[], Relro::Sealed), Err(PlanError::Empty));
        let mut r = region(0, 1, R, RegionKind::Zero, false);
        r.len = 100;
        assert!(matches!(plan(&[r], Relro::Sealed), Err(PlanError::Unaligned { index: 0, .. })));
        let wx = region(0, 1, R | W | X, RegionKind::Zero, false);
        assert!(matches!(plan(&[wx], Relro::Sealed), Err(PlanError::WriteExecute { index: 0, .. })));
        let rs = [region(2, 2, R, RegionKind::Zero, false), region(3, 1, R, RegionKind::Zero, false)];
        assert!(matches!(plan(&rs, Relro::Sealed), Err(PlanError::Unsorted { index: 1, prev: 0, .. })));
    }

    #[test]
    fn vmo_names_fit_zircon() {
        assert_eq!(vmo_name("0123456789abcdef", "phdr3"), "zyg:01234567:phdr3");
        let long = vmo_name("0123456789abcdef", "a-very-long-segment-name-é-é-é");
        assert!(long.len() <= 31 && long.starts_with("zyg:01234567:a-very"), "{long}");
    }
}
