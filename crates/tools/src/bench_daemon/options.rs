//! `zygote bench-daemon`'s options and errors: the programs (split on `::`), clients,
//! rounds and blocks, the phases of a run, and why a run could not go to the end.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;

use zygote_core::exec::ResolveError;
use zygote_protocol::client::ClientError;

use crate::report::Method;

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
    /// `step` is what failed: "preparing posix_spawn" or "waitpid".
    #[error("{program}: client {client}, posix_spawn {phase}: {step}: {source}")]
    Posix {
        program: String,
        client: usize,
        phase: Phase,
        step: &'static str,
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
