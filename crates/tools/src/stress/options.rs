//! `zygote stress`'s options and errors: the `--programs` list and its escapes, the
//! limits of a run, and why a run could not go to the end.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use zygote_core::exec::ResolveError;
use zygote_linux::SpawnError;
use zygote_protocol::client::ClientError;

/// Default number of client threads for the CLI.
pub const DEFAULT_CLIENTS: usize = 8;
/// Default spawn-and-wait rounds per client for the CLI.
pub const DEFAULT_SPAWNS_PER_CLIENT: usize = 100;
/// Longest a round may take before it counts as failed.
pub(super) const ROUND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the daemon to become quiet (or the leak check to pass).
pub(super) const SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// Longest wait for the private daemon to serve.
pub(super) const DAEMON_START_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for the private daemon to exit after SIGTERM.
pub(super) const DAEMON_STOP_LIMIT: Duration = Duration::from_secs(10);
/// Largest stdout kept per round; more is read and dropped (and fails the check).
pub(super) const MAX_STDOUT: usize = 16 << 20;
/// How often the monitor asks for `Stats` during the storm.
pub(super) const MONITOR_INTERVAL: Duration = Duration::from_millis(200);
/// Failure messages kept in the report.
pub(super) const FAILURE_SAMPLES: usize = 20;

/// One `--programs` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
}

impl ProgramSpec {
    pub(super) fn label(&self) -> String {
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

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StressError {
    let what = what.into();
    move |source| StressError::Io { what, source }
}
