//! Shared-page metrics: what the images' mappings cost in the processes that
//! run them, and what sharing saves.
//!
//! ```text
//! Registry (pid -> image, pidfd, start)        live processes (in the backend)
//!    └─ report ─ measure (backend) ─ smaps::parse ─ ImageLayout::account
//!          -> ImageStats { memory, by_kind, saved_bytes, processes, resident_bytes }
//! LatencyHistogram                              spawn latency, log2 buckets in µs
//! openmetrics::render(DaemonStats)              `zygote stats --prometheus`, GET /metrics
//! ```
//!
//! Accounting: for each live process, the `/proc/PID/smaps` entries that
//! overlap one of the image's regions (addresses include the load bias) are
//! summed: Rss, Pss, Shared_Clean, Shared_Dirty, Private_Clean, Private_Dirty,
//! Anonymous, Swap, kB converted to bytes. An entry is counted whole, and classified by
//! the first region it overlaps (the stub maps each region on its own, and
//! mappings of different files or anonymous memory never merge, so an entry
//! lies inside one region in practice). Memfd pages always count as dirty in
//! smaps; judge sharing by Pss and Private_*. A memfd page mapped by one
//! process only (read fault-around maps up to 16 neighbouring pages) is in
//! that process's Private_Dirty although the sealed object owns it; the
//! process's own copies of written pages, and bss, are its Anonymous pages.
//!
//! "Bytes saved" is `Σ (Rss_i - Pss_i)` over the processes `i` and the image's
//! mappings: what the processes would hold if each had a private copy of every
//! page it maps (`Σ Rss_i`), minus what they are charged with sharing
//! (`Σ Pss_i`). See [`MemoryUsage::saved`].
//!
//! A process that exits while it is measured (ENOENT or ESRCH from procfs, or
//! its pidfd readable once the read is done) is skipped, not an error; the
//! pidfd check also guards against a reused pid.

pub mod histogram;
pub mod openmetrics;
pub mod smaps;
pub mod stats;

pub use histogram::LatencyHistogram;
pub use smaps::{ImageLayout, Mapping, ProcessUsage};
pub use stats::{KindUsage, MemoryUsage};

/// Bytes as a person reads them: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
