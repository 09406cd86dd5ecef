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
