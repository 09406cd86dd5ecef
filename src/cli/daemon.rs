//! `zygote daemon`: load the configuration, apply the flags, serve.

use clap::Args;
use std::path::PathBuf;

use super::{CliError, init_logging};

#[derive(Args)]
pub struct DaemonArgs {
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

pub fn daemon(a: DaemonArgs, log: Option<&str>) -> Result<i32, CliError> {
    let loaded = match &a.config {
        Some(p) => zygote::config::Config::load(p),
        None => Ok(zygote::config::Config::defaults()),
    };
    let mut config = loaded.map_err(|e| {
        init_logging(log, "warn");
        CliError::usage(e.to_string())
    })?;
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
    zygote::service::server::run(opts).map_err(|e| CliError { message: e.to_string(), code: 1 })?;
    Ok(0)
}
