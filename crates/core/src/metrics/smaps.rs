//! `/proc/PID/smaps` text: parsing, and the accounting of one process's
//! mappings of an image (the kernel backend reads the file).

use super::{KindUsage, MemoryUsage};
use crate::image::{Image, ImageRegion, RegionKind};

/// A smaps text that does not parse: the line (from 1) and why.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct SmapsError {
    pub line: usize,
    pub why: String,
}

/// One smaps entry (a VMA): its address range and its page counters in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub usage: MemoryUsage,
}

/// Parse the text of a smaps file. Lines other than entry headers and the
/// `kB` counters this module sums are ignored; a counter before any header,
/// or a header or counter that does not parse, is an error naming the line.
pub fn parse(text: &str) -> Result<Vec<Mapping>, SmapsError> {
    let err = |line: usize, why: String| SmapsError { line: line + 1, why };
    let mut out: Vec<Mapping> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let first = line.split_ascii_whitespace().next().unwrap_or("");
        // Headers start with `start-end`; counters with `Name:`.
        if let Some((a, b)) = first.split_once('-')
            && !first.ends_with(':')
        {
            let start = u64::from_str_radix(a, 16).map_err(|e| err(n, format!("bad start address {a:?}: {e}")))?;
            let end = u64::from_str_radix(b, 16).map_err(|e| err(n, format!("bad end address {b:?}: {e}")))?;
            if end < start {
                return Err(err(n, format!("range {start:#x}-{end:#x} ends before it starts")));
            }
            out.push(Mapping { start, end, usage: MemoryUsage::default() });
            continue;
        }
        let Some((key, value)) = line.split_once(':') else { continue };
        if !COUNTERS.contains(&key) {
            continue;
        }
        let Some(m) = out.last_mut() else {
            return Err(err(n, format!("counter {key} before any mapping header")));
        };
        let mut it = value.split_ascii_whitespace();
        let kb = match (it.next().map(str::parse::<u64>), it.next()) {
            (Some(Ok(v)), Some("kB")) => v,
            _ => return Err(err(n, format!("{key}: expected `N kB`, got {:?}", value.trim()))),
        };
        set(&mut m.usage, key, kb.saturating_mul(1024));
    }
    Ok(out)
}

/// The smaps counters summed, as named in the file.
const COUNTERS: [&str; 8] =
    ["Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Anonymous", "Swap"];

/// Store `bytes` in the counter named `key` (one of [`COUNTERS`]).
fn set(u: &mut MemoryUsage, key: &str, bytes: u64) {
    let field = match key {
        "Rss" => &mut u.rss,
        "Pss" => &mut u.pss,
        "Shared_Clean" => &mut u.shared_clean,
        "Shared_Dirty" => &mut u.shared_dirty,
        "Private_Clean" => &mut u.private_clean,
        "Private_Dirty" => &mut u.private_dirty,
        "Anonymous" => &mut u.anonymous,
        "Swap" => &mut u.swap,
        _ => return,
    };
    *field = bytes;
}

/// Where a region's pages come from, without the offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionClass {
    File,
    Sealed,
    Zero,
}

/// An image's regions as address ranges (load bias included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageLayout {
    ranges: Vec<(u64, u64, RegionClass)>,
}

/// One process's mappings of an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessUsage {
    pub total: MemoryUsage,
    pub by_kind: KindUsage,
    /// smaps entries that overlap the image.
    pub mappings: usize,
}

impl ImageLayout {
    pub fn of<K: crate::Kernel>(image: &Image<K>) -> Self {
        Self::from_regions(image.regions())
    }

    pub fn from_regions(regions: &[ImageRegion]) -> Self {
        let mut ranges: Vec<_> = regions
            .iter()
            .filter(|r| r.len > 0)
            .map(|r| {
                let class = match r.kind {
                    RegionKind::File { .. } => RegionClass::File,
                    RegionKind::Sealed { .. } => RegionClass::Sealed,
                    RegionKind::Zero => RegionClass::Zero,
                };
                (r.vaddr, r.vaddr.saturating_add(r.len), class)
            })
            .collect();
        ranges.sort_unstable_by_key(|r| r.0);
        ImageLayout { ranges }
    }

    /// The class of the region `start..end` overlaps most, if it overlaps one.
    pub fn classify(&self, start: u64, end: u64) -> Option<RegionClass> {
        self.ranges
            .iter()
            .filter(|&&(a, b, _)| start < b && a < end)
            .max_by_key(|&&(a, b, _)| end.min(b) - start.max(a))
            .map(|r| r.2)
    }

    /// Sum the entries of `maps` that overlap the image.
    pub fn account(&self, maps: &[Mapping]) -> ProcessUsage {
        let mut u = ProcessUsage::default();
        for m in maps {
            let Some(class) = self.classify(m.start, m.end) else { continue };
            u.mappings += 1;
            u.total.add(&m.usage);
            let k = &mut u.by_kind;
            match class {
                RegionClass::File => k.file.add(&m.usage),
                RegionClass::Sealed => k.sealed.add(&m.usage),
                RegionClass::Zero => k.zero.add(&m.usage),
            }
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
5a0000000000-5a0000002000 r--p 00000000 08:01 1234   /tmp/prog
Size:                  8 kB
KernelPageSize:        4 kB
Rss:                   8 kB
Pss:                   2 kB
Shared_Clean:          8 kB
Shared_Dirty:          0 kB
Private_Clean:         0 kB
Private_Dirty:         0 kB
Swap:                  0 kB
THPeligible:    0
VmFlags: rd mr mw me sd
5a0000002000-5a0000005000 rw-p 00000000 00:01 99     /memfd:zygote-seg (deleted)
Rss:                  12 kB
Pss:                   9 kB
Shared_Clean:          0 kB
Shared_Dirty:          4 kB
Private_Clean:         0 kB
Private_Dirty:         8 kB
Anonymous:             8 kB
ProtectionKey:         0
5a0000005000-5a0000006000 rw-p 00000000 00:00 0
Rss:                   4 kB
Pss:                   4 kB
Private_Dirty:         4 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]
Rss:                  16 kB
Pss:                  16 kB
Private_Dirty:        16 kB
";

    fn layout() -> ImageLayout {
        let r = |vaddr, len, kind| ImageRegion { vaddr, len, prot: 1, kind, segment: 0, relro: false };
        ImageLayout::from_regions(&[
            r(0x5a00_0000_0000, 0x2000, RegionKind::File { file: 0, offset: 0 }),
            r(0x5a00_0000_2000, 0x3000, RegionKind::Sealed { object: 0, offset: 0 }),
            r(0x5a00_0000_5000, 0x800, RegionKind::Zero),
        ])
    }

    #[test]
    fn parses_and_accounts() {
        let maps = parse(SAMPLE).expect("parse");
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[1].start, 0x5a00_0000_2000);
        assert_eq!(maps[1].usage.private_dirty, 8 * 1024);
        let u = layout().account(&maps);
        assert_eq!(u.mappings, 3, "the stack is not the image's");
        assert_eq!(u.total.rss, 24 * 1024);
        assert_eq!(u.total.pss, 15 * 1024);
        assert_eq!(u.total.private_dirty, 12 * 1024);
        assert_eq!(u.total.saved(), 9 * 1024);
        assert_eq!(u.by_kind.file.shared_clean, 8 * 1024);
        assert_eq!(u.by_kind.sealed.private_dirty, 8 * 1024);
        assert_eq!(u.by_kind.sealed.anonymous, 8 * 1024);
        assert_eq!(u.by_kind.zero.private_dirty, 4 * 1024);
    }

    #[test]
    fn bad_lines_are_named() {
        let e = parse("Rss: 4 kB\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("before any mapping"), "{e}");
        let e = parse("1000-2000 r--p 0 0:0 0\nPss: lots kB\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("Pss"), "{e}");
        let e = parse("zz00-2000 r--p 0 0:0 0\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("start address"), "{e}");
    }
}
