//! The daemon's side of a round, as `zygote spawn` sees it (`Spawned`, then `Exited`,
//! or a refusal), its statistics, and the executables each client opens; shared by
//! `bench-daemon` and `stress`.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use zygote_protocol::client::{Client, ClientError};
use zygote_protocol::message::{DaemonStats, ErrorCode, Request, Response};

/// A request the daemon refused: the round failed, the connection is fine.
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    /// `"{request} refused (CODE): message"`.
    pub fn describe(&self, request: &str) -> String {
        format!("{request} refused ({}): {}", self.code.fidl_name(), self.message)
    }
}

/// A reply, or the daemon's refusal; `Err` for a broken connection or protocol.
pub type Reply<T> = Result<Result<T, Refusal>, ClientError>;

/// Wait for `Spawned`: the pid, the image's key and the pidfd(s).
pub fn recv_spawned(client: &mut Client) -> Reply<(i32, String, Vec<OwnedFd>)> {
    match client.recv() {
        Ok((Response::Spawned { pid, key }, fds)) => Ok(Ok((pid, key, fds))),
        Ok((other, _)) => Err(ClientError::Protocol(format!("expected Spawned, got {other:?}"))),
        Err(ClientError::Server { code, message }) => Ok(Err(Refusal { code, message })),
        Err(e) => Err(e),
    }
}

/// How the daemon saw a child end.
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Ended, the daemon could not tell how.
    Unknown,
}

/// Wait for `Exited`.
pub fn recv_exited(client: &mut Client) -> Reply<Exit> {
    let reply = match client.recv() {
        Ok((reply, _)) => reply,
        Err(ClientError::Server { code, message }) => return Ok(Err(Refusal { code, message })),
        Err(e) => return Err(e),
    };
    match reply {
        Response::Exited { code: Some(c), .. } => Ok(Ok(Exit::Code(c))),
        Response::Exited { signal: Some(s), .. } => Ok(Ok(Exit::Signal(s))),
        Response::Exited { .. } => Ok(Ok(Exit::Unknown)),
        other => Err(ClientError::Protocol(format!("expected Exited, got {other:?}"))),
    }
}

/// The daemon's statistics.
pub fn stats(client: &mut Client) -> Result<DaemonStats, ClientError> {
    match client.call(&Request::Stats, &[]) {
        Ok((Response::Stats(s), _)) => Ok(*s),
        Ok((other, _)) => Err(ClientError::Protocol(format!("expected Stats, got {other:?}"))),
        Err(e) => Err(e),
    }
}

/// Open every one of `paths` (a client sends the daemon a duplicate each round);
/// `Err`: which one could not be opened, and why.
pub fn open_all<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<Vec<OwnedFd>, (usize, io::Error)> {
    paths.into_iter().enumerate().map(|(i, p)| File::open(p).map(OwnedFd::from).map_err(|e| (i, e))).collect()
}
