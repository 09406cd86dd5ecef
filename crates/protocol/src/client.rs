//! The blocking client used by `zygote spawn`, `preload`, `evict` and `stats`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::frame::{FrameError, FrameReader, send_blocking};
use super::message::{ErrorCode, Hello, Limits, PROTOCOL_VERSION, Request, Response, Welcome};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the zygote daemon at {path} ({source}); is one running? start it with `zygote daemon`")]
    NoDaemon { path: PathBuf, source: std::io::Error },
    #[error(
        "refusing the server at {path}: it runs as uid {uid}, not as this user (uid {own}) or root; another user may \
         be impersonating the zygote daemon, so nothing was sent to it"
    )]
    UntrustedServer { path: PathBuf, uid: u32, own: u32 },
    #[error("cannot check who serves {path} (SO_PEERCRED): {source}")]
    PeerCred { path: PathBuf, source: std::io::Error },
    #[error("talking to the daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("talking to the daemon: {0}")]
    Frame(#[from] FrameError),
    #[error("the daemon closed the connection")]
    Closed,
    #[error("unexpected reply from the daemon: {0}")]
    Protocol(String),
    #[error("{message}")]
    Server { code: ErrorCode, message: String },
}

impl ClientError {
    /// Exit status for a command that failed this way.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Server { code, .. } => code.exit_code(),
            _ => 125,
        }
    }
}

/// The server must run as our uid or as root: anyone else listening on the
/// path (after replacing the socket) would get our environment and fds.
fn check_server(sock: &UnixStream, path: &Path) -> Result<(), ClientError> {
    let cred = rustix::net::sockopt::socket_peercred(sock)
        .map_err(|e| ClientError::PeerCred { path: path.to_path_buf(), source: e.into() })?;
    let (uid, own) = (cred.uid.as_raw(), rustix::process::getuid().as_raw());
    if uid == own || uid == 0 {
        Ok(())
    } else {
        Err(ClientError::UntrustedServer { path: path.to_path_buf(), uid, own })
    }
}

pub struct Client {
    sock: UnixStream,
    reader: FrameReader,
    limits: Limits,
}

impl Client {
    /// Connect, check that the server is this user's or root's (before
    /// sending it anything), and shake hands.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let sock =
            UnixStream::connect(path).map_err(|source| ClientError::NoDaemon { path: path.to_path_buf(), source })?;
        check_server(&sock, path)?;
        let mut c = Client { sock, reader: FrameReader::new(), limits: Limits::default() };
        // A daemon that refuses us answers and closes; if our Hello meets a
        // closed socket, its answer may still be waiting to be read.
        if let Err(e) = send_blocking(&c.sock, &Hello { version: PROTOCOL_VERSION }, &[])
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(e.into());
        }
        let frame = c.reader.read_frame_blocking(c.sock.as_fd(), &c.limits)?.ok_or(ClientError::Closed)?;
        if let Ok(w) = serde_json::from_slice::<Welcome>(&frame.body) {
            c.limits = w.limits;
            return Ok(c);
        }
        match serde_json::from_slice::<Response>(&frame.body) {
            Ok(Response::Error { code, message }) => Err(ClientError::Server { code, message }),
            _ => Err(ClientError::Protocol(String::from_utf8_lossy(&frame.body).into_owned())),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn socket(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    pub fn send(&mut self, req: &Request, fds: &[BorrowedFd<'_>]) -> Result<(), ClientError> {
        Ok(send_blocking(&self.sock, req, fds)?)
    }

    /// The next response; a server error becomes `Err(Server)`.
    pub fn recv(&mut self) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        let frame = self.reader.read_frame_blocking(self.sock.as_fd(), &self.limits)?.ok_or(ClientError::Closed)?;
        match serde_json::from_slice::<Response>(&frame.body) {
            Ok(Response::Error { code, message }) => Err(ClientError::Server { code, message }),
            Ok(r) => Ok((r, frame.fds)),
            Err(e) => Err(ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(&frame.body)))),
        }
    }

    /// Send a request and read its response.
    pub fn call(&mut self, req: &Request, fds: &[BorrowedFd<'_>]) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        self.send(req, fds)?;
        self.recv()
    }
}
