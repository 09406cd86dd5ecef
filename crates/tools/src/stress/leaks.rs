//! `zygote stress`'s leak check: snapshots of the daemon when quiet (its fds, memfds,
//! zombies and cached images) and the rules two snapshots must obey (docs/TOOLS.md).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zygote_linux::procfs;

use zygote_protocol::client::Client;
use zygote_protocol::message::DaemonStats;

use super::options::{SETTLE_LIMIT, StressError, io_err};
use super::report::Snapshot;
use super::worker::Program;

pub(super) fn stats(client: &mut Client) -> Result<DaemonStats, StressError> {
    crate::client::stats(client).map_err(|source| StressError::Client { what: "Stats".into(), source })
}

/// The daemon's fds: (count, memfds, `zygote:` memfds).
fn daemon_fds(pid: i32) -> Result<(usize, usize, usize), StressError> {
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let entries = fs::read_dir(&dir).map_err(io_err(format!("reading {} (the daemon's fds)", dir.display())))?;
    let (mut n, mut memfds, mut objects) = (0, 0, 0);
    for e in entries {
        let Ok(e) = e else { continue };
        // An fd closed between the listing and the readlink is not counted.
        let Ok(target) = fs::read_link(e.path()) else { continue };
        n += 1;
        let t = target.as_os_str().as_bytes();
        if let Some(at) = t.windows(6).position(|w| w == b"memfd:") {
            memfds += 1;
            if t[at + 6..].starts_with(b"zygote:") {
                objects += 1;
            }
        }
    }
    Ok((n, memfds, objects))
}

/// The daemon's VmRSS and VmHWM in bytes (0 when unreadable).
fn daemon_memory(pid: i32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key| {
        procfs::status_field(&status, key)
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    (kib("VmRSS"), kib("VmHWM"))
}

/// Pids of the daemon's children in state Z (from `/proc/*/stat`).
fn zombies_of(ppid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        if procfs::stat_state(&text) == Some('Z') && procfs::stat_field(&text, 4) == ppid as u64 {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// What the accounting knows about images: daemon key -> (fds, objects).
pub(super) type Costs = BTreeMap<String, (usize, usize)>;

fn snapshot(monitor: &mut Client, pid: i32, costs: &Costs) -> Result<Snapshot, StressError> {
    let s = stats(monitor)?;
    let zombies = zombies_of(pid);
    let (fds, memfds, image_memfds) = daemon_fds(pid)?;
    let (rss_bytes, peak_rss_bytes) = daemon_memory(pid);
    let mut snap = Snapshot {
        quiet: s.live_children == 0 && s.open_connections == 1 && zombies.is_empty(),
        idle_launchers: s.launchers.idle,
        fds,
        memfds,
        image_memfds,
        zombies,
        live_children: s.live_children,
        open_connections: s.open_connections,
        cache: s.cache,
        rss_bytes,
        peak_rss_bytes,
        ..Snapshot::default()
    };
    for img in &s.images {
        if !img.cached {
            snap.stale_images += 1;
            continue;
        }
        snap.cached_images += 1;
        match costs.get(&img.key) {
            Some(&(fds, objects)) => {
                snap.cached_image_fds += fds;
                snap.cached_image_objects += objects;
            }
            None => snap.unknown_images.push(format!("{} ({})", img.key, img.path)),
        }
    }
    Ok(snap)
}

/// A snapshot once the daemon is quiet and `accept` holds, or the last one after
/// [`SETTLE_LIMIT`].
pub(super) fn settled(
    monitor: &mut Client,
    pid: i32,
    costs: &Costs,
    mut accept: impl FnMut(&Snapshot) -> bool,
) -> Result<Snapshot, StressError> {
    let start = Instant::now();
    loop {
        let snap = snapshot(monitor, pid, costs)?;
        if (snap.quiet && accept(&snap)) || start.elapsed() > SETTLE_LIMIT {
            return Ok(snap);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The leak rules (docs/TOOLS.md, Leak check) on two snapshots; the problems found.
pub(super) fn leak_problems(base: &Snapshot, end: &Snapshot, storm_max: (u64, u64)) -> Vec<String> {
    let mut p = Vec::new();
    for (name, s) in [("baseline", base), ("final", end)] {
        if !s.quiet {
            p.push(format!(
                "{name}: the daemon never got quiet: {} live children, {} open connections (1 expected), zombies {:?}",
                s.live_children, s.open_connections, s.zombies
            ));
        }
        if s.cache.entries > s.cache.max_entries {
            p.push(format!("{name}: {} cached images, above the bound of {}", s.cache.entries, s.cache.max_entries));
        }
        if s.cache.bytes > s.cache.max_bytes {
            p.push(format!("{name}: {} cached bytes, above the bound of {}", s.cache.bytes, s.cache.max_bytes));
        }
        if s.stale_images > 0 {
            p.push(format!("{name}: {} evicted image(s) still held with no process running from them", s.stale_images));
        }
        if !s.unknown_images.is_empty() {
            p.push(format!(
                "{name}: cached images not from this run, their fds cannot be accounted: {:?}",
                s.unknown_images
            ));
        }
        if s.unknown_images.is_empty() && s.image_memfds != s.cached_image_objects {
            p.push(format!(
                "{name}: {} sealed-object memfds (`zygote:`) open, the {} cached images have {}",
                s.image_memfds, s.cached_images, s.cached_image_objects
            ));
        }
    }
    if !end.zombies.is_empty() {
        p.push(format!("zombie children of the daemon: {:?}", end.zombies));
    }
    let (fd_growth, allowed_fd) = growth(base, end);
    if fd_growth > allowed_fd {
        p.push(format!(
            "the daemon's fds grew by {fd_growth}; its cached images and idle launchers account for {allowed_fd}"
        ));
    }
    let (memfd_growth, allowed_memfd) = memfd_growth(base, end);
    if memfd_growth > allowed_memfd {
        p.push(format!("the daemon's memfds grew by {memfd_growth}; its cached images account for {allowed_memfd}"));
    }
    // Memory the storm left behind in the daemon (its heap: sealed objects
    // are memfds, outside its RSS): a bound, not an exact account.
    if end.rss_bytes > base.rss_bytes + RSS_GROWTH_BOUND {
        p.push(format!(
            "the daemon's resident memory grew from {} to {} bytes (bound: {RSS_GROWTH_BOUND} bytes of growth)",
            base.rss_bytes, end.rss_bytes
        ));
    }
    let max_entries = base.cache.max_entries.max(end.cache.max_entries);
    let max_bytes = base.cache.max_bytes.max(end.cache.max_bytes);
    if storm_max.0 > max_entries {
        p.push(format!("during the storm: {} cached images, above the bound of {max_entries}", storm_max.0));
    }
    if storm_max.1 > max_bytes {
        p.push(format!("during the storm: {} cached bytes, above the bound of {max_bytes}", storm_max.1));
    }
    p
}

/// How much the daemon's resident memory may grow over a storm.
pub(super) const RSS_GROWTH_BOUND: u64 = 128 << 20;

/// (fd growth, growth the cached images and idle launchers account for).
pub(super) fn growth(base: &Snapshot, end: &Snapshot) -> (i64, i64) {
    let held = |s: &Snapshot| s.cached_image_fds as i64 + 2 * s.idle_launchers as i64;
    (end.fds as i64 - base.fds as i64, held(end) - held(base))
}

pub(super) fn memfd_growth(base: &Snapshot, end: &Snapshot) -> (i64, i64) {
    (end.memfds as i64 - base.memfds as i64, end.cached_image_objects as i64 - base.cached_image_objects as i64)
}

/// Record the fd costs of the images behind the daemon keys a client saw.
pub(super) fn learn(costs: &mut Costs, programs: &[Program], keys: &BTreeMap<usize, String>) {
    for (&i, key) in keys {
        if let Some(p) = programs.get(i) {
            costs.entry(key.clone()).or_insert((p.image_fds, p.image_objects));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zygote_core::CacheStats;

    fn snap(fds: usize, memfds: usize, img_fds: usize, objects: usize) -> Snapshot {
        Snapshot {
            quiet: true,
            fds,
            memfds,
            image_memfds: objects,
            cached_images: 2,
            cached_image_fds: img_fds,
            cached_image_objects: objects,
            cache: CacheStats { entries: 2, max_entries: 2, bytes: 10, max_bytes: 100, ..Default::default() },
            ..Snapshot::default()
        }
    }

    #[test]
    fn leak_rules() {
        // The cached set changed to images with one more object: one more fd is fine.
        let base = snap(20, 5, 6, 4);
        assert!(leak_problems(&base, &snap(21, 6, 7, 5), (2, 10)).is_empty());
        // An fd the images do not account for.
        let p = leak_problems(&base, &snap(22, 6, 7, 5), (2, 10));
        assert!(p.iter().any(|m| m.contains("fds grew by 2")), "{p:?}");
        // A memfd that is no image's object.
        let mut end = snap(21, 6, 7, 4);
        end.image_memfds = 5;
        let p = leak_problems(&base, &end, (2, 10));
        assert!(p.iter().any(|m| m.contains("memfds grew by 1")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("sealed-object memfds")), "{p:?}");
        // Zombies, stale images, bounds.
        let mut end = snap(20, 5, 6, 4);
        end.zombies = vec![42];
        end.stale_images = 1;
        end.cache.bytes = 200;
        let p = leak_problems(&base, &end, (3, 10));
        for want in ["zombie", "evicted image", "cached bytes", "during the storm: 3 cached images"] {
            assert!(p.iter().any(|m| m.contains(want)), "{want:?} missing in {p:?}");
        }
    }
}
