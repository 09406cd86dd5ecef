//! The restrictions a process keeps across execve, read from a requester so
//! that a program the daemon starts for it has them too.
//!
//! execve keeps the caller's no-new-privs flag, capability bounding set,
//! seccomp filter, rlimits, umask, nice value, oom_score_adj, CPU affinity,
//! I/O priority, personality, cgroups and namespaces. The daemon's pre-exec
//! child applies each of them to the new process ([`ChildRestrictions`]), or
//! the request is refused when one cannot be reproduced: a seccomp filter, a
//! namespace other than the daemon's, ambient capabilities, or a value the
//! daemon lacks the privilege to set (the child reports it and the spawn
//! fails). See docs/ARCHITECTURE.md, "Caller restrictions".

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Resources of `getrlimit` (RLIMIT_CPU ..= RLIMIT_RTTIME).
const RLIMITS: usize = 16;
/// Namespaces compared with the daemon's.
const NAMESPACES: [&str; 8] = ["mnt", "pid_for_children", "net", "ipc", "uts", "user", "cgroup", "time_for_children"];
/// Bits of the CPU affinity mask kept (1024 CPUs, as glibc's cpu_set_t).
const CPU_WORDS: usize = 16;

/// What a process passes on through execve, as read from `/proc/PID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restrictions {
    pub no_new_privs: bool,
    /// 0: none, 1: strict, 2: filter.
    pub seccomp: u32,
    pub cap_bounding: u64,
    pub cap_ambient: u64,
    pub umask: u32,
    /// (soft, hard) per resource; `u64::MAX` is unlimited.
    pub rlimits: [(u64, u64); RLIMITS],
    pub nice: i32,
    pub oom_score_adj: i32,
    pub ioprio: i32,
    pub affinity: [u64; CPU_WORDS],
    pub personality: u32,
    /// `/proc/PID/cgroup` lines: (hierarchy controllers, path).
    pub cgroups: Vec<(String, String)>,
    /// Inode numbers of the namespaces in [`NAMESPACES`] order.
    pub namespaces: [u64; NAMESPACES.len()],
}

#[derive(Debug, thiserror::Error)]
pub enum RestrictionError {
    #[error("reading the requester's {what}: {source}")]
    Read { what: String, source: io::Error },
    #[error("the requester's {what} is malformed")]
    Parse { what: &'static str },
    #[error("the requesting process is gone")]
    Gone,
    #[error("the requester runs under a seccomp filter, which a program started by the daemon could not keep")]
    Seccomp,
    #[error("the requester is in another {0} namespace than the daemon")]
    Namespace(&'static str),
    #[error("the requester has ambient capabilities, which a program started by the daemon would not get")]
    Ambient,
    #[error("cannot move the program into the requester's cgroup {path}: {source}")]
    Cgroup { path: String, source: io::Error },
}

fn read(pid: i32, what: &str) -> Result<String, RestrictionError> {
    std::fs::read_to_string(format!("/proc/{pid}/{what}"))
        .map_err(|source| RestrictionError::Read { what: what.to_string(), source })
}

fn status_field<'a>(status: &'a str, key: &'static str) -> Result<&'a str, RestrictionError> {
    crate::procfs::status_field(status, key).ok_or(RestrictionError::Parse { what: key })
}

fn status_mask(status: &str, key: &'static str) -> Result<u64, RestrictionError> {
    crate::procfs::status_mask(status, key).ok_or(RestrictionError::Parse { what: key })
}

/// `/proc/PID/limits`: (soft, hard) per resource, in the kernel's order.
fn parse_limits(text: &str) -> Result<[(u64, u64); RLIMITS], RestrictionError> {
    let bad = RestrictionError::Parse { what: "limits" };
    let mut out = [(0, 0); RLIMITS];
    let lines: Vec<&str> = text.lines().skip(1).collect();
    if lines.len() < RLIMITS {
        return Err(bad);
    }
    let value = |s: &str| if s == "unlimited" { Some(u64::MAX) } else { s.parse().ok() };
    for (slot, line) in out.iter_mut().zip(lines) {
        // "Max open files            1024                 1048576              files"
        let tail = line.get(26..).ok_or(RestrictionError::Parse { what: "limits" })?;
        let mut words = tail.split_whitespace();
        let (Some(soft), Some(hard)) = (words.next().and_then(value), words.next().and_then(value)) else {
            return Err(RestrictionError::Parse { what: "limits" });
        };
        *slot = (soft, hard);
    }
    Ok(out)
}

impl Restrictions {
    /// Read the restrictions of process `pid`. `pidfd` (a pidfd of the same
    /// process, taken before) proves afterwards that the pid was not reused
    /// while we read.
    pub fn of(pid: i32, pidfd: Option<BorrowedFd<'_>>) -> Result<Self, RestrictionError> {
        let status = read(pid, "status")?;
        let stat = read(pid, "stat")?;
        // Fields after the command name, which may contain spaces.
        let after = stat.rsplit_once(") ").map(|p| p.1).ok_or(RestrictionError::Parse { what: "stat" })?;
        let nice: i32 = after
            .split_whitespace()
            .nth(16)
            .and_then(|s| s.parse().ok())
            .ok_or(RestrictionError::Parse { what: "stat" })?;
        let cgroups = crate::procfs::cgroups(&read(pid, "cgroup")?);
        let mut namespaces = [0; NAMESPACES.len()];
        for (slot, ns) in namespaces.iter_mut().zip(NAMESPACES) {
            let path = format!("/proc/{pid}/ns/{ns}");
            *slot = match rustix::fs::stat(path.as_str()) {
                Ok(st) => st.st_ino,
                // A kernel without this namespace kind.
                Err(rustix::io::Errno::NOENT) => 0,
                Err(e) => return Err(RestrictionError::Read { what: format!("ns/{ns}"), source: e.into() }),
            };
        }
        let r = Restrictions {
            no_new_privs: status_field(&status, "NoNewPrivs")? == "1",
            seccomp: status_field(&status, "Seccomp")?
                .parse()
                .map_err(|_| RestrictionError::Parse { what: "Seccomp" })?,
            cap_bounding: status_mask(&status, "CapBnd")?,
            cap_ambient: status_mask(&status, "CapAmb")?,
            umask: u32::from_str_radix(status_field(&status, "Umask")?, 8)
                .map_err(|_| RestrictionError::Parse { what: "Umask" })?,
            rlimits: parse_limits(&read(pid, "limits")?)?,
            nice,
            oom_score_adj: read(pid, "oom_score_adj")?
                .trim()
                .parse()
                .map_err(|_| RestrictionError::Parse { what: "oom_score_adj" })?,
            ioprio: ioprio_of(pid)?,
            affinity: affinity_of(pid)?,
            personality: u32::from_str_radix(read(pid, "personality")?.trim(), 16)
                .map_err(|_| RestrictionError::Parse { what: "personality" })?,
            cgroups,
            namespaces,
        };
        if let Some(fd) = pidfd
            && crate::process::pidfd_kill(fd, 0).is_err()
        {
            return Err(RestrictionError::Gone);
        }
        Ok(r)
    }

    /// This process's own, as its children get them: `nofile` is the soft
    /// RLIMIT_NOFILE it had before raising it for the cache.
    pub fn own(nofile: Option<u64>) -> Result<Self, RestrictionError> {
        let mut r = Self::of(std::process::id() as i32, None)?;
        if let Some(soft) = nofile {
            r.rlimits[libc::RLIMIT_NOFILE as usize].0 = soft;
        }
        Ok(r)
    }

    /// How a child of a process with `ours` takes on these restrictions, or
    /// why it cannot.
    pub fn for_child(&self, ours: &Restrictions) -> Result<ChildRestrictions, RestrictionError> {
        if self.seccomp != 0 {
            return Err(RestrictionError::Seccomp);
        }
        for (i, ns) in NAMESPACES.iter().enumerate() {
            if self.namespaces[i] != ours.namespaces[i] {
                return Err(RestrictionError::Namespace(ns.trim_end_matches("_for_children")));
            }
        }
        if self.cap_ambient != 0 {
            return Err(RestrictionError::Ambient);
        }
        let mut cgroup_procs = Vec::new();
        for (controllers, path) in &self.cgroups {
            if ours.cgroups.iter().any(|(c, p)| c == controllers && p == path) {
                continue;
            }
            cgroup_procs.push(open_cgroup_procs(controllers, path)?);
        }
        let mut oom = [0u8; 16];
        let text = format!("{}\n", self.oom_score_adj);
        oom[..text.len()].copy_from_slice(text.as_bytes());
        Ok(ChildRestrictions {
            no_new_privs: self.no_new_privs,
            drop_caps: ours.cap_bounding & !self.cap_bounding,
            umask: self.umask,
            rlimits: self.rlimits,
            nice: self.nice,
            oom_score_adj: (self.oom_score_adj != ours.oom_score_adj).then_some((oom, text.len())),
            ioprio: self.ioprio,
            affinity: self.affinity,
            personality: self.personality,
            plain_exec: self.personality != ours.personality,
            cgroup_procs,
        })
    }
}

/// A pidfd of the process on the other end of a Unix socket (SO_PEERPIDFD,
/// Linux 6.5): it names the process that connected even if its pid is reused.
pub fn peer_pidfd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    const SO_PEERPIDFD: libc::c_int = 77;
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `fd`.
    let r = unsafe {
        libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, SO_PEERPIDFD, (&raw mut fd).cast(), &raw mut len)
    };
    if r < 0 || fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new pidfd that we now own.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

fn ioprio_of(pid: i32) -> Result<i32, RestrictionError> {
    const IOPRIO_WHO_PROCESS: i32 = 1;
    // SAFETY: ioprio_get takes two integers and touches no memory.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, pid) };
    if r < 0 {
        return Err(RestrictionError::Read { what: "I/O priority".into(), source: io::Error::last_os_error() });
    }
    Ok(r as i32)
}

fn affinity_of(pid: i32) -> Result<[u64; CPU_WORDS], RestrictionError> {
    let mut mask = [0u64; CPU_WORDS];
    // SAFETY: the kernel writes at most `size_of_val(&mask)` bytes into `mask`.
    let r = unsafe { libc::syscall(libc::SYS_sched_getaffinity, pid, std::mem::size_of_val(&mask), mask.as_mut_ptr()) };
    if r < 0 {
        return Err(RestrictionError::Read { what: "CPU affinity".into(), source: io::Error::last_os_error() });
    }
    Ok(mask)
}

/// `cgroup.procs` of the cgroup `path` in the hierarchy with `controllers`
/// (empty: the unified cgroup2 hierarchy), found through mountinfo.
fn open_cgroup_procs(controllers: &str, path: &str) -> Result<OwnedFd, RestrictionError> {
    let err = |source: io::Error| RestrictionError::Cgroup { path: format!("{controllers}:{path}"), source };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(err)?;
    let Some(mount) = crate::procfs::cgroup_mount(&mountinfo, controllers) else {
        return Err(err(io::Error::from_raw_os_error(libc::ENOENT)));
    };
    let dir = mount.dir(path).ok_or_else(|| err(io::Error::from_raw_os_error(libc::EINVAL)))?;
    rustix::fs::open(
        dir.join("cgroup.procs").as_path(),
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| err(e.into()))
}

/// The requester's restrictions in the form the pre-exec child applies
/// without allocating.
#[derive(Debug)]
pub struct ChildRestrictions {
    no_new_privs: bool,
    /// Capabilities to drop from the bounding set.
    drop_caps: u64,
    umask: u32,
    rlimits: [(u64, u64); RLIMITS],
    nice: i32,
    /// "N\n" and its length, when it differs from ours.
    oom_score_adj: Option<([u8; 16], usize)>,
    ioprio: i32,
    affinity: [u64; CPU_WORDS],
    personality: u32,
    /// The requester's personality is not ours: it decides how the kernel
    /// lays out and maps the program (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC),
    /// so only an exec of the program itself keeps it.
    plain_exec: bool,
    /// `cgroup.procs` of each cgroup to join (those that differ from ours).
    cgroup_procs: Vec<OwnedFd>,
}

impl ChildRestrictions {
    /// The soft RLIMIT_NOFILE the program gets.
    pub fn nofile(&self) -> u64 {
        self.rlimits[libc::RLIMIT_NOFILE as usize].0
    }

    /// Must the program be exec'd itself, instead of started from its image?
    pub fn needs_plain_exec(&self) -> bool {
        self.plain_exec
    }

    /// Apply everything that needs our privileges (before the credentials
    /// change). In the vfork child: no allocation. `Err((step, errno))`.
    pub(super) fn apply_privileged(&self) -> Result<(), (u32, i32)> {
        let fail = |step: u32| Err((step, crate::process::errno()));
        for fd in &self.cgroup_procs {
            // SAFETY: writing a static buffer to an fd we hold.
            if unsafe { libc::write(fd.as_fd().as_raw_fd(), b"0\n".as_ptr().cast(), 2) } < 0 {
                return fail(1);
            }
        }
        for (res, &(soft, hard)) in self.rlimits.iter().enumerate() {
            let lim = libc::rlimit64 { rlim_cur: soft, rlim_max: hard };
            // SAFETY: prlimit64 on ourselves with a valid struct.
            if unsafe { libc::syscall(libc::SYS_prlimit64, 0, res, &lim, std::ptr::null_mut::<libc::rlimit64>()) } < 0 {
                return fail(100 + res as u32);
            }
        }
        // SAFETY: setpriority, ioprio_set, sched_setaffinity and personality
        // on ourselves, with integer arguments or a valid mask.
        unsafe {
            if libc::setpriority(libc::PRIO_PROCESS, 0, self.nice) < 0 {
                return fail(2);
            }
            if libc::syscall(libc::SYS_ioprio_set, 1, 0, self.ioprio) < 0 {
                return fail(3);
            }
            let size = std::mem::size_of_val(&self.affinity);
            if libc::syscall(libc::SYS_sched_setaffinity, 0, size, self.affinity.as_ptr()) < 0 {
                return fail(4);
            }
            if libc::personality(self.personality as libc::c_ulong) < 0 {
                return fail(5);
            }
        }
        if let Some((text, len)) = &self.oom_score_adj {
            // SAFETY: open/write/close of a procfs file with valid buffers.
            unsafe {
                let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, text.as_ptr().cast(), *len) < 0 {
                    return fail(6);
                }
                libc::close(fd);
            }
        }
        for cap in 0..64 {
            if self.drop_caps & (1 << cap) != 0 {
                // SAFETY: prctl with integer arguments.
                if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
                    return fail(200 + cap);
                }
            }
        }
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(self.umask) };
        Ok(())
    }

    /// Apply what must come last (after the credentials change).
    pub(super) fn apply_last(&self) -> Result<(), (u32, i32)> {
        // SAFETY: prctl with integer arguments.
        if self.no_new_privs && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err((7, crate::process::errno()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_restrictions_read_and_compare_equal() {
        let a = Restrictions::own(None).expect("own");
        let b = Restrictions::of(std::process::id() as i32, None).expect("of self");
        assert_eq!(a, b);
        let child = a.for_child(&b).expect("same restrictions");
        assert_eq!(child.drop_caps, 0);
        assert!(child.cgroup_procs.is_empty());
        assert!(child.oom_score_adj.is_none());
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
        assert_eq!(a.rlimits[libc::RLIMIT_NOFILE as usize].0, soft);
    }

    #[test]
    fn limits_parse() {
        let text = std::fs::read_to_string("/proc/self/limits").expect("limits");
        let l = parse_limits(&text).expect("parse");
        let lim = rustix::process::getrlimit(rustix::process::Resource::Stack);
        assert_eq!(l[libc::RLIMIT_STACK as usize].0, lim.current.unwrap_or(u64::MAX));
    }

    #[test]
    fn seccomp_and_ambient_are_refused() {
        let ours = Restrictions::own(None).expect("own");
        let sandboxed = Restrictions { seccomp: 2, ..ours.clone() };
        assert!(matches!(sandboxed.for_child(&ours), Err(RestrictionError::Seccomp)));
        let ambient = Restrictions { cap_ambient: 1, ..ours.clone() };
        assert!(matches!(ambient.for_child(&ours), Err(RestrictionError::Ambient)));
        let mut other_ns = ours.clone();
        other_ns.namespaces[0] ^= 1;
        assert!(matches!(other_ns.for_child(&ours), Err(RestrictionError::Namespace("mnt"))));
    }
}
