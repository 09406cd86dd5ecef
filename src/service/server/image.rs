//! Image requests from thin exec clients (the caller-side path): one binary
//! frame instead of the Hello, one binary reply, then the connection ends.
//! The reply serves the cached image of the file the client passed, as the
//! client's user, or tells it to exec the file: on a miss the image is built
//! in the background (a few builds at a time, one per file), so a first run
//! never waits for a build. A served client is the program's own process:
//! it is counted among the image's live processes (for the memory figures)
//! until it exits.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;
use zygote_core::image::FileIdentity;
use zygote_core::metrics::stats::ImageRequestStats;
use zygote_linux::SpawnError;
use zygote_linux::account::LiveProcess;
use zygote_linux::prototype::Environment;
use zygote_linux::spawn::{ClientSide, ImageAnswer, attached_fds};
use zygote_plan::image::{FLAG_SET_EXE, ImageReply, ImageRequest, ImageStatus};

use super::State;
use super::conn::{Conn, RecvError};
use super::requests::check_readable;
use super::spawn::peer_creds;
use crate::service::frame::{Frame, FrameWriter, ReadStatus};
use crate::service::limits::ConnReader;
use crate::service::peer::Peer;

/// Background builds at once.
const BUILDS_AT_ONCE: usize = 2;
/// Most files remembered as unbuildable.
const MAX_UNBUILDABLE: usize = 4096;
/// Most live processes the registry holds before served clients are no
/// longer followed for the memory figures (each costs the daemon a pidfd).
const MAX_FOLLOWED: usize = 4096;
/// Exited processes leave the registry every this many follows.
const PRUNE_EVERY: u64 = 64;

/// Image requests so far, and the builds they started.
#[derive(Default)]
pub(super) struct ImageCounters {
    served: AtomicU64,
    exec: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    builds: AtomicU64,
    /// Served clients followed so far.
    follows: AtomicU64,
}

/// Builds started by misses: a few at once, one per file; and the files
/// whose build failed for good (not ELF, malformed, too large), answered
/// `Exec` without another build until they change (their identity holds
/// mtime and ctime).
pub(super) struct Background {
    permits: Arc<Semaphore>,
    building: Mutex<HashSet<(u64, u64)>>,
    unbuildable: Mutex<HashSet<FileIdentity>>,
}

impl Default for Background {
    fn default() -> Self {
        Background {
            permits: Arc::new(Semaphore::new(BUILDS_AT_ONCE)),
            building: Mutex::new(HashSet::new()),
            unbuildable: Mutex::new(HashSet::new()),
        }
    }
}

impl Background {
    fn unbuildable(&self, id: &FileIdentity) -> bool {
        self.unbuildable.lock().unwrap_or_else(|e| e.into_inner()).contains(id)
    }

    fn failed_for_good(&self, id: FileIdentity) {
        let mut set = self.unbuildable.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= MAX_UNBUILDABLE {
            set.clear();
        }
        set.insert(id);
    }
}

impl ImageCounters {
    pub(super) fn snapshot(&self) -> ImageRequestStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ImageRequestStats {
            served: get(&self.served),
            exec: get(&self.exec),
            misses: get(&self.misses),
            errors: get(&self.errors),
            builds: get(&self.builds),
        }
    }
}

/// Answer the image request in `body` (the connection's first frame).
pub(super) async fn serve(state: &Arc<State>, conn: &Conn, peer: &Peer, body: &[u8], fds: Vec<OwnedFd>) {
    send(state, conn, peer, reply(state, peer, body, fds)).await
}

/// The reply frame's body and the image whose fds it attaches.
pub(super) struct Reply {
    body: Vec<u8>,
    image: Option<Arc<zygote_linux::Image>>,
}

impl Reply {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.image.as_deref().map(attached_fds).unwrap_or_default()
    }
}

/// Send `reply` through the reactor; follow the served client.
async fn send(state: &Arc<State>, conn: &Conn, peer: &Peer, reply: Reply) {
    if let Err(e) = conn.send_bytes(&reply.body, &reply.fds()).await {
        tracing::debug!("image reply: {e}");
        return;
    }
    if let Some(image) = reply.image {
        follow(state, peer, image);
    }
}

/// What the accept loop did with a new connection's first bytes.
pub(super) enum Inline {
    /// An image request, answered (or being answered) already.
    Served,
    /// Anything else: the connection's task goes on from what was read,
    /// and with what its first receive came to if it came to something (a
    /// whole frame, or an error to answer as every receive's).
    Connection(OwnedFd, ConnReader, Option<Received>),
}

/// What a connection's receive came to (`Conn::recv`'s result).
pub(super) type Received = Result<Option<Frame>, RecvError>;

/// Answer an image request without the reactor when it has arrived whole
/// by the time its connection is accepted (the thin client sends it right
/// after connecting) and the reply fits in the socket at once: no task, no
/// registration, no wake-up of another worker. A reply that does not go
/// out at once is finished by a task.
pub(super) fn try_now(state: &Arc<State>, fd: OwnedFd, cred: rustix::net::UCred) -> Inline {
    let mut reader = ConnReader::new(&state.buffers, state.frame_timeout);
    // As `Conn::recv` reads: the budget charged, errors kept for the task.
    let first: Received = match reader.reader.read_once(fd.as_fd()) {
        Ok(ReadStatus::Data) if !reader.charge.set(reader.reader.buffered() as u64) => {
            Err(RecvError::Budget(reader.budget_max))
        }
        Ok(ReadStatus::Data) => reader.reader.next_frame(&state.limits).map_err(RecvError::from),
        Ok(ReadStatus::Eof | ReadStatus::WouldBlock) => Ok(None),
        Err(e) => Err(e.into()),
    };
    let frame = match first {
        Ok(None) => return Inline::Connection(fd, reader, None),
        Ok(Some(f)) => {
            reader.taken();
            f
        }
        Err(e) => return Inline::Connection(fd, reader, Some(Err(e))),
    };
    if !ImageRequest::is_request(&frame.body) || reader.reader.buffered() > 0 {
        return Inline::Connection(fd, reader, Some(Ok(Some(frame))));
    }
    let peer = Peer::with_cred(fd.as_fd(), cred);
    let reply = reply(state, &peer, &frame.body, frame.fds);
    match send_now(fd.as_fd(), &reply) {
        Ok(()) => {
            if let Some(image) = reply.image {
                follow(state, &peer, image);
            }
        }
        Err((rustix::io::Errno::AGAIN, sent)) => finish_later(state, fd, peer, reply, sent),
        Err((e, _)) => tracing::debug!("image reply: {e}"),
    }
    Inline::Served
}

/// Send `reply` on the non-blocking `sock` as far as it goes at once; on
/// failure, the error and how many bytes of the frame went out.
fn send_now(sock: BorrowedFd<'_>, reply: &Reply) -> Result<(), (rustix::io::Errno, usize)> {
    let fds = reply.fds();
    let mut w = FrameWriter::new(&reply.body, &fds);
    while !w.done() {
        match w.write_once(sock) {
            Ok(()) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err((e, w.sent())),
        }
    }
    Ok(())
}

/// Send the rest of `reply` (`sent` bytes of its frame went out already,
/// with its fds if any) through the reactor.
fn finish_later(state: &Arc<State>, fd: OwnedFd, peer: Peer, reply: Reply, sent: usize) {
    let state = state.clone();
    tokio::spawn(async move {
        let conn = match zygote_linux::process::async_fd(fd) {
            Ok(fd) => Conn::new(fd),
            Err(e) => return tracing::debug!("image reply: {e}"),
        };
        if sent == 0 {
            return send(&state, &conn, &peer, reply).await;
        }
        let fd_count = reply.image.as_deref().map_or(0, |i| attached_fds(i).len());
        if let Err(e) = conn.send_writer(FrameWriter::resume(&reply.body, fd_count, sent)).await {
            return tracing::debug!("image reply: {e}");
        }
        if let Some(image) = reply.image {
            follow(&state, &peer, image);
        }
    });
}

/// The reply to the image request in `body`, counted.
fn reply(state: &Arc<State>, peer: &Peer, body: &[u8], fds: Vec<OwnedFd>) -> Reply {
    let answer = answer(state, peer, body, fds);
    let (status, message, plan, image) = match answer {
        Answer::Image { plan, image } => (ImageStatus::Image, "", plan, Some(image)),
        Answer::Other(status, why) => (status, why, Vec::new(), None),
    };
    let fd_count = image.as_deref().map_or(0, |i| attached_fds(i).len());
    let reply = ImageReply { status, fd_count: fd_count as u32, message: message.as_bytes(), plan: &plan };
    let mut bytes = vec![0u8; reply.encoded_len()];
    reply.encode(&mut bytes);
    let counter = match status {
        ImageStatus::Image => &state.images.served,
        ImageStatus::Exec => &state.images.exec,
        ImageStatus::Miss => &state.images.misses,
        ImageStatus::Error => &state.images.errors,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    Reply { body: bytes, image }
}

enum Answer {
    Image { plan: Vec<u8>, image: Arc<zygote_linux::Image> },
    Other(ImageStatus, &'static str),
}

fn answer(state: &Arc<State>, peer: &Peer, body: &[u8], mut fds: Vec<OwnedFd>) -> Answer {
    let Ok(req) = ImageRequest::decode(body) else {
        return Answer::Other(ImageStatus::Error, "an undecodable image request");
    };
    // The program, then (optionally) the client's root directory.
    if !(1..=2).contains(&fds.len()) {
        return Answer::Other(ImageStatus::Error, "an image request takes the program's fd and its root's");
    }
    let file = fds.remove(0);
    let own_root = fds.pop();
    let path = PathBuf::from(OsStr::from_bytes(req.path));
    if check_readable(&file, &path).is_err() {
        return Answer::Other(ImageStatus::Exec, "the fd was not opened for reading");
    }
    match peer.may_execute(&file) {
        Ok(true) => {}
        _ => return Answer::Other(ImageStatus::Exec, "the program may not be executed by the requester"),
    }
    let loader_env: Vec<Vec<u8>> = req.env_entries().map(<[u8]>::to_vec).collect();
    let name = path.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
    let same = zygote_linux::procfs::same_mounts(
        peer.pid,
        peer.pidfd.as_deref().map(AsFd::as_fd),
        own_root.as_ref().map(AsFd::as_fd),
    );
    let root = (!same).then(|| PathBuf::from(format!("/proc/{}/root", peer.pid)));
    let client = ClientSide {
        personality: req.personality,
        set_exe: req.flags & FLAG_SET_EXE != 0,
        name,
        root: root.as_deref(),
    };
    let env = Environment { loader_env: &loader_env, creds: peer_creds(state, peer) };
    // A lookup never reads, hashes or builds (a few stats): on the reactor.
    let answer = state.zygote.serve_image(file.as_fd(), &path, &env, client, state.own_restrictions.personality);
    match answer {
        Ok(ImageAnswer::Image { image, plan }) => {
            state.image_users.record(*image.key(), peer.uid, &path);
            Answer::Image { plan, image }
        }
        Ok(ImageAnswer::Exec(why)) => Answer::Other(ImageStatus::Exec, why),
        Ok(ImageAnswer::Unscanned(image)) => {
            scan_in_background(state, image);
            Answer::Other(ImageStatus::Exec, "not known yet whether the program reads /proc/self/exe")
        }
        Ok(ImageAnswer::Miss) => {
            if zygote_linux::identity_of(&file).is_ok_and(|id| state.background.unbuildable(&id)) {
                return Answer::Other(ImageStatus::Exec, "the daemon cannot image this file");
            }
            build_in_background(state, peer, file, path, loader_env);
            Answer::Other(ImageStatus::Miss, "not cached yet")
        }
        Err(e) => {
            tracing::debug!("image request: {e}");
            Answer::Other(ImageStatus::Exec, "the program file is refused")
        }
    }
}

/// Build `file`'s image for the peer on the blocking pool, unless this file
/// is being built already or enough builds run.
fn build_in_background(state: &Arc<State>, peer: &Peer, file: OwnedFd, path: PathBuf, loader_env: Vec<Vec<u8>>) {
    let Ok(id) = zygote_linux::identity_of(&file) else { return };
    let key = (id.dev, id.ino);
    let Ok(permit) = state.background.permits.clone().try_acquire_owned() else { return };
    if !state.background.building.lock().unwrap_or_else(|e| e.into_inner()).insert(key) {
        return;
    }
    state.images.builds.fetch_add(1, Ordering::Relaxed);
    let (st, who) = (state.clone(), peer.clone());
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let env = Environment { loader_env: &loader_env, creds: peer_creds(&st, &who) };
        match st.zygote.prepare_fd(file.as_fd(), &path, &env) {
            Ok(img) => {
                st.image_users.record(*img.key(), who.uid, &path);
                st.zygote.scan_exe_refs(&img);
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(path = %path.display(), key = %img.key(), ms, "built for a caller-side client");
            }
            Err(e) => {
                tracing::info!("building {} for a caller-side client: {e}", Path::new(&path).display());
                if matches!(e, SpawnError::Image(_) | SpawnError::TooLarge { .. }) {
                    st.background.failed_for_good(id);
                }
            }
        }
        st.background.building.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        drop(permit);
    });
}

/// Read the image's libraries for `/proc/self/exe` on the blocking pool
/// (with the builds' permits), so that clients that cannot set it are served
/// next time, or told to exec.
fn scan_in_background(state: &Arc<State>, image: Arc<zygote_linux::Image>) {
    let Ok(permit) = state.background.permits.clone().try_acquire_owned() else { return };
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let reads = st.zygote.scan_exe_refs(&image);
        tracing::debug!(key = %image.key(), reads, "scanned the libraries for /proc/self/exe");
        drop(permit);
    });
}

/// Count the served client (now the program) among the image's live
/// processes (its pidfd, from the connection, is the registry's proof of
/// life); exited ones are dropped every so often and before each Stats.
fn follow(state: &Arc<State>, peer: &Peer, image: Arc<zygote_linux::Image>) {
    let Some(pidfd) = peer.pidfd.clone() else { return };
    if state.images.follows.fetch_add(1, Ordering::Relaxed).is_multiple_of(PRUNE_EVERY) {
        state.live.prune_exited();
    }
    if state.live.len() >= MAX_FOLLOWED {
        return;
    }
    state.live.insert(LiveProcess { pid: peer.pid, uid: peer.uid, pidfd, image, started: Instant::now() });
}
