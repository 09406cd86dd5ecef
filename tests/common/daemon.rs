//! The `zygote daemon` harness: a daemon on its own socket with its log, its
//! stats, children and fds, stopped on drop; and its configuration file.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use zygote::service::client::Client;
use zygote::service::message::{DaemonStats, Request, Response};

use super::{
    DEADLINE, SETTLE, children_of, eventually, fd_count_of, fd_list_of, kill_pid, proc_stat, unique_path, zygote_bin,
};

/// A socket path for a test daemon, unique per call. Inside [`super::build_dir`]
/// when it fits in `sun_path` (108 bytes), else in a fresh directory under
/// the system temp dir.
pub fn socket_path(stem: &str) -> PathBuf {
    let p = unique_path(&format!("{stem}.sock"));
    if p.as_os_str().len() < 100 {
        return p;
    }
    let d = std::env::temp_dir().join(format!("zt-sock-{}", std::process::id()));
    fs::create_dir_all(&d).expect("create short socket dir");
    let p = d.join(p.file_name().expect("socket file name"));
    assert!(p.as_os_str().len() < 100, "no short socket path available: {}", p.display());
    p
}

/// A `zygote daemon` started by a test, on its own socket. Dropping it sends
/// SIGTERM, then SIGKILL if it has not exited shortly after, and reaps it.
pub struct Daemon {
    child: Option<std::process::Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
    status: Option<std::process::ExitStatus>,
}

impl Daemon {
    /// `zygote daemon --socket SOCKET EXTRA...`, waiting until it serves.
    pub fn start(socket: &Path, extra: &[&OsStr]) -> Daemon {
        let d = Self::spawn(socket, extra);
        d.wait_ready();
        d
    }

    /// Start the daemon process without waiting for it to serve.
    pub fn spawn(socket: &Path, extra: &[&OsStr]) -> Daemon {
        let log = PathBuf::from(format!("{}.log", socket.display()));
        let log_file = fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let mut cmd = Command::new(zygote_bin());
        cmd.arg("daemon").arg("--socket").arg(socket).args(extra);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Daemon { child: Some(child), socket: socket.to_path_buf(), log, status: None }
    }

    /// Wait until a client can connect and shake hands.
    pub fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if Client::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(st) = self.child.as_ref().and_then(|c| proc_stat(c.id() as i32).filter(|s| s.0 == 'Z')) {
                panic!("the daemon exited before serving ({st:?}); its log:\n{}", self.log_text());
            }
            assert!(start.elapsed() < DEADLINE, "the daemon did not serve within {DEADLINE:?}:\n{}", self.log_text());
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("daemon already reaped").id() as i32
    }

    /// What the daemon logged so far (its stderr).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `max` bytes (or so) of the log, for failure messages.
    pub fn log_tail(&self, max: usize) -> String {
        let log = self.log_text();
        let mut start = log.len().saturating_sub(max);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        log[start..].to_string()
    }

    /// A connected, handshaken library client.
    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
            .unwrap_or_else(|e| panic!("connect to the daemon at {}: {e}\n{}", self.socket.display(), self.log_text()))
    }

    /// `Request::Stats` on a fresh connection.
    pub fn stats(&self) -> DaemonStats {
        match self.client().call(&Request::Stats, &[]) {
            Ok((Response::Stats(s), _)) => *s,
            other => panic!("Stats: {other:?}"),
        }
    }

    /// Send a signal to the daemon.
    pub fn signal(&self, sig: i32) {
        kill_pid(self.pid(), sig).unwrap_or_else(|e| panic!("kill(daemon {}, {sig}): {e}", self.pid()));
    }

    /// Wait for the daemon to exit (it was told to); SIGKILL and panic if it
    /// has not within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        let c = self.child.as_mut().expect("daemon child");
        let start = Instant::now();
        loop {
            if let Some(st) = c.try_wait().expect("try_wait on the daemon") {
                self.status = Some(st);
                self.child = None;
                return st;
            }
            if start.elapsed() > limit {
                let _ = c.kill();
                let _ = c.wait();
                self.child = None;
                panic!("the daemon did not exit within {limit:?}; killed. Its log:\n{}", self.log_text());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Number of fds the daemon has open.
    pub fn fd_count(&self) -> usize {
        fd_count_of(self.pid())
    }

    /// The daemon's children that are zombies (exited, not reaped).
    pub fn zombies(&self) -> Vec<i32> {
        children_of(self.pid()).into_iter().filter(|(_, s)| *s == 'Z').map(|(p, _)| p).collect()
    }

    /// Wait until the daemon has no unreaped children, no running children
    /// and exactly `open` open connections (counting the one asking).
    pub fn wait_quiet(&self, open: u64) {
        let mut client = self.client();
        self.wait_quiet_with(&mut client, open);
    }

    /// [`Daemon::wait_quiet`], asking on `client`.
    pub fn wait_quiet_with(&self, client: &mut Client, open: u64) {
        eventually("daemon quiet (no live children, no zombies, no stray connections)", SETTLE, || {
            let z = self.zombies();
            let s = match client.call(&Request::Stats, &[]) {
                Ok((Response::Stats(s), _)) => *s,
                other => panic!("Stats: {other:?}"),
            };
            if z.is_empty() && s.live_children == 0 && s.open_connections == open {
                Ok(())
            } else {
                Err(format!(
                    "zombies {z:?}, live_children {}, open_connections {} (want {open}); children {:?}",
                    s.live_children,
                    s.open_connections,
                    children_of(self.pid())
                ))
            }
        })
    }

    /// The daemon's fd count once it is quiet with only `client` connected.
    pub fn quiet_fd_count(&self, client: &mut Client) -> usize {
        self.wait_quiet_with(client, 1);
        self.fd_count()
    }

    /// Wait until the daemon's fd count is at most `limit` (it closes
    /// connections asynchronously); panic listing its fds if it never is.
    pub fn expect_fds_at_most(&self, limit: usize, context: &str) {
        eventually(&format!("{context}: daemon fd count <= {limit}"), SETTLE, || {
            let n = self.fd_count();
            if n <= limit { Ok(()) } else { Err(format!("{n} fds open: {:?}", fd_list_of(self.pid()))) }
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let _ = kill_pid(c.id() as i32, libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The pid in a `started PID` / `ready PID` line of daemon_sleep.c.
pub fn pid_in(line: &str, word: &str) -> i32 {
    line.strip_prefix(word)
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("expected a line `{word} PID`, got {line:?}"))
}

/// A daemon configuration file at `path`: the shipped defaults (every field
/// is required) with `changes` (an object of fields) applied.
pub fn write_config(path: &Path, changes: serde_json::Value) -> PathBuf {
    let mut v: serde_json::Value = serde_json::from_str(zygote::config::DEFAULT_CONFIG).expect("default config");
    for (k, val) in changes.as_object().expect("changes object") {
        v[k] = val.clone();
    }
    fs::write(path, serde_json::to_vec_pretty(&v).expect("encode config")).expect("write config");
    path.to_path_buf()
}
