//! Spawn planning, kernel-neutral: what each phase of a launch maps and
//! restores from an image. A backend adds where the pages come from (Linux:
//! fd numbers in the stub's plan; Zircon: VMOs mapped into the child's VMAR)
//! and encodes it.

use zygote_plan::RestoreOp;

use crate::image::{EntryState, Image, ImageRegion};
use crate::kernel::Kernel;

/// Which part of a launch a plan is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Everything: a fresh process, or a launcher not warmed up.
    Full,
    /// A pre-started launcher's warm-up: the regions and the ops that do not
    /// depend on the spawn; nothing of the requester's.
    WarmUp,
    /// The spawn for a warmed-up launcher: no regions (they are mapped), only
    /// the ops that need the new stack.
    Finish,
}

impl Phase {
    /// Does this phase map the image (its files and objects)?
    pub fn maps_image(self) -> bool {
        self != Phase::Finish
    }
    /// Does it take the requester's parts (fds, status channel, argv)?
    pub fn takes_request(self) -> bool {
        self != Phase::WarmUp
    }
}

/// What one phase of a launch of an image does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnPlan<'a> {
    pub phase: Phase,
    /// Regions to map, in the image's order (empty when finishing).
    pub regions: &'a [ImageRegion],
    /// Restore ops, in the order the launcher applies them.
    pub ops: Vec<RestoreOp>,
    pub entry: EntryState,
    /// A prototype image (it has restore ops): its process's executable
    /// should be the program, where the kernel lets the launcher say so.
    pub prototype: bool,
}

/// Plan `phase` of a launch of `image`.
pub fn plan<K: Kernel>(image: &Image<K>, phase: Phase) -> SpawnPlan<'_> {
    let ops = image.ops();
    let regions = if phase.maps_image() { image.regions() } else { &[] };
    let ops = match phase {
        Phase::Full => ops.to_vec(),
        Phase::WarmUp => ops.iter().filter(|o| o.kind().at_warm_up()).copied().collect(),
        Phase::Finish => {
            let mut late: Vec<RestoreOp> = ops.iter().filter(|o| !o.kind().at_warm_up()).copied().collect();
            if !late.iter().any(|o| matches!(o, RestoreOp::MmLayout { .. })) {
                // A static image: the launcher sets the mm bounds (its own
                // describe its exec), so give it the code and data bounds.
                late.push(static_layout(image.regions()));
            }
            late
        }
    };
    SpawnPlan { phase, regions, ops, entry: *image.entry(), prototype: !image.ops().is_empty() }
}

/// `MmLayout` for an image without one: its first executable region as code,
/// its first writable one as data. The launcher keeps the brk it has.
pub fn static_layout(regions: &[ImageRegion]) -> RestoreOp {
    const PROT_WRITE: u32 = 2;
    const PROT_EXEC: u32 = 4;
    let span = |want: u32| regions.iter().find(|r| r.prot & want != 0).map(|r| (r.vaddr, r.vaddr + r.len));
    let first = regions.first().map_or((0, 0), |r| (r.vaddr, r.vaddr + r.len));
    let code = span(PROT_EXEC).unwrap_or(first);
    let data = span(PROT_WRITE).unwrap_or((code.1, code.1));
    RestoreOp::MmLayout { start_code: code.0, end_code: code.1, start_data: data.0, end_data: data.1 }
}

/// A process name as the kernel keeps it (comm): at most 15 bytes, NUL-padded.
pub fn comm(name: &[u8]) -> ([u8; 16], usize) {
    let mut out = [0u8; 16];
    let len = name.len().min(15);
    out[..len].copy_from_slice(&name[..len]);
    (out, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::RegionKind;

    fn region(vaddr: u64, len: u64, prot: u32) -> ImageRegion {
        ImageRegion { vaddr, len, prot, kind: RegionKind::Zero, segment: 0, relro: false }
    }

    #[test]
    fn static_layout_takes_the_first_code_and_data_regions() {
        let rs = [region(0x1000, 0x1000, 1), region(0x2000, 0x3000, 5), region(0x5000, 0x1000, 3)];
        assert_eq!(
            static_layout(&rs),
            RestoreOp::MmLayout { start_code: 0x2000, end_code: 0x5000, start_data: 0x5000, end_data: 0x6000 }
        );
        // No executable region: the first one is the code; no writable one:
        // the data is empty, right after the code.
        let ro = [region(0x1000, 0x1000, 1)];
        assert_eq!(
            static_layout(&ro),
            RestoreOp::MmLayout { start_code: 0x1000, end_code: 0x2000, start_data: 0x2000, end_data: 0x2000 }
        );
    }

    #[test]
    fn comm_is_cut_to_fifteen_bytes() {
        assert_eq!(comm(b"abc"), (*b"abc\0\0\0\0\0\0\0\0\0\0\0\0\0", 3));
        let (n, len) = comm(b"0123456789abcdefgh");
        assert_eq!((&n[..], len), (&b"0123456789abcde\0"[..], 15));
    }

    #[test]
    fn phases() {
        assert!(Phase::Full.maps_image() && Phase::Full.takes_request());
        assert!(Phase::WarmUp.maps_image() && !Phase::WarmUp.takes_request());
        assert!(!Phase::Finish.maps_image() && Phase::Finish.takes_request());
    }
}
