//! The `zygote` command line: one file per subcommand, one [`CliError`]
//! carrying the exit code, printed once by [`main`].

mod daemon;
mod inspect;
mod links;
mod remote;
mod run;
#[cfg(feature = "tools")]
mod tools;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use zygote_core::CacheConfig;
use zygote_linux::SpawnRequest;

#[derive(Parser)]
#[command(name = "zygote", version, about = "Start programs from cached, fully relocated, sealed images")]
struct Cli {
    /// Log filter (tracing-subscriber EnvFilter syntax); RUST_LOG also works.
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run PROGRAM from a prepared image, as if it were exec'd directly.
    Run(run::RunArgs),
    /// Prepare PROGRAM and show its image: regions, sealed objects, relocations.
    Inspect(inspect::InspectArgs),
    /// Measure spawn-and-wait latency: zygote against posix_spawn and vfork+execve.
    #[cfg(feature = "tools")]
    Bench(tools::BenchArgs),
    /// Measure spawns through a running daemon (concurrent clients) against posix_spawn.
    #[cfg(feature = "tools")]
    BenchDaemon(tools::BenchDaemonArgs),
    /// Whole processes from a shell-like parent: direct against the thin client and masquerade links.
    #[cfg(feature = "tools")]
    BenchExec(tools::BenchExecArgs),
    /// Serve spawn requests on a Unix socket (the main job).
    Daemon(daemon::DaemonArgs),
    /// Start PROGRAM from the daemon's cached image as this command's child (caller-side); exits with its status.
    Spawn(remote::SpawnArgs),
    /// Prepare programs into the daemon's cache.
    Preload(remote::PreloadArgs),
    /// Install the thin exec client into DIR with links named after programs (masquerade).
    InstallLinks(links::LinksArgs),
    /// Drop a program (or an image by its hash) from the daemon's cache.
    Evict(remote::EvictArgs),
    /// Show the daemon's cache and spawn statistics.
    Stats(remote::StatsArgs),
    /// Memory of N long-lived instances started by plain exec against N from the zygote.
    #[cfg(feature = "tools")]
    Experiment(tools::ExperimentArgs),
    /// A launch storm through the daemon with cache churn; checks every output and for leaks.
    #[cfg(feature = "tools")]
    Stress(tools::StressArgs),
}

/// A command that failed: what to print (after `zygote: `) and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    /// A usage error (exit code 2, as clap's own).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError { message: message.into(), code: 2 }
    }
}

/// Errors that know the exit code they stand for.
macro_rules! from_exit_code {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> Self {
                CliError { message: e.to_string(), code: e.exit_code() }
            }
        }
    )*};
}
from_exit_code!(zygote_linux::SpawnError, zygote::remote::RemoteError);
#[cfg(feature = "tools")]
from_exit_code!(
    zygote_tools::bench::BenchError,
    zygote_tools::bench_daemon::DaemonBenchError,
    zygote_tools::bench_exec::BenchExecError,
    zygote_tools::experiment::ExperimentError,
    zygote_tools::stress::StressError,
);

#[derive(Args)]
struct SocketArg {
    /// Daemon socket (default: $ZYGOTE_SOCKET, else $XDG_RUNTIME_DIR/zygote/zygote.sock, else
    /// /tmp/zygote-$UID/zygote.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl SocketArg {
    fn path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(zygote::config::default_socket_path)
    }
}

/// What `spawn` and `run` set for the new process besides its argv.
#[derive(Args)]
struct ProcessArgs {
    /// Set an environment variable (KEY=VALUE); repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Start from an empty environment.
    #[arg(long)]
    clear_env: bool,
    /// Working directory of the program (default: the current one).
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Process name (comm) instead of the program's file name.
    #[arg(long)]
    name: Option<OsString>,
}

impl ProcessArgs {
    /// The `--env` entries as (key, value).
    fn env_pairs(&self) -> Result<Vec<(&str, &str)>, CliError> {
        self.env
            .iter()
            .map(|kv| kv.split_once('=').ok_or_else(|| CliError::usage(format!("--env {kv}: expected KEY=VALUE"))))
            .collect()
    }

    /// The request these flags and `command` (program, then arguments) make:
    /// the one form `run` (in-process) and `spawn` (through the daemon) share.
    fn request(self, command: Vec<OsString>) -> Result<SpawnRequest, CliError> {
        let mut it = command.into_iter();
        let program = it.next().ok_or_else(|| CliError::usage("no program given"))?;
        let mut req = SpawnRequest::new(program).args(it);
        if self.clear_env {
            req = req.env_clear();
        }
        for (k, v) in self.env_pairs()? {
            req = req.env(k, v);
        }
        if let Some(d) = self.cwd {
            req = req.cwd(d);
        }
        if let Some(n) = self.name {
            req = req.name(n);
        }
        Ok(req)
    }
}

#[derive(Args)]
struct CacheArgs {
    /// Most images the cache holds.
    #[arg(long, default_value_t = CacheConfig::default().max_entries)]
    cache_entries: usize,
    /// Most sealed bytes the cache holds.
    #[arg(long, default_value_t = CacheConfig::default().max_bytes)]
    cache_bytes: u64,
}

impl CacheArgs {
    fn config(&self) -> CacheConfig {
        CacheConfig { max_entries: self.cache_entries, max_bytes: self.cache_bytes }
    }
}

/// Logging: --log, else RUST_LOG, else `default`. At debug level and above,
/// closing spans report their durations (identify, prepare, start, request).
fn init_logging(flag: Option<&str>, default: &str) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::format::FmtSpan;
    let filter = match flag {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Daemon(_)) {
        zygote_linux::process::default_sigpipe();
    }
    let result = match cli.command {
        Command::Daemon(a) => daemon::daemon(a, cli.log.as_deref()),
        command => {
            init_logging(cli.log.as_deref(), "warn");
            match command {
                Command::Run(a) => run::run(a),
                Command::Inspect(a) => inspect::inspect(a),
                #[cfg(feature = "tools")]
                Command::Bench(a) => tools::bench(a),
                #[cfg(feature = "tools")]
                Command::BenchDaemon(a) => tools::bench_daemon(a),
                #[cfg(feature = "tools")]
                Command::BenchExec(a) => tools::bench_exec(a),
                Command::Spawn(a) => remote::spawn(a),
                Command::Preload(a) => remote::preload(a),
                Command::InstallLinks(a) => links::install_links(a),
                Command::Evict(a) => remote::evict(a),
                Command::Stats(a) => remote::stats(a),
                #[cfg(feature = "tools")]
                Command::Experiment(a) => tools::experiment(a),
                #[cfg(feature = "tools")]
                Command::Stress(a) => tools::stress(a),
                Command::Daemon(_) => unreachable!("handled above"),
            }
        }
    };
    let code = result.unwrap_or_else(|e| {
        eprintln!("zygote: {}", e.message);
        e.code
    });
    ExitCode::from(code.clamp(0, 255) as u8)
}
