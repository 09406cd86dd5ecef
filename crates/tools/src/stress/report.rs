//! `zygote stress`'s report: rounds, latency, cache activity and the leak check, as the
//! `--json` output and as a table.

use std::io::{self, Write};

use serde::Serialize;

use zygote_core::CacheStats;
use zygote_core::metrics::human_bytes;

use crate::report::Latency;

/// One program of the run.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramReport {
    /// The entry as given.
    pub program: String,
    /// The ELF file the daemon started (after PATH and `#!`).
    pub path: String,
    pub expected_stdout_bytes: usize,
    /// The daemon's key for its image (from `Spawned`), once seen.
    pub key: Option<String>,
    /// Fds an image of it holds: sealed objects plus mapped files.
    pub image_fds: usize,
    pub image_objects: usize,
    /// Storm and warm-up rounds of this program, and how many failed.
    pub rounds: usize,
    pub failures: usize,
}

/// The daemon at a quiet moment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// Whether it got quiet (no live children, only the monitor connected, no zombies).
    pub quiet: bool,
    pub fds: usize,
    pub memfds: usize,
    /// Memfds named `zygote:...`: sealed image objects.
    pub image_memfds: usize,
    pub cached_images: usize,
    /// Objects + files of the cached images (`img(S)`).
    pub cached_image_fds: usize,
    /// Objects of the cached images (`obj(S)`).
    pub cached_image_objects: usize,
    /// Idle pre-started launchers; each holds two of the daemon's fds (its
    /// control socket and pidfd).
    pub idle_launchers: u64,
    /// Cached images that are none of this run's programs.
    pub unknown_images: Vec<String>,
    /// Images listed with `cached: false`.
    pub stale_images: usize,
    pub zombies: Vec<i32>,
    pub live_children: u64,
    pub open_connections: u64,
    pub cache: CacheStats,
    /// The daemon's resident memory (VmRSS) and its peak (VmHWM), bytes.
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

/// The leak check (docs/TOOLS.md).
#[derive(Clone, Debug, Default, Serialize)]
pub struct LeakReport {
    pub baseline: Snapshot,
    #[serde(rename = "final")]
    pub after: Snapshot,
    pub fd_growth: i64,
    pub allowed_fd_growth: i64,
    pub memfd_growth: i64,
    pub allowed_memfd_growth: i64,
    /// Largest cache entries and bytes `Stats` showed during the storm.
    pub storm_max_entries: u64,
    pub storm_max_bytes: u64,
    pub storm_stats_samples: usize,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// Cache counters over the storm.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheActivity {
    pub max_entries: u64,
    pub max_bytes: u64,
    /// More distinct images than entries: the storm evicts and rebuilds.
    pub churn: bool,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub builds: u64,
}

/// Everything one `zygote stress` run found. Serialises to the `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct StressReport {
    pub socket: String,
    pub private_daemon: bool,
    pub daemon_pid: i32,
    pub clients: usize,
    pub spawns_per_client: usize,
    pub programs: Vec<ProgramReport>,
    pub warmup_rounds: usize,
    pub warmup_failures: usize,
    /// Storm rounds (C x N), those that passed, and failures of the whole run (warm-up
    /// included).
    pub rounds: usize,
    pub ok: usize,
    pub failures: usize,
    /// The first failures, described.
    pub failure_samples: Vec<String>,
    pub wall_seconds: f64,
    /// Rounds that passed per second of storm.
    pub throughput_per_sec: f64,
    /// `Spawn` sent to `Exited` received.
    pub latency: Latency,
    /// `Spawn` sent to `Spawned` received.
    pub spawn_latency: Latency,
    pub cache: CacheActivity,
    pub leaks: LeakReport,
    /// How the private daemon ended once told to stop.
    pub daemon_exit: Option<String>,
    pub passed: bool,
}

impl StressReport {
    /// The human-readable report.
    pub fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let who = if self.private_daemon { "private daemon" } else { "daemon" };
        writeln!(
            w,
            "zygote stress: {} clients x {} spawns, {} programs, {who} pid {} ({})",
            self.clients,
            self.spawns_per_client,
            self.programs.len(),
            self.daemon_pid,
            self.socket
        )?;
        let c = &self.cache;
        writeln!(
            w,
            "  cache: {} entries max{}; {} hits, {} misses, {} evictions, {} builds during the storm",
            c.max_entries,
            if c.churn { " (churning)" } else { " (no churn: at least as many entries as images)" },
            c.hits,
            c.misses,
            c.evictions,
            c.builds
        )?;
        writeln!(
            w,
            "  rounds: {} of {} passed, plus {} warm-up; {} failed in all",
            self.ok, self.rounds, self.warmup_rounds, self.failures
        )?;
        writeln!(w, "  throughput: {:.0} spawns/s over {:.2} s", self.throughput_per_sec, self.wall_seconds)?;
        let l = &self.latency;
        writeln!(
            w,
            "  latency (spawn+wait): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs; spawn call p50 {:.0} µs",
            l.p50_us, l.p99_us, l.max_us, self.spawn_latency.p50_us
        )?;
        for p in &self.programs {
            writeln!(
                w,
                "    {:<40} {:>6} rounds {:>4} failed  {} fds/image",
                p.program, p.rounds, p.failures, p.image_fds
            )?;
        }
        let k = &self.leaks;
        writeln!(
            w,
            "  daemon fds: {} -> {} (growth {}, cached images and idle launchers account for {}); memfds {} -> {} (growth {}, allowed {})",
            k.baseline.fds,
            k.after.fds,
            k.fd_growth,
            k.allowed_fd_growth,
            k.baseline.memfds,
            k.after.memfds,
            k.memfd_growth,
            k.allowed_memfd_growth
        )?;
        writeln!(
            w,
            "  daemon memory: rss {} -> {} (peak {})",
            human_bytes(k.baseline.rss_bytes),
            human_bytes(k.after.rss_bytes),
            human_bytes(k.after.peak_rss_bytes)
        )?;
        writeln!(
            w,
            "  zombies: {} -> {}; cache {} / {} entries, {} / {} bytes (storm max {} entries, {} bytes)",
            k.baseline.zombies.len(),
            k.after.zombies.len(),
            k.after.cache.entries,
            k.after.cache.max_entries,
            k.after.cache.bytes,
            k.after.cache.max_bytes,
            k.storm_max_entries,
            k.storm_max_bytes
        )?;
        if let Some(e) = &self.daemon_exit {
            writeln!(w, "  private daemon: {e}")?;
        }
        for p in &k.problems {
            writeln!(w, "  LEAK: {p}")?;
        }
        for f in &self.failure_samples {
            writeln!(w, "  FAILED: {f}")?;
        }
        writeln!(w, "  {}", if self.passed { "PASSED" } else { "FAILED" })?;
        Ok(())
    }
}
