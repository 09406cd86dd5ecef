//! `zygote stress`: a launch storm through the daemon with cache churn, checking every
//! child's output and status, then the daemon for leaks. The manual: docs/TOOLS.md.

mod daemon;
mod leaks;
mod options;
mod report;
mod worker;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use zygote_protocol::client::Client;

pub use self::options::{
    DEFAULT_CLIENTS, DEFAULT_SPAWNS_PER_CLIENT, ProgramSpec, StressError, StressOptions, parse_programs,
};
pub use self::report::{CacheActivity, LeakReport, ProgramReport, Snapshot, StressReport};
pub use crate::report::Latency;

use self::daemon::PrivateDaemon;
use self::leaks::{Costs, growth, leak_problems, learn, memfd_growth, settled, stats};
use self::options::{FAILURE_SAMPLES, MONITOR_INTERVAL};
use self::worker::{ClientTally, Program, Worker};
use crate::report::Tally;

fn progress(msg: fmt::Arguments<'_>) {
    eprintln!("zygote stress: {msg}");
}

fn check(opts: &StressOptions) -> Result<(), StressError> {
    if opts.programs.is_empty() {
        return Err(StressError::Usage("--programs: no program given".into()));
    }
    if opts.clients == 0 || opts.spawns_per_client == 0 {
        return Err(StressError::Usage("--clients and --spawns must be at least 1".into()));
    }
    if opts.socket.is_some() && opts.cache_entries.is_some() {
        return Err(StressError::Usage("--cache-entries sets the private daemon's cache: not with --socket".into()));
    }
    if opts.cache_entries == Some(0) {
        return Err(StressError::Usage("--cache-entries must be at least 1".into()));
    }
    Ok(())
}

/// The daemon under test: its socket, pid, the private one (if started) and the
/// monitor connection, open for the whole run.
struct Target {
    socket: PathBuf,
    pid: i32,
    private: Option<PrivateDaemon>,
    monitor: Client,
}

impl Target {
    fn connect(opts: &StressOptions, distinct: usize) -> Result<Target, StressError> {
        let private = match &opts.socket {
            Some(_) => None,
            None => {
                let entries = opts.cache_entries.unwrap_or(distinct.saturating_sub(1).max(1));
                progress(format_args!("starting a private daemon with --cache-entries {entries}"));
                Some(PrivateDaemon::start(entries)?)
            }
        };
        let socket = match (&opts.socket, &private) {
            (Some(s), _) => s.clone(),
            (None, Some(d)) => d.socket.clone(),
            (None, None) => return Err(StressError::Usage("no socket".into())),
        };
        let monitor = Client::connect(&socket)
            .map_err(|source| StressError::Client { what: format!("connecting to {}", socket.display()), source })?;
        let pid = match private.as_ref().and_then(PrivateDaemon::pid) {
            Some(pid) => pid,
            None => {
                rustix::net::sockopt::socket_peercred(monitor.socket()).map(|c| c.pid.as_raw_nonzero().get()).map_err(
                    |e| StressError::Io { what: "SO_PEERCRED on the daemon connection".into(), source: e.into() },
                )?
            }
        };
        Ok(Target { socket, pid, private, monitor })
    }
}

/// What the storm did: its wall time, every client's rounds, and the largest cache
/// entries and bytes the monitor saw (and how often it looked).
struct Storm {
    wall: Duration,
    clients: Vec<ClientTally>,
    max: (u64, u64),
    stats_samples: usize,
}

/// C client threads, each with its own connection, start together and run N rounds
/// each; meanwhile the monitor polls `Stats`.
fn storm(opts: &StressOptions, programs: &[Program], target: &mut Target) -> Result<Storm, StressError> {
    let mut workers =
        (0..opts.clients).map(|c| Worker::connect(c, &target.socket, programs)).collect::<Result<Vec<_>, _>>()?;
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(opts.clients + 1);
    let (wall, tallies, monitor_result) = std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .iter_mut()
            .map(|w| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut t = ClientTally::default();
                    barrier.wait();
                    w.run(programs, opts.spawns_per_client, true, &mut t).map(|()| t)
                })
            })
            .collect();
        let monitor = &mut target.monitor;
        let stop = &stop;
        let watcher = s.spawn(move || -> Result<(u64, u64, usize), StressError> {
            let (mut entries, mut bytes, mut n) = (0, 0, 0);
            while !stop.load(Ordering::SeqCst) {
                let st = stats(monitor)?;
                entries = entries.max(st.cache.entries);
                bytes = bytes.max(st.cache.bytes);
                n += 1;
                std::thread::sleep(MONITOR_INTERVAL);
            }
            Ok((entries, bytes, n))
        });
        barrier.wait();
        let start = Instant::now();
        let tallies: Vec<Result<ClientTally, StressError>> = handles
            .into_iter()
            .enumerate()
            .map(|(c, h)| h.join().unwrap_or(Err(StressError::Panicked { client: c })))
            .collect();
        let wall = start.elapsed();
        stop.store(true, Ordering::SeqCst);
        let monitor_result = watcher.join().unwrap_or(Err(StressError::Panicked { client: usize::MAX }));
        (wall, tallies, monitor_result)
    });
    drop(workers);
    let clients = tallies.into_iter().collect::<Result<Vec<_>, _>>()?;
    let (max_entries, max_bytes, stats_samples) = monitor_result?;
    Ok(Storm { wall, clients, max: (max_entries, max_bytes), stats_samples })
}

/// Warm-up: one client runs every program once, in order.
fn warm_up(programs: &[Program], socket: &Path) -> Result<ClientTally, StressError> {
    let mut warm = ClientTally::default();
    let mut w = Worker::connect(0, socket, programs)?;
    w.run(programs, programs.len(), false, &mut warm)?;
    Ok(warm)
}

/// Run the storm and the checks. Rounds that fail and leaks found do not stop the run:
/// they are in the report ([`StressReport::passed`] false). Errors stop it.
pub fn run(opts: &StressOptions) -> Result<StressReport, StressError> {
    check(opts)?;
    progress(format_args!("{} program(s): running each once directly", opts.programs.len()));
    let (programs, distinct) = worker::prepare(&opts.programs)?;
    let mut target = Target::connect(opts, distinct)?;

    let mut costs: Costs = BTreeMap::new();
    let warm = warm_up(&programs, &target.socket)?;
    learn(&mut costs, &programs, &warm.keys);
    progress(format_args!(
        "warm-up: {} rounds, {} failed; waiting for the daemon to settle",
        warm.tally.rounds.len(),
        warm.tally.failures.len()
    ));
    let mut last_fds = None;
    let baseline = settled(&mut target.monitor, target.pid, &costs, |s| {
        // Two equal fd counts in a row: nothing is closing any more.
        let stable = last_fds == Some(s.fds);
        last_fds = Some(s.fds);
        stable
    })?;

    progress(format_args!("storm: {} clients x {} rounds", opts.clients, opts.spawns_per_client));
    let storm = storm(opts, &programs, &mut target)?;
    let mut all = Tally::default();
    for c in &storm.clients {
        learn(&mut costs, &programs, &c.keys);
    }
    for c in &storm.clients {
        all.append(c.tally.clone());
    }
    progress(format_args!(
        "storm: {} rounds in {:.2} s, {} failed; waiting for the daemon to settle",
        all.rounds.len(),
        storm.wall.as_secs_f64(),
        all.failures.len()
    ));

    let after =
        settled(&mut target.monitor, target.pid, &costs, |s| leak_problems(&baseline, s, storm.max).is_empty())?;
    let problems = leak_problems(&baseline, &after, storm.max);
    let Target { socket, pid, mut private, monitor } = target;
    drop(monitor);
    let daemon_exit = private.as_mut().and_then(PrivateDaemon::stop);
    drop(private);

    let (fd_growth, allowed_fd_growth) = growth(&baseline, &after);
    let (memfd_growth, allowed_memfd_growth) = memfd_growth(&baseline, &after);
    let leaks = LeakReport {
        ok: problems.is_empty(),
        baseline,
        after,
        fd_growth,
        allowed_fd_growth,
        memfd_growth,
        allowed_memfd_growth,
        storm_max_entries: storm.max.0,
        storm_max_bytes: storm.max.1,
        storm_stats_samples: storm.stats_samples,
        problems,
    };
    let ran = Ran { opts, socket, pid, programs: &programs, distinct, warm, storm, storm_rounds: all };
    Ok(ran.report(leaks, daemon_exit))
}

/// Everything a finished run did, for its report.
struct Ran<'a> {
    opts: &'a StressOptions,
    socket: PathBuf,
    pid: i32,
    programs: &'a [Program],
    distinct: usize,
    warm: ClientTally,
    storm: Storm,
    /// Every storm round, client after client.
    storm_rounds: Tally,
}

impl Ran<'_> {
    fn report(self, leaks: LeakReport, daemon_exit: Option<String>) -> StressReport {
        let daemon_ok = daemon_exit.as_deref().is_none_or(|e| e == "exited with status 0");
        // Warm-up and storm: every round, and every image key seen.
        let mut all = self.warm.tally.clone();
        all.append(self.storm_rounds.clone());
        let keys: BTreeMap<usize, &String> = std::iter::once(&self.warm)
            .chain(&self.storm.clients)
            .flat_map(|t| t.keys.iter().map(|(&i, k)| (i, k)))
            .collect();
        let programs = self
            .programs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (rounds, failures) = all.program_counts(i);
                ProgramReport {
                    program: p.label.clone(),
                    path: p.daemon_path.to_string_lossy().into_owned(),
                    expected_stdout_bytes: p.expected.len(),
                    key: keys.get(&i).map(|k| (*k).clone()),
                    image_fds: p.image_fds,
                    image_objects: p.image_objects,
                    rounds,
                    failures,
                }
            })
            .collect();
        let storm = &self.storm_rounds;
        let ok = storm.samples.len();
        let mut failure_samples: Vec<String> =
            all.failures.iter().take(FAILURE_SAMPLES).map(|(_, f)| f.clone()).collect();
        if !daemon_ok && let Some(e) = &daemon_exit {
            failure_samples.push(format!("the private daemon {e} when stopped"));
        }
        let (base, after) = (&leaks.baseline.cache, &leaks.after.cache);
        let wall = self.storm.wall;
        StressReport {
            socket: self.socket.to_string_lossy().into_owned(),
            private_daemon: self.opts.socket.is_none(),
            daemon_pid: self.pid,
            clients: self.opts.clients,
            spawns_per_client: self.opts.spawns_per_client,
            programs,
            warmup_rounds: self.warm.tally.rounds.len(),
            warmup_failures: self.warm.tally.failures.len(),
            rounds: storm.rounds.len(),
            ok,
            failures: all.failures.len(),
            failure_samples,
            wall_seconds: wall.as_secs_f64(),
            throughput_per_sec: if wall.is_zero() { 0.0 } else { ok as f64 / wall.as_secs_f64() },
            latency: storm.latency(),
            spawn_latency: storm.call_latency(),
            cache: CacheActivity {
                max_entries: after.max_entries,
                max_bytes: after.max_bytes,
                churn: self.distinct as u64 > after.max_entries,
                hits: after.hits.saturating_sub(base.hits),
                misses: after.misses.saturating_sub(base.misses),
                evictions: after.evictions.saturating_sub(base.evictions),
                builds: after.builds.saturating_sub(base.builds),
            },
            passed: all.failures.is_empty() && leaks.ok && daemon_ok,
            leaks,
            daemon_exit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn spec(words: &[&str]) -> ProgramSpec {
        ProgramSpec { program: words[0].into(), args: words[1..].iter().map(OsString::from).collect() }
    }

    #[test]
    fn programs_split_on_commas_and_spaces() {
        let p = parse_programs("/bin/echo a b, ./tiny ,x\ty").expect("parse");
        assert_eq!(p, vec![spec(&["/bin/echo", "a", "b"]), spec(&["./tiny"]), spec(&["x", "y"])]);
        let p = parse_programs(r"/bin/echo a\,b c\ d e\\f").expect("parse");
        assert_eq!(p, vec![spec(&["/bin/echo", "a,b", "c d", r"e\f"])]);
    }

    #[test]
    fn bad_program_lists() {
        for bad in ["", "a,,b", "a,", " , b", r"a\x", "a\\"] {
            let e = parse_programs(bad).expect_err(bad);
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
        let e = parse_programs("a,,b").unwrap_err().to_string();
        assert!(e.contains("entry 2 is empty"), "{e}");
    }
}
