//! `zygote stress`'s private daemon: this executable's `daemon` in a fresh temporary
//! directory, stopped (SIGTERM, then SIGKILL), reaped and removed at the end.

use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zygote_protocol::client::Client;

use super::options::{DAEMON_START_LIMIT, DAEMON_STOP_LIMIT, StressError, io_err};
use crate::launch::describe_std;

/// The private daemon: started in a temporary directory, stopped and reaped on drop.
pub(super) struct PrivateDaemon {
    child: Option<std::process::Child>,
    dir: PathBuf,
    pub(super) socket: PathBuf,
    log: PathBuf,
}

impl PrivateDaemon {
    pub(super) fn start(entries: usize) -> Result<PrivateDaemon, StressError> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("zygote-stress-{}-{nanos:08x}", std::process::id()));
        fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let mut d = PrivateDaemon { child: None, socket: dir.join("daemon.sock"), log: dir.join("daemon.log"), dir };
        let exe = std::env::current_exe().map_err(io_err("finding this executable"))?;
        let log = File::create(&d.log).map_err(io_err(format!("creating {}", d.log.display())))?;
        let child = Command::new(&exe)
            .arg("daemon")
            .arg("--socket")
            .arg(&d.socket)
            .arg("--cache-entries")
            .arg(entries.to_string())
            .arg("--grace-secs")
            .arg("1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io_err(format!("starting {} daemon", exe.display())))?;
        d.child = Some(child);
        let start = Instant::now();
        loop {
            if Client::connect(&d.socket).is_ok() {
                return Ok(d);
            }
            if let Some(c) = d.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                d.child = None;
                return Err(StressError::Daemon {
                    what: format!("{} before serving", describe_std(st)),
                    log: d.log_tail(),
                });
            }
            if start.elapsed() > DAEMON_START_LIMIT {
                return Err(StressError::Daemon {
                    what: format!("did not serve on {} within {DAEMON_START_LIMIT:?}", d.socket.display()),
                    log: d.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(super) fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let mut start = text.len().saturating_sub(4000);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }

    /// SIGTERM, wait, SIGKILL if it takes too long; how it ended.
    pub(super) fn stop(&mut self) -> Option<String> {
        let mut c = self.child.take()?;
        let pid = rustix::process::Pid::from_raw(c.id() as i32)?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let start = Instant::now();
        loop {
            match c.try_wait() {
                Ok(Some(st)) => return Some(describe_std(st)),
                Ok(None) if start.elapsed() < DAEMON_STOP_LIMIT => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = c.kill();
                    let st = c.wait().ok().map_or_else(|| "could not be reaped".to_string(), describe_std);
                    return Some(format!("did not exit within {DAEMON_STOP_LIMIT:?} of SIGTERM; killed: {st}"));
                }
            }
        }
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
