//! Sealed memfds: the Linux form of a segment object.
//!
//! A sealed memfd is immutable (F_SEAL_WRITE | SHRINK | GROW | SEAL): no write,
//! no writable shared mapping, no resize, no hole punching, no further seals.
//! A `MAP_PRIVATE` mapping of it is the copy-on-write child a process gets.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, ftruncate, memfd_create};
use rustix::io::Errno;

/// Every seal an image object carries.
pub const IMAGE_SEALS: SealFlags =
    SealFlags::WRITE.union(SealFlags::SHRINK).union(SealFlags::GROW).union(SealFlags::SEAL);

const PAGE: usize = 4096;

/// An immutable memory object holding a segment's relocated pages.
#[derive(Debug)]
pub struct SealedObject {
    fd: OwnedFd,
    len: u64,
    /// Bytes actually written (all-zero pages are left as holes).
    resident: u64,
}

impl zygote_core::kernel::SealedObject for SealedObject {
    fn len(&self) -> u64 {
        self.len
    }
}

impl SealedObject {
    /// Create a sealed memfd holding `bytes`. All-zero pages are not written, so
    /// they take no memory until a process writes its private copy.
    pub fn create(name: &str, bytes: &[u8]) -> Result<Self, Errno> {
        Self::fill(memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?, bytes)
    }

    /// Like [`SealedObject::create`], for an object that will be exec'd.
    /// MFD_EXEC (Linux 6.3+) keeps it executable under `vm.memfd_noexec = 1`;
    /// older kernels reject the flag and make memfds executable anyway.
    pub fn create_exec(name: &str, bytes: &[u8]) -> Result<Self, Errno> {
        let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        let fd = match memfd_create(name, flags | MemfdFlags::EXEC) {
            Err(Errno::INVAL) => memfd_create(name, flags)?,
            r => r?,
        };
        Self::fill(fd, bytes)
    }

    fn fill(fd: OwnedFd, bytes: &[u8]) -> Result<Self, Errno> {
        let fd = crate::process::high_fd(fd);
        ftruncate(&fd, bytes.len() as u64)?;
        let mut resident = 0u64;
        // Coalesce runs of non-zero pages into one pwrite each.
        let mut page = 0;
        let pages = bytes.len().div_ceil(PAGE);
        while page < pages {
            if is_zero(page_of(bytes, page)) {
                page += 1;
                continue;
            }
            let start = page;
            while page < pages && !is_zero(page_of(bytes, page)) {
                page += 1;
            }
            let (lo, hi) = (start * PAGE, (page * PAGE).min(bytes.len()));
            write_all_at(&fd, &bytes[lo..hi], lo as u64)?;
            resident += (hi - lo) as u64;
        }
        fcntl_add_seals(&fd, IMAGE_SEALS)?;
        Ok(SealedObject { fd, len: bytes.len() as u64, resident })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes holding data (the rest are holes that read as zero).
    pub fn resident(&self) -> u64 {
        self.resident
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn page_of(bytes: &[u8], page: usize) -> &[u8] {
    &bytes[page * PAGE..((page + 1) * PAGE).min(bytes.len())]
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

fn write_all_at(fd: &OwnedFd, buf: &[u8], off: u64) -> Result<(), Errno> {
    crate::fd::pwrite_all(fd, buf, off)
}

/// Create an unsealed memfd holding `bytes` (for per-spawn plans).
pub fn memfd_with(name: &str, bytes: &[u8]) -> Result<OwnedFd, Errno> {
    let fd = crate::process::high_fd(memfd_create(name, MemfdFlags::CLOEXEC)?);
    write_all_at(&fd, bytes, 0)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::fcntl_get_seals;

    #[test]
    fn sealed_and_sparse() {
        let mut bytes = vec![0u8; 3 * PAGE + 100];
        bytes[PAGE + 5] = 7;
        bytes[3 * PAGE + 1] = 9;
        let obj = SealedObject::create("t", &bytes).unwrap();
        assert_eq!(obj.len(), bytes.len() as u64);
        assert_eq!(obj.resident(), (PAGE + 100) as u64);
        assert!(fcntl_get_seals(obj.fd()).unwrap().contains(IMAGE_SEALS));
        let mut back = vec![0u8; bytes.len()];
        assert_eq!(rustix::io::pread(obj.fd(), &mut back, 0).unwrap(), bytes.len());
        assert_eq!(back, bytes);
        assert_eq!(rustix::io::pwrite(obj.fd(), b"x", 0), Err(Errno::PERM));
    }
}
