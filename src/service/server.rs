//! The Linux daemon: a tokio server on a Unix stream socket.
//!
//! One task per connection: credentials check (SO_PEERCRED), version
//! handshake, then requests in order. Spawning and preparing run on the
//! blocking pool, never on the reactor. Every child is reaped by a task that
//! waits on its pidfd; children of a connection that goes away (unless
//! detached) are killed first, so a crashed client leaves nothing behind.
//! SIGTERM or SIGINT: stop accepting, let in-flight requests finish, remove
//! the socket, give pending waits a grace period, exit.
//!
//! Live processes are also kept daemon-wide ([`metrics::Registry`]: pid ->
//! image, pidfd, start) for `Stats`, which measures their mappings of each
//! image from smaps; with `metrics_port` set, the same statistics are served
//! as OpenMetrics on 127.0.0.1 (`GET /metrics`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::frame::{self, FrameError, FrameWriter, ReadStatus};
use super::limits::{Acceptor, Admission, BufferBudget, ConnLimits, ConnPermit, ConnReader};
use super::message::{
    DaemonStats, ErrorCode, Hello, LauncherStats, Limits, PROTOCOL_VERSION, Request, Response, SpawnArgs, Welcome,
};
use super::peer::Peer;
use super::sockdir::{self, SocketDirError, Strictness};
use crate::config::Config;
use zygote_core::ExitStatus;
use zygote_core::exec::Launch;
use zygote_core::image::{ContentHash, ImageKey};
use zygote_core::metrics::LatencyHistogram;
use zygote_linux::account::{LiveProcess, Registry};
use zygote_linux::restrictions::{ChildRestrictions, RestrictionError, Restrictions};
use zygote_linux::{Child, Image, SpawnError, StartOptions, Zygote};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "allowed_uids {uids:?}: a daemon that is not root would run those users' programs as its own uid {uid}; \
         run it as root, or leave allowed_uids empty"
    )]
    ForeignUsers { uids: Vec<u32>, uid: u32 },
    #[error("{path}: a daemon is already listening there")]
    AlreadyRunning { path: PathBuf },
    #[error("{path}: {what}: {source}")]
    Socket { path: PathBuf, what: &'static str, source: std::io::Error },
    #[error(transparent)]
    SocketDir(#[from] SocketDirError),
    #[error("starting the zygote: {0}")]
    Zygote(#[from] SpawnError),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Metrics(#[from] zygote_linux::smaps::MetricsError),
    #[error(transparent)]
    Http(#[from] super::http::HttpError),
}

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub config: Config,
    pub socket: PathBuf,
    pub limits: Limits,
    /// How long waits may still complete after SIGTERM.
    pub grace: Duration,
}

#[derive(Default)]
struct Counters {
    spawns: AtomicU64,
    spawn_errors: AtomicU64,
    connections: AtomicU64,
    open_connections: AtomicU64,
    live_children: AtomicU64,
}

/// A child's end, shared between its reaper and any waiter.
type StatusRx = watch::Receiver<Option<ExitStatus>>;

struct State {
    zygote: Arc<Zygote>,
    config: Config,
    limits: Limits,
    own_uid: u32,
    /// What our children inherit from us (requesters' are compared with it).
    own_restrictions: Restrictions,
    counters: Counters,
    /// Processes started and not yet reaped, daemon-wide.
    live: Registry,
    /// Latency of the spawns served.
    spawn_latency: LatencyHistogram,
    shutdown: watch::Receiver<bool>,
    /// Open connections, in total and per uid.
    conn_limits: Arc<ConnLimits>,
    /// Bytes buffered for incomplete frames, across connections.
    buffers: Arc<BufferBudget>,
    /// Close a connection with nothing to do after this long (None: never).
    idle_timeout: Option<Duration>,
    /// A frame (or the handshake) must be complete this long after it began.
    frame_timeout: Option<Duration>,
}

/// A millisecond timeout from the configuration; 0 means none.
fn timeout_ms(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
}

fn code_for(e: &SpawnError) -> ErrorCode {
    match e {
        SpawnError::Resolve(r) if r.exit_code() == 127 => ErrorCode::NotFound,
        SpawnError::Resolve(_) => ErrorCode::PermissionDenied,
        SpawnError::Image(_) | SpawnError::TooLarge { .. } | SpawnError::Io { .. } => ErrorCode::BadExecutable,
        SpawnError::Request(_) => ErrorCode::BadRequest,
        SpawnError::Denied { .. } | SpawnError::Restriction { .. } => ErrorCode::PermissionDenied,
        SpawnError::Launcher { .. } | SpawnError::Internal { .. } => ErrorCode::Internal,
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error { code, message: message.into() }
}

/// A connection's socket plus serialised writes.
struct Conn {
    fd: AsyncFd<OwnedFd>,
    write_lock: tokio::sync::Mutex<()>,
}

impl Conn {
    async fn send<T: serde::Serialize>(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        let body = frame::encode(msg);
        let _w = self.write_lock.lock().await;
        let mut w = FrameWriter::new(&body, fds);
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
    async fn recv(
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
enum RecvError {
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
    fn response(&self) -> Option<Response> {
        match self {
            RecvError::Frame(e) => Some(frame_error(e)),
            RecvError::Idle => None,
            RecvError::FrameTimeout(_) => Some(error(ErrorCode::BadRequest, self.to_string())),
            RecvError::Budget(_) => Some(error(ErrorCode::Internal, self.to_string())),
        }
    }
}

/// Bind the socket, 0600 (0666 with `open_to_others`), in a directory that
/// [`sockdir::prepare`] vouches for: created 0700 (0711) or checked, never
/// changed. A stale socket is replaced, a live one is an error.
fn listener(
    path: &Path,
    open_to_others: bool,
    strictness: Strictness,
) -> Result<std::os::unix::net::UnixListener, ServerError> {
    let sock_err = |what, source| ServerError::Socket { path: path.to_path_buf(), what, source };
    let own_uid = rustix::process::getuid().as_raw();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    sockdir::prepare(dir, own_uid, open_to_others, strictness)?;
    if path.symlink_metadata().is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::AlreadyRunning { path: path.to_path_buf() });
        }
        std::fs::remove_file(path).map_err(|e| sock_err("removing a stale socket", e))?;
    }
    let l = std::os::unix::net::UnixListener::bind(path).map_err(|e| sock_err("bind", e))?;
    // Only the owner may connect, unless other uids are allowed: then the
    // socket is 0666 and SO_PEERCRED decides who is served. (The directory
    // is the daemon's and writable by no one else, so the path still names
    // the socket just bound.)
    let mode = if open_to_others { 0o666 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| sock_err("chmod", e))?;
    Ok(l)
}

/// The listening socket systemd passed, if it passed one to this process.
/// Must run before anything else opens an fd (fd 3 is claimed by number).
fn systemd_listener() -> Option<std::os::unix::net::UnixListener> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let n: i32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || n < 1 {
        return None;
    }
    // fd 3 is ours by the sd_listen_fds protocol, if it is a listening socket.
    let fd = zygote_linux::process::claim_inherited_fd(3)?;
    let listening = rustix::net::sockopt::socket_acceptconn(&fd).unwrap_or(false);
    if !listening {
        tracing::warn!("LISTEN_FDS is set but fd 3 is not a listening socket; ignoring it");
        // Not ours to close: give it back to whoever holds it.
        std::mem::forget(fd);
        return None;
    }
    // Mark it CLOEXEC so children never inherit it.
    let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
    Some(std::os::unix::net::UnixListener::from(fd))
}

/// Run the daemon until SIGTERM or SIGINT.
pub fn run(opts: ServerOptions) -> Result<(), ServerError> {
    // A daemon that is not root could only run other users' requests with its
    // own credentials: one user would act as another.
    let uid = rustix::process::getuid().as_raw();
    if uid != 0 && opts.config.allowed_uids.iter().any(|&u| u != uid) {
        return Err(ServerError::ForeignUsers { uids: opts.config.allowed_uids.clone(), uid });
    }
    let activated = systemd_listener();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    rt.block_on(serve(opts, activated))
}

async fn serve(opts: ServerOptions, activated: Option<std::os::unix::net::UnixListener>) -> Result<(), ServerError> {
    let cfg = &opts.config;
    let cache = zygote_core::CacheConfig {
        max_entries: usize::try_from(cfg.cache_max_entries).unwrap_or(usize::MAX),
        max_bytes: cfg.cache_max_bytes,
    };
    let zygote = Arc::new(Zygote::new(cache)?);
    let own_restrictions = Restrictions::own(zygote_linux::process::raise_nofile_limit())
        .map_err(|e| ServerError::Runtime(std::io::Error::other(e.to_string())))?;
    zygote.set_prestarted(cfg.prestarted_launchers as usize);
    for p in &cfg.preload {
        match zygote.prepare(Path::new(p)) {
            Ok(img) => tracing::info!(program = %p, key = %img.key(), "preloaded"),
            Err(e) => tracing::warn!("preload {p}: {e}"),
        }
    }
    // Before the socket exists, so that a busy port leaves nothing behind.
    let http = match cfg.metrics_port {
        0 => None,
        port => Some(super::http::bind(port)?),
    };
    let owned = activated.is_none();
    let std_listener = match activated {
        Some(l) => l,
        None => {
            // The default runtime directory must be private; one configured
            // explicitly may be readable (not writable) by others.
            let strictness = if opts.socket == crate::config::default_socket_path() {
                Strictness::Private
            } else {
                Strictness::Configured
            };
            listener(&opts.socket, !opts.config.allowed_uids.is_empty(), strictness)?
        }
    };
    std_listener.set_nonblocking(true).map_err(ServerError::Runtime)?;
    let listener = tokio::net::UnixListener::from_std(std_listener).map_err(ServerError::Runtime)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let state = Arc::new(State {
        zygote,
        config: opts.config.clone(),
        limits: opts.limits,
        own_uid: rustix::process::getuid().as_raw(),
        own_restrictions,
        counters: Counters::default(),
        live: Registry::new(),
        spawn_latency: LatencyHistogram::new(),
        shutdown: shutdown_rx,
        conn_limits: ConnLimits::new(cfg.max_connections, cfg.max_connections_per_uid),
        buffers: BufferBudget::new(cfg.max_buffered_bytes),
        idle_timeout: timeout_ms(cfg.idle_timeout_ms),
        frame_timeout: timeout_ms(cfg.frame_timeout_ms),
    });
    tracing::info!(socket = %opts.socket.display(), "zygote daemon listening");
    if let Some(http) = http {
        if let Ok(addr) = http.local_addr() {
            tracing::info!(%addr, "serving OpenMetrics at GET /metrics");
        }
        let st = state.clone();
        let body = move || {
            let st = st.clone();
            async move { zygote_core::metrics::openmetrics::render(&stats_blocking(st).await) }
        };
        tokio::spawn(super::http::serve(http, body, state.shutdown.clone()));
    }
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(ServerError::Runtime)?;
    let mut int =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(ServerError::Runtime)?;
    let mut tasks = tokio::task::JoinSet::new();
    let mut acceptor = Acceptor::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    acceptor.backoff.succeeded();
                    let who = Admission {
                        own_uid: state.own_uid,
                        allowed: &state.config.allowed_uids,
                        caps: &state.conn_limits,
                    };
                    if let Some(permit) = acceptor.admit(&who, &stream) {
                        let state = state.clone();
                        tasks.spawn(async move { connection(state, stream, permit).await });
                    }
                }
                // Out of fds (EMFILE, ENFILE) or another failure: pause, so
                // a listener that stays readable does not spin the loop.
                Err(e) => acceptor.failed(&e).await,
            },
            Some(Some(())) = async { tasks.join_next().await.map(|_| Some(())) }, if !tasks.is_empty() => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down: finishing in-flight requests");
    drop(listener);
    if owned {
        let _ = std::fs::remove_file(&opts.socket);
    }
    let _ = shutdown_tx.send(true);
    let deadline = tokio::time::sleep(opts.grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            _ = &mut deadline => {
                tracing::warn!(pending = tasks.len(), "grace period over; leaving pending waits");
                break;
            }
        }
    }
    Ok(())
}

/// A child spawned on a connection.
struct SessionChild {
    status: StatusRx,
    pidfd: Arc<OwnedFd>,
    detached: bool,
}

/// Per-connection state: the children it spawned.
struct Session {
    children: Mutex<HashMap<i32, SessionChild>>,
}

/// Does the connection have something to wait for (a child still running)?
/// Then it is not idle, whatever the client says.
fn busy(session: &Session, waits: &mut tokio::task::JoinSet<()>) -> bool {
    while waits.try_join_next().is_some() {}
    !waits.is_empty()
        || session.children.lock().unwrap_or_else(|e| e.into_inner()).values().any(|c| c.status.borrow().is_none())
}

async fn connection(state: Arc<State>, stream: tokio::net::UnixStream, _permit: ConnPermit) {
    let counters = &state.counters;
    counters.connections.fetch_add(1, Ordering::Relaxed);
    counters.open_connections.fetch_add(1, Ordering::Relaxed);
    let Ok(std_stream) = stream.into_std() else {
        counters.open_connections.fetch_sub(1, Ordering::Relaxed);
        return;
    };
    let fd: OwnedFd = std_stream.into();
    let peer = Peer::of(fd.as_fd());
    let conn = match zygote_linux::process::async_fd(fd) {
        Ok(fd) => Arc::new(Conn { fd, write_lock: tokio::sync::Mutex::new(()) }),
        Err(e) => {
            tracing::warn!("registering a connection: {e}");
            counters.open_connections.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    let session = Arc::new(Session { children: Mutex::new(HashMap::new()) });
    // The accept loop admitted its uid (`Acceptor::admit`): a socket's peer
    // credentials and the allow-list do not change.
    match peer {
        Ok(peer) => {
            let span = tracing::debug_span!("conn", peer_pid = peer.pid, peer_uid = peer.uid);
            let _ = tracing::Instrument::instrument(serve_conn(&state, &conn, &peer, &session), span).await;
        }
        Err(e) => tracing::warn!("SO_PEERCRED: {e}"),
    }
    // The client is gone: kill its attached children that still run; their
    // reapers collect them.
    let children: Vec<_> = session.children.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
    for (pid, SessionChild { status, pidfd, detached }) in children {
        if !detached && status.borrow().is_none() {
            tracing::info!(pid, "client went away: killing its child");
            let _ = zygote_linux::process::pidfd_kill(pidfd.as_fd(), libc::SIGKILL);
        }
    }
    counters.open_connections.fetch_sub(1, Ordering::Relaxed);
}

async fn serve_conn(state: &Arc<State>, conn: &Arc<Conn>, peer: &Peer, session: &Arc<Session>) -> Option<()> {
    let mut reader = ConnReader::new(&state.buffers, state.frame_timeout);
    let limits = state.limits;
    let mut shutdown = state.shutdown.clone();
    // Handshake: the Hello is due within the frame timeout of the connect.
    let hello = conn.recv(&mut reader, &limits, state.frame_timeout).await;
    let hello: Hello = match hello {
        Ok(Some(f)) => match serde_json::from_slice(&f.body) {
            Ok(h) => h,
            Err(e) => {
                let _ = conn.send(&error(ErrorCode::BadRequest, format!("expected Hello: {e}")), &[]).await;
                return None;
            }
        },
        Ok(None) => return None,
        Err(e) => {
            if let Some(r) = e.response() {
                let _ = conn.send(&r, &[]).await;
            }
            return None;
        }
    };
    if hello.version != PROTOCOL_VERSION {
        let msg = format!("protocol version {} is not {}", hello.version, PROTOCOL_VERSION);
        let _ = conn.send(&error(ErrorCode::BadVersion, msg), &[]).await;
        return None;
    }
    conn.send(&Welcome { version: PROTOCOL_VERSION, limits }, &[]).await.ok()?;
    let mut waits = tokio::task::JoinSet::new();
    let mut draining = *shutdown.borrow();
    loop {
        // At shutdown the connection keeps serving (a client that got
        // Spawned still needs its Wait) but takes no new work; the server
        // drops it when the grace period ends.
        let frame = tokio::select! {
            f = conn.recv(&mut reader, &limits, state.idle_timeout) => f,
            r = shutdown.changed(), if !draining => {
                draining = r.is_ok();
                if !draining {
                    break;
                }
                continue;
            }
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            // Nothing asked for a while: close, unless a child still runs
            // (a pending Wait, or one the client may yet wait for).
            Err(RecvError::Idle) if busy(session, &mut waits) => continue,
            Err(e) => {
                match e.response() {
                    Some(r) => {
                        tracing::debug!("closing the connection: {e}");
                        let _ = conn.send(&r, &[]).await;
                    }
                    None => tracing::debug!("closing an idle connection"),
                }
                break;
            }
        };
        let request: Request = match serde_json::from_slice(&frame.body) {
            Ok(r) => r,
            Err(e) => {
                // The frame was well formed: answer and keep the connection.
                conn.send(&error(ErrorCode::BadRequest, format!("undecodable request: {e}")), &[]).await.ok()?;
                continue;
            }
        };
        if draining && matches!(request, Request::Spawn(_) | Request::Preload { .. }) {
            let msg = "the daemon is shutting down";
            conn.send(&error(ErrorCode::Internal, msg), &[]).await.ok()?;
            continue;
        }
        let span = tracing::debug_span!("request", method = request.method());
        let fut = handle(state, conn, peer, session, request, frame.fds, &mut waits);
        let keep = tracing::Instrument::instrument(fut, span).await;
        if keep.is_none() {
            break;
        }
    }
    // The client is gone (or broke the protocol): its pending waits have no
    // one to answer; the caller kills its attached children.
    waits.abort_all();
    Some(())
}

fn frame_error(e: &FrameError) -> Response {
    let code = match e {
        FrameError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        FrameError::TooManyFds { .. } | FrameError::FdMismatch { .. } => ErrorCode::TooManyFds,
        _ => ErrorCode::BadRequest,
    };
    error(code, e.to_string())
}

/// Handle one request. `None` ends the connection.
async fn handle(
    state: &Arc<State>,
    conn: &Arc<Conn>,
    peer: &Peer,
    session: &Arc<Session>,
    request: Request,
    mut fds: Vec<OwnedFd>,
    waits: &mut tokio::task::JoinSet<()>,
) -> Option<()> {
    if !request.expected_fds().contains(&fds.len()) {
        let msg = format!("{} takes {:?} fds, got {}", request.method(), request.expected_fds(), fds.len());
        return conn.send(&error(ErrorCode::TooManyFds, msg), &[]).await.ok();
    }
    let reply = match request {
        Request::Spawn(args) => {
            let started = Instant::now();
            match spawn(state, peer, session, args, fds).await {
                Ok((pid, key, pidfd)) => {
                    let elapsed = started.elapsed();
                    state.spawn_latency.record(elapsed);
                    state.counters.spawns.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(pid, elapsed_us = elapsed.as_micros() as u64, "spawned");
                    return conn.send(&Response::Spawned { pid, key }, &[pidfd.as_fd()]).await.ok();
                }
                Err(r) => {
                    state.counters.spawn_errors.fetch_add(1, Ordering::Relaxed);
                    r
                }
            }
        }
        Request::Preload { name } => {
            let file = fds.remove(0);
            let z = state.zygote.clone();
            let path = PathBuf::from(&name);
            if let Err((code, message)) = check_readable(&file, &path) {
                return conn.send(&error(code, message), &[]).await.ok();
            }
            let creds = peer_creds(state, peer);
            let prepare = move || {
                let creds = creds.as_ref().map(|(u, g, groups)| (*u, *g, groups.as_slice()));
                z.prepare_fd(file.as_fd(), &path, &zygote_linux::prototype::Environment { loader_env: &[], creds })
            };
            match tokio::task::spawn_blocking(prepare).await {
                Ok(Ok(img)) => Response::Preloaded { key: img.key().to_string(), sealed_bytes: img.sealed_bytes() },
                Ok(Err(e)) => error(code_for(&e), e.to_string()),
                Err(e) => error(ErrorCode::Internal, e.to_string()),
            }
        }
        Request::Evict { key } => evict(state, key, fds).await,
        Request::Stats => Response::Stats(stats_blocking(state.clone()).await),
        Request::Wait { pid } => {
            let entry = session.children.lock().unwrap_or_else(|e| e.into_inner()).get(&pid).map(|e| e.status.clone());
            let Some(mut rx) = entry else {
                let msg = format!("pid {pid} was not spawned on this connection");
                return conn.send(&error(ErrorCode::NotFound, msg), &[]).await.ok();
            };
            let conn = conn.clone();
            let session = session.clone();
            waits.spawn(async move {
                let status = loop {
                    if let Some(s) = *rx.borrow_and_update() {
                        break Some(s);
                    }
                    if rx.changed().await.is_err() {
                        break *rx.borrow();
                    }
                };
                let (code, signal) = match status {
                    Some(ExitStatus::Exited(c)) => (Some(c), None),
                    Some(ExitStatus::Signaled(s)) => (None, Some(s)),
                    None => (None, None),
                };
                let _ = conn.send(&Response::Exited { pid, code, signal }, &[]).await;
                // Reaped and reported: the connection need not remember it.
                session.children.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
            });
            return Some(());
        }
    };
    conn.send(&reply, &[]).await.ok()
}

async fn spawn(
    state: &Arc<State>,
    peer: &Peer,
    session: &Arc<Session>,
    args: SpawnArgs,
    mut fds: Vec<OwnedFd>,
) -> Result<(i32, String, Arc<OwnedFd>), Response> {
    if args.args_bytes() > state.limits.max_args_bytes as usize {
        let msg =
            format!("argv and environ take {} bytes, more than {}", args.args_bytes(), state.limits.max_args_bytes);
        return Err(error(ErrorCode::ArgsTooLarge, msg));
    }
    if args.argv.is_empty() {
        return Err(error(ErrorCode::BadRequest, "argv is empty"));
    }
    let exe = fds.remove(0);
    let path = PathBuf::from(OsString::from_vec(args.path.clone()));
    check_readable(&exe, &path).map_err(|(c, m)| error(c, m))?;
    match peer.may_execute(&exe) {
        Ok(true) => {}
        Ok(false) => return Err(error(ErrorCode::PermissionDenied, format!("{}: Permission denied", path.display()))),
        Err(e) => return Err(error(ErrorCode::BadExecutable, format!("{}: {e}", path.display()))),
    }
    // A root daemon runs another allowed user's programs as that user; a
    // daemon that is not root can only run them with its own credentials.
    let creds = peer_creds(state, peer);
    let (st, peer) = (state.clone(), peer.clone());
    let result = tokio::task::spawn_blocking(move || -> Result<(Child, Arc<Image>), (ErrorCode, String)> {
        let failed = |e: SpawnError| (code_for(&e), e.to_string());
        // What execve would keep of the requester's: the program gets it too
        // (read from /proc here, on the blocking pool, not on the reactor).
        let restrict = caller_restrictions(&st, &peer)?;
        let z = &st.zygote;
        let env: Vec<OsString> = args.environ.into_iter().map(OsString::from_vec).collect();
        let creds = creds.as_ref().map(|(u, g, groups)| (*u, *g, groups.as_slice()));
        let loader_env = zygote_linux::spawn::loader_env(&env);
        let image = z
            .prepare_fd(exe.as_fd(), &path, &zygote_linux::prototype::Environment { loader_env: &loader_env, creds })
            .map_err(failed)?;
        let launch = Launch {
            program: path.clone(),
            argv: args.argv.into_iter().map(OsString::from_vec).collect(),
            exec_path: path,
        };
        let cwd = (!args.cwd.is_empty()).then(|| PathBuf::from(OsString::from_vec(args.cwd)));
        let mut placed: Vec<(RawFd, RawFd)> = fds.iter().map(|f| f.as_raw_fd()).zip(args.fds.iter().copied()).collect();
        // Stdio the requester did not pass is /dev/null, never the daemon's own.
        let null =
            zygote_linux::dev_null().map_err(|source| failed(SpawnError::Internal { what: "/dev/null", source }))?;
        for t in 0..3 {
            if !placed.iter().any(|p| p.1 == t) {
                placed.push((null.as_raw_fd(), t));
            }
        }
        let opts = StartOptions {
            program: exe.as_fd(),
            env: &env,
            cwd: cwd.as_deref(),
            name: Some(&args.name),
            fds: &placed,
            creds,
            restrict: restrict.as_ref(),
        };
        let child = z.start(&image, &launch, &opts);
        drop((fds, exe));
        Ok((child.map_err(failed)?, image))
    })
    .await
    .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
    let (child, image) = result.map_err(|(code, message)| error(code, message))?;
    let pid = child.pid();
    let key = child.image_key().to_string();
    let pidfd = Arc::new(
        child.pidfd().try_clone_to_owned().map_err(|e| error(ErrorCode::Internal, format!("dup pidfd: {e}")))?,
    );
    let (tx, rx) = watch::channel(None);
    session
        .children
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pid, SessionChild { status: rx, pidfd: pidfd.clone(), detached: args.detach });
    state.counters.live_children.fetch_add(1, Ordering::Relaxed);
    state.live.insert(LiveProcess { pid, pidfd: pidfd.clone(), image, started: Instant::now() });
    let st = state.clone();
    tokio::spawn(reap(st, child, tx));
    Ok((pid, key, pidfd))
}

/// The requester's restrictions, read now (it may have tightened them since
/// it connected), in the form the pre-exec child applies; `None` when they
/// are the daemon's own. A restriction the program could not keep refuses
/// the request.
fn caller_restrictions(state: &State, peer: &Peer) -> Result<Option<ChildRestrictions>, (ErrorCode, String)> {
    let denied = |e: RestrictionError| (ErrorCode::PermissionDenied, e.to_string());
    let theirs = Restrictions::of(peer.pid, peer.pidfd.as_deref().map(AsFd::as_fd)).map_err(denied)?;
    if theirs == state.own_restrictions {
        return Ok(None);
    }
    theirs.for_child(&state.own_restrictions).map(Some).map_err(denied)
}

/// Refuse a program fd that does not prove read access (see
/// [`Peer::readable_fd`]).
fn check_readable(file: &OwnedFd, path: &Path) -> Result<(), (ErrorCode, String)> {
    let shown = path.display();
    match Peer::readable_fd(file) {
        Ok(true) => Ok(()),
        Ok(false) => Err((
            ErrorCode::PermissionDenied,
            format!("{shown}: Permission denied (the fd was not opened for reading; O_PATH fds are refused)"),
        )),
        Err(e) => Err((ErrorCode::BadExecutable, format!("{shown}: {e}"))),
    }
}

/// The credentials to run a peer's programs (and their prototypes) with: its
/// own when a root daemon serves another user, else the daemon's (`None`).
fn peer_creds(state: &State, peer: &Peer) -> Option<(u32, u32, Vec<u32>)> {
    (peer.uid != state.own_uid && state.own_uid == 0).then(|| (peer.uid, peer.gid, peer.groups.clone()))
}

/// Wait for a child's pidfd to become readable (it exited), reap it, publish
/// its status. It leaves the live registry before it is reaped, while its
/// pid cannot have been reused.
async fn reap(state: Arc<State>, mut child: Child, tx: watch::Sender<Option<ExitStatus>>) {
    let pid = child.pid();
    let status = match child.pidfd().try_clone_to_owned().map(zygote_linux::process::async_fd) {
        Ok(Ok(afd)) => {
            let _ = afd.readable().await;
            state.live.remove(pid);
            // A readable pidfd means the process has exited: waitid returns
            // at once, no need for the blocking pool.
            child.wait().ok()
        }
        _ => tokio::task::spawn_blocking(move || child.wait()).await.ok().and_then(Result::ok),
    };
    state.live.remove(pid);
    state.counters.live_children.fetch_sub(1, Ordering::Relaxed);
    let _ = tx.send(status);
}

async fn evict(state: &Arc<State>, key: String, mut fds: Vec<OwnedFd>) -> Response {
    let hash = if key.is_empty() {
        let file = fds.remove(0);
        if let Err((code, message)) = check_readable(&file, Path::new("<fd>")) {
            return error(code, message);
        }
        let z = state.zygote.clone();
        match tokio::task::spawn_blocking(move || z.identify_fd(&file)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return error(code_for(&e), e.to_string()),
            Err(e) => return error(ErrorCode::Internal, e.to_string()),
        }
    } else {
        match parse_hash(&key) {
            Some(h) => h,
            None => return error(ErrorCode::BadRequest, format!("{key:?} is not a 64-digit hex image key")),
        }
    };
    let removed = state.zygote.cache().remove(&ImageKey::relocate(hash)).is_some();
    // A launcher warmed up with the image would keep its memory alive.
    state.zygote.prune_launchers();
    if removed { Response::Evicted { count: 1 } } else { error(ErrorCode::NotFound, format!("no cached image {hash}")) }
}

fn parse_hash(s: &str) -> Option<ContentHash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(ContentHash(out))
}

/// [`stats`] on the blocking pool (it reads every live process's smaps).
async fn stats_blocking(state: Arc<State>) -> DaemonStats {
    let fallback = state.clone();
    tokio::task::spawn_blocking(move || stats(&state)).await.unwrap_or_else(|e| {
        tracing::warn!("stats: {e}");
        stats_counters(&fallback)
    })
}

/// The counters, without the images and their measurements.
fn stats_counters(state: &State) -> DaemonStats {
    let c = &state.counters;
    DaemonStats {
        cache: state.zygote.stats(),
        spawns: c.spawns.load(Ordering::Relaxed),
        spawn_errors: c.spawn_errors.load(Ordering::Relaxed),
        live_children: c.live_children.load(Ordering::Relaxed),
        connections: c.connections.load(Ordering::Relaxed),
        open_connections: c.open_connections.load(Ordering::Relaxed),
        launchers: Box::new(LauncherStats {
            idle: state.zygote.idle_launchers() as u64,
            capacity: state.zygote.prestarted() as u64,
            spawns: state.zygote.prestarted_spawns(),
        }),
        spawn_latency: state.spawn_latency.snapshot(),
        ..DaemonStats::default()
    }
}

/// Counters, latency, and every image with its live processes measured.
fn stats(state: &State) -> DaemonStats {
    let report = zygote_linux::account::report(&state.zygote.cache().images(), &state.live.snapshot());
    DaemonStats {
        images: report.images,
        memory: Box::new(report.memory),
        saved_bytes: report.saved_bytes,
        ..stats_counters(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys() {
        let h = ContentHash([0xab; 32]);
        assert_eq!(parse_hash(&h.to_string()), Some(h));
        assert_eq!(parse_hash("xyz"), None);
        assert_eq!(parse_hash(&"g".repeat(64)), None);
    }
}
