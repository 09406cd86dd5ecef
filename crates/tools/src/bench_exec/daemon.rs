//! What every case shares: the daemon (a private one, or the one at
//! `--socket`), the links directory (`zygote install-links`), the
//! environments of the methods, and the daemon's counters.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zygote_core::metrics::stats::ImageRequestStats;
use zygote_protocol::client::Client;
use zygote_protocol::message::DaemonStats;

use super::{BenchExecArgs, BenchExecError, Method, SERVE_LIMIT, io_err};
use crate::launch::resolve_program;

const START_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// The daemon, the links, the paths and environments of the methods.
pub(super) struct Setup {
    pub(super) socket: PathBuf,
    pub(super) private: Option<Child>,
    /// Temporary directory: the private daemon's socket and log, the links,
    /// the C project's build directories. Removed at the end.
    pub(super) dir: PathBuf,
    pub(super) links: PathBuf,
    pub(super) zygote: PathBuf,
    /// The compiler as found on PATH, and the file it is (symlinks resolved).
    pub(super) compiler_path: PathBuf,
    pub(super) compiler_exe: PathBuf,
    path: OsString,
    base_env: Vec<(OsString, OsString)>,
}

impl Setup {
    pub(super) fn new(args: &BenchExecArgs) -> Result<Setup, BenchExecError> {
        let zygote = std::env::current_exe().map_err(io_err("finding this executable"))?;
        let compiler_path = resolve_program(OsStr::new(&args.compiler)).map_err(|e| {
            BenchExecError::Usage(format!("{}: {e} (install it: apt-get install {})", args.compiler, args.compiler))
        })?;
        let compiler_exe = fs::canonicalize(&compiler_path).map_err(io_err(compiler_path.display().to_string()))?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("zygote-bench-exec-{}-{nanos:08x}", std::process::id()));
        fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        let mut s = Setup {
            socket: args.socket.clone().unwrap_or_else(|| dir.join("zygote.sock")),
            private: None,
            links: dir.join("links"),
            dir,
            zygote,
            compiler_path,
            compiler_exe,
            path,
            base_env: Vec::new(),
        };
        if args.socket.is_none() {
            s.start_daemon()?;
        } else if Client::connect(&s.socket).is_err() {
            return Err(BenchExecError::Usage(format!("no daemon serves {}", s.socket.display())));
        }
        s.base_env = std::env::vars_os()
            .filter(|(k, _)| k != "PATH" && k != "ZYGOTE_SOCKET" && k != "ZYGOTE_EXEC_DEBUG")
            .chain([("ZYGOTE_SOCKET".into(), s.socket.clone().into_os_string())])
            .collect();
        s.install_links(&["true", &args.compiler])?;
        Ok(s)
    }

    fn start_daemon(&mut self) -> Result<(), BenchExecError> {
        let log_path = self.dir.join("daemon.log");
        let log = File::create(&log_path).map_err(io_err(format!("creating {}", log_path.display())))?;
        let child = Command::new(&self.zygote)
            .arg("daemon")
            .arg("--socket")
            .arg(&self.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io_err(format!("starting {} daemon", self.zygote.display())))?;
        self.private = Some(child);
        let start = Instant::now();
        while Client::connect(&self.socket).is_err() {
            let ended = self.private.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if ended.is_some() || start.elapsed() > START_LIMIT {
                let what = match ended {
                    Some(st) => format!("ended ({st}) before serving"),
                    None => format!("did not serve on {} within {START_LIMIT:?}", self.socket.display()),
                };
                return Err(BenchExecError::Daemon { what, log: self.log_tail() });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        super::progress(format_args!("private daemon on {}", self.socket.display()));
        Ok(())
    }

    pub(super) fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let mut start = text.len().saturating_sub(4000);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }

    /// `zygote install-links LINKS NAMES...`.
    fn install_links(&self, names: &[&str]) -> Result<(), BenchExecError> {
        let out = Command::new(&self.zygote)
            .arg("install-links")
            .arg("--force")
            .arg(&self.links)
            .args(names)
            .env("PATH", &self.path)
            .stdin(Stdio::null())
            .output()
            .map_err(io_err("running zygote install-links"))?;
        if !out.status.success() {
            return Err(BenchExecError::Failed(format!(
                "zygote install-links: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// The thin client installed in the links directory.
    pub(super) fn client(&self) -> PathBuf {
        self.links.join("zygote-exec")
    }

    /// The environment a method's command runs with: this process's, with
    /// ZYGOTE_SOCKET the daemon's and, for a link, the links first in PATH.
    pub(super) fn env(&self, method: Method) -> Vec<(OsString, OsString)> {
        let mut path = self.path.clone();
        if method == Method::Link {
            let mut p = self.links.clone().into_os_string();
            p.push(":");
            p.push(&self.path);
            path = p;
        }
        let mut env = self.base_env.clone();
        env.push(("PATH".into(), path));
        env
    }

    pub(super) fn stats(&self) -> Result<DaemonStats, BenchExecError> {
        let mut c = Client::connect(&self.socket).map_err(|e| BenchExecError::Failed(format!("connect: {e}")))?;
        crate::client::stats(&mut c).map_err(|e| BenchExecError::Failed(format!("Stats: {e}")))
    }

    pub(super) fn image_requests(&self) -> Result<ImageRequestStats, BenchExecError> {
        Ok(self.stats()?.image_requests)
    }

    /// Run `once` (a caller-side run) until the daemon serves it: the first
    /// runs miss and start a build in the background.
    pub(super) fn warm(
        &self,
        what: &str,
        mut once: impl FnMut() -> Result<(), BenchExecError>,
    ) -> Result<u32, BenchExecError> {
        let start = Instant::now();
        let mut runs = 0;
        loop {
            let before = self.image_requests()?.served;
            once()?;
            runs += 1;
            if self.image_requests()?.served > before {
                return Ok(runs);
            }
            if start.elapsed() > SERVE_LIMIT {
                return Err(BenchExecError::Failed(format!(
                    "{what}: still not served after {runs} runs and {SERVE_LIMIT:?} (stats: {:?})",
                    self.image_requests()?
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(super) fn daemon_pid(&self) -> Option<i32> {
        match &self.private {
            Some(c) => Some(c.id() as i32),
            None => {
                let c = Client::connect(&self.socket).ok()?;
                let cred = rustix::net::sockopt::socket_peercred(c.socket()).ok()?;
                Some(cred.pid.as_raw_nonzero().get())
            }
        }
    }

    /// A fresh directory inside the temporary one.
    pub(super) fn subdir(&self, name: &str) -> Result<PathBuf, BenchExecError> {
        let d = self.dir.join(name);
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
        Ok(d)
    }

    /// Stop the private daemon (SIGTERM, then SIGKILL); how it ended.
    pub(super) fn stop(&mut self) -> Option<String> {
        let mut c = self.private.take()?;
        let pid = rustix::process::Pid::from_raw(c.id() as i32)?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let start = Instant::now();
        loop {
            match c.try_wait() {
                Ok(Some(st)) => return Some(st.to_string()),
                Ok(None) if start.elapsed() < STOP_LIMIT => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return Some(format!("killed after {STOP_LIMIT:?}"));
                }
            }
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
