//! Framing on a Unix stream socket: a small fixed header, a JSON body, and
//! fds passed with SCM_RIGHTS.
//!
//! ```text
//! FrameHeader { magic: u32 = "ZYGF", body_len: u32, fd_count: u32, reserved: u32 }  (16 bytes, LE)
//! body: body_len bytes of JSON (a Hello, Welcome, Request or Response)
//! ```
//!
//! The fds of a frame are attached to the `sendmsg` that carries its header.
//! The reader queues fds in arrival order and gives each completed frame the
//! next `fd_count` of them; any mismatch is an error, after which the
//! connection is closed (a stream cannot be resynchronised).
//!
//! [`FrameReader`] works on blocking sockets (the client) and non-blocking ones
//! (the server, driven by readiness), since it only ever does one `recvmsg`
//! per call and keeps partial frames buffered.

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, recvmsg, sendmsg,
};

use super::message::Limits;

pub const MAGIC: u32 = u32::from_le_bytes(*b"ZYGF");
pub const HEADER_SIZE: usize = 16;
/// Most fds one `recvmsg` accepts; above any `Limits::max_fds`.
pub const RECV_FDS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame magic {0:#010x}")]
    BadMagic(u32),
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u32, max: u32 },
    #[error("frame carries {count} fds, more than the limit of {max}")]
    TooManyFds { count: u32, max: u32 },
    #[error("frame announced {expected} fds but {got} arrived")]
    FdMismatch { expected: u32, got: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// A complete frame.
#[derive(Debug)]
pub struct Frame {
    pub body: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

fn header(body_len: usize, fd_count: usize) -> [u8; HEADER_SIZE] {
    let mut h = [0u8; HEADER_SIZE];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&(body_len as u32).to_le_bytes());
    h[8..12].copy_from_slice(&(fd_count as u32).to_le_bytes());
    h
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Outcome of one read attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// Bytes arrived (maybe not a whole frame yet).
    Data,
    /// The peer closed the connection.
    Eof,
    /// Nothing to read now (non-blocking socket).
    WouldBlock,
}

/// Accumulates bytes and fds into frames.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    eof: bool,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// One `recvmsg`: append what arrived.
    pub fn read_once(&mut self, sock: BorrowedFd<'_>) -> Result<ReadStatus, FrameError> {
        let mut chunk = [0u8; 16 * 1024];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(RECV_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = loop {
            match recvmsg(sock, &mut [IoSliceMut::new(&mut chunk)], &mut control, RecvFlags::CMSG_CLOEXEC) {
                Ok(m) => break m,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return Ok(ReadStatus::WouldBlock),
                Err(e) => return Err(FrameError::Io(e.into())),
            }
        };
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                self.fds.extend(fds);
            }
        }
        if msg.flags.contains(ReturnFlags::CTRUNC) {
            return Err(FrameError::TooManyFds { count: RECV_FDS as u32 + 1, max: RECV_FDS as u32 });
        }
        if msg.bytes == 0 {
            self.eof = true;
            return Ok(ReadStatus::Eof);
        }
        self.buf.extend_from_slice(&chunk[..msg.bytes]);
        Ok(ReadStatus::Data)
    }

    /// Take the next complete frame, if there is one. Checks the limits as
    /// soon as the header is in.
    pub fn next_frame(&mut self, limits: &Limits) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < HEADER_SIZE {
            return if self.eof && !self.buf.is_empty() { Err(FrameError::Truncated) } else { Ok(None) };
        }
        let magic = le32(&self.buf[0..4]);
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let len = le32(&self.buf[4..8]);
        let count = le32(&self.buf[8..12]);
        if len > limits.max_message_bytes {
            return Err(FrameError::TooLarge { len, max: limits.max_message_bytes });
        }
        if count > limits.max_fds {
            return Err(FrameError::TooManyFds { count, max: limits.max_fds });
        }
        let total = HEADER_SIZE + len as usize;
        if self.buf.len() < total {
            return if self.eof { Err(FrameError::Truncated) } else { Ok(None) };
        }
        if self.fds.len() < count as usize {
            return Err(FrameError::FdMismatch { expected: count, got: self.fds.len() });
        }
        let body = self.buf[HEADER_SIZE..total].to_vec();
        self.buf.drain(..total);
        let fds = self.fds.drain(..count as usize).collect();
        if self.buf.is_empty() && !self.fds.is_empty() {
            // More fds came with this frame than its header announced.
            return Err(FrameError::FdMismatch { expected: count, got: count as usize + self.fds.len() });
        }
        Ok(Some(Frame { body, fds }))
    }

    /// Bytes buffered and not yet taken as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Fds received and not yet given to a frame.
    pub fn pending_fds(&self) -> usize {
        self.fds.len()
    }

    /// Fds that arrived without a frame to claim them (a protocol error if
    /// any remain once the buffer is empty).
    pub fn stray_fds(&self) -> usize {
        if self.buf.is_empty() { self.fds.len() } else { 0 }
    }

    /// After EOF: the last complete frame, `None` if the stream ended cleanly
    /// between frames, or `Truncated`.
    pub fn finish(&mut self, limits: &Limits) -> Result<Option<Frame>, FrameError> {
        match self.next_frame(limits)? {
            Some(f) => Ok(Some(f)),
            None if self.buf.is_empty() => Ok(None),
            None => Err(FrameError::Truncated),
        }
    }

    /// Blocking read of a whole frame (client side). `None` on clean EOF.
    pub fn read_frame_blocking(&mut self, sock: BorrowedFd<'_>, limits: &Limits) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(f) = self.next_frame(limits)? {
                return Ok(Some(f));
            }
            match self.read_once(sock)? {
                ReadStatus::Data => {}
                ReadStatus::Eof => return self.finish(limits),
                ReadStatus::WouldBlock => {
                    rustix::event::poll(&mut [rustix::event::PollFd::new(&sock, rustix::event::PollFlags::IN)], None)
                        .map_err(|e| FrameError::Io(e.into()))?;
                }
            }
        }
    }
}

/// A frame being written: header and body, fds sent with the first byte.
pub struct FrameWriter<'a> {
    bytes: Vec<u8>,
    sent: usize,
    fds: &'a [BorrowedFd<'a>],
}

impl<'a> FrameWriter<'a> {
    pub fn new(body: &[u8], fds: &'a [BorrowedFd<'a>]) -> Self {
        let mut bytes = Vec::with_capacity(HEADER_SIZE + body.len());
        bytes.extend_from_slice(&header(body.len(), fds.len()));
        bytes.extend_from_slice(body);
        FrameWriter { bytes, sent: 0, fds }
    }

    /// The rest of a frame of `body` with `fd_count` fds, of which `sent`
    /// bytes went out already, and the fds with them (so `sent` is more
    /// than 0 when `fd_count` is: else start over with [`FrameWriter::new`]).
    pub fn resume(body: &[u8], fd_count: usize, sent: usize) -> FrameWriter<'static> {
        debug_assert!(sent > 0 || fd_count == 0, "the fds go with the first bytes");
        let mut bytes = Vec::with_capacity(HEADER_SIZE + body.len());
        bytes.extend_from_slice(&header(body.len(), fd_count));
        bytes.extend_from_slice(body);
        let sent = sent.min(bytes.len());
        FrameWriter { bytes, sent, fds: &[] }
    }

    pub fn done(&self) -> bool {
        self.sent == self.bytes.len()
    }

    /// Bytes of the frame (header included) sent so far.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// One `sendmsg`. Returns `Err(AGAIN)` on a full non-blocking socket.
    pub fn write_once(&mut self, sock: BorrowedFd<'_>) -> Result<(), Errno> {
        let iov = [IoSlice::new(&self.bytes[self.sent..])];
        let n = if self.sent == 0 && !self.fds.is_empty() {
            let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(self.fds.len()))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(self.fds)) {
                return Err(Errno::NOBUFS);
            }
            sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL)?
        } else {
            sendmsg(sock, &iov, &mut SendAncillaryBuffer::default(), SendFlags::NOSIGNAL)?
        };
        self.sent += n;
        Ok(())
    }

    /// Write it all on a blocking socket.
    pub fn write_blocking(mut self, sock: BorrowedFd<'_>) -> std::io::Result<()> {
        while !self.done() {
            match self.write_once(sock) {
                Ok(()) | Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    rustix::event::poll(&mut [rustix::event::PollFd::new(&sock, rustix::event::PollFlags::OUT)], None)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Encode a message as a frame body.
pub fn encode<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    // Our message types serialise infallibly (no maps with non-string keys).
    serde_json::to_vec(msg).unwrap_or_default()
}

/// Send one message with fds on a blocking socket.
pub fn send_blocking<T: serde::Serialize>(sock: impl AsFd, msg: &T, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let body = encode(msg);
    FrameWriter::new(&body, fds).write_blocking(sock.as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn frames_with_fds_round_trip_and_limits_hold() {
        let (a, b) = UnixStream::pair().unwrap();
        let limits = Limits::default();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        send_blocking(&a, &serde_json::json!({"x": 1}), &[devnull.as_fd(), devnull.as_fd()]).unwrap();
        send_blocking(&a, &serde_json::json!({"y": 2}), &[]).unwrap();
        let mut r = FrameReader::new();
        let f = r.read_frame_blocking(b.as_fd(), &limits).unwrap().unwrap();
        assert_eq!(f.body, br#"{"x":1}"#);
        assert_eq!(f.fds.len(), 2);
        let f = r.read_frame_blocking(b.as_fd(), &limits).unwrap().unwrap();
        assert_eq!((f.body.as_slice(), f.fds.len()), (&br#"{"y":2}"#[..], 0));

        // Oversized frame: refused from the header alone.
        let mut big = header(100, 0).to_vec();
        big.extend_from_slice(&[b' '; 100]);
        rustix::io::write(&a, &big).unwrap();
        let small = Limits { max_message_bytes: 10, ..limits };
        assert!(matches!(r.read_frame_blocking(b.as_fd(), &small), Err(FrameError::TooLarge { len: 100, max: 10 })));

        // Garbage and truncation.
        let (a, b) = UnixStream::pair().unwrap();
        rustix::io::write(&a, b"GARBAGE GARBAGE GARBAGE").unwrap();
        let mut r = FrameReader::new();
        assert!(matches!(r.read_frame_blocking(b.as_fd(), &limits), Err(FrameError::BadMagic(_))));
        let (a, b) = UnixStream::pair().unwrap();
        rustix::io::write(&a, &header(50, 0)[..]).unwrap();
        drop(a);
        let mut r = FrameReader::new();
        assert!(matches!(r.read_frame_blocking(b.as_fd(), &limits), Err(FrameError::Truncated)));
        // Announced fds that never came.
        let (a, b) = UnixStream::pair().unwrap();
        let mut h = header(2, 3).to_vec();
        h.extend_from_slice(b"{}");
        rustix::io::write(&a, &h).unwrap();
        let mut r = FrameReader::new();
        assert!(matches!(
            r.read_frame_blocking(b.as_fd(), &limits),
            Err(FrameError::FdMismatch { expected: 3, got: 0 })
        ));
    }

    #[test]
    fn a_frame_split_across_reads_waits_for_its_last_byte() {
        let (a, b) = UnixStream::pair().unwrap();
        let limits = Limits::default();
        let mut bytes = header(7, 0).to_vec();
        bytes.extend_from_slice(br#"{"z":3}"#);
        let mut r = FrameReader::new();
        // One byte of the header, then the rest of the header, then the body.
        for (from, to) in [(0, 1), (1, HEADER_SIZE), (HEADER_SIZE, bytes.len() - 1)] {
            rustix::io::write(&a, &bytes[from..to]).unwrap();
            assert_eq!(r.read_once(b.as_fd()).unwrap(), ReadStatus::Data);
            assert!(r.next_frame(&limits).unwrap().is_none(), "incomplete at {to} of {} bytes", bytes.len());
            assert_eq!(r.buffered(), to);
        }
        rustix::io::write(&a, &bytes[bytes.len() - 1..]).unwrap();
        r.read_once(b.as_fd()).unwrap();
        let f = r.next_frame(&limits).unwrap().expect("the whole frame");
        assert_eq!(f.body, br#"{"z":3}"#);
        assert_eq!(r.buffered(), 0);
        // A clean end between frames is not an error.
        drop(a);
        assert_eq!(r.read_once(b.as_fd()).unwrap(), ReadStatus::Eof);
        assert!(r.finish(&limits).unwrap().is_none());
    }

    #[test]
    fn fd_counts_are_checked_against_the_header() {
        let limits = Limits::default();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        // Too many fds announced: refused from the header, before any arrive.
        let (a, b) = UnixStream::pair().unwrap();
        rustix::io::write(&a, &header(2, limits.max_fds as usize + 1)).unwrap();
        let mut r = FrameReader::new();
        assert!(matches!(
            r.read_frame_blocking(b.as_fd(), &limits),
            Err(FrameError::TooManyFds { count, max }) if count == limits.max_fds + 1 && max == limits.max_fds
        ));
        // More fds than announced: the surplus is a mismatch, not silently kept.
        let (a, b) = UnixStream::pair().unwrap();
        let fds = [devnull.as_fd(), devnull.as_fd()];
        let mut w = FrameWriter::new(b"{}", &fds);
        w.bytes[..HEADER_SIZE].copy_from_slice(&header(2, 1));
        w.write_blocking(a.as_fd()).unwrap();
        let mut r = FrameReader::new();
        assert!(matches!(
            r.read_frame_blocking(b.as_fd(), &limits),
            Err(FrameError::FdMismatch { expected: 1, got: 2 })
        ));
        // A non-blocking socket with nothing in it would block.
        let (_a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        assert_eq!(FrameReader::new().read_once(b.as_fd()).unwrap(), ReadStatus::WouldBlock);
    }
}
