//! `zygote bench`'s options and errors: what to start, how many rounds, and why a run
//! could not go to the end.

use std::ffi::OsString;
use std::fmt;
use std::io;

use crate::report::Method;

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
