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
//! The headers are read by the core's ELF decoder
//! ([`zygote_core::elf::decode_as_is`], as the vDSO's are). Pure, tested on
//! every host.

//! Programs loaded as they are, without relocating ahead.
//!
//! Programs started through an interpreter (PT_INTERP `ld.so.1`, every
//! ordinary Fuchsia executable) start as Fuchsia's process_builder starts
//! them: the zygote asks the launch's `fuchsia.ldsvc.Loader` for the
//! interpreter ([`Loader`], `LoadObject` of the PT_INTERP name), loads the
//! interpreter, not the program, and the backend hands the interpreter the
//! program's VMO and the loader channel in a first bootstrap message; the
//! interpreter maps the program and its libraries and relocates them in the
//! new process.
//!
//! The image of such a program is therefore the interpreter's segments,
//! loaded as they are (it relocates itself): constant segments map its VMO,
//! writable ones are a sealed copy with the partial page before bss zeroed,
//! bss is fresh. Its key covers the program's bytes, the loader's `Config`
//! string and every `LoadObject` answer the zygote used (the interpreter's
//! name and bytes), so a different loader configuration or interpreter is a
//! different image.
//!
//! A program without an interpreter that the relocating preparer refuses
//! is loaded the same way, as it is ([`AS_IS_V1`]): the platform launcher
//! would load it so too.
//!
//! The headers are read by the core's ELF decoder
//! ([`zygote_core::elf::decode_as_is`], as the vDSO's are). Pure, tested on
//! every host.

use zygote_core::elf::{AsIsInfo, ElfError, PAGE_SIZE, ProgramKind, decode_as_is, page_down, page_up};
use zygote_core::image::{
    ContentHash, EntryState, Image, ImageError, ImageKey, ImageParts, ImageRegion, MappedFile, RegionKind,
    RelocSummary, relocate,
};
use zygote_core::kernel::Kernel;

use crate::images::Program;
use crate::status::Status;

/// A `fuchsia.ldsvc.Loader` client, over the launch's `PA_LDSVC_LOADER`
/// channel (the glue implements it with the FIDL bindings).
pub trait Loader<K: Kernel, H> {
    /// `Config(config)`: the loader's configuration for what follows.
    fn config(&mut self, config: &str) -> Result<(), Status>;
    /// `LoadObject(name)`: the object's VMO, as a file.
    fn load_object(&mut self, name: &str) -> Result<K::File, Status>;
    /// The channel back, to hand it to the interpreter; `None` if it
    /// cannot be.
    fn into_handle(self: Box<Self>) -> Option<H>;
}

/// Makes a [`Loader`] of a launch's `PA_LDSVC_LOADER` handle.
pub type OpenLoader<K, H> = dyn Fn(H) -> Box<dyn Loader<K, H>> + Send + Sync;

/// The preparer version of interpreter images (relocate: 1, prototype: 2).
pub const INTERP_V1: u32 = 3;
/// The preparer version of programs loaded as they are (no interpreter).
pub const AS_IS_V1: u32 = 4;

/// Why an interpreter image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error("{path}: the interpreter: {source}")]
    Headers { path: std::path::PathBuf, source: ElfError },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{path}: the PT_INTERP name {why}")]
    Name { path: std::path::PathBuf, why: String },
}

/// The PT_INTERP name of the program `data` (its first bytes, holding the
/// program headers, of a file of `file_len`) and `h`, its headers: `None`
/// for a program without one. The string itself is read by `read` at its
/// file offset, with its length (the NUL and what follows it dropped).
pub fn interp_name(
    path: &std::path::Path,
    data: &[u8],
    h: &AsIsInfo,
    read: impl FnOnce(u64, usize) -> std::io::Result<Vec<u8>>,
) -> Result<Option<String>, InterpError> {
    let Some(index) = h.interp else { return Ok(None) };
    let bad = |why: String| InterpError::Name { path: path.to_path_buf(), why };
    let at = h.phoff + index as u64 * h.phentsize;
    let field = |off: u64| {
        let a = usize::try_from(at + off).ok()?;
        Some(u64::from_le_bytes(data.get(a..a + 8)?.try_into().ok()?))
    };
    let (Some(offset), Some(size)) = (field(8), field(32)) else {
        return Err(bad("header is not in the file's first bytes".into()));
    };
    if size == 0 || size > 4096 {
        return Err(bad(format!("is {size} bytes long")));
    }
    let bytes = read(offset, size as usize).map_err(|e| bad(format!("could not be read: {e}")))?;
    let name = bytes.split(|&b| b == 0).next().unwrap_or_default();
    let name = std::str::from_utf8(name).map_err(|_| bad("is not UTF-8".into()))?;
    if name.is_empty() {
        return Err(bad("is empty".into()));
    }
    Ok(Some(name.to_string()))
}

/// The ELF `e_type` of `data` (ET_EXEC: 2, ET_DYN: 3).
pub fn elf_type(data: &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(16..18)?.try_into().ok()?))
}

/// A load bias putting `h`'s pages at a random page of the static-PIE
/// window (`random` drawn from the kernel).
pub fn random_bias(h: &AsIsInfo, random: u64) -> u64 {
    let (start, end) = (h.start(), h.end());
    let (lo, hi) = relocate::BIAS_WINDOW;
    let slots = (hi - lo).saturating_sub(end - start) / PAGE_SIZE;
    (lo + (random % slots.max(1)) * PAGE_SIZE).wrapping_sub(start)
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
pub fn load_regions(h: &AsIsInfo, data: &[u8], bias: u64) -> Result<(Vec<ImageRegion>, Vec<Vec<u8>>), ElfError> {
    let mut regions = Vec::new();
    let mut copies = Vec::new();
    for l in &h.segments {
        let start = page_down(l.vaddr);
        let file_end = page_up(l.vaddr + l.filesz);
        let at = bias.wrapping_add(start);
        if l.filesz > 0 {
            let kind = if l.writable() {
                let (a, b) = (l.offset, l.offset + l.filesz);
                let src = usize::try_from(a).ok().zip(usize::try_from(b).ok()).and_then(|(a, b)| data.get(a..b));
                let what = "a writable PT_LOAD's file bytes";
                let src = src.ok_or(ElfError::Truncated { what, start: a, end: b, len: data.len() as u64 })?;
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

/// Build the image of `p.data` (held in `p.file`) loaded as it is at
/// `bias`: an interpreter (`kind` Dynamic; `p.key` is the program's
/// [`interp_key`]) or a program loaded plainly.
pub fn load_as_is<K: Kernel>(p: Program<K>, bias: u64, kind: ProgramKind) -> Result<Image<K>, InterpError> {
    let Program { path, file, identity, data, key, started } = p;
    let bad = |source| InterpError::Headers { path: path.to_path_buf(), source };
    let h = decode_as_is(data, data.len() as u64).map_err(bad)?;
    let (regions, copies) = load_regions(&h, data, bias).map_err(bad)?;
    let mut objects = Vec::with_capacity(copies.len());
    let tag = if kind == ProgramKind::Dynamic { "ld" } else { "phdr" };
    for (i, bytes) in copies.iter().enumerate() {
        let segment =
            regions.iter().find(|r| r.kind == RegionKind::Sealed { object: i, offset: 0 }).map_or(0, |r| r.segment);
        let name = zygote_core::vmar::vmo_name(&key.to_string(), &format!("{tag}{segment}"));
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
        kind,
        relocs: RelocSummary::default(),
        build_time: started.elapsed(),
    }))
}

#[cfg(test)]
pub(crate) mod tests;
