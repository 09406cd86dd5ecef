//! The client commands: `zygote spawn`, `preload`, `evict`, `stats`.
//!
//! The client resolves the program itself (PATH and `#!`, with its own
//! environment and directory), opens it (proof of read access) and passes the
//! fd, its stdin, stdout and stderr to the daemon.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use zygote_core::metrics::human_bytes;

use crate::service::client::{Client, ClientError};
use crate::service::message::{DaemonStats, Request, Response, SpawnArgs};
use zygote_core::exec::ResolveError;
use zygote_linux::SpawnRequest;
use zygote_linux::exec as resolve;

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
    #[error(
        "the daemon ended while pid {pid} ran; the program has ended now too, but only its parent (the daemon) \
         could learn its exit status"
    )]
    DaemonGone { pid: i32 },
}

impl RemoteError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RemoteError::Client(e) => e.exit_code(),
            RemoteError::Resolve(e) => e.exit_code(),
            RemoteError::Open { .. } => 126,
            RemoteError::Usage(_) => 2,
            RemoteError::DaemonGone { .. } => 125,
        }
    }
}

fn open(path: &Path) -> Result<OwnedFd, RemoteError> {
    std::fs::File::open(path).map(OwnedFd::from).map_err(|source| RemoteError::Open { path: path.into(), source })
}

fn bytes(s: &OsStr) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Run `zygote spawn`: resolve `req` here (its PATH, cwd and `#!` lines),
/// open the program, and have the daemon start it with the request's fds (or
/// this process's stdio when it has none). Returns the status to exit with.
pub fn spawn(socket: &Path, req: &SpawnRequest, no_wait: bool) -> Result<i32, RemoteError> {
    let env = req.environment();
    let here = || std::env::current_dir().map_err(|source| RemoteError::Open { path: ".".into(), source });
    let cwd = match req.cwd_path() {
        Some(d) if d.is_absolute() => d.to_path_buf(),
        Some(d) => here()?.join(d),
        None => here()?,
    };
    let launch = resolve::resolve(req.program(), req.argv().to_vec(), &env, Some(&cwd))?;
    let exe = open(&launch.program)?;
    let name = match req.process_name() {
        Some(n) => bytes(n),
        None => launch.exec_path.file_name().map(bytes).unwrap_or_default(),
    };
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let mut fds: Vec<(BorrowedFd<'_>, i32)> = req.fds().iter().map(|(fd, t)| (fd.as_fd(), *t)).collect();
    if fds.is_empty() {
        fds = vec![(stdin.as_fd(), 0), (stdout.as_fd(), 1), (stderr.as_fd(), 2)];
    }
    let args = SpawnArgs {
        argv: launch.argv.iter().map(|a| bytes(a)).collect(),
        environ: env.iter().map(|kv| bytes(kv)).collect(),
        name,
        cwd: bytes(cwd.as_os_str()),
        fds: fds.iter().map(|f| f.1).collect(),
        path: bytes(launch.program.as_os_str()),
        detach: no_wait,
    };
    let mut attached = vec![exe.as_fd()];
    attached.extend(fds.iter().map(|f| f.0));
    // Signals to relay stay pending from here on, so none is lost (or kills
    // us) before the child exists; they are passed on once it does.
    let sigs = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
    let old_mask = zygote_linux::process::block_signals(&sigs).map_err(ClientError::Io)?;
    let result = spawn_blocked(socket, no_wait, args, &attached, &sigs);
    zygote_linux::process::restore_signals(&old_mask);
    result
}

fn spawn_blocked(
    socket: &Path,
    no_wait: bool,
    args: SpawnArgs,
    fds: &[BorrowedFd<'_>],
    sigs: &[i32],
) -> Result<i32, RemoteError> {
    let mut client = Client::connect(socket)?;
    let (reply, reply_fds) = client.call(&Request::Spawn(args), fds)?;
    let Response::Spawned { pid, .. } = reply else {
        return Err(ClientError::Protocol(format!("expected Spawned, got {reply:?}")).into());
    };
    if no_wait {
        println!("{pid}");
        return Ok(0);
    }
    let pidfd = reply_fds.into_iter().next().ok_or_else(|| ClientError::Protocol("Spawned without a pidfd".into()))?;
    let exited = client.send(&Request::Wait { pid }, &[]).and_then(|()| {
        // Our child lives in the daemon's process group: pass every signal on.
        zygote_linux::process::relay_signals_until(client.socket(), pidfd.as_fd(), sigs, false)
            .map_err(ClientError::Io)?;
        client.recv()
    });
    match exited {
        Ok((Response::Exited { code: Some(c), .. }, _)) => Ok(c),
        Ok((Response::Exited { signal: Some(s), .. }, _)) => Ok(128 + s),
        Ok((other, _)) => Err(ClientError::Protocol(format!("expected Exited, got {other:?}")).into()),
        Err(e) if daemon_gone(&e) => {
            // The daemon died (SIGKILL, a crash) before the program: the
            // program lives on. Wait for it through the pidfd, still passing
            // signals on; only its parent could learn how it ended.
            zygote_linux::process::relay_signals_until(pidfd.as_fd(), pidfd.as_fd(), sigs, false)
                .map_err(ClientError::Io)?;
            Err(RemoteError::DaemonGone { pid })
        }
        Err(e) => Err(e.into()),
    }
}

/// Did the connection end because the daemon went away?
fn daemon_gone(e: &ClientError) -> bool {
    use crate::service::frame::FrameError;
    match e {
        ClientError::Closed | ClientError::Frame(FrameError::Truncated) => true,
        ClientError::Frame(FrameError::Io(io)) | ClientError::Io(io) => {
            matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
        }
        _ => false,
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

/// How `zygote stats` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatsFormat {
    /// A table for people.
    #[default]
    Table,
    /// `DaemonStats` as JSON (docs/PROTOCOL.md).
    Json,
    /// OpenMetrics text (`# EOF`-terminated), as the daemon's `GET /metrics`.
    Prometheus,
}

/// `zygote stats [--json]`.
pub fn stats(socket: &Path, json: bool) -> Result<i32, RemoteError> {
    stats_as(socket, if json { StatsFormat::Json } else { StatsFormat::Table })
}

/// `zygote stats [--json | --prometheus]`.
pub fn stats_as(socket: &Path, format: StatsFormat) -> Result<i32, RemoteError> {
    let mut client = Client::connect(socket)?;
    let stats: DaemonStats = match client.call(&Request::Stats, &[])? {
        (Response::Stats(s), _) => *s,
        (other, _) => return Err(ClientError::Protocol(format!("expected Stats, got {other:?}")).into()),
    };
    match format {
        StatsFormat::Json => println!("{}", serde_json::to_string_pretty(&stats).unwrap_or_default()),
        StatsFormat::Prometheus => print!("{}", zygote_core::metrics::openmetrics::render(&stats)),
        StatsFormat::Table => print!("{}", stats_table(&stats)),
    }
    Ok(0)
}

/// Microseconds for people.
fn human_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// Most processes the table lists per image (`--json` has them all).
const TABLE_PROCESSES: usize = 8;

/// The human table of `zygote stats`.
pub fn stats_table(stats: &DaemonStats) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let c = &stats.cache;
    let _ = writeln!(
        o,
        "cache      {} / {} images, {} / {} sealed bytes ({} more held by processes of evicted images)",
        c.entries, c.max_entries, c.bytes, c.max_bytes, c.pinned_bytes
    );
    let _ = writeln!(
        o,
        "lookups    {} hits, {} misses, {} evictions, {} builds ({:.1} ms building)",
        c.hits,
        c.misses,
        c.evictions,
        c.builds,
        c.build_nanos as f64 / 1e6
    );
    let _ = writeln!(
        o,
        "spawns     {} served, {} failed, {} children running",
        stats.spawns, stats.spawn_errors, stats.live_children
    );
    let l = &stats.spawn_latency;
    if let Some(mean) = l.sum_us.checked_div(l.count) {
        let q = |p| l.quantile_bound_us(p).map_or_else(|| "more".to_string(), |us| format!("<= {}", human_us(us)));
        let _ = writeln!(o, "latency    mean {}, p50 {}, p90 {}, p99 {}", human_us(mean), q(0.5), q(0.9), q(0.99));
    }
    let ln = &stats.launchers;
    let _ = writeln!(o, "launchers  {} idle of {} kept, {} spawns served by one", ln.idle, ln.capacity, ln.spawns);
    let _ = writeln!(o, "clients    {} connections, {} open", stats.connections, stats.open_connections);
    let m = &stats.memory;
    let _ = writeln!(
        o,
        "memory     image mappings: {} rss, {} pss, {} private dirty; sharing saves {}",
        human_bytes(m.rss),
        human_bytes(m.pss),
        human_bytes(m.private_dirty),
        human_bytes(stats.saved_bytes)
    );
    if stats.images.is_empty() {
        return o;
    }
    let _ = writeln!(
        o,
        "\n{:<16} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}  path",
        "image", "procs", "sealed", "resident", "rss", "pss", "priv dirty", "saved"
    );
    for i in &stats.images {
        let key = i.key.get(..16).unwrap_or(&i.key);
        let evicted = if i.cached { "" } else { " (evicted)" };
        let _ = writeln!(
            o,
            "{key:<16} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}  {}{evicted}",
            i.live_processes,
            human_bytes(i.sealed_bytes),
            human_bytes(i.resident_bytes),
            human_bytes(i.memory.rss),
            human_bytes(i.memory.pss),
            human_bytes(i.memory.private_dirty),
            human_bytes(i.saved_bytes),
            i.path
        );
        for p in i.processes.iter().take(TABLE_PROCESSES) {
            let _ = writeln!(
                o,
                "  pid {:<10} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}  up {:.1} s",
                p.pid,
                "",
                "",
                "",
                human_bytes(p.memory.rss),
                human_bytes(p.memory.pss),
                human_bytes(p.memory.private_dirty),
                human_bytes(p.saved_bytes),
                p.uptime_ms as f64 / 1e3
            );
        }
        if i.processes.len() > TABLE_PROCESSES {
            let _ = writeln!(o, "  ... {} more processes (--json lists them)", i.processes.len() - TABLE_PROCESSES);
        }
    }
    o
}
