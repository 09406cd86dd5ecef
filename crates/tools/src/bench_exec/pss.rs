//! The compilers' Pss during a build: a thread that, every interval, walks
//! the process tree below the roots (make, and for the daemon-side method
//! the daemon) through `/proc/PID/task/TID/children`, and sums the Pss
//! (`/proc/PID/smaps_rollup`) of every process whose `/proc/PID/exe` is one
//! of the compiler's files (or the thin client, before it becomes the
//! compiler).

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::report::PssSummary;

/// One sample: the summed Pss (bytes) and how many processes it covers.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    pss: u64,
    processes: u32,
}

pub(super) struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Sample>>>,
    interval: Duration,
}

impl Sampler {
    /// Start sampling (no thread when `interval` is zero).
    pub(super) fn start(roots: Vec<i32>, exes: Vec<PathBuf>, interval: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = (!interval.is_zero()).then(|| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || sample_loop(&roots, &exes, interval, &stop))
        });
        Sampler { stop, handle, interval }
    }

    /// Stop and summarise (None without sampling).
    pub(super) fn finish(mut self) -> Option<PssSummary> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.handle.take()?.join().ok()?;
        Some(summarise(&samples, self.interval))
    }
}

fn sample_loop(roots: &[i32], exes: &[PathBuf], interval: Duration, stop: &AtomicBool) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        samples.push(sample(roots, exes));
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    samples
}

/// Sum the Pss of the matching processes below `roots`.
fn sample(roots: &[i32], exes: &[PathBuf]) -> Sample {
    let mut s = Sample::default();
    let mut stack: Vec<i32> = roots.to_vec();
    let mut seen = 0usize;
    while let Some(pid) = stack.pop() {
        for child in children(pid) {
            seen += 1;
            if seen > 100_000 {
                return s;
            }
            stack.push(child);
            let Ok(exe) = fs::read_link(format!("/proc/{child}/exe")) else { continue };
            if exes.contains(&exe)
                && let Some(pss) = pss_of(child)
            {
                s.pss += pss;
                s.processes += 1;
            }
        }
    }
    s
}

/// The children of every thread of `pid`.
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out = Vec::new();
    for t in tasks.flatten() {
        let Ok(text) = fs::read_to_string(t.path().join("children")) else { continue };
        out.extend(text.split_whitespace().filter_map(|w| w.parse::<i32>().ok()));
    }
    out
}

/// `Pss:` of `/proc/PID/smaps_rollup`, in bytes.
fn pss_of(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn summarise(samples: &[Sample], interval: Duration) -> PssSummary {
    let n = samples.len().max(1) as f64;
    let busy: Vec<&Sample> = samples.iter().filter(|s| s.processes > 0).collect();
    let total: u64 = samples.iter().map(|s| s.pss).sum();
    let per_process: f64 =
        busy.iter().map(|s| s.pss as f64 / s.processes as f64).sum::<f64>() / busy.len().max(1) as f64;
    PssSummary {
        interval_ms: interval.as_secs_f64() * 1e3,
        samples: samples.len(),
        samples_with_compilers: busy.len(),
        peak_sum_bytes: samples.iter().map(|s| s.pss).max().unwrap_or(0),
        mean_sum_bytes: total as f64 / n,
        mean_per_process_bytes: per_process,
        peak_processes: samples.iter().map(|s| s.processes).max().unwrap_or(0),
        integral_mib_s: total as f64 * interval.as_secs_f64() / (1024.0 * 1024.0),
    }
}
