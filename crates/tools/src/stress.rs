//! `zygote stress`: a launch storm through the daemon with cache churn, checking every
//! child's output and status, then the daemon for leaks.
//!
//! ## Programs
//!
//! `--programs LIST`: entries separated by `,`; each entry is words separated by spaces
//! (or tabs): the program (a path, or a name looked up in `PATH` as `zygote spawn` does,
//! `#!` scripts included), then its arguments. A backslash makes the next `,`, space, tab
//! or backslash part of a word: `/bin/echo a\,b c,./tiny` is `echo` with `a,b` and `c`,
//! then `./tiny` alone. Empty entries are an error.
//!
//! ## The check
//!
//! Each program is first run once directly (`std::process::Command`, this process's
//! environment and directory, stdin and stderr `/dev/null`, stdout a pipe). It must exit
//! with status 0; its stdout is the expected output. Through the daemon, a round is
//! `Spawn` (the executable, then `/dev/null`, the write end of a fresh pipe, `/dev/null`
//! as fds 0, 1 and 2), `Wait`, and reading the pipe to EOF. A round passes when the
//! program exits with status 0 and its stdout equals the direct run's byte for byte.
//! Anything else is a failure: another status or a signal, other output, a refused
//! `Spawn` or `Wait`, or no EOF within 60 s (the connection is then dropped, which makes
//! the daemon kill the child, and a new one is made). A broken connection or protocol
//! error stops the run.
//!
//! ## Order
//!
//! 1. Without `--socket`, a private daemon is started: this executable, `daemon --socket
//!    DIR/daemon.sock --cache-entries E --grace-secs 1` in a fresh temporary directory,
//!    its log in `DIR/daemon.log`; E defaults to one image fewer than the distinct
//!    programs (at least 1), so the cache churns. It is stopped at the end (SIGTERM, then
//!    SIGKILL after 10 s) and reaped, and the directory removed.
//! 2. The daemon's pid: the private daemon's, or the peer of the connection (SO_PEERCRED).
//!    A monitor connection stays open for the whole run.
//! 3. Warm-up: one client runs every program once, in order.
//! 4. Baseline snapshot (below), once the daemon is quiet.
//! 5. The storm: C client threads, each with its own connection, start together and run
//!    N rounds each; client c's round r runs program (c + r) mod P. Meanwhile the monitor
//!    polls `Stats` every 200 ms and records the largest cache entries and bytes seen.
//!    Latency is from sending `Spawn` to receiving `Exited` (p50, p99, max); throughput is
//!    rounds that passed divided by the storm's wall time.
//! 6. Final snapshot, once the daemon is quiet again, and the leak check.
//!
//! ## Leak check
//!
//! A snapshot is taken when the daemon is quiet: `live_children` 0, `open_connections` 1
//! (the monitor) and no zombie children; it waits up to 20 s for that. It records the
//! daemon's fds (`/proc/PID/fd`), the memfds among them (link target containing
//! `memfd:`), its zombie children (`/proc/*/stat` with its pid as parent, state `Z`), and
//! the cached images from `Stats`. An image holds one fd per sealed object (memfds named
//! `zygote:...`) and one per file it maps (the program, and for a dynamically linked
//! program each library); these counts come from preparing each program once in this
//! process (the same preparer, so the same objects and files; the daemon's keys come from
//! its `Spawned` replies). With `img(S)` the sum of (objects + files) and `obj(S)` the
//! sum of objects over the images cached in snapshot S, the run leaks nothing when:
//!
//! - `fds(final) - fds(baseline) <= img(final) - img(baseline) + 2 (L(final) - L(baseline))`,
//!   with `L(S)` the idle pre-started launchers `Stats` reports (each holds its control
//!   socket and pidfd in the daemon): every fd the daemon gained is an fd of an image it
//!   caches now or of a launcher waiting now (and, as no image is cached twice and the
//!   cache holds at most E entries, the fds of images are bounded by E images);
//! - `memfds(final) - memfds(baseline) <= obj(final) - obj(baseline)`, and in both
//!   snapshots the `zygote:` memfds number exactly `obj(S)`: no sealed object outlives
//!   its image;
//! - no zombies, no live children, no open connection but the monitor;
//! - `cache.entries <= cache.max_entries` and `cache.bytes <= cache.max_bytes`, in both
//!   snapshots and in every monitor sample during the storm;
//! - no image listed with `cached: false` (an evicted image is only kept while a process
//!   started from it runs, and none does);
//! - every cached image is one of this run's programs (else its fds cannot be accounted
//!   for: an external daemon must be otherwise idle for the check to mean anything).
//!
//! The final snapshot is retaken (every 50 ms, up to 20 s) until the check passes, since
//! the daemon closes connections and pidfds asynchronously; the last one is reported.
//!
//! The run passes when no round failed (warm-up included) and the leak check passed (and
//! the private daemon exited with status 0); the CLI exits 1 otherwise.

use crate::bench_daemon::Latency;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use zygote_core::CacheConfig;
use zygote_core::CacheStats;
use zygote_core::exec::ResolveError;
use zygote_linux::exec as resolve;
use zygote_linux::{SpawnError, Zygote};
use zygote_protocol::client::{Client, ClientError};
use zygote_protocol::message::{DaemonStats, Request, Response, SpawnArgs};

/// Default number of client threads for the CLI.
pub const DEFAULT_CLIENTS: usize = 8;
/// Default spawn-and-wait rounds per client for the CLI.
pub const DEFAULT_SPAWNS_PER_CLIENT: usize = 100;
/// Longest a round may take before it counts as failed.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the daemon to become quiet (or the leak check to pass).
const SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// Longest wait for the private daemon to serve.
const DAEMON_START_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for the private daemon to exit after SIGTERM.
const DAEMON_STOP_LIMIT: Duration = Duration::from_secs(10);
/// Largest stdout kept per round; more is read and dropped (and fails the check).
const MAX_STDOUT: usize = 16 << 20;
/// How often the monitor asks for `Stats` during the storm.
const MONITOR_INTERVAL: Duration = Duration::from_millis(200);
/// Failure messages kept in the report.
const FAILURE_SAMPLES: usize = 20;

/// One `--programs` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
}

impl ProgramSpec {
    fn label(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// Split `--programs`: entries on `,`, words on spaces and tabs, `\` escaping the next
/// `,`, space, tab or `\`.
pub fn parse_programs(list: &str) -> Result<Vec<ProgramSpec>, StressError> {
    let mut entries: Vec<Vec<String>> = vec![Vec::new()];
    let mut word: Option<String> = None;
    let finish_word = |word: &mut Option<String>, entries: &mut Vec<Vec<String>>| {
        if let (Some(w), Some(e)) = (word.take(), entries.last_mut()) {
            e.push(w);
        }
    };
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | ' ' | '\t' | '\\')) => word.get_or_insert_with(String::new).push(n),
                Some(n) => {
                    return Err(StressError::Usage(format!(
                        "--programs: `\\{n}`: a backslash escapes only `,`, a space, a tab or `\\`"
                    )));
                }
                None => return Err(StressError::Usage("--programs: a backslash at the end".into())),
            },
            ',' => {
                finish_word(&mut word, &mut entries);
                entries.push(Vec::new());
            }
            ' ' | '\t' => finish_word(&mut word, &mut entries),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    finish_word(&mut word, &mut entries);
    entries
        .into_iter()
        .enumerate()
        .map(|(i, words)| {
            let mut it = words.into_iter().map(OsString::from);
            match it.next() {
                Some(program) => Ok(ProgramSpec { program, args: it.collect() }),
                None => Err(StressError::Usage(format!("--programs: entry {} is empty", i + 1))),
            }
        })
        .collect()
}

/// What to run.
#[derive(Clone, Debug)]
pub struct StressOptions {
    /// An external daemon's socket; `None`: start a private daemon.
    pub socket: Option<PathBuf>,
    pub programs: Vec<ProgramSpec>,
    /// Client threads (C). At least 1.
    pub clients: usize,
    /// Rounds per client (N). At least 1.
    pub spawns_per_client: usize,
    /// The private daemon's cache capacity; `None`: one fewer than the distinct images.
    pub cache_entries: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum StressError {
    #[error("stress: {0}")]
    Usage(String),
    #[error("stress: the current directory: {source}")]
    Cwd {
        #[source]
        source: io::Error,
    },
    #[error("stress: {source}")]
    Resolve {
        program: String,
        #[source]
        source: ResolveError,
    },
    #[error("stress: {program}: {path}: {source}")]
    Open {
        program: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("stress: {program}: running it directly: {source}")]
    DirectRun {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("stress: {program}: run directly, it {how}; the check needs a program that exits with status 0")]
    DirectStatus { program: String, how: String },
    #[error("stress: {program}: preparing its image in this process (to count its fds): {source}")]
    Prepare {
        program: String,
        #[source]
        source: Box<SpawnError>,
    },
    #[error("stress: {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("stress: the private daemon {what}; its log:\n{log}")]
    Daemon { what: String, log: String },
    #[error("stress: {what}: {source}")]
    Client {
        what: String,
        #[source]
        source: ClientError,
    },
    #[error("stress: client thread {client} panicked")]
    Panicked { client: usize },
}

impl StressError {
    /// 2 for bad options, the shell's 127/126 for programs that cannot be found or
    /// started, the client's code for a daemon that cannot be reached, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            StressError::Usage(_) => 2,
            StressError::Resolve { source, .. } => source.exit_code(),
            StressError::Open { .. } => 126,
            StressError::Prepare { source, .. } => source.exit_code(),
            StressError::Client { source, .. } => source.exit_code(),
            _ => 1,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StressError {
    let what = what.into();
    move |source| StressError::Io { what, source }
}

/// One program of the run.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramReport {
    /// The entry as given.
    pub program: String,
    /// The ELF file the daemon started (after PATH and `#!`).
    pub path: String,
    pub expected_stdout_bytes: usize,
    /// The daemon's key for its image (from `Spawned`), once seen.
    pub key: Option<String>,
    /// Fds an image of it holds: sealed objects plus mapped files.
    pub image_fds: usize,
    pub image_objects: usize,
    /// Storm and warm-up rounds of this program, and how many failed.
    pub rounds: usize,
    pub failures: usize,
}

/// The daemon at a quiet moment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// Whether it got quiet (no live children, only the monitor connected, no zombies).
    pub quiet: bool,
    pub fds: usize,
    pub memfds: usize,
    /// Memfds named `zygote:...`: sealed image objects.
    pub image_memfds: usize,
    pub cached_images: usize,
    /// Objects + files of the cached images (`img(S)`).
    pub cached_image_fds: usize,
    /// Objects of the cached images (`obj(S)`).
    pub cached_image_objects: usize,
    /// Idle pre-started launchers; each holds two of the daemon's fds (its
    /// control socket and pidfd).
    pub idle_launchers: u64,
    /// Cached images that are none of this run's programs.
    pub unknown_images: Vec<String>,
    /// Images listed with `cached: false`.
    pub stale_images: usize,
    pub zombies: Vec<i32>,
    pub live_children: u64,
    pub open_connections: u64,
    pub cache: CacheStats,
}

/// The leak check (see the module docs).
#[derive(Clone, Debug, Default, Serialize)]
pub struct LeakReport {
    pub baseline: Snapshot,
    #[serde(rename = "final")]
    pub after: Snapshot,
    pub fd_growth: i64,
    pub allowed_fd_growth: i64,
    pub memfd_growth: i64,
    pub allowed_memfd_growth: i64,
    /// Largest cache entries and bytes `Stats` showed during the storm.
    pub storm_max_entries: u64,
    pub storm_max_bytes: u64,
    pub storm_stats_samples: usize,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// Cache counters over the storm.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheActivity {
    pub max_entries: u64,
    pub max_bytes: u64,
    /// More distinct images than entries: the storm evicts and rebuilds.
    pub churn: bool,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub builds: u64,
}

/// Everything one `zygote stress` run found. Serialises to the `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct StressReport {
    pub socket: String,
    pub private_daemon: bool,
    pub daemon_pid: i32,
    pub clients: usize,
    pub spawns_per_client: usize,
    pub programs: Vec<ProgramReport>,
    pub warmup_rounds: usize,
    pub warmup_failures: usize,
    /// Storm rounds (C x N), those that passed, and failures of the whole run (warm-up
    /// included).
    pub rounds: usize,
    pub ok: usize,
    pub failures: usize,
    /// The first failures, described.
    pub failure_samples: Vec<String>,
    pub wall_seconds: f64,
    /// Rounds that passed per second of storm.
    pub throughput_per_sec: f64,
    /// `Spawn` sent to `Exited` received.
    pub latency: Latency,
    /// `Spawn` sent to `Spawned` received.
    pub spawn_latency: Latency,
    pub cache: CacheActivity,
    pub leaks: LeakReport,
    /// How the private daemon ended once told to stop.
    pub daemon_exit: Option<String>,
    pub passed: bool,
}

impl StressReport {
    /// The human-readable report.
    pub fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let who = if self.private_daemon { "private daemon" } else { "daemon" };
        writeln!(
            w,
            "zygote stress: {} clients x {} spawns, {} programs, {who} pid {} ({})",
            self.clients,
            self.spawns_per_client,
            self.programs.len(),
            self.daemon_pid,
            self.socket
        )?;
        let c = &self.cache;
        writeln!(
            w,
            "  cache: {} entries max{}; {} hits, {} misses, {} evictions, {} builds during the storm",
            c.max_entries,
            if c.churn { " (churning)" } else { " (no churn: at least as many entries as images)" },
            c.hits,
            c.misses,
            c.evictions,
            c.builds
        )?;
        writeln!(
            w,
            "  rounds: {} of {} passed, plus {} warm-up; {} failed in all",
            self.ok, self.rounds, self.warmup_rounds, self.failures
        )?;
        writeln!(w, "  throughput: {:.0} spawns/s over {:.2} s", self.throughput_per_sec, self.wall_seconds)?;
        let l = &self.latency;
        writeln!(
            w,
            "  latency (spawn+wait): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs; spawn call p50 {:.0} µs",
            l.p50_us, l.p99_us, l.max_us, self.spawn_latency.p50_us
        )?;
        for p in &self.programs {
            writeln!(
                w,
                "    {:<40} {:>6} rounds {:>4} failed  {} fds/image",
                p.program, p.rounds, p.failures, p.image_fds
            )?;
        }
        let k = &self.leaks;
        writeln!(
            w,
            "  daemon fds: {} -> {} (growth {}, cached images and idle launchers account for {}); memfds {} -> {} (growth {}, allowed {})",
            k.baseline.fds,
            k.after.fds,
            k.fd_growth,
            k.allowed_fd_growth,
            k.baseline.memfds,
            k.after.memfds,
            k.memfd_growth,
            k.allowed_memfd_growth
        )?;
        writeln!(
            w,
            "  zombies: {}; cache {} / {} entries, {} / {} bytes (storm max {} entries, {} bytes)",
            k.after.zombies.len(),
            k.after.cache.entries,
            k.after.cache.max_entries,
            k.after.cache.bytes,
            k.after.cache.max_bytes,
            k.storm_max_entries,
            k.storm_max_bytes
        )?;
        if let Some(e) = &self.daemon_exit {
            writeln!(w, "  private daemon: {e}")?;
        }
        for p in &k.problems {
            writeln!(w, "  LEAK: {p}")?;
        }
        for f in &self.failure_samples {
            writeln!(w, "  FAILED: {f}")?;
        }
        writeln!(w, "  {}", if self.passed { "PASSED" } else { "FAILED" })?;
        Ok(())
    }
}

/// A program, with everything the rounds need built once.
struct Program {
    label: String,
    daemon_path: PathBuf,
    request: Request,
    expected: Vec<u8>,
    image_fds: usize,
    image_objects: usize,
}

fn progress(msg: fmt::Arguments<'_>) {
    eprintln!("zygote stress: {msg}");
}

fn env_entry(key: &OsStr, value: &OsStr) -> Vec<u8> {
    let mut kv = Vec::with_capacity(key.len() + value.len() + 1);
    kv.extend_from_slice(key.as_bytes());
    kv.push(b'=');
    kv.extend_from_slice(value.as_bytes());
    kv
}

fn describe_std(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("ended ({st})"),
    }
}

/// Resolve, run directly, and count the image's fds, for every entry.
fn prepare(specs: &[ProgramSpec]) -> Result<(Vec<Program>, usize), StressError> {
    let cwd = std::env::current_dir().map_err(|source| StressError::Cwd { source })?;
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let environ: Vec<Vec<u8>> = env.iter().map(|(k, v)| env_entry(k, v)).collect();
    let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str());
    let zygote = Zygote::new(CacheConfig::default())
        .map_err(|e| StressError::Prepare { program: "(the stub)".into(), source: Box::new(e) })?;
    let mut keys = BTreeSet::new();
    let mut programs = Vec::with_capacity(specs.len());
    for spec in specs {
        let label = spec.label();
        let found = resolve::find_program(&spec.program, path_var, Some(&cwd))
            .map_err(|source| StressError::Resolve { program: label.clone(), source })?;
        let mut argv = vec![spec.program.clone()];
        argv.extend(spec.args.iter().cloned());
        let launch = resolve::follow_interpreters(found, argv, Some(&cwd))
            .map_err(|source| StressError::Resolve { program: label.clone(), source })?;

        let out = Command::new(&spec.program)
            .args(&spec.args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|source| StressError::DirectRun { program: label.clone(), source })?;
        if !out.status.success() {
            return Err(StressError::DirectStatus { program: label, how: describe_std(out.status) });
        }

        let image = zygote
            .prepare(&launch.program)
            .map_err(|e| StressError::Prepare { program: label.clone(), source: Box::new(e) })?;
        keys.insert(image.key().to_string());
        let request = Request::Spawn(SpawnArgs {
            argv: launch.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            environ: environ.clone(),
            name: launch.exec_path.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default(),
            cwd: cwd.as_os_str().as_bytes().to_vec(),
            fds: vec![0, 1, 2],
            path: launch.program.as_os_str().as_bytes().to_vec(),
            detach: false,
        });
        programs.push(Program {
            label,
            daemon_path: launch.program,
            request,
            expected: out.stdout,
            image_fds: image.objects().len() + image.files().len(),
            image_objects: image.objects().len(),
        });
    }
    Ok((programs, keys.len()))
}

/// The private daemon: started in a temporary directory, stopped and reaped on drop.
struct PrivateDaemon {
    child: Option<std::process::Child>,
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

impl PrivateDaemon {
    fn start(entries: usize) -> Result<PrivateDaemon, StressError> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("zygote-stress-{}-{nanos:08x}", std::process::id()));
        fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let mut d = PrivateDaemon { child: None, socket: dir.join("daemon.sock"), log: dir.join("daemon.log"), dir };
        let exe = std::env::current_exe().map_err(io_err("finding this executable"))?;
        let log = File::create(&d.log).map_err(io_err(format!("creating {}", d.log.display())))?;
        let child = Command::new(&exe)
            .arg("daemon")
            .arg("--socket")
            .arg(&d.socket)
            .arg("--cache-entries")
            .arg(entries.to_string())
            .arg("--grace-secs")
            .arg("1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io_err(format!("starting {} daemon", exe.display())))?;
        d.child = Some(child);
        let start = Instant::now();
        loop {
            if Client::connect(&d.socket).is_ok() {
                return Ok(d);
            }
            if let Some(c) = d.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                d.child = None;
                return Err(StressError::Daemon {
                    what: format!("{} before serving", describe_std(st)),
                    log: d.log_tail(),
                });
            }
            if start.elapsed() > DAEMON_START_LIMIT {
                return Err(StressError::Daemon {
                    what: format!("did not serve on {} within {DAEMON_START_LIMIT:?}", d.socket.display()),
                    log: d.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let mut start = text.len().saturating_sub(4000);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }

    /// SIGTERM, wait, SIGKILL if it takes too long; how it ended.
    fn stop(&mut self) -> Option<String> {
        let mut c = self.child.take()?;
        let pid = rustix::process::Pid::from_raw(c.id() as i32)?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let start = Instant::now();
        loop {
            match c.try_wait() {
                Ok(Some(st)) => return Some(describe_std(st)),
                Ok(None) if start.elapsed() < DAEMON_STOP_LIMIT => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = c.kill();
                    let st = c.wait().ok().map_or_else(|| "could not be reaped".to_string(), describe_std);
                    return Some(format!("did not exit within {DAEMON_STOP_LIMIT:?} of SIGTERM; killed: {st}"));
                }
            }
        }
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// How one round ended.
struct RoundResult {
    /// Spawn call and whole round, when it got to the end.
    times: Option<(Duration, Duration)>,
    key: Option<String>,
    failure: Option<String>,
    /// The connection is in an unknown state: make a new one.
    reconnect: bool,
}

impl RoundResult {
    fn failed(how: String) -> RoundResult {
        RoundResult { times: None, key: None, failure: Some(how), reconnect: false }
    }
}

/// Read `fd` to EOF (keeping at most [`MAX_STDOUT`] bytes) until `deadline`.
/// `Ok((bytes, overflowed, eof))`.
fn drain(fd: &OwnedFd, deadline: Instant) -> io::Result<(Vec<u8>, bool, bool)> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut out = Vec::new();
    let mut overflow = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((out, overflow, false));
        }
        let ts = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return Ok((out, overflow, true)),
            Ok(n) => {
                let keep = n.min(MAX_STDOUT.saturating_sub(out.len()));
                out.extend_from_slice(&buf[..keep]);
                overflow |= keep < n;
            }
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// How `got` differs from `want`, for a failure message.
fn difference(got: &[u8], want: &[u8]) -> String {
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    let show = |b: &[u8]| {
        let end = (at + 40).min(b.len());
        format!("{:?}", String::from_utf8_lossy(&b[at.min(end)..end]))
    };
    format!(
        "stdout differs from the direct run's at byte {at} ({} bytes, expected {}): got {}, expected {}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    )
}

/// A client thread's connection and open files.
struct Worker {
    index: usize,
    socket: PathBuf,
    client: Client,
    exes: Vec<File>,
    null: OwnedFd,
}

/// What a worker did.
#[derive(Default)]
struct Tally {
    /// (program, spawn call, round).
    samples: Vec<(usize, Duration, Duration)>,
    rounds: Vec<usize>,
    failures: Vec<(usize, String)>,
    keys: BTreeMap<usize, String>,
}

impl Worker {
    fn connect(index: usize, socket: &Path, programs: &[Program]) -> Result<Worker, StressError> {
        let client = Client::connect(socket)
            .map_err(|source| StressError::Client { what: format!("client {index}: connecting"), source })?;
        let exes = programs
            .iter()
            .map(|p| {
                File::open(&p.daemon_path).map_err(|source| StressError::Open {
                    program: p.label.clone(),
                    path: p.daemon_path.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let null = zygote_linux::dev_null().map_err(io_err("opening /dev/null"))?;
        Ok(Worker { index, socket: socket.to_path_buf(), client, exes, null })
    }

    /// `Spawn`, `Wait`, stdout to EOF, and the check.
    fn round(&mut self, p: &Program, index: usize) -> Result<RoundResult, ClientError> {
        let exe = self.exes.get(index).ok_or_else(|| ClientError::Protocol(format!("no program {index}")))?;
        let (out_r, out_w) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| ClientError::Io(e.into()))?;
        let null = self.null.as_fd();
        let start = Instant::now();
        self.client.send(&p.request, &[exe.as_fd(), null, out_w.as_fd(), null])?;
        // Ours closed, only the child's copy keeps the pipe open.
        drop(out_w);
        let (pid, key, pidfd) = match self.client.recv() {
            Ok((Response::Spawned { pid, key }, fds)) => (pid, key, fds),
            Ok((other, _)) => return Err(ClientError::Protocol(format!("expected Spawned, got {other:?}"))),
            Err(ClientError::Server { code, message }) => {
                return Ok(RoundResult::failed(format!("Spawn refused ({}): {message}", code.fidl_name())));
            }
            Err(e) => return Err(e),
        };
        let call = start.elapsed();
        self.client.send(&Request::Wait { pid }, &[])?;
        let (stdout, overflow, eof) = drain(&out_r, start + ROUND_TIMEOUT)?;
        if !eof {
            return Ok(RoundResult {
                times: None,
                key: Some(key),
                failure: Some(format!("pid {pid}: no EOF on its stdout within {ROUND_TIMEOUT:?}")),
                reconnect: true,
            });
        }
        let reply = match self.client.recv() {
            Ok((reply, _)) => reply,
            Err(ClientError::Server { code, message }) => {
                let how = format!("pid {pid}: Wait refused ({}): {message}", code.fidl_name());
                return Ok(RoundResult { key: Some(key), ..RoundResult::failed(how) });
            }
            Err(e) => return Err(e),
        };
        let total = start.elapsed();
        drop(pidfd);
        let status = match reply {
            Response::Exited { code: Some(0), .. } => None,
            Response::Exited { code: Some(c), .. } => Some(format!("pid {pid} exited with status {c}")),
            Response::Exited { signal: Some(s), .. } => Some(format!("pid {pid} was killed by signal {s}")),
            Response::Exited { .. } => Some(format!("pid {pid} ended, the daemon could not tell how")),
            other => return Err(ClientError::Protocol(format!("expected Exited, got {other:?}"))),
        };
        let failure = status.or_else(|| {
            if overflow {
                Some(format!("pid {pid}: more than {MAX_STDOUT} bytes on stdout"))
            } else if stdout != p.expected {
                Some(format!("pid {pid}: {}", difference(&stdout, &p.expected)))
            } else {
                None
            }
        });
        Ok(RoundResult { times: Some((call, total)), key: Some(key), failure, reconnect: false })
    }

    fn run(&mut self, programs: &[Program], rounds: usize, cycle: bool, tally: &mut Tally) -> Result<(), StressError> {
        for r in 0..rounds {
            let index = if cycle { (self.index + r) % programs.len() } else { r % programs.len() };
            let p = &programs[index];
            let res = self.round(p, index).map_err(|source| StressError::Client {
                what: format!("client {}, {}", self.index, p.label),
                source,
            })?;
            tally.rounds.push(index);
            if let Some(k) = res.key {
                tally.keys.entry(index).or_insert(k);
            }
            if let Some((call, total)) = res.times
                && res.failure.is_none()
            {
                tally.samples.push((index, call, total));
            }
            if let Some(f) = res.failure {
                tally.failures.push((index, format!("client {}, {}: {f}", self.index, p.label)));
            }
            if res.reconnect {
                // Dropping the old connection makes the daemon kill what it started.
                self.client = Client::connect(&self.socket).map_err(|source| StressError::Client {
                    what: format!("client {}: reconnecting", self.index),
                    source,
                })?;
            }
        }
        Ok(())
    }
}

fn stats(client: &mut Client) -> Result<DaemonStats, StressError> {
    match client.call(&Request::Stats, &[]) {
        Ok((Response::Stats(s), _)) => Ok(s),
        Ok((other, _)) => Err(StressError::Client {
            what: "Stats".into(),
            source: ClientError::Protocol(format!("expected Stats, got {other:?}")),
        }),
        Err(source) => Err(StressError::Client { what: "Stats".into(), source }),
    }
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

/// Pids of the daemon's children in state Z (from `/proc/*/stat`).
fn zombies_of(ppid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
        let Some(rest) = text.rfind(')').map(|i| &text[i + 1..]) else { continue };
        let mut it = rest.split_ascii_whitespace();
        let (Some(state), Some(parent)) = (it.next(), it.next().and_then(|p| p.parse::<i32>().ok())) else {
            continue;
        };
        if parent == ppid && state == "Z" {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// What the accounting knows about images: daemon key -> (fds, objects).
type Costs = BTreeMap<String, (usize, usize)>;

fn snapshot(monitor: &mut Client, pid: i32, costs: &Costs) -> Result<Snapshot, StressError> {
    let s = stats(monitor)?;
    let zombies = zombies_of(pid);
    let (fds, memfds, image_memfds) = daemon_fds(pid)?;
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
fn settled(
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

/// The leak rules (module docs) on two snapshots; the problems found.
fn leak_problems(base: &Snapshot, end: &Snapshot, storm_max: (u64, u64)) -> Vec<String> {
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

/// (fd growth, growth the cached images and idle launchers account for).
fn growth(base: &Snapshot, end: &Snapshot) -> (i64, i64) {
    let held = |s: &Snapshot| s.cached_image_fds as i64 + 2 * s.idle_launchers as i64;
    (end.fds as i64 - base.fds as i64, held(end) - held(base))
}

fn memfd_growth(base: &Snapshot, end: &Snapshot) -> (i64, i64) {
    (end.memfds as i64 - base.memfds as i64, end.cached_image_objects as i64 - base.cached_image_objects as i64)
}

/// Record the fd costs of the images behind the daemon keys `t` saw.
fn learn(costs: &mut Costs, programs: &[Program], t: &Tally) {
    for (&i, key) in &t.keys {
        if let Some(p) = programs.get(i) {
            costs.entry(key.clone()).or_insert((p.image_fds, p.image_objects));
        }
    }
}

/// Run the storm and the checks. Rounds that fail and leaks found do not stop the run:
/// they are in the report ([`StressReport::passed`] false). Errors stop it.
pub fn run(opts: &StressOptions) -> Result<StressReport, StressError> {
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
    progress(format_args!("{} program(s): running each once directly", opts.programs.len()));
    let (programs, distinct) = prepare(&opts.programs)?;

    let mut private = match &opts.socket {
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
    let mut monitor = Client::connect(&socket)
        .map_err(|source| StressError::Client { what: format!("connecting to {}", socket.display()), source })?;
    let daemon_pid = match private.as_ref().and_then(PrivateDaemon::pid) {
        Some(pid) => pid,
        None => rustix::net::sockopt::socket_peercred(monitor.socket())
            .map(|c| c.pid.as_raw_nonzero().get())
            .map_err(|e| StressError::Io { what: "SO_PEERCRED on the daemon connection".into(), source: e.into() })?,
    };

    // Warm-up: every program once, one client.
    let mut costs: Costs = BTreeMap::new();
    let mut warm = Tally::default();
    {
        let mut w = Worker::connect(0, &socket, &programs)?;
        w.run(&programs, programs.len(), false, &mut warm)?;
    }
    learn(&mut costs, &programs, &warm);
    progress(format_args!(
        "warm-up: {} rounds, {} failed; waiting for the daemon to settle",
        warm.rounds.len(),
        warm.failures.len()
    ));
    let mut last_fds = None;
    let baseline = settled(&mut monitor, daemon_pid, &costs, |s| {
        // Two equal fd counts in a row: nothing is closing any more.
        let stable = last_fds == Some(s.fds);
        last_fds = Some(s.fds);
        stable
    })?;

    // The storm.
    progress(format_args!("storm: {} clients x {} rounds", opts.clients, opts.spawns_per_client));
    let mut workers =
        (0..opts.clients).map(|c| Worker::connect(c, &socket, &programs)).collect::<Result<Vec<_>, _>>()?;
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(opts.clients + 1);
    let (storm, tallies, monitor_result) = std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .iter_mut()
            .map(|w| {
                let (programs, barrier) = (&programs, &barrier);
                s.spawn(move || {
                    let mut t = Tally::default();
                    barrier.wait();
                    w.run(programs, opts.spawns_per_client, true, &mut t).map(|()| t)
                })
            })
            .collect();
        let monitor = &mut monitor;
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
        let tallies: Vec<Result<Tally, StressError>> = handles
            .into_iter()
            .enumerate()
            .map(|(c, h)| h.join().unwrap_or(Err(StressError::Panicked { client: c })))
            .collect();
        let storm = start.elapsed();
        stop.store(true, Ordering::SeqCst);
        let monitor_result = watcher.join().unwrap_or(Err(StressError::Panicked { client: usize::MAX }));
        (storm, tallies, monitor_result)
    });
    drop(workers);
    let tallies = tallies.into_iter().collect::<Result<Vec<_>, _>>()?;
    let (storm_max_entries, storm_max_bytes, storm_stats_samples) = monitor_result?;
    for t in &tallies {
        learn(&mut costs, &programs, t);
    }
    let rounds: usize = tallies.iter().map(|t| t.rounds.len()).sum();
    let storm_failures: usize = tallies.iter().map(|t| t.failures.len()).sum();
    progress(format_args!(
        "storm: {rounds} rounds in {:.2} s, {storm_failures} failed; waiting for the daemon to settle",
        storm.as_secs_f64()
    ));

    let storm_max = (storm_max_entries, storm_max_bytes);
    let after = settled(&mut monitor, daemon_pid, &costs, |s| leak_problems(&baseline, s, storm_max).is_empty())?;
    let problems = leak_problems(&baseline, &after, storm_max);
    drop(monitor);
    let daemon_exit = private.as_mut().and_then(PrivateDaemon::stop);
    let daemon_ok = daemon_exit.as_deref().is_none_or(|e| e == "exited with status 0");
    drop(private);

    let (fd_growth, allowed_fd_growth) = growth(&baseline, &after);
    let (memfd_growth, allowed_memfd_growth) = memfd_growth(&baseline, &after);
    let all = || std::iter::once(&warm).chain(&tallies);
    let samples: Vec<(usize, Duration, Duration)> = tallies.iter().flat_map(|t| t.samples.iter().copied()).collect();
    let failures: Vec<&(usize, String)> = all().flat_map(|t| &t.failures).collect();
    let keys: BTreeMap<usize, &String> = all().flat_map(|t| t.keys.iter().map(|(&i, k)| (i, k))).collect();
    let program_reports = programs
        .iter()
        .enumerate()
        .map(|(i, p)| ProgramReport {
            program: p.label.clone(),
            path: p.daemon_path.to_string_lossy().into_owned(),
            expected_stdout_bytes: p.expected.len(),
            key: keys.get(&i).map(|k| (*k).clone()),
            image_fds: p.image_fds,
            image_objects: p.image_objects,
            rounds: all().map(|t| t.rounds.iter().filter(|&&r| r == i).count()).sum(),
            failures: failures.iter().filter(|(r, _)| *r == i).count(),
        })
        .collect();
    let ok = samples.len();
    let leaks = LeakReport {
        ok: problems.is_empty(),
        baseline: baseline.clone(),
        after: after.clone(),
        fd_growth,
        allowed_fd_growth,
        memfd_growth,
        allowed_memfd_growth,
        storm_max_entries,
        storm_max_bytes,
        storm_stats_samples,
        problems,
    };
    let mut failure_samples: Vec<String> = failures.iter().take(FAILURE_SAMPLES).map(|(_, f)| f.clone()).collect();
    if !daemon_ok && let Some(e) = &daemon_exit {
        failure_samples.push(format!("the private daemon {e} when stopped"));
    }
    let passed = failures.is_empty() && leaks.ok && daemon_ok;
    Ok(StressReport {
        socket: socket.to_string_lossy().into_owned(),
        private_daemon: opts.socket.is_none(),
        daemon_pid,
        clients: opts.clients,
        spawns_per_client: opts.spawns_per_client,
        programs: program_reports,
        warmup_rounds: warm.rounds.len(),
        warmup_failures: warm.failures.len(),
        rounds,
        ok,
        failures: failures.len(),
        failure_samples,
        wall_seconds: storm.as_secs_f64(),
        throughput_per_sec: if storm.is_zero() { 0.0 } else { ok as f64 / storm.as_secs_f64() },
        latency: Latency::from_samples(samples.iter().map(|s| s.2)),
        spawn_latency: Latency::from_samples(samples.iter().map(|s| s.1)),
        cache: CacheActivity {
            max_entries: after.cache.max_entries,
            max_bytes: after.cache.max_bytes,
            churn: distinct as u64 > after.cache.max_entries,
            hits: after.cache.hits.saturating_sub(baseline.cache.hits),
            misses: after.cache.misses.saturating_sub(baseline.cache.misses),
            evictions: after.cache.evictions.saturating_sub(baseline.cache.evictions),
            builds: after.cache.builds.saturating_sub(baseline.cache.builds),
        },
        leaks,
        daemon_exit,
        passed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn latency_percentiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let l = Latency::from_samples(d.iter().copied());
        assert_eq!(l.n, 100);
        assert!((l.p50_us - 50.5).abs() < 1e-6, "{l:?}");
        assert!((l.p99_us - 99.01).abs() < 1e-6, "{l:?}");
        assert_eq!(l.max_us, 100.0);
        assert_eq!(Latency::from_samples(std::iter::empty()), Latency::default());
    }

    #[test]
    fn differences_are_located() {
        let d = difference(b"hello world", b"hello there");
        assert!(d.contains("at byte 6") && d.contains("world") && d.contains("there"), "{d}");
        let d = difference(b"abc", b"abcdef");
        assert!(d.contains("at byte 3") && d.contains("3 bytes, expected 6"), "{d}");
    }

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
