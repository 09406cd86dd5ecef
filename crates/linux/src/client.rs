//! The caller-side client library: a [`Command`] in the shape of
//! `std::process::Command` whose children start from the daemon's cached
//! images and are the caller's own children. The child execs the thin exec
//! client (`zygote-exec`, held in a sealed memfd, exec'd with `execveat`),
//! which maps the image the daemon serves and becomes the program, or execs
//! the program itself when the daemon does not serve it. With no daemon
//! socket, or when the client cannot be exec'd, it is a plain spawn.
//!
//! Everything but the exec is `std::process::Command`'s: stdio, the
//! working directory, the environment and the errors are std's, so a
//! `Command` that fails to find its program fails in `spawn` as std's does.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::sync::OnceLock;

use crate::SealedObject;

/// The thin client, loaded once per process.
fn exec_client() -> Option<BorrowedFd<'static>> {
    static CLIENT: OnceLock<Option<SealedObject>> = OnceLock::new();
    CLIENT.get_or_init(|| SealedObject::create_exec("zygote-exec", crate::EXEC_CLIENT).ok()).as_ref().map(|o| o.fd())
}

/// The daemon's socket as the thin client finds it: `$ZYGOTE_SOCKET`, else
/// `$XDG_RUNTIME_DIR/zygote/zygote.sock`, else `/tmp/zygote-$UID/zygote.sock`.
pub fn default_socket() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(s) = var("ZYGOTE_SOCKET") {
        return s.into();
    }
    match var("XDG_RUNTIME_DIR") {
        Some(d) => Path::new(&d).join("zygote/zygote.sock"),
        None => format!("/tmp/zygote-{}/zygote.sock", rustix::process::getuid().as_raw()).into(),
    }
}

/// A process to start from the daemon's image of its program: builder
/// methods as `std::process::Command`'s.
#[derive(Debug)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    arg0: Option<OsString>,
    env_clear: bool,
    /// Changes in order: set (`Some`) or removed (`None`).
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    stdio: [Option<Stdio>; 3],
    socket: Option<PathBuf>,
    caller_side: bool,
}

impl Command {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            arg0: None,
            env_clear: false,
            env: Vec::new(),
            cwd: None,
            stdio: [None, None, None],
            socket: None,
            caller_side: true,
        }
    }
    pub fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(a.as_ref().to_owned());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    /// argv[0] instead of the program as given.
    pub fn arg0(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.arg0 = Some(a.as_ref().to_owned());
        self
    }
    pub fn env(&mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> &mut Self {
        self.env.push((k.as_ref().to_owned(), Some(v.as_ref().to_owned())));
        self
    }
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }
    pub fn env_remove(&mut self, k: impl AsRef<OsStr>) -> &mut Self {
        self.env.push((k.as_ref().to_owned(), None));
        self
    }
    pub fn env_clear(&mut self) -> &mut Self {
        self.env_clear = true;
        self.env.clear();
        self
    }
    pub fn current_dir(&mut self, d: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(d.as_ref().to_owned());
        self
    }
    pub fn stdin(&mut self, s: impl Into<Stdio>) -> &mut Self {
        self.stdio[0] = Some(s.into());
        self
    }
    pub fn stdout(&mut self, s: impl Into<Stdio>) -> &mut Self {
        self.stdio[1] = Some(s.into());
        self
    }
    pub fn stderr(&mut self, s: impl Into<Stdio>) -> &mut Self {
        self.stdio[2] = Some(s.into());
        self
    }
    /// The daemon's socket (default: [`default_socket`]); the child's
    /// environment gets it as `ZYGOTE_SOCKET`.
    pub fn socket(&mut self, p: impl AsRef<Path>) -> &mut Self {
        self.socket = Some(p.as_ref().to_owned());
        self
    }
    /// Start with a plain exec, never through the daemon (for comparisons).
    pub fn plain(&mut self, plain: bool) -> &mut Self {
        self.caller_side = !plain;
        self
    }

    /// Start the child, as `std::process::Command::spawn`.
    pub fn spawn(&mut self) -> io::Result<Child> {
        self.std_command()?.spawn()
    }

    /// Start the child and wait for it, inheriting stdio unless set.
    pub fn status(&mut self) -> io::Result<ExitStatus> {
        self.std_command()?.status()
    }

    /// Start the child with piped stdout and stderr (stdin null unless
    /// set) and collect its output.
    pub fn output(&mut self) -> io::Result<Output> {
        for (i, s) in self.stdio.iter_mut().enumerate() {
            if s.is_none() {
                *s = Some(if i == 0 { Stdio::null() } else { Stdio::piped() });
            }
        }
        self.std_command()?.output()
    }

    /// Replace this process with the program (as `CommandExt::exec`).
    /// Returns only on failure.
    pub fn exec(&mut self) -> io::Error {
        match self.std_command() {
            Ok(mut c) => c.exec(),
            Err(e) => e,
        }
    }

    /// The std command: the program resolved here, everything set, and, on
    /// the caller-side path, a last step before exec that execs the thin
    /// client instead (std's own exec of the program is the fallback).
    fn std_command(&mut self) -> io::Result<std::process::Command> {
        let env = self.environment();
        let path = self.resolve(&env)?;
        let mut cmd = std::process::Command::new(&path);
        let argv0 = self.arg0.clone().unwrap_or_else(|| self.program.clone());
        cmd.arg0(&argv0).args(&self.args).env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        if let Some(d) = &self.cwd {
            cmd.current_dir(d);
        }
        let [i, o, e] = std::mem::take(&mut self.stdio);
        for (s, set) in [(i, 0), (o, 1), (e, 2)] {
            if let Some(s) = s {
                match set {
                    0 => cmd.stdin(s),
                    1 => cmd.stdout(s),
                    _ => cmd.stderr(s),
                };
            }
        }
        let socket = self.socket.clone().unwrap_or_else(default_socket);
        let client = exec_client().filter(|_| self.caller_side && socket.exists());
        if let Some(client) = client {
            let mut argv = vec![c"zygote-exec".to_owned(), c"-p".to_owned(), cstring(path.as_os_str())?];
            argv.push(cstring(&argv0)?);
            for a in &self.args {
                argv.push(cstring(a)?);
            }
            let mut envp = Vec::with_capacity(env.len() + 1);
            for (k, v) in &env {
                let mut kv = k.clone();
                kv.push("=");
                kv.push(v);
                envp.push(cstring(&kv)?);
            }
            let exec = ClientExec::new(client.as_raw_fd(), argv, envp);
            // SAFETY: the hook runs in the child between fork and exec; it
            // only makes one system call (execveat) on memory prepared here,
            // before the fork: no allocation, no lock.
            unsafe {
                cmd.pre_exec(move || {
                    exec.exec();
                    Ok(())
                });
            }
        }
        Ok(cmd)
    }

    /// The child's environment: ours (unless cleared) with the changes (and
    /// `ZYGOTE_SOCKET` when [`Command::socket`] was set, on either path, so
    /// that the program sees the same environment however it starts).
    fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> =
            if self.env_clear { Vec::new() } else { std::env::vars_os().collect() };
        let socket = self.socket.as_ref().map(|s| (OsString::from("ZYGOTE_SOCKET"), Some(s.clone().into_os_string())));
        for (k, v) in self.env.iter().chain(socket.iter()) {
            env.retain(|(key, _)| key != k);
            if let Some(v) = v {
                env.push((k.clone(), v.clone()));
            }
        }
        env
    }

    /// The program as execvp finds it in the child's PATH (and its working
    /// directory, for a relative path).
    fn resolve(&self, env: &[(OsString, OsString)]) -> io::Result<PathBuf> {
        let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str());
        crate::exec::find_program(&self.program, path_var, self.cwd.as_deref())
            .map_err(|e| io::Error::new(io_kind(e.exit_code()), e.to_string()))
    }
}

fn io_kind(code: i32) -> io::ErrorKind {
    if code == 127 { io::ErrorKind::NotFound } else { io::ErrorKind::PermissionDenied }
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an argument"))
}

/// An `execveat` of the thin client, prepared before the fork.
struct ClientExec {
    fd: i32,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into the CStrings this struct owns (moved, not
// copied, with it); nothing else reads or writes them.
unsafe impl Send for ClientExec {}
// SAFETY: as above; the only use is a read-only exec.
unsafe impl Sync for ClientExec {}

impl ClientExec {
    fn new(fd: i32, argv: Vec<CString>, envp: Vec<CString>) -> Self {
        let ptrs = |v: &[CString]| v.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect::<Vec<_>>();
        let (argv_ptrs, envp_ptrs) = (ptrs(&argv), ptrs(&envp));
        ClientExec { fd, _argv: argv, _envp: envp, argv_ptrs, envp_ptrs }
    }

    /// Exec the client; returns only when the exec failed.
    fn exec(&self) {
        // SAFETY: `fd` is the sealed client memfd (kept open for the
        // process's life); argv and envp are NULL-terminated arrays of
        // NUL-terminated strings owned by `self`; AT_EMPTY_PATH execs the fd.
        unsafe {
            libc::syscall(
                libc::SYS_execveat,
                self.fd,
                c"".as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.envp_ptrs.as_ptr(),
                libc::AT_EMPTY_PATH,
            );
        }
    }
}

/// Wait for `child` as `system(3)` does (SIGINT and SIGQUIT, which the
/// terminal sends to the child too, are ignored meanwhile), then end the way
/// it ended: its exit code, or, when a signal killed it, that same signal
/// raised on this process (128 + the signal should that not end it).
pub fn wait_and_mirror(child: &mut Child) -> io::Result<i32> {
    let ignore = [libc::SIGINT, libc::SIGQUIT];
    let mut old = [libc::SIG_DFL; 2];
    for (i, &sig) in ignore.iter().enumerate() {
        // SAFETY: SIG_IGN installs no handler; the old disposition is kept
        // to be put back.
        old[i] = unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let status = child.wait();
    for (i, &sig) in ignore.iter().enumerate() {
        // SAFETY: puts back the disposition read above.
        unsafe { libc::signal(sig, old[i]) };
    }
    let status = status?;
    if let Some(code) = status.code() {
        return Ok(code);
    }
    let sig = std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0);
    if sig != 0 && sig != libc::SIGSTOP && sig != libc::SIGKILL {
        // SAFETY: SIG_DFL installs no handler; raising a signal that now
        // ends the process is what we want (core dumps as the child's did).
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
    Ok(128 + sig)
}
