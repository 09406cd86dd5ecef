//! Images for program files: identify the file (stat, then the identity memo,
//! then BLAKE3), look its key up in the cache, and build the image on a miss.
//! Reading a file and building a static image first reserve the memory they
//! will allocate in the memory cgroup ([`crate::cgroup`]): one that cannot
//! fit fails with [`SpawnError::Memory`] rather than have the daemon
//! OOM-killed, and nothing cached is lost.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rustix::fs::Mode;
use zygote_core::elf::ProgramKind;
use zygote_core::image::{
    ContentHash, FileIdentity, Identified, ImageError, ImageKey, MappedFile, ReadError, relocate,
};

use super::{MAX_PROGRAM_BYTES, SpawnError, Zygote, io_err, loader_env};
use crate::{Image, Linux, cgroup, prototype};

impl Zygote {
    /// Identify and prepare a program file through the cache, for this
    /// process's loader environment. A hit costs one `stat` and reads nothing.
    pub fn prepare(&self, path: &Path) -> Result<Arc<Image>, SpawnError> {
        let env: Vec<OsString> = std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                kv
            })
            .collect();
        self.prepare_for(path, &prototype::Environment { loader_env: &loader_env(&env), creds: None })
    }

    /// [`Zygote::prepare`] for a given loader environment (`LD_*`,
    /// `GLIBC_TUNABLES`; it matters for dynamically linked programs only).
    pub fn prepare_for(&self, path: &Path, env: &prototype::Environment<'_>) -> Result<Arc<Image>, SpawnError> {
        let _span = tracing::debug_span!("identify", path = %path.display()).entered();
        let st = rustix::fs::stat(path).map_err(io_err(path, "stat"))?;
        if let Some(img) = self.lookup(&crate::identity_from_stat(&st), path, None, env) {
            return Ok(img);
        }
        // Unknown identity or not cached: read and hash (the build reuses the bytes).
        let file = rustix::fs::open(path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, Mode::empty())
            .map_err(io_err(path, "open"))?;
        self.build(file, path, env)
    }

    /// Like [`Zygote::prepare_for`], for a file the caller opened (the daemon
    /// gets one from each client). `path` names it in messages and is where
    /// a prototype execs it from.
    pub fn prepare_fd(
        &self,
        file: BorrowedFd<'_>,
        path: &Path,
        env: &prototype::Environment<'_>,
    ) -> Result<Arc<Image>, SpawnError> {
        let _span = tracing::debug_span!("identify", path = %path.display()).entered();
        let id = crate::identity_of(file).map_err(io_err(path, "fstat"))?;
        if let Some(img) = self.lookup(&id, path, Some(file), env) {
            return Ok(img);
        }
        let file = file.try_clone_to_owned().map_err(|source| SpawnError::Internal { what: "dup", source })?;
        self.build(file, path, env)
    }

    /// The content hash of an open file (from the memo, or by reading it),
    /// with the identity it was computed for.
    pub fn identify_fd(&self, file: &OwnedFd) -> Result<(ContentHash, FileIdentity), SpawnError> {
        let path = Path::new("<fd>");
        let id = crate::identity_of(file).map_err(io_err(path, "fstat"))?;
        if let Some(i) = self.memo.get(&id) {
            return Ok((i.hash, id));
        }
        let (id, data) = read_program(file, path)?;
        let found = identified(&data);
        self.memo.insert(id, found);
        Ok((found.hash, id))
    }

    /// A static image depends on the program's bytes only, so every file with
    /// those bytes shares it (its file-backed regions are mapped from each
    /// requester's own file). A prototype image also depends on the file it
    /// maps and on who runs it, so it is keyed by the file (device, inode)
    /// and the credentials too; and, when the program or its loader
    /// environment uses `$ORIGIN`, by the directory the program `file`
    /// (opened as `path`) is run from, which that names.
    fn key_for(
        &self,
        found: Identified,
        id: &FileIdentity,
        path: &Path,
        file: Option<BorrowedFd<'_>>,
        env: &prototype::Environment<'_>,
    ) -> ImageKey {
        if found.dynamic {
            let origin = (found.origin || prototype::env_uses_origin(env)).then(|| prototype::origin_dir(path, file));
            prototype::key(found.hash, (id.dev, id.ino), origin.as_deref(), env, &self.machine)
        } else {
            ImageKey::relocate(found.hash)
        }
    }

    /// A cached image for a file identity seen before, if still valid: for
    /// `file` (when open) as `path`, whose directory is `$ORIGIN`.
    pub(super) fn lookup(
        &self,
        id: &FileIdentity,
        path: &Path,
        file: Option<BorrowedFd<'_>>,
        env: &prototype::Environment<'_>,
    ) -> Option<Arc<Image>> {
        let key = self.key_for(self.memo.get(id)?, id, path, file, env);
        let img = self.cache.get(&key)?;
        // A static image maps only sealed objects and the requester's own
        // file. A prototype image was captured from this very file (its key
        // names it) and maps libraries by path: make sure the file still
        // holds the bytes and every library path still names the file the
        // image maps.
        if img.kind() != ProgramKind::Dynamic
            || ((img.identity() == id || img.file_unchanged()) && img.libraries_unchanged())
        {
            return Some(img);
        }
        tracing::info!(%key, path = %img.path().display(), "a file the image maps changed: rebuilding");
        self.cache.invalidate(&key, &img);
        None
    }

    /// Read and hash `file`, then build its image through the cache.
    fn build(&self, file: OwnedFd, path: &Path, env: &prototype::Environment<'_>) -> Result<Arc<Image>, SpawnError> {
        let started = Instant::now();
        let (id, data) = read_program(&file, path)?;
        let found = identified(&data);
        self.memo.insert(id, found);
        let key = self.key_for(found, &id, path, Some(file.as_fd()), env);
        // The cache runs the build at most once (FnOnce): it may take the file.
        self.cache.get_or_build(key, || {
            let _span = tracing::debug_span!("prepare", %key).entered();
            let keep = file.try_clone().map_err(|e| SpawnError::Internal { what: "dup", source: e })?;
            let refused = |kind, reason: String| {
                tracing::info!(path = %path.display(), "{reason}; it will run by plain exec");
                let mapped = MappedFile { path: path.to_path_buf(), file: keep, identity: id };
                Image::refused(key, mapped, kind, reason, started.elapsed())
            };
            if !found.dynamic {
                // The segment copies and their objects, while they are made
                // (a file that does not decode fails in `prepare` below).
                let _building = match zygote_core::elf::decode(&data) {
                    Ok(info) => Some(reserve(path, relocate::build_bytes(&info))?),
                    Err(_) => None,
                };
                // What the kernel runs but an image cannot hold (a shared
                // library with an entry point, an executable stack, program
                // headers outside memory) runs by plain exec.
                return match relocate::prepare(path, file, id, &data, key, started) {
                    Err(e) if matches!(&e, ImageError::Elf { source, .. } if source.kernel_runs_it()) => {
                        let kind = if data.get(16) == Some(&3) { ProgramKind::StaticPie } else { ProgramKind::Static };
                        Ok(refused(kind, e.to_string()))
                    }
                    r => Ok::<_, SpawnError>(r?),
                };
            }
            Ok(match prototype::prepare(path, file, id, key, env, started)? {
                prototype::Prepared::Image(img) => *img,
                prototype::Prepared::Refused(refusal) => refused(ProgramKind::Dynamic, refusal.reason),
            })
        })
    }
}

/// What a program's bytes say about it: their hash, whether it is
/// dynamically linked and whether it uses `$ORIGIN`.
fn identified(data: &[u8]) -> Identified {
    let dynamic = prototype::interpreter(data).is_some();
    Identified { hash: ContentHash::of(data), dynamic, origin: dynamic && prototype::uses_origin(data) }
}

/// Reserve `bytes` in the memory cgroup for a build of `path`.
fn reserve(path: &Path, bytes: u64) -> Result<cgroup::Reservation, SpawnError> {
    cgroup::reserve(bytes).map_err(|source| {
        tracing::debug!(path = %path.display(), "{source}");
        SpawnError::Memory { path: path.to_path_buf(), source }
    })
}

/// Read a program file whole, checking its size and that the memory cgroup
/// has room for it first.
fn read_program(file: &OwnedFd, path: &Path) -> Result<(FileIdentity, Vec<u8>), SpawnError> {
    let size = rustix::fs::fstat(file).map_err(io_err(path, "fstat"))?.st_size;
    // A size above the limit is refused by the read, as too large.
    let _reading = match u64::try_from(size) {
        Ok(n) if n <= MAX_PROGRAM_BYTES => Some(reserve(path, n)?),
        _ => None,
    };
    zygote_core::image::read_program::<Linux>(file).map_err(|e| match e {
        ReadError::TooLarge { size } => SpawnError::TooLarge { path: path.to_path_buf(), size },
        ReadError::NotRegular => SpawnError::Io {
            path: path.to_path_buf(),
            what: "read",
            source: io::Error::from_raw_os_error(rustix::io::Errno::ACCESS.raw_os_error()),
        },
        ReadError::Io(source) => SpawnError::Io { path: path.to_path_buf(), what: "read", source },
    })
}
