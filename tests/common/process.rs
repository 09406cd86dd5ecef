//! Running programs (std `Command`s and the `zygote` CLI) with a safety
//! deadline, and their outcomes: exit code, stdout and stderr.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use zygote_linux::ExitStatus;

use super::zygote_bin;

/// Safety deadline for anything that should finish quickly. Never used to
/// assert speed: only to turn a hang into a clear failure.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// What a program run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Shell-style status: exit code, or 128 + signal number.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Outcome {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status {}\n--- stdout ---\n{}--- stderr ---\n{}", self.code, self.stdout_str(), self.stderr_str())
    }
}

/// Shell-style code of a std exit status.
pub fn std_shell_code(st: std::process::ExitStatus) -> i32 {
    match (st.code(), st.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => panic!("exit status with neither code nor signal: {st:?}"),
    }
}

/// Shell-style code of a library exit status (computed by the test, not by
/// `ExitStatus::shell_code`, so that one can be checked against it).
pub fn lib_shell_code(st: &ExitStatus) -> i32 {
    match st {
        ExitStatus::Exited(c) => *c,
        ExitStatus::Signaled(s) => 128 + *s,
    }
}

/// Human-readable library exit status.
pub fn describe(st: &ExitStatus) -> String {
    format!("{st:?}")
}

/// Read a pipe to EOF on a helper thread.
pub fn spawn_reader(r: impl Read + Send + 'static) -> mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut r = r;
        let mut buf = Vec::new();
        let res = r.read_to_end(&mut buf).map(|_| buf);
        // close the pipe before reporting, so a caller that counts its fds
        // after collecting does not race with this thread
        drop(r);
        let _ = tx.send(res);
    });
    rx
}

/// Wait for a reader started with [`spawn_reader`]; panics on timeout.
pub fn collect(rx: mpsc::Receiver<io::Result<Vec<u8>>>, what: &str) -> Vec<u8> {
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("reading {what}: {e}"),
        Err(_) => panic!(
            "{what} did not reach EOF within {DEADLINE:?} after the process exited \
             (a write end leaked to another process, or to the spawner itself?)"
        ),
    }
}

/// Kills (SIGKILL) and reaps a std child on drop unless it was waited for.
pub struct StdChildGuard(pub Option<std::process::Child>);

impl Drop for StdChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run a command with stdin from /dev/null, capturing stdout and stderr,
/// with a safety deadline. Retries on ETXTBSY (a file written by this
/// multi-threaded process may briefly be open in a concurrently forked child).
pub fn run_command(cmd: &mut Command) -> Outcome {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut tries = 0;
    let child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot spawn {cmd:?}: {e}"),
        }
    };
    wait_for_outcome(cmd, StdChildGuard(Some(child)))
}

/// Wait for the child of `cmd` (stdout and stderr piped), with the safety
/// deadline (the guard kills it past that), and collect its outcome.
fn wait_for_outcome(cmd: &Command, mut guard: StdChildGuard) -> Outcome {
    let c = guard.0.as_mut().expect("child present");
    let out_rx = spawn_reader(c.stdout.take().expect("stdout piped"));
    let err_rx = spawn_reader(c.stderr.take().expect("stderr piped"));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = c.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > DEADLINE {
            panic!("{cmd:?} still running after {DEADLINE:?}; killed");
        }
        thread::sleep(Duration::from_millis(5));
    };
    guard.0 = None;
    Outcome { code: std_shell_code(status), stdout: collect(out_rx, "stdout"), stderr: collect(err_rx, "stderr") }
}

/// Run `zygote ARGS...` (the CLI).
pub fn zygote_cli<I, S>(args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_command(Command::new(zygote_bin()).args(args))
}

/// `zygote run [--clear-env] [--env K=V]... -- PROG ARGS...`; with
/// `clear_env` the child's environment is exactly `env`.
pub fn zygote_run(prog: &Path, args: &[&str], env: &[(&str, &str)], clear_env: bool) -> Outcome {
    zygote_cli(zygote_run_cli(prog, args, env, clear_env, false))
}

/// `zygote run [--stats --json] [--clear-env] [--env K=V]... -- PROG ARGS...`
/// as CLI arguments (without the binary).
pub fn zygote_run_cli(prog: &Path, args: &[&str], env: &[(&str, &str)], clear_env: bool, stats: bool) -> Vec<OsString> {
    let mut cli: Vec<OsString> = vec!["run".into()];
    if stats {
        cli.push("--stats".into());
        cli.push("--json".into());
    }
    if clear_env {
        cli.push("--clear-env".into());
    }
    push_env_and_command(&mut cli, env, prog, args);
    cli
}

/// `[--env K=V]... -- PROG ARGS...`, appended to a CLI command line.
pub fn push_env_and_command(cli: &mut Vec<OsString>, env: &[(&str, &str)], prog: &Path, args: &[&str]) {
    for (k, v) in env {
        cli.push("--env".into());
        cli.push(format!("{k}={v}").into());
    }
    cli.push("--".into());
    cli.push(prog.into());
    cli.extend(args.iter().map(OsString::from));
}

/// `zygote spawn --daemon-side --socket S --clear-env [--env K=V]... -- PROG
/// ARGS`: the daemon starts PROG with exactly `env`.
pub fn daemon_spawn_cli(socket: &Path, prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<OsString> {
    let mut cli: Vec<OsString> =
        vec!["spawn".into(), "--daemon-side".into(), "--socket".into(), socket.into(), "--clear-env".into()];
    push_env_and_command(&mut cli, env, prog, args);
    cli
}

/// Run PROG directly the same way [`zygote_run`] would.
pub fn direct_run(prog: &Path, args: &[&str], env: &[(&str, &str)], clear_env: bool) -> Outcome {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    if clear_env {
        cmd.env_clear();
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_command(&mut cmd)
}

/// Like [`run_command`], with `input` written to the command's stdin.
pub fn run_command_input(cmd: &mut Command, input: &[u8]) -> Outcome {
    use std::io::Write;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let mut guard = StdChildGuard(Some(child));
    let c = guard.0.as_mut().expect("child present");
    let mut stdin = c.stdin.take().expect("stdin piped");
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        // A program may exit without reading all of it: EPIPE is fine.
        let _ = stdin.write_all(&input);
    });
    let outcome = wait_for_outcome(cmd, guard);
    let _ = writer.join();
    outcome
}
