//! Other processes seen through /proc and signals: state, parent, children,
//! blocked signals; a kill-on-drop guard and polling until a condition holds.

use std::fs;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use zygote_linux::procfs::status_mask;

/// How long a condition that the daemon brings about asynchronously (a
/// reaped child, a closed connection) may take before a test gives up. A
/// safety net against hangs, not a timing assertion: a passing test never
/// waits for it.
pub const SETTLE: Duration = Duration::from_secs(20);

/// Poll `check` until it returns `Ok`, for at most `limit`; panic with the
/// last `Err` (and `what`) if it never does.
pub fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > limit => panic!("{what}: still not true after {limit:?}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Send `sig` to a process by pid.
pub fn kill_pid(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, sig) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// State letter (`R`, `S`, `Z`, ...) and parent pid of a process, from
/// /proc/PID/stat; `None` if it does not exist (anymore).
pub fn proc_stat(pid: i32) -> Option<(char, i32)> {
    use zygote_linux::procfs::{stat_field, stat_state};
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some((stat_state(&text)?, stat_field(&text, 4) as i32))
}

/// Whether `pid` exists and is not a zombie.
pub fn pid_running(pid: i32) -> bool {
    matches!(proc_stat(pid), Some((s, _)) if s != 'Z' && s != 'X')
}

/// `(pid, state)` of every process whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Some((state, parent)) = proc_stat(pid)
            && parent == ppid
        {
            out.push((pid, state));
        }
    }
    out.sort();
    out
}

/// Kills (SIGKILL) a process by pid on drop if it still runs: for processes
/// the daemon started that a failing test might leave behind.
pub struct PidGuard(pub i32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if self.0 > 0 && pid_running(self.0) {
            let _ = kill_pid(self.0, libc::SIGKILL);
        }
    }
}

/// Whether `sig` is blocked in the main thread of `pid` (SigBlk of
/// /proc/PID/status).
pub fn sig_blocked(pid: i32, sig: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    status_mask(&status, "SigBlk").is_some_and(|m| m & (1u64 << (sig - 1)) != 0)
}
