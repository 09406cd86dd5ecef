//! What one client (or many) may hold of the daemon: open connections (in
//! total and per uid), bytes buffered for incomplete frames (one budget for
//! all connections), plus the accept loop's back-off and log rate limit, so
//! that running out of fds slows the daemon down instead of spinning it.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::frame::{self, FrameReader, FrameWriter};
use super::message::{ErrorCode, Response};

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` are open.
    Total { max: u32 },
    /// `max_connections_per_uid` are open for this uid.
    PerUid { uid: u32, max: u32 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Total { max } => write!(f, "the daemon has {max} connections open, its limit; try again later"),
            Refusal::PerUid { uid, max } => {
                write!(f, "uid {uid} has {max} connections open to the daemon, its limit; close some")
            }
        }
    }
}

/// Open connections, counted in total and per uid.
pub struct ConnLimits {
    max_total: u32,
    max_per_uid: u32,
    open: Mutex<(u32, HashMap<u32, u32>)>,
}

/// One admitted connection; dropping it frees its place.
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    uid: u32,
}

impl ConnLimits {
    pub fn new(max_total: u32, max_per_uid: u32) -> Arc<Self> {
        Arc::new(ConnLimits { max_total, max_per_uid, open: Mutex::new((0, HashMap::new())) })
    }

    /// Take a place for a connection from `uid`, if one is free.
    pub fn admit(self: &Arc<Self>, uid: u32) -> Result<ConnPermit, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per_uid) = &mut *open;
        if *total >= self.max_total {
            return Err(Refusal::Total { max: self.max_total });
        }
        let n = per_uid.entry(uid).or_insert(0);
        if *n >= self.max_per_uid {
            return Err(Refusal::PerUid { uid, max: self.max_per_uid });
        }
        *n += 1;
        *total += 1;
        Ok(ConnPermit { limits: self.clone(), uid })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per_uid) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = per_uid.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_uid.remove(&self.uid);
            }
        }
    }
}

/// Bytes buffered for incomplete frames, across all connections.
pub struct BufferBudget {
    max: u64,
    used: AtomicU64,
}

impl BufferBudget {
    pub fn new(max: u64) -> Arc<Self> {
        Arc::new(BufferBudget { max, used: AtomicU64::new(0) })
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

/// One connection's share of the [`BufferBudget`]; released on drop.
pub struct BufferCharge {
    budget: Arc<BufferBudget>,
    charged: u64,
}

impl BufferCharge {
    pub fn new(budget: Arc<BufferBudget>) -> Self {
        BufferCharge { budget, charged: 0 }
    }

    /// The connection now buffers `bytes`. `false` (and nothing charged
    /// beyond what was) if growing to it would exceed the budget.
    pub fn set(&mut self, bytes: u64) -> bool {
        if bytes <= self.charged {
            self.budget.used.fetch_sub(self.charged - bytes, Ordering::Relaxed);
            self.charged = bytes;
            return true;
        }
        let grow = bytes - self.charged;
        let fits = self
            .budget
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                u.checked_add(grow).filter(|&n| n <= self.budget.max)
            })
            .is_ok();
        if fits {
            self.charged = bytes;
        }
        fits
    }
}

impl Drop for BufferCharge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.charged, Ordering::Relaxed);
    }
}

/// Exponential back-off after accept errors: 10 ms doubling to 500 ms,
/// back to the start after a success.
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_millis(500);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The pause to take now; the next one is longer.
    pub fn failed(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    pub fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// At most `per_window` lines per window for one kind of event; the lines
/// held back are counted and reported with the next line that is let out.
pub struct LogLimiter {
    window: Duration,
    per_window: u32,
    start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(per_window: u32, window: Duration) -> Self {
        LogLimiter { window, per_window, start: None, in_window: 0, suppressed: 0 }
    }

    /// `Some(n)` if this event may be logged, `n` being how many were
    /// suppressed since the last one logged; `None` to stay quiet.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.start.is_none_or(|s| now.duration_since(s) >= self.window) {
            self.start = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= self.per_window {
            self.suppressed += 1;
            return None;
        }
        self.in_window += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A connection's frame reader, with its share of the buffer budget and
/// when its current partial frame began.
pub(super) struct ConnReader {
    pub(super) reader: FrameReader,
    pub(super) charge: BufferCharge,
    pub(super) budget_max: u64,
    pub(super) partial_since: Option<tokio::time::Instant>,
    pub(super) frame_timeout: Option<Duration>,
}

impl ConnReader {
    pub(super) fn new(budget: &Arc<BufferBudget>, frame_timeout: Option<Duration>) -> Self {
        ConnReader {
            reader: FrameReader::new(),
            charge: BufferCharge::new(budget.clone()),
            budget_max: budget.max(),
            partial_since: None,
            frame_timeout,
        }
    }

    /// A frame was taken: what remains (if anything) is a new partial frame.
    pub(super) fn taken(&mut self) {
        let left = self.reader.buffered();
        self.charge.set(left as u64);
        self.partial_since = (left > 0).then(tokio::time::Instant::now);
    }
}

/// Who may connect: the daemon's uid and `allowed`.
pub(super) struct Admission<'a> {
    pub(super) own_uid: u32,
    pub(super) allowed: &'a [u32],
    pub(super) caps: &'a Arc<ConnLimits>,
}

/// The accept loop's helpers: back-off after errors, and logs of errors and
/// refusals limited to a few lines per second (with a count of the rest).
pub(super) struct Acceptor {
    pub(super) backoff: Backoff,
    error_log: LogLimiter,
    refusal_log: LogLimiter,
}

impl Acceptor {
    const LINES_PER_SECOND: u32 = 5;

    pub(super) fn new() -> Self {
        let limiter = || LogLimiter::new(Self::LINES_PER_SECOND, Duration::from_secs(1));
        Acceptor { backoff: Backoff::new(), error_log: limiter(), refusal_log: limiter() }
    }

    /// `accept` failed: log (rate limited) and pause.
    pub(super) async fn failed(&mut self, e: &std::io::Error) {
        let pause = self.backoff.failed();
        if let Some(suppressed) = self.error_log.allow(Instant::now()) {
            tracing::warn!(suppressed, "accept: {e}; pausing {} ms", pause.as_millis());
        }
        tokio::time::sleep(pause).await;
    }

    /// A place for a new connection, or `None` after answering it with an
    /// error and closing it at once (a refused uid, or over a cap): a
    /// refused connection never holds an fd beyond this call.
    pub(super) fn admit(
        &mut self,
        who: &Admission<'_>,
        stream: BorrowedFd<'_>,
    ) -> Option<(ConnPermit, rustix::net::UCred)> {
        let cred = match rustix::net::sockopt::socket_peercred(stream) {
            Ok(cred) => cred,
            Err(e) => {
                self.refused(format_args!("SO_PEERCRED of a new connection: {e}"));
                return None;
            }
        };
        let uid = cred.uid.as_raw();
        let (code, message) = if !super::peer::admits(uid, who.own_uid, who.allowed) {
            (ErrorCode::PeerRefused, format!("uid {uid} may not use this zygote (daemon uid {})", who.own_uid))
        } else {
            match who.caps.admit(uid) {
                Ok(permit) => return Some((permit, cred)),
                Err(r) => (ErrorCode::Internal, r.to_string()),
            }
        };
        self.refused(format_args!("refused a connection: {message}"));
        answer_and_close(stream, &Response::Error { code, message });
        None
    }

    fn refused(&mut self, what: std::fmt::Arguments<'_>) {
        if let Some(suppressed) = self.refusal_log.allow(Instant::now()) {
            tracing::warn!(suppressed, "{what}");
        }
    }
}

/// Answer a connection that is not served, without waiting: the reply fits
/// in the empty socket buffer. What the client already sent is discarded so
/// that it reads the reply rather than a reset.
fn answer_and_close(stream: BorrowedFd<'_>, reply: &Response) {
    let body = frame::encode(reply);
    let _ = FrameWriter::new(&body, &[]).write_once(stream);
    let mut scratch = [0u8; 4096];
    for _ in 0..4 {
        if !matches!(rustix::net::recv(stream, &mut scratch, rustix::net::RecvFlags::DONTWAIT), Ok((n, _)) if n > 0) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_caps() {
        let l = ConnLimits::new(3, 2);
        let a = l.admit(1).unwrap();
        let _b = l.admit(1).unwrap();
        assert_eq!(l.admit(1).err(), Some(Refusal::PerUid { uid: 1, max: 2 }));
        let _c = l.admit(2).unwrap();
        assert_eq!(l.admit(3).err(), Some(Refusal::Total { max: 3 }));
        drop(a);
        assert!(l.admit(1).is_ok());
    }

    #[test]
    fn budget_and_backoff_and_log_limit() {
        let b = BufferBudget::new(100);
        let mut x = BufferCharge::new(b.clone());
        let mut y = BufferCharge::new(b.clone());
        assert!(x.set(60));
        assert!(!y.set(50));
        assert!(y.set(40));
        assert!(x.set(10));
        assert!(y.set(90));
        drop((x, y));
        assert_eq!(b.used.load(Ordering::Relaxed), 0);

        let mut off = Backoff::new();
        let pauses: Vec<_> = (0..8).map(|_| off.failed().as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 500, 500]);
        off.succeeded();
        assert_eq!(off.failed().as_millis(), 10);

        let mut log = LogLimiter::new(2, Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(log.allow(t), Some(0));
        assert_eq!(log.allow(t), Some(0));
        assert_eq!(log.allow(t), None);
        assert_eq!(log.allow(t), None);
        assert_eq!(log.allow(t + Duration::from_secs(1)), Some(2));
    }
}
