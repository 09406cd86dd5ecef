//! Starting a process from a prepared image: check the request and the
//! program file, then try a pre-started launcher and fall back to exec'ing the
//! stub (retrying placements that collide with the stub's stack or vDSO).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use zygote_core::elf::ProgramKind;
use zygote_core::image::FileIdentity;
use zygote_plan::{Stage, StatusRecord};

use super::request::check_fd_targets;
use super::{Child, Launch, MAX_PLACEMENT_RETRIES, SpawnError, StartOptions, Zygote, io_err};
use crate::Image;
use crate::process;
use crate::restrictions::ChildRestrictions;

/// The requester's program file, checked as execve would check it.
pub(super) struct ProgramFile {
    pub(super) identity: FileIdentity,
    /// Set-user-ID, set-group-ID or with file capabilities: only the kernel's
    /// exec may start it (with the privileges execve would give).
    pub(super) privileged: bool,
}

impl ProgramFile {
    pub(super) fn check(fd: BorrowedFd<'_>, path: &Path) -> Result<Self, SpawnError> {
        let identity = crate::identity_of(fd).map_err(io_err(path, "fstat"))?;
        if identity.mode & 0o170000 != 0o100000 {
            return Err(SpawnError::Denied { path: path.to_path_buf(), why: "not a regular file" });
        }
        let fs = rustix::fs::fstatvfs(fd).map_err(io_err(path, "fstatvfs"))?;
        if fs.f_flag.contains(rustix::fs::StatVfsMountFlags::NOEXEC) {
            return Err(SpawnError::Denied { path: path.to_path_buf(), why: "on a noexec mount" });
        }
        let setid = identity.mode & 0o6000 != 0;
        let privileged = setid || rustix::fs::fgetxattr(fd, "security.capability", &mut [0u8; 64]).is_ok();
        Ok(ProgramFile { identity, privileged })
    }
}

/// One spawn's inputs, for either way of starting it.
#[derive(Clone, Copy)]
pub(super) struct Start<'a> {
    pub(super) image: &'a Arc<Image>,
    pub(super) launch: &'a Launch,
    pub(super) opts: &'a StartOptions<'a>,
    /// Process name (comm).
    pub(super) name: &'a [u8],
    /// The caller's signal mask (every signal is blocked meanwhile).
    pub(super) old_mask: &'a libc::sigset_t,
    pub(super) program: &'a ProgramFile,
}

impl Start<'_> {
    /// Runs by plain exec of the program file: the image is a refused one,
    /// only the kernel may give the program its privileges, or the
    /// requester's personality changes how the kernel lays it out.
    pub(super) fn plain_exec(&self) -> bool {
        self.image.fallback().is_some()
            || self.program.privileged
            || self.opts.restrict.is_some_and(ChildRestrictions::needs_plain_exec)
    }
}

impl Zygote {
    /// Start `launch` from an already prepared image (the daemon's path: the
    /// client resolved the program and opened it).
    pub fn start(&self, image: &Arc<Image>, launch: &Launch, opts: &StartOptions<'_>) -> Result<Child, SpawnError> {
        check_fd_targets(opts.fds)?;
        self.check_fd_limit(opts)?;
        let program = ProgramFile::check(opts.program, &launch.program)?;
        if image.kind() == ProgramKind::Dynamic
            && (image.identity().dev, image.identity().ino) != (program.identity.dev, program.identity.ino)
        {
            return Err(SpawnError::Internal {
                what: "a prototype image of another file",
                source: io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        // A prototype image has fixed addresses; the kernel places the stub's
        // stack and vDSO at random. If one of them sits where the image goes,
        // the stub refuses (EEXIST, nothing clobbered) and another exec gets
        // another placement.
        let mut attempt = 0;
        loop {
            match self.start_once(image, launch, opts, &program) {
                Err(SpawnError::Launcher { collision: true, .. }) if attempt < MAX_PLACEMENT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, "address collision with the stub's stack or vDSO: retrying");
                }
                r => return r,
            }
        }
    }

    /// A target at or above the program's soft RLIMIT_NOFILE is a bad
    /// request: `dup2` to it fails (EBADF) for the requester too.
    fn check_fd_limit(&self, opts: &StartOptions<'_>) -> Result<(), SpawnError> {
        let limit = match opts.restrict {
            Some(r) => Some(r.nofile()),
            None => self.nofile.or_else(|| rustix::process::getrlimit(rustix::process::Resource::Nofile).current),
        }
        .unwrap_or(u64::MAX);
        match opts.fds.iter().find(|&&(_, t)| t as u64 >= limit) {
            Some((_, t)) => Err(SpawnError::Request(format!(
                "fd target {t} is not below the program's RLIMIT_NOFILE soft limit {limit} (dup2 would fail: EBADF)"
            ))),
            None => Ok(()),
        }
    }

    fn start_once(
        &self,
        image: &Arc<Image>,
        launch: &Launch,
        opts: &StartOptions<'_>,
        program: &ProgramFile,
    ) -> Result<Child, SpawnError> {
        let default_name = launch.exec_path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        let name = opts.name.filter(|n| !n.is_empty()).unwrap_or(default_name);
        let _span = tracing::debug_span!("start", program = %launch.program.display()).entered();
        // Every signal stays blocked until the new process has its own mask:
        // no handler of ours may run in a vfork child sharing our memory.
        let old_mask =
            process::block_all_signals().map_err(|source| SpawnError::Internal { what: "blocking signals", source })?;
        let start = Start { image, launch, opts, name, old_mask: &old_mask, program };
        let result = (|| {
            let launched = if self.prestartable(&start) { self.start_prestarted(&start)? } else { None };
            match launched {
                Some(child) => Ok(child),
                None => self.start_exec(&start),
            }
        })();
        process::restore_signals(&old_mask);
        result
    }
}

/// The error for a failure record from the stub or the pre-exec child.
pub(super) fn launcher_error(rec: StatusRecord, launch: &Launch, cwd: Option<&Path>) -> SpawnError {
    let source = || io::Error::from_raw_os_error(rec.errno);
    match Stage::from_u32(rec.stage) {
        Some(Stage::ChildRestrict) => {
            return SpawnError::Restriction { path: launch.program.clone(), step: rec.index, source: source() };
        }
        Some(Stage::ChildCwd) => {
            return SpawnError::Cwd { cwd: cwd.unwrap_or(Path::new(".")).to_path_buf(), source: source() };
        }
        _ => {}
    }
    let stage = Stage::from_u32(rec.stage).map_or_else(|| format!("stage {}", rec.stage), |s| format!("{s:?}"));
    let collision =
        rec.errno == libc::EEXIST && matches!(Stage::from_u32(rec.stage), Some(Stage::Map) | Some(Stage::Vdso));
    SpawnError::Launcher {
        collision,
        path: launch.program.clone(),
        stage,
        index: rec.index,
        addr: rec.addr,
        source: io::Error::from_raw_os_error(rec.errno),
    }
}

/// The stub's (or the pre-exec child's) verdict: `None` at EOF (it closed the
/// pipe right before jumping to the program), else its failure record.
pub(super) fn read_status(fd: &OwnedFd) -> Option<StatusRecord> {
    let mut buf = [0u8; StatusRecord::SIZE];
    let n = crate::fd::read_full(fd, &mut buf).unwrap_or(0);
    if n == 0 {
        return None;
    }
    // A short record still means failure; decode what arrived.
    Some(StatusRecord::decode(&buf).unwrap_or(StatusRecord {
        stage: 0,
        index: 0,
        errno: libc_eio(),
        detail: 0,
        addr: 0,
    }))
}

fn libc_eio() -> i32 {
    rustix::io::Errno::IO.raw_os_error()
}

/// The kernel interface's "map an image's plan into a fresh process and
/// start it": what the resolved launch needs, and the per-spawn options.
impl zygote_core::kernel::Starter<crate::Linux> for Zygote {
    type Options<'a> = (&'a Launch, StartOptions<'a>);
    type Process = Child;
    type Error = SpawnError;
    fn start(&self, image: &Arc<Image>, (launch, opts): &Self::Options<'_>) -> Result<Child, SpawnError> {
        Zygote::start(self, image, launch, opts)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, RawFd};
    use std::path::PathBuf;
    use std::time::Duration;

    use zygote_core::cache::CacheConfig;
    use zygote_core::image::{ContentHash, ImageKey, MappedFile};

    use super::*;

    /// Fd targets are checked before anything else: a bad one is the
    /// caller's error, and no process starts.
    #[test]
    fn start_refuses_bad_fd_targets_first() {
        let zygote = Zygote::new(CacheConfig { max_entries: 1, max_bytes: 1 << 20 }).unwrap();
        let file = crate::dev_null().unwrap();
        let identity = crate::identity_of(&file).unwrap();
        let mapped = MappedFile { path: PathBuf::from("/dev/null"), file, identity };
        let key = ImageKey::relocate(ContentHash([1; 32]));
        let image = Arc::new(Image::refused(key, mapped, ProgramKind::Static, "test".into(), Duration::ZERO));
        let launch = Launch { program: "/dev/null".into(), argv: vec!["null".into()], exec_path: "/dev/null".into() };
        let program = crate::dev_null().unwrap();
        let start = |fds: &[(RawFd, RawFd)]| {
            let opts = StartOptions {
                program: program.as_fd(),
                env: &[],
                cwd: None,
                name: None,
                fds,
                creds: None,
                restrict: None,
            };
            zygote.start(&image, &launch, &opts)
        };
        for fds in [&[(0, -1)][..], &[(0, 70_000)], &[(0, 4), (1, 4)]] {
            match start(fds) {
                Err(SpawnError::Request(_)) => {}
                other => panic!("{fds:?}: {other:?}"),
            }
        }
        // Valid targets get past the check (to the program file's: /dev/null
        // is no regular file).
        match start(&[(0, 4), (1, 5)]) {
            Err(SpawnError::Denied { why: "not a regular file", .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    /// Start through the kernel interface alone, as generic code would.
    fn start_and_wait<S: zygote_core::kernel::Starter<crate::Linux>>(
        s: &S,
        image: &Arc<Image>,
        options: &S::Options<'_>,
    ) -> zygote_core::ExitStatus {
        use zygote_core::kernel::Process as _;
        let mut p = s.start(image, options).unwrap_or_else(|e| panic!("start: {e}"));
        assert!(p.id() > 0);
        p.wait().expect("wait")
    }

    #[test]
    fn the_kernel_interface_starts_and_waits() {
        let z = Zygote::new(zygote_core::CacheConfig::default()).expect("zygote");
        let path = std::path::Path::new("/bin/true");
        let file = std::fs::File::open(path).expect("open /bin/true");
        let env = [];
        let image = z
            .prepare_fd(file.as_fd(), path, &crate::prototype::Environment { loader_env: &[], creds: None })
            .expect("prepare /bin/true");
        let launch = Launch { program: path.into(), argv: vec!["true".into()], exec_path: path.into() };
        let opts = StartOptions {
            program: file.as_fd(),
            env: &env,
            cwd: None,
            name: None,
            fds: &[],
            creds: None,
            restrict: None,
        };
        assert_eq!(start_and_wait(&z, &image, &(&launch, opts)), zygote_core::ExitStatus::Exited(0));
    }
}
