//! The exec'd path: clone a vfork child that execs the stub with a full plan
//! (or, for a program only the kernel may start, the program file itself), and
//! read the stub's verdict from the status pipe.

use std::ffi::{CString, OsString, c_char};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use zygote_plan::PLAN_FD;

use super::start::{Start, launcher_error, read_status};
use super::{Child, SpawnError, Zygote};
use crate::process::{self, ChildSetup, ExecTarget};
use crate::{memfd, plan};

/// The child's argv, environment and working directory as C strings, and the
/// NULL-terminated pointer arrays execve takes (they point into the strings).
struct ExecStrings {
    _argv: Vec<CString>,
    _env: Vec<CString>,
    cwd: Option<CString>,
    argv_p: Vec<*const c_char>,
    env_p: Vec<*const c_char>,
}

impl ExecStrings {
    fn new(start: &Start<'_>) -> Result<Self, SpawnError> {
        let cstrings = |v: &[OsString], what: &str| -> Result<Vec<CString>, SpawnError> {
            v.iter()
                .map(|s| {
                    CString::new(s.as_bytes()).map_err(|_| SpawnError::Request(format!("{what} contains a NUL byte")))
                })
                .collect()
        };
        let argv = cstrings(&start.launch.argv, "an argument")?;
        let env = cstrings(start.opts.env, "an environment entry")?;
        let cwd = match start.opts.cwd {
            Some(d) => Some(
                CString::new(d.as_os_str().as_bytes())
                    .map_err(|_| SpawnError::Request("cwd contains a NUL byte".into()))?,
            ),
            None => None,
        };
        // A CString's bytes live on the heap: moving the vectors keeps them put.
        let ptrs = |v: &[CString]| v.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect::<Vec<_>>();
        let (argv_p, env_p) = (ptrs(&argv), ptrs(&env));
        Ok(ExecStrings { _argv: argv, _env: env, cwd, argv_p, env_p })
    }
}

fn internal(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> SpawnError {
    move |e| SpawnError::Internal { what, source: e.into() }
}

impl Zygote {
    /// Spawn by cloning a child that execs the stub (or, for a refused image,
    /// the program itself).
    pub(super) fn start_exec(&self, start: &Start<'_>) -> Result<Child, SpawnError> {
        let strings = ExecStrings::new(start)?;
        let (status_r, status_w) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(internal("status pipe"))?;
        let status_w = process::high_fd(status_w);
        let result = if start.plain_exec() {
            self.clone_program(start, &strings, status_w.as_fd())
        } else {
            self.clone_stub(start, &strings, status_w.as_fd())
        };
        drop(status_w);
        let (pid, pidfd) = result?;
        if self.prestartable(start) {
            self.warm_up(start);
        }
        let mut child = Child::new(pid, pidfd, *start.image.key());
        // The stub maps the image; EOF on the status pipe: it closed the pipe
        // right before jumping. A record: it failed.
        let _map = tracing::debug_span!("map", pid).entered();
        if let Some(rec) = read_status(&status_r) {
            let _ = child.wait();
            return Err(launcher_error(rec, start.launch, start.opts.cwd));
        }
        Ok(child)
    }

    /// Plain exec of the requester's file (not of a path, which could name
    /// another): fds go straight to their targets.
    fn clone_program(
        &self,
        start: &Start<'_>,
        strings: &ExecStrings,
        status_w: BorrowedFd<'_>,
    ) -> Result<(i32, OwnedFd), SpawnError> {
        let opts = start.opts;
        let mut keep: Vec<RawFd> = opts.fds.iter().map(|p| p.1).collect();
        keep.sort_unstable();
        let exec = ExecTarget::Program { file: opts.program, sigmask: start.old_mask, keep: &keep };
        self.clone_exec(start, strings, exec, opts.fds, status_w)
    }

    /// Exec the stub with the image's full plan.
    fn clone_stub(
        &self,
        start: &Start<'_>,
        strings: &ExecStrings,
        status_w: BorrowedFd<'_>,
    ) -> Result<(i32, OwnedFd), SpawnError> {
        let opts = start.opts;
        let plan_span = tracing::debug_span!("plan").entered();
        let layout = plan::build(
            start.image,
            &plan::SpawnParts {
                program: opts.program.as_raw_fd(),
                fds: opts.fds,
                sigmask: process::sigset_bits(start.old_mask),
                name: start.name,
                set_exe: self.set_exe,
                prestart: None,
                phase: plan::Phase::Full,
                kept_exe_fd: -1,
            },
        );
        let plan_fd = memfd::memfd_with("zygote-plan", &layout.plan).map_err(internal("plan memfd"))?;
        drop(plan_span);
        let mut placements = layout.placements;
        placements.push((plan_fd.as_raw_fd(), PLAN_FD));
        placements.push((status_w.as_raw_fd(), layout.status_fd));
        self.clone_exec(start, strings, ExecTarget::Stub(self.stub.fd()), &placements, status_w)
    }

    /// clone + exec of `exec` with the request's argv, environment, cwd,
    /// credentials and restrictions, and the fds at `placements`.
    fn clone_exec(
        &self,
        start: &Start<'_>,
        strings: &ExecStrings,
        exec: ExecTarget<'_>,
        placements: &[(RawFd, RawFd)],
        status_w: BorrowedFd<'_>,
    ) -> Result<(i32, OwnedFd), SpawnError> {
        let setup = ChildSetup {
            exec,
            argv: &strings.argv_p,
            envp: &strings.env_p,
            cwd: strings.cwd.as_deref(),
            placements,
            status: status_w,
            creds: start.opts.creds,
            nofile: self.nofile,
            restrict: start.opts.restrict,
        };
        process::clone_exec(&setup).map_err(|source| SpawnError::Internal { what: "clone", source })
    }
}
