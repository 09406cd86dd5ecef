//! Spawn requests: check the program and the caller, start the child on the
//! blocking pool with the requester's credentials and restrictions, then
//! track it (the connection's session, the live registry, its reaper).

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::watch;

use super::connection::{Session, SessionChild};
use super::requests::check_readable;
use super::{State, code_for, error};
use crate::service::message::{ErrorCode, Response, SpawnArgs};
use crate::service::peer::Peer;
use zygote_core::exec::Launch;
use zygote_core::{Credentials, ExitStatus};
use zygote_linux::account::LiveProcess;
use zygote_linux::restrictions::{ChildRestrictions, RestrictionError, Restrictions};
use zygote_linux::{Child, Image, Requester, SpawnError, SpawnRequest};

/// A started child as the client hears of it: pid, image key, pidfd.
type Spawned = (i32, String, Arc<OwnedFd>);

/// [`spawn`], counted and timed in the daemon's statistics.
pub(super) async fn spawn_counted(
    state: &Arc<State>,
    peer: &Peer,
    session: &Arc<Session>,
    args: SpawnArgs,
    fds: Vec<OwnedFd>,
) -> Result<Spawned, Response> {
    let started = Instant::now();
    let result = spawn(state, peer, session, args, fds).await;
    match &result {
        Ok((pid, ..)) => {
            let elapsed = started.elapsed();
            state.spawn_latency.record(elapsed);
            state.counters.spawns.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(pid, elapsed_us = elapsed.as_micros() as u64, "spawned");
        }
        Err(_) => {
            state.counters.spawn_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    result
}

async fn spawn(
    state: &Arc<State>,
    peer: &Peer,
    session: &Arc<Session>,
    args: SpawnArgs,
    mut fds: Vec<OwnedFd>,
) -> Result<Spawned, Response> {
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
    let (detached, uid, named) = (args.detach, peer.uid, path.clone());
    let (st, peer) = (state.clone(), peer.clone());
    let result = tokio::task::spawn_blocking(move || start_child(&st, &peer, args, path, exe, fds))
        .await
        .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
    let (child, image) = result.map_err(|(code, message)| error(code, message))?;
    state.image_users.record(*image.key(), uid, &named);
    track(state, session, child, image, detached, uid)
        .map_err(|e| error(ErrorCode::Internal, format!("dup pidfd: {e}")))
}

/// Prepare the image and start the child (on the blocking pool).
fn start_child(
    st: &State,
    peer: &Peer,
    args: SpawnArgs,
    path: PathBuf,
    exe: OwnedFd,
    fds: Vec<OwnedFd>,
) -> Result<(Child, Arc<Image>), (ErrorCode, String)> {
    let failed = |e: SpawnError| (code_for(&e), e.to_string());
    // What execve would keep of the requester's: the program gets it too
    // (read from /proc here, on the blocking pool, not on the reactor).
    let restrict = caller_restrictions(st, peer)?;
    let req = request_of(args, &path, fds).map_err(failed)?;
    let launch = Launch { program: path.clone(), argv: req.argv().to_vec(), exec_path: path };
    // A root daemon runs another allowed user's programs as that user; a
    // daemon that is not root can only run them with its own credentials.
    let who = Requester { creds: peer_creds(st, peer), restrict: restrict.as_ref() };
    st.zygote.start_request(&req, &launch, exe.as_fd(), who).map_err(failed)
}

/// The wire form of a spawn (resolved by the client) as a [`SpawnRequest`]:
/// argv and environ exactly as sent, the fds at their targets (refused when
/// out of range or given twice), and /dev/null for stdio the requester did
/// not pass (never the daemon's own).
fn request_of(args: SpawnArgs, path: &std::path::Path, fds: Vec<OwnedFd>) -> Result<SpawnRequest, SpawnError> {
    let mut argv = args.argv.into_iter().map(OsString::from_vec);
    let argv0 = argv.next().unwrap_or_default();
    let mut placed: Vec<(OwnedFd, RawFd)> = fds.into_iter().zip(args.fds).collect();
    let null = zygote_linux::dev_null().map_err(|source| SpawnError::Internal { what: "/dev/null", source })?;
    for t in 0..3 {
        if !placed.iter().any(|p| p.1 == t) {
            let fd = null.try_clone().map_err(|source| SpawnError::Internal { what: "dup /dev/null", source })?;
            placed.push((fd, t));
        }
    }
    let mut req = SpawnRequest::new(path)
        .argv0(argv0)
        .args(argv)
        .environ(args.environ.into_iter().map(OsString::from_vec).collect())
        .name(OsString::from_vec(args.name))
        .fds_checked(placed)?;
    if !args.cwd.is_empty() {
        req = req.cwd(PathBuf::from(OsString::from_vec(args.cwd)));
    }
    Ok(req)
}

/// Remember a started child: in the connection's session (for Wait, and to
/// kill it if the client goes away), in the live registry (for Stats), and
/// with a reaper task. Fails only to dup the pidfd (then it is not tracked).
fn track(
    state: &Arc<State>,
    session: &Session,
    child: Child,
    image: Arc<Image>,
    detached: bool,
    uid: u32,
) -> std::io::Result<Spawned> {
    let pid = child.pid();
    let key = child.image_key().to_string();
    let pidfd = Arc::new(child.pidfd().try_clone_to_owned()?);
    let (tx, rx) = watch::channel(None);
    session
        .children
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pid, SessionChild { status: rx, pidfd: pidfd.clone(), detached });
    state.counters.live_children.fetch_add(1, Ordering::Relaxed);
    state.live.insert(LiveProcess { pid, uid, pidfd: pidfd.clone(), image, started: Instant::now() });
    tokio::spawn(reap(state.clone(), child, tx));
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

/// The credentials to run a peer's programs (and their prototypes) with: its
/// own when a root daemon serves another user, else the daemon's (`None`).
pub(super) fn peer_creds<'p>(state: &State, peer: &'p Peer) -> Option<Credentials<'p>> {
    // `then`, not `then_some`: the groups are read only when needed.
    (peer.uid != state.own_uid && state.own_uid == 0).then(|| Credentials {
        uid: peer.uid,
        gid: peer.gid,
        groups: peer.groups(),
    })
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
