//! `zygote experiment`'s options and errors: the program, instance counts, readiness,
//! the report directory and font, and why an experiment could not go to the end.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use zygote_linux::SpawnError;

use crate::report::Method;

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
pub(super) const TICK: Duration = Duration::from_millis(50);
/// Bytes of an instance's unread output kept for error messages.
pub(super) const OUTPUT_TAIL: usize = 2048;

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
