//! `zygote bench`: spawn-and-wait latency of a zygote spawn against the ordinary ways.
//!
//! One run starts the same program, with the same argv, environment and stdio (`/dev/null`
//! on fds 0, 1 and 2), by three methods:
//!
//! - `zygote`: [`Zygote::spawn`] from the cached image, then [`crate::Child::wait`];
//! - `posix_spawn`: glibc `posix_spawn` + `waitpid` (what `std::process::Command` does);
//! - `vfork+execve`: `clone(CLONE_VM | CLONE_VFORK)` + `execve` + `waitpid`.
//!
//! The first zygote spawn builds the image (a cache miss); it is timed and reported on its
//! own, with the build time from the cache statistics, and left out of the latencies. Then
//! `warmup` untimed rounds and `iterations` timed rounds follow; each round runs every
//! method once, one after the other, so drift (frequency scaling, page cache, other load)
//! hits all of them alike. Only the spawn and the wait are timed: argv, environment and
//! stdio fds are prepared before the clock starts, for every method.
//!
//! Every run must exit with status 0; runs that do not are counted (not timed any
//! differently) and reported, and [`BenchReport::failures`] is then non-zero, which the CLI
//! turns into a non-zero exit status.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use zygote_linux::baseline::{self, Baseline, Stdio};
use zygote_linux::{ExitStatus, SpawnRequest, Zygote};

/// Default number of timed rounds for the CLI.
pub const DEFAULT_ITERATIONS: usize = 1000;
/// Default number of untimed warm-up rounds for the CLI.
pub const DEFAULT_WARMUP: usize = 20;

/// What to benchmark and how long.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The program: a path, or a name looked up in `PATH` like `execvp` does.
    pub program: OsString,
    /// Arguments after argv[0] (argv[0] is `program` as given).
    pub args: Vec<OsString>,
    /// Timed rounds; each round spawns the program once per method. At least 1.
    pub iterations: usize,
    /// Untimed rounds before the timed ones.
    pub warmup: usize,
}

/// A way of starting the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Method {
    /// [`Zygote::spawn`] from the cached image.
    #[serde(rename = "zygote")]
    Zygote,
    /// glibc `posix_spawn`.
    #[serde(rename = "posix_spawn")]
    PosixSpawn,
    /// `clone(CLONE_VM | CLONE_VFORK)` + `execve`.
    #[serde(rename = "vfork+execve")]
    VforkExec,
    /// `std::process::Command::spawn` (posix_spawn or fork+exec inside std).
    #[serde(rename = "std::process::Command")]
    Command,
}

impl Method {
    /// Every method, in the order each round runs them.
    pub const ALL: [Method; 4] = [Method::Zygote, Method::PosixSpawn, Method::VforkExec, Method::Command];

    /// The name used in the table and the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Method::Zygote => "zygote",
            Method::PosixSpawn => "posix_spawn",
            Method::VforkExec => "vfork+execve",
            Method::Command => "std::process::Command",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which spawn of the run something happened in (1-based in messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    /// The first zygote spawn, which builds the image.
    First,
    /// Untimed warm-up round `n` (0-based) of `of`.
    Warmup { n: usize, of: usize },
    /// Timed round `n` (0-based) of `of`.
    Timed { n: usize, of: usize },
}

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Round::First => f.write_str("first spawn"),
            Round::Warmup { n, of } => write!(f, "warm-up round {} of {of}", n + 1),
            Round::Timed { n, of } => write!(f, "iteration {} of {of}", n + 1),
        }
    }
}

/// Why a benchmark could not run to the end. Runs that merely exit non-zero are not
/// errors: they are counted in the report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench: --iterations must be at least 1")]
    NoIterations,
    #[error("{program}: {source}")]
    Resolve {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{program}: the {what} contains a NUL byte")]
    Nul { program: String, what: &'static str },
    #[error("bench: opening /dev/null: {source}")]
    DevNull {
        #[source]
        source: io::Error,
    },
    #[error("{program}: preparing the {method} spawner: {source}")]
    Setup {
        program: String,
        method: Method,
        #[source]
        source: io::Error,
    },
    #[error("{program}: zygote spawn failed ({round}): {source}")]
    ZygoteSpawn {
        program: String,
        round: Round,
        #[source]
        source: Box<zygote_linux::SpawnError>,
    },
    #[error("{program}: {method} failed ({round}): {source}")]
    Spawn {
        program: String,
        method: Method,
        round: Round,
        #[source]
        source: io::Error,
    },
    #[error("{program}: waiting for the {method} child ({round}): {source}")]
    Wait {
        program: String,
        method: Method,
        round: Round,
        #[source]
        source: io::Error,
    },
}

impl BenchError {
    /// The status the CLI should exit with: like a shell for a program that cannot be
    /// found (127) or started (126, or the zygote's own code); 2 for bad options; 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            BenchError::NoIterations => 2,
            BenchError::Resolve { source, .. } if source.kind() == io::ErrorKind::NotFound => 127,
            BenchError::Resolve { .. } => 126,
            BenchError::ZygoteSpawn { source, .. } => source.exit_code(),
            _ => 1,
        }
    }
}

/// Latency distribution of one method's timed runs, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    pub n: usize,
    pub min_us: f64,
    pub median_us: f64,
    pub p90_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl LatencyStats {
    /// Statistics of `samples` (any order). All zero when empty.
    pub fn from_samples(samples: &[Duration]) -> LatencyStats {
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        let (Some(&min_us), Some(&max_us)) = (us.first(), us.last()) else {
            return LatencyStats::default();
        };
        LatencyStats {
            n: us.len(),
            min_us,
            median_us: percentile(&us, 50.0),
            p90_us: percentile(&us, 90.0),
            max_us,
            mean_us: us.iter().sum::<f64>() / us.len() as f64,
        }
    }
}

/// Percentile `p` (0..=100) of sorted, non-empty `sorted`, by linear interpolation between
/// closest ranks (numpy's default): the median of an even count is the mean of the middle two.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    let rank = p.clamp(0.0, 100.0) / 100.0 * last as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(last);
    let frac = rank - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// One method's results.
#[derive(Clone, Debug, Serialize)]
pub struct MethodReport {
    pub method: Method,
    /// Distribution of the timed runs: spawn and wait, until the child has been reaped.
    #[serde(flatten)]
    pub latency: LatencyStats,
    /// Distribution of the spawn call alone (same runs): until `Zygote::spawn`,
    /// `posix_spawn` or `clone` returned, that is until the new program runs (for the
    /// zygote: until the stub reported every mapping made).
    pub spawn_call: LatencyStats,
    /// Every run of this method, warm-up (and, for the zygote, the first spawn) included.
    pub runs: usize,
    /// Runs that did not exit with status 0.
    pub failures: usize,
    /// The first such run: which round, and how it ended.
    pub first_failure: Option<String>,
}

/// The first zygote spawn of the run, left out of the latencies.
#[derive(Clone, Debug, Serialize)]
pub struct FirstSpawn {
    /// Spawn and wait, image build included.
    pub total_us: f64,
    /// Time the cache spent building images during it; `None` when it built none (the
    /// image was cached already).
    pub build_us: Option<f64>,
}

/// The zygote's cache at the end of the run.
#[derive(Clone, Debug, Serialize)]
pub struct CacheSummary {
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub builds: u64,
    /// Images built after the first spawn, in warm-up and timed rounds (should be 0).
    pub rebuilds: u64,
}

/// Everything one `zygote bench` run measured. Serialises to the `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The program as given.
    pub program: String,
    /// The file every method started (after the `PATH` lookup).
    pub path: String,
    /// argv, argv[0] included.
    pub argv: Vec<String>,
    pub iterations: usize,
    pub warmup: usize,
    pub first_spawn: FirstSpawn,
    /// In [`Method::ALL`] order.
    pub methods: Vec<MethodReport>,
    /// zygote median / posix_spawn median (lower is better for the zygote).
    pub ratio: Option<f64>,
    /// posix_spawn median / zygote median, the inverse of `ratio`.
    pub speedup: Option<f64>,
    /// Runs (all methods) that did not exit with status 0.
    pub failures: usize,
    pub cache: CacheSummary,
    /// Wall time of the whole benchmark.
    pub wall_seconds: f64,
}

impl BenchReport {
    /// Runs, of every method, that did not exit with status 0. Non-zero must make the
    /// CLI exit non-zero.
    pub fn failures(&self) -> usize {
        self.failures
    }

    /// The results of one method.
    pub fn method(&self, method: Method) -> Option<&MethodReport> {
        self.methods.iter().find(|m| m.method == method)
    }

    /// The human-readable report: one line per method, then the ratio and any failures.
    pub fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "zygote bench: {} ({} timed + {} warm-up rounds, methods interleaved)",
            self.argv.join(" "),
            self.iterations,
            self.warmup
        )?;
        if self.path != self.program {
            writeln!(w, "  path: {}", self.path)?;
        }
        match self.first_spawn.build_us {
            Some(build) => writeln!(
                w,
                "  first zygote spawn (cache miss): {:.1} µs, image build {:.1} µs",
                self.first_spawn.total_us, build
            )?,
            None => writeln!(w, "  first zygote spawn (image already cached): {:.1} µs", self.first_spawn.total_us)?,
        }
        writeln!(w)?;
        writeln!(
            w,
            "  {:<21} {:>7} {:>10} {:>10} {:>10} {:>10}  {:>12}  {:>8}",
            "method", "n", "min µs", "median µs", "p90 µs", "max µs", "call med µs", "failures"
        )?;
        for m in &self.methods {
            let l = &m.latency;
            writeln!(
                w,
                "  {:<21} {:>7} {:>10.1} {:>10.1} {:>10.1} {:>10.1}  {:>12.1}  {:>8}",
                m.method.name(),
                l.n,
                l.min_us,
                l.median_us,
                l.p90_us,
                l.max_us,
                m.spawn_call.median_us,
                m.failures
            )?;
        }
        writeln!(w, "  (spawn and wait; call med: median time until the spawn call returned)")?;
        writeln!(w)?;
        match (self.ratio, self.speedup) {
            (Some(r), Some(s)) => writeln!(w, "  zygote / posix_spawn median: {r:.3}  (speed-up {s:.2}x)")?,
            _ => writeln!(w, "  zygote / posix_spawn median: n/a")?,
        }
        if self.cache.rebuilds > 0 {
            writeln!(w, "  warning: the image was rebuilt {} time(s) after the first spawn", self.cache.rebuilds)?;
        }
        if self.failures > 0 {
            writeln!(w, "  FAILED: {} run(s) did not exit 0", self.failures)?;
            for m in self.methods.iter().filter(|m| m.failures > 0) {
                writeln!(
                    w,
                    "    {}: {} of {} run(s); first: {}",
                    m.method,
                    m.failures,
                    m.runs,
                    m.first_failure.as_deref().unwrap_or("?")
                )?;
            }
        }
        Ok(())
    }
}

/// Find `program` like `execvp`: a name with a `/` is used as it is; otherwise the first
/// executable regular file of that name in `PATH` (default `/bin:/usr/bin`).
pub fn resolve_program(program: &OsStr) -> io::Result<PathBuf> {
    if program.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "empty program name"));
    }
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/bin:/usr/bin"));
    for dir in std::env::split_paths(&path) {
        // An empty PATH entry means the current directory.
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let candidate = dir.join(program);
        if is_executable_file(&candidate) {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(io::ErrorKind::NotFound, "command not found (not in PATH)"))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn cstring(bytes: &[u8], program: &str, what: &'static str) -> Result<CString, BenchError> {
    CString::new(bytes).map_err(|_| BenchError::Nul { program: program.to_owned(), what })
}

fn describe_exit(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(code) => format!("exited with status {code}"),
        ExitStatus::Signaled(sig) => format!("killed by signal {sig}"),
    }
}

/// Progress on stderr: a line rewritten at every 10% on a terminal; otherwise a line at
/// the start and one at the end.
struct Progress {
    tty: bool,
    total: usize,
    shown_decile: usize,
}

impl Progress {
    fn start(label: &str, warmup: usize, iterations: usize) -> Progress {
        let tty = io::stderr().is_terminal();
        let total = warmup + iterations;
        if tty {
            eprint!("\rzygote bench: {label}:   0% (0/{total} rounds)");
        } else {
            eprintln!(
                "zygote bench: {label}: {warmup} warm-up + {iterations} timed rounds of {} spawns",
                Method::ALL.len()
            );
        }
        Progress { tty, total, shown_decile: 0 }
    }

    fn round_done(&mut self, label: &str, done: usize) {
        if !self.tty || self.total == 0 {
            return;
        }
        let decile = done * 10 / self.total;
        if decile > self.shown_decile {
            self.shown_decile = decile;
            eprint!("\rzygote bench: {label}: {:3}% ({done}/{} rounds)", decile * 10, self.total);
        }
    }

    fn finish(&self, label: &str, wall: Duration) {
        if self.tty {
            // Clear the progress line so the table starts on a clean screen.
            eprint!("\r\x1b[K");
        } else {
            eprintln!("zygote bench: {label}: done in {:.1} s", wall.as_secs_f64());
        }
    }
}

/// One run: spawn call, spawn and wait, and how it ended if not with status 0.
struct Sample {
    call: Duration,
    total: Duration,
    failure: Option<String>,
}

/// Samples and failures of one method.
struct Tally {
    method: Method,
    calls: Vec<Duration>,
    totals: Vec<Duration>,
    runs: usize,
    failures: usize,
    first_failure: Option<String>,
}

impl Tally {
    fn new(method: Method, capacity: usize) -> Tally {
        Tally {
            method,
            calls: Vec::with_capacity(capacity),
            totals: Vec::with_capacity(capacity),
            runs: 0,
            failures: 0,
            first_failure: None,
        }
    }

    fn record(&mut self, round: Round, sample: Sample) {
        self.runs += 1;
        if let Round::Timed { .. } = round {
            self.calls.push(sample.call);
            self.totals.push(sample.total);
        }
        if let Some(how) = sample.failure {
            self.failures += 1;
            self.first_failure.get_or_insert_with(|| format!("{round}: {how}"));
        }
    }

    fn report(&self) -> MethodReport {
        MethodReport {
            method: self.method,
            latency: LatencyStats::from_samples(&self.totals),
            spawn_call: LatencyStats::from_samples(&self.calls),
            runs: self.runs,
            failures: self.failures,
            first_failure: self.first_failure.clone(),
        }
    }
}

/// Everything a round needs, prepared once.
struct Bench<'a> {
    zygote: &'a Zygote,
    label: String,
    path: PathBuf,
    argv: Vec<OsString>,
    null: OwnedFd,
    baseline: Baseline,
}

impl Bench<'_> {
    /// One zygote spawn and wait.
    fn zygote(&self, round: Round) -> Result<Sample, BenchError> {
        // Prepare the request, stdio fds included, before the clock starts (the baselines
        // build theirs once, in `Baseline::new`).
        let dup = || self.null.try_clone().map_err(|source| BenchError::DevNull { source });
        let (fd0, fd1, fd2) = (dup()?, dup()?, dup()?);
        let mut argv = self.argv.iter();
        let argv0 = argv.next().cloned().unwrap_or_default();
        let req =
            SpawnRequest::new(self.path.clone()).argv0(argv0).args(argv.cloned()).fd(fd0, 0).fd(fd1, 1).fd(fd2, 2);

        let start = Instant::now();
        let mut child = self.zygote.spawn(req).map_err(|e| BenchError::ZygoteSpawn {
            program: self.label.clone(),
            round,
            source: Box::new(e),
        })?;
        let call = start.elapsed();
        let status = child.wait().map_err(|source| BenchError::Wait {
            program: self.label.clone(),
            method: Method::Zygote,
            round,
            source,
        })?;
        // The launcher warming up for the next spawn is this spawn's work:
        // timed here, and finished before another method runs.
        self.zygote.settle_launchers();
        let total = start.elapsed();
        let failure = match status {
            ExitStatus::Exited(0) => None,
            other => Some(describe_exit(other)),
        };
        Ok(Sample { call, total, failure })
    }

    /// One baseline spawn and wait.
    fn baseline(&mut self, method: Method, round: Round) -> Result<Sample, BenchError> {
        let start = Instant::now();
        let pid = match method {
            Method::VforkExec => self.baseline.vfork_exec(),
            _ => self.baseline.posix_spawn(),
        }
        .map_err(|source| BenchError::Spawn { program: self.label.clone(), method, round, source })?;
        let call = start.elapsed();
        let status = baseline::wait_pid(pid).map_err(|source| BenchError::Wait {
            program: self.label.clone(),
            method,
            round,
            source,
        })?;
        let total = start.elapsed();
        let failure = (!baseline::wait_status_success(status)).then(|| baseline::describe_wait_status(status));
        Ok(Sample { call, total, failure })
    }

    /// One `std::process::Command` spawn and wait, same argv, environment and
    /// /dev/null stdio.
    fn command(&mut self, round: Round) -> Result<Sample, BenchError> {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut argv = self.argv.iter();
        let argv0 = argv.next().cloned().unwrap_or_default();
        let mut cmd = std::process::Command::new(&self.path);
        cmd.arg0(argv0)
            .args(argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(|source| BenchError::Spawn {
            program: self.label.clone(),
            method: Method::Command,
            round,
            source,
        })?;
        let call = start.elapsed();
        let status = child.wait().map_err(|source| BenchError::Wait {
            program: self.label.clone(),
            method: Method::Command,
            round,
            source,
        })?;
        let total = start.elapsed();
        let failure = (!status.success()).then(|| baseline::describe_wait_status(status.into_raw()));
        Ok(Sample { call, total, failure })
    }

    fn spawn(&mut self, method: Method, round: Round) -> Result<Sample, BenchError> {
        match method {
            Method::Zygote => self.zygote(round),
            Method::PosixSpawn | Method::VforkExec => self.baseline(method, round),
            Method::Command => self.command(round),
        }
    }
}

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
    let c_path = cstring(path.as_os_str().as_bytes(), &label, "program path")?;
    let c_argv = argv.iter().map(|a| cstring(a.as_bytes(), &label, "argument list")).collect::<Result<Vec<_>, _>>()?;
    let c_envp = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv, &label, "environment")
        })
        .collect::<Result<Vec<_>, _>>()?;

    let null = zygote_linux::dev_null().map_err(|source| BenchError::DevNull { source })?;
    let baseline = Baseline::new(&c_path, &c_argv, &c_envp, Stdio::Null).map_err(|source| BenchError::Setup {
        program: label.clone(),
        method: Method::PosixSpawn,
        source,
    })?;
    let mut bench = Bench { zygote, label: label.clone(), path: path.clone(), argv: argv.clone(), null, baseline };
    let mut tallies: Vec<Tally> = Method::ALL.iter().map(|&m| Tally::new(m, opts.iterations)).collect();

    // The first zygote spawn builds the image: time it on its own.
    let before = zygote.stats();
    let first = bench.zygote(Round::First)?;
    let first_total = first.total;
    let after_first = zygote.stats();
    tallies[0].record(Round::First, first);
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
        for tally in &mut tallies {
            let sample = bench.spawn(tally.method, round)?;
            tally.record(round, sample);
        }
        progress.round_done(&label, done + 1);
    }
    let wall = wall_start.elapsed();
    progress.finish(&label, wall);

    let end = zygote.stats();
    let methods: Vec<MethodReport> = tallies.iter().map(Tally::report).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_micros(x)).collect()
    }

    #[test]
    fn stats_of_odd_and_even_counts() {
        let s = LatencyStats::from_samples(&us(&[5, 1, 3, 2, 4]));
        assert_eq!(s.n, 5);
        assert_eq!((s.min_us, s.median_us, s.max_us), (1.0, 3.0, 5.0));
        assert!((s.p90_us - 4.6).abs() < 1e-9, "{}", s.p90_us);
        assert!((s.mean_us - 3.0).abs() < 1e-9);

        let s = LatencyStats::from_samples(&us(&[10, 40, 20, 30]));
        assert!((s.median_us - 25.0).abs() < 1e-9);
        assert_eq!(s.max_us, 40.0);
    }

    #[test]
    fn stats_of_nothing_and_one() {
        assert_eq!(LatencyStats::from_samples(&[]), LatencyStats::default());
        let s = LatencyStats::from_samples(&us(&[7]));
        assert_eq!((s.n, s.min_us, s.median_us, s.p90_us, s.max_us), (1, 7.0, 7.0, 7.0, 7.0));
    }

    #[test]
    fn resolve_uses_path_only_without_slash() {
        assert_eq!(resolve_program(OsStr::new("./x/y")).expect("as is"), PathBuf::from("./x/y"));
        let sh = resolve_program(OsStr::new("sh")).expect("sh is in PATH");
        assert!(sh.is_absolute() || sh.starts_with("."), "{}", sh.display());
        assert!(sh.ends_with("sh"));
        let e = resolve_program(OsStr::new("zygote-no-such-program-xyz")).expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(resolve_program(OsStr::new("")).is_err());
    }

    #[test]
    fn round_names_are_one_based() {
        assert_eq!(Round::Timed { n: 0, of: 10 }.to_string(), "iteration 1 of 10");
        assert_eq!(Round::Warmup { n: 4, of: 5 }.to_string(), "warm-up round 5 of 5");
        assert_eq!(Round::First.to_string(), "first spawn");
    }

    fn sample_report(failures: usize) -> BenchReport {
        let latency = LatencyStats::from_samples(&us(&[100, 120, 110]));
        let mk = |method, scale: f64, failures| MethodReport {
            method,
            latency: LatencyStats { median_us: latency.median_us * scale, ..latency.clone() },
            spawn_call: LatencyStats { median_us: 42.0, ..latency.clone() },
            runs: 4,
            failures,
            first_failure: (failures > 0).then(|| "iteration 2 of 3: exited with status 1".into()),
        };
        BenchReport {
            program: "tiny".into(),
            path: "/tmp/tiny".into(),
            argv: vec!["tiny".into(), "a".into()],
            iterations: 3,
            warmup: 1,
            first_spawn: FirstSpawn { total_us: 900.0, build_us: Some(800.0) },
            methods: vec![
                mk(Method::Zygote, 1.0, failures),
                mk(Method::PosixSpawn, 4.0, 0),
                mk(Method::VforkExec, 3.5, 0),
                mk(Method::Command, 4.5, 0),
            ],
            ratio: Some(0.25),
            speedup: Some(4.0),
            failures,
            cache: CacheSummary { entries: 1, bytes: 4096, hits: 4, misses: 1, builds: 1, rebuilds: 0 },
            wall_seconds: 0.01,
        }
    }

    #[test]
    fn table_shows_every_method_ratio_and_failures() {
        let mut out = Vec::new();
        sample_report(0).write_table(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        for needle in ["zygote ", "posix_spawn", "vfork+execve", "0.250", "4.00x", "image build 800.0"] {
            assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
        }
        assert!(!text.contains("FAILED"));

        let mut out = Vec::new();
        sample_report(2).write_table(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("FAILED: 2 run(s)"), "{text}");
        assert!(text.contains("exited with status 1"), "{text}");
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v = serde_json::to_value(sample_report(0)).expect("json");
        assert_eq!(v["methods"][0]["method"], "zygote");
        assert_eq!(v["methods"][1]["method"], "posix_spawn");
        assert_eq!(v["methods"][2]["method"], "vfork+execve");
        assert_eq!(v["methods"][0]["n"], 3);
        assert!(v["methods"][0]["median_us"].is_number());
        assert_eq!(v["methods"][0]["spawn_call"]["median_us"], 42.0);
        assert_eq!(v["ratio"], 0.25);
        assert_eq!(v["speedup"], 4.0);
        assert_eq!(v["failures"], 0);
        assert_eq!(v["first_spawn"]["build_us"], 800.0);
    }
}
