//! exec's file-system questions ([`zygote_core::exec::ExecFs`]) answered by
//! this host's file system, as execve would find them.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Access, access};
use zygote_core::exec::{self, ExecFs, FileType, Launch, ResolveError};

/// The host's file system, seen by this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostFs;

impl ExecFs for HostFs {
    fn stat(&self, path: &Path) -> io::Result<(FileType, u32)> {
        let meta = std::fs::metadata(path)?;
        let kind = if meta.is_dir() {
            FileType::Directory
        } else if meta.is_file() {
            FileType::Regular
        } else {
            FileType::Other
        };
        Ok((kind, meta.mode()))
    }

    fn may_execute(&self, path: &Path) -> bool {
        access(path, Access::EXEC_OK).is_ok()
    }

    fn read_head(&self, path: &Path, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(n);
        // `take` + `read_to_end` retries EINTR and stops at `n` or the end.
        std::fs::File::open(path)?.take(n as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// PATH lookup as execvp does it, on this host.
pub fn find_program(program: &OsStr, path_var: Option<&OsStr>, cwd: Option<&Path>) -> Result<PathBuf, ResolveError> {
    exec::find_program(&HostFs, program, path_var, cwd)
}

/// What `argv` (with `program`, its first word as named) runs on this host:
/// the program found as execvp finds it in `env`'s PATH, relative to `cwd`,
/// then its `#!` lines followed.
pub fn resolve(
    program: &OsStr,
    argv: Vec<OsString>,
    env: &[OsString],
    cwd: Option<&Path>,
) -> Result<Launch, ResolveError> {
    use std::os::unix::ffi::OsStrExt;
    let path_var = env.iter().find_map(|kv| kv.as_bytes().strip_prefix(b"PATH=")).map(OsStr::from_bytes);
    let found = find_program(program, path_var, cwd)?;
    follow_interpreters(found, argv, cwd)
}

/// Follow `#!` lines on this host (see [`zygote_core::exec::follow_interpreters`]).
pub fn follow_interpreters(path: PathBuf, argv: Vec<OsString>, cwd: Option<&Path>) -> Result<Launch, ResolveError> {
    exec::follow_interpreters(&HostFs, path, argv, cwd)
}
