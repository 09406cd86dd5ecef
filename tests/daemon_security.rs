//! Who may use the daemon: a peer with another uid is refused (and the owner
//! is still served); a uid in `allowed_uids` is admitted but still may only
//! run what it could execute itself; an invalid configuration file stops the
//! daemon at start with a message naming the field.
//!
//! The other uid is 65534 (nobody). Processes run as it are this test binary
//! (the ignored `helper_as_other_uid` test, driven by environment variables)
//! and the `zygote` CLI, both linked into a world-readable directory under
//! the system temp dir, since the build tree's parents may not be searchable
//! by other users.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use zygote::service::client::{Client, ClientError};
use zygote::service::message::ErrorCode;

const NOBODY: u32 = 65534;
const HELPER_MODE: &str = "ZYGOTE_TEST_HELPER_MODE";
const HELPER_SOCKET: &str = "ZYGOTE_TEST_HELPER_SOCKET";
const HELPER_PROG: &str = "ZYGOTE_TEST_HELPER_PROG";
/// Connections tried per refusal check, so that a refusal that is only
/// sometimes reported (a race) fails the check reliably.
const REFUSAL_TRIES: usize = 500;

/// Runs only when another test starts it as uid 65534 (see [`helper`]):
/// talks to the daemon and prints `RESULT ...` lines.
#[test]
#[ignore = "helper: run by the other tests of this file as uid 65534"]
fn helper_as_other_uid() {
    let Ok(mode) = std::env::var(HELPER_MODE) else { return };
    let socket = PathBuf::from(std::env::var_os(HELPER_SOCKET).expect("helper socket"));
    println!("UID {}", rustix::process::getuid().as_raw());
    let describe = |r: Result<Client, ClientError>| match r {
        Ok(_) => "admitted".to_string(),
        Err(ClientError::Server { code, message }) => format!("server {code:?} {message}"),
        Err(e) => format!("failed {e}"),
    };
    match mode.as_str() {
        "connect" => {
            // What the daemon itself answers, before the client says anything.
            let mut raw = RawConn::connect(&socket);
            match raw.read(DEADLINE) {
                Reply::Response(zygote::service::message::Response::Error { code, message }, _) => {
                    println!("RAW server {code:?} {message}")
                }
                other => println!("RAW {other:?}"),
            }
            for _ in 0..REFUSAL_TRIES {
                println!("RESULT {}", describe(Client::connect(&socket)));
            }
        }
        "spawn" => {
            let prog = PathBuf::from(std::env::var_os(HELPER_PROG).expect("helper program"));
            if let Err(e) = fs::File::open(&prog) {
                println!("RESULT cannot-open {e}");
                return;
            }
            let mut client = match Client::connect(&socket) {
                Ok(c) => c,
                Err(e) => {
                    println!("RESULT connect {}", describe(Err(e)));
                    return;
                }
            };
            let (out_r, out_w) = pipe();
            let out = spawn_reader(fs::File::from(out_r));
            match remote_spawn(&mut client, spawn_args(&prog, &["as", "nobody"]), [dev_null(), out_w, dev_null()]) {
                Ok((pid, _pidfd)) => {
                    let code = remote_wait(&mut client, pid);
                    let stdout = String::from_utf8_lossy(&collect(out, "stdout")).replace('\n', "|");
                    println!("RESULT ran {code:?} {stdout}");
                }
                Err(ClientError::Server { code, message }) => println!("RESULT server {code:?} {message}"),
                Err(e) => println!("RESULT failed {e}"),
            }
        }
        other => panic!("unknown helper mode {other}"),
    }
}

/// A world-readable directory under the system temp dir, removed on drop.
struct SharedDir(PathBuf);

impl SharedDir {
    fn new() -> SharedDir {
        assert!(rustix::process::getuid().is_root(), "these tests run processes as uid {NOBODY}: they need root");
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("zt-sec-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("create shared dir");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod 0755 shared dir");
        SharedDir(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// `src` linked (or copied) into the directory as `name`, with `mode`.
    fn place(&self, src: &Path, name: &str, mode: u32) -> PathBuf {
        let dst = self.path(name);
        if fs::hard_link(src, &dst).is_err() {
            fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
        }
        fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).expect("chmod placed file");
        dst
    }

    /// A private copy (not a link: its mode is its own) of `src`.
    fn copy(&self, src: &Path, name: &str, mode: u32) -> PathBuf {
        let dst = self.path(name);
        fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
        fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).expect("chmod copied file");
        dst
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The first CPU this process may run on.
fn first_cpu() -> usize {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity
    // writes only into it and CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set), 0, "sched_getaffinity");
        (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set)).expect("some CPU")
    }
}

fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

/// Pin every thread of `pid` to `cpu` (threads it creates later inherit it).
fn pin_threads(pid: i32, cpu: usize) {
    let set = cpu_set(cpu);
    for task in fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/PID/task").flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) else { continue };
        // SAFETY: sched_setaffinity reads `set` only.
        let r = unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) };
        assert!(r == 0 || !Path::new(&format!("/proc/{pid}/task/{tid}")).exists(), "pin thread {tid} of {pid}");
    }
}

/// Run this test binary's helper as uid 65534; its `RESULT` and `RAW` lines.
/// With `slow_on`, the helper runs on that CPU with the SCHED_IDLE policy:
/// a client that is slower than the daemon (pinned to the same CPU) at
/// every step, as a loaded machine can make any client.
fn helper(dir: &SharedDir, mode: &str, socket: &Path, prog: Option<&Path>, slow_on: Option<usize>) -> Vec<String> {
    let exe = dir.0.join("helper");
    if !exe.exists() {
        dir.place(&std::env::current_exe().expect("current_exe"), "helper", 0o755);
    }
    let mut cmd = Command::new(&exe);
    cmd.args(["--exact", "helper_as_other_uid", "--ignored", "--nocapture", "--test-threads=1"]);
    cmd.env(HELPER_MODE, mode).env(HELPER_SOCKET, socket).current_dir(&dir.0).uid(NOBODY).gid(NOBODY);
    if let Some(p) = prog {
        cmd.env(HELPER_PROG, p);
    }
    if let Some(cpu) = slow_on {
        let set = cpu_set(cpu);
        // SAFETY: the closure only makes async-signal-safe system calls on
        // the child itself and builds no heap data.
        unsafe {
            cmd.pre_exec(move || {
                if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let param = libc::sched_param { sched_priority: 0 };
                if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = run_command(&mut cmd);
    assert_eq!(out.code, 0, "helper ({mode}) as uid {NOBODY} failed:\n{out}");
    assert!(out.stdout_str().contains(&format!("UID {NOBODY}\n")), "helper did not run as uid {NOBODY}:\n{out}");
    out.stdout_str().lines().filter(|l| l.starts_with("RESULT ") || l.starts_with("RAW ")).map(str::to_string).collect()
}

/// `zygote ARGS` as uid 65534.
fn zygote_as_nobody(dir: &SharedDir, args: &[&OsStr]) -> Outcome {
    let exe = dir.0.join("zygote");
    if !exe.exists() {
        dir.place(Path::new(zygote_bin()), "zygote", 0o755);
    }
    run_command(Command::new(&exe).args(args).current_dir(&dir.0).uid(NOBODY).gid(NOBODY))
}

/// A configuration file: the shipped defaults with `changes` applied.
fn config_file(dir: &SharedDir, changes: serde_json::Value) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    write_config(&dir.path(&format!("config-{}.json", N.fetch_add(1, Ordering::Relaxed))), changes)
}

/// The owner can still spawn.
fn owner_spawns(daemon: &Daemon, what: &str) {
    let echo = static_pie("daemon_echo.c");
    let out = remote_run(&mut daemon.client(), &echo, &["owner"], b"")
        .unwrap_or_else(|e| panic!("{what}: the owner's spawn failed: {e}\n{}", daemon.log_tail(2000)));
    assert_eq!((out.code, out.stdout_str()), (0, "argc=2\n[1]=owner\n".to_string()), "{what}: {out}");
}

/// With the default configuration another uid gets nowhere: `zygote stats`
/// run as it fails with a message, and the daemon goes on serving its owner.
#[test]
fn another_uid_cannot_use_the_daemon() {
    let dir = SharedDir::new();
    let socket = dir.path("z.sock");
    let daemon = Daemon::start(&socket, &[]);
    owner_spawns(&daemon, "before");
    let out = zygote_as_nobody(&dir, &["stats".as_ref(), "--socket".as_ref(), socket.as_os_str()]);
    assert_ne!(out.code, 0, "`zygote stats` as uid {NOBODY} succeeded:\n{out}");
    assert!(!out.stdout_str().contains("cache"), "`zygote stats` as uid {NOBODY} printed statistics:\n{out}");
    assert!(out.stderr_str().starts_with("zygote: "), "no error message from `zygote stats` as uid {NOBODY}:\n{out}");
    owner_spawns(&daemon, "after the refusal");
    let s = daemon.stats();
    assert_eq!((s.spawns, s.spawn_errors), (2, 0), "{s:?}");
}

/// The daemon's own check: with the socket file opened to everyone (as an
/// administrator might), a connection from another uid that is not allowed
/// is answered with PeerRefused, every time, and the owner is still served.
#[test]
fn another_uid_gets_peer_refused_from_the_daemon() {
    let dir = SharedDir::new();
    let socket = dir.path("z.sock");
    let daemon = Daemon::start(&socket, &[]);
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).expect("chmod 0666 the socket");
    // The refusal must reach a client however slow it is: run the client
    // slower than the daemon.
    let cpu = first_cpu();
    pin_threads(daemon.pid(), cpu);
    let lines = helper(&dir, "connect", &socket, None, Some(cpu));
    let refused = format!("server {:?} ", ErrorCode::PeerRefused);
    // The daemon's answer on the socket.
    let raw = lines.iter().find_map(|l| l.strip_prefix("RAW ")).expect("raw result");
    assert!(raw.starts_with(&refused), "the daemon's answer to a connection from uid {NOBODY}: {raw}");
    assert!(raw.contains(&NOBODY.to_string()), "the refusal should name the uid: {raw}");
    // What the library client reports, connection after connection.
    let results: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("RESULT ")).collect();
    assert_eq!(results.len(), REFUSAL_TRIES, "{results:?}");
    let mut wrong: Vec<&str> = results.iter().copied().filter(|r| !r.starts_with(&refused)).collect();
    let n = wrong.len();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "{n} of {REFUSAL_TRIES} Client::connect calls from uid {NOBODY} did not report PeerRefused; they got: \
         {wrong:?}"
    );
    owner_spawns(&daemon, "after refusing uid 65534");
}

/// `allowed_uids: [65534]` admits that uid: `zygote stats` works as it.
#[test]
fn an_allowed_uid_is_admitted() {
    let dir = SharedDir::new();
    let socket = dir.path("z.sock");
    let cfg = config_file(&dir, serde_json::json!({ "allowed_uids": [NOBODY] }));
    let daemon = Daemon::start(&socket, &["--config".as_ref(), cfg.as_os_str()]);
    let out = zygote_as_nobody(&dir, &["stats".as_ref(), "--socket".as_ref(), socket.as_os_str()]);
    assert!(
        out.code == 0 && out.stdout_str().contains("cache"),
        "`zygote stats` as allowed uid {NOBODY} failed (socket mode {:o}):\n{out}",
        fs::metadata(&socket).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0)
    );
    owner_spawns(&daemon, "after the allowed uid");
}

/// An allowed uid still may only run what it could execute: a root-owned
/// file of mode 0744 (readable, so the client can open it and pass the fd,
/// but not executable by others) gets PermissionDenied; the same program
/// with mode 0755 runs. (The socket is opened to everyone here so that this
/// checks the daemon's execute check whatever the socket's own mode is.)
#[test]
fn an_allowed_uid_cannot_run_what_it_cannot_execute() {
    let dir = SharedDir::new();
    let socket = dir.path("z.sock");
    let cfg = config_file(&dir, serde_json::json!({ "allowed_uids": [NOBODY] }));
    let daemon = Daemon::start(&socket, &["--config".as_ref(), cfg.as_os_str()]);
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).expect("chmod 0666 the socket");
    let echo = static_pie("daemon_echo.c");
    let runnable = dir.copy(&echo, "echo-0755", 0o755);
    let readable_only = dir.copy(&echo, "echo-0744", 0o744);

    let ok = helper(&dir, "spawn", &socket, Some(&runnable), None);
    assert_eq!(
        ok,
        vec!["RESULT ran Ok(0) argc=3|[1]=as|[2]=nobody|".to_string()],
        "spawn of a 0755 program as uid {NOBODY}"
    );
    let denied = helper(&dir, "spawn", &socket, Some(&readable_only), None);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(
        denied[0].starts_with(&format!("RESULT server {:?} ", ErrorCode::PermissionDenied)),
        "spawn of a root-owned 0744 program as uid {NOBODY}: {denied:?}"
    );
    let s = daemon.stats();
    assert_eq!((s.spawns, s.spawn_errors), (1, 1), "{s:?}");
    owner_spawns(&daemon, "after the denied spawn");
}

/// An invalid configuration file: `zygote daemon --config` exits non-zero
/// with a message naming the field, and serves nothing.
#[test]
fn an_invalid_config_stops_the_daemon_naming_the_field() {
    let dir = SharedDir::new();
    let cases = [
        ("cache_max_entries", serde_json::json!({ "cache_max_entries": "x" })),
        ("allowed_uids", serde_json::json!({ "allowed_uids": ["root"] })),
        ("cache_max_byets", serde_json::json!({ "cache_max_byets": 1 })),
    ];
    for (field, change) in cases {
        let cfg = config_file(&dir, change);
        let socket = dir.path(&format!("{field}.sock"));
        let mut daemon = Daemon::spawn(&socket, &["--config".as_ref(), cfg.as_os_str()]);
        let st = daemon.wait_exit(SETTLE);
        let log = daemon.log_text();
        assert!(!st.success(), "daemon with an invalid {field} exited {st:?}:\n{log}");
        assert!(log.contains(field), "the error for an invalid {field} does not name it:\n{log}");
        assert!(!socket.exists(), "daemon with an invalid {field} created its socket");
    }
}
