//! The client commands: `zygote spawn`, `preload`, `evict`, `stats`.
//!
//! The client resolves the program itself (PATH and `#!`, with its own
//! environment and directory), opens it (proof of read access) and passes the
//! fd, its stdin, stdout and stderr to the daemon.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::service::client::{Client, ClientError};
use crate::service::message::{DaemonStats, Request, Response, SpawnArgs};
use crate::spawn::resolve::{self, ResolveError};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Usage(String),
}

impl RemoteError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RemoteError::Client(e) => e.exit_code(),
            RemoteError::Resolve(e) => e.exit_code(),
            RemoteError::Open { .. } => 126,
            RemoteError::Usage(_) => 2,
        }
    }
}

/// What `zygote spawn` was asked.
pub struct SpawnCommand {
    pub socket: PathBuf,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub clear_env: bool,
    pub cwd: Option<PathBuf>,
    pub name: Option<OsString>,
    pub no_wait: bool,
}

fn open(path: &Path) -> Result<OwnedFd, RemoteError> {
    std::fs::File::open(path).map(OwnedFd::from).map_err(|source| RemoteError::Open { path: path.into(), source })
}

fn bytes(s: &OsStr) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Run `zygote spawn`; returns the exit status to exit with.
pub fn spawn(cmd: SpawnCommand) -> Result<i32, RemoteError> {
    let mut env: Vec<(OsString, OsString)> = if cmd.clear_env { Vec::new() } else { std::env::vars_os().collect() };
    for (k, v) in &cmd.env {
        env.retain(|(ek, _)| ek.as_bytes() != k.as_bytes());
        env.push((k.into(), v.into()));
    }
    let cwd = match cmd.cwd {
        Some(d) if d.is_absolute() => d,
        Some(d) => std::env::current_dir().map_err(|source| RemoteError::Open { path: d.clone(), source })?.join(d),
        None => std::env::current_dir().map_err(|source| RemoteError::Open { path: ".".into(), source })?,
    };
    let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str());
    let found = resolve::find_program(&cmd.program, path_var, Some(&cwd))?;
    let mut argv = vec![cmd.program.clone()];
    argv.extend(cmd.args);
    let launch = resolve::follow_interpreters(found, argv, Some(&cwd))?;
    let exe = open(&launch.program)?;
    let name = match &cmd.name {
        Some(n) => bytes(n),
        None => launch.exec_path.file_name().map(bytes).unwrap_or_default(),
    };
    let args = SpawnArgs {
        argv: launch.argv.iter().map(|a| bytes(a)).collect(),
        environ: env
            .iter()
            .map(|(k, v)| {
                let mut kv = bytes(k);
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                kv
            })
            .collect(),
        name,
        cwd: bytes(cwd.as_os_str()),
        fds: vec![0, 1, 2],
        path: bytes(launch.program.as_os_str()),
        detach: cmd.no_wait,
    };
    let mut client = Client::connect(&cmd.socket)?;
    // SAFETY-free borrows of our own stdio for the duration of the call.
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let fds: [BorrowedFd<'_>; 4] = [exe.as_fd(), stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    let (reply, reply_fds) = client.call(&Request::Spawn(args), &fds)?;
    let Response::Spawned { pid, .. } = reply else {
        return Err(ClientError::Protocol(format!("expected Spawned, got {reply:?}")).into());
    };
    if cmd.no_wait {
        println!("{pid}");
        return Ok(0);
    }
    let pidfd = reply_fds.into_iter().next().ok_or_else(|| ClientError::Protocol("Spawned without a pidfd".into()))?;
    client.send(&Request::Wait { pid }, &[])?;
    // Our child lives in the daemon's process group: pass every signal on.
    let sigs = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
    crate::sys::linux::process::relay_signals_until(client.socket(), pidfd.as_fd(), &sigs, false)
        .map_err(ClientError::Io)?;
    match client.recv()? {
        (Response::Exited { code: Some(c), .. }, _) => Ok(c),
        (Response::Exited { signal: Some(s), .. }, _) => Ok(128 + s),
        (other, _) => Err(ClientError::Protocol(format!("expected Exited, got {other:?}")).into()),
    }
}

/// `zygote preload PROGRAM...`: prints `KEY SEALED_BYTES PROGRAM` per program.
pub fn preload(socket: &Path, programs: &[OsString]) -> Result<i32, RemoteError> {
    let mut client = Client::connect(socket)?;
    let path_var = std::env::var_os("PATH");
    for p in programs {
        let path = resolve::find_program(p, path_var.as_deref(), None)?;
        let exe = open(&path)?;
        let name = path.to_string_lossy().into_owned();
        match client.call(&Request::Preload { name }, &[exe.as_fd()])? {
            (Response::Preloaded { key, sealed_bytes }, _) => println!("{key} {sealed_bytes} {}", path.display()),
            (other, _) => return Err(ClientError::Protocol(format!("expected Preloaded, got {other:?}")).into()),
        }
    }
    Ok(0)
}

/// `zygote evict PROGRAM|HASH`.
pub fn evict(socket: &Path, target: &OsStr) -> Result<i32, RemoteError> {
    let mut client = Client::connect(socket)?;
    let s = target.to_string_lossy();
    let is_hash = s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let reply = if is_hash {
        client.call(&Request::Evict { key: s.into_owned() }, &[])?
    } else {
        let path = resolve::find_program(target, std::env::var_os("PATH").as_deref(), None)?;
        let exe = open(&path)?;
        client.call(&Request::Evict { key: String::new() }, &[exe.as_fd()])?
    };
    match reply {
        (Response::Evicted { count }, _) => {
            println!("evicted {count}");
            Ok(0)
        }
        (other, _) => Err(ClientError::Protocol(format!("expected Evicted, got {other:?}")).into()),
    }
}

/// `zygote stats [--json]`.
pub fn stats(socket: &Path, json: bool) -> Result<i32, RemoteError> {
    let mut client = Client::connect(socket)?;
    let stats: DaemonStats = match client.call(&Request::Stats, &[])? {
        (Response::Stats(s), _) => s,
        (other, _) => return Err(ClientError::Protocol(format!("expected Stats, got {other:?}")).into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&stats).unwrap_or_default());
        return Ok(0);
    }
    let c = &stats.cache;
    println!("cache      {} / {} images, {} / {} sealed bytes", c.entries, c.max_entries, c.bytes, c.max_bytes);
    println!(
        "lookups    {} hits, {} misses, {} evictions, {} builds ({:.1} ms building)",
        c.hits,
        c.misses,
        c.evictions,
        c.builds,
        c.build_nanos as f64 / 1e6
    );
    println!(
        "spawns     {} served, {} failed, {} children running",
        stats.spawns, stats.spawn_errors, stats.live_children
    );
    println!("clients    {} connections, {} open", stats.connections, stats.open_connections);
    for i in &stats.images {
        println!("image      {} {:>10} B {:>3} regions  {}", &i.key[..16], i.sealed_bytes, i.regions, i.path);
    }
    Ok(0)
}
