//! The in-process [`Zygote`]: resolve a program, get its image from the cache
//! (building it on a miss), and start it from a fresh stub process, exec'd or
//! pre-started. One file per concern; this one holds the zygote and its errors.

mod child;
mod exec;
mod prepare;
mod prestarted;
mod request;
mod serve;
mod start;

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::Mode;
use zygote_core::cache::{CacheConfig, CacheStats};
use zygote_core::image::{IdentityMemo, ImageError};

use crate::launcher::LauncherPool;
use crate::process;
use std::sync::Arc;

use crate::{Cache, Image, Stub, prototype};
use prestarted::LauncherTag;

pub use crate::ExitStatus;
pub use child::Child;
pub use request::{SpawnRequest, StartOptions};
pub use serve::{ClientSide, ImageAnswer, attached_fds};
pub use zygote_core::Credentials;
pub use zygote_core::exec::{Launch, ResolveError};

/// Largest fd number a caller may ask for in the child.
pub const MAX_TARGET_FD: RawFd = 65_535;
/// Extra execs when a prototype image collides with the stub's stack or vDSO.
pub const MAX_PLACEMENT_RETRIES: usize = 3;
/// Largest argv + environment (bytes, NULs included) a pre-started launcher
/// takes; a larger one execs the stub, whose stack the kernel builds.
pub const MAX_PRESTART_ARGS: usize = 256 << 10;
/// Most idle pre-started launchers a [`Zygote`] keeps by default (one per
/// recently spawned image).
pub const DEFAULT_PRESTARTED: usize = 4;
pub use zygote_core::image::MAX_PROGRAM_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{path}: {what}: {source}")]
    Io { path: PathBuf, what: &'static str, source: io::Error },
    #[error("{path}: program file is {size} bytes, more than the {MAX_PROGRAM_BYTES}-byte limit")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("invalid spawn request: {0}")]
    Request(String),
    #[error("{path}: Permission denied ({why})")]
    Denied { path: PathBuf, why: &'static str },
    /// The working directory the request names cannot be entered (as the
    /// requester): like `cd` failing, a missing one is "not found" (127),
    /// one that may not be entered "cannot execute" (126).
    #[error("cannot change to the working directory {cwd}: {source}")]
    Cwd { cwd: PathBuf, source: io::Error },
    #[error("{path}: cannot give the program the requester's restrictions (step {step}): {source}")]
    Restriction { path: PathBuf, step: u32, source: io::Error },
    #[error("{path}: the launcher failed ({stage}, item {index}, address {addr:#x}): {source}")]
    Launcher {
        path: PathBuf,
        stage: String,
        index: u32,
        addr: u64,
        source: io::Error,
        /// The image's place was taken by the stub's own stack or vDSO
        /// (EEXIST while mapping or moving the vDSO): another exec may fit.
        collision: bool,
    },
    #[error("zygote internal error: {what}: {source}")]
    Internal { what: &'static str, source: io::Error },
    /// Building the image would not fit in the memory cgroup (`cgroup::reserve`).
    #[error("{path}: {source}")]
    Memory { path: PathBuf, source: crate::cgroup::CgroupError },
}

impl SpawnError {
    /// The status a shell would exit with: 127 not found, 126 cannot execute,
    /// 125 for a failure of the zygote itself.
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::Resolve(e) => e.exit_code(),
            SpawnError::Cwd { source, .. } if cwd_missing(source) => 127,
            SpawnError::Internal { .. } | SpawnError::Launcher { .. } | SpawnError::Memory { .. } => 125,
            _ => 126,
        }
    }
}

/// Does a failed `chdir` mean the directory is not there (ENOENT, ENOTDIR)?
pub fn cwd_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(rustix::io::Errno) -> SpawnError + 'a {
    move |e| SpawnError::Io { path: path.to_path_buf(), what, source: e.into() }
}

/// The in-process zygote: an image cache plus the launcher.
pub struct Zygote {
    cache: Cache,
    memo: IdentityMemo,
    /// Which library files name `/proc/self/exe` (serve.rs).
    exe_refs: std::sync::Mutex<std::collections::HashMap<zygote_core::image::FileIdentity, bool>>,
    stub: Stub,
    /// Spawned processes may get `/proc/self/exe` set (we hold
    /// CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN, which they inherit).
    set_exe: bool,
    /// vDSO, hwcaps, CPU flags, kernel release: part of prototype image keys.
    machine: [u8; 32],
    /// RLIMIT_NOFILE soft limit this process had before raising it; children
    /// get it back.
    nofile: Option<u64>,
    /// Pre-started launchers, each with one image mapped ahead of its spawn.
    launchers: LauncherPool<LauncherTag>,
    /// Spawns that went through a pre-started launcher.
    prestarted_spawns: std::sync::atomic::AtomicU64,
}

/// The loader-relevant entries of an environment.
pub fn loader_env(env: &[OsString]) -> Vec<Vec<u8>> {
    env.iter().map(|kv| kv.as_bytes()).filter(|kv| prototype::is_loader_env(kv)).map(<[u8]>::to_vec).collect()
}

impl Zygote {
    pub fn new(cfg: CacheConfig) -> Result<Self, SpawnError> {
        let stub = Stub::load()
            .map_err(|e| SpawnError::Internal { what: "loading the stub into a memfd", source: e.into() })?;
        let nofile = process::raise_nofile_limit();
        Ok(Zygote {
            cache: Cache::new(cfg),
            memo: IdentityMemo::default(),
            exe_refs: Default::default(),
            stub,
            set_exe: crate::procfs::may_set_exe(),
            machine: prototype::machine_fingerprint(),
            nofile,
            launchers: LauncherPool::new(DEFAULT_PRESTARTED, nofile),
            prestarted_spawns: Default::default(),
        })
    }

    /// Keep up to `n` idle pre-started launchers, one per recently spawned
    /// image (0: exec the stub on every spawn).
    pub fn set_prestarted(&self, n: usize) {
        self.launchers.set_capacity(n);
    }

    /// Most idle pre-started launchers kept (0 also when the machine's limits
    /// leave no room for them).
    pub fn prestarted(&self) -> usize {
        self.launchers.capacity()
    }

    /// Idle pre-started launchers now.
    pub fn idle_launchers(&self) -> usize {
        self.launchers.idle()
    }

    /// Pids of the idle pre-started launchers (our children).
    pub fn launcher_pids(&self) -> Vec<i32> {
        self.launchers.pids()
    }

    /// End the launchers of images that are no longer cached (their mappings
    /// would keep the images' memory alive), and reap those that are gone.
    pub fn prune_launchers(&self) {
        self.launchers.retain(|(w, _)| w.strong_count() > 0);
        self.launchers.settle(false);
    }

    /// Wait until every pre-started launcher has finished its warm-up (a
    /// benchmark charges that work to the spawn that started it).
    pub fn settle_launchers(&self) {
        self.launchers.settle(true);
    }

    /// Spawns so far that went through a pre-started launcher.
    pub fn prestarted_spawns(&self) -> u64 {
        self.prestarted_spawns.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    pub fn set_limits(&self, max_entries: usize, max_bytes: u64) {
        self.cache.set_limits(CacheConfig { max_entries, max_bytes });
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Resolve the request's program (PATH, `#!`) to what will run.
    pub fn resolve(&self, req: &SpawnRequest, env: &[OsString]) -> Result<Launch, SpawnError> {
        Ok(crate::exec::resolve(&req.program, req.argv.clone(), env, req.cwd.as_deref())?)
    }

    /// Start a process: resolve the request here, open the program, and
    /// start it as this process's user.
    pub fn spawn(&self, req: SpawnRequest) -> Result<Child, SpawnError> {
        let env = req.environment();
        let launch = self.resolve(&req, &env)?;
        let path = &launch.program;
        let file = rustix::fs::open(path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, Mode::empty())
            .map_err(io_err(path, "open"))?;
        Ok(self.start_request(&req, &launch, file.as_fd(), Requester::default())?.0)
    }

    /// Prepare and start `req`, resolved (elsewhere: the daemon's requester
    /// did it) to `launch`, from `program`, the requester's open file; as
    /// `who`. The child, and the image it was started from.
    pub fn start_request(
        &self,
        req: &SpawnRequest,
        launch: &Launch,
        program: BorrowedFd<'_>,
        who: Requester<'_>,
    ) -> Result<(Child, Arc<Image>), SpawnError> {
        let env = req.environment();
        let proto_env = prototype::Environment { loader_env: &loader_env(&env), creds: who.creds };
        let image = self.prepare_fd(program, &launch.program, &proto_env)?;
        let fds: Vec<(RawFd, RawFd)> = req.fds.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
        let opts = StartOptions {
            program,
            env: &env,
            cwd: req.cwd.as_deref(),
            name: req.name.as_deref().map(OsStr::as_bytes),
            fds: &fds,
            creds: who.creds,
            restrict: who.restrict,
        };
        Ok((self.start(&image, launch, &opts)?, image))
    }
}

/// Who a request runs as, and under which restrictions (a daemon's
/// requester); the default: this process's own.
#[derive(Clone, Copy, Debug, Default)]
pub struct Requester<'a> {
    pub creds: Option<Credentials<'a>>,
    pub restrict: Option<&'a crate::restrictions::ChildRestrictions>,
}
