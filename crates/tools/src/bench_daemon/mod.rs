//! `zygote bench-daemon`: spawns through a running daemon against `posix_spawn` from as
//! many client threads, in timed blocks alternating ABBA. The manual: docs/TOOLS.md.

mod blocks;
mod options;
mod report;
mod workers;

use std::fmt;
use std::time::Instant;

use zygote_protocol::client::Client;
use zygote_protocol::message::DaemonStats;

pub use self::options::{
    DEFAULT_BLOCKS, DEFAULT_CLIENTS, DEFAULT_SPAWNS_PER_CLIENT, DEFAULT_WARMUP, DaemonBenchError, DaemonBenchOptions,
    PROGRAM_SEPARATOR, Phase, split_programs,
};
pub use self::report::{BlockReport, DaemonBenchReport, DaemonSide, MethodReport, ProgramLatency, ProgramReport};
pub use crate::report::{Latency, Method};

use self::blocks::{ClientBlock, Gate, Gathered, block_order, run_block, split_rounds};
use self::workers::{DaemonWorker, PosixWorker, RoundResult, Shared};
use crate::report::ratio;

/// Both methods, in report order.
pub const METHODS: [Method; 2] = [Method::Daemon, Method::PosixSpawn];

fn index(method: Method) -> usize {
    METHODS.iter().position(|&m| m == method).unwrap_or(0)
}

fn daemon_stats(client: &mut Client) -> Result<DaemonStats, DaemonBenchError> {
    crate::client::stats(client).map_err(|source| DaemonBenchError::Stats { source })
}

/// The first spawn of each program by each method, one at a time.
struct FirstSpawns {
    daemon_us: Vec<f64>,
    build_us: Vec<Option<f64>>,
    posix_us: Vec<f64>,
    /// Daemon counters before the first spawns and after them.
    before: DaemonStats,
    after: DaemonStats,
}

fn first_spawns(
    control: &mut Client,
    worker: &mut DaemonWorker,
    shared: &Shared,
) -> Result<FirstSpawns, DaemonBenchError> {
    let phase = Phase::First;
    let before = daemon_stats(control)?;
    let mut out = FirstSpawns {
        daemon_us: Vec::new(),
        build_us: Vec::new(),
        posix_us: Vec::new(),
        before: before.clone(),
        after: before,
    };
    let posix = PosixWorker { client_index: worker.client_index, round: 0 };
    let mut baselines = posix.baselines(shared, phase)?;
    for (index, (program, baseline)) in shared.programs.iter().zip(&mut baselines).enumerate() {
        let first = |method: Method, r: RoundResult| match (r.outcome.times, r.outcome.failure) {
            (Some((_, total)), None) => Ok(total.as_secs_f64() * 1e6),
            (_, how) => Err(DaemonBenchError::First {
                program: program.label.clone(),
                method,
                phase,
                how: how.unwrap_or_else(|| "no result".to_owned()),
                exit_code: r.refused_code.unwrap_or(1),
            }),
        };
        let s0 = daemon_stats(control)?;
        let r = worker.round(program, index).map_err(|source| DaemonBenchError::Daemon {
            program: program.label.clone(),
            client: worker.client_index,
            method: Method::Daemon,
            phase,
            source,
        })?;
        out.daemon_us.push(first(Method::Daemon, r)?);
        let s1 = daemon_stats(control)?;
        let built = s1.cache.builds.saturating_sub(s0.cache.builds);
        out.build_us.push((built > 0).then(|| s1.cache.build_nanos.saturating_sub(s0.cache.build_nanos) as f64 / 1e3));
        out.posix_us.push(first(Method::PosixSpawn, posix.round(baseline, program, phase)?)?);
    }
    out.after = daemon_stats(control)?;
    Ok(out)
}

fn progress(line: fmt::Arguments<'_>) {
    eprintln!("zygote bench-daemon: {line}");
}

fn check(opts: &DaemonBenchOptions) -> Result<(), DaemonBenchError> {
    if opts.programs.is_empty() {
        return Err(DaemonBenchError::NoPrograms);
    }
    for (what, n) in [("--clients", opts.clients), ("--spawns", opts.spawns_per_client), ("--blocks", opts.blocks)] {
        if n == 0 {
            return Err(DaemonBenchError::Zero { what });
        }
    }
    Ok(())
}

/// The client threads of both methods, and what each method gathered.
struct Clients<'a> {
    shared: &'a Shared,
    daemon: Vec<DaemonWorker>,
    posix: Vec<PosixWorker>,
    gathered: [Gathered; 2],
}

impl Clients<'_> {
    /// One block of `method`: every client thread `rounds` rounds.
    fn block(&mut self, method: Method, rounds: usize, phase: Phase) -> Result<Vec<ClientBlock>, DaemonBenchError> {
        let shared = self.shared;
        match method {
            Method::Daemon => run_block(&mut self.daemon, method, phase, &|w: &mut DaemonWorker, gate: &Gate| {
                w.run(shared, (rounds, phase), gate)
            }),
            _ => run_block(&mut self.posix, method, phase, &|w: &mut PosixWorker, gate: &Gate| {
                w.run(shared, (rounds, phase), gate)
            }),
        }
    }

    /// `warmup` untimed rounds per client, by each method.
    fn warm_up(&mut self, warmup: usize, clients: usize) -> Result<(), DaemonBenchError> {
        for method in METHODS {
            let started = Instant::now();
            let blocks = self.block(method, warmup, Phase::Warmup)?;
            self.gathered[index(method)].count(blocks);
            progress(format_args!(
                "warm-up {method}: {} rounds in {:.2} s",
                warmup * clients,
                started.elapsed().as_secs_f64()
            ));
        }
        Ok(())
    }

    /// The timed blocks, in `order`, of `per_block` rounds per client.
    fn timed(&mut self, order: &[Method], per_block: &[usize]) -> Result<Vec<BlockReport>, DaemonBenchError> {
        let mut next_block = [0usize; 2];
        let mut block_results = Vec::with_capacity(order.len());
        for (done, &method) in order.iter().enumerate() {
            let block = next_block[index(method)];
            next_block[index(method)] += 1;
            let rounds = per_block.get(block).copied().unwrap_or(0);
            let phase = Phase::Block { n: block, of: per_block.len() };
            let blocks = self.block(method, rounds, phase)?;
            let b = self.gathered[index(method)].add_block(block, rounds, blocks);
            progress(format_args!(
                "{}/{} {method} {phase}: {} spawns in {:.2} s ({:.0}/s){}",
                done + 1,
                order.len(),
                b.spawns,
                b.wall_seconds,
                b.spawns_per_sec,
                if b.failures > 0 { format!(", {} failed", b.failures) } else { String::new() }
            ));
            block_results.push(b);
        }
        Ok(block_results)
    }
}

/// Run the benchmark described by `opts` against the daemon listening on `opts.socket`.
///
/// Errors stop the run (bad options, a program that cannot be started at all, a broken
/// connection, a failed `waitpid`); rounds that fail do not, and are counted in
/// [`DaemonBenchReport::failures`].
pub fn run(opts: &DaemonBenchOptions) -> Result<DaemonBenchReport, DaemonBenchError> {
    check(opts)?;
    let wall_start = Instant::now();
    let shared = workers::prepare(opts)?;
    let mut control =
        Client::connect(&opts.socket).map_err(|source| DaemonBenchError::Connect { client: 0, source })?;
    let mut clients = Clients {
        shared: &shared,
        daemon: (0..opts.clients)
            .map(|c| DaemonWorker::connect(c, &opts.socket, &shared))
            .collect::<Result<Vec<_>, _>>()?,
        posix: (0..opts.clients).map(|client_index| PosixWorker { client_index, round: 0 }).collect(),
        gathered: METHODS.map(Gathered::new),
    };

    progress(format_args!(
        "{} program(s), {} clients; first spawns, then {} warm-up and {} timed rounds per client and method",
        shared.programs.len(),
        opts.clients,
        opts.warmup,
        opts.spawns_per_client
    ));
    let Some(first_worker) = clients.daemon.first_mut() else {
        return Err(DaemonBenchError::Zero { what: "--clients" });
    };
    let first = first_spawns(&mut control, first_worker, &shared)?;
    // The first spawns count as rounds (and failures: none, or the run stopped).
    for g in &mut clients.gathered {
        g.untimed.rounds.extend(0..shared.programs.len());
    }
    if opts.warmup > 0 {
        clients.warm_up(opts.warmup, opts.clients)?;
    }
    let per_block = split_rounds(opts.spawns_per_client, opts.blocks);
    let order = block_order(per_block.len());
    let block_results = clients.timed(&order, &per_block)?;
    let end = daemon_stats(&mut control)?;
    let report = DaemonBenchReport {
        socket: opts.socket.to_string_lossy().into_owned(),
        clients: opts.clients,
        spawns_per_client: opts.spawns_per_client,
        warmup: opts.warmup,
        blocks: per_block.len(),
        order,
        programs: Vec::new(),
        methods: Vec::new(),
        p50_ratio: None,
        p99_ratio: None,
        throughput_ratio: None,
        block_results,
        daemon: DaemonSide {
            spawns: end.spawns.saturating_sub(first.before.spawns),
            spawn_errors: end.spawn_errors.saturating_sub(first.before.spawn_errors),
            builds_first: first.after.cache.builds.saturating_sub(first.before.cache.builds),
            rebuilds: end.cache.builds.saturating_sub(first.after.cache.builds),
            cache_entries: end.cache.entries,
            cache_bytes: end.cache.bytes,
        },
        failures: 0,
        wall_seconds: wall_start.elapsed().as_secs_f64(),
    };
    Ok(results(report, &clients.gathered, &shared, &first))
}

/// Fill `report` in with what the methods gathered, per method and per program.
fn results(
    mut report: DaemonBenchReport,
    gathered: &[Gathered; 2],
    shared: &Shared,
    first: &FirstSpawns,
) -> DaemonBenchReport {
    let methods: Vec<MethodReport> = gathered.iter().map(Gathered::report).collect();
    let [daemon, posix] = gathered;
    let (dm, pm) = (&methods[0], &methods[1]);
    report.programs = shared
        .programs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (d, b) = (daemon.program(i), posix.program(i));
            ProgramReport {
                program: p.label.clone(),
                path: p.path.to_string_lossy().into_owned(),
                daemon_path: p.daemon_path.to_string_lossy().into_owned(),
                argv: p.c.argv.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
                first_daemon_us: first.daemon_us.get(i).copied().unwrap_or(0.0),
                first_build_us: first.build_us.get(i).copied().flatten(),
                first_posix_spawn_us: first.posix_us.get(i).copied().unwrap_or(0.0),
                p50_ratio: ratio(d.p50_us, b.p50_us),
                daemon: d,
                posix_spawn: b,
            }
        })
        .collect();
    report.p50_ratio = ratio(dm.latency.p50_us, pm.latency.p50_us);
    report.p99_ratio = ratio(dm.latency.p99_us, pm.latency.p99_us);
    report.throughput_ratio = ratio(dm.spawns_per_sec, pm.spawns_per_sec);
    report.failures = methods.iter().map(|m| m.failures).sum();
    report.methods = methods;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::path::PathBuf;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn programs_split_on_the_separator() {
        let p = split_programs(os(&["tiny", "a", "b", "::", "/bin/true", "::", "x"])).expect("split");
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], (PathBuf::from("tiny"), os(&["a", "b"])));
        assert_eq!(p[1], (PathBuf::from("/bin/true"), vec![]));
        assert_eq!(p[2], (PathBuf::from("x"), vec![]));
        assert!(matches!(split_programs(os(&[])), Err(DaemonBenchError::NoPrograms)));
        assert!(matches!(split_programs(os(&["a", "::"])), Err(DaemonBenchError::EmptyProgram)));
        assert!(matches!(split_programs(os(&["::", "a"])), Err(DaemonBenchError::EmptyProgram)));
        assert_eq!(DaemonBenchError::EmptyProgram.exit_code(), 2);
    }

    #[test]
    fn options_are_checked_before_connecting() {
        let mut opts = DaemonBenchOptions::new("/nonexistent/zygote.sock".into(), vec![("/bin/true".into(), vec![])]);
        opts.clients = 0;
        let e = run(&opts).expect_err("no clients");
        assert!(matches!(e, DaemonBenchError::Zero { what: "--clients" }), "{e}");
        assert_eq!(e.exit_code(), 2);
        opts.clients = 1;
        let e = run(&opts).expect_err("no daemon");
        assert!(matches!(e, DaemonBenchError::Connect { .. }), "{e}");
        assert_eq!(e.exit_code(), 125);
        assert!(e.to_string().contains("zygote daemon"), "{e}");
        let opts = DaemonBenchOptions::new("/x".into(), vec![("zygote-no-such-program-xyz".into(), vec![])]);
        assert_eq!(run(&opts).expect_err("missing").exit_code(), 127);
    }
}
