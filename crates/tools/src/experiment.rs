//! `zygote experiment`: what N long-lived instances of a program cost in memory when each
//! is started by plain exec, against N started from the zygote's image.
//!
//! Two methods start the same program with the same argv (argv[0] as given), environment
//! (this process's), working directory (this one) and stdio (`/dev/null` on fds 0 and 2;
//! fd 1 is `/dev/null` too, or a pipe with `--ready-line`):
//!
//! - `exec`: `std::process::Command` (glibc `posix_spawn` + `execve`): the kernel loads
//!   the program and it relocates itself, in every instance;
//! - `zygote`: [`Zygote::spawn`] from an image this process prepared once (relocated and
//!   sealed: every instance maps the same pages copy-on-write).
//!
//! The methods run one after the other, never at the same time (the zygote's File regions
//! map the same program file an exec'd instance maps, and Pss would split those pages
//! between the two sets): first every step of `exec`, then its instances are killed and
//! reaped, then every step of `zygote`, then those are killed and reaped.
//!
//! ## Steps
//!
//! Instances are added in steps: the counts measured are 1, K, 2K, ... and N (`--step K`;
//! every count at most N, N always last). At each count, once the new instances are ready,
//! every instance alive is measured.
//!
//! ## Readiness
//!
//! The program must stay alive (initialise, then `pause()`, say): an instance that ends
//! before it is measured stops the experiment with an error. An instance is ready:
//!
//! - with `--ready-line TEXT`: once it printed a line starting with TEXT on its stdout
//!   (a pipe; output after that line stays unread in the pipe), within `--ready-timeout`;
//! - otherwise: `--settle` (default 200 ms) after the last spawn of the step. Start-up work
//!   that takes longer is then measured half done; use `--ready-line` for such programs.
//!
//! ## Measurements
//!
//! Per instance, from `/proc/PID/smaps_rollup` (whole process, every mapping): `rss`,
//! `pss`, `uss` (= `Private_Clean + Private_Dirty`: what killing it alone would free), and
//! Pss split into `pss_anon`, `pss_file` and `pss_shmem` (memfd pages, the zygote's sealed
//! objects among them, are shmem), in bytes; and their totals over the instances alive.
//! Pss divides every page among all processes mapping it, processes outside the
//! experiment included (a dynamically linked program shares libc with the rest of the
//! system), so a total is what the instances are charged, not what they alone hold. The
//! zygote's sealed objects are charged to the instances that map their pages; pages no
//! instance maps stay resident in this process's memfds and are in no instance's Pss:
//! the report gives them as `image.sealed_resident_bytes`.
//!
//! ## Output
//!
//! A directory (`--out`, default `zygote-experiment`) with `report.json` (every sample:
//! method, instance count, per-instance and total numbers; the image; the summary),
//! `pss.svg` and `pss.png` (total Pss against the number of instances, both methods).
//! Progress goes to stderr: a bar redrawn in place on a terminal, a line per step
//! otherwise. The summary table compares total Pss at every count.
//!
//! ## Cleanup
//!
//! Every instance started is killed (SIGKILL) and reaped when the experiment ends: after
//! each method, on an error, on a panic (the set's `Drop`), and on SIGINT or SIGTERM
//! (handled: a flag the loops check at least every 50 ms; the run then ends with
//! [`ExperimentError::Interrupted`], exit status 128 + the signal). Only SIGKILL of the
//! experiment itself leaves instances behind.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, IsTerminal, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;

use zygote_core::CacheConfig;
use zygote_linux::{ExitStatus, SpawnError, SpawnRequest, Zygote};

/// Default instances added per step for the CLI.
pub const DEFAULT_STEP: usize = 10;
/// Default wait after the last spawn of a step, without `--ready-line`.
pub const DEFAULT_SETTLE_MS: u64 = 200;
/// Default limit for an instance to print its ready line.
pub const DEFAULT_READY_TIMEOUT_SECS: u64 = 30;
/// Default report directory.
pub const DEFAULT_OUT_DIR: &str = "zygote-experiment";
/// The font the charts use unless told otherwise.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// Longest the loops go without looking at the interrupt flag.
const TICK: Duration = Duration::from_millis(50);
/// Bytes of an instance's unread output kept for error messages.
const OUTPUT_TAIL: usize = 2048;

/// What to run and how.
#[derive(Clone, Debug)]
pub struct ExperimentOptions {
    /// The program: a path, or a name looked up in `PATH` like `execvp` does.
    pub program: OsString,
    /// Arguments after argv[0] (argv[0] is `program` as given).
    pub args: Vec<OsString>,
    /// Instances per method (N). At least 1.
    pub instances: usize,
    /// Instances added per step (K). At least 1.
    pub step: usize,
    /// Report directory (created if missing).
    pub out: PathBuf,
    /// Wait for a line starting with this on each instance's stdout.
    pub ready_line: Option<String>,
    /// Without `ready_line`: wait this long after the last spawn of a step.
    pub settle: Duration,
    /// With `ready_line`: longest wait for an instance's line.
    pub ready_timeout: Duration,
    /// TrueType font for the charts' text.
    pub font: PathBuf,
}

impl ExperimentOptions {
    /// Options with the CLI defaults for everything but the program and the count.
    pub fn new(program: OsString, args: Vec<OsString>, instances: usize) -> ExperimentOptions {
        ExperimentOptions {
            program,
            args,
            instances,
            step: DEFAULT_STEP,
            out: PathBuf::from(DEFAULT_OUT_DIR),
            ready_line: None,
            settle: Duration::from_millis(DEFAULT_SETTLE_MS),
            ready_timeout: Duration::from_secs(DEFAULT_READY_TIMEOUT_SECS),
            font: PathBuf::from(DEFAULT_FONT),
        }
    }
}

/// A way of starting the instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Method {
    /// `std::process::Command`: posix_spawn + execve.
    #[serde(rename = "exec")]
    Exec,
    /// [`Zygote::spawn`] from the prepared image.
    #[serde(rename = "zygote")]
    Zygote,
}

impl Method {
    /// Both methods, in the order they run.
    pub const ALL: [Method; 2] = [Method::Exec, Method::Zygote];

    pub fn name(self) -> &'static str {
        match self {
            Method::Exec => "exec",
            Method::Zygote => "zygote",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("experiment: {0}")]
    Usage(String),
    #[error("{program}: {source}")]
    Resolve {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("experiment: installing the SIGINT/SIGTERM handler: {source}")]
    Signals {
        #[source]
        source: io::Error,
    },
    #[error("experiment: {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("experiment: font {path}: {source} (--font names a TrueType font for the charts)")]
    Font {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("experiment: font {path}: not a TrueType or OpenType font")]
    BadFont { path: PathBuf },
    #[error("{program}: preparing the zygote image: {source}")]
    Prepare {
        program: String,
        #[source]
        source: Box<SpawnError>,
    },
    #[error("{program}: starting {method} instance {index}: {source}")]
    Spawn {
        program: String,
        method: Method,
        index: usize,
        #[source]
        source: io::Error,
    },
    #[error("{program}: starting zygote instance {index}: {source}")]
    ZygoteSpawn {
        program: String,
        index: usize,
        #[source]
        source: Box<SpawnError>,
    },
    #[error(
        "{program}: {method} instance {index} (pid {pid}) {how} before it was measured; \
         the program must stay alive (initialise, then pause()){output}"
    )]
    Exited { program: String, method: Method, index: usize, pid: i32, how: String, output: String },
    #[error("{program}: {method} instance {index} (pid {pid}) {why}{output}")]
    NotReady { program: String, method: Method, index: usize, pid: i32, why: String, output: String },
    #[error("{program}: {method} instance {index} (pid {pid}): {path}: {why}")]
    Measure { program: String, method: Method, index: usize, pid: i32, path: PathBuf, why: String },
    #[error("experiment: {what} instance {index} (pid {pid}): {source}")]
    Wait {
        what: Method,
        index: usize,
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("experiment: drawing {path}: {message}")]
    Chart { path: PathBuf, message: String },
    #[error("experiment: writing {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("experiment: interrupted by {}; every instance started was stopped", signal_name(*signal))]
    Interrupted { signal: i32 },
}

impl ExperimentError {
    /// The status the CLI exits with: 2 for bad options, 127/126 for a program that cannot
    /// be found or started, 128 + N when signal N interrupted the run, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExperimentError::Usage(_) => 2,
            ExperimentError::Resolve { source, .. } if source.kind() == io::ErrorKind::NotFound => 127,
            ExperimentError::Resolve { .. } => 126,
            ExperimentError::Prepare { source, .. } | ExperimentError::ZygoteSpawn { source, .. } => source.exit_code(),
            ExperimentError::Interrupted { signal } => 128 + signal,
            _ => 1,
        }
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// SIGINT and SIGTERM set a flag (once handled, for the rest of the process's life)
/// that the experiment's loops check.
mod interrupt {
    use std::io;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicI32, Ordering};

    /// The last signal received, or 0.
    static SIGNAL: AtomicI32 = AtomicI32::new(0);

    /// Install the handlers (once per process) and clear the flag. The handlers are
    /// tokio's (a self-pipe written by an async-signal-safe handler), read by a thread.
    pub fn install() -> io::Result<()> {
        static INSTALLED: OnceLock<Result<(), (io::ErrorKind, String)>> = OnceLock::new();
        let r = INSTALLED.get_or_init(|| install_once().map_err(|e| (e.kind(), e.to_string())));
        SIGNAL.store(0, Ordering::SeqCst);
        r.clone().map_err(|(kind, msg)| io::Error::new(kind, msg))
    }

    fn install_once() -> io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        // Registered before this returns: a signal from now on sets the flag.
        let (mut int, mut term) = {
            let _guard = rt.enter();
            (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?)
        };
        std::thread::Builder::new().name("experiment-signals".into()).spawn(move || {
            rt.block_on(async move {
                loop {
                    let sig = tokio::select! {
                        Some(()) = int.recv() => libc::SIGINT,
                        Some(()) = term.recv() => libc::SIGTERM,
                        else => return,
                    };
                    SIGNAL.store(sig, Ordering::SeqCst);
                }
            })
        })?;
        Ok(())
    }

    /// The signal that asked us to stop, if one did.
    pub fn pending() -> Option<i32> {
        match SIGNAL.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

fn check_interrupt() -> Result<(), ExperimentError> {
    match interrupt::pending() {
        Some(signal) => Err(ExperimentError::Interrupted { signal }),
        None => Ok(()),
    }
}

/// Page counts of one process (or a sum), in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub rss: u64,
    pub pss: u64,
    /// Unique set size: `Private_Clean + Private_Dirty`.
    pub uss: u64,
    pub pss_anon: u64,
    pub pss_file: u64,
    pub pss_shmem: u64,
}

impl Usage {
    fn add(&mut self, o: &Usage) {
        self.rss += o.rss;
        self.pss += o.pss;
        self.uss += o.uss;
        self.pss_anon += o.pss_anon;
        self.pss_file += o.pss_file;
        self.pss_shmem += o.pss_shmem;
    }
}

/// Parse the text of `/proc/PID/smaps_rollup`. `Rss` and `Pss` must be there; the other
/// counters count as 0 when missing (`Pss_Anon` and friends are from Linux 5.x).
pub fn parse_rollup(text: &str) -> Result<Usage, String> {
    let mut u = Usage::default();
    let (mut rss, mut pss) = (false, false);
    let (mut private_clean, mut private_dirty) = (0u64, 0u64);
    for (n, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let slot = match key {
            "Rss" => {
                rss = true;
                &mut u.rss
            }
            "Pss" => {
                pss = true;
                &mut u.pss
            }
            "Pss_Anon" => &mut u.pss_anon,
            "Pss_File" => &mut u.pss_file,
            "Pss_Shmem" => &mut u.pss_shmem,
            "Private_Clean" => &mut private_clean,
            "Private_Dirty" => &mut private_dirty,
            _ => continue,
        };
        let mut it = value.split_ascii_whitespace();
        *slot = match (it.next().map(str::parse::<u64>), it.next()) {
            (Some(Ok(kb)), Some("kB")) => kb.saturating_mul(1024),
            _ => return Err(format!("line {}: {key}: expected `N kB`, got {:?}", n + 1, value.trim())),
        };
    }
    if !(rss && pss) {
        return Err("no Rss or Pss line (an exited process, or a kernel without smaps_rollup)".into());
    }
    u.uss = private_clean + private_dirty;
    Ok(u)
}

/// One instance at one sample.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceUsage {
    pub pid: i32,
    #[serde(flatten)]
    pub usage: Usage,
}

/// Every instance of one method alive at one count.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub method: Method,
    /// Instances alive and measured (= `processes.len()`).
    pub instances: usize,
    pub processes: Vec<InstanceUsage>,
    /// Sums over `processes`.
    pub total: Usage,
}

/// One count of the summary: total Pss both ways.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryRow {
    pub instances: usize,
    pub exec_pss: u64,
    pub zygote_pss: u64,
    pub exec_uss: u64,
    pub zygote_uss: u64,
    /// `zygote_pss / exec_pss` (below 1: the zygote's instances cost less).
    pub ratio: Option<f64>,
}

/// The image the zygote instances were started from.
#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    pub key: String,
    pub kind: String,
    /// Logical size of the sealed objects.
    pub sealed_bytes: u64,
    /// Their pages in memory after the zygote phase (held by this process's memfds;
    /// charged to instances only while they map them).
    pub sealed_resident_bytes: u64,
    /// Time to prepare the image (read, hash, relocate, seal), cache miss.
    pub build_us: f64,
    /// Why the zygote starts the program by plain exec, if it does (the comparison then
    /// measures two plain execs).
    pub fallback: Option<String>,
}

/// How instances were judged ready.
#[derive(Clone, Debug, Serialize)]
pub struct Readiness {
    /// A line starting with this on stdout; `None`: the settle time.
    pub ready_line: Option<String>,
    pub settle_ms: u64,
    pub ready_timeout_ms: u64,
}

/// The files written.
#[derive(Clone, Debug, Serialize)]
pub struct ReportFiles {
    pub report: String,
    pub svg: String,
    pub png: String,
}

/// Everything one experiment measured: `report.json`, and the `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct ExperimentReport {
    /// The program as given.
    pub program: String,
    /// The file both methods started.
    pub path: String,
    /// argv, argv[0] included.
    pub argv: Vec<String>,
    pub instances: usize,
    pub step: usize,
    /// The instance counts measured, per method.
    pub counts: Vec<usize>,
    pub readiness: Readiness,
    pub methods: Vec<Method>,
    /// Every sample: all counts of `exec`, then all of `zygote`.
    pub samples: Vec<Sample>,
    pub image: ImageInfo,
    pub summary: Vec<SummaryRow>,
    pub files: ReportFiles,
    pub wall_seconds: f64,
}

impl ExperimentReport {
    /// The sample of `method` at `instances`.
    pub fn sample(&self, method: Method, instances: usize) -> Option<&Sample> {
        self.samples.iter().find(|s| s.method == method && s.instances == instances)
    }

    /// The summary for people: total Pss (and USS) at every count, both ways, and the ratio.
    pub fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let how = match &self.readiness.ready_line {
            Some(l) => format!("ready when it prints a line starting with {l:?}"),
            None => format!("measured {} ms after the last spawn of each step", self.readiness.settle_ms),
        };
        writeln!(
            w,
            "zygote experiment: {} ({} instances per method, steps of {}; {how})",
            self.argv.join(" "),
            self.instances,
            self.step
        )?;
        let i = &self.image;
        match &i.fallback {
            Some(why) => writeln!(w, "  warning: the zygote starts this program by plain exec ({why})")?,
            None => writeln!(
                w,
                "  image: {}, {} sealed ({} resident), prepared in {:.1} ms",
                i.kind,
                human_bytes(i.sealed_bytes),
                human_bytes(i.sealed_resident_bytes),
                i.build_us / 1e3
            )?,
        }
        writeln!(w)?;
        writeln!(
            w,
            "  {:>9} {:>12} {:>12} {:>12}  {:>12} {:>12}",
            "instances", "exec Pss", "zygote Pss", "zygote/exec", "exec USS", "zygote USS"
        )?;
        for r in &self.summary {
            let ratio = r.ratio.map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"));
            writeln!(
                w,
                "  {:>9} {:>12} {:>12} {:>12}  {:>12} {:>12}",
                r.instances,
                human_bytes(r.exec_pss),
                human_bytes(r.zygote_pss),
                ratio,
                human_bytes(r.exec_uss),
                human_bytes(r.zygote_uss)
            )?;
        }
        writeln!(w, "  (totals over the instances alive; Pss and USS from /proc/PID/smaps_rollup)")?;
        writeln!(w)?;
        writeln!(w, "  report: {}", self.files.report)?;
        writeln!(w, "  charts: {}, {}", self.files.svg, self.files.png)?;
        Ok(())
    }
}

pub use zygote_core::metrics::human_bytes;

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

/// A started instance.
enum Proc {
    Exec(std::process::Child),
    Zygote(zygote_linux::Child),
}

struct Instance {
    /// 1-based, per method.
    index: usize,
    pid: i32,
    proc: Proc,
    /// Read end of its stdout, with `--ready-line`.
    stdout: Option<OwnedFd>,
    /// The line being read.
    line: Vec<u8>,
    /// The last bytes read, for messages.
    tail: Vec<u8>,
    ready: bool,
    reaped: bool,
}

impl Instance {
    /// How it ended, if it has (it is reaped then).
    fn ended(&mut self) -> Result<Option<String>, io::Error> {
        match &mut self.proc {
            Proc::Exec(c) => Ok(c.try_wait()?.map(|st| {
                self.reaped = true;
                describe_std(st)
            })),
            Proc::Zygote(c) => {
                if !pidfd_readable(c.pidfd())? {
                    return Ok(None);
                }
                let st = c.wait()?;
                self.reaped = true;
                Ok(Some(describe(st)))
            }
        }
    }

    fn output(&self) -> String {
        if self.tail.is_empty() {
            return String::new();
        }
        format!("; its last output: {:?}", String::from_utf8_lossy(&self.tail))
    }

    fn feed(&mut self, bytes: &[u8], ready_line: &str) {
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > OUTPUT_TAIL {
            self.tail.drain(..self.tail.len() - OUTPUT_TAIL);
        }
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() < 64 * 1024 {
                    self.line.push(b);
                }
                continue;
            }
            if self.line.strip_suffix(b"\r").unwrap_or(&self.line).starts_with(ready_line.as_bytes()) {
                self.ready = true;
            }
            self.line.clear();
        }
    }

    fn kill(&self) {
        if self.reaped {
            return;
        }
        // Errors: it is gone already (a zombie still takes the signal; nothing to do).
        match &self.proc {
            Proc::Exec(c) => {
                let _ = rustix::process::Pid::from_raw(c.id() as i32)
                    .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::KILL));
            }
            Proc::Zygote(c) => {
                let _ = c.kill(libc::SIGKILL);
            }
        }
    }

    fn reap(&mut self) -> io::Result<()> {
        if self.reaped {
            return Ok(());
        }
        match &mut self.proc {
            Proc::Exec(c) => c.wait().map(drop)?,
            Proc::Zygote(c) => c.wait().map(drop)?,
        }
        self.reaped = true;
        Ok(())
    }
}

fn describe(st: ExitStatus) -> String {
    match st {
        ExitStatus::Exited(c) => format!("exited with status {c}"),
        ExitStatus::Signaled(s) => format!("was killed by signal {s}"),
    }
}

fn describe_std(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("ended ({st})"),
    }
}

/// Is the pidfd readable (its process exited)?
fn pidfd_readable(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    loop {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&zero)) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// What every spawn of a run shares.
struct Launch<'a> {
    label: String,
    path: PathBuf,
    opts: &'a ExperimentOptions,
    zygote: &'a Zygote,
    null: OwnedFd,
}

impl Launch<'_> {
    fn dup_null(&self) -> Result<OwnedFd, ExperimentError> {
        self.null.try_clone().map_err(|source| ExperimentError::Io { path: "/dev/null".into(), what: "dup", source })
    }

    /// A pipe for the instance's stdout, when readiness is a line.
    fn stdout_pipe(&self) -> Result<Option<(OwnedFd, OwnedFd)>, ExperimentError> {
        if self.opts.ready_line.is_none() {
            return Ok(None);
        }
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map(Some).map_err(|e| ExperimentError::Io {
            path: "pipe".into(),
            what: "creating the stdout pipe",
            source: e.into(),
        })
    }

    fn start(&self, method: Method, index: usize) -> Result<Instance, ExperimentError> {
        let pipe = self.stdout_pipe()?;
        let (read_end, write_end) = match pipe {
            Some((r, w)) => (Some(r), w),
            None => (None, self.dup_null()?),
        };
        let (pid, proc) = match method {
            Method::Exec => {
                let mut cmd = Command::new(&self.path);
                cmd.arg0(&self.opts.program)
                    .args(&self.opts.args)
                    .stdin(Stdio::from(self.dup_null()?))
                    .stdout(Stdio::from(write_end))
                    .stderr(Stdio::from(self.dup_null()?));
                let child = cmd.spawn().map_err(|source| ExperimentError::Spawn {
                    program: self.label.clone(),
                    method,
                    index,
                    source,
                })?;
                // `cmd` holds the parent's copies of the child's stdio: close them now, so
                // the pipe sees EOF once the child is gone.
                drop(cmd);
                (child.id() as i32, Proc::Exec(child))
            }
            Method::Zygote => {
                let req = SpawnRequest::new(self.path.clone())
                    .argv0(self.opts.program.clone())
                    .args(self.opts.args.iter().cloned())
                    .fd(self.dup_null()?, 0)
                    .fd(write_end, 1)
                    .fd(self.dup_null()?, 2);
                let child = self.zygote.spawn(req).map_err(|e| ExperimentError::ZygoteSpawn {
                    program: self.label.clone(),
                    index,
                    source: Box::new(e),
                })?;
                (child.pid(), Proc::Zygote(child))
            }
        };
        Ok(Instance {
            index,
            pid,
            proc,
            stdout: read_end,
            line: Vec::new(),
            tail: Vec::new(),
            ready: false,
            reaped: false,
        })
    }
}

/// The instances of one method; all killed and reaped on drop.
struct InstanceSet {
    method: Method,
    instances: Vec<Instance>,
}

impl InstanceSet {
    fn new(method: Method) -> InstanceSet {
        InstanceSet { method, instances: Vec::new() }
    }

    fn len(&self) -> usize {
        self.instances.len()
    }

    /// Kill every instance (SIGKILL), then reap them all.
    fn stop(&mut self) -> Result<(), ExperimentError> {
        for i in &self.instances {
            i.kill();
        }
        let mut first_err = None;
        for mut i in self.instances.drain(..) {
            if let Err(source) = i.reap() {
                first_err.get_or_insert(ExperimentError::Wait {
                    what: self.method,
                    index: i.index,
                    pid: i.pid,
                    source,
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// An error for an instance that ended, or `Interrupted` if a signal asked us to stop
    /// (a terminal's Ctrl-C reaches the instances too).
    fn ended_error(&self, label: &str, i: &Instance, how: String) -> ExperimentError {
        // A terminal's Ctrl-C reaches the instances and us at once; give the thread that
        // sets the flag a moment before calling this an early exit.
        let deadline = Instant::now() + Duration::from_millis(200);
        while interrupt::pending().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(signal) = interrupt::pending() {
            return ExperimentError::Interrupted { signal };
        }
        ExperimentError::Exited {
            program: label.to_string(),
            method: self.method,
            index: i.index,
            pid: i.pid,
            how,
            output: i.output(),
        }
    }

    /// Every instance must still run.
    fn check_alive(&mut self, label: &str) -> Result<(), ExperimentError> {
        for k in 0..self.instances.len() {
            let i = &mut self.instances[k];
            let ended = i.ended().map_err(|source| ExperimentError::Wait {
                what: self.method,
                index: i.index,
                pid: i.pid,
                source,
            })?;
            if let Some(how) = ended {
                return Err(self.ended_error(label, &self.instances[k], how));
            }
        }
        Ok(())
    }

    /// Wait until the instances from `from` on are ready (see the module docs).
    fn wait_ready(&mut self, from: usize, label: &str, opts: &ExperimentOptions) -> Result<(), ExperimentError> {
        let Some(ready_line) = opts.ready_line.as_deref() else {
            let start = Instant::now();
            while start.elapsed() < opts.settle {
                check_interrupt()?;
                std::thread::sleep(TICK.min(opts.settle.saturating_sub(start.elapsed())));
            }
            check_interrupt()?;
            return self.check_alive(label);
        };
        let start = Instant::now();
        loop {
            check_interrupt()?;
            let pending: Vec<usize> = (from..self.instances.len()).filter(|&k| !self.instances[k].ready).collect();
            let Some(&first) = pending.first() else { return Ok(()) };
            let waited = start.elapsed();
            if waited >= opts.ready_timeout {
                let i = &self.instances[first];
                return Err(ExperimentError::NotReady {
                    program: label.to_string(),
                    method: self.method,
                    index: i.index,
                    pid: i.pid,
                    why: format!("printed no line starting with {ready_line:?} within {:?}", opts.ready_timeout),
                    output: i.output(),
                });
            }
            let readable = self.poll_stdout(&pending, TICK.min(opts.ready_timeout - waited))?;
            for k in readable {
                let mut buf = [0u8; 4096];
                let i = &mut self.instances[k];
                let Some(fd) = i.stdout.as_ref() else { continue };
                let n = match rustix::io::read(fd, &mut buf) {
                    Ok(n) => n,
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                    Err(e) => {
                        return Err(ExperimentError::Io {
                            path: format!("stdout of pid {}", i.pid).into(),
                            what: "read",
                            source: e.into(),
                        });
                    }
                };
                if n == 0 {
                    // EOF: it closed its stdout (or ended) without the line.
                    i.stdout = None;
                    let ended = i.ended().map_err(|source| ExperimentError::Wait {
                        what: self.method,
                        index: i.index,
                        pid: i.pid,
                        source,
                    })?;
                    let i = &self.instances[k];
                    return Err(match ended {
                        Some(how) => self.ended_error(label, i, how),
                        None => ExperimentError::NotReady {
                            program: label.to_string(),
                            method: self.method,
                            index: i.index,
                            pid: i.pid,
                            why: format!("closed its stdout without printing a line starting with {ready_line:?}"),
                            output: i.output(),
                        },
                    });
                }
                i.feed(&buf[..n], ready_line);
            }
        }
    }

    /// Indices (among `pending`) whose stdout is readable or closed, waiting up to `limit`.
    fn poll_stdout(&self, pending: &[usize], limit: Duration) -> Result<Vec<usize>, ExperimentError> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let with_fd: Vec<usize> = pending.iter().copied().filter(|&k| self.instances[k].stdout.is_some()).collect();
        let mut fds: Vec<PollFd<'_>> = with_fd
            .iter()
            .filter_map(|&k| self.instances[k].stdout.as_ref().map(|fd| PollFd::new(fd, PollFlags::IN)))
            .collect();
        let ts = Timespec { tv_sec: limit.as_secs() as i64, tv_nsec: i64::from(limit.subsec_nanos()) };
        match poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(ExperimentError::Io { path: "stdout pipes".into(), what: "poll", source: e.into() }),
        }
        Ok(with_fd.into_iter().zip(fds.iter()).filter(|(_, f)| !f.revents().is_empty()).map(|(k, _)| k).collect())
    }

    /// Measure every instance (all must still run, before and after the read).
    fn measure(&mut self, label: &str) -> Result<Sample, ExperimentError> {
        let mut processes = Vec::with_capacity(self.instances.len());
        let mut total = Usage::default();
        for k in 0..self.instances.len() {
            check_interrupt()?;
            let i = &self.instances[k];
            let path = PathBuf::from(format!("/proc/{}/smaps_rollup", i.pid));
            let measure_err = |why: String| ExperimentError::Measure {
                program: label.to_string(),
                method: self.method,
                index: i.index,
                pid: i.pid,
                path: path.clone(),
                why,
            };
            let text = fs::read_to_string(&path).map_err(|e| measure_err(e.to_string()));
            let usage = text.and_then(|t| parse_rollup(&t).map_err(measure_err));
            // A process that ended (a zombie reads as empty) is reported as such, even
            // when the read failed because of it.
            let i = &mut self.instances[k];
            let ended = i.ended().map_err(|source| ExperimentError::Wait {
                what: self.method,
                index: i.index,
                pid: i.pid,
                source,
            })?;
            if let Some(how) = ended {
                return Err(self.ended_error(label, &self.instances[k], how));
            }
            let usage = usage?;
            total.add(&usage);
            processes.push(InstanceUsage { pid: self.instances[k].pid, usage });
        }
        Ok(Sample { method: self.method, instances: processes.len(), processes, total })
    }
}

impl Drop for InstanceSet {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Progress on stderr: a bar redrawn in place on a terminal, plain lines otherwise.
struct Progress {
    tty: bool,
    total: usize,
    done: usize,
    /// The last sample's total Pss, shown after the bar.
    last: String,
}

impl Progress {
    const WIDTH: usize = 30;

    fn new(total: usize) -> Progress {
        Progress { tty: io::stderr().is_terminal(), total: total.max(1), done: 0, last: String::new() }
    }

    fn line(&self, msg: fmt::Arguments<'_>) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
        eprintln!("zygote experiment: {msg}");
    }

    fn phase(&mut self, method: Method, n: usize, step: usize) {
        self.last.clear();
        if !self.tty {
            self.line(format_args!("{method}: starting {n} instances in steps of {step}"));
        }
    }

    fn started(&mut self, method: Method, alive: usize, n: usize) {
        self.done += 1;
        self.draw(method, alive, n);
    }

    fn draw(&self, method: Method, alive: usize, n: usize) {
        if !self.tty {
            return;
        }
        let filled = self.done * Self::WIDTH / self.total;
        eprint!(
            "\r\x1b[K[{}{}] {:3}% {method}: {alive}/{n} instances{}",
            "#".repeat(filled),
            "-".repeat(Self::WIDTH - filled),
            self.done * 100 / self.total,
            self.last
        );
    }

    fn sample(&mut self, s: &Sample, n: usize) {
        if self.tty {
            self.last = format!(" (total Pss at {}: {})", s.instances, human_bytes(s.total.pss));
            self.draw(s.method, s.instances, n);
        } else {
            self.line(format_args!(
                "{}: {}/{n} instances: total Pss {}, USS {}, Rss {}",
                s.method,
                s.instances,
                human_bytes(s.total.pss),
                human_bytes(s.total.uss),
                human_bytes(s.total.rss)
            ));
        }
    }

    fn finish(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }
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

/// Run the experiment, write the report directory, and return the report.
pub fn run(opts: &ExperimentOptions) -> Result<ExperimentReport, ExperimentError> {
    if opts.instances == 0 {
        return Err(ExperimentError::Usage("--instances must be at least 1".into()));
    }
    if opts.step == 0 {
        return Err(ExperimentError::Usage("--step must be at least 1".into()));
    }
    let wall = Instant::now();
    interrupt::install().map_err(|source| ExperimentError::Signals { source })?;
    raise_fd_limit(opts.instances);
    let label = opts.program.to_string_lossy().into_owned();
    let path = crate::bench::resolve_program(&opts.program)
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
    let mut progress = Progress::new(opts.instances * Method::ALL.len());
    let mut samples = Vec::with_capacity(counts.len() * Method::ALL.len());
    for method in Method::ALL {
        let mut set = InstanceSet::new(method);
        progress.phase(method, opts.instances, opts.step);
        for &count in &counts {
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
            set.wait_ready(from, &label, opts)?;
            let sample = set.measure(&label)?;
            progress.sample(&sample, opts.instances);
            samples.push(sample);
        }
        set.stop()?;
    }
    progress.finish();

    let sealed_resident_bytes = image.objects().iter().map(|o| o.resident()).sum();
    let summary = counts
        .iter()
        .map(|&n| {
            let get = |m| samples.iter().find(|s| s.method == m && s.instances == n).map(|s| s.total);
            let (e, z) = (get(Method::Exec).unwrap_or_default(), get(Method::Zygote).unwrap_or_default());
            SummaryRow {
                instances: n,
                exec_pss: e.pss,
                zygote_pss: z.pss,
                exec_uss: e.uss,
                zygote_uss: z.uss,
                ratio: (e.pss > 0).then(|| z.pss as f64 / e.pss as f64),
            }
        })
        .collect();
    let files = ReportFiles {
        report: opts.out.join("report.json").to_string_lossy().into_owned(),
        svg: opts.out.join("pss.svg").to_string_lossy().into_owned(),
        png: opts.out.join("pss.png").to_string_lossy().into_owned(),
    };
    let mut argv = vec![label.clone()];
    argv.extend(opts.args.iter().map(|a| a.to_string_lossy().into_owned()));
    let report = ExperimentReport {
        program: label,
        path: path.to_string_lossy().into_owned(),
        argv,
        instances: opts.instances,
        step: opts.step,
        counts,
        readiness: Readiness {
            ready_line: opts.ready_line.clone(),
            settle_ms: opts.settle.as_millis() as u64,
            ready_timeout_ms: opts.ready_timeout.as_millis() as u64,
        },
        methods: Method::ALL.to_vec(),
        samples,
        image: ImageInfo {
            key: image.key().to_string(),
            kind: format!("{:?}", image.kind()),
            sealed_bytes: image.sealed_bytes(),
            sealed_resident_bytes,
            build_us,
            fallback: image.fallback().map(str::to_string),
        },
        summary,
        files,
        wall_seconds: wall.elapsed().as_secs_f64(),
    };
    write_report(&report)?;
    Ok(report)
}

/// `report.json`, `pss.svg` and `pss.png`.
fn write_report(report: &ExperimentReport) -> Result<(), ExperimentError> {
    let json_path = PathBuf::from(&report.files.report);
    let file = File::create(&json_path).map_err(|source| ExperimentError::Io {
        path: json_path.clone(),
        what: "create",
        source,
    })?;
    let mut w = io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut w, report)
        .map_err(|source| ExperimentError::Json { path: json_path.clone(), source })?;
    w.write_all(b"\n").and_then(|()| w.flush()).map_err(|source| ExperimentError::Io {
        path: json_path,
        what: "write",
        source,
    })?;
    chart::draw_svg(Path::new(&report.files.svg), report)?;
    chart::draw_png(Path::new(&report.files.png), report)?;
    Ok(())
}

/// The total-Pss chart, with plotters.
mod chart {
    use std::path::Path;

    use plotters::coord::Shift;
    use plotters::prelude::*;

    use super::{ExperimentError, ExperimentReport, Method, OnceLock};

    const SIZE: (u32, u32) = (960, 600);
    const MIB: f64 = 1024.0 * 1024.0;

    /// Register the font as plotters' `sans-serif` (once per process: plotters keeps it
    /// for the life of the process).
    pub fn register_font(path: &Path) -> Result<(), ExperimentError> {
        static REGISTERED: OnceLock<()> = OnceLock::new();
        if REGISTERED.get().is_some() {
            return Ok(());
        }
        let bytes = std::fs::read(path).map_err(|source| ExperimentError::Font { path: path.to_path_buf(), source })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| ExperimentError::BadFont { path: path.to_path_buf() })?;
        let _ = REGISTERED.set(());
        Ok(())
    }

    fn color(m: Method) -> RGBColor {
        match m {
            Method::Exec => RGBColor(214, 39, 40),
            Method::Zygote => RGBColor(31, 119, 180),
        }
    }

    fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, r: &ExperimentReport) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let max_pss = r.samples.iter().map(|s| s.total.pss).max().unwrap_or(0) as f64 / MIB;
        let y_top = if max_pss > 0.0 { max_pss * 1.1 } else { 1.0 };
        let x_top = r.instances as u32 + 1;
        let program = Path::new(&r.program).file_name().map_or(r.program.clone(), |n| n.to_string_lossy().into_owned());
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Total PSS of instances of {program}"), ("sans-serif", 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0u32..x_top, 0f64..y_top)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("instances")
            .y_desc("total PSS (MiB)")
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()
            .map_err(e)?;
        for m in Method::ALL {
            let c = color(m);
            let points: Vec<(u32, f64)> = r
                .samples
                .iter()
                .filter(|s| s.method == m)
                .map(|s| (s.instances as u32, s.total.pss as f64 / MIB))
                .collect();
            let label = match m {
                Method::Exec => "plain exec",
                Method::Zygote => "zygote",
            };
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(3)))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(e)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 18))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
        Ok(())
    }

    pub fn draw_svg(path: &Path, r: &ExperimentReport) -> Result<(), ExperimentError> {
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        draw(root, r).map_err(|message| ExperimentError::Chart { path: path.to_path_buf(), message })
    }

    pub fn draw_png(path: &Path, r: &ExperimentReport) -> Result<(), ExperimentError> {
        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        draw(root, r).map_err(|message| ExperimentError::Chart { path: path.to_path_buf(), message })
    }
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
    fn rollup_parses() {
        let text = "\
55d4c8e6b000-7ffd5a9f4000 ---p 00000000 00:00 0                          [rollup]
Rss:                1884 kB
Pss:                 355 kB
Pss_Dirty:            88 kB
Pss_Anon:             84 kB
Pss_File:            271 kB
Pss_Shmem:             0 kB
Shared_Clean:       1524 kB
Shared_Dirty:          0 kB
Private_Clean:       272 kB
Private_Dirty:        88 kB
Referenced:         1884 kB
";
        let u = parse_rollup(text).expect("parse");
        assert_eq!(u.rss, 1884 * 1024);
        assert_eq!(u.pss, 355 * 1024);
        assert_eq!(u.uss, (272 + 88) * 1024);
        assert_eq!((u.pss_anon, u.pss_file, u.pss_shmem), (84 * 1024, 271 * 1024, 0));
        assert!(parse_rollup("").is_err());
        let e = parse_rollup("x-y ---p 0 0:0 0 [rollup]\nRss: many kB\nPss: 1 kB\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("Rss"), "{e}");
    }

    #[test]
    fn own_rollup_is_readable() {
        let text = fs::read_to_string("/proc/self/smaps_rollup").expect("smaps_rollup");
        let u = parse_rollup(&text).expect("parse own rollup");
        assert!(u.rss > 0 && u.pss > 0 && u.uss > 0, "{u:?}");
    }

    #[test]
    fn ready_lines_match_at_the_start() {
        let null = OwnedFd::from(File::open("/dev/null").expect("/dev/null"));
        let child = Command::new("true").spawn().expect("spawn true");
        let mut i = Instance {
            index: 1,
            pid: child.id() as i32,
            proc: Proc::Exec(child),
            stdout: Some(null),
            line: Vec::new(),
            tail: Vec::new(),
            ready: false,
            reaped: false,
        };
        i.feed(b"starting\nrea", "ready");
        assert!(!i.ready);
        i.feed(b"dy 42\r\nmore", "ready");
        assert!(i.ready);
        let _ = i.reap();
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
