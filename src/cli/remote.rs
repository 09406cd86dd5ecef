//! The daemon's client commands: `zygote spawn`, `preload`, `evict`, `stats`
//! (the protocol work is `zygote::remote`).

use clap::Args;
use std::ffi::OsString;

use zygote::remote::{self, StatsFormat};

use super::{CliError, ProcessArgs, SocketArg};

#[derive(Args)]
pub struct SpawnArgs {
    #[command(flatten)]
    socket: SocketArg,
    #[command(flatten)]
    process: ProcessArgs,
    /// Do not wait: print the pid and exit; the process outlives this command
    /// (the daemon starts it, as with --daemon-side).
    #[arg(long)]
    no_wait: bool,
    /// Replace this command with the program (caller-side; no fork).
    #[arg(long, conflicts_with_all = ["no_wait", "daemon_side"])]
    exec: bool,
    /// Have the daemon start the program as its own child (the path before
    /// caller-side spawning; for detached processes, experiments and stress).
    /// Implied by --no-wait and --name.
    #[arg(long)]
    daemon_side: bool,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, required = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

#[derive(Args)]
pub struct PreloadArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Programs (PATH is searched for names without a slash).
    #[arg(required = true)]
    programs: Vec<OsString>,
}

#[derive(Args)]
pub struct EvictArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// A program, or a 64-digit image hash as `zygote stats` shows.
    target: OsString,
}

#[derive(Args)]
pub struct StatsArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Machine-readable output (the DaemonStats schema, docs/PROTOCOL.md).
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// OpenMetrics text, as the daemon's `GET /metrics` (metrics_port) serves it.
    #[arg(long)]
    prometheus: bool,
}

pub fn spawn(a: SpawnArgs) -> Result<i32, CliError> {
    if a.no_wait || a.daemon_side || a.process.name.is_some() {
        if a.exec {
            return Err(CliError::usage("--exec starts the program here, not in the daemon: it takes no --name"));
        }
        let req = a.process.request(a.command)?;
        return Ok(remote::spawn(&a.socket.path(), &req, a.no_wait)?);
    }
    caller_side(a)
}

/// The program as this command's child (or, with --exec, as this process)
/// from the daemon's image: the thin exec client through the client library.
fn caller_side(a: SpawnArgs) -> Result<i32, CliError> {
    let (program, args) = a.command.split_first().ok_or_else(|| CliError::usage("no program given"))?;
    let mut cmd = zygote_linux::client::Command::new(program);
    cmd.args(args);
    if let Some(s) = &a.socket.socket {
        cmd.socket(s);
    }
    if a.process.clear_env {
        cmd.env_clear();
    }
    for (k, v) in a.process.env_pairs()? {
        cmd.env(k, v);
    }
    if let Some(d) = &a.process.cwd {
        cmd.current_dir(d);
    }
    let failed = |e: std::io::Error| {
        let code = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
        let name = program.to_string_lossy();
        let message = if e.to_string().contains(&*name) { e.to_string() } else { format!("{name}: {e}") };
        CliError { message, code }
    };
    if a.exec {
        return Err(failed(cmd.exec()));
    }
    let mut child = cmd.spawn().map_err(failed)?;
    zygote_linux::client::wait_and_mirror(&mut child).map_err(|e| CliError { message: e.to_string(), code: 125 })
}

pub fn preload(a: PreloadArgs) -> Result<i32, CliError> {
    Ok(remote::preload(&a.socket.path(), &a.programs)?)
}

pub fn evict(a: EvictArgs) -> Result<i32, CliError> {
    Ok(remote::evict(&a.socket.path(), &a.target)?)
}

pub fn stats(a: StatsArgs) -> Result<i32, CliError> {
    let format = match (a.json, a.prometheus) {
        (true, _) => StatsFormat::Json,
        (_, true) => StatsFormat::Prometheus,
        _ => StatsFormat::Table,
    };
    Ok(remote::stats_as(&a.socket.path(), format)?)
}
