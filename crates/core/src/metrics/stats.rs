//! What the daemon reports about itself (`zygote stats`, `--json`, the
//! OpenMetrics endpoint): kernel-neutral, serialised as is by both protocols.

use serde::{Deserialize, Serialize};

use crate::cache::CacheStats;

/// What `Stats` reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonStats {
    pub cache: CacheStats,
    /// Spawn requests served, failed.
    pub spawns: u64,
    pub spawn_errors: u64,
    /// Processes started by the daemon and not yet reaped.
    pub live_children: u64,
    /// Connections served so far, and open now.
    pub connections: u64,
    pub open_connections: u64,
    /// Images currently cached, then images evicted while processes started
    /// from them still run (`cached` false).
    pub images: Vec<ImageStats>,
    /// Pre-started launchers (boxed, like `memory`).
    #[serde(default)]
    pub launchers: Box<LauncherStats>,
    /// Latency of the spawns the daemon served: from the request's arrival to
    /// the stub's confirmation that the image is mapped.
    #[serde(default)]
    pub spawn_latency: LatencyStats,
    /// The images' mappings in all live processes, summed over `images`.
    /// (Boxed so that a `Response` stays small enough to be held inline.)
    #[serde(default)]
    pub memory: Box<MemoryUsage>,
    /// Bytes that sharing saves, summed over `images` (see [`MemoryUsage::saved`]).
    #[serde(default)]
    pub saved_bytes: u64,
    /// Image requests of caller-side clients (thin exec clients).
    #[serde(default)]
    pub image_requests: ImageRequestStats,
}

/// Image requests of caller-side clients, by answer, and the builds that
/// their misses started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRequestStats {
    /// Served: the client mapped the image and became the program.
    pub served: u64,
    /// Told to exec the file (set-ID, file capabilities, refused images, ...).
    pub exec: u64,
    /// Not cached: the client exec'd, a build started.
    pub misses: u64,
    /// Bad requests.
    pub errors: u64,
    /// Background builds started.
    pub builds: u64,
}

/// Pre-started launchers: stubs exec'd ahead of their spawn, each with a
/// recently spawned image mapped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LauncherStats {
    /// Waiting now (each holds two of the daemon's fds: its control socket
    /// and its pidfd).
    pub idle: u64,
    /// Most kept (`prestarted_launchers`).
    pub capacity: u64,
    /// Spawns served by one so far.
    pub spawns: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageStats {
    pub key: String,
    pub path: String,
    pub sealed_bytes: u64,
    pub regions: u64,
    /// In the cache now; false for an evicted image that live processes still map.
    #[serde(default)]
    pub cached: bool,
    /// Bytes of the sealed objects in memory (RAM or swap), measured: a page
    /// that no process has touched may be a hole.
    #[serde(default)]
    pub resident_bytes: u64,
    /// Live processes started from this image (every one is measured; at most
    /// [`MAX_PROCESS_STATS`] are listed in `processes`, and at most
    /// [`MAX_PROCESS_STATS_TOTAL`] over all images).
    #[serde(default)]
    pub live_processes: u64,
    /// The image's mappings (every region) in all its live processes.
    #[serde(default)]
    pub memory: MemoryUsage,
    /// The same, by where the pages come from.
    #[serde(default)]
    pub by_kind: KindUsage,
    /// `memory.rss - memory.pss`: what sharing saves (see [`MemoryUsage::saved`]).
    #[serde(default)]
    pub saved_bytes: u64,
    /// Per live process, by pid; at most [`MAX_PROCESS_STATS`].
    #[serde(default)]
    pub processes: Vec<ProcessStats>,
}

/// Most processes listed per image in [`ImageStats::processes`].
pub const MAX_PROCESS_STATS: usize = 256;
/// Most processes listed over all images of one [`DaemonStats`] (about 200
/// bytes of JSON each, well within `max_message_bytes`).
pub const MAX_PROCESS_STATS_TOTAL: usize = 4096;

/// Page accounting of mappings, from `/proc/PID/smaps`, in bytes.
///
/// For the pages of the mappings: `rss` counts every resident page once per
/// process; `pss` divides each page by the number of processes mapping it;
/// `shared_*` are pages other processes map too, `private_*` pages only this
/// process maps (a page written through a `MAP_PRIVATE` mapping is a private
/// copy, counted in `private_dirty` and `anonymous`). Pages of a memfd always
/// count as dirty, so judge sharing by `pss` and `private_*`, not by
/// `shared_clean`; and a memfd page that only one process maps (after
/// fault-around, say) is in its `private_dirty`, though the sealed object owns
/// it: `anonymous` counts only the process's own copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUsage {
    pub rss: u64,
    pub pss: u64,
    pub shared_clean: u64,
    pub shared_dirty: u64,
    pub private_clean: u64,
    pub private_dirty: u64,
    /// Anonymous pages: the process's own copies of written Sealed pages, and
    /// bss. Unlike `private_dirty`, never a memfd page that happens to be
    /// mapped by this process alone.
    pub anonymous: u64,
    pub swap: u64,
}

impl MemoryUsage {
    /// What sharing saves: `rss - pss`.
    ///
    /// Without sharing, each process would hold its own copy of every page it
    /// maps, i.e. its `rss`; what it is charged with sharing is its `pss`. The
    /// difference summed over processes is the memory the shared pages avoid.
    /// (Pss divides a page by every process mapping it, including processes
    /// not counted here, so a sum over some processes is a lower bound of
    /// what they save together.)
    pub fn saved(&self) -> u64 {
        self.rss.saturating_sub(self.pss)
    }

    pub fn add(&mut self, o: &MemoryUsage) {
        self.rss += o.rss;
        self.pss += o.pss;
        self.shared_clean += o.shared_clean;
        self.shared_dirty += o.shared_dirty;
        self.private_clean += o.private_clean;
        self.private_dirty += o.private_dirty;
        self.anonymous += o.anonymous;
        self.swap += o.swap;
    }
}

/// [`MemoryUsage`] split by region kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindUsage {
    /// File regions: text and rodata mapped from the program file.
    pub file: MemoryUsage,
    /// Sealed regions: relocated and writable pages, `MAP_PRIVATE` of the
    /// sealed objects (written pages become private copies).
    pub sealed: MemoryUsage,
    /// Zero regions: bss.
    pub zero: MemoryUsage,
}

/// One live process started from an image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStats {
    pub pid: i32,
    /// Milliseconds since the daemon started it.
    pub uptime_ms: u64,
    /// The image's mappings in this process.
    pub memory: MemoryUsage,
    /// `memory.rss - memory.pss`.
    pub saved_bytes: u64,
}

/// A latency histogram with log2 buckets in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Observations, including those above the last bucket.
    pub count: u64,
    /// Their sum, in microseconds.
    pub sum_us: u64,
    /// Bucket `i` counts the observations `t` with `le_us[i-1] < t <= le_us[i]`
    /// (not cumulative); `le_us` is 1, 2, 4, ... microseconds.
    pub buckets: Vec<LatencyBucket>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBucket {
    pub le_us: u64,
    pub count: u64,
}
