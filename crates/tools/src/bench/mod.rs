//! `zygote bench`: spawn-and-wait latency of a zygote spawn against the ordinary ways
//! (posix_spawn, vfork+execve, `std::process::Command`), methods interleaved round by
//! round. The manual: docs/TOOLS.md.

mod options;
mod progress;
mod report;
mod spawner;

use std::ffi::OsString;
use std::time::Instant;

use zygote_linux::Zygote;
use zygote_linux::baseline::{Baseline, Stdio};

pub use self::options::{BenchError, BenchOptions, DEFAULT_ITERATIONS, DEFAULT_WARMUP, Round};
pub use self::report::{BenchReport, CacheSummary, FirstSpawn, MethodReport};
pub use crate::launch::resolve_program;
pub use crate::report::{LatencyStats, Method};

use self::progress::Progress;
use self::spawner::Bench;
use crate::launch::{CArgs, Env};
use crate::report::Tally;

/// Every method, in the order each round runs them.
pub const METHODS: [Method; 4] = [Method::Zygote, Method::PosixSpawn, Method::VforkExec, Method::Command];

/// Run the benchmark described by `opts`, with `zygote` doing the zygote spawns.
///
/// Errors stop the run (a spawn that could not be made, a wait that failed); runs that
/// exit non-zero do not, and are counted in [`BenchReport::failures`].
pub fn run(opts: &BenchOptions, zygote: &Zygote) -> Result<BenchReport, BenchError> {
    if opts.iterations == 0 {
        return Err(BenchError::NoIterations);
    }
    let wall_start = Instant::now();
    let label = opts.program.to_string_lossy().into_owned();
    let path =
        resolve_program(&opts.program).map_err(|source| BenchError::Resolve { program: label.clone(), source })?;

    // The same argv and environment for every method.
    let mut argv: Vec<OsString> = Vec::with_capacity(opts.args.len() + 1);
    argv.push(opts.program.clone());
    argv.extend(opts.args.iter().cloned());
    let c = CArgs::new(&path, &argv, &Env::current().environ)
        .map_err(|what| BenchError::Nul { program: label.clone(), what })?;
    let null = zygote_linux::dev_null().map_err(|source| BenchError::DevNull { source })?;
    let baseline = Baseline::new(&c.path, &c.argv, &c.envp, Stdio::Null).map_err(|source| BenchError::Setup {
        program: label.clone(),
        method: Method::PosixSpawn,
        source,
    })?;
    let mut bench = Bench { zygote, label: label.clone(), path: path.clone(), argv: argv.clone(), null, baseline };
    let mut tallies: Vec<Tally> = METHODS.iter().map(|_| Tally::with_capacity(opts.iterations)).collect();

    // The first zygote spawn builds the image: time it on its own.
    let before = zygote.stats();
    let first = bench.zygote(Round::First)?;
    let first_total = first.times.map(|(_, total)| total).unwrap_or_default();
    let after_first = zygote.stats();
    record(&mut tallies[0], Round::First, first);
    let first_builds = after_first.builds.saturating_sub(before.builds);
    let first_spawn = FirstSpawn {
        total_us: first_total.as_secs_f64() * 1e6,
        build_us: (first_builds > 0).then(|| after_first.build_nanos.saturating_sub(before.build_nanos) as f64 / 1e3),
    };

    let mut progress = Progress::start(&label, opts.warmup, opts.iterations);
    let rounds = (0..opts.warmup)
        .map(|n| Round::Warmup { n, of: opts.warmup })
        .chain((0..opts.iterations).map(|n| Round::Timed { n, of: opts.iterations }));
    for (done, round) in rounds.enumerate() {
        for (tally, &method) in tallies.iter_mut().zip(&METHODS) {
            let outcome = bench.spawn(method, round)?;
            record(tally, round, outcome);
        }
        progress.round_done(&label, done + 1);
    }
    let wall = wall_start.elapsed();
    progress.finish(&label, wall);

    let end = zygote.stats();
    let methods: Vec<MethodReport> = METHODS.iter().zip(&tallies).map(|(&m, t)| MethodReport::of(m, t)).collect();
    let median = |m: Method| methods.iter().find(|r| r.method == m).map(|r| r.latency.median_us).filter(|&v| v > 0.0);
    let (ratio, speedup) = match (median(Method::Zygote), median(Method::PosixSpawn)) {
        (Some(z), Some(p)) => (Some(z / p), Some(p / z)),
        _ => (None, None),
    };
    Ok(BenchReport {
        program: label,
        path: path.to_string_lossy().into_owned(),
        argv: argv.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        iterations: opts.iterations,
        warmup: opts.warmup,
        first_spawn,
        failures: methods.iter().map(|m| m.failures).sum(),
        methods,
        ratio,
        speedup,
        cache: CacheSummary {
            entries: end.entries,
            bytes: end.bytes,
            hits: end.hits,
            misses: end.misses,
            builds: end.builds,
            rebuilds: end.builds.saturating_sub(after_first.builds),
        },
        wall_seconds: wall.as_secs_f64(),
    })
}

/// Count a run of `round`; only timed rounds' times are samples.
fn record(tally: &mut Tally, round: Round, mut outcome: crate::report::Outcome) {
    if !matches!(round, Round::Timed { .. }) {
        outcome.times = None;
    }
    tally.record(0, outcome, |how| format!("{round}: {how}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_names_are_one_based() {
        assert_eq!(Round::Timed { n: 0, of: 10 }.to_string(), "iteration 1 of 10");
        assert_eq!(Round::Warmup { n: 4, of: 5 }.to_string(), "warm-up round 5 of 5");
        assert_eq!(Round::First.to_string(), "first spawn");
    }
}
