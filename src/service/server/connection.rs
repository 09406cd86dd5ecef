//! One connection's life: the handshake, its requests in order, and at the
//! end the children it spawned that still run (killed unless detached).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;

use super::conn::{Conn, RecvError};
use super::image::{self, Received};
use super::requests::handle;
use super::{State, StatusRx, error};
use crate::service::limits::{ConnPermit, ConnReader};
use crate::service::message::{ErrorCode, Hello, PROTOCOL_VERSION, Request, Welcome};
use crate::service::peer::Peer;
use zygote_plan::image::ImageRequest;

/// A child spawned on a connection.
pub(super) struct SessionChild {
    pub(super) status: StatusRx,
    pub(super) pidfd: Arc<OwnedFd>,
    pub(super) detached: bool,
}

/// Per-connection state: the children it spawned.
pub(super) struct Session {
    pub(super) children: Mutex<HashMap<i32, SessionChild>>,
}

/// Does the connection have something to wait for (a child still running)?
/// Then it is not idle, whatever the client says.
fn busy(session: &Session, waits: &mut JoinSet<()>) -> bool {
    while waits.try_join_next().is_some() {}
    !waits.is_empty()
        || session.children.lock().unwrap_or_else(|e| e.into_inner()).values().any(|c| c.status.borrow().is_none())
}

/// An accepted, admitted connection: its socket, SO_PEERCRED, what the
/// accept loop read of it, and what its first receive came to, if anything.
pub(super) struct Started {
    pub(super) fd: OwnedFd,
    pub(super) cred: rustix::net::UCred,
    pub(super) reader: ConnReader,
    pub(super) first: Option<Received>,
}

/// Serve a connection the accept loop did not answer itself.
pub(super) async fn connection(state: Arc<State>, start: Started, _permit: ConnPermit) {
    let counters = &state.counters;
    counters.open_connections.fetch_add(1, Ordering::Relaxed);
    let Started { fd, cred, reader, first } = start;
    let peer = Peer::with_cred(fd.as_fd(), cred);
    let conn = match zygote_linux::process::async_fd(fd) {
        Ok(fd) => Arc::new(Conn::new(fd)),
        Err(e) => {
            tracing::warn!("registering a connection: {e}");
            counters.open_connections.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    let session = Arc::new(Session { children: Mutex::new(HashMap::new()) });
    // The accept loop admitted its uid (`Acceptor::admit`): a socket's peer
    // credentials and the allow-list do not change.
    let span = tracing::debug_span!("conn", peer_pid = peer.pid, peer_uid = peer.uid);
    let _ = tracing::Instrument::instrument(serve_conn(&state, &conn, &peer, &session, reader, first), span).await;
    kill_attached(&session);
    counters.open_connections.fetch_sub(1, Ordering::Relaxed);
}

/// The client is gone: kill its attached children that still run; their
/// reapers collect them.
fn kill_attached(session: &Session) {
    let children: Vec<_> = session.children.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
    for (pid, SessionChild { status, pidfd, detached }) in children {
        if !detached && status.borrow().is_none() {
            tracing::info!(pid, "client went away: killing its child");
            let _ = zygote_linux::process::pidfd_kill(pidfd.as_fd(), libc::SIGKILL);
        }
    }
}

/// Expect a Hello of our protocol version, answer Welcome. `None`: the
/// connection ends (also after an image request, which takes its place).
async fn handshake(
    state: &Arc<State>,
    conn: &Conn,
    peer: &Peer,
    reader: &mut ConnReader,
    first: Option<Received>,
) -> Option<()> {
    // The Hello is due within the frame timeout of the connect.
    let hello = match first {
        Some(received) => received,
        None => conn.recv(reader, &state.limits, state.frame_timeout).await,
    };
    let hello: Hello = match hello {
        Ok(Some(f)) if ImageRequest::is_request(&f.body) => {
            image::serve(state, conn, peer, &f.body, f.fds).await;
            return None;
        }
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
    conn.send(&Welcome { version: PROTOCOL_VERSION, limits: state.limits }, &[]).await.ok()
}

async fn serve_conn(
    state: &Arc<State>,
    conn: &Arc<Conn>,
    peer: &Peer,
    session: &Arc<Session>,
    mut reader: ConnReader,
    first: Option<Received>,
) -> Option<()> {
    let limits = state.limits;
    let mut shutdown = state.shutdown.clone();
    handshake(state, conn, peer, &mut reader, first).await?;
    let mut waits = JoinSet::new();
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
                closing(conn, &e).await;
                break;
            }
        };
        let Some(request) = decode(conn, &frame.body, draining).await? else { continue };
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

/// Tell the client why its connection closes, if there is something to say.
async fn closing(conn: &Conn, e: &RecvError) {
    match e.response() {
        Some(r) => {
            tracing::debug!("closing the connection: {e}");
            let _ = conn.send(&r, &[]).await;
        }
        None => tracing::debug!("closing an idle connection"),
    }
}

/// The request in a well-formed frame. `Some(None)`: answered with an error
/// (undecodable, or new work while draining), the connection goes on.
/// `None`: the answer could not be sent.
async fn decode(conn: &Conn, body: &[u8], draining: bool) -> Option<Option<Request>> {
    let request: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            // The frame was well formed: answer and keep the connection.
            conn.send(&error(ErrorCode::BadRequest, format!("undecodable request: {e}")), &[]).await.ok()?;
            return Some(None);
        }
    };
    if draining && matches!(request, Request::Spawn(_) | Request::Preload { .. }) {
        let msg = "the daemon is shutting down";
        conn.send(&error(ErrorCode::Internal, msg), &[]).await.ok()?;
        return Some(None);
    }
    Some(Some(request))
}
