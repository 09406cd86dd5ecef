//! How much more memory this process's memory cgroup lets it use, so that an
//! image build that cannot fit fails with an error instead of the kernel's
//! OOM killer ending the daemon (and every image it caches).
//!
//! The cgroup comes from `/proc/self/cgroup` and `/proc/self/mountinfo`
//! (parsed in [`crate::procfs`]): the memory controller's v1 hierarchy when
//! there is one, else cgroup2. The cgroup and each ancestor with a limit
//! count; the tightest wins. A limit is `memory.max` (v2) or
//! `memory.limit_in_bytes` (v1), use is `memory.current` /
//! `memory.usage_in_bytes` less the inactive page cache (`memory.stat`),
//! which the kernel reclaims before it kills anything. No memory cgroup, no
//! limit, or files we cannot read: no check. Builds in flight reserve what
//! they will still allocate ([`reserve`]), so two builds do not both count
//! the same free bytes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::procfs;

/// Kept free for everything else the daemon does (connections, stacks,
/// spawns) while a build runs.
pub const MARGIN: u64 = 8 << 20;

/// A v1 limit at or above this is "no limit" (the kernel shows
/// `PAGE_COUNTER_MAX` pages as `LONG_MAX` rounded down to a page).
const V1_UNLIMITED: u64 = 0x7fff_ffff_ffff_f000;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The build would take more memory than the cgroup has left.
    #[error(
        "not enough memory for the build: it needs about {} more, the memory cgroup {} has {} free \
         (limit {}, {} kept for the daemon){}",
        mib(*needed), cgroup.display(), mib(*available), mib(*limit), mib(MARGIN),
        if *reserved > 0 { format!("; other builds in progress hold {}", mib(*reserved)) } else { String::new() }
    )]
    NoHeadroom { needed: u64, available: u64, limit: u64, reserved: u64, cgroup: PathBuf },
}

/// Bytes as MiB with one decimal, for messages.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// Which cgroup hierarchy holds the memory controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    fn limit_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        }
    }
    fn usage_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.usage_in_bytes",
            Version::V2 => "memory.current",
        }
    }
    /// The `memory.stat` key of the inactive page cache, this cgroup's and
    /// its descendants' (what the usage counts too).
    fn inactive_file_key(self) -> &'static str {
        match self {
            Version::V1 => "total_inactive_file",
            Version::V2 => "inactive_file",
        }
    }
}

/// A memory limit file's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Bytes(u64),
    /// `max` (v2), or a v1 value at its ceiling.
    Unlimited,
}

/// A memory limit file's value; None for text that is none.
pub fn parse_limit(text: &str) -> Option<Limit> {
    match text.trim() {
        "max" => Some(Limit::Unlimited),
        v => v.parse::<u64>().ok().map(|n| if n < V1_UNLIMITED { Limit::Bytes(n) } else { Limit::Unlimited }),
    }
}

/// A `memory.stat` value.
pub fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The memory controller's hierarchy and this process's cgroup in it, from
/// `/proc/self/cgroup`: a v1 hierarchy that lists `memory`, else cgroup2
/// ("0::PATH"). The controllers field names the hierarchy in mountinfo.
pub fn memory_cgroup(proc_cgroup: &[(String, String)]) -> Option<(Version, &str, &str)> {
    let v1 = proc_cgroup.iter().find(|(c, _)| c.split(',').any(|c| c == "memory"));
    match v1 {
        Some((controllers, path)) => Some((Version::V1, controllers, path)),
        None => proc_cgroup.iter().find(|(c, _)| c.is_empty()).map(|(c, p)| (Version::V2, c.as_str(), p.as_str())),
    }
}

/// One cgroup with a memory limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Level {
    pub dir: PathBuf,
    pub limit: u64,
    pub usage: u64,
    /// Inactive page cache within `usage`.
    pub inactive_file: u64,
}

impl Level {
    /// What may still be allocated under this limit.
    pub fn free(&self) -> u64 {
        self.limit.saturating_sub(self.usage.saturating_sub(self.inactive_file))
    }
}

/// The tightest of `levels`: the least free memory, and where.
pub fn tightest(levels: &[Level]) -> Option<&Level> {
    levels.iter().min_by_key(|l| l.free())
}

/// `dir` and its ancestors up to and including `top`, innermost first.
fn ancestors<'a>(dir: &'a Path, top: &'a Path) -> impl Iterator<Item = &'a Path> {
    dir.ancestors().take_while(move |d| d.starts_with(top))
}

/// The levels with a limit, reading `dir`, then each ancestor up to the
/// hierarchy's mount point `top`. A level whose files are missing or do not
/// parse (the root cgroup has no `memory.max`) has no limit we can use.
pub fn read_levels(version: Version, dir: &Path, top: &Path) -> Vec<Level> {
    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).ok();
    ancestors(dir, top)
        .filter_map(|d| {
            let Limit::Bytes(limit) = parse_limit(&read(d, version.limit_file())?)? else { return None };
            let usage = read(d, version.usage_file())?.trim().parse().ok()?;
            let inactive_file =
                read(d, "memory.stat").and_then(|s| stat_value(&s, version.inactive_file_key())).unwrap_or(0);
            Some(Level { dir: d.to_path_buf(), limit, usage, inactive_file })
        })
        .collect()
}

/// The tightest memory limit over this process's cgroup and its ancestors;
/// None when there is none (or nothing to read it from).
pub fn own_limit() -> Option<Level> {
    let cgroups = procfs::cgroups(&std::fs::read_to_string("/proc/self/cgroup").ok()?);
    let (version, controllers, path) = memory_cgroup(&cgroups)?;
    let mount = procfs::cgroup_mount(&std::fs::read_to_string("/proc/self/mountinfo").ok()?, controllers)?;
    let dir = mount.dir(path)?;
    tightest(&read_levels(version, &dir, &mount.point)).cloned()
}

/// Bytes reserved by builds in progress.
static RESERVED: Mutex<u64> = Mutex::new(0);

/// Memory a build in progress still expects to allocate; given back on drop.
#[derive(Debug)]
#[must_use = "the reservation ends when it is dropped"]
pub struct Reservation(u64);

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut r = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
        *r = r.saturating_sub(self.0);
    }
}

/// Reserve `needed` bytes for a build, or say why they do not fit in the
/// memory cgroup (with [`MARGIN`] to spare, after other builds'
/// reservations).
pub fn reserve(needed: u64) -> Result<Reservation, CgroupError> {
    let level = own_limit();
    let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = level {
        let available = l.free().saturating_sub(*reserved);
        if needed.saturating_add(MARGIN) > available {
            return Err(CgroupError::NoHeadroom {
                needed,
                available,
                limit: l.limit,
                reserved: *reserved,
                cgroup: l.dir,
            });
        }
    }
    *reserved = reserved.saturating_add(needed);
    Ok(Reservation(needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_v1_and_v2() {
        assert_eq!(parse_limit("max\n"), Some(Limit::Unlimited));
        assert_eq!(parse_limit("104857600\n"), Some(Limit::Bytes(100 << 20)));
        assert_eq!(parse_limit("9223372036854771712\n"), Some(Limit::Unlimited), "v1's no limit");
        assert_eq!(parse_limit(""), None);
        assert_eq!(parse_limit("-1"), None);
    }

    #[test]
    fn stat_values_by_exact_key() {
        let stat = "inactive_anon 5\nactive_file 7\ninactive_file 4096\ntotal_inactive_file 8192\n";
        assert_eq!(stat_value(stat, "inactive_file"), Some(4096));
        assert_eq!(stat_value(stat, "total_inactive_file"), Some(8192));
        assert_eq!(stat_value(stat, "file"), None);
    }

    fn entries(text: &str) -> Vec<(String, String)> {
        procfs::cgroups(text)
    }

    #[test]
    fn memory_hierarchy_v1_first_else_cgroup2() {
        let hybrid = entries("9:name=systemd:/\n4:memory:/process_api/x\n1:cpu:/\n0::/\n");
        assert_eq!(memory_cgroup(&hybrid), Some((Version::V1, "memory", "/process_api/x")));
        let joint = entries("5:memory,hugetlb:/a\n0::/b\n");
        assert_eq!(memory_cgroup(&joint), Some((Version::V1, "memory,hugetlb", "/a")));
        let unified = entries("0::/user.slice/u.service\n");
        assert_eq!(memory_cgroup(&unified), Some((Version::V2, "", "/user.slice/u.service")));
        assert_eq!(memory_cgroup(&entries("4:cpu:/\n")), None);
    }

    fn level(dir: &str, limit: u64, usage: u64, inactive_file: u64) -> Level {
        Level { dir: dir.into(), limit, usage, inactive_file }
    }

    #[test]
    fn the_tightest_level_counts_reclaimable_cache_as_free() {
        let inner = level("/cg/a/b", 100 << 20, 60 << 20, 30 << 20);
        assert_eq!(inner.free(), 70 << 20);
        let outer = level("/cg/a", 200 << 20, 150 << 20, 0);
        assert_eq!(tightest(&[inner.clone(), outer.clone()]), Some(&outer));
        let over = level("/cg", 10 << 20, 50 << 20, 0);
        assert_eq!(over.free(), 0, "over its limit: nothing free");
        assert_eq!(tightest(&[]), None);
    }

    #[test]
    fn levels_read_up_to_the_mount_point_and_skip_what_is_missing() {
        let top = std::env::temp_dir().join(format!("zygote-cgroup-test-{}", std::process::id()));
        let dir = top.join("a/b");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let write = |d: &Path, f: &str, v: &str| std::fs::write(d.join(f), v).expect("write");
        // b: a v2 limit; a: "max"; the top: no files at all (as the root).
        write(&dir, "memory.max", "104857600\n");
        write(&dir, "memory.current", "52428800\n");
        write(&dir, "memory.stat", "anon 1\ninactive_file 1048576\n");
        let a = top.join("a");
        write(&a, "memory.max", "max\n");
        write(&a, "memory.current", "1\n");
        let levels = read_levels(Version::V2, &dir, &top);
        assert_eq!(levels, [level(dir.to_str().expect("utf-8"), 100 << 20, 50 << 20, 1 << 20)]);
        assert_eq!(levels[0].free(), 51 << 20);
        // Without a usage file the level cannot be judged: skipped.
        std::fs::remove_file(dir.join("memory.current")).expect("rm");
        assert_eq!(read_levels(Version::V2, &dir, &top), []);
        assert_eq!(read_levels(Version::V1, &dir, &top), [], "no v1 files here");
        std::fs::remove_dir_all(&top).expect("clean up");
    }

    #[test]
    fn reservations_count_until_dropped() {
        let first = reserve(1 << 20).expect("no limit, or room for 1 MiB");
        assert!(*RESERVED.lock().expect("lock") >= 1 << 20);
        drop(first);
        let e = CgroupError::NoHeadroom {
            needed: 48 << 20,
            available: 30 << 20,
            limit: 100 << 20,
            reserved: 0,
            cgroup: "/sys/fs/cgroup/x".into(),
        };
        assert_eq!(
            e.to_string(),
            "not enough memory for the build: it needs about 48.0 MiB more, the memory cgroup /sys/fs/cgroup/x \
             has 30.0 MiB free (limit 100.0 MiB, 8.0 MiB kept for the daemon)"
        );
    }
}
