//! The Linux daemon: a tokio server on a Unix stream socket, one task per
//! connection, spawning on the blocking pool. This file holds the daemon-wide
//! state and its start and shutdown; each concern has a submodule.

mod conn;
mod connection;
mod image;
mod listener;
mod requests;
mod scope;
mod spawn;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::watch;

use super::limits::{BufferBudget, ConnLimits};
use super::message::{ErrorCode, Limits, Response};
use crate::config::Config;
use zygote_core::ExitStatus;
use zygote_core::metrics::LatencyHistogram;
use zygote_linux::account::Registry;
use zygote_linux::restrictions::Restrictions;
use zygote_linux::{SpawnError, Zygote};

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
    SocketDir(#[from] super::sockdir::SocketDirError),
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
    /// Which uids used which images (what each may see and evict).
    image_users: scope::ImageUsers,
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
    /// Image requests of caller-side clients.
    images: image::ImageCounters,
    /// Builds their misses started.
    background: image::Background,
}

impl State {
    fn new(
        zygote: Arc<Zygote>,
        own_restrictions: Restrictions,
        opts: &ServerOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let cfg = &opts.config;
        State {
            zygote,
            config: opts.config.clone(),
            limits: opts.limits,
            own_uid: rustix::process::getuid().as_raw(),
            own_restrictions,
            counters: Counters::default(),
            live: Registry::new(),
            image_users: scope::ImageUsers::default(),
            spawn_latency: LatencyHistogram::new(),
            shutdown,
            conn_limits: ConnLimits::new(cfg.max_connections, cfg.max_connections_per_uid),
            buffers: BufferBudget::new(cfg.max_buffered_bytes),
            idle_timeout: timeout_ms(cfg.idle_timeout_ms),
            frame_timeout: timeout_ms(cfg.frame_timeout_ms),
            images: Default::default(),
            background: Default::default(),
        }
    }
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
        SpawnError::Cwd { source, .. } if zygote_linux::spawn::cwd_missing(source) => ErrorCode::NotFound,
        SpawnError::Cwd { .. } => ErrorCode::PermissionDenied,
        SpawnError::Denied { .. } | SpawnError::Restriction { .. } => ErrorCode::PermissionDenied,
        SpawnError::Launcher { .. } | SpawnError::Internal { .. } | SpawnError::Memory { .. } => ErrorCode::Internal,
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error { code, message: message.into() }
}

/// Run the daemon until SIGTERM or SIGINT.
pub fn run(opts: ServerOptions) -> Result<(), ServerError> {
    // A daemon that is not root could only run other users' requests with its
    // own credentials: one user would act as another.
    let uid = rustix::process::getuid().as_raw();
    if uid != 0 && opts.config.allowed_uids.iter().any(|&u| u != uid) {
        return Err(ServerError::ForeignUsers { uids: opts.config.allowed_uids.clone(), uid });
    }
    zygote_linux::process::fixed_mmap_threshold();
    let activated = listener::systemd_listener();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    // The accept loop runs as a task on a worker thread, not on this one:
    // a connection task it spawns then starts on the same worker, without a
    // wake-up across threads (a short image request is over before another
    // thread would have woken).
    rt.block_on(async move {
        match tokio::spawn(serve(opts, activated)).await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Runtime(std::io::Error::other(e.to_string()))),
        }
    })
}

async fn serve(opts: ServerOptions, activated: Option<std::os::unix::net::UnixListener>) -> Result<(), ServerError> {
    let cfg = &opts.config;
    let (zygote, own_restrictions) = start_zygote(cfg)?;
    // Before the socket exists, so that a busy port leaves nothing behind.
    let http = match cfg.metrics_port {
        0 => None,
        port => Some(super::http::bind(port)?),
    };
    let owned = activated.is_none();
    let listener = listener::open(&opts, activated)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let state = Arc::new(State::new(zygote, own_restrictions, &opts, shutdown_rx));
    tracing::info!(socket = %opts.socket.display(), "zygote daemon listening");
    if let Some(http) = http {
        stats::serve_metrics(&state, http);
    }
    let mut tasks = tokio::task::JoinSet::new();
    listener::accept_until_signal(&state, listener, &mut tasks).await?;
    tracing::info!("shutting down: finishing in-flight requests");
    if owned {
        let _ = std::fs::remove_file(&opts.socket);
    }
    let _ = shutdown_tx.send(true);
    listener::drain(tasks, opts.grace).await;
    Ok(())
}

/// The zygote with the configured cache, launchers and preloaded programs,
/// and the restrictions our children inherit.
fn start_zygote(cfg: &Config) -> Result<(Arc<Zygote>, Restrictions), ServerError> {
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
    Ok((zygote, own_restrictions))
}
