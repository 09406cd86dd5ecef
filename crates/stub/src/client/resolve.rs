//! Which file to run: a name with a slash as given, else the first PATH
//! entry holding an executable regular file of that name (execvp's rule),
//! skipping, in masquerade mode, every entry that is this client itself
//! (same device and inode as `/proc/self/exe`: symlinks and hard links).

use crate::sys;

/// PATH when the environment has none (glibc's execvp default).
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";
const PATH_MAX: usize = 4096;
const ENOENT: i32 = 2;
const EACCES: i32 = 13;
const ENAMETOOLONG: i32 = 36;
const X_OK: usize = 1;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// A NUL-terminated path.
pub(crate) struct CPath {
    buf: [u8; PATH_MAX],
    len: usize,
}

impl CPath {
    pub(crate) fn new() -> Self {
        CPath { buf: [0; PATH_MAX], len: 0 }
    }

    /// The path without its NUL.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The NUL-terminated string.
    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.buf.as_ptr()
    }

    /// Set to the concatenation of `parts`; false when it does not fit.
    fn set(&mut self, parts: &[&[u8]]) -> bool {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total >= PATH_MAX {
            return false;
        }
        let mut n = 0;
        for p in parts {
            self.buf[n..n + p.len()].copy_from_slice(p);
            n += p.len();
        }
        self.buf[n] = 0;
        self.len = n;
        true
    }
}

/// A file's (device, inode).
pub(crate) type FileId = (u64, u64);

/// `stat(path)`: (device, inode, mode), or the errno.
fn stat(path: &CPath) -> Result<(FileId, u32), i32> {
    // struct stat on x86_64: st_dev, st_ino, st_nlink (u64), st_mode (u32), ...
    let mut st = [0u64; 18];
    // SAFETY: `path` is NUL-terminated; the kernel writes a 144-byte struct
    // stat into `st`, a live local of that size.
    let r = unsafe {
        sys::syscall6(
            sys::SYS_NEWFSTATAT,
            sys::AT_FDCWD as usize,
            path.as_ptr() as usize,
            st.as_mut_ptr() as usize,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        return Err(-r as i32);
    }
    Ok(((st[0], st[1]), st[3] as u32))
}

/// This executable's identity (for skipping its own links on PATH).
fn own_identity() -> Option<FileId> {
    let mut p = CPath::new();
    p.set(&[b"/proc/self/exe"]);
    stat(&p).ok().map(|(id, _)| id)
}

/// What a masquerade search passes over: the PATH entry the caller found
/// this client through (by name, no system call), and every file that is
/// this client (its identity read once, at the first candidate).
pub(crate) struct Skip<'a> {
    dir: Option<&'a [u8]>,
    own: Option<Option<FileId>>,
}

impl<'a> Skip<'a> {
    pub(crate) fn new(dir: Option<&'a [u8]>) -> Self {
        Skip { dir, own: None }
    }

    fn own(&mut self) -> Option<FileId> {
        *self.own.get_or_insert_with(own_identity)
    }
}

/// May we execute `path` (`access(X_OK)`; the client is no set-ID program,
/// so real and effective ids are the same)?
fn executable(path: &CPath) -> Result<(), i32> {
    // SAFETY: a NUL-terminated path and integers.
    let r = unsafe { sys::syscall3(sys::SYS_FACCESSAT, sys::AT_FDCWD as usize, path.as_ptr() as usize, X_OK) };
    if r < 0 { Err(-r as i32) } else { Ok(()) }
}

/// `path` as given (execve's rule: no search).
pub(crate) fn exact(path: &[u8], out: &mut CPath) -> Result<(), i32> {
    if out.set(&[path]) { Ok(()) } else { Err(ENAMETOOLONG) }
}

/// Resolve `name` into `out`. The errno when nothing is found: EACCES when
/// a candidate was there but not executable, else ENOENT.
pub(crate) fn find(
    name: &[u8],
    path_var: Option<&[u8]>,
    mut skip: Option<Skip<'_>>,
    out: &mut CPath,
) -> Result<(), i32> {
    if name.contains(&b'/') {
        return exact(name, out);
    }
    let mut seen = ENOENT;
    for dir in path_var.unwrap_or(DEFAULT_PATH).split(|&c| c == b':') {
        if skip.as_ref().is_some_and(|s| s.dir == Some(dir)) {
            continue;
        }
        // An empty entry is the working directory.
        let fits = if dir.is_empty() { out.set(&[name]) } else { out.set(&[dir, b"/", name]) };
        if !fits {
            continue;
        }
        match executable(out) {
            Ok(()) => {}
            Err(EACCES) => {
                seen = EACCES;
                continue;
            }
            Err(_) => continue,
        }
        match stat(out) {
            Ok((id, mode)) if mode & S_IFMT == S_IFREG => {
                if skip.as_mut().is_none_or(|s| s.own() != Some(id)) {
                    return Ok(());
                }
            }
            _ => continue,
        }
    }
    Err(seen)
}
