//! `zygote bench-exec`'s report: per case and method the wall-time
//! distribution, the ratios against the direct run, the compilers' Pss
//! (make), and the check that the caller-side runs were served.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use zygote_protocol::message::DaemonStats;

use super::Method;
use super::daemon::Setup;
use crate::report::{percentile, ratio};

/// A wall-time distribution, in the case's unit (`us` or `ms`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Dist {
    pub n: usize,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub min: f64,
    pub max: f64,
}

impl Dist {
    pub(super) fn new(times: &[f64]) -> Dist {
        let mut v = times.to_vec();
        v.sort_by(f64::total_cmp);
        Dist {
            n: v.len(),
            median: percentile(&v, 50.0),
            p10: percentile(&v, 10.0),
            p90: percentile(&v, 90.0),
            min: v.first().copied().unwrap_or(0.0),
            max: v.last().copied().unwrap_or(0.0),
        }
    }
}

/// The compilers' Pss during one build (or the median over builds, field
/// by field): the sum over the compiler processes alive at each sample.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PssSummary {
    pub interval_ms: f64,
    pub samples: usize,
    /// Samples that found at least one compiler.
    pub samples_with_compilers: usize,
    /// The largest sum.
    pub peak_sum_bytes: u64,
    /// The mean of the sum over every sample of the build (zeros included):
    /// the time-average of the compilers' Pss.
    pub mean_sum_bytes: f64,
    /// The mean, over the samples with compilers, of the sum divided by
    /// their number.
    pub mean_per_process_bytes: f64,
    pub peak_processes: u32,
    /// The sum integrated over the build (MiB x s).
    pub integral_mib_s: f64,
}

impl PssSummary {
    pub(super) fn median_of(all: &[PssSummary]) -> Option<PssSummary> {
        let first = all.first()?;
        let med = |f: &dyn Fn(&PssSummary) -> f64| {
            let mut v: Vec<f64> = all.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            percentile(&v, 50.0)
        };
        Some(PssSummary {
            interval_ms: first.interval_ms,
            samples: med(&|p| p.samples as f64) as usize,
            samples_with_compilers: med(&|p| p.samples_with_compilers as f64) as usize,
            peak_sum_bytes: med(&|p| p.peak_sum_bytes as f64) as u64,
            mean_sum_bytes: med(&|p| p.mean_sum_bytes),
            mean_per_process_bytes: med(&|p| p.mean_per_process_bytes),
            peak_processes: med(&|p| p.peak_processes as f64) as u32,
            integral_mib_s: med(&|p| p.integral_mib_s),
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MethodReport {
    pub method: Method,
    /// The command as a shell would run it.
    pub command: String,
    pub wall: Dist,
    /// Runs that did not exit with status 0 (left out of `wall`).
    pub failures: usize,
    pub first_failure: Option<String>,
    /// Every timed round's wall time (None: the run failed), in the case's unit.
    pub rounds: Vec<Option<f64>>,
    /// `median(direct) / median(this)`: how many times faster than direct.
    pub speedup: Option<f64>,
    /// The median over the rounds of `direct / this` in the same round (the
    /// runs of one round are adjacent in time: less sensitive to drifting load).
    pub paired_speedup: Option<f64>,
    /// `1 - median(this) / median(direct)`, in percent: wall time saved.
    pub saved_pct: Option<f64>,
    /// Median over the builds (make only).
    pub pss: Option<PssSummary>,
    /// make only: CPU time per build (ms, user + system) of make, the
    /// compilers, the daemon and the processes it started.
    pub cpu_ms: Option<Dist>,
}

impl MethodReport {
    pub(super) fn new(
        method: Method,
        command: String,
        times: &[Option<Duration>],
        failures: usize,
        first_failure: Option<String>,
        pss: Option<PssSummary>,
    ) -> MethodReport {
        let rounds: Vec<Option<f64>> = times.iter().map(|t| t.map(|t| t.as_secs_f64())).collect();
        let (wall, speedup, paired_speedup, saved_pct) = (Dist::default(), None, None, None);
        MethodReport {
            method,
            command,
            wall,
            rounds,
            failures,
            first_failure,
            speedup,
            paired_speedup,
            saved_pct,
            pss,
            cpu_ms: None,
        }
    }
}

/// Did the caller-side runs get their images? Deltas of the daemon's
/// counters over the timed rounds.
#[derive(Clone, Debug, Serialize)]
pub struct ServedCheck {
    /// Caller-side program starts in the timed rounds (client and link runs;
    /// for make, one per object).
    pub expected: u64,
    pub served: u64,
    pub misses: u64,
    pub exec: u64,
    pub errors: u64,
    /// Daemon-side spawns (`zygote spawn`).
    pub spawns: u64,
    pub ok: bool,
}

impl ServedCheck {
    pub(super) fn new(expected: u64, before: &DaemonStats, after: &DaemonStats) -> ServedCheck {
        let (b, a) = (&before.image_requests, &after.image_requests);
        let served = a.served.saturating_sub(b.served);
        let misses = a.misses.saturating_sub(b.misses);
        let exec = a.exec.saturating_sub(b.exec);
        let errors = a.errors.saturating_sub(b.errors);
        let spawns = after.spawns.saturating_sub(before.spawns);
        let ok = served >= expected && misses == 0 && exec == 0 && errors == 0;
        ServedCheck { expected, served, misses, exec, errors, spawns, ok }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseReport {
    pub case: String,
    /// The unit of the wall times: `us` or `ms`.
    pub unit: &'static str,
    pub rounds: usize,
    pub methods: Vec<MethodReport>,
    pub served: ServedCheck,
    /// /proc/loadavg (1, 5, 15 min) before and after the timed rounds.
    pub load_before: String,
    pub load_after: String,
}

impl CaseReport {
    pub(super) fn new(
        case: String,
        unit: &'static str,
        rounds: usize,
        mut methods: Vec<MethodReport>,
        served: ServedCheck,
        load_before: String,
        load_after: String,
    ) -> CaseReport {
        let scale = if unit == "us" { 1e6 } else { 1e3 };
        for m in methods.iter_mut() {
            m.rounds.iter_mut().flatten().for_each(|v| *v *= scale);
            m.wall = Dist::new(&m.rounds.iter().flatten().copied().collect::<Vec<_>>());
        }
        let direct = methods.iter().find(|m| m.method == Method::Direct).cloned();
        let Some(direct) = direct else {
            return CaseReport { case, unit, rounds, methods, served, load_before, load_after };
        };
        for m in methods.iter_mut().filter(|m| m.method != Method::Direct) {
            m.speedup = ratio(direct.wall.median, m.wall.median);
            m.saved_pct = ratio(m.wall.median, direct.wall.median).map(|r| (1.0 - r) * 100.0);
            let mut pairs: Vec<f64> =
                direct.rounds.iter().zip(&m.rounds).filter_map(|(d, x)| ratio((*d)?, (*x)?)).collect();
            pairs.sort_by(f64::total_cmp);
            m.paired_speedup = (!pairs.is_empty()).then(|| percentile(&pairs, 50.0));
        }
        CaseReport { case, unit, rounds, methods, served, load_before, load_after }
    }

    pub fn failures(&self) -> usize {
        self.methods.iter().map(|m| m.failures).sum::<usize>() + usize::from(!self.served.ok)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchExecReport {
    pub cpus: usize,
    pub zygote: PathBuf,
    pub socket: PathBuf,
    /// A daemon started for this run (else the one at `--socket`).
    pub private_daemon: bool,
    pub compiler: PathBuf,
    pub compiler_exe: PathBuf,
    pub c_sources: Option<PathBuf>,
    /// /proc/loadavg at the start and at the end.
    pub load_start: String,
    pub load_end: String,
    pub cases: Vec<CaseReport>,
    /// The daemon's image-request counters at the end.
    pub image_requests: Option<zygote_core::metrics::stats::ImageRequestStats>,
}

impl BenchExecReport {
    pub(super) fn new(setup: &Setup) -> BenchExecReport {
        BenchExecReport {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            zygote: setup.zygote.clone(),
            socket: setup.socket.clone(),
            private_daemon: setup.private.is_some(),
            compiler: setup.compiler_path.clone(),
            compiler_exe: setup.compiler_exe.clone(),
            c_sources: None,
            load_start: super::loadavg(),
            load_end: String::new(),
            cases: Vec::new(),
            image_requests: None,
        }
    }

    pub(super) fn finish(&mut self, setup: &Setup) {
        self.load_end = super::loadavg();
        self.image_requests = setup.image_requests().ok();
    }

    /// Failed runs plus cases whose caller-side runs were not all served.
    pub fn failures(&self) -> usize {
        self.cases.iter().map(CaseReport::failures).sum()
    }

    pub fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "zygote bench-exec: {} CPUs, load {} at the start, {} at the end",
            self.cpus, self.load_start, self.load_end
        )?;
        writeln!(
            w,
            "daemon: {} ({}); compiler {} ({})",
            self.socket.display(),
            if self.private_daemon { "private" } else { "given" },
            self.compiler.display(),
            self.compiler_exe.display()
        )?;
        if let Some(s) = &self.c_sources {
            writeln!(w, "C sources: {}", s.display())?;
        }
        for c in &self.cases {
            writeln!(w)?;
            c.write_table(w)?;
        }
        Ok(())
    }
}

impl CaseReport {
    fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let u = self.unit;
        writeln!(w, "{}: {} rounds, load {} -> {}", self.case, self.rounds, self.load_before, self.load_after)?;
        writeln!(
            w,
            "  {:<14} {:>10} {:>10} {:>10} {:>9} {:>7} {:>8}  command",
            "method",
            format!("median {u}"),
            "p10",
            "p90",
            "vs direct",
            "paired",
            "saved"
        )?;
        for m in &self.methods {
            let speed = m.speedup.map_or("-".into(), |s| format!("{s:.2}x"));
            let saved = m.saved_pct.map_or("-".into(), |s| format!("{s:.1}%"));
            let paired = m.paired_speedup.map_or("-".into(), |s| format!("{s:.2}x"));
            writeln!(
                w,
                "  {:<14} {:>10.1} {:>10.1} {:>10.1} {:>9} {:>7} {:>8}  {}",
                m.method.name(),
                m.wall.median,
                m.wall.p10,
                m.wall.p90,
                speed,
                paired,
                saved,
                m.command
            )?;
        }
        for m in self.methods.iter().filter(|m| m.pss.is_some()) {
            let p = m.pss.as_ref().expect("filtered");
            let mib = |b: f64| b / (1024.0 * 1024.0);
            writeln!(
                w,
                "  Pss of the compilers, {}: peak of the sum {:.1} MiB, mean of the sum {:.1} MiB, \
                 per process {:.1} MiB, {:.1} MiB*s (median of {} builds, a sample every {} ms)",
                m.method.name(),
                mib(p.peak_sum_bytes as f64),
                mib(p.mean_sum_bytes),
                mib(p.mean_per_process_bytes),
                p.integral_mib_s,
                m.wall.n,
                p.interval_ms
            )?;
        }
        let cpu: Vec<String> = self
            .methods
            .iter()
            .filter_map(|m| Some(format!("{} {:.2} s", m.method.name(), m.cpu_ms.as_ref()?.median / 1e3)))
            .collect();
        if !cpu.is_empty() {
            writeln!(w, "  CPU time per build (make, compilers, daemon; median): {}", cpu.join(", "))?;
        }
        let s = &self.served;
        writeln!(
            w,
            "  served: {} of {} caller-side starts (misses {}, exec {}, errors {}); daemon-side spawns {}{}",
            s.served,
            s.expected,
            s.misses,
            s.exec,
            s.errors,
            s.spawns,
            if s.ok { "" } else { "  NOT ALL SERVED" }
        )?;
        for m in self.methods.iter().filter(|m| m.failures > 0) {
            writeln!(
                w,
                "  {}: {} failed; first: {}",
                m.method.name(),
                m.failures,
                m.first_failure.as_deref().unwrap_or("?")
            )?;
        }
        Ok(())
    }
}
