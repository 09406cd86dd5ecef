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
    /// Do not wait: print the pid and exit; the process outlives this command.
    #[arg(long)]
    no_wait: bool,
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
    let req = a.process.request(a.command)?;
    Ok(remote::spawn(&a.socket.path(), &req, a.no_wait)?)
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
