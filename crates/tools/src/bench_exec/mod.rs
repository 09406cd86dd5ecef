//! `zygote bench-exec`: whole processes started from a shell-like parent
//! (vfork + execve of the command, then waitpid), a direct run against the
//! same command through the thin exec client (`zygote-exec`), a masquerade
//! link, and the daemon-side path (`zygote spawn --daemon-side`), interleaved round by
//! round; then a C project (Lua's sources, from the crates.io package
//! lua-src) built with `make -jN` with the compiler direct, through a
//! masquerade link and through `zygote spawn`, with the compilers' Pss
//! sampled during each build. The manual: docs/TOOLS.md.

mod daemon;
mod make;
mod pss;
mod quick;
mod report;

/// Where lua-src's Lua sources are in Cargo's registry (also for tests/c_project.rs).
pub use make::find_lua_sources;

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use self::report::{BenchExecReport, CaseReport, Dist, MethodReport, PssSummary, ServedCheck};

/// Timed rounds of each quick case (every method once per round).
pub const DEFAULT_ROUNDS: usize = 200;
/// Untimed rounds before them.
pub const DEFAULT_WARMUP: usize = 10;
/// Timed builds per method and optimisation level.
pub const DEFAULT_MAKE_ROUNDS: usize = 3;
/// How often the compilers' Pss is sampled during a build.
pub const DEFAULT_PSS_INTERVAL_MS: u64 = 5;
/// How long a first run's background image build may take to be served.
const SERVE_LIMIT: Duration = Duration::from_secs(120);

/// `zygote bench-exec`'s command line (the CLI flattens it in).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchExecArgs {
    /// Daemon socket to use; without it a private daemon is started (and stopped at the end).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Cases to run, comma-separated: true (/bin/true), version (COMPILER --version), make.
    #[arg(long, value_delimiter = ',', default_value = "true,version,make")]
    pub cases: Vec<String>,
    /// The compiler of the `version` and `make` cases (found on PATH).
    #[arg(long, default_value = "clang-14")]
    pub compiler: String,
    /// Timed rounds of the quick cases; each round runs every method once, in rotating order.
    #[arg(long, default_value_t = DEFAULT_ROUNDS)]
    pub rounds: usize,
    /// Untimed rounds of the quick cases before the timed ones.
    #[arg(long, default_value_t = DEFAULT_WARMUP)]
    pub warmup: usize,
    /// Timed builds per method and optimisation level (methods alternate build by build).
    #[arg(long, default_value_t = DEFAULT_MAKE_ROUNDS)]
    pub make_rounds: usize,
    /// Optimisation levels of the make case, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "-O0,-O2")]
    pub opt: Vec<String>,
    /// make's -j.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Directory of the C sources (default: lua-src's Lua 5.4 in Cargo's registry; fetched
    /// with `cargo fetch --manifest-path tests/cproject/Cargo.toml` when missing).
    #[arg(long)]
    pub c_sources: Option<PathBuf>,
    /// Milliseconds between samples of the compilers' Pss during a build (0: no sampling).
    #[arg(long, default_value_t = DEFAULT_PSS_INTERVAL_MS)]
    pub pss_interval_ms: u64,
    /// Leave out the daemon-side method (`zygote spawn --daemon-side`).
    #[arg(long)]
    pub no_daemon_side: bool,
    /// Print the report as JSON on stdout; the table then goes to stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchExecError {
    #[error("bench-exec: {0}")]
    Usage(String),
    #[error("bench-exec: {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("bench-exec: the daemon {what}; its log ends with:\n{log}")]
    Daemon { what: String, log: String },
    #[error("bench-exec: {0}")]
    Failed(String),
}

impl BenchExecError {
    pub fn exit_code(&self) -> i32 {
        match self {
            BenchExecError::Usage(_) => 2,
            _ => 1,
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BenchExecError {
    let what = what.into();
    move |source| BenchExecError::Io { what, source }
}

/// How a command is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The program itself (the baseline).
    Direct,
    /// `zygote-exec PROGRAM ARGS` (the thin client, by name).
    Client,
    /// A masquerade link named after the program, first in PATH.
    Link,
    /// `zygote spawn --daemon-side -- PROGRAM ARGS`: the daemon starts it as
    /// its child (the path before caller-side spawning).
    DaemonSide,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Direct => "direct",
            Method::Client => "zygote-exec",
            Method::Link => "link",
            Method::DaemonSide => "zygote spawn --daemon-side",
        }
    }

    /// Runs through an image request (counted in `image_requests.served`).
    pub fn caller_side(self) -> bool {
        matches!(self, Method::Client | Method::Link)
    }
}

/// Run the benchmark.
pub fn run(args: &BenchExecArgs) -> Result<BenchExecReport, BenchExecError> {
    for c in &args.cases {
        if !matches!(c.as_str(), "true" | "version" | "make") {
            return Err(BenchExecError::Usage(format!("unknown case {c:?} (true, version, make)")));
        }
    }
    if args.rounds == 0 || args.make_rounds == 0 || args.jobs == 0 {
        return Err(BenchExecError::Usage("--rounds, --make-rounds and --jobs must be at least 1".into()));
    }
    let setup = daemon::Setup::new(args)?;
    let mut report = BenchExecReport::new(&setup);
    let has = |c: &str| args.cases.iter().any(|x| x == c);
    if has("true") {
        report.cases.push(quick::run(&setup, args, "true", &[])?);
    }
    if has("version") {
        report.cases.push(quick::run(&setup, args, &args.compiler, &["--version".into()])?);
    }
    if has("make") {
        let project = make::Project::prepare(args)?;
        report.c_sources = Some(project.sources.clone());
        for (i, opt) in args.opt.iter().enumerate() {
            report.cases.push(make::run(&setup, args, &project, opt, i == 0)?);
        }
    }
    report.finish(&setup);
    Ok(report)
}

/// The methods measured, in the order of the first round.
fn methods(args: &BenchExecArgs, with_client: bool) -> Vec<Method> {
    let mut m = vec![Method::Direct];
    if with_client {
        m.push(Method::Client);
    }
    m.push(Method::Link);
    if !args.no_daemon_side {
        m.push(Method::DaemonSide);
    }
    m
}

/// `KEY=VALUE` bytes of an environment.
fn environ(env: &[(OsString, OsString)]) -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    env.iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            kv
        })
        .collect()
}

/// One progress line on stderr.
fn progress(line: std::fmt::Arguments<'_>) {
    eprintln!("bench-exec: {line}");
}

/// `/proc/loadavg`'s first three fields.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
