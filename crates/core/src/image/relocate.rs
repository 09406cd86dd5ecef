//! The load-and-relocate preparer (elfldltl's Copy mode with AlignSegments and
//! MakeMutable): lay out the PT_LOADs at a chosen load bias, copy every segment
//! that is writable or touched by relocation, apply the relative relocations
//! there, neutralise the program's own start-up self-relocation in the copy,
//! zero partial last pages, and seal each copy in its own object.
//!
//! Policy by segment kind:
//!
//! | segment                    | region(s)                                   |
//! |----------------------------|---------------------------------------------|
//! | constant, untouched        | File: mapped from the program file          |
//! | constant, relocated        | Sealed (read-only)                          |
//! | data                       | Sealed                                      |
//! | data-with-zero-fill        | Sealed (tail of last page zeroed) + Zero    |
//! | zero-fill                  | Zero                                        |

use std::path::Path;
use std::time::Instant;

use object::elf;

use super::{
    EntryState, FileIdentity, Image, ImageError, ImageKey, ImageParts, ImageRegion, MappedFile, RegionKind,
    RelocSummary,
};
use crate::elf::reloc::{self, Target};
use crate::elf::{self as elfmod, ElfInfo, PAGE_SIZE, ProgramKind, Segment, page_down, page_up};
use crate::kernel::Kernel;

/// Where static-PIE images are placed: a window clear of the stub
/// (0x6f00_0000_0000), the mmap area and the stack near the top of the
/// address space, and of low fixed-address programs.
pub const BIAS_WINDOW: (u64, u64) = (0x5a00_0000_0000, 0x5c00_0000_0000);

/// Segment copies, materialised on first write (or up front for writable segments).
struct Copies<'a> {
    info: &'a ElfInfo,
    data: &'a [u8],
    copies: Vec<Option<Vec<u8>>>,
}

impl<'a> Copies<'a> {
    fn new(info: &'a ElfInfo, data: &'a [u8]) -> Self {
        let mut c = Copies { info, data, copies: vec![None; info.segments.len()] };
        for i in 0..info.segments.len() {
            if info.segments[i].writable() && info.segments[i].filesz > 0 {
                c.materialise(i);
            }
        }
        c
    }

    /// The file-backed pages of segment `i`, with everything past p_filesz
    /// zeroed (AlignSegments: the bss start in the last page is zero already).
    fn materialise(&mut self, i: usize) -> &mut Vec<u8> {
        let s = self.info.segments[i];
        let data = self.data;
        self.copies[i].get_or_insert_with(|| {
            let start = page_down(s.vaddr);
            let len = (page_up(s.vaddr + s.filesz) - start) as usize;
            let mut buf = vec![0u8; len];
            let head = (s.vaddr - start) as usize;
            let src = &data[s.offset as usize..(s.offset + s.filesz) as usize];
            buf[head..head + src.len()].copy_from_slice(src);
            buf
        })
    }

    fn locate(&self, vaddr: u64) -> Option<(usize, usize)> {
        let i = self.info.segments.iter().position(|s| s.file_contains(vaddr, 8))?;
        let s = &self.info.segments[i];
        Some((i, (vaddr - page_down(s.vaddr)) as usize))
    }
}

impl Target for Copies<'_> {
    fn read_u64(&self, vaddr: u64) -> Option<u64> {
        let (i, at) = self.locate(vaddr)?;
        let bytes: &[u8] = match &self.copies[i] {
            Some(c) => &c[at..at + 8],
            None => {
                let s = &self.info.segments[i];
                let off = (s.offset + (vaddr - s.vaddr)) as usize;
                &self.data[off..off + 8]
            }
        };
        let mut w = [0u8; 8];
        w.copy_from_slice(bytes);
        Some(u64::from_le_bytes(w))
    }

    fn write_u64(&mut self, vaddr: u64, value: u64) -> Option<()> {
        let (i, at) = self.locate(vaddr)?;
        self.materialise(i)[at..at + 8].copy_from_slice(&value.to_le_bytes());
        Some(())
    }
}

/// Choose the load bias: 0 for fixed-address programs; for a static PIE a
/// random address in [`BIAS_WINDOW`], aligned to the largest p_align. The
/// bias is modular, like glibc's `l_addr`: a PIE linked above the window gets
/// a "negative" one, so it is only ever added with wrapping arithmetic.
fn choose_bias<K: Kernel>(path: &Path, info: &ElfInfo) -> Result<u64, ImageError> {
    if info.kind == ProgramKind::Static {
        return Ok(0);
    }
    let span = info.end() - info.start();
    let align = info.max_align.max(PAGE_SIZE);
    let slots = (BIAS_WINDOW.1 - BIAS_WINDOW.0 - span) / align;
    let r = K::random_u64().map_err(|source| ImageError::Random { path: path.to_path_buf(), source })?;
    let base = BIAS_WINDOW.0 + (r % slots.max(1)) * align;
    Ok(base.wrapping_sub(info.start()))
}

/// A table named by a (pointer tag, size tag) pair, as file bytes.
fn table<'d>(
    path: &Path,
    info: &ElfInfo,
    data: &'d [u8],
    ptr: u32,
    size: u32,
    name: &'static str,
) -> Result<Option<(u64, &'d [u8])>, ImageError> {
    let Some(dynamic) = &info.dynamic else { return Ok(None) };
    let (Some(vaddr), Some(len)) = (dynamic.get(ptr), dynamic.get(size)) else {
        return Ok(None);
    };
    if len == 0 {
        return Ok(None);
    }
    let off = info.file_offset(vaddr, len).ok_or(ImageError::DynamicPointer {
        path: path.to_path_buf(),
        tag: name,
        vaddr,
    })?;
    Ok(Some((vaddr, &data[off as usize..(off + len) as usize])))
}

/// Set a DT_* value in the relocated copy of `.dynamic`, if the tag is present.
fn patch_dyn(
    path: &Path,
    info: &ElfInfo,
    mem: &mut Copies<'_>,
    tag: u32,
    value: u64,
    name: &'static str,
) -> Result<(), ImageError> {
    let Some(entry) = info.dynamic.as_ref().and_then(|d| d.entry(tag)) else {
        return Ok(());
    };
    mem.write_u64(entry.vaddr + 8, value).ok_or(ImageError::DynamicPointer {
        path: path.to_path_buf(),
        tag: name,
        vaddr: entry.vaddr,
    })
}

/// DT_RELA or DT_REL: the (pointer, size, count) tags, their names, the entry
/// size and the function that applies the table.
struct ExplicitTable<'d> {
    tags: [u32; 3],
    names: [&'static str; 3],
    entsize: u64,
    apply: fn(reloc::Machine, &[u8], u64, &mut Copies<'d>) -> Result<reloc::TableOutcome, reloc::RelocError>,
}

/// Apply the relative relocations and neutralise start-up self-relocation.
///
/// `.dynamic` keeps its d_ptr values unrelocated (glibc adds the bias itself);
/// DT_JMPREL is kept, so the program still resolves its own IRELATIVE slots.
fn relocate<'d>(
    path: &Path,
    info: &ElfInfo,
    data: &[u8],
    bias: u64,
    mem: &mut Copies<'d>,
) -> Result<RelocSummary, ImageError> {
    let mut sum = RelocSummary::default();
    if info.kind != ProgramKind::StaticPie {
        return Ok(sum);
    }
    let m = info.machine;
    let rerr = |source| ImageError::Reloc { path: path.to_path_buf(), source };

    let tables = [
        ExplicitTable {
            tags: [elf::DT_RELA, elf::DT_RELASZ, elf::DT_RELACOUNT],
            names: ["DT_RELA", "DT_RELASZ", "DT_RELACOUNT"],
            entsize: 24,
            apply: reloc::apply_rela,
        },
        ExplicitTable {
            tags: [elf::DT_REL, elf::DT_RELSZ, elf::DT_RELCOUNT],
            names: ["DT_REL", "DT_RELSZ", "DT_RELCOUNT"],
            entsize: 16,
            apply: reloc::apply_rel,
        },
    ];
    for ExplicitTable { tags: [ptr, size, count], names, entsize, apply } in tables {
        if let Some((vaddr, t)) = table(path, info, data, ptr, size, names[0])? {
            let out = apply(m, t, bias, mem).map_err(rerr)?;
            sum.applied += out.applied;
            sum.left_to_program += out.entries - out.prefix;
            let skipped = out.prefix as u64 * entsize;
            patch_dyn(path, info, mem, ptr, vaddr + skipped, names[0])?;
            patch_dyn(path, info, mem, size, t.len() as u64 - skipped, names[1])?;
            patch_dyn(path, info, mem, count, 0, names[2])?;
        }
    }
    if let Some((_, t)) = table(path, info, data, elfmod::DT_RELR, elfmod::DT_RELRSZ, "DT_RELR")? {
        let out = reloc::apply_relr(t, bias, mem).map_err(rerr)?;
        sum.applied += out.applied;
        patch_dyn(path, info, mem, elfmod::DT_RELRSZ, 0, "DT_RELRSZ")?;
    }
    if let Some(n) = info.dynamic.as_ref().and_then(|d| d.get(elf::DT_PLTRELSZ)) {
        sum.left_to_program += (n / 24) as usize;
    }
    Ok(sum)
}

/// Memory a build of `info`'s program allocates beyond the file's bytes
/// (which the caller holds already): a page-aligned copy of each writable
/// segment, made up front, then sealed one by one into an object of its
/// size, the copy freed after it. At the peak, as the largest is sealed,
/// every copy or its object exists, plus that one twice. (A constant segment
/// that relocation writes to gets a copy too; static PIEs keep those in
/// their writable segment, so they are not counted.)
pub fn build_bytes(info: &ElfInfo) -> u64 {
    let copies = info
        .segments
        .iter()
        .filter(|s| s.writable() && s.filesz > 0)
        .map(|s| page_up(s.vaddr.saturating_add(s.filesz)).saturating_sub(page_down(s.vaddr)));
    let (sum, max) = copies.fold((0u64, 0u64), |(sum, max), n| (sum.saturating_add(n), max.max(n)));
    sum.saturating_add(max)
}

/// Build the image for a static or static-PIE program held in `data`.
/// `started` is when the work for it began: reading and hashing the file
/// count as build time.
pub fn prepare<K: Kernel>(
    path: &Path,
    file: K::File,
    identity: FileIdentity,
    data: &[u8],
    key: ImageKey,
    started: Instant,
) -> Result<Image<K>, ImageError> {
    let info = elfmod::decode(data).map_err(|source| ImageError::Elf { path: path.to_path_buf(), source })?;
    let bias = choose_bias::<K>(path, &info)?;
    let mut mem = Copies::new(&info, data);
    let relocs = relocate(path, &info, data, bias, &mut mem)?;

    let mut objects = Vec::new();
    let mut regions = Vec::new();
    for (i, s) in info.segments.iter().enumerate() {
        push_regions::<K>(path, s, info.relro, mem.copies[i].take(), bias, &mut objects, &mut regions)?;
    }
    let entry = EntryState {
        pc: bias.wrapping_add(info.entry),
        rtld_fini: 0,
        at_phdr: bias.wrapping_add(info.phdr_vaddr),
        at_phnum: info.phnum,
        at_phent: info.phentsize,
        at_entry: bias.wrapping_add(info.entry),
        at_base: 0,
    };
    Ok(Image::new(ImageParts {
        key,
        path: path.to_path_buf(),
        files: vec![MappedFile { path: path.to_path_buf(), file, identity }],
        objects,
        regions,
        entry,
        ops: Vec::new(),
        load_bias: bias,
        kind: info.kind,
        relocs,
        build_time: started.elapsed(),
    }))
}

/// The regions of one segment. A RELRO range at the start of the segment's
/// file pages becomes a region of its own (same object, later offset for the
/// rest), so metrics can tell relocated read-only data from ordinary data. It
/// stays writable here: a static PIE's start-up writes `.dynamic` inside it and
/// then applies RELRO protection itself.
fn push_regions<K: Kernel>(
    path: &Path,
    s: &Segment,
    relro: Option<(u64, u64)>,
    copy: Option<Vec<u8>>,
    bias: u64,
    objects: &mut Vec<K::Object>,
    regions: &mut Vec<ImageRegion>,
) -> Result<(), ImageError> {
    let start = page_down(s.vaddr);
    let file_end = page_up(s.vaddr + s.filesz);
    let mem_end = page_up(s.vaddr + s.memsz);
    let prot = s.prot();
    if s.filesz > 0 {
        let kind = match copy {
            Some(bytes) => {
                let name = format!("zygote:{}:phdr{}", path.file_name().unwrap_or_default().to_string_lossy(), s.index);
                let obj = K::seal(&name, &bytes).map_err(|source| ImageError::Seal {
                    path: path.to_path_buf(),
                    segment: s.index,
                    source,
                })?;
                objects.push(obj);
                RegionKind::Sealed { object: objects.len() - 1, offset: 0 }
            }
            None => RegionKind::File { file: 0, offset: page_down(s.offset) },
        };
        let split = relro
            .filter(|&(v, len)| len > 0 && page_down(v) == start)
            .map(|(v, len)| page_down(v + len).min(file_end))
            .filter(|&end| end > start);
        let push = |regions: &mut Vec<ImageRegion>, from: u64, to: u64, relro: bool| {
            let skip = from - start;
            let kind = match kind {
                RegionKind::File { file, offset } => RegionKind::File { file, offset: offset + skip },
                RegionKind::Sealed { object, offset } => RegionKind::Sealed { object, offset: offset + skip },
                RegionKind::Zero => RegionKind::Zero,
            };
            let vaddr = bias.wrapping_add(from);
            regions.push(ImageRegion { vaddr, len: to - from, prot, kind, segment: s.index, relro });
        };
        match split {
            Some(end) => {
                push(regions, start, end, true);
                if end < file_end {
                    push(regions, end, file_end, false);
                }
            }
            None => push(regions, start, file_end, false),
        }
    }
    let zero_start = if s.filesz > 0 { file_end } else { start };
    if mem_end > zero_start {
        regions.push(ImageRegion {
            vaddr: bias.wrapping_add(zero_start),
            len: mem_end - zero_start,
            prot,
            kind: RegionKind::Zero,
            segment: s.index,
            relro: false,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::Machine;

    fn segment(index: usize, vaddr: u64, filesz: u64, memsz: u64, flags: u32) -> Segment {
        Segment { index, vaddr, memsz, offset: vaddr, filesz, flags, align: PAGE_SIZE }
    }

    #[test]
    fn build_bytes_counts_writable_copies_and_the_largest_twice() {
        let mut info = ElfInfo {
            kind: ProgramKind::Static,
            machine: Machine::X86_64,
            entry: 0x40_1000,
            phdr_vaddr: 0x40_0040,
            phnum: 4,
            phentsize: 56,
            segments: vec![
                segment(0, 0x40_0000, 0x30_0000, 0x30_0000, elf::PF_R | elf::PF_X),
                // Starts mid-page and ends mid-page: three pages of copy.
                segment(1, 0x80_0800, 0x2000, 0x9000, elf::PF_R | elf::PF_W),
                segment(2, 0x90_0000, 0x10_0000, 0x10_0000, elf::PF_R | elf::PF_W),
                // bss only: nothing to copy.
                segment(3, 0xa0_0000, 0, 0x100_0000, elf::PF_R | elf::PF_W),
            ],
            relro: None,
            tls: None,
            dynamic: None,
            max_align: PAGE_SIZE,
        };
        assert_eq!(build_bytes(&info), 0x3000 + 0x10_0000 + 0x10_0000);
        info.segments.truncate(1);
        assert_eq!(build_bytes(&info), 0, "constant segments are mapped from the file");
    }
}
