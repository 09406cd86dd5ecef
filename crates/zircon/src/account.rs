//! Memory accounting on Zircon, the counterpart of the smaps accounting:
//! a process's mappings (`ZX_INFO_PROCESS_MAPS`) joined with its VMOs
//! (`ZX_INFO_PROCESS_VMOS`) and with the image's sealed VMOs (`ZX_INFO_VMO`
//! on the zygote's handles), turned into the core's [`Mapping`] records, so
//! `ImageLayout::account` sums them exactly as it sums smaps entries.
//!
//! Per mapping, `rss` is the bytes committed in what it maps, `pss` those
//! bytes divided among their sharers; `saved = Σ(rss − pss)`:
//!
//! - pages committed in the mapped VMO itself: shared by the processes
//!   that map it (`share_count`): the file's VMO, a sealed VMO mapped
//!   read-only (RELRO), a child's own written pages (one sharer), bss;
//! - a copy-on-write child of a sealed VMO also reads its parent's pages it
//!   has not written: the kernel (before RFC-0254's scaled fields) counts
//!   them in the parent only, so the parent's committed bytes, in the share
//!   the mapping covers, are added, divided among every user of the parent
//!   (its children and mappings). A kernel with `committed_scaled_bytes`
//!   gives the same split directly.
//!
//! Pure, so it is tested on every host; the backend reads the records.

use std::collections::HashMap;

use zygote_core::metrics::{Mapping, MemoryUsage};

/// A VMO of the process (`ZX_INFO_PROCESS_VMOS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmoRecord {
    pub koid: u64,
    pub parent_koid: u64,
    pub committed: u64,
    /// Processes that map it or hold a handle to it.
    pub share_count: u64,
}

/// A mapping of the process (`ZX_INFO_PROCESS_MAPS`, mapping entries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapRecord {
    pub base: u64,
    pub size: u64,
    pub vmo_koid: u64,
    /// Bytes committed in the mapped range of the VMO.
    pub committed: u64,
}

/// One of the image's sealed VMOs, as the zygote's handle sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SealedRecord {
    pub koid: u64,
    pub size: u64,
    pub committed: u64,
    /// Its users: children plus mappings (`num_children + num_mappings`).
    pub users: u64,
}

/// `bytes * num / den`, without overflow, 0 when `den` is 0.
fn scale(bytes: u64, num: u64, den: u64) -> u64 {
    if den == 0 { 0 } else { (u128::from(bytes) * u128::from(num) / u128::from(den)) as u64 }
}

/// Add `bytes` shared by `sharers` to `u`.
fn charge(u: &mut MemoryUsage, bytes: u64, sharers: u64, anonymous: bool) {
    let sharers = sharers.max(1);
    u.rss += bytes;
    u.pss += bytes / sharers;
    if sharers == 1 {
        u.private_dirty += bytes;
        if anonymous {
            u.anonymous += bytes;
        }
    } else {
        u.shared_dirty += bytes;
    }
}

/// The process's mappings with their usage, ready for `ImageLayout::account`.
pub fn mappings(maps: &[MapRecord], vmos: &[VmoRecord], sealed: &[SealedRecord]) -> Vec<Mapping> {
    let vmos: HashMap<u64, &VmoRecord> = vmos.iter().map(|v| (v.koid, v)).collect();
    let sealed: HashMap<u64, &SealedRecord> = sealed.iter().map(|s| (s.koid, s)).collect();
    maps.iter()
        .map(|m| {
            let mut usage = MemoryUsage::default();
            let vmo = vmos.get(&m.vmo_koid);
            let parent = vmo.and_then(|v| sealed.get(&v.parent_koid));
            match (sealed.get(&m.vmo_koid), vmo) {
                // The sealed VMO itself, mapped read-only: shared by its users.
                (Some(s), _) => charge(&mut usage, m.committed, s.users, false),
                (None, Some(v)) => charge(&mut usage, m.committed, v.share_count, parent.is_some()),
                (None, None) => charge(&mut usage, m.committed, 1, false),
            }
            if let Some(p) = parent {
                let through = scale(p.committed, m.size.min(p.size), p.size);
                charge(&mut usage, through, p.users, false);
            }
            Mapping { start: m.base, end: m.base.saturating_add(m.size), usage }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use zygote_core::image::{ImageRegion, RegionKind};
    use zygote_core::metrics::ImageLayout;

    const PAGE: u64 = 4096;
    const BASE: u64 = 0x1000_0000;

    fn layout() -> ImageLayout {
        let r = |page: u64, pages: u64, kind| ImageRegion {
            vaddr: BASE + page * PAGE,
            len: pages * PAGE,
            prot: 1,
            kind,
            segment: 0,
            relro: false,
        };
        ImageLayout::from_regions(&[
            r(0, 4, RegionKind::File { file: 0, offset: 0 }),
            r(4, 2, RegionKind::Sealed { object: 0, offset: 0 }),
            r(6, 4, RegionKind::Sealed { object: 1, offset: 0 }),
            r(10, 2, RegionKind::Zero),
        ])
    }

    /// One process of four started from the image: text from the file VMO
    /// (koid 10), RELRO from sealed VMO 20, data from its child 31 of sealed
    /// VMO 21 with one page written, bss in VMO 40 with one page touched.
    #[test]
    fn one_of_four_processes() {
        let maps = [
            MapRecord { base: BASE, size: 4 * PAGE, vmo_koid: 10, committed: 4 * PAGE },
            MapRecord { base: BASE + 4 * PAGE, size: 2 * PAGE, vmo_koid: 20, committed: 2 * PAGE },
            MapRecord { base: BASE + 6 * PAGE, size: 4 * PAGE, vmo_koid: 31, committed: PAGE },
            MapRecord { base: BASE + 10 * PAGE, size: 2 * PAGE, vmo_koid: 40, committed: PAGE },
            // The stack: not the image's.
            MapRecord { base: 0x7000_0000, size: 8 * PAGE, vmo_koid: 50, committed: 2 * PAGE },
        ];
        let vmos = [
            VmoRecord { koid: 10, parent_koid: 0, committed: 4 * PAGE, share_count: 4 },
            VmoRecord { koid: 20, parent_koid: 0, committed: 2 * PAGE, share_count: 4 },
            VmoRecord { koid: 31, parent_koid: 21, committed: PAGE, share_count: 1 },
            VmoRecord { koid: 40, parent_koid: 0, committed: PAGE, share_count: 1 },
            VmoRecord { koid: 50, parent_koid: 0, committed: 2 * PAGE, share_count: 1 },
        ];
        let sealed = [
            SealedRecord { koid: 20, size: 2 * PAGE, committed: 2 * PAGE, users: 4 },
            SealedRecord { koid: 21, size: 4 * PAGE, committed: 4 * PAGE, users: 4 },
        ];
        let u = layout().account(&mappings(&maps, &vmos, &sealed));
        assert_eq!(u.mappings, 4, "the stack is left out");
        // File: 4 pages shared by 4.
        assert_eq!((u.by_kind.file.rss, u.by_kind.file.pss), (4 * PAGE, PAGE));
        // Sealed: RELRO 2 pages / 4; the child's own page; the parent's 4
        // pages read through the child, / 4.
        assert_eq!(u.by_kind.sealed.rss, 2 * PAGE + PAGE + 4 * PAGE);
        assert_eq!(u.by_kind.sealed.pss, 2 * PAGE / 4 + PAGE + PAGE);
        assert_eq!(u.by_kind.sealed.anonymous, PAGE, "the written page is the process's own");
        assert_eq!(u.by_kind.zero.private_dirty, PAGE);
        assert_eq!(u.total.saved(), 3 * PAGE + (3 * PAGE + 3 * PAGE / 2));
    }

    #[test]
    fn a_single_user_saves_nothing() {
        let maps = [MapRecord { base: BASE + 6 * PAGE, size: 4 * PAGE, vmo_koid: 31, committed: 0 }];
        let vmos = [VmoRecord { koid: 31, parent_koid: 21, committed: 0, share_count: 1 }];
        let sealed = [SealedRecord { koid: 21, size: 4 * PAGE, committed: 2 * PAGE, users: 1 }];
        let u = layout().account(&mappings(&maps, &vmos, &sealed));
        assert_eq!((u.total.rss, u.total.pss, u.total.saved()), (2 * PAGE, 2 * PAGE, 0));
    }

    #[test]
    fn a_partial_child_gets_its_share_of_the_parent() {
        let maps = [MapRecord { base: BASE + 6 * PAGE, size: PAGE, vmo_koid: 31, committed: 0 }];
        let vmos = [VmoRecord { koid: 31, parent_koid: 21, committed: 0, share_count: 1 }];
        let sealed = [SealedRecord { koid: 21, size: 4 * PAGE, committed: 4 * PAGE, users: 2 }];
        let m = mappings(&maps, &vmos, &sealed);
        assert_eq!((m[0].usage.rss, m[0].usage.pss), (PAGE, PAGE / 2));
    }
}
