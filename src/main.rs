//! The `zygote` command line.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use zygote_core::CacheConfig;
use zygote_linux::{SpawnRequest, Zygote};

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
    Run(RunArgs),
    /// Prepare PROGRAM and show its image: regions, sealed objects, relocations.
    Inspect(InspectArgs),
    /// Measure spawn-and-wait latency: zygote against posix_spawn and vfork+execve.
    Bench(BenchArgs),
    /// Measure spawns through a running daemon (concurrent clients) against posix_spawn.
    BenchDaemon(BenchDaemonArgs),
    /// Serve spawn requests on a Unix socket (the main job).
    Daemon(DaemonArgs),
    /// Start PROGRAM through the daemon, with this terminal's stdio; exits with its status.
    Spawn(SpawnArgs),
    /// Prepare programs into the daemon's cache.
    Preload(PreloadArgs),
    /// Drop a program (or an image by its hash) from the daemon's cache.
    Evict(EvictArgs),
    /// Show the daemon's cache and spawn statistics.
    Stats(StatsArgs),
    /// Memory of N long-lived instances started by plain exec against N from the zygote.
    Experiment(ExperimentArgs),
    /// A launch storm through the daemon with cache churn; checks every output and for leaks.
    Stress(StressArgs),
}

#[derive(Args)]
struct SocketArg {
    /// Daemon socket (default: $XDG_RUNTIME_DIR/zygote/zygote.sock, or /tmp/zygote-$UID/zygote.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl SocketArg {
    fn path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(zygote::config::default_socket_path)
    }
}

#[derive(Args)]
struct DaemonArgs {
    /// Configuration file (JSON, the fields of config/zygote.json); default: the built-in one.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Socket path (overrides the configuration).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Most images the cache holds (overrides the configuration).
    #[arg(long)]
    cache_entries: Option<u64>,
    /// Most sealed bytes the cache holds (overrides the configuration).
    #[arg(long)]
    cache_bytes: Option<u64>,
    /// Idle pre-started launchers to keep (overrides the configuration).
    #[arg(long)]
    prestarted: Option<u32>,
    /// Seconds that pending waits may still complete after SIGTERM.
    #[arg(long, default_value_t = 10)]
    grace_secs: u64,
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
    /// The `--env` entries as (key, value), or the exit code for a malformed one.
    fn env_pairs(&self) -> Result<Vec<(&str, &str)>, i32> {
        self.env
            .iter()
            .map(|kv| {
                kv.split_once('=').ok_or_else(|| {
                    eprintln!("zygote: --env {kv}: expected KEY=VALUE");
                    2
                })
            })
            .collect()
    }
}

#[derive(Args)]
struct SpawnArgs {
    #[command(flatten)]
    socket: SocketArg,
    #[command(flatten)]
    process: ProcessArgs,
    /// Do not wait: print the pid and exit; the process outlives this command.
    #[arg(long)]
    no_wait: bool,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, required = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

#[derive(Args)]
struct PreloadArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Programs (PATH is searched for names without a slash).
    #[arg(required = true)]
    programs: Vec<OsString>,
}

#[derive(Args)]
struct EvictArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// A program, or a 64-digit image hash as `zygote stats` shows.
    target: OsString,
}

#[derive(Args)]
struct StatsArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Machine-readable output (the DaemonStats schema, docs/PROTOCOL.md).
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// OpenMetrics text, as the daemon's `GET /metrics` (metrics_port) serves it.
    #[arg(long)]
    prometheus: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Timed rounds; each round starts the program once per method.
    #[arg(long, default_value_t = zygote_tools::bench::DEFAULT_ITERATIONS)]
    iterations: usize,
    /// Untimed warm-up rounds before the timed ones.
    #[arg(long, default_value_t = zygote_tools::bench::DEFAULT_WARMUP)]
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
struct BenchDaemonArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Concurrent clients (threads, each with its own daemon connection).
    #[arg(long, default_value_t = zygote_tools::bench_daemon::DEFAULT_CLIENTS)]
    clients: usize,
    /// Timed spawn-and-wait rounds per client and per method.
    #[arg(long, default_value_t = zygote_tools::bench_daemon::DEFAULT_SPAWNS_PER_CLIENT)]
    spawns: usize,
    /// Untimed rounds per client and per method before the timed ones.
    #[arg(long, default_value_t = zygote_tools::bench_daemon::DEFAULT_WARMUP)]
    warmup: usize,
    /// Timed blocks per method; the methods alternate block by block (ABBA).
    #[arg(long, default_value_t = zygote_tools::bench_daemon::DEFAULT_BLOCKS)]
    blocks: usize,
    /// Print the report as JSON on stdout; the table then goes to stderr.
    #[arg(long)]
    json: bool,
    /// Programs and their arguments, separated by `::`: PROGRAM [ARGS] [:: PROGRAM [ARGS]]...
    #[arg(trailing_var_arg = true, required = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

#[derive(Args)]
struct ExperimentArgs {
    /// Instances per method (N).
    #[arg(long)]
    instances: usize,
    /// Instances added per step (K): the counts measured are 1, K, 2K, ... and N.
    #[arg(long, default_value_t = zygote_tools::experiment::DEFAULT_STEP)]
    step: usize,
    /// Report directory: report.json, pss.svg and pss.png.
    #[arg(long, default_value = zygote_tools::experiment::DEFAULT_OUT_DIR)]
    out: PathBuf,
    /// An instance is ready once it prints a line starting with TEXT on its stdout.
    #[arg(long, value_name = "TEXT")]
    ready_line: Option<String>,
    /// Without --ready-line: milliseconds to wait after the last spawn of a step.
    #[arg(long, default_value_t = zygote_tools::experiment::DEFAULT_SETTLE_MS)]
    settle_ms: u64,
    /// With --ready-line: seconds an instance may take to print it.
    #[arg(long, default_value_t = zygote_tools::experiment::DEFAULT_READY_TIMEOUT_SECS)]
    ready_timeout_secs: u64,
    /// TrueType font for the charts' text.
    #[arg(long, default_value = zygote_tools::experiment::DEFAULT_FONT)]
    font: PathBuf,
    /// Print the report as JSON on stdout; the table then goes to stderr.
    #[arg(long)]
    json: bool,
    /// The program and its arguments (it must stay alive, e.g. initialise and pause()).
    #[arg(trailing_var_arg = true, required = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

#[derive(Args)]
struct StressArgs {
    /// Daemon socket; without it a private daemon is started (and stopped at the end).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Concurrent clients (threads, each with its own connection).
    #[arg(long, default_value_t = zygote_tools::stress::DEFAULT_CLIENTS)]
    clients: usize,
    /// Spawn-and-wait rounds per client.
    #[arg(long, default_value_t = zygote_tools::stress::DEFAULT_SPAWNS_PER_CLIENT)]
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

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    process: ProcessArgs,
    /// Print the image and cache statistics to stderr after the program ends.
    #[arg(long)]
    stats: bool,
    /// With --stats: print them as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: CacheArgs,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, required = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

#[derive(Args)]
struct InspectArgs {
    /// Program file to prepare (a path; no PATH lookup).
    program: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Daemon(_)) {
        zygote_linux::process::default_sigpipe();
    }
    let code = match cli.command {
        Command::Daemon(a) => daemon(a, cli.log.as_deref()),
        command => {
            init_logging(cli.log.as_deref(), "warn");
            match command {
                Command::Run(a) => run(a),
                Command::Inspect(a) => inspect(a),
                Command::Bench(a) => bench(a),
                Command::BenchDaemon(a) => bench_daemon(a),
                Command::Spawn(a) => remote_spawn(a),
                Command::Preload(a) => report(zygote::remote::preload(&a.socket.path(), &a.programs)),
                Command::Evict(a) => report(zygote::remote::evict(&a.socket.path(), &a.target)),
                Command::Stats(a) => {
                    use zygote::remote::StatsFormat;
                    let format = match (a.json, a.prometheus) {
                        (true, _) => StatsFormat::Json,
                        (_, true) => StatsFormat::Prometheus,
                        _ => StatsFormat::Table,
                    };
                    report(zygote::remote::stats_as(&a.socket.path(), format))
                }
                Command::Experiment(a) => experiment(a),
                Command::Stress(a) => stress(a),
                Command::Daemon(_) => unreachable!("handled above"),
            }
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// The zygote plus the program and its arguments, or the exit code to give up with.
fn setup(cache: &CacheArgs, command: Vec<OsString>) -> Result<(Zygote, OsString, std::vec::IntoIter<OsString>), i32> {
    let zygote = Zygote::new(cache.config()).map_err(|e| {
        eprintln!("zygote: {e}");
        e.exit_code()
    })?;
    let mut it = command.into_iter();
    let Some(program) = it.next() else {
        eprintln!("zygote: no program given");
        return Err(2);
    };
    Ok((zygote, program, it))
}

fn run(a: RunArgs) -> i32 {
    let (zygote, program, it) = match setup(&a.cache, a.command) {
        Ok(v) => v,
        Err(code) => return code,
    };
    // One spawn: a launcher warmed up for a next one would be wasted.
    zygote.set_prestarted(0);
    let p = a.process;
    let mut req = SpawnRequest::new(program).args(it);
    if p.clear_env {
        req = req.env_clear();
    }
    match p.env_pairs() {
        Ok(pairs) => {
            for (k, v) in pairs {
                req = req.env(k, v);
            }
        }
        Err(code) => return code,
    }
    if let Some(d) = p.cwd {
        req = req.cwd(d);
    }
    if let Some(n) = p.name {
        req = req.name(n);
    }
    let mut child = match zygote.spawn(req) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zygote: {e}");
            return e.exit_code();
        }
    };
    let status = match child.wait_relaying_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zygote: waiting for pid {}: {e}", child.pid());
            return 125;
        }
    };
    if a.stats {
        let stats = zygote.stats();
        let image = zygote.cache().images().into_iter().find(|i| i.key() == child.image_key());
        let kind = image.as_ref().map(|i| i.kind());
        let fallback = image.as_ref().and_then(|i| i.fallback().map(str::to_string));
        if a.json {
            let v = serde_json::json!({
                "status": status,
                "exit_code": status.shell_code(),
                "image": { "key": child.image_key().to_string(), "kind": kind, "fallback": fallback },
                "cache": stats,
            });
            eprintln!("{v}");
        } else {
            let how = match &fallback {
                Some(why) => format!("plain exec ({why})"),
                None => format!("from image {}", &child.image_key().to_string()[..16]),
            };
            eprintln!(
                "zygote: {status}; started {how}; cache: {} entries, {} sealed bytes, {} hits, {} misses, build {:.3} ms",
                stats.entries,
                stats.bytes,
                stats.hits,
                stats.misses,
                stats.build_nanos as f64 / 1e6
            );
        }
    }
    status.shell_code()
}

fn inspect(a: InspectArgs) -> i32 {
    let zygote = match Zygote::new(CacheConfig::default()) {
        Ok(z) => z,
        Err(e) => {
            eprintln!("zygote: {e}");
            return e.exit_code();
        }
    };
    let img = match zygote.prepare(&a.program) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("zygote: {e}");
            return e.exit_code();
        }
    };
    if a.json {
        let objects: Vec<_> =
            img.objects().iter().map(|o| serde_json::json!({ "len": o.len(), "resident": o.resident() })).collect();
        let v = serde_json::json!({
            "path": img.path(),
            "key": img.key().to_string(),
            "kind": img.kind(),
            "load_bias": img.load_bias(),
            "entry": img.entry(),
            "relocations": img.relocs(),
            "regions": img.regions(),
            "objects": objects,
            "sealed_bytes": img.sealed_bytes(),
            "build_nanos": img.build_time().as_nanos() as u64,
        });
        println!("{v:#}");
        return 0;
    }
    println!("{}", img.path().display());
    println!("  key         {}", img.key());
    println!("  kind        {:?}", img.kind());
    println!("  load bias   {:#x}", img.load_bias());
    println!("  entry       {:#x}", img.entry().pc);
    let r = img.relocs();
    println!("  relocations {} applied ahead of time, {} left to the program", r.applied, r.left_to_program);
    println!("  sealed      {} bytes in {} objects", img.sealed_bytes(), img.objects().len());
    println!("  build       {:.3} ms", img.build_time().as_secs_f64() * 1e3);
    println!("  regions:");
    for reg in img.regions() {
        let p = reg.prot;
        let prot = format!(
            "{}{}{}",
            if p & 1 != 0 { 'r' } else { '-' },
            if p & 2 != 0 { 'w' } else { '-' },
            if p & 4 != 0 { 'x' } else { '-' }
        );
        let relro = if reg.relro { " relro" } else { "" };
        println!(
            "    {:#014x}-{:#014x} {prot} phdr{:<2} {:?}{relro}",
            reg.vaddr,
            reg.vaddr + reg.len,
            reg.segment,
            reg.kind
        );
    }
    0
}

/// Show a report: the table on stdout, or with `json` the table on stderr (for
/// the human) and the JSON on stdout (for the machine).
fn emit<R: serde::Serialize>(
    what: &str,
    report: &R,
    json: bool,
    table: impl Fn(&R, &mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(), i32> {
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
        Err(e) => {
            eprintln!("zygote: {what}: writing JSON: {e}");
            Err(1)
        }
    }
}

fn bench(a: BenchArgs) -> i32 {
    let zygote = match Zygote::new(a.cache.config()) {
        Ok(z) => z,
        Err(e) => {
            eprintln!("zygote: {e}");
            return e.exit_code();
        }
    };
    zygote.set_prestarted(a.prestarted);
    // One program, or a set separated by `::`, each measured in turn.
    let programs = match zygote_tools::bench_daemon::split_programs(a.command) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zygote: {e}");
            return e.exit_code();
        }
    };
    let mut reports = Vec::new();
    for (program, args) in programs {
        let opts = zygote_tools::bench::BenchOptions {
            program: program.into_os_string(),
            args,
            iterations: a.iterations,
            warmup: a.warmup,
        };
        match zygote_tools::bench::run(&opts, &zygote) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("zygote: {e}");
                return e.exit_code();
            }
        }
    }
    let failed = reports.iter().any(|r| r.failures() > 0);
    let shown = match reports.as_slice() {
        [one] => emit("bench", one, a.json, |r, w| r.write_table(w)),
        all => {
            emit("bench", &all, a.json, |rs, w| rs.iter().try_for_each(|r| r.write_table(w).and_then(|()| writeln!(w))))
        }
    };
    if let Err(code) = shown {
        return code;
    }
    if failed { 1 } else { 0 }
}

fn bench_daemon(a: BenchDaemonArgs) -> i32 {
    let programs = match zygote_tools::bench_daemon::split_programs(a.command) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zygote: {e}");
            return e.exit_code();
        }
    };
    let opts = zygote_tools::bench_daemon::DaemonBenchOptions {
        socket: a.socket.path(),
        programs,
        clients: a.clients,
        spawns_per_client: a.spawns,
        warmup: a.warmup,
        blocks: a.blocks,
    };
    let report = match zygote_tools::bench_daemon::run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zygote: {e}");
            return e.exit_code();
        }
    };
    if let Err(code) = emit("bench-daemon", &report, a.json, |r, w| r.write_table(w)) {
        return code;
    }
    if report.failures() > 0 { 1 } else { 0 }
}

fn experiment(a: ExperimentArgs) -> i32 {
    let mut it = a.command.into_iter();
    let Some(program) = it.next() else {
        eprintln!("zygote: no program given");
        return 2;
    };
    let opts = zygote_tools::experiment::ExperimentOptions {
        program,
        args: it.collect(),
        instances: a.instances,
        step: a.step,
        out: a.out,
        ready_line: a.ready_line,
        settle: std::time::Duration::from_millis(a.settle_ms),
        ready_timeout: std::time::Duration::from_secs(a.ready_timeout_secs),
        font: a.font,
    };
    let report = match zygote_tools::experiment::run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zygote: {e}");
            return e.exit_code();
        }
    };
    if let Err(code) = emit("experiment", &report, a.json, |r, w| r.write_table(w)) {
        return code;
    }
    0
}

fn stress(a: StressArgs) -> i32 {
    let programs = match zygote_tools::stress::parse_programs(&a.programs) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zygote: {e}");
            return e.exit_code();
        }
    };
    let opts = zygote_tools::stress::StressOptions {
        socket: a.socket,
        programs,
        clients: a.clients,
        spawns_per_client: a.spawns,
        cache_entries: a.cache_entries,
    };
    let report = match zygote_tools::stress::run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zygote: {e}");
            return e.exit_code();
        }
    };
    if let Err(code) = emit("stress", &report, a.json, |r, w| r.write_table(w)) {
        return code;
    }
    if report.passed { 0 } else { 1 }
}

fn report(r: Result<i32, zygote::remote::RemoteError>) -> i32 {
    r.unwrap_or_else(|e| {
        eprintln!("zygote: {e}");
        e.exit_code()
    })
}

fn remote_spawn(a: SpawnArgs) -> i32 {
    let env = match a.process.env_pairs() {
        Ok(pairs) => pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        Err(code) => return code,
    };
    let mut it = a.command.into_iter();
    let Some(program) = it.next() else {
        eprintln!("zygote: no program given");
        return 2;
    };
    report(zygote::remote::spawn(zygote::remote::SpawnCommand {
        socket: a.socket.path(),
        program,
        args: it.collect(),
        env,
        clear_env: a.process.clear_env,
        cwd: a.process.cwd,
        name: a.process.name,
        no_wait: a.no_wait,
    }))
}

fn daemon(a: DaemonArgs, log: Option<&str>) -> i32 {
    let loaded = match &a.config {
        Some(p) => zygote::config::Config::load(p),
        None => Ok(zygote::config::Config::defaults()),
    };
    let mut config = match loaded {
        Ok(c) => c,
        Err(e) => {
            init_logging(log, "warn");
            eprintln!("zygote: {e}");
            return 2;
        }
    };
    if let Some(s) = &a.socket {
        config.socket_path = s.to_string_lossy().into_owned();
    }
    if let Some(n) = a.cache_entries {
        config.cache_max_entries = n;
    }
    if let Some(n) = a.cache_bytes {
        config.cache_max_bytes = n;
    }
    if let Some(n) = a.prestarted {
        config.prestarted_launchers = n.min(zygote::config::MAX_PRESTARTED);
    }
    init_logging(log, &config.log_filter);
    let opts = zygote::service::server::ServerOptions {
        socket: a.socket.clone().unwrap_or_else(|| config.socket()),
        config,
        limits: zygote::service::message::Limits::default(),
        grace: std::time::Duration::from_secs(a.grace_secs),
    };
    match zygote::service::server::run(opts) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("zygote: {e}");
            1
        }
    }
}
