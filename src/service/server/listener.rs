//! The listening socket (bound here, or passed by systemd), the accept loop
//! with its admission and backoff, and the drain of connections at shutdown.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustix::net::SocketFlags;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinSet;

use super::connection::{Started, connection};
use super::image::{self, Inline};
use super::{ServerError, ServerOptions, State};
use crate::service::limits::{Acceptor, Admission};
use crate::service::sockdir::{self, Strictness};

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
pub(super) fn systemd_listener() -> Option<std::os::unix::net::UnixListener> {
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

/// The listening socket, registered with the reactor. Accepted sockets are
/// not (tokio's listener would register each, and the connection then
/// deregisters it to take its fd and registers it again).
pub(super) type Listener = AsyncFd<OwnedFd>;

/// The socket to serve: systemd's, or one bound at `opts.socket`.
pub(super) fn open(
    opts: &ServerOptions,
    activated: Option<std::os::unix::net::UnixListener>,
) -> Result<Listener, ServerError> {
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
    zygote_linux::process::async_fd(std_listener.into()).map_err(ServerError::Runtime)
}

/// The next connection: a non-blocking, close-on-exec socket.
async fn accept(listener: &Listener) -> std::io::Result<OwnedFd> {
    loop {
        let mut ready = listener.readable().await?;
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        match ready.try_io(|l| rustix::net::accept_with(l.get_ref(), flags).map_err(std::io::Error::from)) {
            Ok(accepted) => return accepted,
            Err(_would_block) => continue,
        }
    }
}

/// Accept and admit connections, one task each in `tasks`, until SIGTERM or
/// SIGINT; the listener is closed on return.
pub(super) async fn accept_until_signal(
    state: &Arc<State>,
    listener: Listener,
    tasks: &mut JoinSet<()>,
) -> Result<(), ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Runtime)?;
    let mut acceptor = Acceptor::new();
    loop {
        tokio::select! {
            accepted = accept(&listener) => match accepted {
                Ok(stream) => {
                    acceptor.backoff.succeeded();
                    let who = Admission {
                        own_uid: state.own_uid,
                        allowed: &state.config.allowed_uids,
                        caps: &state.conn_limits,
                    };
                    if let Some((permit, cred)) = acceptor.admit(&who, stream.as_fd()) {
                        state.counters.connections.fetch_add(1, Ordering::Relaxed);
                        // An image request that came with the connect is
                        // answered here; anything else gets its task.
                        if let Inline::Connection(fd, reader, first) = image::try_now(state, stream, cred) {
                            let state = state.clone();
                            let start = Started { fd, cred, reader, first };
                            tasks.spawn(async move { connection(state, start, permit).await });
                        }
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
    Ok(())
}

/// Let the connections finish (pending waits included) for up to `grace`.
pub(super) async fn drain(mut tasks: JoinSet<()>, grace: Duration) {
    let deadline = tokio::time::sleep(grace);
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
}
