//! Executables to images, through core's cache: what a launch and the Cache
//! protocol's Preload and Evict share.
//!
//! An executable arrives as a VMO (`Kernel::File`). Its identity (what
//! `Kernel::identify` says) is memoised to its content hash, so a repeated
//! launch of the same VMO reads nothing; otherwise it is read whole and
//! hashed, and the image is built from those same bytes (single flight, in
//! core's cache). A program the preparer cannot image (core's ELF or
//! relocation verdicts: a PT_INTERP executable, say) becomes a *refused*
//! image that the cache remembers, and is then launched plainly by the
//! backend: the zygote never refuses what the platform launcher would run.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use zygote_core::cache::{Cache, CacheConfig, CacheStats};
use zygote_core::elf::{ElfError, ProgramKind};
use zygote_core::image::{
    ContentHash, FileIdentity, Identified, IdentityMemo, Image, ImageError, ImageKey, MappedFile, ReadError,
    read_program, relocate,
};
use zygote_core::kernel::Kernel;

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
    preparer: P,
    duplicate: Box<Duplicate<K>>,
}

impl<K: Kernel, P: Preparer<K>> Images<K, P> {
    pub fn new(cfg: CacheConfig, preparer: P, duplicate: Box<Duplicate<K>>) -> Self {
        Images { cache: Cache::new(cfg), memo: IdentityMemo::default(), preparer, duplicate }
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

    /// Drop every cached image of these contents; how many.
    pub fn evict_hash(&self, hash: &ContentHash) -> u64 {
        let keys: Vec<ImageKey> = self.cache.images().iter().map(|i| *i.key()).filter(|k| k.content == *hash).collect();
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
