//! `zygote experiment`: what N long-lived instances of a program cost in memory (Pss,
//! USS) when started by plain exec, against N started from the zygote's image; a
//! report directory with JSON and charts. The manual: docs/TOOLS.md.

mod chart;
mod instances;
mod interrupt;
mod options;
mod progress;
mod report;
mod usage;

use std::fs;
use std::time::Instant;

use zygote_core::CacheConfig;
use zygote_linux::Zygote;

pub use self::options::{
    DEFAULT_FONT, DEFAULT_OUT_DIR, DEFAULT_READY_TIMEOUT_SECS, DEFAULT_SETTLE_MS, DEFAULT_STEP, ExperimentError,
    ExperimentOptions,
};
pub use self::report::{ExperimentReport, ImageInfo, InstanceUsage, Readiness, ReportFiles, SummaryRow, UsageSample};
pub use self::usage::{Usage, parse_rollup};
pub use crate::report::Method;
pub use zygote_core::metrics::human_bytes;

use self::instances::{InstanceSet, Launch};
use self::interrupt::check_interrupt;
use self::options::{OUTPUT_TAIL, TICK};
use self::progress::Progress;

/// Both methods, in the order they run.
pub const METHODS: [Method; 2] = [Method::Exec, Method::Zygote];

/// The counts measured: 1, K, 2K, ... below N, then N.
pub fn schedule(instances: usize, step: usize) -> Vec<usize> {
    let mut counts = vec![1];
    let mut c = step.max(1);
    while c < instances {
        counts.push(c);
        c += step.max(1);
    }
    counts.push(instances);
    counts.dedup();
    counts.retain(|&c| c >= 1 && c <= instances);
    counts
}

/// Let this process hold two fds per instance (a pidfd, and a pipe with `--ready-line`):
/// raise the soft NOFILE limit, up to the hard one, only if it is too low (the instances
/// inherit it, by both methods). Failure only means a lower ceiling.
fn raise_fd_limit(instances: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let need = (instances as u64).saturating_mul(2).saturating_add(256);
    let lim = getrlimit(Resource::Nofile);
    if lim.current.is_some_and(|c| c < need) {
        let current = lim.maximum.map_or(need, |m| m.min(need));
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(current), maximum: lim.maximum });
    }
}

/// The counts must be at least 1.
fn check(opts: &ExperimentOptions) -> Result<(), ExperimentError> {
    if opts.instances == 0 {
        return Err(ExperimentError::Usage("--instances must be at least 1".into()));
    }
    if opts.step == 0 {
        return Err(ExperimentError::Usage("--step must be at least 1".into()));
    }
    Ok(())
}

/// Every step of every method, one method after the other: the samples, in order.
fn measure_all(launch: &Launch<'_>, counts: &[usize]) -> Result<Vec<UsageSample>, ExperimentError> {
    let opts = launch.opts;
    let mut progress = Progress::new(opts.instances * METHODS.len());
    let mut samples = Vec::with_capacity(counts.len() * METHODS.len());
    for method in METHODS {
        let mut set = InstanceSet::new(method);
        progress.phase(method, opts.instances, opts.step);
        for &count in counts {
            let from = set.len();
            while set.len() < count {
                check_interrupt()?;
                let instance = launch.start(method, set.len() + 1).map_err(|e| match interrupt::pending() {
                    Some(signal) => ExperimentError::Interrupted { signal },
                    None => e,
                })?;
                set.instances.push(instance);
                progress.started(method, set.len(), opts.instances);
            }
            set.wait_ready(from, &launch.label, opts)?;
            let sample = set.measure(&launch.label)?;
            progress.sample(&sample, opts.instances);
            samples.push(sample);
        }
        set.stop()?;
    }
    progress.finish();
    Ok(samples)
}

/// Run the experiment, write the report directory, and return the report.
pub fn run(opts: &ExperimentOptions) -> Result<ExperimentReport, ExperimentError> {
    check(opts)?;
    let wall = Instant::now();
    interrupt::install().map_err(|source| ExperimentError::Signals { source })?;
    raise_fd_limit(opts.instances);
    let label = opts.program.to_string_lossy().into_owned();
    let path = crate::launch::resolve_program(&opts.program)
        .map_err(|source| ExperimentError::Resolve { program: label.clone(), source })?;
    // Fail on a missing font or an unwritable directory before starting anything.
    chart::register_font(&opts.font)?;
    fs::create_dir_all(&opts.out).map_err(|source| ExperimentError::Io {
        path: opts.out.clone(),
        what: "creating the report directory",
        source,
    })?;
    let null = zygote_linux::dev_null().map_err(|source| ExperimentError::Io {
        path: "/dev/null".into(),
        what: "open",
        source,
    })?;

    let zygote = Zygote::new(CacheConfig::default())
        .map_err(|e| ExperimentError::Prepare { program: label.clone(), source: Box::new(e) })?;
    let build_start = Instant::now();
    let image =
        zygote.prepare(&path).map_err(|e| ExperimentError::Prepare { program: label.clone(), source: Box::new(e) })?;
    let build_us = build_start.elapsed().as_secs_f64() * 1e6;

    let counts = schedule(opts.instances, opts.step);
    let launch = Launch { label: label.clone(), path: path.clone(), opts, zygote: &zygote, null };
    let samples = measure_all(&launch, &counts)?;

    let image = ImageInfo {
        key: image.key().to_string(),
        kind: format!("{:?}", image.kind()),
        sealed_bytes: image.sealed_bytes(),
        sealed_resident_bytes: image.objects().iter().map(|o| o.resident()).sum(),
        build_us,
        fallback: image.fallback().map(str::to_string),
    };
    let report = ExperimentReport::new(opts, path, counts, samples, image, wall);
    report::write_report(&report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_counts() {
        assert_eq!(schedule(4, 2), vec![1, 2, 4]);
        assert_eq!(schedule(50, 10), vec![1, 10, 20, 30, 40, 50]);
        assert_eq!(schedule(5, 2), vec![1, 2, 4, 5]);
        assert_eq!(schedule(3, 1), vec![1, 2, 3]);
        assert_eq!(schedule(1, 10), vec![1]);
        assert_eq!(schedule(7, 10), vec![1, 7]);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(ExperimentError::Interrupted { signal: libc::SIGINT }.exit_code(), 130);
        assert_eq!(ExperimentError::Interrupted { signal: libc::SIGTERM }.exit_code(), 143);
        assert_eq!(ExperimentError::Usage("x".into()).exit_code(), 2);
        let msg = ExperimentError::Interrupted { signal: libc::SIGINT }.to_string();
        assert!(msg.contains("SIGINT"), "{msg}");
    }
}
