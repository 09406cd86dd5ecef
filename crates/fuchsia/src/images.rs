//! Executables to images, through core's cache: what a launch and the Cache
//! protocol's Preload and Evict share.
//!
//! An executable arrives as a VMO (`Kernel::File`). Its identity (what
//! `Kernel::identify` says) is memoised to its content hash, so a repeated
//! launch of the same VMO reads nothing; otherwise it is read whole and
//! hashed, and the image is built from those same bytes (single flight, in
//! core's cache). A program the preparer cannot image (core's ELF or
//! relocation verdicts: a PT_INTERP executable, say) becomes a *refused*
//! image that the cache remembers; the service then loads the program as it
//! is ([`Images::loaded`]: a PT_INTERP program's interpreter, asked of the
//! launch's loader, or the program's own segments), as the platform
//! launcher would, and launches plainly only what cannot be loaded so.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use zygote_core::cache::{Cache, CacheConfig, CacheStats};
use zygote_core::elf::{ElfError, ProgramKind, decode_as_is};
use zygote_core::image::{
    ContentHash, FileIdentity, Identified, IdentityMemo, Image, ImageError, ImageKey, MappedFile, ReadError,
    read_program, relocate,
};
use zygote_core::kernel::Kernel;

use crate::interp::{AS_IS_V1, InterpError, Loader, LoaderAnswers, elf_type, interp_key, interp_name, load_as_is};
use crate::status::Status;

/// How much of a program is read to find its PT_INTERP program header.
const HEAD_BYTES: u64 = 16 << 10;

/// Builds images for one preparer version; the Zircon backend may bring its
/// own (a PT_INTERP preparer over `fuchsia.ldsvc.Loader`).
pub trait Preparer<K: Kernel>: Send + Sync {
    /// The cache key of the image of a program with these contents.
    fn key(&self, content: ContentHash) -> ImageKey;
    /// Build the image of `data` (the contents of `file`).
    fn prepare(&self, program: Program<K>) -> Result<Image<K>, ImageError>;
}

/// What a preparer builds from.
pub struct Program<'a, K: Kernel> {
    pub path: &'a Path,
    pub file: K::File,
    pub identity: FileIdentity,
    pub data: &'a [u8],
    pub key: ImageKey,
    /// When the work began (reading and hashing count as build time).
    pub started: Instant,
}

/// Core's relocating preparer: static and static-PIE programs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Relocating;

impl<K: Kernel> Preparer<K> for Relocating {
    fn key(&self, content: ContentHash) -> ImageKey {
        ImageKey::relocate(content)
    }
    fn prepare(&self, p: Program<K>) -> Result<Image<K>, ImageError> {
        relocate::prepare(p.path, p.file, p.identity, p.data, p.key, p.started)
    }
}

/// Why an executable could not be looked up or imaged.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("{path}: identifying the executable: {source}")]
    Identify { path: PathBuf, source: io::Error },
    #[error("{path}: reading the executable: {source}")]
    Read { path: PathBuf, source: ReadError },
    #[error("{path}: duplicating the executable's handle for the cache: {source}")]
    Duplicate { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Build(ImageError),
    #[error("{path}: fuchsia.ldsvc.Loader/LoadObject({name:?}) answered {status}")]
    Loader { path: PathBuf, name: String, status: Status },
    #[error("{path}: its interpreter {name:?} needs a loader (PA_LDSVC_LOADER), and the launch has none")]
    NoLoader { path: PathBuf, name: String },
    #[error(transparent)]
    Interp(InterpError),
    #[error("image key {key:?} is not {len} lowercase hex digits", len = KEY_HEX_LEN)]
    BadKey { key: String },
}

/// Length of an image key as the Cache protocol spells it (BLAKE3, hex).
pub const KEY_HEX_LEN: usize = 64;

/// Duplicates an executable's handle, so that the cache holds its own and
/// the launch keeps the caller's.
pub type Duplicate<K> = dyn Fn(&<K as Kernel>::File) -> io::Result<<K as Kernel>::File> + Send + Sync;

/// The image cache with its identity memo and preparer.
pub struct Images<K: Kernel, P> {
    cache: Cache<K>,
    memo: IdentityMemo,
    /// Interpreter image keys and the program each was built for (its key
    /// does not say), so evicting a program evicts them too.
    interps: Mutex<Vec<(ImageKey, ContentHash)>>,
    preparer: P,
    duplicate: Box<Duplicate<K>>,
}

impl<K: Kernel, P: Preparer<K>> Images<K, P> {
    pub fn new(cfg: CacheConfig, preparer: P, duplicate: Box<Duplicate<K>>) -> Self {
        let interps = Mutex::new(Vec::new());
        Images { cache: Cache::new(cfg), memo: IdentityMemo::default(), interps, preparer, duplicate }
    }

    pub fn cache(&self) -> &Cache<K> {
        &self.cache
    }

    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The image of `file`, built on a miss. `path` names it in messages and
    /// statistics (a process name, or Preload's name).
    pub fn image(&self, path: &Path, file: &K::File) -> Result<Arc<Image<K>>, ImagesError> {
        let started = Instant::now();
        let identity = K::identify(file).map_err(|source| ImagesError::Identify { path: path.into(), source })?;
        if let Some(found) = self.memo.get(&identity)
            && let Some(img) = self.cache.get(&self.preparer.key(found.hash))
        {
            return Ok(img);
        }
        let (identity, data) =
            read_program::<K>(file).map_err(|source| ImagesError::Read { path: path.into(), source })?;
        let hash = ContentHash::of(&data);
        self.memo.insert(identity, Identified { hash, dynamic: false, origin: false });
        let key = self.preparer.key(hash);
        self.cache.get_or_build(key, || self.build(path, file, identity, &data, key, started))
    }

    /// Build from a duplicate of the caller's handle, turning the preparer's
    /// verdicts on the program into a refused image (launched plainly) and
    /// keeping real failures as errors.
    fn build(
        &self,
        path: &Path,
        caller: &K::File,
        identity: FileIdentity,
        data: &[u8],
        key: ImageKey,
        started: Instant,
    ) -> Result<Image<K>, ImagesError> {
        let dup = || (self.duplicate)(caller).map_err(|source| ImagesError::Duplicate { path: path.into(), source });
        let program = Program { path, file: dup()?, identity, data, key, started };
        match self.preparer.prepare(program) {
            Ok(img) => Ok(img),
            Err(e @ (ImageError::Elf { .. } | ImageError::Reloc { .. } | ImageError::DynamicPointer { .. })) => {
                let kind = match &e {
                    ImageError::Elf { source: ElfError::Dynamic { .. }, .. } => ProgramKind::Dynamic,
                    _ => ProgramKind::Static,
                };
                let file = MappedFile { path: path.to_path_buf(), file: dup()?, identity };
                Ok(Image::refused(key, file, kind, e.to_string(), started.elapsed()))
            }
            Err(e) => Err(ImagesError::Build(e)),
        }
    }

    /// The image of a program the preparer refuses, loaded as it is, as
    /// the platform launcher loads it. A program with PT_INTERP (every
    /// ordinary Fuchsia executable) is the image of its interpreter, which
    /// `loader` gives (`LoadObject` of the PT_INTERP name, as process_builder
    /// asks), keyed by [`interp_key`] of the program's hash and the loader's
    /// answer; without a loader it cannot be loaded. Another program is
    /// loaded as it is ([`AS_IS_V1`]).
    pub fn loaded<H>(
        &self,
        path: &Path,
        file: &K::File,
        loader: Option<&mut dyn Loader<K, H>>,
    ) -> Result<Arc<Image<K>>, ImagesError> {
        let started = Instant::now();
        let hash = self.hash(path, file)?;
        let identity = K::identify(file).map_err(|source| ImagesError::Identify { path: path.into(), source })?;
        let read = |off: u64, len: usize| -> io::Result<Vec<u8>> {
            let mut b = vec![0u8; len];
            let n = K::read_at(file, &mut b, off)?;
            b.truncate(n);
            Ok(b)
        };
        let io = |source: io::Error| ImagesError::Read { path: path.into(), source: ReadError::Io(source) };
        let head = read(0, identity.size.min(HEAD_BYTES) as usize).map_err(io)?;
        let headers = |source| ImagesError::Interp(InterpError::Headers { path: path.into(), source });
        let h = decode_as_is(&head, identity.size).map_err(headers)?;
        let name = interp_name(path, &head, &h, read).map_err(ImagesError::Interp)?;
        let Some(name) = name else {
            let key = ImageKey { content: hash, preparer: AS_IS_V1 };
            if let Some(img) = self.cache.get(&key) {
                return Ok(img);
            }
            let (identity, data) =
                read_program::<K>(file).map_err(|source| ImagesError::Read { path: path.into(), source })?;
            return self.cache.get_or_build(key, || {
                let dup = (self.duplicate)(file);
                let dup = dup.map_err(|source| ImagesError::Duplicate { path: path.into(), source })?;
                self.load(Program { path, file: dup, identity, data: &data, key, started }, false)
            });
        };
        let loader = loader.ok_or_else(|| ImagesError::NoLoader { path: path.into(), name: name.clone() })?;
        let loaded = |status| ImagesError::Loader { path: path.into(), name: name.clone(), status };
        let ld = loader.load_object(&name).map_err(loaded)?;
        let ld_path = Path::new(&name);
        let ld_hash = self.hash(ld_path, &ld)?;
        let key = interp_key(&hash, &LoaderAnswers { config: None, objects: vec![(name.clone(), ld_hash)] });
        if let Some(img) = self.cache.get(&key) {
            return Ok(img);
        }
        let (ld_identity, data) =
            read_program::<K>(&ld).map_err(|source| ImagesError::Read { path: ld_path.into(), source })?;
        let program = Program { path, file: ld, identity: ld_identity, data: &data, key, started };
        let img = self.cache.get_or_build(key, || self.load(program, true))?;
        let live: Vec<ImageKey> = self.cache.images().iter().map(|i| *i.key()).collect();
        let mut interps = self.interps.lock().unwrap_or_else(|e| e.into_inner());
        interps.retain(|(k, _)| *k != key && live.contains(k));
        interps.push((key, hash));
        Ok(img)
    }

    /// The content hash of `file`: memoised by identity, else read.
    fn hash(&self, path: &Path, file: &K::File) -> Result<ContentHash, ImagesError> {
        let identity = K::identify(file).map_err(|source| ImagesError::Identify { path: path.into(), source })?;
        if let Some(found) = self.memo.get(&identity) {
            return Ok(found.hash);
        }
        let (identity, data) =
            read_program::<K>(file).map_err(|source| ImagesError::Read { path: path.into(), source })?;
        let hash = ContentHash::of(&data);
        self.memo.insert(identity, Identified { hash, dynamic: false, origin: false });
        Ok(hash)
    }

    /// Load `p` as it is: an interpreter at a random bias, or a program (an
    /// ET_EXEC where it is linked). What cannot be loaded so is a refused
    /// image (launched plainly by the backend, if it can).
    fn load(&self, p: Program<K>, interp: bool) -> Result<Image<K>, ImagesError> {
        let refuse = |p: Program<K>, why: String| {
            let file = MappedFile { path: p.path.to_path_buf(), file: p.file, identity: p.identity };
            let kind = if interp { ProgramKind::Dynamic } else { ProgramKind::Static };
            Ok(Image::refused(p.key, file, kind, why, p.started.elapsed()))
        };
        let h = match decode_as_is(p.data, p.data.len() as u64) {
            Ok(h) => h,
            Err(e) if interp => {
                let why = format!("{}: the interpreter: {e}", p.path.display());
                return refuse(p, why);
            }
            Err(e) => {
                let why = format!("{}: {e}", p.path.display());
                return refuse(p, why);
            }
        };
        if h.interp.is_some() {
            let why = if interp { "the interpreter has an interpreter" } else { "needs its interpreter (a loader)" };
            let why = format!("{}: {why}", p.path.display());
            return refuse(p, why);
        }
        let fixed = elf_type(p.data) == Some(zygote_core::elf::abi::ET_EXEC);
        let kind = match (interp, fixed) {
            (true, _) => ProgramKind::Dynamic,
            (false, true) => ProgramKind::Static,
            (false, false) => ProgramKind::StaticPie,
        };
        let bias = if fixed {
            0
        } else {
            let random =
                K::random_u64().map_err(|source| ImagesError::Read { path: p.path.into(), source: source.into() })?;
            crate::interp::random_bias(&h, random)
        };
        load_as_is(p, bias, kind).map_err(ImagesError::Interp)
    }

    /// Drop every cached image of these contents; how many.
    /// (Interpreter images built for these contents included.)
    pub fn evict_hash(&self, hash: &ContentHash) -> u64 {
        let mut keys: Vec<ImageKey> =
            self.cache.images().iter().map(|i| *i.key()).filter(|k| k.content == *hash).collect();
        let interps = self.interps.lock().unwrap_or_else(|e| e.into_inner());
        keys.extend(interps.iter().filter(|(_, program)| program == hash).map(|(k, _)| *k));
        drop(interps);
        keys.iter().filter(|k| self.cache.remove(k).is_some()).count() as u64
    }

    /// Drop the images of `key` as the Cache protocol spells it.
    pub fn evict_key(&self, key: &str) -> Result<u64, ImagesError> {
        Ok(self.evict_hash(&parse_key(key)?))
    }

    /// Drop the images built from `file`'s contents.
    pub fn evict_file(&self, path: &Path, file: &K::File) -> Result<u64, ImagesError> {
        let identity = K::identify(file).map_err(|source| ImagesError::Identify { path: path.into(), source })?;
        let hash = match self.memo.get(&identity) {
            Some(found) => found.hash,
            None => {
                let (_, data) =
                    read_program::<K>(file).map_err(|source| ImagesError::Read { path: path.into(), source })?;
                ContentHash::of(&data)
            }
        };
        Ok(self.evict_hash(&hash))
    }
}

/// An image key from its 64 lowercase hex digits.
pub fn parse_key(key: &str) -> Result<ContentHash, ImagesError> {
    let bad = || ImagesError::BadKey { key: key.chars().take(2 * KEY_HEX_LEN).collect() };
    let digits = key.as_bytes();
    if digits.len() != KEY_HEX_LEN || !digits.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
    }
    Ok(ContentHash(out))
}

#[cfg(test)]
pub(crate) mod tests;
