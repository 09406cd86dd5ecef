//! Protocol messages: the Linux form of `fidl/fuchsia.process.zygote.fidl`.
//!
//! Every request has a method name that matches one FIDL method of protocol
//! `Spawner` (see [`Request::METHODS`]); a test checks the two lists against
//! each other. Byte strings (argv, environ) travel as arrays of bytes so that
//! non-UTF-8 arguments survive.

use serde::{Deserialize, Serialize};

use crate::cache::CacheStats;

/// Protocol version exchanged in the handshake.
pub const PROTOCOL_VERSION: u32 = 1;

/// The first frame on a connection, from the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
}

/// The server's answer to [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub version: u32,
    /// The server's limits, so a client can refuse early.
    pub limits: Limits,
}

/// Explicit protocol limits; exceeding one gets its own error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest frame body in bytes.
    pub max_message_bytes: u32,
    /// Most fds attached to one frame.
    pub max_fds: u32,
    /// Most bytes of argv plus environ (strings and their NULs), as ARG_MAX.
    pub max_args_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        // Byte strings travel as JSON arrays of numbers (up to 4 bytes per
        // byte), so a frame must hold 4x max_args_bytes plus the rest.
        Limits { max_message_bytes: 16 << 20, max_fds: 64, max_args_bytes: 2 << 20 }
    }
}

/// Requests. Fds travel with the frame (SCM_RIGHTS), in the order each
/// request documents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Request {
    /// Start a process. Fds: the executable (opened by the client, proving
    /// read access), then one fd per entry of `fds`, in order.
    Spawn(SpawnArgs),
    /// Prepare an executable into the cache. Fds: the executable.
    Preload { name: String },
    /// Drop cache entries: by content hash (hex), or by executable (fd
    /// attached, `key` empty).
    Evict { key: String },
    /// Cache and daemon statistics.
    Stats,
    /// Wait for a process this connection spawned; answered with `Exited`.
    Wait { pid: i32 },
}

impl Request {
    /// Method names, as in the FIDL protocol.
    pub const METHODS: [&'static str; 5] = ["Spawn", "Preload", "Evict", "Stats", "Wait"];

    pub fn method(&self) -> &'static str {
        match self {
            Request::Spawn(_) => "Spawn",
            Request::Preload { .. } => "Preload",
            Request::Evict { .. } => "Evict",
            Request::Stats => "Stats",
            Request::Wait { .. } => "Wait",
        }
    }

    /// How many fds must come with this request (Spawn: 1 + its fd list).
    pub fn expected_fds(&self) -> std::ops::RangeInclusive<usize> {
        match self {
            Request::Spawn(a) => 1 + a.fds.len()..=1 + a.fds.len(),
            Request::Preload { .. } => 1..=1,
            Request::Evict { key } if key.is_empty() => 1..=1,
            _ => 0..=0,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnArgs {
    /// Full argv, argv[0] included (after `#!` rewriting by the client).
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries.
    pub environ: Vec<Vec<u8>>,
    /// Process name (comm); empty: the executable's file name.
    pub name: Vec<u8>,
    /// Working directory (absolute); empty: the daemon's.
    pub cwd: Vec<u8>,
    /// Child fd number of each attached fd after the executable.
    pub fds: Vec<i32>,
    /// The path the client resolved, for messages and the process name.
    pub path: Vec<u8>,
    /// The process outlives the connection (`zygote spawn --no-wait`).
    /// Otherwise it is killed (SIGKILL) when the client disconnects before it
    /// ends, so a crashed client leaves nothing behind.
    pub detach: bool,
}

impl SpawnArgs {
    /// Bytes argv and environ take on the new stack (strings plus NULs).
    pub fn args_bytes(&self) -> usize {
        self.argv.iter().chain(&self.environ).map(|s| s.len() + 1).sum()
    }
}

/// Error codes, as the FIDL `SpawnError` enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The frame could not be decoded.
    BadRequest,
    /// Protocol version mismatch.
    BadVersion,
    /// A frame body above `max_message_bytes`.
    MessageTooLarge,
    /// More fds than `max_fds`, or not the number the request needs.
    TooManyFds,
    /// argv plus environ above `max_args_bytes`.
    ArgsTooLarge,
    /// The peer's uid is not allowed.
    PeerRefused,
    /// The peer may not execute the file.
    PermissionDenied,
    /// Not an executable this zygote supports (bad or unsupported ELF).
    BadExecutable,
    /// No such process (Wait) or cache key (Evict).
    NotFound,
    /// The daemon failed (memfd, clone, ...).
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadRequest,
        ErrorCode::BadVersion,
        ErrorCode::MessageTooLarge,
        ErrorCode::TooManyFds,
        ErrorCode::ArgsTooLarge,
        ErrorCode::PeerRefused,
        ErrorCode::PermissionDenied,
        ErrorCode::BadExecutable,
        ErrorCode::NotFound,
        ErrorCode::Internal,
    ];

    /// The FIDL enum member name.
    pub fn fidl_name(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::BadVersion => "BAD_VERSION",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::TooManyFds => "TOO_MANY_HANDLES",
            ErrorCode::ArgsTooLarge => "ARGS_TOO_LARGE",
            ErrorCode::PeerRefused => "PEER_REFUSED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::BadExecutable => "BAD_EXECUTABLE",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The exit status a client command gives for this error.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::NotFound => 127,
            ErrorCode::PermissionDenied | ErrorCode::BadExecutable => 126,
            _ => 125,
        }
    }
}

/// Responses and events from the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// Answer to Spawn; a pidfd for the process is attached.
    Spawned {
        pid: i32,
        key: String,
    },
    /// Answer to Preload.
    Preloaded {
        key: String,
        sealed_bytes: u64,
    },
    /// Answer to Evict.
    Evicted {
        count: u64,
    },
    /// Answer to Stats.
    Stats(DaemonStats),
    /// Answer to Wait: how the process ended (`code`, or `signal`).
    Exited {
        pid: i32,
        code: Option<i32>,
        signal: Option<i32>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// What `Stats` reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonStats {
    pub cache: CacheStatsWire,
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

/// `CacheStats` on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStatsWire {
    pub entries: u64,
    pub bytes: u64,
    pub max_entries: u64,
    pub max_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub builds: u64,
    pub build_nanos: u64,
}

impl From<CacheStats> for CacheStatsWire {
    fn from(s: CacheStats) -> Self {
        CacheStatsWire {
            entries: s.entries as u64,
            bytes: s.bytes,
            max_entries: s.max_entries as u64,
            max_bytes: s.max_bytes,
            hits: s.hits,
            misses: s.misses,
            evictions: s.evictions,
            builds: s.builds,
            build_nanos: s.build_nanos,
        }
    }
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
