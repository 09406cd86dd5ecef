//! The daemon's live processes and the per-image report built from them.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::Image;
use crate::smaps;
use zygote_core::metrics::smaps::ImageLayout;
use zygote_core::metrics::stats::{ImageStats, MAX_PROCESS_STATS, MAX_PROCESS_STATS_TOTAL, ProcessStats};
use zygote_core::metrics::{KindUsage, MemoryUsage};

/// A process the daemon started and has not reaped.
#[derive(Clone, Debug)]
pub struct LiveProcess {
    pub pid: i32,
    /// The uid that asked for it (what a requester may see is scoped by it).
    pub uid: u32,
    /// Proves, after a read of its procfs files, that the pid was not reused.
    pub pidfd: Arc<OwnedFd>,
    /// The image it was started from (regions, sealed objects, key). This
    /// keeps an evicted image's fds open until its last process is reaped;
    /// its pages stay anyway, held by the processes' mappings.
    pub image: Arc<Image>,
    pub started: Instant,
}

/// Has the process of `pidfd` exited? (Its pidfd polls readable.)
pub fn exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [rustix::event::PollFd::new(pidfd, rustix::event::PollFlags::IN)];
    rustix::event::poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 })).is_ok_and(|n| n > 0)
}

/// Daemon-wide: pid -> live process. The spawner inserts, the reaper removes.
#[derive(Debug, Default)]
pub struct Registry {
    procs: Mutex<BTreeMap<i32, LiveProcess>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<i32, LiveProcess>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, p: LiveProcess) {
        self.lock().insert(p.pid, p);
    }

    pub fn remove(&self, pid: i32) -> Option<LiveProcess> {
        self.lock().remove(&pid)
    }

    /// Keep only the processes for which `keep` holds.
    pub fn retain(&self, mut keep: impl FnMut(&LiveProcess) -> bool) {
        self.lock().retain(|_, p| keep(p));
    }

    /// Drop the processes that have exited (their pidfd is readable).
    pub fn prune_exited(&self) {
        self.retain(|p| !exited(&p.pidfd));
    }

    /// The live processes now, by pid.
    pub fn snapshot(&self) -> Vec<LiveProcess> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Per-image statistics plus their sums.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub images: Vec<ImageStats>,
    pub memory: MemoryUsage,
    pub saved_bytes: u64,
}

/// Bytes the image's sealed objects hold in memory or swap: the memfds'
/// allocated blocks (`st_blocks`), which grow when a process faults in a page
/// that was a hole.
pub fn sealed_resident(image: &Image) -> u64 {
    image.objects().iter().filter_map(|o| rustix::fs::fstat(o.fd()).ok()).map(|st| st.st_blocks as u64 * 512).sum()
}

/// Statistics of one image and the live processes started from it, listing
/// at most `list` of them (all are measured and counted). Processes that exit
/// while they are measured are left out; a process whose smaps cannot be read
/// for another reason is left out and logged.
pub fn image_stats(image: &Image, cached: bool, procs: &[&LiveProcess], list: usize) -> ImageStats {
    let layout = ImageLayout::of(image);
    let mut memory = MemoryUsage::default();
    let mut by_kind = KindUsage::default();
    let mut processes = Vec::new();
    let mut live = 0u64;
    for p in procs {
        let usage = match smaps::measure(p.pid, Some(p.pidfd.as_fd()), &layout) {
            Ok(Some(u)) => u,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(pid = p.pid, "measuring a live process: {e}");
                continue;
            }
        };
        live += 1;
        memory.add(&usage.total);
        by_kind.file.add(&usage.by_kind.file);
        by_kind.sealed.add(&usage.by_kind.sealed);
        by_kind.zero.add(&usage.by_kind.zero);
        processes.push(ProcessStats {
            pid: p.pid,
            uptime_ms: u64::try_from(p.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            memory: usage.total,
            saved_bytes: usage.total.saved(),
        });
    }
    processes.sort_unstable_by_key(|p| p.pid);
    processes.truncate(list);
    ImageStats {
        key: image.key().to_string(),
        path: String::from_utf8_lossy(image.path().as_os_str().as_bytes()).into_owned(),
        sealed_bytes: image.sealed_bytes(),
        regions: image.regions().len() as u64,
        cached,
        resident_bytes: sealed_resident(image),
        live_processes: live,
        memory,
        by_kind,
        saved_bytes: memory.saved(),
        processes,
    }
}

/// The report: `cached` images (in their order), then images no longer cached
/// that `live` processes still map. Processes are grouped by the image object
/// they were started from, not only by key (a rebuilt image may have another
/// layout). Each image lists at most [`MAX_PROCESS_STATS`] processes, and all
/// together at most [`MAX_PROCESS_STATS_TOTAL`], so that the reply fits in a
/// message; every process is counted in the totals.
pub fn report(cached: &[Arc<Image>], live: &[LiveProcess]) -> Report {
    let mut groups: Vec<(&Arc<Image>, bool, Vec<&LiveProcess>)> =
        cached.iter().map(|i| (i, true, Vec::new())).collect();
    for p in live {
        match groups.iter_mut().find(|g| Arc::ptr_eq(g.0, &p.image)) {
            Some(g) => g.2.push(p),
            None => groups.push((&p.image, false, vec![p])),
        }
    }
    let mut r = Report::default();
    let mut budget = MAX_PROCESS_STATS_TOTAL;
    for (image, cached, procs) in groups {
        let s = image_stats(image, cached, &procs, budget.min(MAX_PROCESS_STATS));
        budget -= s.processes.len();
        r.memory.add(&s.memory);
        r.saved_bytes += s.saved_bytes;
        r.images.push(s);
    }
    r
}
