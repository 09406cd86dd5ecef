//! Hardening of the daemon against other local users and floods:
//!
//! - the socket directory must be the daemon's own (not another uid's, not
//!   writable by others, not a symbolic link; the default runtime directory
//!   not readable either), and an existing one is never loosened;
//! - the client refuses a server that runs as another (non-root) uid before
//!   sending it anything;
//! - floods of connections and fds, and of connections from a refused uid,
//!   neither spin the daemon nor flood its log, and it serves again after;
//! - connections are capped per uid; idle connections and half-sent frames
//!   are closed, but not a connection waiting for its child.
//!
//! The other uid is 65534 (nobody): this test binary, linked into a
//! world-readable directory, runs as it (the ignored `helper_as_other_uid`
//! test, driven by environment variables).

mod common;

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::*;
use zygote::service::client::{Client, ClientError};
use zygote::service::frame::{FrameReader, MAGIC, ReadStatus};
use zygote::service::message::{ErrorCode, PROTOCOL_VERSION, Request, Response};
use zygote::service::sockdir::{self, SocketDirError, Strictness};

const NOBODY: u32 = 65534;
const HELPER_MODE: &str = "ZYGOTE_TEST_HELPER_MODE";
const HELPER_SOCKET: &str = "ZYGOTE_TEST_HELPER_SOCKET";
const HELPER_COUNT: &str = "ZYGOTE_TEST_HELPER_COUNT";
const HELPER_READY: &str = "ZYGOTE_TEST_HELPER_READY";
/// Most CPU the daemon may use while a flood is held (2 s of it).
const MAX_CPU: Duration = Duration::from_millis(500);
/// Most the daemon's log may grow to during a flood.
const MAX_LOG: u64 = 100 * 1024;

// ---------------------------------------------------------------------------
// The helper, run as uid 65534.

/// Runs only when another test starts it as uid 65534 (see [`helper`]).
#[test]
#[ignore = "helper: run by the other tests of this file as uid 65534"]
fn helper_as_other_uid() {
    let Ok(mode) = std::env::var(HELPER_MODE) else { return };
    let socket = PathBuf::from(std::env::var_os(HELPER_SOCKET).expect("helper socket"));
    let count: usize = std::env::var(HELPER_COUNT).ok().and_then(|n| n.parse().ok()).unwrap_or(1);
    println!("UID {}", rustix::process::getuid().as_raw());
    match mode.as_str() {
        "impostor" => impostor(&socket, count),
        "flood" => flood(&socket, count),
        "stats" => match Client::connect(&socket).and_then(|mut c| c.call(&Request::Stats, &[])) {
            Ok((Response::Stats(_), _)) => println!("RESULT served"),
            Ok(other) => println!("RESULT unexpected {other:?}"),
            Err(e) => println!("RESULT failed {e}"),
        },
        other => panic!("unknown helper mode {other}"),
    }
}

/// Listen on `socket` (as this uid), mark `socket.ready`, take `count`
/// connections and report what each one sent before closing.
fn impostor(socket: &Path, count: usize) {
    let l = UnixListener::bind(socket).expect("impostor bind");
    fs::write(ready_marker(socket), b"").expect("impostor ready marker");
    for _ in 0..count {
        let (s, _) = l.accept().expect("impostor accept");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
        let mut reader = FrameReader::new();
        let mut saw_eof = false;
        while let Ok(ReadStatus::Data) = reader.read_once(s.as_fd()) {}
        if let Ok(ReadStatus::Eof) = reader.read_once(s.as_fd()) {
            saw_eof = true;
        }
        println!("RECEIVED bytes={} fds={} eof={saw_eof}", reader.buffered(), reader.pending_fds());
    }
}

/// Connect `count` times, keeping as many connections open as the fd limit
/// allows; mark `socket.ready` and hold them a few seconds.
fn flood(socket: &Path, count: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    let _ = setrlimit(Resource::Nofile, lim);
    let room = getrlimit(Resource::Nofile).current.unwrap_or(1024).saturating_sub(64) as usize;
    let mut held = Vec::new();
    let mut failed = 0;
    for _ in 0..count {
        match UnixStream::connect(socket) {
            Ok(s) if held.len() < room => held.push(s),
            Ok(_) => {}
            Err(_) => failed += 1,
        }
    }
    println!("RESULT connected {} failed {failed} held {}", count - failed, held.len());
    fs::write(ready_marker(socket), b"").expect("flood ready marker");
    thread::sleep(Duration::from_secs(3));
}

/// The file a helper creates when it is ready: `$ZYGOTE_TEST_HELPER_READY`,
/// else next to the socket.
fn ready_marker(socket: &Path) -> PathBuf {
    std::env::var_os(HELPER_READY)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("{}.ready", socket.display())))
}

// ---------------------------------------------------------------------------
// Fixtures.

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    /// Mode `mode`, owned by `uid` (as root).
    fn new(stem: &str, mode: u32, uid: u32) -> TempDir {
        assert!(rustix::process::getuid().is_root(), "these tests need root (they use uid {NOBODY})");
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "zt-hard-{stem}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir(&d).expect("create temp dir");
        std::os::unix::fs::chown(&d, Some(uid), Some(uid)).expect("chown temp dir");
        fs::set_permissions(&d, fs::Permissions::from_mode(mode)).expect("chmod temp dir");
        TempDir(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A world-readable directory holding a copy of this test binary.
fn shared_dir() -> TempDir {
    let d = TempDir::new("shared", 0o755, 0);
    let exe = d.path("helper");
    if fs::hard_link(std::env::current_exe().expect("current_exe"), &exe).is_err() {
        fs::copy(std::env::current_exe().expect("current_exe"), &exe).expect("copy the helper");
    }
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).expect("chmod helper");
    d
}

/// Start this test binary's helper as uid 65534.
fn helper(dir: &TempDir, mode: &str, socket: &Path, count: usize) -> std::process::Child {
    helper_command(dir, mode, socket, count).spawn().unwrap_or_else(|e| panic!("start the helper ({mode}): {e}"))
}

/// The command that runs this test binary's helper as uid 65534.
fn helper_command(dir: &TempDir, mode: &str, socket: &Path, count: usize) -> Command {
    let mut cmd = Command::new(dir.path("helper"));
    cmd.args(["--exact", "helper_as_other_uid", "--ignored", "--nocapture", "--test-threads=1"]);
    cmd.env(HELPER_MODE, mode).env(HELPER_SOCKET, socket).env(HELPER_COUNT, count.to_string());
    cmd.current_dir(&dir.0).uid(NOBODY).gid(NOBODY).stdin(Stdio::null()).stdout(Stdio::piped());
    cmd.stderr(Stdio::piped());
    cmd
}

/// Wait for a helper to finish; its `RESULT`/`RECEIVED` lines.
fn helper_lines(child: std::process::Child, mode: &str) -> Vec<String> {
    let out = wait_output(child);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "helper ({mode}) failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("UID {NOBODY}\n")), "helper did not run as uid {NOBODY}: {stdout}");
    stdout.lines().filter(|l| l.starts_with("RESULT ") || l.starts_with("RECEIVED ")).map(str::to_string).collect()
}

/// `wait_with_output`, with a safety deadline (SIGKILL after it).
fn wait_output(child: std::process::Child) -> std::process::Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("wait for the helper"),
        Err(_) => {
            let _ = kill_pid(pid, libc::SIGKILL);
            panic!("the helper did not finish within {DEADLINE:?}");
        }
    }
}

/// A configuration file: the shipped defaults with `changes` applied.
fn config_file(dir: &TempDir, changes: serde_json::Value) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    write_config(&dir.path(&format!("config-{}.json", N.fetch_add(1, Ordering::Relaxed))), changes)
}

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).map(|m| m.permissions().mode() & 0o7777).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// CPU time (user + system, all threads) a process has used.
fn cpu_time(pid: i32) -> Duration {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let rest = &text[text.rfind(')').expect("comm") + 1..];
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    let ticks = f[11] + f[12];
    let hz = rustix::param::clock_ticks_per_second();
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Lower the daemon's fd limit (soft and hard) to `n`.
fn limit_fds(pid: i32, n: u64) {
    use rustix::process::{Pid, Resource, Rlimit, prlimit};
    let pid = Pid::from_raw(pid).expect("daemon pid");
    prlimit(Some(pid), Resource::Nofile, Rlimit { current: Some(n), maximum: Some(n) }).expect("prlimit the daemon");
}

/// `/bin/true` through the daemon.
fn spawn_true(daemon: &Daemon, client: &mut Client, what: &str) {
    let out = remote_run(client, Path::new("/bin/true"), &[], b"")
        .unwrap_or_else(|e| panic!("{what}: spawning /bin/true failed: {e}\n{}", daemon.log_tail(3000)));
    assert_eq!(out.code, 0, "{what}: /bin/true: {out}");
}

/// The daemon's CPU use over 2 s and its log size stay small.
fn assert_quiet_under_flood(daemon: &Daemon, what: &str) {
    let before = cpu_time(daemon.pid());
    thread::sleep(Duration::from_secs(2));
    let used = cpu_time(daemon.pid()) - before;
    let log = fs::metadata(&daemon.log).map(|m| m.len()).unwrap_or(0);
    assert!(used < MAX_CPU, "{what}: the daemon used {used:?} of CPU in 2 s; log tail:\n{}", daemon.log_tail(1500));
    assert!(log < MAX_LOG, "{what}: the daemon's log grew to {log} bytes; tail:\n{}", daemon.log_tail(1500));
}

// ---------------------------------------------------------------------------
// The socket directory and the server's identity.

/// A socket directory that another uid owns (mode 0777, as a squatter would
/// leave it), one of ours that others may write to, and a symbolic link:
/// the daemon exits non-zero naming the directory and the reason, and
/// creates no socket.
#[test]
fn the_daemon_refuses_a_socket_directory_it_does_not_own() {
    let squatted = TempDir::new("squat", 0o777, NOBODY);
    let open = TempDir::new("open", 0o777, 0);
    let real = TempDir::new("real", 0o700, 0);
    let link = std::env::temp_dir().join(format!("zt-hard-link-{}", std::process::id()));
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&real.0, &link).expect("symlink");
    let cases = [
        (squatted.0.clone(), format!("owned by uid {NOBODY}")),
        (open.0.clone(), "mode 0777".to_string()),
        (link.clone(), "symbolic link".to_string()),
    ];
    for (dir, why) in cases {
        let socket = dir.join("z.sock");
        let mut daemon = Daemon::spawn(&socket, &[]);
        let st = daemon.wait_exit(SETTLE);
        let log = daemon.log_text();
        assert!(!st.success(), "the daemon accepted {} ({why}): {st:?}\n{log}", dir.display());
        assert!(log.contains(&dir.display().to_string()) && log.contains(&why), "{why}: unclear error:\n{log}");
        assert!(!socket.exists(), "the daemon created {}", socket.display());
    }
    assert!(!real.path("z.sock").exists(), "a socket was created through the link");
    let _ = fs::remove_file(&link);
}

/// The default socket path (`$XDG_RUNTIME_DIR/zygote/zygote.sock`, or
/// `/tmp/zygote-$UID/`): its directory is refused if another uid owns it
/// or if group/other may read it (0755), and created 0700 when missing.
/// The check itself ([`sockdir::prepare`]) is also driven directly on a
/// `/tmp/zygote-$UID`-like directory squatted by another uid.
#[test]
fn the_default_runtime_directory_must_be_private() {
    let run = |xdg: &Path| -> (std::process::Child, PathBuf) {
        let log = xdg.join("daemon.log");
        let child = Command::new(zygote_bin())
            .arg("daemon")
            .env("XDG_RUNTIME_DIR", xdg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("daemon log"))
            .spawn()
            .expect("start the daemon");
        (child, log)
    };
    for (owner, mode, why) in [(NOBODY, 0o777, format!("owned by uid {NOBODY}")), (0, 0o755, "mode 0755".into())] {
        let xdg = TempDir::new("xdg", 0o700, 0);
        let dir = xdg.path("zygote");
        fs::create_dir(&dir).expect("mkdir zygote");
        std::os::unix::fs::chown(&dir, Some(owner), Some(owner)).expect("chown");
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
        let (child, log) = run(&xdg.0);
        let out = wait_output(child);
        let log = fs::read_to_string(&log).unwrap_or_default();
        assert!(!out.status.success(), "the daemon accepted {} ({why}):\n{log}", dir.display());
        assert!(log.contains(&dir.display().to_string()) && log.contains(&why), "unclear error ({why}):\n{log}");
        assert!(!dir.join("zygote.sock").exists(), "the daemon created its socket in {}", dir.display());
    }
    // Missing: created 0700, and served.
    let xdg = TempDir::new("xdg", 0o700, 0);
    let (child, _log) = run(&xdg.0);
    let guard = StdChildGuard(Some(child));
    let socket = xdg.path("zygote/zygote.sock");
    eventually("the daemon serves on the default path", DEADLINE, || {
        Client::connect(&socket).map(drop).map_err(|e| e.to_string())
    });
    assert_eq!(mode_of(&xdg.path("zygote")), 0o700, "mode of the runtime directory the daemon created");
    if let Some(c) = guard.0.as_ref() {
        let _ = kill_pid(c.id() as i32, libc::SIGTERM);
    }
    drop(guard);

    // The function behind it, on a squatted /tmp/zygote-$UID.
    let squatted = TempDir::new("zygote-0", 0o777, NOBODY);
    let e = sockdir::prepare(&squatted.0, 0, false, Strictness::Private).expect_err("a squatted runtime dir");
    assert!(matches!(e, SocketDirError::NotOwned { owner: NOBODY, own: 0, .. }), "{e}");
    assert_eq!(mode_of(&squatted.0), 0o777, "the check must not change the directory");
    let fresh = TempDir::new("parent", 0o700, 0);
    let made = fresh.path("zygote-0");
    assert_eq!(sockdir::prepare(&made, 0, true, Strictness::Private).expect("create"), sockdir::DirOrigin::Created);
    assert_eq!(mode_of(&made), 0o711);
}

/// A server listening as another (non-root) uid, as after a squatter
/// replaced the socket: `Client::connect` and `zygote stats` refuse it,
/// naming the path and its uid, and it receives no byte and no fd.
#[test]
fn the_client_refuses_a_server_of_another_uid() {
    let shared = shared_dir();
    let squat = TempDir::new("impostor", 0o755, NOBODY);
    let socket = squat.path("z.sock");
    let child = helper(&shared, "impostor", &socket, 2);
    eventually("the impostor listens", DEADLINE, || {
        if ready_marker(&socket).exists() { Ok(()) } else { Err("no ready marker".to_string()) }
    });
    match Client::connect(&socket) {
        Err(e @ ClientError::UntrustedServer { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&socket.display().to_string()) && msg.contains("65534"), "{msg}");
            assert_eq!(e.exit_code(), 125);
        }
        Err(e) => panic!("Client::connect to an impostor: wrong error: {e}"),
        Ok(_) => panic!("Client::connect accepted a server running as uid {NOBODY}"),
    }
    let out = run_command(Command::new(zygote_bin()).arg("stats").arg("--socket").arg(&socket));
    assert_eq!(out.code, 125, "`zygote stats` against an impostor:\n{out}");
    assert!(out.stderr_str().contains("uid 65534"), "`zygote stats` against an impostor:\n{out}");
    let lines = helper_lines(child, "impostor");
    assert_eq!(lines, vec!["RECEIVED bytes=0 fds=0 eof=true".to_string(); 2], "what the impostor received");
}

/// An existing 0700 socket directory stays 0700 while a daemon with
/// `allowed_uids` runs in it and after it exits; the daemon warns that the
/// allowed uids cannot reach the socket.
#[test]
fn an_existing_socket_directory_keeps_its_mode() {
    let dir = TempDir::new("private", 0o700, 0);
    let cfg_dir = TempDir::new("cfg", 0o700, 0);
    let cfg = config_file(&cfg_dir, serde_json::json!({ "allowed_uids": [NOBODY] }));
    let socket = dir.path("z.sock");
    let mut daemon = Daemon::start(&socket, &["--config".as_ref(), cfg.as_os_str()]);
    assert_eq!(mode_of(&dir.0), 0o700, "mode of the socket directory while the daemon runs");
    let log = daemon.log_text();
    assert!(log.contains("cannot search") && log.contains(&dir.0.display().to_string()), "no warning:\n{log}");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(SETTLE).success(), "{}", daemon.log_text());
    assert_eq!(mode_of(&dir.0), 0o700, "mode of the socket directory after the daemon exited");
}

// ---------------------------------------------------------------------------
// Floods, caps and timeouts.

/// (a) Out of fds: with its fd limit at 128, connections that each send a
/// partial frame with 64 fds, plus more connections than it can accept,
/// held for 2 s: the daemon does not spin (little CPU) and its log stays
/// small; once they close, it spawns again and its fds return to the
/// baseline.
#[test]
fn an_fd_flood_neither_spins_nor_floods_the_log() {
    let dir = TempDir::new("fdflood", 0o700, 0);
    let cfg = config_file(
        &dir,
        serde_json::json!({ "prestarted_launchers": 0, "max_connections": 1024, "max_connections_per_uid": 1024 }),
    );
    let daemon = Daemon::start(&dir.path("z.sock"), &["--config".as_ref(), cfg.as_os_str()]);
    let mut client = daemon.client();
    spawn_true(&daemon, &mut client, "before the flood");
    let baseline = daemon.quiet_fd_count(&mut client);
    limit_fds(daemon.pid(), 128);

    // Hello, then the start of a frame carrying 64 fds; sent without
    // waiting for the daemon, which may be out of fds already.
    let mut flood = Vec::new();
    for _ in 0..20 {
        let c = RawConn::connect(&daemon.socket);
        let fds = null_fds(64);
        let _ = c.send_msg(&zygote::service::message::Hello { version: PROTOCOL_VERSION }, &[]);
        let mut bytes = raw_header(MAGIC, 4096, 64).to_vec();
        bytes.extend_from_slice(b"{\"x\":");
        let _ = c.send_bytes(&bytes, &borrow_all(&fds));
        flood.push(c);
    }
    let mut plain = Vec::new();
    for _ in 0..300 {
        match UnixStream::connect(&daemon.socket) {
            Ok(s) => {
                s.set_nonblocking(true).expect("nonblocking");
                plain.push(s);
            }
            Err(_) => break,
        }
    }
    thread::sleep(Duration::from_millis(300));
    assert_quiet_under_flood(&daemon, "fd flood");
    drop(flood);
    drop(plain);
    daemon.wait_quiet_with(&mut client, 1);
    spawn_true(&daemon, &mut client, "after the flood");
    daemon.wait_quiet_with(&mut client, 1);
    daemon.expect_fds_at_most(baseline, "after the fd flood");
}

/// (b) 5000 connections from a uid the daemon refuses (its fd limit at
/// 128): each is answered and closed at once, so the daemon neither spins
/// nor logs a line per connection, and it serves its owner after.
#[test]
fn a_refused_uid_flood_neither_spins_nor_floods_the_log() {
    let shared = shared_dir();
    let cfg = config_file(&shared, serde_json::json!({ "prestarted_launchers": 0 }));
    let socket = shared.path("z.sock");
    let daemon = Daemon::start(&socket, &["--config".as_ref(), cfg.as_os_str()]);
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).expect("chmod 0666 the socket");
    let mut client = daemon.client();
    spawn_true(&daemon, &mut client, "before the flood");
    let baseline = daemon.quiet_fd_count(&mut client);
    limit_fds(daemon.pid(), 128);

    // The helper marks its readiness in a directory it may write to.
    let scratch = TempDir::new("scratch", 0o755, NOBODY);
    let ready = scratch.path("flooded");
    let mut cmd = helper_command(&shared, "flood", &socket, 5000);
    let child = cmd.env(HELPER_READY, &ready).spawn().expect("start the flood helper");
    eventually(
        "the flood is held",
        DEADLINE,
        || {
            if ready.exists() { Ok(()) } else { Err("no ready marker".to_string()) }
        },
    );
    assert_quiet_under_flood(&daemon, "refused-uid flood");
    let lines = helper_lines(child, "flood");
    assert!(lines.iter().any(|l| l.starts_with("RESULT connected 5000 failed 0")), "{lines:?}");
    let refusals = daemon.log_text().lines().filter(|l| l.contains("refused")).count();
    assert!(refusals < 100, "{refusals} lines about refusals for 5000 connections:\n{}", daemon.log_tail(2000));
    spawn_true(&daemon, &mut client, "after the flood");
    daemon.wait_quiet_with(&mut client, 1);
    daemon.expect_fds_at_most(baseline, "after the refused-uid flood");
}

/// (c) `max_connections_per_uid: 4`: a fifth connection from root is
/// answered with an error naming the limit and closed, while uid 65534
/// (allowed) is served; once one of root's closes, root is served again.
#[test]
fn connections_are_capped_per_uid() {
    let shared = shared_dir();
    let cfg = config_file(&shared, serde_json::json!({ "allowed_uids": [NOBODY], "max_connections_per_uid": 4 }));
    let socket = shared.path("z.sock");
    let daemon = Daemon::start(&socket, &["--config".as_ref(), cfg.as_os_str()]);
    // One connection of root's, and no other (Daemon::start's probe closed).
    let mut first = daemon.client();
    daemon.wait_quiet_with(&mut first, 1);
    let mut held: Vec<RawConn> = (0..3).map(|_| RawConn::handshake(&socket)).collect();
    let mut extra = RawConn::connect(&socket);
    match extra.read(DEADLINE) {
        Reply::Response(Response::Error { code: ErrorCode::Internal, message }, _) => {
            assert!(message.contains("uid 0") && message.contains("4 connections"), "{message}")
        }
        Reply::Other(body) => panic!("a fifth connection of uid 0 was served: {}", String::from_utf8_lossy(&body)),
        other => panic!("a fifth connection of uid 0: {other:?}"),
    }
    extra.expect_closed("the connection over the per-uid cap");
    let lines = helper_lines(helper(&shared, "stats", &socket, 1), "stats");
    assert_eq!(lines, ["RESULT served"], "uid {NOBODY} while root is at its cap");
    held.pop();
    let mut again =
        eventually("root is served after closing one", SETTLE, || Client::connect(&socket).map_err(|e| e.to_string()));
    assert!(matches!(again.call(&Request::Stats, &[]), Ok((Response::Stats(_), _))), "Stats after closing one");
    assert!(matches!(first.call(&Request::Stats, &[]), Ok((Response::Stats(_), _))), "Stats on the first");
}

/// (d) With `idle_timeout_ms` and `frame_timeout_ms` at 1000: a connection
/// that never says Hello, one idle after the handshake, and one that sends
/// half a frame are closed (the last with BAD_REQUEST); one waiting for a
/// `sleep 3` child gets its exit status.
#[test]
fn idle_connections_and_half_frames_time_out_but_waits_do_not() {
    let dir = TempDir::new("timeouts", 0o700, 0);
    let cfg = config_file(&dir, serde_json::json!({ "idle_timeout_ms": 1000, "frame_timeout_ms": 1000 }));
    let daemon = Daemon::start(&dir.path("z.sock"), &["--config".as_ref(), cfg.as_os_str()]);

    let mut silent = RawConn::connect(&daemon.socket);
    match silent.read(SETTLE) {
        Reply::Closed(_) => {}
        other => panic!("a connection without Hello: {other:?}"),
    }
    let mut idle = RawConn::handshake(&daemon.socket);
    match idle.read(SETTLE) {
        Reply::Closed(_) => {}
        other => panic!("an idle connection: {other:?}"),
    }
    let mut half = RawConn::handshake(&daemon.socket);
    let mut bytes = raw_header(MAGIC, 100, 0).to_vec();
    bytes.extend_from_slice(b"{\"method\":");
    half.send_bytes(&bytes, &[]).expect("send half a frame");
    match half.read(SETTLE) {
        Reply::Response(Response::Error { code: ErrorCode::BadRequest, message }, _) => {
            assert!(message.contains("not completed"), "{message}")
        }
        other => panic!("half a frame: {other:?}"),
    }
    half.expect_closed("after half a frame");

    let mut client = daemon.client();
    let (pid, _pidfd) =
        remote_spawn(&mut client, spawn_args(Path::new("/bin/sleep"), &["3"]), null_fds(3).try_into().expect("3 fds"))
            .unwrap_or_else(|e| panic!("spawn sleep 3: {e}\n{}", daemon.log_tail(2000)));
    let _guard = PidGuard(pid);
    assert_eq!(remote_wait(&mut client, pid).expect("wait for sleep 3 past the idle timeout"), 0);
    let s = daemon.stats();
    assert_eq!((s.spawns, s.live_children), (1, 0), "{s:?}");
}

/// `max_buffered_bytes` at its least (1 MiB): a connection that sends more
/// than that of a (4 MiB) frame gets an error and is closed; the daemon then
/// serves a fresh connection.
#[test]
fn buffered_bytes_are_bounded_across_connections() {
    let dir = TempDir::new("budget", 0o700, 0);
    let budget = zygote::config::MIN_BUFFERED_BYTES;
    let cfg = config_file(&dir, serde_json::json!({ "max_buffered_bytes": budget }));
    let daemon = Daemon::start(&dir.path("z.sock"), &["--config".as_ref(), cfg.as_os_str()]);
    let mut big = RawConn::handshake(&daemon.socket);
    let body_len = 4 * 1024 * 1024 - 64;
    let mut bytes = raw_header(MAGIC, body_len, 0).to_vec();
    bytes.resize(budget as usize + 256 * 1024, b' ');
    // The daemon stops reading and closes part way: a failed send is expected.
    let _ = big.send_bytes(&bytes, &[]);
    match big.read(SETTLE) {
        Reply::Response(Response::Error { code: ErrorCode::Internal, message }, _) => {
            assert!(message.contains("buffers are full"), "{message}")
        }
        other => panic!("a frame larger than the buffer budget: {other:?}"),
    }
    big.expect_closed("after exceeding the buffer budget");
    let s = daemon.stats();
    assert_eq!(s.spawn_errors, 0, "{s:?}");
}
