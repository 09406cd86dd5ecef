//! A kernel made of memory, for the core's unit tests: sealed objects are
//! byte vectors and files are byte vectors with an identity. (The Linux
//! backend's own tests run the real kernel.)

use std::io;
use std::path::Path;

use crate::image::{
    ContentHash, EntryState, FileIdentity, Image, ImageKey, ImageParts, ImageRegion, MappedFile, RegionKind,
    RelocSummary,
};
use crate::kernel::{Kernel, SealedObject};

#[derive(Debug)]
pub struct MemKernel;

#[derive(Debug)]
pub struct MemObject(pub Vec<u8>);

impl SealedObject for MemObject {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

#[derive(Debug)]
pub struct MemFile {
    pub bytes: Vec<u8>,
    pub identity: FileIdentity,
}

impl MemFile {
    /// A regular file holding `bytes`.
    pub fn regular(bytes: &[u8]) -> Self {
        let identity =
            FileIdentity { dev: 1, ino: 2, size: bytes.len() as u64, mtime: (3, 0), ctime: (3, 0), mode: 0o100755 };
        MemFile { bytes: bytes.to_vec(), identity }
    }
}

impl Kernel for MemKernel {
    type Object = MemObject;
    type File = MemFile;

    fn seal(_name: &str, bytes: &[u8]) -> io::Result<MemObject> {
        Ok(MemObject(bytes.to_vec()))
    }
    fn random_u64() -> io::Result<u64> {
        Ok(0x1234_5678)
    }
    fn identify(file: &MemFile) -> io::Result<FileIdentity> {
        Ok(file.identity)
    }
    fn identify_path(_path: &Path) -> io::Result<FileIdentity> {
        Err(io::ErrorKind::NotFound.into())
    }
    fn read_at(file: &MemFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let from = (offset as usize).min(file.bytes.len());
        let n = buf.len().min(file.bytes.len() - from);
        buf[..n].copy_from_slice(&file.bytes[from..from + n]);
        Ok(n)
    }
}

/// An image of `sealed` bytes in one sealed region, keyed by `tag`.
pub fn image(tag: u8, sealed: usize) -> Image<MemKernel> {
    let objects = vec![MemObject(vec![tag; sealed])];
    let region = ImageRegion {
        vaddr: 0x1000,
        len: sealed as u64,
        prot: 3,
        kind: RegionKind::Sealed { object: 0, offset: 0 },
        segment: 0,
        relro: false,
    };
    let file = MemFile::regular(&[tag]);
    Image::new(ImageParts {
        key: ImageKey::relocate(ContentHash([tag; 32])),
        path: format!("/p{tag}").into(),
        files: vec![MappedFile { path: format!("/p{tag}").into(), identity: file.identity, file }],
        objects,
        regions: vec![region],
        entry: EntryState::default(),
        ops: Vec::new(),
        load_bias: 0,
        kind: crate::elf::ProgramKind::StaticPie,
        relocs: RelocSummary::default(),
        build_time: std::time::Duration::from_micros(5),
    })
}
