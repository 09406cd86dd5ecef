//! ELF decoding and validation: the program headers, the segment model and the
//! dynamic section, with errors that name the file and the offending field.
//!
//! The segment model follows elfldltl's `LoadInfo`: every PT_LOAD becomes a
//! [`Segment`] whose [`SegmentKind`] (constant, data, data-with-zero-fill,
//! zero-fill) decides how the preparer backs it. Structures are typed zero-copy
//! views from the `object` crate.

pub mod reloc;

use std::fmt;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn as _, FileHeader as _, ProgramHeader as _};
use object::{LittleEndian as LE, pod};

pub use reloc::Machine;

/// Dynamic tags `object` 0.36 does not name (generic ABI, 2017).
pub const DT_RELRSZ: u32 = 35;
pub const DT_RELR: u32 = 36;
/// e_ident indices.
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;

/// Page size the images are laid out for (x86_64 and the aarch64 4K granule).
pub const PAGE_SIZE: u64 = 4096;
/// Largest single segment or total image span accepted (64 GiB).
pub const MAX_SPAN: u64 = 1 << 36;
/// Highest user-space address on x86_64 with 4-level paging.
pub const USER_TOP: u64 = 0x7fff_ffff_f000;
/// Most program headers accepted.
pub const MAX_PHNUM: usize = 512;

pub fn page_down(v: u64) -> u64 {
    v & !(PAGE_SIZE - 1)
}
pub fn page_up(v: u64) -> u64 {
    v.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{path}: not an ELF file (bad magic {magic:02x?})")]
    NotElf { path: PathBuf, magic: Vec<u8> },
    #[error("{path}: unsupported ELF class {class} (EI_CLASS; only ELFCLASS64 = 2 is supported)")]
    Class { path: PathBuf, class: u8 },
    #[error("{path}: unsupported byte order {data} (EI_DATA; only little-endian = 1 is supported)")]
    ByteOrder { path: PathBuf, data: u8 },
    #[error("{path}: e_machine {machine} ({name}) cannot run on this host ({host})")]
    Machine { path: PathBuf, machine: u16, name: &'static str, host: &'static str },
    #[error("{path}: truncated: {what} needs bytes {start}..{end} but the file has {len}")]
    Truncated { path: PathBuf, what: &'static str, start: u64, end: u64, len: u64 },
    #[error("{path}: {field} = {value:#x}: {why}")]
    BadField { path: PathBuf, field: &'static str, value: u64, why: &'static str },
    #[error("{path}: program header {index} ({ptype}): {field} {why}")]
    BadSegment { path: PathBuf, index: usize, ptype: PType, field: &'static str, why: String },
    #[error("{path}: is a shared library (ET_DYN without an interpreter and not a PIE), not a program")]
    SharedLibrary { path: PathBuf },
    #[error("{path}: is a relocatable object (ET_REL), not a program")]
    Relocatable { path: PathBuf },
    #[error("{path}: dynamically linked programs are not supported yet (PT_INTERP names the interpreter {interp})")]
    Dynamic { path: PathBuf, interp: String },
    #[error("{path}: asks for an executable stack (PT_GNU_STACK has PF_X), which is not supported")]
    ExecStack { path: PathBuf },
    #[error("{path}: dynamic section: {why}")]
    DynamicSection { path: PathBuf, why: String },
}

/// A program header type, printed by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PType(pub u32);

impl fmt::Display for PType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            elf::PT_LOAD => "PT_LOAD",
            elf::PT_DYNAMIC => "PT_DYNAMIC",
            elf::PT_INTERP => "PT_INTERP",
            elf::PT_NOTE => "PT_NOTE",
            elf::PT_PHDR => "PT_PHDR",
            elf::PT_TLS => "PT_TLS",
            elf::PT_GNU_STACK => "PT_GNU_STACK",
            elf::PT_GNU_RELRO => "PT_GNU_RELRO",
            elf::PT_GNU_EH_FRAME => "PT_GNU_EH_FRAME",
            elf::PT_GNU_PROPERTY => "PT_GNU_PROPERTY",
            other => return write!(f, "type {other:#x}"),
        };
        f.write_str(name)
    }
}

/// How a PT_LOAD is backed, after elfldltl's segment variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum SegmentKind {
    /// Not writable: text and rodata.
    Constant,
    /// Writable, entirely file-backed.
    Data,
    /// Writable, file-backed then zero-filled (data followed by bss).
    DataWithZeroFill,
    /// No file bytes at all: pure bss.
    ZeroFill,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Segment {
    /// Index of the program header.
    pub index: usize,
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    /// `PF_*` flags.
    pub flags: u32,
    pub align: u64,
}

impl Segment {
    pub fn writable(&self) -> bool {
        self.flags & elf::PF_W != 0
    }
    pub fn executable(&self) -> bool {
        self.flags & elf::PF_X != 0
    }
    /// `PROT_*` bits for the mapping.
    pub fn prot(&self) -> u32 {
        let mut p = 0;
        if self.flags & elf::PF_R != 0 {
            p |= zygote_plan::PROT_READ;
        }
        if self.writable() {
            p |= zygote_plan::PROT_WRITE;
        }
        if self.executable() {
            p |= zygote_plan::PROT_EXEC;
        }
        p
    }
    pub fn kind(&self) -> SegmentKind {
        match (self.writable(), self.filesz) {
            (false, _) => SegmentKind::Constant,
            (true, 0) => SegmentKind::ZeroFill,
            (true, f) if f == self.memsz => SegmentKind::Data,
            (true, _) => SegmentKind::DataWithZeroFill,
        }
    }
    /// Does the file-backed part contain `vaddr .. vaddr+len`?
    pub fn file_contains(&self, vaddr: u64, len: u64) -> bool {
        vaddr >= self.vaddr && vaddr.checked_add(len).is_some_and(|e| e <= self.vaddr + self.filesz)
    }
}

/// The kind of program file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ProgramKind {
    /// ET_EXEC: fixed addresses, nothing to relocate.
    Static,
    /// ET_DYN with DF_1_PIE and no interpreter: relocates itself at start-up.
    StaticPie,
    /// Dynamically linked: imaged from a prototype stopped at its entry point.
    Dynamic,
}

/// One DT_* entry and where it sits in the file (to patch the relocated copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynEntry {
    pub tag: i64,
    pub val: u64,
    /// Unbiased address of the entry (its d_val is at `vaddr + 8`).
    pub vaddr: u64,
}

/// The dynamic section, decoded.
#[derive(Clone, Debug, Default)]
pub struct Dynamic {
    pub entries: Vec<DynEntry>,
    /// Vaddr of the section (PT_DYNAMIC).
    pub vaddr: u64,
}

impl Dynamic {
    pub fn get(&self, tag: u32) -> Option<u64> {
        self.entries.iter().find(|e| e.tag == i64::from(tag)).map(|e| e.val)
    }
    pub fn entry(&self, tag: u32) -> Option<&DynEntry> {
        self.entries.iter().find(|e| e.tag == i64::from(tag))
    }
}

/// PT_TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Tls {
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

/// Everything the preparer needs from a program file.
#[derive(Clone, Debug)]
pub struct ElfInfo {
    pub path: PathBuf,
    pub kind: ProgramKind,
    pub machine: Machine,
    pub entry: u64,
    /// Unbiased address of the program headers in memory (for AT_PHDR).
    pub phdr_vaddr: u64,
    pub phnum: u64,
    pub phentsize: u64,
    /// PT_LOADs, sorted by address, non-overlapping.
    pub segments: Vec<Segment>,
    /// PT_GNU_RELRO as (vaddr, memsz).
    pub relro: Option<(u64, u64)>,
    pub tls: Option<Tls>,
    pub dynamic: Option<Dynamic>,
    /// Largest p_align of the PT_LOADs (at least the page size).
    pub max_align: u64,
}

impl ElfInfo {
    /// The segment whose file-backed part contains `[vaddr, vaddr+len)`.
    pub fn segment_for(&self, vaddr: u64, len: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.file_contains(vaddr, len))
    }

    /// Translate a vaddr range to a file offset (file-backed parts only).
    pub fn file_offset(&self, vaddr: u64, len: u64) -> Option<u64> {
        self.segment_for(vaddr, len).map(|s| s.offset + (vaddr - s.vaddr))
    }

    /// Lowest page of the image.
    pub fn start(&self) -> u64 {
        self.segments.first().map_or(0, |s| page_down(s.vaddr))
    }
    /// One past the highest page of the image.
    pub fn end(&self) -> u64 {
        self.segments.last().map_or(0, |s| page_up(s.vaddr + s.memsz))
    }
}

fn machine_name(m: u16) -> &'static str {
    match m {
        elf::EM_X86_64 => "x86_64",
        elf::EM_AARCH64 => "aarch64",
        elf::EM_386 => "i386",
        elf::EM_ARM => "arm",
        elf::EM_RISCV => "riscv",
        elf::EM_PPC64 => "ppc64",
        elf::EM_S390 => "s390",
        _ => "unknown",
    }
}

/// Decode and validate a program file held in memory.
pub fn decode(path: &Path, data: &[u8]) -> Result<ElfInfo, ElfError> {
    let p = || path.to_path_buf();
    let len = data.len() as u64;
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf { path: p(), magic: data[..data.len().min(4)].to_vec() });
    }
    if data.len() < 6 {
        return Err(ElfError::Truncated { path: p(), what: "the ELF identification", start: 0, end: 16, len });
    }
    if data[EI_CLASS] != elf::ELFCLASS64 {
        return Err(ElfError::Class { path: p(), class: data[EI_CLASS] });
    }
    if data[EI_DATA] != elf::ELFDATA2LSB {
        return Err(ElfError::ByteOrder { path: p(), data: data[EI_DATA] });
    }
    let ehdr_size = size_of::<elf::FileHeader64<LE>>() as u64;
    let (ehdr, _) = pod::from_bytes::<elf::FileHeader64<LE>>(data).map_err(|()| ElfError::Truncated {
        path: p(),
        what: "the ELF header",
        start: 0,
        end: ehdr_size,
        len,
    })?;
    let e = LE;
    if ehdr.e_ident.version != elf::EV_CURRENT {
        return Err(ElfError::BadField {
            path: p(),
            field: "EI_VERSION",
            value: ehdr.e_ident.version.into(),
            why: "must be EV_CURRENT (1)",
        });
    }
    let machine_raw = ehdr.e_machine(e);
    let host = Machine::host();
    let machine = match Machine::from_em(machine_raw) {
        Some(m) if m == host => m,
        _ => {
            return Err(ElfError::Machine {
                path: p(),
                machine: machine_raw,
                name: machine_name(machine_raw),
                host: host.name(),
            });
        }
    };
    let etype = ehdr.e_type(e);
    match etype {
        elf::ET_EXEC | elf::ET_DYN => {}
        elf::ET_REL => return Err(ElfError::Relocatable { path: p() }),
        other => {
            return Err(ElfError::BadField {
                path: p(),
                field: "e_type",
                value: other.into(),
                why: "not an executable (ET_EXEC or ET_DYN)",
            });
        }
    }
    let phentsize = u64::from(ehdr.e_phentsize(e));
    if phentsize != size_of::<elf::ProgramHeader64<LE>>() as u64 {
        return Err(ElfError::BadField {
            path: p(),
            field: "e_phentsize",
            value: phentsize,
            why: "must be 56 for ELF64",
        });
    }
    let phnum = usize::from(ehdr.e_phnum(e));
    if phnum == 0 || phnum > MAX_PHNUM {
        return Err(ElfError::BadField {
            path: p(),
            field: "e_phnum",
            value: phnum as u64,
            why: "must be between 1 and 512",
        });
    }
    let phoff = ehdr.e_phoff(e);
    let ph_end = phoff.saturating_add(phnum as u64 * phentsize);
    if ph_end > len {
        return Err(ElfError::Truncated { path: p(), what: "the program headers", start: phoff, end: ph_end, len });
    }
    let phdrs = ehdr.program_headers(e, data).map_err(|_| ElfError::BadField {
        path: p(),
        field: "e_phoff",
        value: phoff,
        why: "program headers are not readable (misaligned?)",
    })?;

    let bad = |index: usize, ph: &elf::ProgramHeader64<LE>, field: &'static str, why: String| ElfError::BadSegment {
        path: p(),
        index,
        ptype: PType(ph.p_type(e)),
        field,
        why,
    };

    let mut segments = Vec::new();
    let mut relro = None;
    let mut tls = None;
    let mut dynamic_ph = None;
    let mut interp_ph = None;
    let mut phdr_vaddr = None;
    let mut exec_stack = false;
    for (index, ph) in phdrs.iter().enumerate() {
        let ptype = ph.p_type(e);
        let (offset, filesz, vaddr, memsz, align) =
            (ph.p_offset(e), ph.p_filesz(e), ph.p_vaddr(e), ph.p_memsz(e), ph.p_align(e));
        if ptype != elf::PT_GNU_STACK && filesz > 0 {
            match offset.checked_add(filesz) {
                Some(end) if end <= len => {}
                _ => {
                    return Err(bad(
                        index,
                        ph,
                        "p_offset + p_filesz",
                        format!("= {offset:#x} + {filesz:#x} runs past the end of the file ({len:#x} bytes)"),
                    ));
                }
            }
        }
        match ptype {
            elf::PT_LOAD => {
                if filesz > memsz {
                    return Err(bad(index, ph, "p_filesz", format!("{filesz:#x} is larger than p_memsz {memsz:#x}")));
                }
                if memsz > MAX_SPAN || vaddr.checked_add(memsz).is_none_or(|end| end > USER_TOP) {
                    return Err(bad(
                        index,
                        ph,
                        "p_memsz",
                        format!("{memsz:#x} at p_vaddr {vaddr:#x} is an absurd size or leaves user space"),
                    ));
                }
                if align > 1 && !align.is_power_of_two() {
                    return Err(bad(index, ph, "p_align", format!("{align:#x} is not a power of two")));
                }
                if align > 1 && vaddr % align != offset % align {
                    return Err(bad(
                        index,
                        ph,
                        "p_vaddr",
                        format!("{vaddr:#x} is not congruent to p_offset {offset:#x} modulo p_align {align:#x}"),
                    ));
                }
                if vaddr % PAGE_SIZE != offset % PAGE_SIZE {
                    return Err(bad(
                        index,
                        ph,
                        "p_vaddr",
                        format!("{vaddr:#x} is not congruent to p_offset {offset:#x} modulo the page size"),
                    ));
                }
                if memsz == 0 {
                    continue;
                }
                segments.push(Segment { index, vaddr, memsz, offset, filesz, flags: ph.p_flags(e), align });
            }
            elf::PT_GNU_RELRO => relro = Some((vaddr, memsz)),
            elf::PT_TLS => {
                if filesz > memsz {
                    return Err(bad(index, ph, "p_filesz", format!("{filesz:#x} is larger than p_memsz {memsz:#x}")));
                }
                if align > 1 && !align.is_power_of_two() {
                    return Err(bad(index, ph, "p_align", format!("{align:#x} is not a power of two")));
                }
                tls = Some(Tls { vaddr, filesz, memsz, align });
            }
            elf::PT_DYNAMIC => dynamic_ph = Some((index, offset, filesz, vaddr)),
            elf::PT_INTERP => interp_ph = Some((offset, filesz)),
            elf::PT_PHDR => phdr_vaddr = Some(vaddr),
            elf::PT_GNU_STACK => exec_stack = ph.p_flags(e) & elf::PF_X != 0,
            _ => {}
        }
    }

    if segments.is_empty() {
        return Err(ElfError::BadField {
            path: p(),
            field: "e_phnum",
            value: phnum as u64,
            why: "no PT_LOAD segments",
        });
    }
    for w in segments.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let why = if b.vaddr < a.vaddr {
            format!("{:#x} is below the previous PT_LOAD's {:#x} (PT_LOADs must be sorted)", b.vaddr, a.vaddr)
        } else if b.vaddr < a.vaddr + a.memsz {
            format!("{:#x} overlaps program header {} ({:#x}..{:#x})", b.vaddr, a.index, a.vaddr, a.vaddr + a.memsz)
        } else if page_down(b.vaddr) < page_up(a.vaddr + a.memsz) {
            format!(
                "{:#x} shares a page with program header {} (segments must start on their own page)",
                b.vaddr, a.index
            )
        } else {
            continue;
        };
        return Err(ElfError::BadSegment {
            path: p(),
            index: b.index,
            ptype: PType(elf::PT_LOAD),
            field: "p_vaddr",
            why,
        });
    }
    let first = segments[0];
    let last = segments[segments.len() - 1];
    if last.vaddr + last.memsz - page_down(first.vaddr) > MAX_SPAN {
        return Err(ElfError::BadField {
            path: p(),
            field: "PT_LOAD span",
            value: last.vaddr + last.memsz - first.vaddr,
            why: "the image is absurdly large",
        });
    }
    let max_align = segments.iter().map(|s| s.align).max().unwrap_or(PAGE_SIZE).max(PAGE_SIZE);

    let entry = ehdr.e_entry(e);
    if !segments.iter().any(|s| s.executable() && entry >= s.vaddr && entry < s.vaddr + s.memsz) {
        return Err(ElfError::BadField {
            path: p(),
            field: "e_entry",
            value: entry,
            why: "is not inside an executable PT_LOAD",
        });
    }

    // AT_PHDR: PT_PHDR if present, else the PT_LOAD that maps e_phoff.
    let phdr_vaddr = match phdr_vaddr {
        Some(v) => v,
        None => segments
            .iter()
            .find(|s| phoff >= s.offset && ph_end <= s.offset + s.filesz)
            .map(|s| s.vaddr + (phoff - s.offset))
            .ok_or_else(|| ElfError::BadField {
                path: p(),
                field: "e_phoff",
                value: phoff,
                why: "the program headers are not in any PT_LOAD and there is no PT_PHDR",
            })?,
    };

    if let Some((off, size)) = interp_ph {
        let raw = &data[off as usize..(off + size) as usize];
        let s = raw.split(|&b| b == 0).next().unwrap_or(raw);
        return Err(ElfError::Dynamic { path: p(), interp: String::from_utf8_lossy(s).into_owned() });
    }
    if exec_stack {
        return Err(ElfError::ExecStack { path: p() });
    }

    let dynamic = match dynamic_ph {
        None => None,
        Some((index, off, size, vaddr)) => Some(decode_dynamic(path, data, index, off, size, vaddr)?),
    };

    let kind = if etype == elf::ET_EXEC {
        ProgramKind::Static
    } else {
        let Some(dynamic) = &dynamic else {
            return Err(ElfError::SharedLibrary { path: p() });
        };
        let flags1 = dynamic.get(elf::DT_FLAGS_1).unwrap_or(0);
        if flags1 & u64::from(elf::DF_1_PIE) == 0 {
            return Err(ElfError::SharedLibrary { path: p() });
        }
        if dynamic.get(elf::DT_NEEDED).is_some() {
            return Err(ElfError::DynamicSection {
                path: p(),
                why: "DT_NEEDED without PT_INTERP: nobody would load its libraries".into(),
            });
        }
        ProgramKind::StaticPie
    };
    if let Some(t) = tls
        && t.filesz > 0
        && !segments.iter().any(|s| s.file_contains(t.vaddr, t.filesz))
    {
        return Err(ElfError::BadField {
            path: p(),
            field: "PT_TLS p_vaddr",
            value: t.vaddr,
            why: "the TLS initialization image is not inside a PT_LOAD",
        });
    }

    Ok(ElfInfo {
        path: p(),
        kind,
        machine,
        entry,
        phdr_vaddr,
        phnum: phnum as u64,
        phentsize,
        segments,
        relro,
        tls,
        dynamic,
        max_align,
    })
}

fn decode_dynamic(
    path: &Path,
    data: &[u8],
    index: usize,
    off: u64,
    size: u64,
    vaddr: u64,
) -> Result<Dynamic, ElfError> {
    let e = LE;
    let bytes = &data[off as usize..(off + size) as usize];
    let entsize = size_of::<elf::Dyn64<LE>>();
    let (dyns, _) = pod::slice_from_bytes::<elf::Dyn64<LE>>(bytes, bytes.len() / entsize).map_err(|()| {
        ElfError::DynamicSection {
            path: path.to_path_buf(),
            why: format!("PT_DYNAMIC (program header {index}) is misaligned"),
        }
    })?;
    let mut entries = Vec::new();
    let mut terminated = false;
    for (i, d) in dyns.iter().enumerate() {
        let tag = d.d_tag(e) as i64;
        if tag == i64::from(elf::DT_NULL) {
            terminated = true;
            break;
        }
        entries.push(DynEntry { tag, val: d.d_val(e), vaddr: vaddr + (i * entsize) as u64 });
    }
    if !terminated {
        return Err(ElfError::DynamicSection { path: path.to_path_buf(), why: "no DT_NULL terminator".into() });
    }
    Ok(Dynamic { entries, vaddr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_math() {
        assert_eq!(page_down(0x1fff), 0x1000);
        assert_eq!(page_up(0x1001), 0x2000);
        assert_eq!(page_up(0x2000), 0x2000);
    }

    #[test]
    fn segment_kinds() {
        let s = |flags, filesz, memsz| Segment { index: 0, vaddr: 0, memsz, offset: 0, filesz, flags, align: 4096 };
        assert_eq!(s(elf::PF_R | elf::PF_X, 10, 10).kind(), SegmentKind::Constant);
        assert_eq!(s(elf::PF_R | elf::PF_W, 10, 10).kind(), SegmentKind::Data);
        assert_eq!(s(elf::PF_R | elf::PF_W, 10, 20).kind(), SegmentKind::DataWithZeroFill);
        assert_eq!(s(elf::PF_R | elf::PF_W, 0, 20).kind(), SegmentKind::ZeroFill);
    }

    #[test]
    fn rejects_garbage() {
        let p = Path::new("/x");
        assert!(matches!(decode(p, b"hello world"), Err(ElfError::NotElf { .. })));
        assert!(matches!(decode(p, b"\x7fELF\x01\x01"), Err(ElfError::Class { class: 1, .. })));
        assert!(matches!(decode(p, b"\x7fELF\x02\x02"), Err(ElfError::ByteOrder { data: 2, .. })));
        assert!(matches!(decode(p, b"\x7fELF\x02\x01\x01"), Err(ElfError::Truncated { .. })));
    }
}
