//! Requests after the handshake: each answered in order (Spawn, Preload,
//! Evict, Stats), or, for Wait, by a task of the connection's that answers
//! when the child ends.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::conn::Conn;
use super::connection::Session;
use super::scope::Scope;
use super::spawn::{peer_creds, spawn_counted};
use super::stats::stats_blocking;
use super::{State, code_for, error};
use crate::service::message::{ErrorCode, Request, Response};
use crate::service::peer::Peer;
use zygote_core::ExitStatus;
use zygote_core::image::{ContentHash, ImageKey};
use zygote_linux::Image;

/// Handle one request. `None` ends the connection.
pub(super) async fn handle(
    state: &Arc<State>,
    conn: &Arc<Conn>,
    peer: &Peer,
    session: &Arc<Session>,
    request: Request,
    mut fds: Vec<OwnedFd>,
    waits: &mut JoinSet<()>,
) -> Option<()> {
    if !request.expected_fds().contains(&fds.len()) {
        let msg = format!("{} takes {:?} fds, got {}", request.method(), request.expected_fds(), fds.len());
        return conn.send(&error(ErrorCode::TooManyFds, msg), &[]).await.ok();
    }
    let reply = match request {
        Request::Spawn(args) => match spawn_counted(state, peer, session, args, fds).await {
            Ok((pid, key, pidfd)) => return conn.send(&Response::Spawned { pid, key }, &[pidfd.as_fd()]).await.ok(),
            Err(r) => r,
        },
        Request::Preload { name } => preload(state, peer, name, fds.remove(0)).await,
        Request::Evict { key } => evict(state, Scope::of(peer.uid, state.own_uid), key, fds).await,
        Request::Stats => {
            Response::Stats(Box::new(stats_blocking(state.clone(), Scope::of(peer.uid, state.own_uid)).await))
        }
        Request::Wait { pid } => return wait(conn, session, pid, waits).await,
    };
    conn.send(&reply, &[]).await.ok()
}

/// Prepare (and cache) the image of the program in `file` for the peer.
async fn preload(state: &Arc<State>, peer: &Peer, name: String, file: OwnedFd) -> Response {
    let path = PathBuf::from(&name);
    if let Err((code, message)) = check_readable(&file, &path) {
        return error(code, message);
    }
    let (uid, named) = (peer.uid, path.clone());
    let (st, peer) = (state.clone(), peer.clone());
    let prepare = move || {
        let creds = peer_creds(&st, &peer);
        st.zygote.prepare_fd(file.as_fd(), &path, &zygote_linux::prototype::Environment { loader_env: &[], creds })
    };
    match tokio::task::spawn_blocking(prepare).await {
        Ok(Ok(img)) => {
            state.image_users.record(*img.key(), uid, &named);
            Response::Preloaded { key: img.key().to_string(), sealed_bytes: img.sealed_bytes() }
        }
        Ok(Err(e)) => error(code_for(&e), e.to_string()),
        Err(e) => error(ErrorCode::Internal, e.to_string()),
    }
}

/// Answer `Exited` when the child `pid` of this connection ends, from a task
/// in `waits` (the connection goes on meanwhile).
async fn wait(conn: &Arc<Conn>, session: &Arc<Session>, pid: i32, waits: &mut JoinSet<()>) -> Option<()> {
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
    Some(())
}

/// Evict by key (as `Stats` shows it, static or prototype), or by program
/// file (its static image, and every prototype image of that file), within
/// what `scope` may evict.
async fn evict(state: &Arc<State>, scope: Scope, key: String, mut fds: Vec<OwnedFd>) -> Response {
    let targets: Vec<ImageKey> = if key.is_empty() {
        let file = fds.remove(0);
        if let Err((code, message)) = check_readable(&file, Path::new("<fd>")) {
            return error(code, message);
        }
        let z = state.zygote.clone();
        match tokio::task::spawn_blocking(move || z.identify_fd(&file)).await {
            Ok(Ok((hash, id))) => images_of(state, |k, img| {
                *k == ImageKey::relocate(hash) || (img.identity().dev, img.identity().ino) == (id.dev, id.ino)
            }),
            Ok(Err(e)) => return error(code_for(&e), e.to_string()),
            Err(e) => return error(ErrorCode::Internal, e.to_string()),
        }
    } else {
        match parse_hash(&key) {
            Some(h) => images_of(state, |k, _| k.content == h),
            None => return error(ErrorCode::BadRequest, format!("{key:?} is not a 64-digit hex image key")),
        }
    };
    let mut count = 0;
    for k in targets.iter().filter(|k| state.image_users.may_evict(scope, k)) {
        count += u64::from(state.zygote.cache().remove(k).is_some());
    }
    // A launcher warmed up with the image would keep its memory alive.
    state.zygote.prune_launchers();
    if count > 0 {
        return Response::Evicted { count };
    }
    let what = if key.is_empty() { "that program".to_string() } else { key };
    let whose = if scope == Scope::All { "" } else { " of yours (only images no other user used can be evicted)" };
    error(ErrorCode::NotFound, format!("no cached image{whose} for {what}"))
}

/// The keys of the cached images that `matches`.
fn images_of(state: &State, matches: impl Fn(&ImageKey, &Image) -> bool) -> Vec<ImageKey> {
    state.zygote.cache().images().iter().filter(|i| matches(i.key(), i)).map(|i| *i.key()).collect()
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

/// Refuse a program fd that does not prove read access (see
/// [`Peer::readable_fd`]).
pub(super) fn check_readable(file: &OwnedFd, path: &Path) -> Result<(), (ErrorCode, String)> {
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
