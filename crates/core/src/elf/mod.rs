//! ELF decoding and validation: the program headers, the segment model and the
//! dynamic section, with errors that name the offending field and where it is
//! in the file (the caller, which knows the file's name, adds it).
//!
//! The segment model follows elfldltl's `LoadInfo`: every PT_LOAD becomes a
//! [`Segment`] whose [`SegmentKind`] (constant, data, data-with-zero-fill,
//! zero-fill) decides how the preparer backs it. Structures are typed zero-copy
//! views from the `object` crate.

mod as_is;
pub mod reloc;

use std::fmt;

use object::elf;
use object::read::elf::{Dyn as _, FileHeader as _, ProgramHeader as _};
use object::{LittleEndian as LE, pod};

pub use as_is::{AsIsInfo, GnuStack, decode_as_is};
/// The ELF ABI's names (`PT_*`, `PF_*`, `ET_*`, `EM_*`, ...), from `object`,
/// so that no caller keeps constants of its own.
pub use object::elf as abi;
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

/// What is wrong with a program file and where in it. The decoder does not
/// know the file's name: callers add it (see `ImageError::Elf`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF file (bad magic {magic:02x?} at offset 0)")]
    NotElf { magic: Vec<u8> },
    #[error("unsupported ELF class {class} (EI_CLASS, offset 4; only ELFCLASS64 = 2 is supported)")]
    Class { class: u8 },
    #[error("unsupported byte order {data} (EI_DATA, offset 5; only little-endian = 1 is supported)")]
    ByteOrder { data: u8 },
    #[error("e_machine {machine} ({name}; ELF header offset 0x12) cannot run on this host ({host})")]
    Machine { machine: u16, name: &'static str, host: &'static str },
    #[error("truncated: {what} needs bytes {start}..{end} but the file has {len}")]
    Truncated { what: &'static str, start: u64, end: u64, len: u64 },
    /// A field of the ELF header; `offset` is where the field is in the file.
    #[error("{field} = {value:#x} (ELF header offset {offset:#x}): {why}")]
    BadField { field: &'static str, offset: u64, value: u64, why: &'static str },
    /// Program header `index`, which is at file offset `offset`.
    #[error("program header {index} ({ptype}, at offset {offset:#x}): {field} {why}")]
    BadSegment { index: usize, offset: u64, ptype: PType, field: &'static str, why: String },
    /// ET_DYN without an interpreter that is not a static PIE: the kernel
    /// runs it as it is (no relocation, no libraries), so zygote runs it by
    /// plain exec rather than imaging it.
    #[error("is an ET_DYN without an interpreter that is not a static PIE ({why}): it runs by plain exec")]
    SharedLibrary { why: &'static str },
    #[error("is a relocatable object (e_type ET_REL), not a program")]
    Relocatable,
    /// `index` is the PT_INTERP program header.
    #[error(
        "is dynamically linked (PT_INTERP, program header {index}, names the interpreter {interp}): the \
         relocating preparer takes static programs only (dynamic ones are imaged from a prototype)"
    )]
    Dynamic { index: usize, interp: String },
    /// `index` is the PT_GNU_STACK program header.
    #[error("asks for an executable stack (PT_GNU_STACK, program header {index}, has PF_X), which is not supported")]
    ExecStack { index: usize },
    /// The PT_DYNAMIC at program header `index`; `offset` is the file offset
    /// of the offending entry, or of the section when no one entry is to blame.
    #[error("dynamic section (PT_DYNAMIC, program header {index}) at offset {offset:#x}: {why}")]
    DynamicSection { index: usize, offset: u64, why: String },
    /// The kernel runs such a program (AT_PHDR is then 0), but an image
    /// needs its program headers in memory.
    #[error(
        "the program headers (e_phoff {phoff:#x}) are in no PT_LOAD and there is no PT_PHDR: it runs by plain exec"
    )]
    PhdrsNotLoaded { phoff: u64 },
}

impl ElfError {
    /// Does the kernel run what this error refuses? Then zygote runs the
    /// program by plain exec instead of imaging it (a shared library with an
    /// entry point, an executable stack, program headers outside memory).
    pub fn kernel_runs_it(&self) -> bool {
        matches!(self, ElfError::SharedLibrary { .. } | ElfError::ExecStack { .. } | ElfError::PhdrsNotLoaded { .. })
    }
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

/// The pages PT_LOADs sorted by address span: the lowest and one past the
/// highest.
fn span_start(segments: &[Segment]) -> u64 {
    segments.first().map_or(0, |s| page_down(s.vaddr))
}
fn span_end(segments: &[Segment]) -> u64 {
    segments.last().map_or(0, |s| page_up(s.vaddr + s.memsz))
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
        span_start(&self.segments)
    }
    /// One past the highest page of the image.
    pub fn end(&self) -> u64 {
        span_end(&self.segments)
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

/// ELF64 header fields checked by name: (name, file offset).
type HeaderField = (&'static str, u64);
const F_EI_VERSION: HeaderField = ("EI_VERSION", 6);
const F_E_TYPE: HeaderField = ("e_type", 0x10);
const F_E_ENTRY: HeaderField = ("e_entry", 0x18);
const F_E_PHOFF: HeaderField = ("e_phoff", 0x20);
const F_E_PHENTSIZE: HeaderField = ("e_phentsize", 0x36);
const F_E_PHNUM: HeaderField = ("e_phnum", 0x38);
/// Size of an ELF64 program header (the only e_phentsize accepted).
const PHENTSIZE: u64 = size_of::<elf::ProgramHeader64<LE>>() as u64;

fn bad_field((field, offset): HeaderField, value: u64, why: &'static str) -> ElfError {
    ElfError::BadField { field, offset, value, why }
}

/// The ELF header's facts, validated.
#[derive(Clone, Copy, Debug)]
struct Header {
    machine: Machine,
    etype: u16,
    entry: u64,
    phoff: u64,
    phnum: usize,
}

impl Header {
    /// One past the last byte of the program header table.
    fn ph_end(&self) -> u64 {
        self.phoff.saturating_add(self.phnum as u64 * PHENTSIZE)
    }
}

/// One program header, read out, with where it sits in the file.
#[derive(Clone, Copy, Debug)]
struct Ph {
    index: usize,
    /// File offset of the program header itself.
    at: u64,
    ptype: u32,
    flags: u32,
    offset: u64,
    filesz: u64,
    vaddr: u64,
    memsz: u64,
    align: u64,
}

impl Ph {
    fn read(index: usize, phoff: u64, ph: &elf::ProgramHeader64<LE>) -> Self {
        let e = LE;
        Ph {
            index,
            at: phoff + index as u64 * PHENTSIZE,
            ptype: ph.p_type(e),
            flags: ph.p_flags(e),
            offset: ph.p_offset(e),
            filesz: ph.p_filesz(e),
            vaddr: ph.p_vaddr(e),
            memsz: ph.p_memsz(e),
            align: ph.p_align(e),
        }
    }

    fn bad(&self, field: &'static str, why: String) -> ElfError {
        ElfError::BadSegment { index: self.index, offset: self.at, ptype: PType(self.ptype), field, why }
    }

    /// The file bytes it names (empty when they are not all in the file).
    fn bytes<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        let range =
            usize::try_from(self.offset).ok().zip(usize::try_from(self.offset.saturating_add(self.filesz)).ok());
        range.and_then(|(start, end)| data.get(start..end)).unwrap_or(&[])
    }
}

/// What the program headers say, gathered in one pass.
#[derive(Debug, Default)]
struct Scan {
    /// PT_LOADs with a non-zero p_memsz, in file order.
    segments: Vec<Segment>,
    relro: Option<(u64, u64)>,
    tls: Option<Ph>,
    dynamic: Option<Ph>,
    interp: Option<Ph>,
    phdr_vaddr: Option<u64>,
    stack: Option<Ph>,
}

/// Decode and validate a program file held in memory. Errors say what is
/// wrong and where in the file; the caller knows which file it is.
pub fn decode(data: &[u8]) -> Result<ElfInfo, ElfError> {
    let header = decode_header(data)?;
    let scan = scan_program_headers(data, &header, data.len() as u64)?;
    let Scan { segments, relro, tls, dynamic, interp, phdr_vaddr, stack } = scan;
    check_layout(&segments, &header)?;
    let max_align = segments.iter().map(|s| s.align).max().unwrap_or(PAGE_SIZE).max(PAGE_SIZE);
    let entry = header.entry;
    if !segments.iter().any(|s| s.executable() && entry >= s.vaddr && entry < s.vaddr + s.memsz) {
        return Err(bad_field(F_E_ENTRY, entry, "is not inside an executable PT_LOAD"));
    }
    let phdr_vaddr = match phdr_vaddr {
        Some(v) => v,
        None => phdrs_in_load(&segments, &header)?,
    };
    refuse_unsupported(data, interp, stack)?;
    let dynamic = dynamic.map(|ph| decode_dynamic(data, &ph).map(|d| (ph, d))).transpose()?;
    let kind = classify(data, &segments, &header, dynamic.as_ref())?;
    if let Some(t) = tls
        && t.filesz > 0
        && !segments.iter().any(|s| s.file_contains(t.vaddr, t.filesz))
    {
        let why =
            format!("{:#x}: the TLS initialization image ({:#x} bytes) is not inside a PT_LOAD", t.vaddr, t.filesz);
        return Err(t.bad("p_vaddr", why));
    }
    Ok(ElfInfo {
        kind,
        machine: header.machine,
        entry,
        phdr_vaddr,
        phnum: header.phnum as u64,
        phentsize: PHENTSIZE,
        segments,
        relro,
        tls: tls.map(|t| Tls { vaddr: t.vaddr, filesz: t.filesz, memsz: t.memsz, align: t.align }),
        dynamic: dynamic.map(|(_, d)| d),
        max_align,
    })
}

/// e_ident: magic, class and byte order.
fn check_ident(data: &[u8]) -> Result<(), ElfError> {
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf { magic: data[..data.len().min(4)].to_vec() });
    }
    if data.len() < 6 {
        return Err(ElfError::Truncated { what: "the ELF identification", start: 0, end: 16, len: data.len() as u64 });
    }
    if data[EI_CLASS] != elf::ELFCLASS64 {
        return Err(ElfError::Class { class: data[EI_CLASS] });
    }
    if data[EI_DATA] != elf::ELFDATA2LSB {
        return Err(ElfError::ByteOrder { data: data[EI_DATA] });
    }
    Ok(())
}

/// The ELF header: identification, version, machine, type and the program
/// header table's shape (which must lie inside the file).
fn decode_header(data: &[u8]) -> Result<Header, ElfError> {
    check_ident(data)?;
    let e = LE;
    let len = data.len() as u64;
    let ehdr_size = size_of::<elf::FileHeader64<LE>>() as u64;
    let (ehdr, _) = pod::from_bytes::<elf::FileHeader64<LE>>(data).map_err(|()| ElfError::Truncated {
        what: "the ELF header",
        start: 0,
        end: ehdr_size,
        len,
    })?;
    if ehdr.e_ident.version != elf::EV_CURRENT {
        return Err(bad_field(F_EI_VERSION, ehdr.e_ident.version.into(), "must be EV_CURRENT (1)"));
    }
    let machine_raw = ehdr.e_machine(e);
    let host = Machine::host();
    let machine = match Machine::from_em(machine_raw) {
        Some(m) if m == host => m,
        _ => {
            return Err(ElfError::Machine { machine: machine_raw, name: machine_name(machine_raw), host: host.name() });
        }
    };
    let etype = ehdr.e_type(e);
    match etype {
        elf::ET_EXEC | elf::ET_DYN => {}
        elf::ET_REL => return Err(ElfError::Relocatable),
        other => return Err(bad_field(F_E_TYPE, other.into(), "not an executable (ET_EXEC or ET_DYN)")),
    }
    let phentsize = u64::from(ehdr.e_phentsize(e));
    if phentsize != PHENTSIZE {
        return Err(bad_field(F_E_PHENTSIZE, phentsize, "must be 56 for ELF64"));
    }
    let phnum = usize::from(ehdr.e_phnum(e));
    if phnum == 0 || phnum > MAX_PHNUM {
        return Err(bad_field(F_E_PHNUM, phnum as u64, "must be between 1 and 512"));
    }
    let header = Header { machine, etype, entry: ehdr.e_entry(e), phoff: ehdr.e_phoff(e), phnum };
    if header.ph_end() > len {
        let (start, end) = (header.phoff, header.ph_end());
        return Err(ElfError::Truncated { what: "the program headers", start, end, len });
    }
    Ok(header)
}

/// Read and check every program header, in order, in a file of `file_len`
/// bytes that starts with `data`.
fn scan_program_headers(data: &[u8], header: &Header, file_len: u64) -> Result<Scan, ElfError> {
    let e = LE;
    // decode_header checked the identification and size; this re-view cannot fail.
    let phdrs = pod::from_bytes::<elf::FileHeader64<LE>>(data)
        .ok()
        .and_then(|(ehdr, _)| ehdr.program_headers(e, data).ok())
        .ok_or_else(|| bad_field(F_E_PHOFF, header.phoff, "program headers are not readable (misaligned?)"))?;
    let mut scan = Scan::default();
    for (index, raw) in phdrs.iter().enumerate() {
        let ph = Ph::read(index, header.phoff, raw);
        check_in_file(&ph, file_len)?;
        match ph.ptype {
            elf::PT_LOAD => {
                if let Some(segment) = check_load(&ph)? {
                    scan.segments.push(segment);
                }
            }
            elf::PT_GNU_RELRO => scan.relro = Some(check_relro(&ph)?),
            elf::PT_TLS => scan.tls = Some(check_tls(ph)?),
            elf::PT_DYNAMIC => scan.dynamic = Some(ph),
            elf::PT_INTERP => scan.interp = Some(ph),
            elf::PT_PHDR => scan.phdr_vaddr = Some(ph.vaddr),
            elf::PT_GNU_STACK => scan.stack = Some(ph),
            _ => {}
        }
    }
    if scan.segments.is_empty() {
        return Err(bad_field(F_E_PHNUM, header.phnum as u64, "no PT_LOAD segments"));
    }
    Ok(scan)
}

/// The file bytes a program header names must be in the file (PT_GNU_STACK
/// names none, whatever it says).
fn check_in_file(ph: &Ph, len: u64) -> Result<(), ElfError> {
    if ph.ptype == elf::PT_GNU_STACK || ph.filesz == 0 {
        return Ok(());
    }
    match ph.offset.checked_add(ph.filesz) {
        Some(end) if end <= len => Ok(()),
        _ => Err(ph.bad(
            "p_offset + p_filesz",
            format!("= {:#x} + {:#x} runs past the end of the file ({len:#x} bytes)", ph.offset, ph.filesz),
        )),
    }
}

fn check_sizes_and_align(ph: &Ph) -> Result<(), ElfError> {
    let Ph { filesz, memsz, align, .. } = *ph;
    if filesz > memsz {
        return Err(ph.bad("p_filesz", format!("{filesz:#x} is larger than p_memsz {memsz:#x}")));
    }
    if ph.ptype == elf::PT_LOAD && (memsz > MAX_SPAN || ph.vaddr.checked_add(memsz).is_none_or(|end| end > USER_TOP)) {
        let why = format!("{memsz:#x} at p_vaddr {:#x} is an absurd size or leaves user space", ph.vaddr);
        return Err(ph.bad("p_memsz", why));
    }
    if align > 1 && !align.is_power_of_two() {
        return Err(ph.bad("p_align", format!("{align:#x} is not a power of two")));
    }
    Ok(())
}

/// A PT_LOAD: sizes, alignment and congruence. `None` for an empty one.
fn check_load(ph: &Ph) -> Result<Option<Segment>, ElfError> {
    check_sizes_and_align(ph)?;
    let Ph { index, vaddr, offset, align, .. } = *ph;
    if align > 1 && vaddr % align != offset % align {
        let why = format!("{vaddr:#x} is not congruent to p_offset {offset:#x} modulo p_align {align:#x}");
        return Err(ph.bad("p_vaddr", why));
    }
    if vaddr % PAGE_SIZE != offset % PAGE_SIZE {
        let why = format!("{vaddr:#x} is not congruent to p_offset {offset:#x} modulo the page size");
        return Err(ph.bad("p_vaddr", why));
    }
    if ph.memsz == 0 {
        return Ok(None);
    }
    Ok(Some(Segment { index, vaddr, memsz: ph.memsz, offset, filesz: ph.filesz, flags: ph.flags, align }))
}

/// PT_GNU_RELRO as (vaddr, memsz), inside user space.
fn check_relro(ph: &Ph) -> Result<(u64, u64), ElfError> {
    if ph.vaddr.checked_add(ph.memsz).is_none_or(|end| end > USER_TOP) {
        return Err(ph.bad("p_memsz", format!("{:#x} at p_vaddr {:#x} leaves user space", ph.memsz, ph.vaddr)));
    }
    Ok((ph.vaddr, ph.memsz))
}

fn check_tls(ph: Ph) -> Result<Ph, ElfError> {
    check_sizes_and_align(&ph)?;
    Ok(ph)
}

/// PT_LOADs must be sorted, each on its own pages, and span a sane range.
fn check_layout(segments: &[Segment], header: &Header) -> Result<(), ElfError> {
    let at = |s: &Segment| header.phoff + s.index as u64 * PHENTSIZE;
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
        let (index, offset, ptype) = (b.index, at(b), PType(elf::PT_LOAD));
        return Err(ElfError::BadSegment { index, offset, ptype, field: "p_vaddr", why });
    }
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else { return Ok(()) };
    if last.vaddr + last.memsz - page_down(first.vaddr) > MAX_SPAN {
        let why = format!(
            "{:#x} at p_vaddr {:#x}: the PT_LOADs span {:#x} bytes from program header {}'s p_vaddr {:#x}, \
             an absurdly large image",
            last.memsz,
            last.vaddr,
            last.vaddr + last.memsz - first.vaddr,
            first.index,
            first.vaddr
        );
        let (index, offset, ptype) = (last.index, at(last), PType(elf::PT_LOAD));
        return Err(ElfError::BadSegment { index, offset, ptype, field: "p_memsz", why });
    }
    Ok(())
}

/// AT_PHDR without a PT_PHDR: where the PT_LOAD that maps e_phoff puts it.
fn phdrs_in_load(segments: &[Segment], header: &Header) -> Result<u64, ElfError> {
    let (phoff, ph_end) = (header.phoff, header.ph_end());
    segments
        .iter()
        .find(|s| phoff >= s.offset && ph_end <= s.offset + s.filesz)
        .map(|s| s.vaddr + (phoff - s.offset))
        .ok_or(ElfError::PhdrsNotLoaded { phoff })
}

/// What the relocating preparer cannot run: an interpreter, an executable stack.
fn refuse_unsupported(data: &[u8], interp: Option<Ph>, stack: Option<Ph>) -> Result<(), ElfError> {
    if let Some(ph) = interp {
        let raw = ph.bytes(data);
        let s = raw.split(|&b| b == 0).next().unwrap_or(raw);
        return Err(ElfError::Dynamic { index: ph.index, interp: String::from_utf8_lossy(s).into_owned() });
    }
    if let Some(ph) = stack.filter(|ph| ph.flags & elf::PF_X != 0) {
        return Err(ElfError::ExecStack { index: ph.index });
    }
    Ok(())
}

/// ET_EXEC is a static program. An ET_DYN without an interpreter is what the
/// kernel loads at a random bias and enters without relocating anything: a
/// static PIE (DF_1_PIE), one in all but the flag (only relative relocations,
/// which its start-up applies), or one with nothing to relocate (no
/// PT_DYNAMIC). Anything else (libraries to load, symbol relocations) is
/// [`ElfError::SharedLibrary`]: it runs by plain exec.
fn classify(
    data: &[u8],
    segments: &[Segment],
    header: &Header,
    dynamic: Option<&(Ph, Dynamic)>,
) -> Result<ProgramKind, ElfError> {
    if header.etype == elf::ET_EXEC {
        return Ok(ProgramKind::Static);
    }
    let Some((_, dynamic)) = dynamic else {
        return Ok(ProgramKind::StaticPie);
    };
    if dynamic.entry(elf::DT_NEEDED).is_some() {
        return Err(ElfError::SharedLibrary { why: "DT_NEEDED without PT_INTERP: nobody would load its libraries" });
    }
    let flags1 = dynamic.get(elf::DT_FLAGS_1).unwrap_or(0);
    if flags1 & u64::from(elf::DF_1_PIE) == 0 && !only_relative(data, segments, header.machine, dynamic) {
        return Err(ElfError::SharedLibrary { why: "no DF_1_PIE in DT_FLAGS_1, and relocations other than relative" });
    }
    Ok(ProgramKind::StaticPie)
}

/// Are all of DT_RELA, DT_REL and DT_JMPREL relative (or IRELATIVE)
/// relocations, each table inside a PT_LOAD's file bytes? (DT_RELR is
/// relative by definition.)
fn only_relative(data: &[u8], segments: &[Segment], machine: Machine, dynamic: &Dynamic) -> bool {
    let relative = [machine.r_relative(), machine.r_irelative()];
    let jmprel_ent = if dynamic.get(elf::DT_PLTREL) == Some(u64::from(elf::DT_REL)) { 16 } else { 24 };
    let tables = [
        (elf::DT_RELA, elf::DT_RELASZ, 24),
        (elf::DT_REL, elf::DT_RELSZ, 16),
        (elf::DT_JMPREL, elf::DT_PLTRELSZ, jmprel_ent),
    ];
    tables.into_iter().all(|(ptr, size, entsize)| {
        let Some(vaddr) = dynamic.get(ptr) else { return true };
        let len = dynamic.get(size).unwrap_or(0);
        let Some(s) = segments.iter().find(|s| s.file_contains(vaddr, len)) else { return false };
        let start = (s.offset + (vaddr - s.vaddr)) as usize;
        let Some(bytes) = data.get(start..start + len as usize) else { return false };
        bytes.chunks(entsize).all(|e| {
            let Some(info) = e.get(8..16) else { return false };
            let info = u64::from_le_bytes(info.try_into().unwrap_or_default());
            info >> 32 == 0 && relative.contains(&((info & 0xffff_ffff) as u32))
        })
    })
}

/// The entries of PT_DYNAMIC `ph`, up to DT_NULL.
fn decode_dynamic(data: &[u8], ph: &Ph) -> Result<Dynamic, ElfError> {
    let e = LE;
    if ph.vaddr.checked_add(ph.filesz).is_none_or(|end| end > USER_TOP) {
        let why = format!("p_vaddr {:#x} + p_filesz {:#x} leaves user space", ph.vaddr, ph.filesz);
        return Err(ElfError::DynamicSection { index: ph.index, offset: ph.offset, why });
    }
    let bytes = ph.bytes(data);
    let entsize = size_of::<elf::Dyn64<LE>>();
    let (dyns, _) = pod::slice_from_bytes::<elf::Dyn64<LE>>(bytes, bytes.len() / entsize).map_err(|()| {
        ElfError::DynamicSection { index: ph.index, offset: ph.offset, why: "the section is misaligned".into() }
    })?;
    let Some(end) = dyns.iter().position(|d| d.d_tag(e) as i64 == i64::from(elf::DT_NULL)) else {
        let why = format!("no DT_NULL terminator in its {} entries", dyns.len());
        return Err(ElfError::DynamicSection { index: ph.index, offset: ph.offset, why });
    };
    let entries = dyns[..end]
        .iter()
        .enumerate()
        .map(|(i, d)| DynEntry { tag: d.d_tag(e) as i64, val: d.d_val(e), vaddr: ph.vaddr + (i * entsize) as u64 })
        .collect();
    Ok(Dynamic { entries, vaddr: ph.vaddr })
}

#[cfg(test)]
mod tests;
