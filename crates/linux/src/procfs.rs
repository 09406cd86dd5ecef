//! `/proc` text: the one parser of each file zygote reads there (status,
//! maps, stat, auxv, cgroup and mountinfo here; smaps in
//! `zygote_core::metrics::smaps`).

use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The value of field `key` (without its colon) in a `/proc/PID/status`
/// text, trimmed: the one parser of those lines.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(str::trim)
}

/// A hexadecimal `/proc/PID/status` field (signal and capability masks).
pub fn status_mask(status: &str, key: &str) -> Option<u64> {
    status_field(status, key).and_then(|v| u64::from_str_radix(v, 16).ok())
}

/// Does this process hold CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN in its
/// effective set (what PR_SET_MM_MAP needs to change `/proc/self/exe`)?
pub fn may_set_exe() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_CHECKPOINT_RESTORE: u32 = 40;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    let eff = status_mask(&status, "CapEff").unwrap_or(0);
    eff & (1 << CAP_SYS_ADMIN) != 0 || eff & (1 << CAP_CHECKPOINT_RESTORE) != 0
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub shared: bool,
    pub offset: u64,
    pub dev: (u64, u64),
    pub inode: u64,
    pub name: String,
}

/// The lines of a `/proc/PID/maps` text; a line that does not parse is skipped.
pub fn parse_maps(text: &str) -> Vec<Vma> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(6, ' ');
            let range = it.next()?;
            let perms = it.next()?.as_bytes();
            let offset = u64::from_str_radix(it.next()?, 16).ok()?;
            let dev = it.next()?;
            let inode = it.next()?.parse().ok()?;
            let name = it.next().unwrap_or("").trim_start().to_string();
            let (s, e) = range.split_once('-')?;
            let (maj, min) = dev.split_once(':')?;
            let mut prot = 0;
            if perms.first() == Some(&b'r') {
                prot |= zygote_plan::PROT_READ;
            }
            if perms.get(1) == Some(&b'w') {
                prot |= zygote_plan::PROT_WRITE;
            }
            if perms.get(2) == Some(&b'x') {
                prot |= zygote_plan::PROT_EXEC;
            }
            Some(Vma {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                prot,
                shared: perms.get(3) == Some(&b's'),
                offset,
                dev: (u64::from_str_radix(maj, 16).ok()?, u64::from_str_radix(min, 16).ok()?),
                inode,
                name,
            })
        })
        .collect()
}

/// Fields of /proc/PID/stat after the comm, 1-based as in proc(5).
pub fn stat_field(stat: &str, n: usize) -> u64 {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    // Field 3 (state) is the first after ")".
    rest.split_whitespace().nth(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The state letter of a `/proc/PID/stat` text (field 3: `R`, `S`, `Z`, ...).
pub fn stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

/// The (type, value) entries of a `/proc/PID/auxv` image, up to AT_NULL.
pub fn auxv_entries(auxv: &[u8]) -> impl Iterator<Item = (u64, u64)> + '_ {
    auxv.chunks_exact(16)
        .map(|c| {
            let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or_default());
            (word(&c[..8]), word(&c[8..]))
        })
        .take_while(|&(t, _)| t != 0)
}

/// The (controllers, path) entries of a `/proc/PID/cgroup` text, one per
/// hierarchy ("ID:CONTROLLERS:PATH"; the controllers are empty for cgroup2).
pub fn cgroups(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// A cgroup hierarchy's mount, from `/proc/PID/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// The cgroup shown at the mount point ("/" unless a sub-tree is mounted).
    pub root: String,
}

impl CgroupMount {
    /// The directory of the cgroup `path` (as `/proc/PID/cgroup` names it)
    /// under this mount; None for a path with `..` (outside our cgroup
    /// namespace) or outside the mounted sub-tree.
    pub fn dir(&self, path: &str) -> Option<PathBuf> {
        if path.split('/').any(|c| c == "..") {
            return None;
        }
        let rel = match self.root.as_str() {
            "/" => path,
            root => path.strip_prefix(root).filter(|r| r.is_empty() || r.starts_with('/'))?,
        };
        let rel = rel.trim_matches('/');
        Some(if rel.is_empty() { self.point.clone() } else { self.point.join(rel) })
    }
}

/// The mount of the cgroup hierarchy with `controllers` (comma-separated,
/// as in `/proc/PID/cgroup`; empty: the unified cgroup2 hierarchy) in a
/// `/proc/PID/mountinfo` text ("ID PARENT DEV ROOT POINT OPTS... - FSTYPE
/// SOURCE SUPEROPTS").
pub fn cgroup_mount(mountinfo: &str, controllers: &str) -> Option<CgroupMount> {
    let wanted: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut l = left.split_whitespace().skip(3);
        let (root, point) = (l.next()?, l.next()?);
        let mut r = right.split_whitespace();
        let (fstype, _src, opts) = (r.next()?, r.next()?, r.next().unwrap_or(""));
        let matches = match fstype {
            "cgroup2" => wanted.is_empty(),
            "cgroup" => !wanted.is_empty() && wanted.iter().all(|c| opts.split(',').any(|o| o == *c)),
            _ => false,
        };
        matches.then(|| CgroupMount { point: PathBuf::from(unescape(point)), root: unescape(root) })
    })
}

/// A mountinfo path field with its octal escapes (`\040` for a space, ...)
/// decoded.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Does process `pid` see the file system as we do: the same mount
/// namespace and the same root (the same mount, and its same directory)? A
/// path names the same file for it as for us only then. False when it
/// cannot be told.
///
/// `pidfd` (of the same process) names its namespace without a `/proc`
/// lookup where the kernel can. `root`, a directory fd the process passed
/// as its root, stands for `/proc/PID/root` when it is our root: a process
/// of our namespace holding our root can reach every path we can, so it
/// may be answered as if that were its root; otherwise `/proc` decides.
pub fn same_mounts(pid: i32, pidfd: Option<BorrowedFd<'_>>, root: Option<BorrowedFd<'_>>) -> bool {
    // (dev major, dev minor, ino, mount id) of a directory.
    type DirId = (u32, u32, u64, u64);
    let dir = |fd: BorrowedFd<'_>, path: &str| -> Option<DirId> {
        let flags = rustix::fs::AtFlags::EMPTY_PATH;
        rustix::fs::statx(fd, path, flags, rustix::fs::StatxFlags::INO | rustix::fs::StatxFlags::MNT_ID)
            .ok()
            .map(|st| (st.stx_dev_major, st.stx_dev_minor, st.stx_ino, st.stx_mnt_id))
    };
    let at = |path: &str| dir(rustix::fs::CWD, path);
    // Ours, read once: the daemon changes neither.
    static OURS: OnceLock<(Option<u64>, Option<DirId>)> = OnceLock::new();
    let (ns, own_root) =
        *OURS.get_or_init(|| (rustix::fs::stat("/proc/self/ns/mnt").ok().map(|st| st.st_ino), at("/")));
    let theirs_ns = match pidfd.map(crate::process::pidfd_mnt_ns) {
        Some(Ok(ino)) => Some(ino),
        _ => rustix::fs::stat(format!("/proc/{pid}/ns/mnt").as_str()).ok().map(|st| st.st_ino),
    };
    if own_root.is_none() || theirs_ns.is_none() || theirs_ns != ns {
        return false;
    }
    if root.and_then(|fd| dir(fd, "")) == own_root {
        return true;
    }
    at(&format!("/proc/{pid}/root")) == own_root
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn we_see_the_file_system_as_we_do() {
        let me = std::process::id() as i32;
        assert!(same_mounts(me, None, None));
        let pid = rustix::process::Pid::from_raw(me).expect("pid");
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd");
        let root = std::fs::File::open("/").expect("open /");
        let tmp = std::fs::File::open("/tmp").expect("open /tmp");
        // The pidfd names our namespace without /proc (this machine kind's
        // kernel, 6.11 or later, has the ioctl).
        let ns = rustix::fs::stat("/proc/self/ns/mnt").expect("ns").st_ino;
        assert_eq!(crate::process::pidfd_mnt_ns(pidfd.as_fd()).expect("PIDFD_GET_MNT_NAMESPACE"), ns);
        assert!(same_mounts(me, Some(pidfd.as_fd()), Some(root.as_fd())));
        // Another directory as the root: /proc decides (ours is /).
        assert!(same_mounts(me, Some(pidfd.as_fd()), Some(tmp.as_fd())));
        assert!(!same_mounts(i32::MAX, None, None), "no such process: cannot be told");
    }

    #[test]
    fn stat_state_and_fields_after_a_comm_with_parentheses() {
        let stat = "42 (a) b (c)) Z 7 42 42 0";
        assert_eq!(stat_state(stat), Some('Z'));
        assert_eq!(stat_field(stat, 4), 7, "the parent pid");
        assert_eq!(stat_state("garbage"), None);
    }

    #[test]
    fn auxv_entries_stop_at_at_null() {
        let mut raw = Vec::new();
        for (t, v) in [(16u64, 0xbfebfbffu64), (6, 4096), (0, 0), (99, 1)] {
            raw.extend_from_slice(&t.to_ne_bytes());
            raw.extend_from_slice(&v.to_ne_bytes());
        }
        raw.extend_from_slice(&[1, 2, 3]);
        assert_eq!(auxv_entries(&raw).collect::<Vec<_>>(), [(16, 0xbfebfbff), (6, 4096)]);
        let own = std::fs::read("/proc/self/auxv").expect("own auxv");
        assert!(auxv_entries(&own).any(|(t, v)| t == 6 && v == 4096), "AT_PAGESZ is 4096 here");
    }

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 33 0:35 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 33 0:36 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
42 33 0:37 /sub /sys/fs/cgroup/uni\\040fied rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn cgroup_lines() {
        let text = "9:name=systemd:/\n4:memory:/a/b\n0::/x:y\nbroken\n";
        assert_eq!(
            cgroups(text),
            [("name=systemd", "/"), ("memory", "/a/b"), ("", "/x:y")].map(|(c, p)| (c.to_string(), p.to_string()))
        );
    }

    #[test]
    fn cgroup_mounts_by_controllers() {
        let memory = cgroup_mount(MOUNTINFO, "memory").expect("memory");
        assert_eq!(memory.point, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(memory.dir("/a/b"), Some(PathBuf::from("/sys/fs/cgroup/memory/a/b")));
        assert_eq!(memory.dir("/"), Some(memory.point.clone()));
        assert_eq!(memory.dir("/a/../.."), None);
        let cpu = cgroup_mount(MOUNTINFO, "cpuacct,cpu").expect("cpu");
        assert_eq!(cpu.point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(cgroup_mount(MOUNTINFO, "pids"), None);
        let unified = cgroup_mount(MOUNTINFO, "").expect("cgroup2");
        assert_eq!(unified.point, PathBuf::from("/sys/fs/cgroup/uni fied"), "\\040 is a space");
        assert_eq!(unified.dir("/sub/c"), Some(PathBuf::from("/sys/fs/cgroup/uni fied/c")));
        assert_eq!(unified.dir("/sub"), Some(unified.point.clone()));
        assert_eq!(unified.dir("/other"), None, "outside the mounted sub-tree");
        assert_eq!(unified.dir("/subway"), None);
    }
}
