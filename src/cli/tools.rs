//! The measurement commands (`bench`, `bench-daemon`, `experiment`,
//! `stress`), present with the default `tools` feature; the work is
//! `zygote-tools`.

use clap::Args;
use std::ffi::OsString;
use std::path::PathBuf;

use zygote_linux::Zygote;
use zygote_tools::{bench, bench_daemon, bench_exec, experiment, stress};

pub use zygote_tools::bench_exec::BenchExecArgs;

use super::{CacheArgs, CliError, SocketArg};

#[derive(Args)]
pub struct BenchArgs {
    /// Timed rounds; each round starts the program once per method.
    #[arg(long, default_value_t = bench::DEFAULT_ITERATIONS)]
    iterations: usize,
    /// Untimed warm-up rounds before the timed ones.
    #[arg(long, default_value_t = bench::DEFAULT_WARMUP)]
    warmup: usize,
    /// Print the report as JSON on stdout; the table then goes to stderr.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: CacheArgs,
    /// Idle pre-started launchers to keep, one per recently spawned image (0:
    /// exec the stub on every spawn). Their warm-up is timed with the spawn.
    #[arg(long, default_value_t = zygote_linux::spawn::DEFAULT_PRESTARTED)]
    prestarted: usize,
    /// Programs and their arguments, separated by `::`: PROGRAM [ARGS] [:: PROGRAM [ARGS]]...
    #[arg(trailing_var_arg = true, required = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

#[derive(Args)]
pub struct BenchDaemonArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Concurrent clients (threads, each with its own daemon connection).
    #[arg(long, default_value_t = bench_daemon::DEFAULT_CLIENTS)]
    clients: usize,
    /// Timed spawn-and-wait rounds per client and per method.
    #[arg(long, default_value_t = bench_daemon::DEFAULT_SPAWNS_PER_CLIENT)]
    spawns: usize,
    /// Untimed rounds per client and per method before the timed ones.
    #[arg(long, default_value_t = bench_daemon::DEFAULT_WARMUP)]
    warmup: usize,
    /// Timed blocks per method; the methods alternate block by block (ABBA).
    #[arg(long, default_value_t = bench_daemon::DEFAULT_BLOCKS)]
    blocks: usize,
    /// Print the report as JSON on stdout; the table then goes to stderr.
    #[arg(long)]
    json: bool,
    /// Programs and their arguments, separated by `::`: PROGRAM [ARGS] [:: PROGRAM [ARGS]]...
    #[arg(trailing_var_arg = true, required = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

#[derive(Args)]
pub struct ExperimentArgs {
    /// Instances per method (N).
    #[arg(long)]
    instances: usize,
    /// Instances added per step (K): the counts measured are 1, K, 2K, ... and N.
    #[arg(long, default_value_t = experiment::DEFAULT_STEP)]
    step: usize,
    /// Report directory: report.json, pss.svg and pss.png.
    #[arg(long, default_value = experiment::DEFAULT_OUT_DIR)]
    out: PathBuf,
    /// An instance is ready once it prints a line starting with TEXT on its stdout.
    #[arg(long, value_name = "TEXT")]
    ready_line: Option<String>,
    /// Without --ready-line: milliseconds to wait after the last spawn of a step.
    #[arg(long, default_value_t = experiment::DEFAULT_SETTLE_MS)]
    settle_ms: u64,
    /// With --ready-line: seconds an instance may take to print it.
    #[arg(long, default_value_t = experiment::DEFAULT_READY_TIMEOUT_SECS)]
    ready_timeout_secs: u64,
    /// TrueType font for the charts' text.
    #[arg(long, default_value = experiment::DEFAULT_FONT)]
    font: PathBuf,
    /// Print the report as JSON on stdout; the table then goes to stderr.
    #[arg(long)]
    json: bool,
    /// The program and its arguments (it must stay alive, e.g. initialise and pause()).
    #[arg(trailing_var_arg = true, required = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

#[derive(Args)]
pub struct StressArgs {
    /// Daemon socket; without it a private daemon is started (and stopped at the end).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Concurrent clients (threads, each with its own connection).
    #[arg(long, default_value_t = stress::DEFAULT_CLIENTS)]
    clients: usize,
    /// Spawn-and-wait rounds per client.
    #[arg(long, default_value_t = stress::DEFAULT_SPAWNS_PER_CLIENT)]
    spawns: usize,
    /// Programs, comma-separated, each `PATH [ARG...]` split on spaces (`\,`, `\ `, `\\` escape).
    #[arg(long, value_name = "LIST")]
    programs: String,
    /// The private daemon's cache capacity (default: one image fewer than the programs).
    #[arg(long, conflicts_with = "socket")]
    cache_entries: Option<usize>,
    /// Print the report as JSON on stdout; the table then goes to stderr.
    #[arg(long)]
    json: bool,
}

/// Show a report: the table on stdout, or with `json` the table on stderr (for
/// the human) and the JSON on stdout (for the machine).
fn emit<R: serde::Serialize>(
    what: &str,
    report: &R,
    json: bool,
    table: impl Fn(&R, &mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(), CliError> {
    if !json {
        let _ = table(report, &mut std::io::stdout());
        return Ok(());
    }
    let _ = table(report, &mut std::io::stderr());
    match serde_json::to_string_pretty(report) {
        Ok(s) => {
            println!("{s}");
            Ok(())
        }
        Err(e) => Err(CliError { message: format!("{what}: writing JSON: {e}"), code: 1 }),
    }
}

pub fn bench(a: BenchArgs) -> Result<i32, CliError> {
    let zygote = Zygote::new(a.cache.config())?;
    zygote.set_prestarted(a.prestarted);
    // One program, or a set separated by `::`, each measured in turn.
    let mut reports = Vec::new();
    for (program, args) in bench_daemon::split_programs(a.command)? {
        let opts =
            bench::BenchOptions { program: program.into_os_string(), args, iterations: a.iterations, warmup: a.warmup };
        reports.push(bench::run(&opts, &zygote)?);
    }
    let failed = reports.iter().any(|r| r.failures() > 0);
    match reports.as_slice() {
        [one] => emit("bench", one, a.json, |r, w| r.write_table(w))?,
        all => emit("bench", &all, a.json, |rs, w| {
            rs.iter().try_for_each(|r| r.write_table(w).and_then(|()| writeln!(w)))
        })?,
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn bench_daemon(a: BenchDaemonArgs) -> Result<i32, CliError> {
    let opts = bench_daemon::DaemonBenchOptions {
        socket: a.socket.path(),
        programs: bench_daemon::split_programs(a.command)?,
        clients: a.clients,
        spawns_per_client: a.spawns,
        warmup: a.warmup,
        blocks: a.blocks,
    };
    let report = bench_daemon::run(&opts)?;
    emit("bench-daemon", &report, a.json, |r, w| r.write_table(w))?;
    Ok(if report.failures() > 0 { 1 } else { 0 })
}

pub fn bench_exec(a: BenchExecArgs) -> Result<i32, CliError> {
    let report = bench_exec::run(&a)?;
    emit("bench-exec", &report, a.json, |r, w| r.write_table(w))?;
    Ok(if report.failures() > 0 { 1 } else { 0 })
}

pub fn experiment(a: ExperimentArgs) -> Result<i32, CliError> {
    let (program, rest) = split_command(a.command)?;
    let opts = experiment::ExperimentOptions {
        program,
        args: rest.collect(),
        instances: a.instances,
        step: a.step,
        out: a.out,
        ready_line: a.ready_line,
        settle: std::time::Duration::from_millis(a.settle_ms),
        ready_timeout: std::time::Duration::from_secs(a.ready_timeout_secs),
        font: a.font,
    };
    let report = experiment::run(&opts)?;
    emit("experiment", &report, a.json, |r, w| r.write_table(w))?;
    Ok(0)
}

pub fn stress(a: StressArgs) -> Result<i32, CliError> {
    let opts = stress::StressOptions {
        socket: a.socket,
        programs: stress::parse_programs(&a.programs)?,
        clients: a.clients,
        spawns_per_client: a.spawns,
        cache_entries: a.cache_entries,
    };
    let report = stress::run(&opts)?;
    emit("stress", &report, a.json, |r, w| r.write_table(w))?;
    Ok(if report.passed { 0 } else { 1 })
}

/// The first word of a command line and the rest.
fn split_command(command: Vec<OsString>) -> Result<(OsString, std::vec::IntoIter<OsString>), CliError> {
    let mut it = command.into_iter();
    let program = it.next().ok_or_else(|| CliError::usage("no program given"))?;
    Ok((program, it))
}
