//! The [`Zircon`] kernel as zygote-core sees it: sealed objects are VMOs
//! whose only handle lacks `ZX_RIGHT_WRITE` (the zygote never maps them), a
//! file is the VMO of a program file with the identity fuchsia.io gave it,
//! randomness comes from the kernel's CPRNG.

use std::io;
use std::path::Path;
use std::time::Instant;

use zygote_core::elf::ProgramKind;
use zygote_core::image::{ContentHash, FileIdentity, Image, ImageError, ImageKey, RegionKind, relocate};
use zygote_core::kernel::{Kernel, SealedObject};
use zygote_fuchsia::images::Program;

use crate::interp::InterpError;
use crate::zx::{AsHandleRef, HandleBased, Koid, Rights, Status, Vmo, cprng_draw};

/// The Zircon kernel.
#[derive(Debug)]
pub struct Zircon;

/// An image of Zircon objects.
pub type ZirconImage = Image<Zircon>;

/// The rights a sealed VMO keeps: it can be read, mapped, named, duplicated
/// and given children, never written.
pub const SEALED_RIGHTS: Rights =
    Rights::from_bits(Rights::BASIC.bits() | Rights::PROPERTY.bits() | Rights::READ.bits() | Rights::MAP.bits());

/// A VMO sealed by dropping `ZX_RIGHT_WRITE`: no handle to it can write, so
/// its `SNAPSHOT_AT_LEAST_ON_WRITE` children never see a change.
#[derive(Debug)]
pub struct SealedVmo {
    vmo: Vmo,
    len: u64,
    koid: Koid,
}

impl SealedVmo {
    /// A VMO holding `bytes`, named `name`, sealed.
    pub fn create(name: &str, bytes: &[u8]) -> Result<Self, Status> {
        let vmo = Vmo::create(bytes.len() as u64)?;
        vmo.write(bytes, 0)?;
        vmo.set_name(name)?;
        let vmo = vmo.replace_handle(SEALED_RIGHTS)?;
        let koid = vmo.get_koid()?;
        Ok(SealedVmo { vmo, len: bytes.len() as u64, koid })
    }
    pub fn vmo(&self) -> &Vmo {
        &self.vmo
    }
    pub fn koid(&self) -> Koid {
        self.koid
    }
}

impl SealedObject for SealedVmo {
    fn len(&self) -> u64 {
        self.len
    }
}

/// A program file: its VMO (read and execute rights, as fuchsia.io's
/// `GetBackingMemory` gives it) and the identity its attributes gave.
#[derive(Debug)]
pub struct FileVmo {
    pub vmo: Vmo,
    pub identity: FileIdentity,
}

impl FileVmo {
    /// A program VMO as a launch request brings it (`LaunchInfo.executable`,
    /// a Preload's): its identity is its koid, which the kernel never reuses,
    /// and its content size. A backing-memory VMO does not change, so a
    /// second launch of the same VMO is an identity-memo hit.
    pub fn new(vmo: Vmo) -> Result<FileVmo, Status> {
        let (koid, size) = (vmo.get_koid()?, vmo.get_content_size()?);
        let identity = FileIdentity { dev: 0, ino: koid.0, size, mtime: (0, 0), ctime: (0, 0), mode: 0o100_555 };
        Ok(FileVmo { vmo, identity })
    }
}

impl Kernel for Zircon {
    type Object = SealedVmo;
    type File = FileVmo;

    fn seal(name: &str, bytes: &[u8]) -> io::Result<SealedVmo> {
        Ok(SealedVmo::create(name, bytes)?)
    }
    fn random_u64() -> io::Result<u64> {
        let mut b = [0u8; 8];
        cprng_draw(&mut b);
        Ok(u64::from_le_bytes(b))
    }
    /// The identity recorded when the file was opened, if its VMO still has
    /// that size (a backing-memory VMO is a snapshot: it does not change).
    fn identify(file: &FileVmo) -> io::Result<FileIdentity> {
        let size = file.vmo.get_content_size()?;
        if size != file.identity.size {
            return Ok(FileIdentity { size, ..file.identity });
        }
        Ok(file.identity)
    }
    /// Paths are fuchsia.io's (the FIDL server's), not the kernel's: the
    /// only caller is the check of a prototype image's libraries, and
    /// prototype images are Linux-only.
    fn identify_path(path: &Path) -> io::Result<FileIdentity> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{}: Zircon has no paths; identify the file through fuchsia.io", path.display()),
        ))
    }
    fn read_at(file: &FileVmo, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let size = file.vmo.get_content_size()?;
        let n = size.saturating_sub(offset).min(buf.len() as u64) as usize;
        file.vmo.read(&mut buf[..n], offset)?;
        Ok(n)
    }
}

/// Name every sealed VMO of `image` `zyg:<key8>:phdr<N>`, so memory tools
/// attribute them to the image (the core names them before the key is
/// known to the kernel; `PROPERTY` rights let the sealed handle rename).
pub fn name_objects(image: &ZirconImage) -> Result<(), Status> {
    let key = image.key().to_string();
    for r in image.regions() {
        if let RegionKind::Sealed { object, .. } = r.kind
            && let Some(o) = image.objects().get(object)
        {
            o.vmo().set_name(&zygote_core::vmar::vmo_name(&key, &format!("phdr{}", r.segment)))?;
        }
    }
    Ok(())
}

/// Build the image of a static program held in `file` (what the cache's
/// builder calls on a miss): read it, key it by content, relocate and seal.
pub fn prepare_static(path: &Path, file: FileVmo) -> Result<ZirconImage, PrepareError> {
    let started = Instant::now();
    let mut data = vec![0u8; file.identity.size as usize];
    let n = Zircon::read_at(&file, &mut data, 0).map_err(|source| PrepareError::Read { path: path.into(), source })?;
    data.truncate(n);
    let key = ImageKey::relocate(ContentHash::of(&data));
    let identity = file.identity;
    let image = relocate::prepare::<Zircon>(path, file, identity, &data, key, started)?;
    name_objects(&image).map_err(|s| PrepareError::Name { path: path.into(), source: s.into() })?;
    Ok(image)
}

/// Build the image of a program started through an interpreter: `interp`
/// is the VMO `fuchsia.ldsvc.Loader/LoadObject` answered for the program's
/// PT_INTERP name (the service asks, `zygote_fuchsia::images::Images::interp`,
/// as process_builder's `get_dynamic_linker` does), and `key` is
/// [`crate::interp::interp_key`] of the program's content hash and every
/// loader answer. The interpreter is placed at a random page in the
/// static-PIE window, once per image.
pub fn prepare_interp(path: &Path, interp: FileVmo, key: ImageKey) -> Result<ZirconImage, PrepareError> {
    let started = Instant::now();
    let mut data = vec![0u8; interp.identity.size as usize];
    let n =
        Zircon::read_at(&interp, &mut data, 0).map_err(|source| PrepareError::Read { path: path.into(), source })?;
    data.truncate(n);
    let h = zygote_core::elf::decode_as_is(&data, data.len() as u64)
        .map_err(|source| PrepareError::Interp(InterpError::Headers { path: path.into(), source }))?;
    let r = Zircon::random_u64().map_err(|source| PrepareError::Read { path: path.into(), source })?;
    let bias = crate::interp::random_bias(&h, r);
    let identity = interp.identity;
    let program = Program { path, file: interp, identity, data: &data, key, started };
    crate::interp::load_as_is::<Zircon>(program, bias, ProgramKind::Dynamic).map_err(PrepareError::Interp)
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{path}: reading the program's VMO: {source}")]
    Read { path: std::path::PathBuf, source: io::Error },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Interp(InterpError),
    #[error("{path}: naming the sealed VMOs: {source}")]
    Name { path: std::path::PathBuf, source: io::Error },
}
