//! Programs started through an interpreter (PT_INTERP `ld.so.1`, every
//! ordinary Fuchsia executable), as Fuchsia's process_builder starts them:
//! the zygote loads the interpreter, not the program, and hands the
//! interpreter the program's VMO and a `fuchsia.ldsvc.Loader` channel in a
//! first bootstrap message; the interpreter maps the program and its
//! libraries and relocates them in the new process.
//!
//! The image of such a program is therefore the interpreter's segments,
//! loaded as they are (it relocates itself): constant segments map its VMO,
//! writable ones are a sealed copy with the partial page before bss zeroed,
//! bss is fresh. Its key covers the program's bytes, the loader's `Config`
//! string and every `LoadObject` answer the zygote used (the interpreter's
//! name and bytes), so a different loader configuration or interpreter is a
//! different image.
//!
//! Also here: the program-header reader both the interpreter and the vDSO
//! are loaded with. Pure, tested on every host.

use std::path::Path;
use std::time::Duration;

use zygote_core::elf::{PAGE_SIZE, ProgramKind, page_down, page_up};
use zygote_core::image::{
    ContentHash, EntryState, FileIdentity, Image, ImageError, ImageKey, ImageParts, ImageRegion, MappedFile,
    RegionKind, RelocSummary,
};
use zygote_core::kernel::Kernel;

/// The preparer version of interpreter images (relocate: 1, prototype: 2).
pub const INTERP_V1: u32 = 3;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_GNU_STACK: u32 = 0x6474_e551;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadersError {
    #[error("not a little-endian ELF64 file")]
    NotElf64,
    #[error("the program headers ({phnum} at {phoff:#x}) run past the end of the {len} bytes read")]
    Truncated { phoff: u64, phnum: u64, len: usize },
    #[error("program header {index}: {why}")]
    BadSegment { index: usize, why: &'static str },
    #[error("no PT_LOAD segments")]
    NoLoads,
}

/// Why an interpreter image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error("{path}: the interpreter: {source}")]
    Headers { path: std::path::PathBuf, source: HeadersError },
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// A PT_LOAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    pub index: usize,
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    /// `PF_*`.
    pub flags: u32,
}

impl Load {
    pub fn writable(&self) -> bool {
        self.flags & PF_W != 0
    }
    /// `PROT_*` bits.
    pub fn prot(&self) -> u32 {
        let mut p = 0;
        if self.flags & PF_R != 0 {
            p |= zygote_plan::PROT_READ;
        }
        if self.writable() {
            p |= zygote_plan::PROT_WRITE;
        }
        if self.flags & PF_X != 0 {
            p |= zygote_plan::PROT_EXEC;
        }
        p
    }
}

/// What loading needs from an ELF file's headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Headers {
    pub entry: u64,
    /// PT_LOADs in address order, each on its own pages.
    pub loads: Vec<Load>,
    /// The PT_INTERP name, without its NUL.
    pub interp: Option<Vec<u8>>,
    /// PT_GNU_STACK's p_memsz, when non-zero.
    pub stack_size: Option<u64>,
}

impl Headers {
    /// Page-aligned `(start, end)` of the PT_LOADs (unbiased).
    pub fn span(&self) -> (u64, u64) {
        let start = self.loads.first().map_or(0, |l| page_down(l.vaddr));
        let end = self.loads.last().map_or(0, |l| page_up(l.vaddr + l.memsz));
        (start, end)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?)))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Read the headers from the start of a file (`bytes` must hold the
/// program header table; the interpreter name is read when it is there).
pub fn headers(bytes: &[u8]) -> Result<Headers, HeadersError> {
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err(HeadersError::NotElf64);
    }
    let field = |v: Option<u64>| v.ok_or(HeadersError::NotElf64);
    let (entry, phoff, phentsize, phnum) = (
        field(u64_at(bytes, 0x18))?,
        field(u64_at(bytes, 0x20))?,
        field(u16_at(bytes, 0x36))?,
        field(u16_at(bytes, 0x38))?,
    );
    let table_end = phoff.checked_add(phnum * phentsize);
    if phentsize != 56 || table_end.is_none_or(|e| e > bytes.len() as u64) {
        return Err(HeadersError::Truncated { phoff, phnum, len: bytes.len() });
    }
    let mut h = Headers { entry, loads: Vec::new(), interp: None, stack_size: None };
    for index in 0..phnum as usize {
        let at = phoff as usize + index * 56;
        let read = || -> Option<(u32, u32, u64, u64, u64, u64)> {
            Some((
                u32_at(bytes, at)?,
                u32_at(bytes, at + 4)?,
                u64_at(bytes, at + 8)?,
                u64_at(bytes, at + 16)?,
                u64_at(bytes, at + 32)?,
                u64_at(bytes, at + 40)?,
            ))
        };
        let (ptype, flags, offset, vaddr, filesz, memsz) =
            read().ok_or(HeadersError::Truncated { phoff, phnum, len: bytes.len() })?;
        match ptype {
            PT_LOAD if memsz > 0 => {
                let bad = |why| HeadersError::BadSegment { index, why };
                if filesz > memsz {
                    return Err(bad("p_filesz is larger than p_memsz"));
                }
                if vaddr % PAGE_SIZE != offset % PAGE_SIZE {
                    return Err(bad("p_vaddr and p_offset differ modulo the page size"));
                }
                if vaddr.checked_add(memsz).is_none() || offset.checked_add(filesz).is_none() {
                    return Err(bad("the segment wraps around"));
                }
                if let Some(prev) = h.loads.last()
                    && page_down(vaddr) < page_up(prev.vaddr + prev.memsz)
                {
                    return Err(bad("PT_LOADs overlap or are not sorted"));
                }
                h.loads.push(Load { index, vaddr, memsz, offset, filesz, flags });
            }
            PT_INTERP => {
                let name = usize::try_from(offset)
                    .ok()
                    .zip(usize::try_from(offset.saturating_add(filesz)).ok())
                    .and_then(|(a, b)| bytes.get(a..b));
                h.interp = name.map(|n| n.split(|&c| c == 0).next().unwrap_or(n).to_vec());
            }
            PT_GNU_STACK if memsz > 0 => h.stack_size = Some(memsz),
            _ => {}
        }
    }
    if h.loads.is_empty() {
        return Err(HeadersError::NoLoads);
    }
    Ok(h)
}

/// What the loader service answered, in the order the zygote asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoaderAnswers {
    /// The `Config` string sent before loading, if any.
    pub config: Option<String>,
    /// `LoadObject(name)` answers: the name and the VMO's content hash.
    pub objects: Vec<(String, ContentHash)>,
}

/// The key of an interpreter image: the program's bytes, the loader's
/// configuration and every object it loaded, length-prefixed so no two
/// different inputs encode alike.
pub fn interp_key(program: &ContentHash, answers: &LoaderAnswers) -> ImageKey {
    let mut enc = Vec::with_capacity(64 + 48 * answers.objects.len());
    enc.extend_from_slice(b"zygote-interp-v1\0");
    enc.extend_from_slice(&program.0);
    match &answers.config {
        Some(c) => {
            enc.push(1);
            enc.extend_from_slice(&(c.len() as u64).to_le_bytes());
            enc.extend_from_slice(c.as_bytes());
        }
        None => enc.push(0),
    }
    for (name, hash) in &answers.objects {
        enc.extend_from_slice(&(name.len() as u64).to_le_bytes());
        enc.extend_from_slice(name.as_bytes());
        enc.extend_from_slice(&hash.0);
    }
    ImageKey { content: ContentHash::of(&enc), preparer: INTERP_V1 }
}

/// The regions of an ELF file loaded as it is at `bias`, and the bytes of
/// each sealed copy (writable file pages with everything past p_filesz
/// zeroed), indexed by [`RegionKind::Sealed`]'s `object`.
pub fn load_regions(h: &Headers, data: &[u8], bias: u64) -> Result<(Vec<ImageRegion>, Vec<Vec<u8>>), HeadersError> {
    let mut regions = Vec::new();
    let mut copies = Vec::new();
    for l in &h.loads {
        let start = page_down(l.vaddr);
        let file_end = page_up(l.vaddr + l.filesz);
        let at = bias.wrapping_add(start);
        if l.filesz > 0 {
            let kind = if l.writable() {
                let src = usize::try_from(l.offset)
                    .ok()
                    .zip(usize::try_from(l.offset + l.filesz).ok())
                    .and_then(|(a, b)| data.get(a..b))
                    .ok_or(HeadersError::BadSegment { index: l.index, why: "file bytes past the end of the file" })?;
                let mut copy = vec![0u8; (file_end - start) as usize];
                let head = (l.vaddr - start) as usize;
                copy[head..head + src.len()].copy_from_slice(src);
                copies.push(copy);
                RegionKind::Sealed { object: copies.len() - 1, offset: 0 }
            } else {
                RegionKind::File { file: 0, offset: page_down(l.offset) }
            };
            regions.push(ImageRegion {
                vaddr: at,
                len: file_end - start,
                prot: l.prot(),
                kind,
                segment: l.index,
                relro: false,
            });
        }
        let zero_start = if l.filesz > 0 { file_end } else { start };
        let mem_end = page_up(l.vaddr + l.memsz);
        if mem_end > zero_start {
            regions.push(ImageRegion {
                vaddr: bias.wrapping_add(zero_start),
                len: mem_end - zero_start,
                prot: l.prot(),
                kind: RegionKind::Zero,
                segment: l.index,
                relro: false,
            });
        }
    }
    Ok((regions, copies))
}

/// Build the image of the interpreter `data` (held in `file`) for a
/// program keyed `key`, at `bias`.
pub fn prepare<K: Kernel>(
    path: &Path,
    file: K::File,
    identity: FileIdentity,
    data: &[u8],
    key: ImageKey,
    bias: u64,
    build_time: Duration,
) -> Result<Image<K>, InterpError> {
    let bad = |source| InterpError::Headers { path: path.to_path_buf(), source };
    let h = headers(data).map_err(bad)?;
    let (regions, copies) = load_regions(&h, data, bias).map_err(bad)?;
    let mut objects = Vec::with_capacity(copies.len());
    for (i, bytes) in copies.iter().enumerate() {
        let segment =
            regions.iter().find(|r| r.kind == RegionKind::Sealed { object: i, offset: 0 }).map_or(0, |r| r.segment);
        let name = zygote_core::vmar::vmo_name(&key.to_string(), &format!("ld{segment}"));
        objects.push(K::seal(&name, bytes).map_err(|source| ImageError::Seal {
            path: path.to_path_buf(),
            segment,
            source,
        })?);
    }
    let entry =
        EntryState { pc: bias.wrapping_add(h.entry), at_entry: bias.wrapping_add(h.entry), ..EntryState::default() };
    Ok(Image::new(ImageParts {
        key,
        path: path.to_path_buf(),
        files: vec![MappedFile { path: path.to_path_buf(), file, identity }],
        objects,
        regions,
        entry,
        ops: Vec::new(),
        load_bias: bias,
        kind: ProgramKind::Dynamic,
        relocs: RelocSummary::default(),
        build_time,
    }))
}

#[cfg(test)]
mod tests;
