//! Who is on the other end of a connection, and what it may run.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::fstat;
use rustix::net::sockopt::socket_peercred;

/// The peer's credentials, from SO_PEERCRED.
#[derive(Clone, Debug)]
pub struct Peer {
    pub pid: i32,
    /// A pidfd of the peer process (SO_PEERPIDFD), when the kernel gives
    /// one: proof that `pid` still names it.
    pub pidfd: Option<Arc<OwnedFd>>,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, read from /proc/PID/status when first asked
    /// for (most requests never need them).
    groups: std::sync::OnceLock<Vec<u32>>,
}

impl Peer {
    pub fn of(sock: BorrowedFd<'_>) -> std::io::Result<Self> {
        Ok(Peer::with_cred(sock, socket_peercred(sock)?))
    }

    /// The peer of `sock`, whose SO_PEERCRED was read already.
    pub fn with_cred(sock: BorrowedFd<'_>, cred: rustix::net::UCred) -> Self {
        let pid = cred.pid.as_raw_nonzero().get();
        let pidfd = zygote_linux::restrictions::peer_pidfd(sock).ok().map(Arc::new);
        Peer::new(pid, pidfd, cred.uid.as_raw(), cred.gid.as_raw())
    }

    pub fn new(pid: i32, pidfd: Option<Arc<OwnedFd>>, uid: u32, gid: u32) -> Self {
        Peer { pid, pidfd, uid, gid, groups: std::sync::OnceLock::new() }
    }

    /// Supplementary groups (from /proc/PID/status; empty if unreadable).
    pub fn groups(&self) -> &[u32] {
        self.groups.get_or_init(|| groups_of(self.pid))
    }

    /// Can this peer read `file` through the fd it passed? Its open proved
    /// read access only if the fd was opened for reading: an `O_PATH` fd
    /// (which execute-only files allow) or a write-only one proves nothing,
    /// and serving it would hand the peer a dumpable copy of a program it may
    /// not read.
    pub fn readable_fd(file: impl AsFd) -> std::io::Result<bool> {
        let flags = rustix::fs::fcntl_getfl(file)?;
        if flags.contains(rustix::fs::OFlags::PATH) {
            return Ok(false);
        }
        let mode = flags & rustix::fs::OFlags::RWMODE;
        Ok(mode == rustix::fs::OFlags::RDONLY || mode == rustix::fs::OFlags::RDWR)
    }

    /// Would execve let this peer run `file`? (The client opened it, which
    /// proves read access; execute permission is checked here, by the same
    /// rules as the kernel: root needs any x bit, else owner, group, other.)
    pub fn may_execute(&self, file: impl AsFd) -> std::io::Result<bool> {
        let st = fstat(file)?;
        let mode = st.st_mode;
        if mode & 0o170000 != 0o100000 {
            return Ok(false);
        }
        if self.uid == 0 {
            return Ok(mode & 0o111 != 0);
        }
        let bit = if self.uid == st.st_uid {
            0o100
        } else if self.gid == st.st_gid || self.groups().contains(&st.st_gid) {
            0o010
        } else {
            0o001
        };
        Ok(mode & bit != 0)
    }
}

/// May `uid` use a daemon run by `own_uid`? Its uid is the daemon's or
/// allow-listed. (Decided once per connection, in the accept loop.)
pub fn admits(uid: u32, own_uid: u32, allowed: &[u32]) -> bool {
    uid == own_uid || allowed.contains(&uid)
}

fn groups_of(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    zygote_linux::procfs::status_field(&status, "Groups")
        .map(|g| g.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn own_credentials_and_exec_bits() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = Peer::of(a.as_fd()).unwrap();
        assert_eq!(p.pid, std::process::id() as i32);
        assert_eq!(p.uid, rustix::process::getuid().as_raw());
        assert!(admits(p.uid, p.uid, &[]));
        assert!(!admits(p.uid, p.uid.wrapping_add(1), &[]));
        assert!(admits(p.uid, p.uid.wrapping_add(1), &[p.uid]));
        let sh = std::fs::File::open("/bin/sh").unwrap();
        assert!(p.may_execute(&sh).unwrap());
        let passwd = std::fs::File::open("/etc/passwd").unwrap();
        assert!(!p.may_execute(&passwd).unwrap());
        // Another user: /bin/sh is world-executable, a 0700 file of root is not.
        let other = Peer::new(1, None, 65534, 65534);
        other.groups.get_or_init(Vec::new);
        assert!(other.may_execute(&sh).unwrap());
        let dir = std::env::temp_dir().join(format!("zygote-peer-{}", std::process::id()));
        std::fs::write(&dir, b"x").unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let f = std::fs::File::open(&dir).unwrap();
        let owner_is_other = fstat(&f).unwrap().st_uid != 65534;
        assert_eq!(other.may_execute(&f).unwrap(), !owner_is_other);
        std::fs::remove_file(&dir).unwrap();
    }
}
