//! The pre-started launcher path: a launcher warmed up with an image (its
//! regions already mapped) takes a spawn's fds, argv and environment, forks its
//! replacement, and finishes the launch.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Weak};

use rustix::fs::Mode;
use zygote_core::image::FileIdentity;
use zygote_plan::{MAX_HANDOVER_FDS, PLAN_FD, Stage, StatusRecord};

use super::start::{Start, launcher_error, read_status};
use super::{Child, Launch, MAX_PRESTART_ARGS, SpawnError, StartOptions, Zygote};
use crate::launcher;
use crate::{Image, memfd, plan, process};

/// What a launcher is warmed up with: an image and the program file whose
/// regions it mapped.
pub(super) type LauncherTag = (Weak<Image>, FileIdentity);

/// Matches the launchers warmed up for `image` (this very image: a rebuild of
/// the same key maps other objects) from the file `program` (the same file,
/// unchanged: a launcher never runs bytes of a file the requester did not pass).
fn warmed_for<'a>(image: &'a Arc<Image>, program: &'a FileIdentity) -> impl Fn(&LauncherTag) -> bool + 'a {
    move |(w, id)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(image)) && id == program
}

/// One spawn's hand-over to a launcher: the fds it gets (sorted by target)
/// and what must stay open until the launch is done.
struct Handover {
    fds: Vec<(RawFd, RawFd)>,
    status_index: usize,
    status_r: OwnedFd,
    status_w: OwnedFd,
    plan_fd: OwnedFd,
    cwd: OwnedFd,
}

fn internal(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> SpawnError {
    move |e| SpawnError::Internal { what, source: e.into() }
}

impl Zygote {
    /// Whether a pre-started launcher may run this spawn: it runs with our
    /// credentials, and starts from the image (not by plain exec).
    pub(super) fn prestartable(&self, start: &Start<'_>) -> bool {
        self.launchers.capacity() > 0
            && start.opts.creds.is_none()
            && start.opts.restrict.is_none()
            && !start.plain_exec()
    }

    /// Make sure a launcher is warming up for `start`'s image and program
    /// file, for its next spawn (started while this spawn's program maps or
    /// runs on another CPU).
    pub(super) fn warm_up(&self, start: &Start<'_>) {
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
                    kept_exe_fd: -1,
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
    pub(super) fn start_prestarted(&self, start: &Start<'_>) -> Result<Option<Child>, SpawnError> {
        let Start { image, launch, opts, program, .. } = *start;
        let max = self.launchers.max_target();
        if launch.argv.is_empty() || opts.fds.iter().any(|&(_, t)| t > max) {
            return Ok(None);
        }
        if !self.launchers.has(warmed_for(image, &program.identity)) {
            return Ok(None);
        }
        let Some(args) = prestart_args(launch, opts.env)? else { return Ok(None) };
        let cwd = open_cwd(opts)?;
        let Some(handover) = self.handover(start, &args, cwd, max)? else { return Ok(None) };
        self.launch_prestarted(start, handover)
    }

    /// The finishing plan and the fds for a warmed-up launcher; `None` when
    /// they do not fit what a launcher takes.
    fn handover(
        &self,
        start: &Start<'_>,
        args: &[u8],
        cwd: OwnedFd,
        max: RawFd,
    ) -> Result<Option<Handover>, SpawnError> {
        let Start { image, launch, opts, name, old_mask, .. } = *start;
        let plan_span = tracing::debug_span!("plan").entered();
        let prestart = plan::Prestart { args, argc: launch.argv.len() as u32, envc: opts.env.len() as u32 };
        let layout = plan::build(
            image,
            &plan::SpawnParts {
                program: opts.program.as_raw_fd(),
                fds: opts.fds,
                sigmask: process::sigset_bits(old_mask),
                name,
                set_exe: self.set_exe,
                prestart: Some(prestart),
                phase: plan::Phase::Finish,
                kept_exe_fd: self.launchers.exe_fd(),
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
        Ok(Some(Handover { fds, status_index, status_r, status_w, plan_fd, cwd }))
    }

    /// Hand the spawn to an idle launcher, replace it, and wait for its
    /// verdict. `None`: the launcher is gone, or launchers do not work here.
    fn launch_prestarted(&self, start: &Start<'_>, h: Handover) -> Result<Option<Child>, SpawnError> {
        let Start { image, program, .. } = *start;
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
        if let Err(e) = launcher.hand_over(&h.fds, Some(h.status_index)) {
            // It died while idle (killed, or it failed before its exec).
            tracing::debug!(pid = launcher.pid(), "a launcher is gone ({e}); exec'ing the stub instead");
            return Ok(None);
        }
        drop((h.status_w, theirs));
        let (pid, pidfd, ctl) = launcher.into_process();
        let child = Child::new(pid, pidfd, *image.key());
        let _map = tracing::debug_span!("map", pid, prestarted = true).entered();
        let status = read_status(&h.status_r);
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
        drop((h.plan_fd, h.cwd, ctl));
        self.prestarted_verdict(child, status, start.launch, start.opts.cwd)
    }

    /// The launched child, or why it failed (`None`: a launcher could not
    /// take its hand-over, so launchers are off and the caller execs the stub).
    fn prestarted_verdict(
        &self,
        mut child: Child,
        status: Option<StatusRecord>,
        launch: &Launch,
        cwd: Option<&Path>,
    ) -> Result<Option<Child>, SpawnError> {
        let Some(rec) = status else {
            self.prestarted_spawns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(Some(child));
        };
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
        Err(launcher_error(rec, launch, cwd))
    }
}

/// argv then the environment, NUL-terminated, as a launcher builds its stack
/// from them; `None` when they are too large to hand over.
fn prestart_args(launch: &Launch, env: &[std::ffi::OsString]) -> Result<Option<Vec<u8>>, SpawnError> {
    let mut args = Vec::new();
    for s in launch.argv.iter().chain(env) {
        let b = s.as_bytes();
        if b.contains(&0) {
            return Err(SpawnError::Request("an argument or environment entry contains a NUL byte".into()));
        }
        args.extend_from_slice(b);
        args.push(0);
    }
    Ok((args.len() <= MAX_PRESTART_ARGS).then_some(args))
}

/// The working directory, as an fd: a relative path means relative to our
/// directory now, not the launcher's.
fn open_cwd(opts: &StartOptions<'_>) -> Result<OwnedFd, SpawnError> {
    let dir = opts.cwd.unwrap_or(Path::new("."));
    rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SpawnError::Cwd { cwd: dir.to_path_buf(), source: e.into() })
}
