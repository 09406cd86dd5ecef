//! Spawning: resolve the program, get its image from the cache (preparing it on
//! a miss), build the plan, start the stub in a fresh process, and confirm that
//! the stub mapped everything.
//!
//! ```text
//! SpawnRequest ─ resolve (PATH, #!) ─ identify (stat → memo → BLAKE3) ─ cache
//!      └─ plan (regions, fds, entry) ─ clone(VM|VFORK) + execveat(stub) ─ status pipe EOF ─ Child
//! ```

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Instant;

use zygote_plan::{MAX_HANDOVER_FDS, PLAN_FD, Stage, StatusRecord};

use zygote_core::cache::{CacheConfig, CacheStats};
use zygote_core::elf::ProgramKind;
use zygote_core::image::{
    ContentHash, FileIdentity, Identified, IdentityMemo, ImageError, ImageKey, MappedFile, relocate,
};

use crate::launcher::{self, LauncherPool};
use crate::process::{self, ChildSetup, ExecTarget};
use crate::restrictions::ChildRestrictions;
use crate::{Cache, Image, plan, prototype};
use crate::{Stub, memfd};
use rustix::fs::Mode;

pub use crate::ExitStatus;
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
/// Largest program file the relocating preparer reads (1 GiB).
pub const MAX_PROGRAM_BYTES: u64 = 1 << 30;

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
}

impl SpawnError {
    /// The status a shell would exit with: 127 not found, 126 cannot execute,
    /// 125 for a failure of the zygote itself.
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::Resolve(e) => e.exit_code(),
            SpawnError::Internal { .. } | SpawnError::Launcher { .. } => 125,
            _ => 126,
        }
    }
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(rustix::io::Errno) -> SpawnError + 'a {
    move |e| SpawnError::Io { path: path.to_path_buf(), what, source: e.into() }
}

/// What to start, built like `std::process::Command`.
#[derive(Debug)]
pub struct SpawnRequest {
    program: OsString,
    argv: Vec<OsString>,
    env_inherit: bool,
    env_set: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    name: Option<OsString>,
    fds: Vec<(OwnedFd, RawFd)>,
}

impl SpawnRequest {
    pub fn new(program: impl Into<OsString>) -> Self {
        let program = program.into();
        SpawnRequest {
            argv: vec![program.clone()],
            program,
            env_inherit: true,
            env_set: Vec::new(),
            cwd: None,
            name: None,
            fds: Vec::new(),
        }
    }
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.argv.push(a.into());
        self
    }
    pub fn args(mut self, it: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.argv.extend(it.into_iter().map(Into::into));
        self
    }
    pub fn argv0(mut self, a: impl Into<OsString>) -> Self {
        self.argv[0] = a.into();
        self
    }
    pub fn env_clear(mut self) -> Self {
        self.env_inherit = false;
        self.env_set.clear();
        self
    }
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        let k = k.as_ref().to_os_string();
        self.env_set.retain(|(ek, _)| *ek != k);
        self.env_set.push((k, v.as_ref().to_os_string()));
        self
    }
    pub fn cwd(mut self, d: impl Into<PathBuf>) -> Self {
        self.cwd = Some(d.into());
        self
    }
    pub fn name(mut self, n: impl Into<OsString>) -> Self {
        self.name = Some(n.into());
        self
    }
    /// Give the child `fd` as fd number `target`; 0..=2 replace stdio. Every fd
    /// not passed (other than inherited stdio) is closed in the child.
    pub fn fd(mut self, fd: OwnedFd, target: RawFd) -> Self {
        self.fds.retain(|(_, t)| *t != target);
        self.fds.push((fd, target));
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// The final environment, as `KEY=VALUE` strings.
    fn environment(&self) -> Vec<OsString> {
        let mut env: Vec<(OsString, OsString)> =
            if self.env_inherit { std::env::vars_os().collect() } else { Vec::new() };
        for (k, v) in &self.env_set {
            match env.iter_mut().find(|(ek, _)| ek == k) {
                Some(slot) => slot.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        env.into_iter()
            .map(|(k, v)| {
                let mut s = k;
                s.push("=");
                s.push(v);
                s
            })
            .collect()
    }
}

/// Per-spawn options for [`Zygote::start`].
#[derive(Clone, Copy, Debug)]
pub struct StartOptions<'a> {
    /// The program file, opened by the requester (its proof of access): the
    /// image's file-backed regions are mapped from it, and a program that
    /// runs by plain exec is exec'd from it. Never another requester's file.
    pub program: BorrowedFd<'a>,
    /// `KEY=VALUE` entries.
    pub env: &'a [OsString],
    pub cwd: Option<&'a Path>,
    /// Process name; `None` or empty: the exec'd file's name.
    pub name: Option<&'a [u8]>,
    /// (fd in the caller, fd number in the child).
    pub fds: &'a [(RawFd, RawFd)],
    /// Run as (uid, gid, supplementary groups); `None`: the caller's.
    pub creds: Option<(u32, u32, &'a [u32])>,
    /// The requester's restrictions (rlimits, cgroup, no-new-privs, ...)
    /// when they are not ours; `None`: the program inherits ours.
    pub restrict: Option<&'a ChildRestrictions>,
}

/// A started process.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    pidfd: OwnedFd,
    key: ImageKey,
    status: Option<ExitStatus>,
}

impl Child {
    pub fn pid(&self) -> i32 {
        self.pid
    }
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }
    /// The image the process was started from.
    pub fn image_key(&self) -> &ImageKey {
        &self.key
    }
    /// Wait for the process to end and reap it (idempotent).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = process::wait_pidfd(self.pidfd.as_fd())?;
        self.status = Some(s);
        Ok(s)
    }
    /// Like [`Child::wait`], passing SIGINT, SIGTERM, SIGHUP and SIGQUIT that
    /// other processes send to the caller on to the child meanwhile.
    pub fn wait_relaying_signals(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let sigs = [
            rustix::process::Signal::INT,
            rustix::process::Signal::TERM,
            rustix::process::Signal::HUP,
            rustix::process::Signal::QUIT,
        ];
        let sigs = sigs.map(|s| s.as_raw());
        let s = process::wait_relaying(self.pidfd.as_fd(), &sigs)?;
        self.status = Some(s);
        Ok(s)
    }

    pub fn kill(&self, sig: i32) -> io::Result<()> {
        process::pidfd_kill(self.pidfd.as_fd(), sig)
    }
}

/// The in-process zygote: an image cache plus the launcher.
pub struct Zygote {
    cache: Cache,
    memo: IdentityMemo,
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
        if let Some(img) = self.lookup(&crate::identity_from_stat(&st), env) {
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
        if let Some(img) = self.lookup(&id, env) {
            return Ok(img);
        }
        let file = file.try_clone_to_owned().map_err(|source| SpawnError::Internal { what: "dup", source })?;
        self.build(file, path, env)
    }

    /// The content hash of an open file: from the memo, or by reading it.
    pub fn identify_fd(&self, file: &OwnedFd) -> Result<ContentHash, SpawnError> {
        let path = Path::new("<fd>");
        let id = crate::identity_of(file).map_err(io_err(path, "fstat"))?;
        if let Some(i) = self.memo.get(&id) {
            return Ok(i.hash);
        }
        let (id, data) = read_program(file, path)?;
        let found = Identified { hash: ContentHash::of(&data), dynamic: prototype::interpreter(&data).is_some() };
        self.memo.insert(id, found);
        Ok(found.hash)
    }

    /// A static image depends on the program's bytes only, so every file with
    /// those bytes shares it (its file-backed regions are mapped from each
    /// requester's own file). A prototype image also depends on where the
    /// file is (`$ORIGIN` in its library search path) and on who runs it, so
    /// it is keyed by the file (device, inode) and the credentials too.
    fn key_for(&self, found: Identified, id: &FileIdentity, env: &prototype::Environment<'_>) -> ImageKey {
        if found.dynamic {
            prototype::key(found.hash, (id.dev, id.ino), env, &self.machine)
        } else {
            ImageKey::relocate(found.hash)
        }
    }

    /// A cached image for a file identity seen before, if still valid.
    fn lookup(&self, id: &FileIdentity, env: &prototype::Environment<'_>) -> Option<Arc<Image>> {
        let key = self.key_for(self.memo.get(id)?, id, env);
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
        let found = Identified { hash: ContentHash::of(&data), dynamic: prototype::interpreter(&data).is_some() };
        self.memo.insert(id, found);
        let key = self.key_for(found, &id, env);
        let mut file = Some(file);
        self.cache.get_or_build(key, || {
            let file = file.take().ok_or_else(|| SpawnError::Request("internal: build ran twice".into()))?;
            let _span = tracing::debug_span!("prepare", %key).entered();
            if !found.dynamic {
                return Ok::<_, SpawnError>(relocate::prepare(path, file, id, &data, key, started)?);
            }
            let keep = file.try_clone().map_err(|e| SpawnError::Internal { what: "dup", source: e })?;
            Ok(match prototype::prepare(path, file, id, key, env, started)? {
                Ok(img) => img,
                Err(refusal) => {
                    tracing::info!("{refusal}; it will run by plain exec");
                    let mapped = MappedFile { path: path.to_path_buf(), file: keep, identity: id };
                    Image::refused(key, mapped, ProgramKind::Dynamic, refusal.reason, started.elapsed())
                }
            })
        })
    }

    /// Resolve the request's program (PATH, `#!`) to what will run.
    pub fn resolve(&self, req: &SpawnRequest, env: &[OsString]) -> Result<Launch, SpawnError> {
        let path_var = env.iter().find_map(|kv| kv.as_bytes().strip_prefix(b"PATH=")).map(OsStr::from_bytes);
        let cwd = req.cwd.as_deref();
        let found = crate::exec::find_program(&req.program, path_var, cwd)?;
        Ok(crate::exec::follow_interpreters(found, req.argv.clone(), cwd)?)
    }

    /// Start a process.
    pub fn spawn(&self, req: SpawnRequest) -> Result<Child, SpawnError> {
        let env = req.environment();
        let launch = self.resolve(&req, &env)?;
        let path = &launch.program;
        let file = rustix::fs::open(path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, Mode::empty())
            .map_err(io_err(path, "open"))?;
        let image = self.prepare_fd(
            file.as_fd(),
            path,
            &prototype::Environment { loader_env: &loader_env(&env), creds: None },
        )?;
        let fds: Vec<(RawFd, RawFd)> = req.fds.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
        let opts = StartOptions {
            program: file.as_fd(),
            env: &env,
            cwd: req.cwd.as_deref(),
            name: req.name.as_deref().map(OsStr::as_bytes),
            fds: &fds,
            creds: None,
            restrict: None,
        };
        self.start(&image, &launch, &opts)
    }

    /// Start `launch` from an already prepared image (the daemon's path: the
    /// client resolved the program and opened it).
    pub fn start(&self, image: &Arc<Image>, launch: &Launch, opts: &StartOptions<'_>) -> Result<Child, SpawnError> {
        for (i, (_, t)) in opts.fds.iter().enumerate() {
            if !(0..=MAX_TARGET_FD).contains(t) {
                return Err(SpawnError::Request(format!("fd target {t} is outside 0..={MAX_TARGET_FD}")));
            }
            if opts.fds[..i].iter().any(|(_, u)| u == t) {
                return Err(SpawnError::Request(format!("fd target {t} is given twice")));
            }
        }
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

    /// Whether a pre-started launcher may run this spawn: it runs with our
    /// credentials, and starts from the image (not by plain exec).
    fn prestartable(&self, start: &Start<'_>) -> bool {
        self.launchers.capacity() > 0
            && start.opts.creds.is_none()
            && start.opts.restrict.is_none()
            && !start.plain_exec()
    }

    /// Make sure a launcher is warming up for `start`'s image and program
    /// file, for its next spawn (started while this spawn's program maps or
    /// runs on another CPU).
    fn warm_up(&self, start: &Start<'_>) {
        self.prune_launchers();
        let image = start.image;
        if self.launchers.has(warmed_for(image, &start.program.identity)) {
            return;
        }
        let result = (|| {
            let layout = plan::build(
                image,
                &plan::SpawnParts {
                    program: start.opts.program.as_raw_fd(),
                    fds: &[],
                    sigmask: 0,
                    name: b"",
                    set_exe: self.set_exe,
                    prestart: None,
                    phase: plan::Phase::WarmUp,
                },
            );
            let plan_fd = memfd::memfd_with("zygote-plan", &layout.plan).map_err(io::Error::from)?;
            let mut fds = layout.placements;
            fds.push((plan_fd.as_raw_fd(), PLAN_FD));
            fds.sort_unstable_by_key(|p| p.1);
            if fds.len() > MAX_HANDOVER_FDS {
                return Ok(());
            }
            self.launchers.warm_up(self.stub.fd(), (Arc::downgrade(image), start.program.identity), &fds)
        })();
        if let Err(e) = result {
            tracing::debug!("could not warm up a launcher: {e}");
        }
    }

    /// Spawn through a pre-started launcher. `None`: none fits or is idle
    /// (or it is gone), so the caller execs the stub instead.
    fn start_prestarted(&self, start: &Start<'_>) -> Result<Option<Child>, SpawnError> {
        let Start { image, launch, opts, name, old_mask, program } = *start;
        let max = self.launchers.max_target();
        if launch.argv.is_empty() || opts.fds.iter().any(|&(_, t)| t > max) {
            return Ok(None);
        }
        if !self.launchers.has(warmed_for(image, &program.identity)) {
            return Ok(None);
        }
        let mut args = Vec::new();
        for s in launch.argv.iter().chain(opts.env) {
            let b = s.as_bytes();
            if b.contains(&0) {
                return Err(SpawnError::Request("an argument or environment entry contains a NUL byte".into()));
            }
            args.extend_from_slice(b);
            args.push(0);
        }
        if args.len() > MAX_PRESTART_ARGS {
            return Ok(None);
        }
        // The working directory goes over as an fd: a relative path means
        // relative to our directory now, not the launcher's.
        let dir = opts.cwd.unwrap_or(Path::new("."));
        let cwd = rustix::fs::open(
            dir,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SpawnError::Launcher {
            path: launch.program.clone(),
            stage: format!("{:?}", Stage::ChildCwd),
            index: 0,
            addr: 0,
            source: e.into(),
            collision: false,
        })?;
        let internal = |what| move |e: rustix::io::Errno| SpawnError::Internal { what, source: e.into() };
        let plan_span = tracing::debug_span!("plan").entered();
        let prestart = plan::Prestart { args: &args, argc: launch.argv.len() as u32, envc: opts.env.len() as u32 };
        let layout = plan::build(
            image,
            &plan::SpawnParts {
                program: opts.program.as_raw_fd(),
                fds: opts.fds,
                sigmask: process::sigset_bits(old_mask),
                name,
                set_exe: self.set_exe,
                prestart: Some(prestart),
                phase: plan::Phase::Finish { exe_fd: self.launchers.exe_fd() },
            },
        );
        let (status_r, status_w) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(internal("status pipe"))?;
        let status_w = process::high_fd(status_w);
        let plan_fd = memfd::memfd_with("zygote-plan", &layout.plan).map_err(internal("plan memfd"))?;
        drop(plan_span);
        let mut fds = layout.placements;
        // Stdio the caller does not place is ours, as an exec'd child's would be.
        for t in 0..3 {
            if !fds.iter().any(|p| p.1 == t) && launcher::fd_is_open(t) {
                fds.push((t, t));
            }
        }
        fds.push((plan_fd.as_raw_fd(), PLAN_FD));
        fds.push((status_w.as_raw_fd(), layout.status_fd));
        fds.push((cwd.as_raw_fd(), layout.cwd_fd));
        fds.sort_unstable_by_key(|p| p.1);
        let Some(status_index) = fds.iter().position(|p| p.1 == layout.status_fd) else { return Ok(None) };
        if fds.len() > MAX_HANDOVER_FDS || layout.cwd_fd > max {
            return Ok(None);
        }
        // The control socket of the launcher's replacement, which it forks
        // before it takes the spawn.
        let (replica_ctl, theirs) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(internal("socketpair"))?;
        let replica_ctl = process::high_fd(replica_ctl);
        let Some(launcher) = self.launchers.take(warmed_for(image, &program.identity)) else { return Ok(None) };
        let replicating = launcher.replicate(theirs.as_fd()).is_ok();
        if let Err(e) = launcher.hand_over(&fds, Some(status_index)) {
            // It died while idle (killed, or it failed before its exec).
            tracing::debug!(pid = launcher.pid(), "a launcher is gone ({e}); exec'ing the stub instead");
            return Ok(None);
        }
        drop((status_w, theirs));
        let (pid, pidfd, ctl) = launcher.into_process();
        let mut child = Child { pid, pidfd, key: *image.key(), status: None };
        let _map = tracing::debug_span!("map", pid, prestarted = true).entered();
        let status = read_status(&status_r);
        // The replacement (its pid came before the status pipe closed), or,
        // if it could not fork one, a new launcher warmed up the long way.
        let replica = ctl.as_ref().filter(|_| replicating).and_then(|c| launcher::Launcher::replica(c, replica_ctl));
        match replica {
            Some(next) => {
                self.prune_launchers();
                self.launchers.add((Arc::downgrade(image), program.identity), next)
            }
            None => self.warm_up(start),
        }
        // Last references: released here, while the program runs.
        drop((plan_fd, cwd, ctl));
        match status {
            None => {
                self.prestarted_spawns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(Some(child))
            }
            Some(rec) => {
                let _ = child.wait();
                if Stage::from_u32(rec.stage) == Some(Stage::Handover) {
                    // Launchers do not work here: stop using them.
                    tracing::warn!(
                        errno = rec.errno,
                        index = rec.index,
                        "a pre-started launcher could not take its hand-over; exec'ing stubs from now on"
                    );
                    self.launchers.set_capacity(0);
                    return Ok(None);
                }
                Err(launcher_error(rec, launch))
            }
        }
    }

    /// Spawn by cloning a child that execs the stub (or, for a refused image,
    /// the program itself).
    fn start_exec(&self, start: &Start<'_>) -> Result<Child, SpawnError> {
        let Start { image, launch, opts, name, old_mask, .. } = *start;
        let env = opts.env;
        let cstrings = |v: &[OsString], what: &str| -> Result<Vec<CString>, SpawnError> {
            v.iter()
                .map(|s| {
                    CString::new(s.as_bytes()).map_err(|_| SpawnError::Request(format!("{what} contains a NUL byte")))
                })
                .collect()
        };
        let argv_c = cstrings(&launch.argv, "an argument")?;
        let env_c = cstrings(env, "an environment entry")?;
        let ptrs = |v: &[CString]| v.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect::<Vec<_>>();
        let (argv_p, env_p) = (ptrs(&argv_c), ptrs(&env_c));
        let cwd_c = match opts.cwd {
            Some(d) => Some(
                CString::new(d.as_os_str().as_bytes())
                    .map_err(|_| SpawnError::Request("cwd contains a NUL byte".into()))?,
            ),
            None => None,
        };
        let user_fds = opts.fds;

        let internal = |what| move |e: rustix::io::Errno| SpawnError::Internal { what, source: e.into() };
        let (status_r, status_w) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(internal("status pipe"))?;
        let status_w = process::high_fd(status_w);
        let result = (|| {
            if start.plain_exec() {
                // Plain exec of the requester's file (not of a path, which
                // could name another): fds go straight to their targets.
                let mut keep: Vec<RawFd> = user_fds.iter().map(|p| p.1).collect();
                keep.sort_unstable();
                let setup = ChildSetup {
                    exec: ExecTarget::Program { file: opts.program, sigmask: old_mask, keep: &keep },
                    argv: &argv_p,
                    envp: &env_p,
                    cwd: cwd_c.as_deref(),
                    placements: user_fds,
                    status: status_w.as_fd(),
                    creds: opts.creds,
                    nofile: self.nofile,
                    restrict: opts.restrict,
                };
                return process::clone_exec(&setup).map_err(|source| SpawnError::Internal { what: "clone", source });
            }
            let plan_span = tracing::debug_span!("plan").entered();
            let layout = plan::build(
                image,
                &plan::SpawnParts {
                    program: opts.program.as_raw_fd(),
                    fds: user_fds,
                    sigmask: process::sigset_bits(old_mask),
                    name,
                    set_exe: self.set_exe,
                    prestart: None,
                    phase: plan::Phase::Full,
                },
            );
            let plan_fd = memfd::memfd_with("zygote-plan", &layout.plan).map_err(internal("plan memfd"))?;
            drop(plan_span);
            let mut placements = layout.placements;
            placements.push((plan_fd.as_raw_fd(), PLAN_FD));
            placements.push((status_w.as_raw_fd(), layout.status_fd));
            let setup = ChildSetup {
                exec: ExecTarget::Stub(self.stub.fd()),
                argv: &argv_p,
                envp: &env_p,
                cwd: cwd_c.as_deref(),
                placements: &placements,
                status: status_w.as_fd(),
                creds: opts.creds,
                nofile: self.nofile,
                restrict: opts.restrict,
            };
            process::clone_exec(&setup).map_err(|source| SpawnError::Internal { what: "clone", source })
        })();
        drop(status_w);
        let (pid, pidfd) = result?;
        if self.prestartable(start) {
            self.warm_up(start);
        }
        let mut child = Child { pid, pidfd, key: *image.key(), status: None };
        // The stub maps the image; EOF on the status pipe: it closed the pipe
        // right before jumping. A record: it failed.
        let _map = tracing::debug_span!("map", pid).entered();
        if let Some(rec) = read_status(&status_r) {
            let _ = child.wait();
            return Err(launcher_error(rec, launch));
        }
        Ok(child)
    }
}

/// What a launcher is warmed up with: an image and the program file whose
/// regions it mapped.
type LauncherTag = (Weak<Image>, FileIdentity);

/// Matches the launchers warmed up for `image` (this very image: a rebuild of
/// the same key maps other objects) from the file `program` (the same file,
/// unchanged: a launcher never runs bytes of a file the requester did not pass).
fn warmed_for<'a>(image: &'a Arc<Image>, program: &'a FileIdentity) -> impl Fn(&LauncherTag) -> bool + 'a {
    move |(w, id)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(image)) && id == program
}

/// The requester's program file, checked as execve would check it.
struct ProgramFile {
    identity: FileIdentity,
    /// Set-user-ID, set-group-ID or with file capabilities: only the kernel's
    /// exec may start it (with the privileges execve would give).
    privileged: bool,
}

impl ProgramFile {
    fn check(fd: BorrowedFd<'_>, path: &Path) -> Result<Self, SpawnError> {
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
struct Start<'a> {
    image: &'a Arc<Image>,
    launch: &'a Launch,
    opts: &'a StartOptions<'a>,
    /// Process name (comm).
    name: &'a [u8],
    /// The caller's signal mask (every signal is blocked meanwhile).
    old_mask: &'a libc::sigset_t,
    program: &'a ProgramFile,
}

impl Start<'_> {
    /// Runs by plain exec of the program file: the image is a refused one,
    /// only the kernel may give the program its privileges, or the
    /// requester's personality changes how the kernel lays it out.
    fn plain_exec(&self) -> bool {
        self.image.fallback().is_some()
            || self.program.privileged
            || self.opts.restrict.is_some_and(ChildRestrictions::needs_plain_exec)
    }
}

/// The error for a failure record from the stub or the pre-exec child.
fn launcher_error(rec: StatusRecord, launch: &Launch) -> SpawnError {
    if Stage::from_u32(rec.stage) == Some(Stage::ChildRestrict) {
        let source = io::Error::from_raw_os_error(rec.errno);
        return SpawnError::Restriction { path: launch.program.clone(), step: rec.index, source };
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

fn read_status(fd: &OwnedFd) -> Option<StatusRecord> {
    let mut buf = [0u8; StatusRecord::SIZE];
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
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

/// Read a program file whole, checking its size first.
fn read_program(file: &OwnedFd, path: &Path) -> Result<(FileIdentity, Vec<u8>), SpawnError> {
    let id = crate::identity_of(file).map_err(io_err(path, "fstat"))?;
    if id.mode & 0o170000 != 0o100000 {
        return Err(SpawnError::Io {
            path: path.to_path_buf(),
            what: "read",
            source: io::Error::from_raw_os_error(rustix::io::Errno::ACCESS.raw_os_error()),
        });
    }
    if id.size > MAX_PROGRAM_BYTES {
        return Err(SpawnError::TooLarge { path: path.to_path_buf(), size: id.size });
    }
    let mut data = vec![0u8; id.size as usize];
    let mut n = 0;
    while n < data.len() {
        match rustix::io::pread(file, &mut data[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io_err(path, "read")(e)),
        }
    }
    data.truncate(n);
    Ok((id, data))
}
