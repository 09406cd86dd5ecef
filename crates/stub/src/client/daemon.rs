//! The exchange with the daemon: open the program (the proof of read
//! access), find the daemon's socket, connect with a short timeout, check
//! that the server is this user's or root's (SO_PEERCRED) before sending
//! anything, send the request with the program file, take the reply and the
//! fds it attaches. Every fd here is close-on-exec, so an exec instead of
//! the image leaves none behind.

use zygote_plan::MAX_PLAN_SIZE;
use zygote_plan::image::{
    FLAG_SET_EXE, FRAME_HEADER_SIZE, ImageReply, ImageRequest, ImageStatus, MAX_REPLY_FDS, MAX_REQUEST_ENV,
    frame_header, is_loader_env, parse_frame_header,
};

use super::Env;
use super::resolve::CPath;
use crate::sys::{self, Block, EINTR, IoVec, MSG_CTRUNC, MsgHdr, SCM_RIGHTS, SOL_SOCKET};

/// How long the daemon may take to accept, read and answer (each step).
const TIMEOUT_MS: i64 = 500;
const AF_UNIX: usize = 1;
const SOCK_STREAM_CLOEXEC: usize = 1 | 0o2000000;
const SO_PEERCRED: usize = 17;
const SO_RCVTIMEO: usize = 20;
const SO_SNDTIMEO: usize = 21;
const MSG_NOSIGNAL: usize = 0x4000;
const MSG_CMSG_CLOEXEC: usize = 0x4000_0000;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_CHECKPOINT_RESTORE: u32 = 40;

/// An image the daemon served: the reply (with its plan) in the caller's
/// buffer or a mapping of its own, the fds it attached, the program file
/// and the connection.
pub(crate) struct Served<'a> {
    pub(crate) program: i32,
    pub(crate) set_exe: bool,
    sock: i32,
    reply: Block<'a>,
    /// Where the plan lies in `reply`.
    plan: (usize, usize),
    attached: Attached,
}

impl Served<'_> {
    /// The reply's plan.
    pub(crate) fn plan_bytes(&self) -> &[u8] {
        &self.reply.as_slice()[self.plan.0..self.plan.0 + self.plan.1]
    }

    pub(crate) fn attached(&self) -> &[i32] {
        self.attached.as_slice()
    }

    /// Close everything but `keep` (the program file, when it is to become
    /// `/proc/self/exe`); the reply goes with `self`.
    pub(crate) fn release(self, keep: i32) {
        // Our fds, closed a run of consecutive numbers at a time (the
        // attached ones are usually one run, with the socket before them).
        let mut fds = [-1i32; MAX_REPLY_FDS + 2];
        let mut n = 0;
        for fd in self.attached().iter().copied().chain([self.sock, self.program]) {
            if fd >= 0 && fd != keep {
                fds[n] = fd;
                n += 1;
            }
        }
        let fds = &mut fds[..n];
        fds.sort_unstable();
        let mut i = 0;
        while i < fds.len() {
            let mut j = i;
            while j + 1 < fds.len() && fds[j + 1] == fds[j] + 1 {
                j += 1;
            }
            if i == j {
                sys::close(fds[i]);
            } else {
                sys::close_range(fds[i] as u32, fds[j] as u32);
            }
            i = j + 1;
        }
    }
}

/// The fds a reply attached (at most [`MAX_REPLY_FDS`]; any more are
/// closed as they are taken).
struct Attached {
    fds: [i32; MAX_REPLY_FDS],
    count: usize,
}

impl Attached {
    fn as_slice(&self) -> &[i32] {
        &self.fds[..self.count]
    }

    fn close_all(&self) {
        for &fd in self.as_slice() {
            sys::close(fd);
        }
    }
}

/// A request sent, its answer not read yet.
pub(crate) struct Pending {
    program: i32,
    sock: i32,
    set_exe: bool,
}

/// Send the daemon the request for `path`'s image (what the client does
/// while the daemon answers overlaps the daemon's work). `Err`: why it is
/// not served.
pub(crate) fn send(env: &Env, path: &CPath) -> Result<Pending, &'static str> {
    // SAFETY: a NUL-terminated path and integers.
    let program = unsafe {
        sys::syscall3(sys::SYS_OPENAT, sys::AT_FDCWD as usize, path.as_ptr() as usize, sys::O_RDONLY_CLOEXEC)
    };
    if program < 0 {
        return Err("the program cannot be opened for reading");
    }
    let program = program as i32;
    let sock = connect(env)?;
    let set_exe = may_set_exe();
    // Our root directory, which spares the daemon a `/proc/PID/root` lookup
    // (procfs::same_mounts); closed once sent.
    // SAFETY: a NUL-terminated path and integers.
    let root = unsafe {
        sys::syscall3(sys::SYS_OPENAT, sys::AT_FDCWD as usize, c"/".as_ptr() as usize, sys::O_PATH_DIR_CLOEXEC)
    };
    let fds = [program, root as i32];
    let sent = send_request(sock, &fds[..if root >= 0 { 2 } else { 1 }], env, path, set_exe);
    if root >= 0 {
        sys::close(root as i32);
    }
    sent?;
    Ok(Pending { program, sock, set_exe })
}

impl Pending {
    /// The daemon's answer, read into `buf` when it fits (else a mapping).
    pub(crate) fn receive(self, buf: &mut [u8]) -> Result<Served<'_>, &'static str> {
        let mut served = receive(self.sock, buf)?;
        served.program = self.program;
        served.set_exe = self.set_exe;
        Ok(served)
    }
}

/// Connect to the daemon's socket and check who serves it.
fn connect(env: &Env) -> Result<i32, &'static str> {
    let mut addr = [0u8; 110];
    addr[0] = AF_UNIX as u8;
    let len = socket_path(env, &mut addr[2..]).ok_or("the socket path is too long")?;
    // SAFETY: integers only.
    let sock = unsafe { sys::syscall3(sys::SYS_SOCKET, AF_UNIX, SOCK_STREAM_CLOEXEC, 0) };
    if sock < 0 {
        return Err("no socket");
    }
    let sock = sock as i32;
    let tv = [TIMEOUT_MS / 1000, (TIMEOUT_MS % 1000) * 1000];
    for opt in [SO_RCVTIMEO, SO_SNDTIMEO] {
        // SAFETY: the kernel reads a 16-byte struct timeval from `tv`.
        unsafe {
            sys::syscall6(sys::SYS_SETSOCKOPT, sock as usize, SOL_SOCKET as usize, opt, tv.as_ptr() as usize, 16, 0)
        };
    }
    // SAFETY: the kernel reads `2 + len + 1` bytes of sockaddr_un from `addr`.
    let r = unsafe { sys::syscall3(sys::SYS_CONNECT, sock as usize, addr.as_ptr() as usize, 2 + len + 1) };
    if r < 0 {
        return Err("no daemon at the socket");
    }
    let mut cred = [0u32; 3];
    let mut cred_len: u32 = 12;
    // SAFETY: the kernel writes at most `cred_len` (12) bytes of struct
    // ucred to `cred` and the length to `cred_len`, both live locals.
    let r = unsafe {
        sys::syscall6(
            sys::SYS_GETSOCKOPT,
            sock as usize,
            SOL_SOCKET as usize,
            SO_PEERCRED,
            cred.as_mut_ptr() as usize,
            &mut cred_len as *mut u32 as usize,
            0,
        )
    };
    if r < 0 || (cred[1] != 0 && cred[1] != sys::getuid()) {
        return Err("the socket is served by another user");
    }
    Ok(sock)
}

/// `ZYGOTE_SOCKET`, else `$XDG_RUNTIME_DIR/zygote/zygote.sock`, else
/// `/tmp/zygote-$UID/zygote.sock`, into `out` with a NUL; its length.
fn socket_path(env: &Env, out: &mut [u8]) -> Option<usize> {
    let mut uid_buf = [0u8; 10];
    let parts: [&[u8]; 3] = match (env.get(b"ZYGOTE_SOCKET"), env.get(b"XDG_RUNTIME_DIR")) {
        (Some(s), _) if !s.is_empty() => [s, b"", b""],
        (_, Some(d)) if !d.is_empty() => [d, b"/zygote/zygote.sock", b""],
        _ => [b"/tmp/zygote-", decimal(sys::getuid(), &mut uid_buf), b"/zygote.sock"],
    };
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len + 1 > out.len() {
        return None;
    }
    let mut n = 0;
    for p in parts {
        out[n..n + p.len()].copy_from_slice(p);
        n += p.len();
    }
    out[n] = 0;
    Some(n)
}

fn decimal(mut v: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// May this process make `/proc/self/exe` the program (CAP_SYS_ADMIN or
/// CAP_CHECKPOINT_RESTORE in its effective set)?
fn may_set_exe() -> bool {
    let mut header = [0x2008_0522u32, 0]; // _LINUX_CAPABILITY_VERSION_3, this process
    let mut data = [0u32; 6]; // two {effective, permitted, inheritable}
    // SAFETY: the kernel reads the 8-byte header and writes two 12-byte
    // data structs, both live locals of those sizes.
    let r = unsafe { sys::syscall3(sys::SYS_CAPGET, header.as_mut_ptr() as usize, data.as_mut_ptr() as usize, 0) };
    let has = |cap: u32| data[(cap / 32) as usize * 3] & (1 << (cap % 32)) != 0;
    r == 0 && (has(CAP_SYS_ADMIN) || has(CAP_CHECKPOINT_RESTORE))
}

/// Send the request frame with `fds` (the program file, our root) attached.
fn send_request(sock: i32, fds: &[i32], env: &Env, path: &CPath, set_exe: bool) -> Result<(), &'static str> {
    let env_len: usize = env.entries().filter(|kv| is_loader_env(kv)).map(|kv| kv.len() + 1).sum();
    if env_len > MAX_REQUEST_ENV {
        return Err("the loader environment is too large");
    }
    let head_len = ImageRequest::FIXED + path.as_bytes().len();
    let len = FRAME_HEADER_SIZE + head_len + env_len;
    // Most requests fit on the stack; a long path or loader environment
    // gets a mapping.
    let mut local = [0u8; 2048];
    let mut block = Block::new(&mut local, len, 0).map_err(|_| "no memory for the request")?;
    let bytes = block.bytes();
    let (head, body) = bytes.split_at_mut(FRAME_HEADER_SIZE);
    let (fixed, env_bytes) = body.split_at_mut(head_len);
    let (mut n, mut count) = (0, 0);
    for kv in env.entries().filter(|kv| is_loader_env(kv)) {
        env_bytes[n..n + kv.len()].copy_from_slice(kv);
        env_bytes[n + kv.len()] = 0;
        n += kv.len() + 1;
        count += 1;
    }
    let req = ImageRequest {
        flags: if set_exe { FLAG_SET_EXE } else { 0 },
        personality: sys::personality(),
        path: path.as_bytes(),
        env: env_bytes,
        env_count: count,
    };
    // The env entries are in place already.
    req.encode_head(fixed);
    head.copy_from_slice(&frame_header(len - FRAME_HEADER_SIZE, fds.len()));
    send_all(sock, bytes, fds)
}

/// Send `bytes`, with `fds` (one or two) attached to the first part.
fn send_all(sock: i32, bytes: &[u8], fds: &[i32]) -> Result<(), &'static str> {
    // cmsghdr { len: u64 = CMSG_LEN(4 * n), level: i32, type: i32 }, then
    // the fds.
    let second = fds.get(1).map_or(0, |&fd| (fd as u32 as u64) << 32);
    let control: [u64; 3] =
        [16 + 4 * fds.len() as u64, SOL_SOCKET as u64 | (SCM_RIGHTS as u64) << 32, fds[0] as u32 as u64 | second];
    let mut sent = 0;
    while sent < bytes.len() {
        // The kernel only reads through these pointers (sendmsg).
        let mut iov = IoVec { base: bytes[sent..].as_ptr() as *mut u8, len: bytes.len() - sent };
        let first = sent == 0;
        let (ctl, ctl_len) = if first { (control.as_ptr() as *mut u8, 24) } else { (core::ptr::null_mut(), 0) };
        let msg = MsgHdr::new(&mut iov, ctl, ctl_len);
        // SAFETY: `msg` and what it points at (one iovec over `bytes`, the
        // control buffer) are live locals the kernel only reads.
        let r = unsafe { sys::syscall3(sys::SYS_SENDMSG, sock as usize, &msg as *const MsgHdr as usize, MSG_NOSIGNAL) };
        if r == EINTR {
            continue;
        }
        if r <= 0 {
            return Err("the daemon did not take the request in time");
        }
        sent += r as usize;
    }
    Ok(())
}

/// Read the reply frame into `local` (header, fds and as much of the body
/// as has arrived, in one `recvmsg`), or into a fresh mapping when it does
/// not fit there.
fn receive(sock: i32, local: &mut [u8]) -> Result<Served<'_>, &'static str> {
    let mut control = [0u64; 128];
    let mut iov = IoVec { base: local.as_mut_ptr(), len: local.len() };
    let mut msg = MsgHdr::new(&mut iov, control.as_mut_ptr().cast(), core::mem::size_of_val(&control));
    let r = loop {
        // SAFETY: the kernel writes at most `local.len()` bytes into `local`
        // (the iovec) and at most `control_len` bytes into `control`, both
        // exclusively borrowed, and updates `msg`, a live local.
        let r = unsafe {
            sys::syscall3(sys::SYS_RECVMSG, sock as usize, &mut msg as *mut MsgHdr as usize, MSG_CMSG_CLOEXEC)
        };
        if r != EINTR {
            break r;
        }
    };
    let attached = take_fds(&control, msg.controllen);
    // Fds cut off (MSG_CTRUNC) would leave the plan naming fds we lack.
    let got = if r > 0 && msg.flags & MSG_CTRUNC == 0 { r as usize } else { 0 };
    match body(sock, local, got, attached.count) {
        Ok((reply, plan)) => Ok(Served { program: -1, set_exe: false, sock, reply, plan, attached }),
        Err(why) => {
            attached.close_all();
            Err(why)
        }
    }
}

/// Complete the reply (`got` bytes of it in `local`, `fds` fds with it),
/// check it, and find its plan: the body and where the plan lies in it.
fn body(sock: i32, local: &mut [u8], got: usize, fds: usize) -> Result<(Block<'_>, (usize, usize)), &'static str> {
    if got < FRAME_HEADER_SIZE {
        return Err("no answer from the daemon in time");
    }
    let (head, rest) = local.split_at_mut(FRAME_HEADER_SIZE);
    let Some((len, announced)) = parse_frame_header(head) else { return Err("a bad answer") };
    let (len, early) = (len as usize, got - FRAME_HEADER_SIZE);
    if len as u64 > MAX_PLAN_SIZE + (1 << 20) || announced as usize != fds || early > len {
        return Err("a bad answer");
    }
    // The body in place after the header when it fits, else in a mapping
    // (with what arrived of it already).
    let mut reply = Block::new(rest, len, early).map_err(|_| "no memory for the answer")?;
    if !read_all(sock, &mut reply.bytes()[early..]) {
        return Err("the answer was cut short");
    }
    let decoded = ImageReply::decode(reply.as_slice()).map_err(|_| "a bad answer")?;
    match decoded.status {
        ImageStatus::Image if decoded.fd_count as usize == fds => {
            let plan = (decoded.plan.as_ptr() as usize - reply.as_slice().as_ptr() as usize, decoded.plan.len());
            Ok((reply, plan))
        }
        ImageStatus::Image => Err("a bad answer"),
        ImageStatus::Exec => Err("the daemon says the program needs exec"),
        ImageStatus::Miss => Err("not cached yet (the daemon builds it now)"),
        ImageStatus::Error => Err("the daemon refused the request"),
    }
}

/// The fds of the SCM_RIGHTS messages in `control`.
fn take_fds(control: &[u64; 128], len: usize) -> Attached {
    let mut taken = Attached { fds: [-1; MAX_REPLY_FDS], count: 0 };
    let bytes = len.min(core::mem::size_of_val(control));
    let mut off = 0;
    while off + 16 <= bytes {
        let w = off / 8;
        let cmsg_len = control[w] as usize;
        let (level, ty) = (control[w + 1] as u32, (control[w + 1] >> 32) as u32);
        if cmsg_len < 16 || off + cmsg_len > bytes {
            break;
        }
        if level == SOL_SOCKET && ty == SCM_RIGHTS {
            for i in 0..(cmsg_len - 16) / 4 {
                let at = off + 16 + 4 * i;
                let word = control[at / 8];
                let fd = if at % 8 == 0 { word as u32 } else { (word >> 32) as u32 } as i32;
                if taken.count < MAX_REPLY_FDS {
                    taken.fds[taken.count] = fd;
                    taken.count += 1;
                } else {
                    sys::close(fd);
                }
            }
        }
        off += (cmsg_len + 7) & !7;
    }
    taken
}

/// Fill `buf` from the socket (within the receive timeout).
fn read_all(sock: i32, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the kernel writes at most `buf.len() - got` bytes into the
        // exclusively borrowed rest of `buf`.
        let r = unsafe {
            sys::syscall6(sys::SYS_READ, sock as usize, buf[got..].as_mut_ptr() as usize, buf.len() - got, 0, 0, 0)
        };
        if r == EINTR {
            continue;
        }
        if r <= 0 {
            return false;
        }
        got += r as usize;
    }
    true
}
