//! A connection's socket: framed, fd-carrying messages out (serialised) and
//! in (with the idle and frame timeouts and the daemon-wide buffer budget).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::error;
use crate::service::frame::{self, FrameError, FrameWriter, ReadStatus};
use crate::service::limits::ConnReader;
use crate::service::message::{ErrorCode, Limits, Response};

/// A connection's socket plus serialised writes.
pub(super) struct Conn {
    fd: AsyncFd<OwnedFd>,
    write_lock: tokio::sync::Mutex<()>,
}

impl Conn {
    pub(super) fn new(fd: AsyncFd<OwnedFd>) -> Self {
        Conn { fd, write_lock: tokio::sync::Mutex::new(()) }
    }

    pub(super) async fn send<T: serde::Serialize>(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        self.send_bytes(&frame::encode(msg), fds).await
    }

    /// Send a frame with this body (JSON, or an image reply).
    pub(super) async fn send_bytes(&self, body: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        self.send_writer(FrameWriter::new(body, fds)).await
    }

    /// Send what is left of a frame.
    pub(super) async fn send_writer(&self, mut w: FrameWriter<'_>) -> std::io::Result<()> {
        let _w = self.write_lock.lock().await;
        while !w.done() {
            let mut guard = self.fd.writable().await?;
            match w.write_once(self.fd.get_ref().as_fd()) {
                Ok(()) | Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The next frame (`None` at a clean EOF). Gives up with `Idle` when
    /// `idle` passes with nothing received, with `FrameTimeout` when a frame
    /// begun is not complete in time, with `Budget` when the bytes buffered
    /// would exceed the daemon-wide budget. Cancel-safe: what was read stays
    /// in `rd`.
    pub(super) async fn recv(
        &self,
        rd: &mut ConnReader,
        limits: &Limits,
        idle: Option<Duration>,
    ) -> Result<Option<frame::Frame>, RecvError> {
        let idle_deadline = idle.map(|d| tokio::time::Instant::now() + d);
        loop {
            if let Some(f) = rd.reader.next_frame(limits)? {
                rd.taken();
                return Ok(Some(f));
            }
            // No complete frame: the fds held belong to the one begun, which
            // may carry at most max_fds.
            let held = rd.reader.pending_fds();
            if held > limits.max_fds as usize {
                return Err(FrameError::TooManyFds { count: held as u32, max: limits.max_fds }.into());
            }
            let partial = rd.reader.buffered() > 0 || held > 0;
            let deadline = match (partial, rd.frame_timeout) {
                (true, Some(t)) => Some(*rd.partial_since.get_or_insert_with(tokio::time::Instant::now) + t),
                (true, None) => None,
                (false, _) => idle_deadline,
            };
            let ready = match deadline {
                Some(d) => match tokio::time::timeout_at(d, self.fd.readable()).await {
                    Ok(r) => r,
                    Err(_) if partial => return Err(RecvError::FrameTimeout(rd.frame_timeout.unwrap_or_default())),
                    Err(_) => return Err(RecvError::Idle),
                },
                None => self.fd.readable().await,
            };
            let mut guard = ready?;
            match rd.reader.read_once(self.fd.get_ref().as_fd())? {
                ReadStatus::Data => {
                    if !rd.charge.set(rd.reader.buffered() as u64) {
                        return Err(RecvError::Budget(rd.budget_max));
                    }
                }
                ReadStatus::Eof => return Ok(rd.reader.finish(limits)?),
                ReadStatus::WouldBlock => guard.clear_ready(),
            }
        }
    }
}

/// Why no frame came.
#[derive(Debug, thiserror::Error)]
pub(super) enum RecvError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("no request for a while")]
    Idle,
    #[error("a frame was not completed within {} ms of its first byte", .0.as_millis())]
    FrameTimeout(Duration),
    #[error("the daemon's receive buffers are full ({0} bytes across all connections); try again later")]
    Budget(u64),
}

impl From<std::io::Error> for RecvError {
    fn from(e: std::io::Error) -> Self {
        RecvError::Frame(FrameError::Io(e))
    }
}

impl RecvError {
    /// The answer sent before closing the connection, if any.
    pub(super) fn response(&self) -> Option<Response> {
        match self {
            RecvError::Frame(e) => Some(frame_error(e)),
            RecvError::Idle => None,
            RecvError::FrameTimeout(_) => Some(error(ErrorCode::BadRequest, self.to_string())),
            RecvError::Budget(_) => Some(error(ErrorCode::Internal, self.to_string())),
        }
    }
}

/// The answer to a frame that broke the protocol.
fn frame_error(e: &FrameError) -> Response {
    let code = match e {
        FrameError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        FrameError::TooManyFds { .. } | FrameError::FdMismatch { .. } => ErrorCode::TooManyFds,
        _ => ErrorCode::BadRequest,
    };
    error(code, e.to_string())
}
