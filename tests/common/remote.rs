//! Spawning through a running daemon with the library client: the request,
//! the stdio fds, waiting for the exit and collecting the output.

use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use zygote::service::client::{Client, ClientError};
use zygote::service::message::{Request, Response, SpawnArgs};

use super::{Outcome, PidGuard, collect, input_pipe, pipe, spawn_reader};

/// `SpawnArgs` for `PROG ARGS...` with stdio at fds 0, 1 and 2 and a small
/// fixed environment.
pub fn spawn_args(prog: &Path, args: &[&str]) -> SpawnArgs {
    let mut argv = vec![prog.as_os_str().as_bytes().to_vec()];
    argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    SpawnArgs {
        argv,
        environ: vec![b"PATH=/usr/bin:/bin".to_vec(), b"ZYGOTE_TEST=1".to_vec()],
        fds: vec![0, 1, 2],
        path: prog.as_os_str().as_bytes().to_vec(),
        ..SpawnArgs::default()
    }
}

/// A Spawn through the library client: the executable (opened here) plus
/// `stdio` as the child's fds 0, 1 and 2. Returns the pid and the pidfd the
/// daemon attached. The caller's copies of `stdio` are closed on return.
pub fn remote_spawn(client: &mut Client, args: SpawnArgs, stdio: [OwnedFd; 3]) -> Result<(i32, OwnedFd), ClientError> {
    let path = PathBuf::from(OsStr::from_bytes(&args.path));
    let exe = fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let fds = [exe.as_fd(), stdio[0].as_fd(), stdio[1].as_fd(), stdio[2].as_fd()];
    let (reply, mut reply_fds) = client.call(&Request::Spawn(args), &fds)?;
    match reply {
        Response::Spawned { pid, .. } if reply_fds.len() == 1 => Ok((pid, reply_fds.remove(0))),
        other => {
            Err(ClientError::Protocol(format!("expected Spawned with one pidfd, got {other:?} with {reply_fds:?}")))
        }
    }
}

/// Shell-style code of an `Exited` reply.
pub fn exited_code(r: &Response) -> Result<i32, String> {
    match r {
        Response::Exited { code: Some(c), signal: None, .. } => Ok(*c),
        Response::Exited { code: None, signal: Some(s), .. } => Ok(128 + s),
        other => Err(format!("expected Exited with a code or a signal, got {other:?}")),
    }
}

/// `Request::Wait` for `pid`; the shell-style status.
pub fn remote_wait(client: &mut Client, pid: i32) -> Result<i32, ClientError> {
    let (reply, _) = client.call(&Request::Wait { pid }, &[])?;
    match &reply {
        Response::Exited { pid: p, .. } if *p == pid => exited_code(&reply).map_err(ClientError::Protocol),
        other => Err(ClientError::Protocol(format!("Wait({pid}): got {other:?}"))),
    }
}

/// Spawn `PROG ARGS` through the daemon with `input` on stdin and stdout
/// and stderr piped back, wait for it (Request::Wait) and collect.
pub fn remote_run(client: &mut Client, prog: &Path, args: &[&str], input: &[u8]) -> Result<Outcome, String> {
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let stdin = input_pipe(input);
    let out_rx = spawn_reader(fs::File::from(out_r));
    let err_rx = spawn_reader(fs::File::from(err_r));
    let (pid, _pidfd) =
        remote_spawn(client, spawn_args(prog, args), [stdin, out_w, err_w]).map_err(|e| format!("Spawn: {e}"))?;
    let _guard = PidGuard(pid);
    let code = remote_wait(client, pid).map_err(|e| format!("Wait({pid}): {e}"))?;
    Ok(Outcome { code, stdout: collect(out_rx, "remote stdout"), stderr: collect(err_rx, "remote stderr") })
}
