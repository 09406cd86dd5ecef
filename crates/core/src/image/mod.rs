//! Images: what a program becomes once prepared, and the key it is cached by.
//!
//! ```text
//! Image  { key, regions: [ImageRegion], entry: EntryState }
//! Region { vaddr, len, prot, kind }
//! kind = File   { offset }          read-only text and rodata: map the program file
//!      | Sealed { object, offset }  relocated / writable pages: COW child per process
//!      | Zero                       bss
//! ```
//!
//! Both kernels consume this: Linux maps a Sealed region `MAP_PRIVATE` from its
//! memfd; Zircon would map a `SNAPSHOT_AT_LEAST_ON_WRITE` child of the VMO.

pub mod identity;
pub mod relocate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use identity::{ContentHash, FileIdentity, Identified, IdentityMemo, MAX_PROGRAM_BYTES, ReadError, read_program};

use crate::elf::{ElfError, ProgramKind, reloc::RelocError};
use crate::kernel::{Kernel, SealedObject};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Elf { path: PathBuf, source: ElfError },
    #[error("{path}: {source}")]
    Reloc { path: PathBuf, source: RelocError },
    #[error("{path}: dynamic tag {tag} points at {vaddr:#x}, outside the file-backed PT_LOADs")]
    DynamicPointer { path: PathBuf, tag: &'static str, vaddr: u64 },
    #[error("{path}: creating the sealed object for program header {segment}: {source}")]
    Seal { path: PathBuf, segment: usize, source: std::io::Error },
    #[error("{path}: choosing a load bias: {source}")]
    Random { path: PathBuf, source: std::io::Error },
    #[error("{path}: preparing from a prototype: {reason}")]
    Prototype { path: PathBuf, reason: String },
}

/// The cache key: everything that changes the image.
///
/// For load-and-relocate images that is the program's bytes (the bias is
/// chosen per image) plus the preparer's format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageKey {
    pub content: ContentHash,
    pub preparer: u32,
}

impl ImageKey {
    /// Bump when the relocate preparer's output changes for the same input.
    pub const RELOCATE_V1: u32 = 1;
    /// Prototype images (the key's hash also covers the loader environment
    /// and the machine: vDSO, hwcaps, CPU flags, kernel release).
    pub const PROTOTYPE_V1: u32 = 2;

    pub fn relocate(content: ContentHash) -> Self {
        ImageKey { content, preparer: Self::RELOCATE_V1 }
    }
}

impl fmt::Display for ImageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.content)
    }
}

/// Where a region's pages come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RegionKind {
    /// `Image::files()[file]` at `offset` (read-only text and rodata, and
    /// clean library pages).
    File { file: usize, offset: u64 },
    /// `Image::objects()[object]` at `offset` (relocated or writable pages).
    Sealed { object: usize, offset: u64 },
    /// Anonymous zero-filled memory.
    Zero,
}

/// One mapping of the image (addresses include the load bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ImageRegion {
    pub vaddr: u64,
    pub len: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    pub kind: RegionKind,
    /// The program header this region comes from.
    pub segment: usize,
    /// Inside PT_GNU_RELRO (relocated data made read-only after start-up).
    pub relro: bool,
}

/// Register and auxv state at the program's entry point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EntryState {
    pub pc: u64,
    pub rtld_fini: u64,
    pub at_phdr: u64,
    pub at_phnum: u64,
    pub at_phent: u64,
    pub at_entry: u64,
    pub at_base: u64,
}

/// How relocation went, for stats and `--json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RelocSummary {
    /// Relative relocations applied ahead of time.
    pub applied: usize,
    /// Relocation entries left for the program's start-up code (e.g. IRELATIVE).
    pub left_to_program: usize,
}

/// A file an image maps from, held open, with the identity it had.
#[derive(Debug)]
pub struct MappedFile<K: Kernel> {
    pub path: PathBuf,
    pub file: K::File,
    pub identity: FileIdentity,
}

impl<K: Kernel> MappedFile<K> {
    /// Does `path` still name the file we hold, unchanged? (A library
    /// renamed over, or rewritten in place, does not.)
    pub fn path_unchanged(&self) -> bool {
        K::identify_path(&self.path).is_ok_and(|id| id == self.identity)
    }
}

/// What a preparer assembles an [`Image`] from.
#[derive(Debug)]
pub struct ImageParts<K: Kernel> {
    pub key: ImageKey,
    pub path: PathBuf,
    /// Files the File regions map; `files[0]` is the program itself.
    pub files: Vec<MappedFile<K>>,
    pub objects: Vec<K::Object>,
    pub regions: Vec<ImageRegion>,
    pub entry: EntryState,
    /// Restore ops (prototype images), in plan form.
    pub ops: Vec<zygote_plan::RestoreOp>,
    pub load_bias: u64,
    pub kind: ProgramKind,
    pub relocs: RelocSummary,
    pub build_time: Duration,
}

/// A prepared program: sealed objects plus the plan to map them.
#[derive(Debug)]
pub struct Image<K: Kernel> {
    key: ImageKey,
    path: PathBuf,
    /// Files the File regions map; `files[0]` is the program itself.
    files: Vec<MappedFile<K>>,
    objects: Vec<K::Object>,
    regions: Vec<ImageRegion>,
    entry: EntryState,
    /// Restore ops (prototype images), in plan form.
    ops: Vec<zygote_plan::RestoreOp>,
    load_bias: u64,
    kind: ProgramKind,
    relocs: RelocSummary,
    build_time: Duration,
    /// Set when the program cannot be imaged faithfully: why. It then runs by
    /// plain exec (the cache remembers the verdict).
    fallback: Option<String>,
}

impl<K: Kernel> Image<K> {
    pub fn key(&self) -> &ImageKey {
        &self.key
    }
    /// The path the image was prepared from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The program file's identity when the image was prepared.
    pub fn identity(&self) -> &FileIdentity {
        &self.files[0].identity
    }
    /// Every file the image maps from (the program first).
    pub fn files(&self) -> &[MappedFile<K>] {
        &self.files
    }
    pub fn ops(&self) -> &[zygote_plan::RestoreOp] {
        &self.ops
    }
    pub fn regions(&self) -> &[ImageRegion] {
        &self.regions
    }
    pub fn objects(&self) -> &[K::Object] {
        &self.objects
    }
    /// Logical size of the sealed objects.
    pub fn sealed_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.len()).sum()
    }
    pub fn entry(&self) -> &EntryState {
        &self.entry
    }
    pub fn load_bias(&self) -> u64 {
        self.load_bias
    }
    pub fn kind(&self) -> ProgramKind {
        self.kind
    }
    pub fn relocs(&self) -> RelocSummary {
        self.relocs
    }
    pub fn build_time(&self) -> Duration {
        self.build_time
    }

    /// Is the program file still the one this image was built from? A file
    /// rewritten in place changes size, mtime or ctime on the same inode.
    pub fn file_unchanged(&self) -> bool {
        K::identify(&self.files[0].file).is_ok_and(|id| id == self.files[0].identity)
    }

    /// Do the paths of the libraries it maps still name the files it holds?
    pub fn libraries_unchanged(&self) -> bool {
        self.files[1..].iter().all(MappedFile::path_unchanged)
    }

    /// [`Image::libraries_unchanged`] as seen from another root directory
    /// (on Linux `/proc/PID/root`: that process's mount namespace and root).
    /// The paths are the canonical ones the kernel showed, without symlinks.
    pub fn libraries_unchanged_under(&self, root: &std::path::Path) -> bool {
        self.files[1..].iter().all(|f| {
            let rel = f.path.strip_prefix("/").unwrap_or(&f.path);
            K::identify_path(&root.join(rel)).is_ok_and(|id| id == f.identity)
        })
    }

    /// Assemble an image (used by the preparers).
    pub fn new(parts: ImageParts<K>) -> Self {
        let ImageParts { key, path, files, objects, regions, entry, ops, load_bias, kind, relocs, build_time } = parts;
        let files = files.into_iter().map(|f| MappedFile { file: K::keep(f.file), ..f }).collect();
        Image { key, path, files, objects, regions, entry, ops, load_bias, kind, relocs, build_time, fallback: None }
    }

    /// A cache entry for a program that runs by plain exec, with the reason.
    pub fn refused(
        key: ImageKey,
        file: MappedFile<K>,
        kind: ProgramKind,
        reason: String,
        build_time: Duration,
    ) -> Self {
        let image = Image::new(ImageParts {
            key,
            path: file.path.clone(),
            files: vec![file],
            objects: Vec::new(),
            regions: Vec::new(),
            entry: EntryState::default(),
            ops: Vec::new(),
            load_bias: 0,
            kind,
            relocs: RelocSummary::default(),
            build_time,
        });
        Image { fallback: Some(reason), ..image }
    }

    /// Why this program runs by plain exec, if it does.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }
}
