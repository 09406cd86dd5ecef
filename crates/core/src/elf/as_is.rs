//! ELF files loaded as they are (the Fuchsia dynamic linker, the vDSO: the
//! kernel's way, nothing relocated ahead): the same decoding stages and
//! errors as [`super::decode`], without the relocating preparer's refusals.

use object::elf;

use super::{
    ElfError, Machine, PHENTSIZE, Segment, check_layout, decode_header, scan_program_headers, span_end, span_start,
};

/// What loading an ELF file as it is needs (the interpreter, the vDSO: the
/// kernel's way, nothing relocated), from [`decode_as_is`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsIsInfo {
    pub machine: Machine,
    /// e_entry, unchecked (a vDSO's need not be in a segment).
    pub entry: u64,
    pub phoff: u64,
    pub phnum: u64,
    pub phentsize: u64,
    /// PT_LOADs, sorted by address, each on its own pages.
    pub segments: Vec<Segment>,
    /// Index of the PT_INTERP program header.
    pub interp: Option<usize>,
    pub stack: Option<GnuStack>,
}

impl AsIsInfo {
    /// Lowest page of the image.
    pub fn start(&self) -> u64 {
        span_start(&self.segments)
    }
    /// One past the highest page of the image.
    pub fn end(&self) -> u64 {
        span_end(&self.segments)
    }
}

/// The PT_GNU_STACK program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GnuStack {
    pub index: usize,
    /// `PF_*` flags.
    pub flags: u32,
    pub memsz: u64,
}

impl GnuStack {
    pub fn executable(&self) -> bool {
        self.flags & elf::PF_X != 0
    }
    /// The stack size it asks for: p_memsz, when not zero.
    pub fn size(&self) -> Option<u64> {
        (self.memsz > 0).then_some(self.memsz)
    }
}

/// Decode the headers of an ELF file to load it as it is: [`decode`](super::decode)'s
/// checks of the ELF header, each program header and the PT_LOADs' layout,
/// without its refusals of what only relocating ahead cannot run (an
/// interpreter, an executable stack, an ET_DYN that is no static PIE,
/// program headers outside memory, e_entry outside the text). `head` is the
/// start of a file of `file_len` bytes and must hold the program header
/// table; the segments' file bytes must be within `file_len`.
pub fn decode_as_is(head: &[u8], file_len: u64) -> Result<AsIsInfo, ElfError> {
    let header = decode_header(head)?;
    let scan = scan_program_headers(head, &header, file_len.max(head.len() as u64))?;
    check_layout(&scan.segments, &header)?;
    Ok(AsIsInfo {
        machine: header.machine,
        entry: header.entry,
        phoff: header.phoff,
        phnum: header.phnum as u64,
        phentsize: PHENTSIZE,
        segments: scan.segments,
        interp: scan.interp.map(|ph| ph.index),
        stack: scan.stack.map(|ph| GnuStack { index: ph.index, flags: ph.flags, memsz: ph.memsz }),
    })
}
