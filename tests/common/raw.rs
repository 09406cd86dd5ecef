//! Raw protocol access for the robustness tests: frames with any header
//! values, and a connection that sends arbitrary bytes and fds.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use zygote::service::frame::{FrameReader, HEADER_SIZE, MAGIC, ReadStatus};
use zygote::service::message::{Hello, Limits, PROTOCOL_VERSION, Response, Welcome};

use super::DEADLINE;

/// A frame header as the protocol lays it out, with any values.
pub fn raw_header(magic: u32, body_len: u32, fd_count: u32) -> [u8; HEADER_SIZE] {
    let mut h = [0u8; HEADER_SIZE];
    h[0..4].copy_from_slice(&magic.to_le_bytes());
    h[4..8].copy_from_slice(&body_len.to_le_bytes());
    h[8..12].copy_from_slice(&fd_count.to_le_bytes());
    h
}

/// A well-formed frame (header + body) announcing `fd_count` fds.
pub fn raw_frame(body: &[u8], fd_count: u32) -> Vec<u8> {
    let mut v = raw_header(MAGIC, body.len() as u32, fd_count).to_vec();
    v.extend_from_slice(body);
    v
}

/// What came back on a raw connection.
#[derive(Debug)]
pub enum Reply {
    /// A decoded response (with the fds attached to it).
    Response(Response, Vec<OwnedFd>),
    /// A frame whose body is not a `Response` (e.g. a `Welcome`).
    Other(Vec<u8>),
    /// The daemon closed the connection (or it broke); the reason.
    Closed(String),
}

/// A connection to the daemon that can send anything, for protocol tests.
pub struct RawConn {
    pub sock: UnixStream,
    reader: FrameReader,
}

impl RawConn {
    pub fn connect(socket: &Path) -> RawConn {
        let sock = UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
        RawConn { sock, reader: FrameReader::new() }
    }

    /// Connect and shake hands (Hello, Welcome).
    pub fn handshake(socket: &Path) -> RawConn {
        let mut c = Self::connect(socket);
        c.send_msg(&Hello { version: PROTOCOL_VERSION }, &[]).expect("send Hello");
        match c.read(DEADLINE) {
            Reply::Other(body) => {
                let _: Welcome = serde_json::from_slice(&body)
                    .unwrap_or_else(|e| panic!("expected Welcome: {e}: {}", String::from_utf8_lossy(&body)));
            }
            other => panic!("expected Welcome, got {other:?}"),
        }
        c
    }

    /// Send raw bytes; `fds` go with the first `sendmsg`.
    pub fn send_bytes(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
        let mut sent = 0;
        let mut first = true;
        while sent < bytes.len() || first {
            let iov = [io::IoSlice::new(&bytes[sent..])];
            let n = if first && !fds.is_empty() {
                let mut space = vec![std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                assert!(control.push(SendAncillaryMessage::ScmRights(fds)), "cmsg buffer too small");
                sendmsg(&self.sock, &iov, &mut control, SendFlags::NOSIGNAL)
            } else {
                sendmsg(&self.sock, &iov, &mut SendAncillaryBuffer::default(), SendFlags::NOSIGNAL)
            };
            match n {
                Ok(n) => sent += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            first = false;
        }
        Ok(())
    }

    /// Send a message as a well-formed frame with `fds`.
    pub fn send_msg<T: serde::Serialize>(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let body = serde_json::to_vec(msg).expect("encode message");
        self.send_bytes(&raw_frame(&body, fds.len() as u32), fds)
    }

    /// Close our sending side (the daemon sees EOF; we can still read).
    pub fn shutdown_write(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }

    /// The next frame, or the connection's end. Panics if neither comes
    /// within `limit` (safety net).
    pub fn read(&mut self, limit: Duration) -> Reply {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let limits = Limits::default();
        let start = Instant::now();
        loop {
            match self.reader.next_frame(&limits) {
                Ok(Some(f)) => return decode_reply(f.body, f.fds),
                Ok(None) => {}
                Err(e) => return Reply::Closed(format!("bad frame from the daemon: {e}")),
            }
            let mut fds = [PollFd::new(&self.sock, PollFlags::IN)];
            let ts = Timespec { tv_sec: 0, tv_nsec: 50_000_000 };
            match poll(&mut fds, Some(&ts)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => {
                    assert!(start.elapsed() < limit, "no reply and no close from the daemon within {limit:?}");
                    continue;
                }
                Ok(_) => {}
                Err(e) => return Reply::Closed(format!("poll: {e}")),
            }
            match self.reader.read_once(self.sock.as_fd()) {
                Ok(ReadStatus::Data) | Ok(ReadStatus::WouldBlock) => {}
                Ok(ReadStatus::Eof) => {
                    return match self.reader.finish(&limits) {
                        Ok(Some(f)) => decode_reply(f.body, f.fds),
                        Ok(None) => Reply::Closed("EOF".into()),
                        Err(e) => Reply::Closed(format!("EOF inside a frame: {e}")),
                    };
                }
                Err(e) => return Reply::Closed(format!("read: {e}")),
            }
        }
    }

    /// Read until the daemon closes the connection, failing if it sends
    /// anything else first.
    pub fn expect_closed(&mut self, context: &str) {
        match self.read(DEADLINE) {
            Reply::Closed(_) => {}
            other => panic!("{context}: expected the daemon to close the connection, got {other:?}"),
        }
    }
}

fn decode_reply(body: Vec<u8>, fds: Vec<OwnedFd>) -> Reply {
    match serde_json::from_slice::<Response>(&body) {
        Ok(r) => Reply::Response(r, fds),
        Err(_) => Reply::Other(body),
    }
}
