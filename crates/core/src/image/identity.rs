//! Identify a program file: BLAKE3 of its contents, memoized by file identity
//! (dev, inode, size, mtime, ctime), so a cache hit does not read the file again.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

/// What the kernel says about a file, enough to notice any change to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub mode: u32,
}

/// BLAKE3 of a file's contents.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn of(data: &[u8]) -> Self {
        ContentHash(*blake3::hash(data).as_bytes())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// What identifying a file found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identified {
    pub hash: ContentHash,
    /// Dynamically linked (PT_INTERP): imaged from a prototype.
    pub dynamic: bool,
    /// Its dynamic strings name `$ORIGIN` (or `${ORIGIN}`): the loader
    /// looks for its libraries relative to the directory it was run from,
    /// so that directory is part of its image's key. Remembered here, so a
    /// lookup need not read the file to know.
    pub origin: bool,
}

/// Identity -> content hash memo. Bounded: when full it starts over, which
/// costs one re-read per file and never a wrong answer (any change to a file
/// changes its identity).
#[derive(Debug, Default)]
pub struct IdentityMemo {
    map: Mutex<HashMap<FileIdentity, Identified>>,
}

const MEMO_LIMIT: usize = 4096;

impl IdentityMemo {
    pub fn get(&self, id: &FileIdentity) -> Option<Identified> {
        self.lock().get(id).copied()
    }

    pub fn insert(&self, id: FileIdentity, hash: Identified) {
        let mut map = self.lock();
        if map.len() >= MEMO_LIMIT {
            map.clear();
        }
        map.insert(id, hash);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FileIdentity, Identified>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Largest program file zygote reads (and hashes, and prepares).
pub const MAX_PROGRAM_BYTES: u64 = 1 << 30;

/// A program file that cannot be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a regular file")]
    NotRegular,
    #[error("program file is {size} bytes, more than the {MAX_PROGRAM_BYTES}-byte limit")]
    TooLarge { size: u64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Read a program file whole, with the identity it had when the read began
/// (its size is checked first): the bytes an image is hashed and built from.
pub fn read_program<K: crate::Kernel>(file: &K::File) -> Result<(FileIdentity, Vec<u8>), ReadError> {
    let id = K::identify(file)?;
    if id.mode & 0o170000 != 0o100000 {
        return Err(ReadError::NotRegular);
    }
    if id.size > MAX_PROGRAM_BYTES {
        return Err(ReadError::TooLarge { size: id.size });
    }
    let mut data = vec![0u8; id.size as usize];
    let n = K::read_at(file, &mut data, 0)?;
    data.truncate(n);
    Ok((id, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_kernel::{MemFile, MemKernel};

    #[test]
    fn a_program_is_read_whole_after_its_checks() {
        let f = MemFile::regular(b"\x7fELF and the rest");
        let (id, data) = read_program::<MemKernel>(&f).expect("read");
        assert_eq!((id, data.as_slice()), (f.identity, &b"\x7fELF and the rest"[..]));
        let dir = MemFile { identity: FileIdentity { mode: 0o040755, ..f.identity }, ..MemFile::regular(b"") };
        assert!(matches!(read_program::<MemKernel>(&dir), Err(ReadError::NotRegular)));
        let huge =
            MemFile { identity: FileIdentity { size: MAX_PROGRAM_BYTES + 1, ..f.identity }, ..MemFile::regular(b"") };
        assert!(
            matches!(read_program::<MemKernel>(&huge), Err(ReadError::TooLarge { size }) if size == MAX_PROGRAM_BYTES + 1)
        );
        // A file that shrank since its stat gives what is there.
        let shrunk = MemFile { identity: FileIdentity { size: 100, ..f.identity }, ..MemFile::regular(b"abc") };
        assert_eq!(read_program::<MemKernel>(&shrunk).expect("read").1, b"abc");
    }

    #[test]
    fn the_memo_starts_over_when_full() {
        let memo = IdentityMemo::default();
        let id = |ino| FileIdentity { dev: 1, ino, size: 0, mtime: (0, 0), ctime: (0, 0), mode: 0o100644 };
        let found = Identified { hash: ContentHash([1; 32]), dynamic: false, origin: false };
        for ino in 0..MEMO_LIMIT as u64 {
            memo.insert(id(ino), found);
        }
        assert_eq!(memo.get(&id(0)), Some(found));
        memo.insert(id(u64::MAX), found);
        assert_eq!(memo.get(&id(0)), None, "full: it started over");
        assert_eq!(memo.get(&id(u64::MAX)), Some(found));
    }
}
