//! `zygote bench-daemon`: spawns through a running daemon against `posix_spawn`, with
//! concurrent clients.
//!
//! Two methods start the same programs, with the same argv, environment, working
//! directory and stdio (`/dev/null` on fds 0, 1 and 2):
//!
//! - `daemon`: what `zygote spawn` does. Each client thread has its own connection and,
//!   per round, sends `Spawn` (the executable fd, then the three stdio fds), reads
//!   `Spawned`, sends `Wait` and reads `Exited`. The latency of a round runs from sending
//!   `Spawn` to receiving `Exited`. The executable is opened once per client (the daemon
//!   receives a fresh duplicate every time) and the request is built before the clock
//!   starts; encoding it is part of the round.
//! - `posix_spawn`: glibc `posix_spawn` + `waitpid` of the same file from the same number
//!   of threads ([`zygote_linux::baseline`]).
//!
//! Client `c`'s round `i` starts program `(c + i) % programs`, for both methods, so the
//! clients run different programs at the same time and both methods run the same mix.
//!
//! Order of a run: one first spawn of every program by each method, one after the other
//! (the daemon's may build the image: reported on its own, with the build time from the
//! daemon's statistics; a program that cannot start with exit status 0 stops the run);
//! `warmup` untimed rounds per client and method; then `blocks` timed blocks per method
//! in ABBA order (daemon, posix_spawn, posix_spawn, daemon, daemon, ...), so slow drift
//! (frequency scaling, page cache, other load) hits both alike. Within a block every
//! client thread is set up first, then all start together; the block's wall time runs
//! from the first thread's start to the last one's end. Throughput is the rounds that
//! ended with exit status 0 divided by the summed wall time of the method's blocks.
//!
//! Rounds that end with another status, or whose `Spawn` or `Wait` the daemon refuses,
//! or whose `posix_spawn` fails, are counted as failures (left out of the latencies) and
//! the run goes on; [`DaemonBenchReport::failures`] is then non-zero, which the CLI turns
//! into a non-zero exit status. A broken connection, a protocol error or a failed
//! `waitpid` stops the run.

use crate::bench::percentile;
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use zygote_core::exec::ResolveError;
use zygote_linux::baseline::{self, Baseline, Stdio};
use zygote_linux::exec as resolve;
use zygote_protocol::client::{Client, ClientError};
use zygote_protocol::message::{DaemonStats, Request, Response, SpawnArgs};

/// Default number of concurrent clients for the CLI.
pub const DEFAULT_CLIENTS: usize = 4;
/// Default number of timed rounds per client and method for the CLI.
pub const DEFAULT_SPAWNS_PER_CLIENT: usize = 500;
/// Default number of untimed rounds per client and method for the CLI.
pub const DEFAULT_WARMUP: usize = 20;
/// Default number of timed blocks per method for the CLI.
pub const DEFAULT_BLOCKS: usize = 4;
/// Separates programs on the command line: `tiny :: bigrel-ends :: /bin/true x`.
pub const PROGRAM_SEPARATOR: &str = "::";

/// What to benchmark and how long.
#[derive(Clone, Debug)]
pub struct DaemonBenchOptions {
    /// The daemon's socket.
    pub socket: PathBuf,
    /// The programs (a path, or a name looked up in `PATH` like `execvp` does) and their
    /// arguments after argv[0]; argv[0] is the program as given. At least one.
    pub programs: Vec<(PathBuf, Vec<OsString>)>,
    /// Concurrent client threads, each with its own connection. At least 1.
    pub clients: usize,
    /// Timed spawn-and-wait rounds per client and per method. At least 1.
    pub spawns_per_client: usize,
    /// Untimed rounds per client and per method before the timed ones.
    pub warmup: usize,
    /// Timed blocks per method (at least 1; at most `spawns_per_client` are used).
    pub blocks: usize,
}

impl DaemonBenchOptions {
    /// Options with the CLI defaults for everything but the socket and the programs.
    pub fn new(socket: PathBuf, programs: Vec<(PathBuf, Vec<OsString>)>) -> DaemonBenchOptions {
        DaemonBenchOptions {
            socket,
            programs,
            clients: DEFAULT_CLIENTS,
            spawns_per_client: DEFAULT_SPAWNS_PER_CLIENT,
            warmup: DEFAULT_WARMUP,
            blocks: DEFAULT_BLOCKS,
        }
    }
}

/// Split `PROGRAM [ARGS] [:: PROGRAM [ARGS]]...` into programs with their arguments.
pub fn split_programs(
    words: impl IntoIterator<Item = OsString>,
) -> Result<Vec<(PathBuf, Vec<OsString>)>, DaemonBenchError> {
    let mut groups: Vec<Vec<OsString>> = vec![Vec::new()];
    for word in words {
        if word == PROGRAM_SEPARATOR {
            groups.push(Vec::new());
        } else if let Some(last) = groups.last_mut() {
            last.push(word);
        }
    }
    if groups.len() == 1 && groups[0].is_empty() {
        return Err(DaemonBenchError::NoPrograms);
    }
    groups
        .into_iter()
        .map(|group| {
            let mut it = group.into_iter();
            match it.next() {
                Some(program) => Ok((PathBuf::from(program), it.collect())),
                None => Err(DaemonBenchError::EmptyProgram),
            }
        })
        .collect()
}

/// A way of starting the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Method {
    /// `Spawn` + `Wait` through the daemon.
    #[serde(rename = "daemon")]
    Daemon,
    /// glibc `posix_spawn` + `waitpid` in this process.
    #[serde(rename = "posix_spawn")]
    PosixSpawn,
}

impl Method {
    /// Both methods, in report order.
    pub const ALL: [Method; 2] = [Method::Daemon, Method::PosixSpawn];

    /// The name used in the table and the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Method::Daemon => "daemon",
            Method::PosixSpawn => "posix_spawn",
        }
    }

    fn index(self) -> usize {
        match self {
            Method::Daemon => 0,
            Method::PosixSpawn => 1,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which part of the run something happened in (1-based in messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The first spawn of each program, one at a time.
    First,
    /// The untimed rounds.
    Warmup,
    /// Timed block `n` (0-based) of `of` of one method.
    Block { n: usize, of: usize },
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Phase::First => f.write_str("first spawn"),
            Phase::Warmup => f.write_str("warm-up"),
            Phase::Block { n, of } => write!(f, "block {} of {of}", n + 1),
        }
    }
}

/// Why a benchmark could not run to the end. Rounds that merely fail are not errors:
/// they are counted in the report.
#[derive(Debug, thiserror::Error)]
pub enum DaemonBenchError {
    #[error("bench-daemon: no program given")]
    NoPrograms,
    #[error("bench-daemon: a `{PROGRAM_SEPARATOR}` separator without a program after it (or before it)")]
    EmptyProgram,
    #[error("bench-daemon: {what} must be at least 1")]
    Zero { what: &'static str },
    #[error("bench-daemon: the current directory: {source}")]
    Cwd {
        #[source]
        source: io::Error,
    },
    #[error("bench-daemon: {source}")]
    Resolve {
        #[source]
        source: ResolveError,
    },
    #[error("{program}: the {what} contains a NUL byte")]
    Nul { program: String, what: &'static str },
    #[error("{program}: opening {}: {source}", path.display())]
    Open {
        program: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bench-daemon: opening /dev/null: {source}")]
    DevNull {
        #[source]
        source: io::Error,
    },
    #[error("bench-daemon: client {client}: {source}")]
    Connect {
        client: usize,
        #[source]
        source: ClientError,
    },
    #[error("bench-daemon: asking the daemon for its statistics: {source}")]
    Stats {
        #[source]
        source: ClientError,
    },
    #[error("{program}: {method} {phase} did not succeed: {how}")]
    First { program: String, method: Method, phase: Phase, how: String, exit_code: i32 },
    #[error("{program}: client {client}, {method} {phase}: {source}")]
    Daemon {
        program: String,
        client: usize,
        method: Method,
        phase: Phase,
        #[source]
        source: ClientError,
    },
    #[error("{program}: client {client}, {method} {phase}: preparing posix_spawn: {source}")]
    Setup {
        program: String,
        client: usize,
        method: Method,
        phase: Phase,
        #[source]
        source: io::Error,
    },
    #[error("{program}: client {client}, {method} {phase}: waitpid: {source}")]
    Wait {
        program: String,
        client: usize,
        method: Method,
        phase: Phase,
        #[source]
        source: io::Error,
    },
    #[error("bench-daemon: starting client thread {client}: {source}")]
    Thread {
        client: usize,
        #[source]
        source: io::Error,
    },
    #[error("bench-daemon: client thread {client} panicked ({method} {phase})")]
    Panicked { client: usize, method: Method, phase: Phase },
}

impl DaemonBenchError {
    /// The status the CLI should exit with: 2 for bad options; like a shell for a program
    /// that cannot be found (127) or started (126); like `zygote spawn` when the daemon
    /// cannot be reached (125); 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonBenchError::NoPrograms | DaemonBenchError::EmptyProgram | DaemonBenchError::Zero { .. } => 2,
            DaemonBenchError::Resolve { source } => source.exit_code(),
            DaemonBenchError::Nul { .. } | DaemonBenchError::Open { .. } => 126,
            DaemonBenchError::Connect { source, .. } | DaemonBenchError::Stats { source } => source.exit_code(),
            DaemonBenchError::First { exit_code, .. } => *exit_code,
            _ => 1,
        }
    }
}

/// Latency distribution, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub n: usize,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    /// Statistics of `samples` (any order). All zero when empty.
    pub fn from_samples(samples: impl IntoIterator<Item = Duration>) -> Latency {
        let mut us: Vec<f64> = samples.into_iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        let (Some(&min_us), Some(&max_us)) = (us.first(), us.last()) else {
            return Latency::default();
        };
        Latency {
            n: us.len(),
            min_us,
            p50_us: percentile(&us, 50.0),
            p90_us: percentile(&us, 90.0),
            p99_us: percentile(&us, 99.0),
            max_us,
            mean_us: us.iter().sum::<f64>() / us.len() as f64,
        }
    }
}

/// `a / b`, when both are positive.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (a > 0.0 && b > 0.0).then(|| a / b)
}

/// One method's timed results.
#[derive(Clone, Debug, Serialize)]
pub struct MethodReport {
    pub method: Method,
    /// Timed rounds that ended with exit status 0.
    pub spawns: usize,
    /// `spawns` over `wall_seconds`.
    pub spawns_per_sec: f64,
    /// Wall time of the method's timed blocks, summed.
    pub wall_seconds: f64,
    /// Lowest and highest throughput of one block.
    pub block_min_per_sec: f64,
    pub block_max_per_sec: f64,
    /// Round latency of the timed rounds that ended (with any status): from sending
    /// `Spawn` to receiving `Exited`, or from calling `posix_spawn` until `waitpid` returned.
    #[serde(flatten)]
    pub latency: Latency,
    /// Until the spawn alone was done (same rounds): `Spawned` received, or `posix_spawn`
    /// returned.
    pub spawn_call: Latency,
    /// Every round of this method, first spawns and warm-up included.
    pub rounds: usize,
    /// Rounds that did not end with exit status 0.
    pub failures: usize,
    /// One such round (the lowest-numbered client's first): where, and how it ended.
    pub first_failure: Option<String>,
}

/// One timed block.
#[derive(Clone, Debug, Serialize)]
pub struct BlockReport {
    pub method: Method,
    /// 0-based, per method.
    pub block: usize,
    /// Rounds per client in this block.
    pub rounds_per_client: usize,
    /// Rounds that ended with exit status 0.
    pub spawns: usize,
    pub failures: usize,
    pub wall_seconds: f64,
    pub spawns_per_sec: f64,
}

/// Median latency of one program by one method.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramLatency {
    pub n: usize,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// One program: what was started, its first spawns, and its medians.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramReport {
    /// The program as given.
    pub program: String,
    /// The file `posix_spawn` starts (after the `PATH` lookup).
    pub path: String,
    /// The ELF file the daemon prepares (after following `#!` lines).
    pub daemon_path: String,
    /// argv, argv[0] included, as `posix_spawn` passes it.
    pub argv: Vec<String>,
    /// The first daemon spawn of the run (spawn and wait), left out of the latencies.
    pub first_daemon_us: f64,
    /// Time the daemon spent building images during that spawn; `None` when it built
    /// none (the image was cached already).
    pub first_build_us: Option<f64>,
    /// The first `posix_spawn` of the run, left out of the latencies.
    pub first_posix_spawn_us: f64,
    pub daemon: ProgramLatency,
    pub posix_spawn: ProgramLatency,
    /// daemon p50 / posix_spawn p50.
    pub p50_ratio: Option<f64>,
}

/// The daemon's own counters over the run.
#[derive(Clone, Debug, Serialize)]
pub struct DaemonSide {
    /// Spawn requests it served during the run (from every client) and refused.
    pub spawns: u64,
    pub spawn_errors: u64,
    /// Images it built during the first spawns.
    pub builds_first: u64,
    /// Images it built after the first spawns (should be 0: otherwise the cache is too
    /// small for the programs, or one changed).
    pub rebuilds: u64,
    /// Cached images and sealed bytes at the end.
    pub cache_entries: u64,
    pub cache_bytes: u64,
}

/// Everything one run measured. Serialises to the `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct DaemonBenchReport {
    pub socket: String,
    pub clients: usize,
    pub spawns_per_client: usize,
    pub warmup: usize,
    /// Timed blocks per method (after capping at `spawns_per_client`).
    pub blocks: usize,
    /// Which method each timed block ran, in run order.
    pub order: Vec<Method>,
    pub programs: Vec<ProgramReport>,
    /// In [`Method::ALL`] order.
    pub methods: Vec<MethodReport>,
    /// daemon p50 / posix_spawn p50 (below 1: the daemon is faster).
    pub p50_ratio: Option<f64>,
    /// daemon p99 / posix_spawn p99.
    pub p99_ratio: Option<f64>,
    /// daemon spawns/s / posix_spawn spawns/s (above 1: the daemon is faster).
    pub throughput_ratio: Option<f64>,
    /// Every timed block, in run order.
    pub block_results: Vec<BlockReport>,
    pub daemon: DaemonSide,
    /// Rounds (both methods) that did not end with exit status 0.
    pub failures: usize,
    /// Wall time of the whole benchmark.
    pub wall_seconds: f64,
}

impl DaemonBenchReport {
    /// Rounds, of both methods, that did not end with exit status 0. Non-zero must make
    /// the CLI exit non-zero.
    pub fn failures(&self) -> usize {
        self.failures
    }

    /// The results of one method.
    pub fn method(&self, method: Method) -> Option<&MethodReport> {
        self.methods.iter().find(|m| m.method == method)
    }

    /// The human-readable report.
    pub fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "zygote bench-daemon: {} clients x {} spawns per method ({} blocks each, interleaved; {} warm-up rounds per client)",
            self.clients, self.spawns_per_client, self.blocks, self.warmup
        )?;
        writeln!(w, "  socket: {}", self.socket)?;
        for p in &self.programs {
            let build = match p.first_build_us {
                Some(b) => format!("image built in {b:.1} µs"),
                None => "image already cached".to_owned(),
            };
            writeln!(
                w,
                "  program: {}  (first spawns: daemon {:.1} µs, {build}; posix_spawn {:.1} µs)",
                p.argv.join(" "),
                p.first_daemon_us,
                p.first_posix_spawn_us
            )?;
        }
        writeln!(w)?;
        writeln!(
            w,
            "  {:<12} {:>6} {:>9} {:>17} {:>9} {:>9} {:>9} {:>9}  {:>11}  {:>8}",
            "method",
            "n",
            "spawns/s",
            "(block min-max)",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "max µs",
            "call p50 µs",
            "failures"
        )?;
        for m in &self.methods {
            let l = &m.latency;
            let spread = format!("({:.0}-{:.0})", m.block_min_per_sec, m.block_max_per_sec);
            writeln!(
                w,
                "  {:<12} {:>6} {:>9.1} {:>17} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {:>11.1}  {:>8}",
                m.method.name(),
                l.n,
                m.spawns_per_sec,
                spread,
                l.p50_us,
                l.p90_us,
                l.p99_us,
                l.max_us,
                m.spawn_call.p50_us,
                m.failures
            )?;
        }
        writeln!(w, "  (latency: spawn and wait; call p50: until Spawned was received / posix_spawn returned)")?;
        writeln!(w)?;
        let show = |r: Option<f64>, digits: usize| r.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"));
        writeln!(
            w,
            "  daemon / posix_spawn: p50 {}, p99 {}, throughput {}x",
            show(self.p50_ratio, 3),
            show(self.p99_ratio, 3),
            show(self.throughput_ratio, 2)
        )?;
        if self.programs.len() > 1 {
            writeln!(w)?;
            let width = self.programs.iter().map(|p| p.program.chars().count()).max().unwrap_or(0).max(7);
            writeln!(
                w,
                "  {:<width$} {:>6} {:>13} {:>13} {:>7}",
                "program", "n", "daemon p50 µs", "posix p50 µs", "ratio"
            )?;
            for p in &self.programs {
                writeln!(
                    w,
                    "  {:<width$} {:>6} {:>13.1} {:>13.1} {:>7}",
                    p.program,
                    p.daemon.n.min(p.posix_spawn.n),
                    p.daemon.p50_us,
                    p.posix_spawn.p50_us,
                    show(p.p50_ratio, 3)
                )?;
            }
        }
        let d = &self.daemon;
        writeln!(
            w,
            "  daemon side: {} spawns served, {} refused; {} image(s) built by the first spawns, {} rebuilt later; {} cached",
            d.spawns, d.spawn_errors, d.builds_first, d.rebuilds, d.cache_entries
        )?;
        if d.rebuilds > 0 {
            writeln!(w, "  warning: the daemon rebuilt images during the run (cache too small?)")?;
        }
        if self.failures > 0 {
            writeln!(w, "  FAILED: {} round(s) did not end with exit status 0", self.failures)?;
            for m in self.methods.iter().filter(|m| m.failures > 0) {
                writeln!(
                    w,
                    "    {}: {} of {} round(s); first: {}",
                    m.method,
                    m.failures,
                    m.rounds,
                    m.first_failure.as_deref().unwrap_or("?")
                )?;
            }
        }
        writeln!(w, "  wall time {:.1} s", self.wall_seconds)
    }
}

/// One program, with everything both methods need built once.
struct Program {
    /// As given, for messages.
    label: String,
    /// What `posix_spawn` starts.
    path: PathBuf,
    c_path: CString,
    c_argv: Vec<CString>,
    /// The ELF file the daemon gets (after `#!`), opened by each client.
    daemon_path: PathBuf,
    /// `Request::Spawn`, stdio on fds 0, 1 and 2.
    request: Request,
}

/// Everything shared by the client threads.
struct Shared {
    programs: Vec<Program>,
    c_envp: Vec<CString>,
}

impl Shared {
    /// The program client `client` starts in its round `round` (counted over the run).
    fn program_for(&self, client: usize, round: usize) -> usize {
        program_for(client, round, self.programs.len())
    }
}

/// Client `client`'s program in its round `round`, of `programs`: the clients start at
/// different programs and each cycles through all of them.
fn program_for(client: usize, round: usize, programs: usize) -> usize {
    (client + round).checked_rem(programs).unwrap_or(0)
}

fn cstring(bytes: &[u8], program: &str, what: &'static str) -> Result<CString, DaemonBenchError> {
    CString::new(bytes).map_err(|_| DaemonBenchError::Nul { program: program.to_owned(), what })
}

fn env_entry(key: &OsStr, value: &OsStr) -> Vec<u8> {
    let mut kv = Vec::with_capacity(key.len() + value.len() + 1);
    kv.extend_from_slice(key.as_bytes());
    kv.push(b'=');
    kv.extend_from_slice(value.as_bytes());
    kv
}

/// Resolve every program as `zygote spawn` does (PATH, then `#!` for the daemon) and
/// build both methods' arguments.
fn prepare(opts: &DaemonBenchOptions) -> Result<Shared, DaemonBenchError> {
    let cwd = std::env::current_dir().map_err(|source| DaemonBenchError::Cwd { source })?;
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let environ: Vec<Vec<u8>> = env.iter().map(|(k, v)| env_entry(k, v)).collect();
    let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str());
    let mut programs = Vec::with_capacity(opts.programs.len());
    let mut c_envp = Vec::new();
    for (program, args) in &opts.programs {
        let label = program.to_string_lossy().into_owned();
        let found = resolve::find_program(program.as_os_str(), path_var, Some(&cwd))
            .map_err(|source| DaemonBenchError::Resolve { source })?;
        let mut argv: Vec<OsString> = Vec::with_capacity(args.len() + 1);
        argv.push(program.as_os_str().to_owned());
        argv.extend(args.iter().cloned());
        let c_path = cstring(found.as_os_str().as_bytes(), &label, "program path")?;
        let c_argv =
            argv.iter().map(|a| cstring(a.as_bytes(), &label, "argument list")).collect::<Result<Vec<_>, _>>()?;
        if c_envp.is_empty() {
            c_envp = environ.iter().map(|kv| cstring(kv, &label, "environment")).collect::<Result<Vec<_>, _>>()?;
        }
        let launch = resolve::follow_interpreters(found.clone(), argv, Some(&cwd))
            .map_err(|source| DaemonBenchError::Resolve { source })?;
        let request = Request::Spawn(SpawnArgs {
            argv: launch.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            environ: environ.clone(),
            name: launch.exec_path.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default(),
            cwd: cwd.as_os_str().as_bytes().to_vec(),
            fds: vec![0, 1, 2],
            path: launch.program.as_os_str().as_bytes().to_vec(),
            detach: false,
        });
        programs.push(Program { label, path: found, c_path, c_argv, daemon_path: launch.program, request });
    }
    Ok(Shared { programs, c_envp })
}

fn open_null() -> Result<OwnedFd, DaemonBenchError> {
    zygote_linux::dev_null().map_err(|source| DaemonBenchError::DevNull { source })
}

/// How one round ended.
struct RoundResult {
    /// Spawn call and whole round, when the round got as far as the program's end.
    times: Option<(Duration, Duration)>,
    /// How it failed, if it did not end with exit status 0.
    failure: Option<String>,
    /// When the program could not be started at all: the status a shell would give.
    refused_code: Option<i32>,
}

impl RoundResult {
    fn ended(call: Duration, total: Duration, failure: Option<String>) -> RoundResult {
        RoundResult { times: Some((call, total)), failure, refused_code: None }
    }

    fn refused(how: String, code: i32) -> RoundResult {
        RoundResult { times: None, failure: Some(how), refused_code: Some(code) }
    }
}

/// One timed (or untimed) round's samples.
struct Sample {
    program: usize,
    call: Duration,
    total: Duration,
}

/// What one client thread did in one block.
#[derive(Default)]
struct Tally {
    samples: Vec<Sample>,
    rounds: usize,
    ok: usize,
    failures: usize,
    first_failure: Option<String>,
    started: Option<Instant>,
    finished: Option<Instant>,
}

impl Tally {
    fn started(rounds: usize) -> Tally {
        Tally { samples: Vec::with_capacity(rounds), started: Some(Instant::now()), ..Tally::default() }
    }

    fn record(&mut self, program: &Program, index: usize, client: usize, phase: Phase, r: RoundResult) {
        self.rounds += 1;
        if let Some((call, total)) = r.times {
            self.samples.push(Sample { program: index, call, total });
        }
        match r.failure {
            None => self.ok += 1,
            Some(how) => {
                self.failures += 1;
                self.first_failure.get_or_insert_with(|| format!("{}: client {client}, {phase}: {how}", program.label));
            }
        }
    }
}

/// A client of the daemon: its connection, the programs opened, `/dev/null`.
struct DaemonWorker {
    client_index: usize,
    client: Client,
    exes: Vec<OwnedFd>,
    null: OwnedFd,
    /// Rounds done so far (selects the next program).
    round: usize,
}

impl DaemonWorker {
    fn connect(client_index: usize, socket: &Path, shared: &Shared) -> Result<DaemonWorker, DaemonBenchError> {
        let client =
            Client::connect(socket).map_err(|source| DaemonBenchError::Connect { client: client_index, source })?;
        let exes = shared
            .programs
            .iter()
            .map(|p| {
                File::open(&p.daemon_path).map(OwnedFd::from).map_err(|source| DaemonBenchError::Open {
                    program: p.label.clone(),
                    path: p.daemon_path.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DaemonWorker { client_index, client, exes, null: open_null()?, round: 0 })
    }

    /// `Spawn` + `Wait` of program `index`.
    fn round(&mut self, program: &Program, index: usize) -> Result<RoundResult, ClientError> {
        let exe = self.exes.get(index).ok_or_else(|| ClientError::Protocol(format!("no program {index}")))?;
        let null = self.null.as_fd();
        let fds = [exe.as_fd(), null, null, null];
        let start = Instant::now();
        self.client.send(&program.request, &fds)?;
        let (reply, pidfd) = match self.client.recv() {
            Ok(r) => r,
            Err(ClientError::Server { code, message }) => {
                let how = format!("Spawn refused ({}): {message}", code.fidl_name());
                return Ok(RoundResult::refused(how, code.exit_code()));
            }
            Err(e) => return Err(e),
        };
        let Response::Spawned { pid, .. } = reply else {
            return Err(ClientError::Protocol(format!("expected Spawned, got {reply:?}")));
        };
        let call = start.elapsed();
        self.client.send(&Request::Wait { pid }, &[])?;
        let reply = match self.client.recv() {
            Ok((reply, _)) => reply,
            Err(ClientError::Server { code, message }) => {
                let how = format!("Wait refused ({}): {message}", code.fidl_name());
                return Ok(RoundResult::refused(how, code.exit_code()));
            }
            Err(e) => return Err(e),
        };
        let total = start.elapsed();
        // The pidfd is closed after the clock stopped.
        drop(pidfd);
        let failure = match reply {
            Response::Exited { code: Some(0), .. } => None,
            Response::Exited { code: Some(c), .. } => Some(format!("exited with status {c}")),
            Response::Exited { signal: Some(s), .. } => Some(format!("killed by signal {s}")),
            Response::Exited { .. } => Some("ended, the daemon could not tell how".to_owned()),
            other => return Err(ClientError::Protocol(format!("expected Exited, got {other:?}"))),
        };
        Ok(RoundResult::ended(call, total, failure))
    }

    fn run(&mut self, shared: &Shared, rounds: usize, phase: Phase, gate: &Gate) -> Result<Tally, DaemonBenchError> {
        if !gate.ready_and_wait() {
            return Ok(Tally::default());
        }
        let mut tally = Tally::started(rounds);
        for _ in 0..rounds {
            let index = shared.program_for(self.client_index, self.round);
            self.round += 1;
            let Some(program) = shared.programs.get(index) else { continue };
            let r = self.round(program, index).map_err(|source| DaemonBenchError::Daemon {
                program: program.label.clone(),
                client: self.client_index,
                method: Method::Daemon,
                phase,
                source,
            })?;
            tally.record(program, index, self.client_index, phase, r);
        }
        tally.finished = Some(Instant::now());
        Ok(tally)
    }
}

/// A `posix_spawn` client thread's place in the program cycle (its `Baseline`s are
/// built in the thread: they hold raw pointers and stay on the thread that made them).
struct PosixWorker {
    client_index: usize,
    round: usize,
}

impl PosixWorker {
    fn baselines(&self, shared: &Shared, phase: Phase) -> Result<Vec<Baseline>, DaemonBenchError> {
        shared
            .programs
            .iter()
            .map(|p| {
                Baseline::new(&p.c_path, &p.c_argv, &shared.c_envp, Stdio::Null).map_err(|source| {
                    DaemonBenchError::Setup {
                        program: p.label.clone(),
                        client: self.client_index,
                        method: Method::PosixSpawn,
                        phase,
                        source,
                    }
                })
            })
            .collect()
    }

    fn round(&self, baseline: &mut Baseline, program: &Program, phase: Phase) -> Result<RoundResult, DaemonBenchError> {
        let start = Instant::now();
        let pid = match baseline.posix_spawn() {
            Ok(pid) => pid,
            Err(e) => {
                let code = if e.kind() == io::ErrorKind::NotFound { 127 } else { 126 };
                return Ok(RoundResult::refused(format!("posix_spawn failed: {e}"), code));
            }
        };
        let call = start.elapsed();
        let status = baseline::wait_pid(pid).map_err(|source| DaemonBenchError::Wait {
            program: program.label.clone(),
            client: self.client_index,
            method: Method::PosixSpawn,
            phase,
            source,
        })?;
        let total = start.elapsed();
        let failure = (!baseline::wait_status_success(status)).then(|| baseline::describe_wait_status(status));
        Ok(RoundResult::ended(call, total, failure))
    }

    fn run(&mut self, shared: &Shared, rounds: usize, phase: Phase, gate: &Gate) -> Result<Tally, DaemonBenchError> {
        // Set up before the gate, and pass the gate even on failure so no thread waits
        // for this one.
        let baselines = self.baselines(shared, phase);
        let go = gate.ready_and_wait();
        let mut baselines = baselines?;
        if !go {
            return Ok(Tally::default());
        }
        let mut tally = Tally::started(rounds);
        for _ in 0..rounds {
            let index = shared.program_for(self.client_index, self.round);
            self.round += 1;
            let (Some(program), Some(baseline)) = (shared.programs.get(index), baselines.get_mut(index)) else {
                continue;
            };
            let r = self.round(baseline, program, phase)?;
            tally.record(program, index, self.client_index, phase, r);
        }
        tally.finished = Some(Instant::now());
        Ok(tally)
    }
}

/// Starts the client threads of a block together, once every one is set up.
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    ready: usize,
    open: Option<bool>,
}

impl Gate {
    fn new() -> Gate {
        Gate { state: Mutex::new(GateState::default()), changed: Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A client thread: say it is ready, then wait for the gate. True: go; false: the
    /// block was called off.
    fn ready_and_wait(&self) -> bool {
        let mut s = self.lock();
        s.ready += 1;
        self.changed.notify_all();
        loop {
            if let Some(go) = s.open {
                return go;
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The coordinator: wait until `n` threads are ready.
    fn wait_ready(&self, n: usize) {
        let mut s = self.lock();
        while s.ready < n {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn open(&self, go: bool) {
        self.lock().open = Some(go);
        self.changed.notify_all();
    }
}

/// Run `body` on one thread per worker, all starting together, and collect their tallies.
fn run_block<W: Send>(
    workers: &mut [W],
    method: Method,
    phase: Phase,
    body: &(dyn Fn(&mut W, &Gate) -> Result<Tally, DaemonBenchError> + Sync),
) -> Result<Vec<Tally>, DaemonBenchError> {
    let gate = Gate::new();
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(workers.len());
        for (client, worker) in workers.iter_mut().enumerate() {
            let gate = &gate;
            let spawned = std::thread::Builder::new()
                .name(format!("bench-{}-{client}", method.name()))
                .spawn_scoped(s, move || body(worker, gate));
            match spawned {
                Ok(h) => handles.push(h),
                Err(source) => {
                    // The threads started so far return at once; the scope joins them.
                    gate.open(false);
                    return Err(DaemonBenchError::Thread { client, source });
                }
            }
        }
        gate.wait_ready(handles.len());
        gate.open(true);
        let mut tallies = Vec::with_capacity(handles.len());
        let mut first_error = None;
        for (client, h) in handles.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(t)) => tallies.push(t),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(DaemonBenchError::Panicked { client, method, phase });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(tallies),
        }
    })
}

/// Rounds per client in each of `blocks` blocks: `total` split as evenly as possible.
fn split_rounds(total: usize, blocks: usize) -> Vec<usize> {
    let blocks = blocks.clamp(1, total.max(1));
    (0..blocks).map(|b| total / blocks + usize::from(b < total % blocks)).collect()
}

/// Which method each timed block runs: ABBA pairs, starting with the daemon.
fn block_order(blocks: usize) -> Vec<Method> {
    (0..blocks)
        .flat_map(
            |k| if k % 2 == 0 { [Method::Daemon, Method::PosixSpawn] } else { [Method::PosixSpawn, Method::Daemon] },
        )
        .collect()
}

/// Everything one method gathered over its timed blocks.
struct Gathered {
    method: Method,
    samples: Vec<Sample>,
    ok: usize,
    rounds: usize,
    failures: usize,
    first_failure: Option<String>,
    wall: Duration,
    block_rates: Vec<f64>,
}

impl Gathered {
    fn new(method: Method) -> Gathered {
        Gathered {
            method,
            samples: Vec::new(),
            ok: 0,
            rounds: 0,
            failures: 0,
            first_failure: None,
            wall: Duration::ZERO,
            block_rates: Vec::new(),
        }
    }

    /// Count rounds and failures (every phase).
    fn count(&mut self, tallies: &[Tally]) {
        for t in tallies {
            self.rounds += t.rounds;
            self.failures += t.failures;
            if self.first_failure.is_none() {
                self.first_failure.clone_from(&t.first_failure);
            }
        }
    }

    /// Add a timed block; returns its report.
    fn add_block(&mut self, block: usize, rounds_per_client: usize, tallies: Vec<Tally>) -> BlockReport {
        self.count(&tallies);
        let start = tallies.iter().filter_map(|t| t.started).min();
        let end = tallies.iter().filter_map(|t| t.finished).max();
        let wall = match (start, end) {
            (Some(s), Some(e)) => e.saturating_duration_since(s),
            _ => Duration::ZERO,
        };
        let ok: usize = tallies.iter().map(|t| t.ok).sum();
        let failures = tallies.iter().map(|t| t.failures).sum();
        let rate = if wall.is_zero() { 0.0 } else { ok as f64 / wall.as_secs_f64() };
        self.ok += ok;
        self.wall += wall;
        self.block_rates.push(rate);
        self.samples.extend(tallies.into_iter().flat_map(|t| t.samples));
        BlockReport {
            method: self.method,
            block,
            rounds_per_client,
            spawns: ok,
            failures,
            wall_seconds: wall.as_secs_f64(),
            spawns_per_sec: rate,
        }
    }

    fn report(&self) -> MethodReport {
        let secs = self.wall.as_secs_f64();
        MethodReport {
            method: self.method,
            spawns: self.ok,
            spawns_per_sec: if secs > 0.0 { self.ok as f64 / secs } else { 0.0 },
            wall_seconds: secs,
            block_min_per_sec: self.block_rates.iter().copied().reduce(f64::min).unwrap_or(0.0),
            block_max_per_sec: self.block_rates.iter().copied().reduce(f64::max).unwrap_or(0.0),
            latency: Latency::from_samples(self.samples.iter().map(|s| s.total)),
            spawn_call: Latency::from_samples(self.samples.iter().map(|s| s.call)),
            rounds: self.rounds,
            failures: self.failures,
            first_failure: self.first_failure.clone(),
        }
    }

    fn program(&self, index: usize) -> ProgramLatency {
        let l = Latency::from_samples(self.samples.iter().filter(|s| s.program == index).map(|s| s.total));
        ProgramLatency { n: l.n, p50_us: l.p50_us, p99_us: l.p99_us }
    }
}

fn daemon_stats(client: &mut Client) -> Result<DaemonStats, DaemonBenchError> {
    match client.call(&Request::Stats, &[]) {
        Ok((Response::Stats(s), _)) => Ok(s),
        Ok((other, _)) => {
            Err(DaemonBenchError::Stats { source: ClientError::Protocol(format!("expected Stats, got {other:?}")) })
        }
        Err(source) => Err(DaemonBenchError::Stats { source }),
    }
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
        let first = |method: Method, r: RoundResult| match (r.times, r.failure) {
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

/// Run the benchmark described by `opts` against the daemon listening on `opts.socket`.
///
/// Errors stop the run (bad options, a program that cannot be started at all, a broken
/// connection, a failed `waitpid`); rounds that fail do not, and are counted in
/// [`DaemonBenchReport::failures`].
pub fn run(opts: &DaemonBenchOptions) -> Result<DaemonBenchReport, DaemonBenchError> {
    if opts.programs.is_empty() {
        return Err(DaemonBenchError::NoPrograms);
    }
    for (what, n) in [("--clients", opts.clients), ("--spawns", opts.spawns_per_client), ("--blocks", opts.blocks)] {
        if n == 0 {
            return Err(DaemonBenchError::Zero { what });
        }
    }
    let wall_start = Instant::now();
    let shared = prepare(opts)?;
    let mut control =
        Client::connect(&opts.socket).map_err(|source| DaemonBenchError::Connect { client: 0, source })?;
    let mut daemon_workers =
        (0..opts.clients).map(|c| DaemonWorker::connect(c, &opts.socket, &shared)).collect::<Result<Vec<_>, _>>()?;
    let mut posix_workers: Vec<PosixWorker> =
        (0..opts.clients).map(|client_index| PosixWorker { client_index, round: 0 }).collect();
    let mut gathered = [Gathered::new(Method::Daemon), Gathered::new(Method::PosixSpawn)];

    progress(format_args!(
        "{} program(s), {} clients; first spawns, then {} warm-up and {} timed rounds per client and method",
        shared.programs.len(),
        opts.clients,
        opts.warmup,
        opts.spawns_per_client
    ));
    let Some(first_worker) = daemon_workers.first_mut() else {
        return Err(DaemonBenchError::Zero { what: "--clients" });
    };
    let first = first_spawns(&mut control, first_worker, &shared)?;
    // The first spawns count as rounds (and failures: none, or the run stopped).
    for g in &mut gathered {
        g.rounds += shared.programs.len();
    }

    let daemon_body = |rounds: usize, phase: Phase| {
        let shared = &shared;
        move |w: &mut DaemonWorker, gate: &Gate| w.run(shared, rounds, phase, gate)
    };
    let posix_body = |rounds: usize, phase: Phase| {
        let shared = &shared;
        move |w: &mut PosixWorker, gate: &Gate| w.run(shared, rounds, phase, gate)
    };
    let mut run_phase = |method: Method, rounds: usize, phase: Phase| -> Result<Vec<Tally>, DaemonBenchError> {
        match method {
            Method::Daemon => run_block(&mut daemon_workers, method, phase, &daemon_body(rounds, phase)),
            Method::PosixSpawn => run_block(&mut posix_workers, method, phase, &posix_body(rounds, phase)),
        }
    };

    if opts.warmup > 0 {
        for method in Method::ALL {
            let started = Instant::now();
            let tallies = run_phase(method, opts.warmup, Phase::Warmup)?;
            gathered[method.index()].count(&tallies);
            progress(format_args!(
                "warm-up {method}: {} rounds in {:.2} s",
                opts.warmup * opts.clients,
                started.elapsed().as_secs_f64()
            ));
        }
    }

    let per_block = split_rounds(opts.spawns_per_client, opts.blocks);
    let blocks = per_block.len();
    let order = block_order(blocks);
    let mut next_block = [0usize; 2];
    let mut block_results = Vec::with_capacity(order.len());
    for (done, &method) in order.iter().enumerate() {
        let block = next_block[method.index()];
        next_block[method.index()] += 1;
        let rounds = per_block.get(block).copied().unwrap_or(0);
        let phase = Phase::Block { n: block, of: blocks };
        let tallies = run_phase(method, rounds, phase)?;
        let b = gathered[method.index()].add_block(block, rounds, tallies);
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
    let end = daemon_stats(&mut control)?;
    let wall = wall_start.elapsed();

    let methods: Vec<MethodReport> = gathered.iter().map(Gathered::report).collect();
    let [daemon, posix] = &gathered;
    let (dm, pm) = (daemon.report(), posix.report());
    let programs = shared
        .programs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (d, b) = (daemon.program(i), posix.program(i));
            ProgramReport {
                program: p.label.clone(),
                path: p.path.to_string_lossy().into_owned(),
                daemon_path: p.daemon_path.to_string_lossy().into_owned(),
                argv: p.c_argv.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
                first_daemon_us: first.daemon_us.get(i).copied().unwrap_or(0.0),
                first_build_us: first.build_us.get(i).copied().flatten(),
                first_posix_spawn_us: first.posix_us.get(i).copied().unwrap_or(0.0),
                p50_ratio: ratio(d.p50_us, b.p50_us),
                daemon: d,
                posix_spawn: b,
            }
        })
        .collect();
    Ok(DaemonBenchReport {
        socket: opts.socket.to_string_lossy().into_owned(),
        clients: opts.clients,
        spawns_per_client: opts.spawns_per_client,
        warmup: opts.warmup,
        blocks,
        order,
        programs,
        p50_ratio: ratio(dm.latency.p50_us, pm.latency.p50_us),
        p99_ratio: ratio(dm.latency.p99_us, pm.latency.p99_us),
        throughput_ratio: ratio(dm.spawns_per_sec, pm.spawns_per_sec),
        failures: methods.iter().map(|m| m.failures).sum(),
        methods,
        block_results,
        daemon: DaemonSide {
            spawns: end.spawns.saturating_sub(first.before.spawns),
            spawn_errors: end.spawn_errors.saturating_sub(first.before.spawn_errors),
            builds_first: first.after.cache.builds.saturating_sub(first.before.cache.builds),
            rebuilds: end.cache.builds.saturating_sub(first.after.cache.builds),
            cache_entries: end.cache.entries,
            cache_bytes: end.cache.bytes,
        },
        wall_seconds: wall.as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn latency_percentiles() {
        let l = Latency::from_samples((1..=100).map(Duration::from_micros));
        assert_eq!((l.n, l.min_us, l.max_us), (100, 1.0, 100.0));
        assert!((l.p50_us - 50.5).abs() < 1e-9, "{}", l.p50_us);
        assert!((l.p90_us - 90.1).abs() < 1e-9, "{}", l.p90_us);
        assert!((l.p99_us - 99.01).abs() < 1e-9, "{}", l.p99_us);
        assert!((l.mean_us - 50.5).abs() < 1e-9);
        assert_eq!(Latency::from_samples([]), Latency::default());
        let one = Latency::from_samples([Duration::from_micros(7)]);
        assert_eq!((one.p50_us, one.p99_us), (7.0, 7.0));
    }

    #[test]
    fn rounds_split_evenly_and_blocks_alternate() {
        assert_eq!(split_rounds(500, 4), vec![125; 4]);
        assert_eq!(split_rounds(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(split_rounds(2, 4), vec![1, 1]);
        assert_eq!(split_rounds(5, 1), vec![5]);
        use Method::{Daemon as D, PosixSpawn as P};
        assert_eq!(block_order(3), vec![D, P, P, D, D, P]);
        // Clients start at different programs; each cycles through all of them.
        let firsts: Vec<usize> = (0..4).map(|c| program_for(c, 0, 2)).collect();
        assert_eq!(firsts, vec![0, 1, 0, 1]);
        let client1: Vec<usize> = (0..4).map(|r| program_for(1, r, 3)).collect();
        assert_eq!(client1, vec![1, 2, 0, 1]);
        assert_eq!(program_for(3, 5, 0), 0);
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

    fn sample_report(failures: usize) -> DaemonBenchReport {
        let mk = |method, p50: f64, rate: f64, failures| MethodReport {
            method,
            spawns: 2000,
            spawns_per_sec: rate,
            wall_seconds: 2000.0 / rate,
            block_min_per_sec: rate * 0.9,
            block_max_per_sec: rate * 1.1,
            latency: Latency { n: 2000, p50_us: p50, p99_us: p50 * 3.0, ..Latency::default() },
            spawn_call: Latency { p50_us: 42.0, ..Latency::default() },
            rounds: 2084,
            failures,
            first_failure: (failures > 0).then(|| "tiny: client 1, block 2 of 4: exited with status 1".into()),
        };
        let prog = |name: &str| ProgramReport {
            program: name.into(),
            path: format!("/b/{name}"),
            daemon_path: format!("/b/{name}"),
            argv: vec![name.into()],
            first_daemon_us: 900.0,
            first_build_us: Some(800.0),
            first_posix_spawn_us: 700.0,
            daemon: ProgramLatency { n: 1000, p50_us: 200.0, p99_us: 600.0 },
            posix_spawn: ProgramLatency { n: 1000, p50_us: 400.0, p99_us: 900.0 },
            p50_ratio: Some(0.5),
        };
        DaemonBenchReport {
            socket: "/tmp/s".into(),
            clients: 4,
            spawns_per_client: 500,
            warmup: 20,
            blocks: 4,
            order: block_order(4),
            programs: vec![prog("tiny"), prog("bigrel-ends")],
            methods: vec![mk(Method::Daemon, 200.0, 4000.0, failures), mk(Method::PosixSpawn, 400.0, 2000.0, 0)],
            p50_ratio: Some(0.5),
            p99_ratio: Some(0.5),
            throughput_ratio: Some(2.0),
            block_results: Vec::new(),
            daemon: DaemonSide {
                spawns: 2084,
                spawn_errors: 0,
                builds_first: 2,
                rebuilds: 0,
                cache_entries: 2,
                cache_bytes: 8192,
            },
            failures,
            wall_seconds: 2.5,
        }
    }

    #[test]
    fn table_shows_methods_ratios_programs_and_failures() {
        let mut out = Vec::new();
        sample_report(0).write_table(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        for needle in
            ["daemon ", "posix_spawn", "p50 0.500", "throughput 2.00x", "bigrel-ends", "4000.0", "(3600-4400)"]
        {
            assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
        }
        assert!(!text.contains("FAILED"));
        let mut out = Vec::new();
        sample_report(3).write_table(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("FAILED: 3 round(s)"), "{text}");
        assert!(text.contains("exited with status 1"), "{text}");
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v = serde_json::to_value(sample_report(0)).expect("json");
        assert_eq!(v["methods"][0]["method"], "daemon");
        assert_eq!(v["methods"][1]["method"], "posix_spawn");
        assert_eq!(v["methods"][0]["p50_us"], 200.0);
        assert_eq!(v["methods"][0]["spawns_per_sec"], 4000.0);
        assert_eq!(v["methods"][0]["spawn_call"]["p50_us"], 42.0);
        assert_eq!(v["throughput_ratio"], 2.0);
        assert_eq!(v["p50_ratio"], 0.5);
        assert_eq!(v["order"][1], "posix_spawn");
        assert_eq!(v["programs"][1]["daemon"]["p50_us"], 200.0);
        assert_eq!(v["daemon"]["rebuilds"], 0);
        assert_eq!(v["failures"], 0);
    }
}
