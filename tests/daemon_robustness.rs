//! Bad clients: malformed, truncated and oversized frames, too many or too
//! few fds, random bytes, undecodable JSON, requests the daemon must refuse.
//! Each gets an error response (with the error code the protocol defines) or
//! a disconnect, and the daemon keeps serving everyone else. A thousand bad
//! requests leave the daemon's fd count where it was.

mod common;

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use zygote::service::frame::MAGIC;
use zygote::service::message::{ErrorCode, Hello, Limits, PROTOCOL_VERSION, Request, Response, SpawnArgs};

/// What a bad request may get.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// An `Error` with this code, after which the connection still serves.
    ErrorKeep(ErrorCode),
    /// An `Error` with this code, then the daemon closes the connection.
    ErrorClose(ErrorCode),
    /// An `Error` with this code then a close, or just a close (the frame
    /// could not even be delimited).
    ErrorOrClose(ErrorCode),
    /// Nothing to observe (the client is gone); the daemon must survive it.
    Nothing,
}

/// The programs and files the cases use.
struct Fixture {
    echo: PathBuf,
    text: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let text = unique_path("not-elf");
        write_file(&text, b"this is not an ELF file\n", 0o755);
        Fixture { echo: static_pie("daemon_echo.c"), text }
    }
}

type CaseFn = fn(&Fixture, &Path) -> (RawConn, Expect);

fn handshake(socket: &Path) -> RawConn {
    RawConn::handshake(socket)
}

/// A `Spawn` body for `prog` announcing fds 0, 1, 2.
fn spawn_body(prog: &Path) -> Vec<u8> {
    serde_json::to_vec(&Request::Spawn(spawn_args(prog, &["x"]))).expect("encode Spawn")
}

fn open(p: &Path) -> OwnedFd {
    fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display())).into()
}

/// Deterministic pseudo-random bytes (xorshift), never starting with the magic.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    if v.len() >= 4 && u32::from_le_bytes([v[0], v[1], v[2], v[3]]) == MAGIC {
        v[0] ^= 0xff;
    }
    v
}

fn cases() -> Vec<(&'static str, CaseFn)> {
    let mut cases = framing_cases();
    cases.extend(request_cases());
    cases
}

/// Bytes that are not a well-formed frame, or frames over the limits.
fn framing_cases() -> Vec<(&'static str, CaseFn)> {
    vec![
        ("HTTP request instead of Hello", |_, s| {
            let c = RawConn::connect(s);
            let _ = c.send_bytes(b"GET / HTTP/1.1\r\nHost: zygote\r\n\r\n", &[]);
            (c, Expect::ErrorOrClose(ErrorCode::BadRequest))
        }),
        ("random bytes instead of Hello", |_, s| {
            let c = RawConn::connect(s);
            let _ = c.send_bytes(&random_bytes(0x5eed, 4096), &[]);
            (c, Expect::ErrorOrClose(ErrorCode::BadRequest))
        }),
        ("random bytes after the handshake", |_, s| {
            let c = handshake(s);
            let _ = c.send_bytes(&random_bytes(0xfeed, 1000), &[]);
            (c, Expect::ErrorOrClose(ErrorCode::BadRequest))
        }),
        ("bad magic", |_, s| {
            let c = handshake(s);
            let mut f = raw_header(0xdead_beef, 2, 0).to_vec();
            f.extend_from_slice(b"{}");
            let _ = c.send_bytes(&f, &[]);
            (c, Expect::ErrorOrClose(ErrorCode::BadRequest))
        }),
        ("Hello that is not JSON", |_, s| {
            let c = RawConn::connect(s);
            let _ = c.send_bytes(&raw_frame(b"hello?", 0), &[]);
            (c, Expect::ErrorClose(ErrorCode::BadRequest))
        }),
        ("Hello of another protocol version", |_, s| {
            let c = RawConn::connect(s);
            let _ = c.send_msg(&Hello { version: 999 }, &[]);
            (c, Expect::ErrorClose(ErrorCode::BadVersion))
        }),
        ("truncated header, then EOF", |_, s| {
            let c = handshake(s);
            let _ = c.send_bytes(&raw_header(MAGIC, 20, 0)[..7], &[]);
            c.shutdown_write();
            (c, Expect::ErrorOrClose(ErrorCode::BadRequest))
        }),
        ("header then part of the body, then EOF", |_, s| {
            let c = handshake(s);
            let mut f = raw_header(MAGIC, 100, 0).to_vec();
            f.extend_from_slice(b"{\"method\":");
            let _ = c.send_bytes(&f, &[]);
            c.shutdown_write();
            (c, Expect::ErrorOrClose(ErrorCode::BadRequest))
        }),
        ("header with fds, then the client vanishes", |_, s| {
            let c = handshake(s);
            let fds = null_fds(3);
            let _ = c.send_bytes(&raw_header(MAGIC, 50, 3), &borrow_all(&fds));
            (c, Expect::Nothing)
        }),
        ("frame above max_message_bytes", |_, s| {
            let c = handshake(s);
            let _ = c.send_bytes(&raw_header(MAGIC, Limits::default().max_message_bytes + 1, 0), &[]);
            (c, Expect::ErrorClose(ErrorCode::MessageTooLarge))
        }),
        ("Hello frame of 4 GiB", |_, s| {
            let c = RawConn::connect(s);
            let _ = c.send_bytes(&raw_header(MAGIC, u32::MAX, 0), &[]);
            (c, Expect::ErrorClose(ErrorCode::MessageTooLarge))
        }),
        ("max_fds + 1 fds", |_, s| {
            let c = handshake(s);
            let n = Limits::default().max_fds as usize + 1;
            let fds = null_fds(n);
            let body = serde_json::to_vec(&Request::Stats).expect("encode");
            let _ = c.send_bytes(&raw_frame(&body, n as u32), &borrow_all(&fds));
            (c, Expect::ErrorClose(ErrorCode::TooManyFds))
        }),
        ("200 fds (more than one recvmsg takes)", |_, s| {
            let c = handshake(s);
            let fds = null_fds(200);
            let body = serde_json::to_vec(&Request::Stats).expect("encode");
            let _ = c.send_bytes(&raw_frame(&body, 200), &borrow_all(&fds));
            (c, Expect::ErrorClose(ErrorCode::TooManyFds))
        }),
        ("200 fds with the first frame (answered by the accept loop's read)", |_, s| {
            let c = RawConn::connect(s);
            let fds = null_fds(200);
            let body = serde_json::to_vec(&Hello { version: PROTOCOL_VERSION }).expect("encode");
            let _ = c.send_bytes(&raw_frame(&body, 200), &borrow_all(&fds));
            (c, Expect::ErrorClose(ErrorCode::TooManyFds))
        }),
        ("header announcing u32::MAX fds", |_, s| {
            let c = handshake(s);
            let body = serde_json::to_vec(&Request::Stats).expect("encode");
            let mut f = raw_header(MAGIC, body.len() as u32, u32::MAX).to_vec();
            f.extend_from_slice(&body);
            let _ = c.send_bytes(&f, &[]);
            (c, Expect::ErrorClose(ErrorCode::TooManyFds))
        }),
        ("announced fds that never come", |_, s| {
            let c = handshake(s);
            let body = serde_json::to_vec(&Request::Stats).expect("encode");
            let _ = c.send_bytes(&raw_frame(&body, 2), &[]);
            (c, Expect::ErrorClose(ErrorCode::TooManyFds))
        }),
    ]
}

/// Well-formed frames carrying bad requests.
fn request_cases() -> Vec<(&'static str, CaseFn)> {
    vec![
        ("valid frame, undecodable JSON", |_, s| {
            let c = handshake(s);
            let _ = c.send_bytes(&raw_frame(b"{\"method\": \"spawn\", \"argv\": [[", 0), &[]);
            (c, Expect::ErrorKeep(ErrorCode::BadRequest))
        }),
        ("valid frame with fds, undecodable JSON", |_, s| {
            let c = handshake(s);
            let fds = null_fds(2);
            let _ = c.send_bytes(&raw_frame(b"\xff\xfe not json", 2), &borrow_all(&fds));
            (c, Expect::ErrorKeep(ErrorCode::BadRequest))
        }),
        ("unknown method", |_, s| {
            let c = handshake(s);
            let _ = c.send_bytes(&raw_frame(br#"{"method":"format_disk"}"#, 0), &[]);
            (c, Expect::ErrorKeep(ErrorCode::BadRequest))
        }),
        ("Spawn with no fds", |f, s| {
            let c = handshake(s);
            let _ = c.send_bytes(&raw_frame(&spawn_body(&f.echo), 0), &[]);
            (c, Expect::ErrorKeep(ErrorCode::TooManyFds))
        }),
        ("Spawn with fewer fds than its list", |f, s| {
            let c = handshake(s);
            let exe = open(&f.echo);
            let _ = c.send_bytes(&raw_frame(&spawn_body(&f.echo), 1), &[exe.as_fd()]);
            (c, Expect::ErrorKeep(ErrorCode::TooManyFds))
        }),
        ("Stats with an fd", |_, s| {
            let c = handshake(s);
            let fds = null_fds(1);
            let _ = c.send_msg(&Request::Stats, &borrow_all(&fds));
            (c, Expect::ErrorKeep(ErrorCode::TooManyFds))
        }),
        ("Spawn with an empty argv", |f, s| {
            let c = handshake(s);
            let exe = open(&f.echo);
            let args = SpawnArgs { path: f.echo.as_os_str().as_bytes().to_vec(), ..SpawnArgs::default() };
            let _ = c.send_msg(&Request::Spawn(args), &[exe.as_fd()]);
            (c, Expect::ErrorKeep(ErrorCode::BadRequest))
        }),
        ("Spawn of a file that is not ELF", |f, s| {
            let c = handshake(s);
            let exe = open(&f.text);
            let io = null_fds(3);
            let fds = [exe.as_fd(), io[0].as_fd(), io[1].as_fd(), io[2].as_fd()];
            let _ = c.send_msg(&Request::Spawn(spawn_args(&f.text, &[])), &fds);
            (c, Expect::ErrorKeep(ErrorCode::BadExecutable))
        }),
        ("Spawn of a pipe", |f, s| {
            let c = handshake(s);
            let (r, _w) = pipe();
            let io = null_fds(3);
            let fds = [r.as_fd(), io[0].as_fd(), io[1].as_fd(), io[2].as_fd()];
            let _ = c.send_msg(&Request::Spawn(spawn_args(&f.echo, &[])), &fds);
            (c, Expect::ErrorKeep(ErrorCode::PermissionDenied))
        }),
        ("Spawn in a missing working directory", |f, s| {
            let c = handshake(s);
            let exe = open(&f.echo);
            let io = null_fds(3);
            let fds = [exe.as_fd(), io[0].as_fd(), io[1].as_fd(), io[2].as_fd()];
            let args = SpawnArgs { cwd: b"/nonexistent/zygote-cwd".to_vec(), ..spawn_args(&f.echo, &[]) };
            let _ = c.send_msg(&Request::Spawn(args), &fds);
            (c, Expect::ErrorKeep(ErrorCode::NotFound))
        }),
        ("Spawn with a working directory that is a file", |f, s| {
            let c = handshake(s);
            let exe = open(&f.echo);
            let io = null_fds(3);
            let fds = [exe.as_fd(), io[0].as_fd(), io[1].as_fd(), io[2].as_fd()];
            let args = SpawnArgs { cwd: f.text.as_os_str().as_bytes().to_vec(), ..spawn_args(&f.echo, &[]) };
            let _ = c.send_msg(&Request::Spawn(args), &fds);
            (c, Expect::ErrorKeep(ErrorCode::NotFound))
        }),
        // The daemon's soft RLIMIT_NOFILE (the tests' own, at most 65535
        // here) is what the program gets: dup2 to 65535 would fail.
        ("Spawn with fd target 65535", |f, s| {
            let c = handshake(s);
            let exe = open(&f.echo);
            let io = null_fds(4);
            let fds = [exe.as_fd(), io[0].as_fd(), io[1].as_fd(), io[2].as_fd(), io[3].as_fd()];
            let args = SpawnArgs { fds: vec![0, 1, 2, 65535], ..spawn_args(&f.echo, &[]) };
            let _ = c.send_msg(&Request::Spawn(args), &fds);
            (c, Expect::ErrorKeep(ErrorCode::BadRequest))
        }),
        ("Wait for a pid this connection did not spawn", |_, s| {
            let c = handshake(s);
            let _ = c.send_msg(&Request::Wait { pid: 1 }, &[]);
            (c, Expect::ErrorKeep(ErrorCode::NotFound))
        }),
        ("Evict with a malformed key", |_, s| {
            let c = handshake(s);
            let _ = c.send_msg(&Request::Evict { key: "../../etc/passwd".into() }, &[]);
            (c, Expect::ErrorKeep(ErrorCode::BadRequest))
        }),
        ("Evict of an unknown key", |_, s| {
            let c = handshake(s);
            let _ = c.send_msg(&Request::Evict { key: "0".repeat(64) }, &[]);
            (c, Expect::ErrorKeep(ErrorCode::NotFound))
        }),
    ]
}

/// Run one case and check what came back; `Err` describes a violation.
fn run_case(fx: &Fixture, socket: &Path, name: &str, send: CaseFn) -> Result<(), String> {
    let (mut c, expect) = send(fx, socket);
    let err = |what: String| Err(format!("{name}: {what}"));
    let code_of = |r: &Reply| match r {
        Reply::Response(Response::Error { code, .. }, _) => Some(*code),
        _ => None,
    };
    match expect {
        Expect::Nothing => Ok(()),
        Expect::ErrorKeep(want) => {
            let r = c.read(DEADLINE);
            if code_of(&r) != Some(want) {
                return err(format!("expected an Error {want:?} (connection kept), got {r:?}"));
            }
            // Still serving on the same connection.
            c.send_msg(&Request::Stats, &[]).map_err(|e| format!("{name}: sending Stats afterwards: {e}"))?;
            match c.read(DEADLINE) {
                Reply::Response(Response::Stats(_), _) => Ok(()),
                other => err(format!("after the error, Stats on the same connection got {other:?}")),
            }
        }
        Expect::ErrorClose(want) | Expect::ErrorOrClose(want) => {
            let r = c.read(DEADLINE);
            match (&r, expect) {
                (Reply::Closed(_), Expect::ErrorOrClose(_)) => return Ok(()),
                _ if code_of(&r) == Some(want) => {}
                _ => return err(format!("expected an Error {want:?} then a close, got {r:?}")),
            }
            match c.read(DEADLINE) {
                Reply::Closed(_) => Ok(()),
                other => err(format!("after the Error {want:?} the connection should close, got {other:?}")),
            }
        }
    }
}

/// A real spawn through the daemon, with the right output.
fn real_spawn(daemon: &Daemon, echo: &Path, tag: &str) {
    let mut client = daemon.client();
    let out = remote_run(&mut client, echo, &[tag], b"")
        .unwrap_or_else(|e| panic!("real spawn after {tag:?} failed: {e}\n{}", daemon.log_tail(3000)));
    assert_eq!(out.stdout_str(), format!("argc=2\n[1]={tag}\n"), "real spawn after {tag:?}: {out}");
    assert_eq!(out.code, 0, "real spawn after {tag:?}: {out}");
}

#[test]
fn each_bad_request_gets_an_error_or_a_disconnect_and_the_daemon_keeps_serving() {
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    assert!(nofile.is_some_and(|n| n <= 65535), "the fd target 65535 case needs a soft RLIMIT_NOFILE <= 65535");
    let fx = Fixture::new();
    let daemon = Daemon::start(&socket_path("bad"), &[]);
    // A client that stalls in the middle of a frame for the whole test must
    // not hold up anyone.
    let stalled = handshake(&daemon.socket);
    stalled.send_bytes(&raw_header(MAGIC, 1000, 0)[..10], &[]).expect("send a partial header");
    real_spawn(&daemon, &fx.echo, "first");
    let mut failures = Vec::new();
    for (name, send) in cases() {
        if let Err(e) = run_case(&fx, &daemon.socket, name, send) {
            failures.push(e);
        }
        real_spawn(&daemon, &fx.echo, name);
    }
    assert!(failures.is_empty(), "{} bad requests were mishandled:\n{}", failures.len(), failures.join("\n"));
    drop(stalled);
    real_spawn(&daemon, &fx.echo, "last");
    daemon.wait_quiet(1);
}

/// Fds attached to a frame whose header does not announce them are a
/// mismatch too: the reader must not keep them for a later frame.
#[test]
fn unannounced_fds_are_a_protocol_error() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&socket_path("stray"), &[]);
    let mut c = handshake(&daemon.socket);
    let stray = null_fds(3);
    let body = serde_json::to_vec(&Request::Stats).expect("encode");
    c.send_bytes(&raw_frame(&body, 0), &borrow_all(&stray)).expect("send Stats with unannounced fds");
    drop(stray);
    match c.read(DEADLINE) {
        Reply::Response(Response::Error { code: ErrorCode::TooManyFds, .. }, _) | Reply::Closed(_) => {}
        reply => {
            let other = match &reply {
                Reply::Response(Response::Stats(_), fds) => format!("a normal Stats reply (with {} fds)", fds.len()),
                r => format!("{r:?}"),
            };
            // Show what the stray fds do to the next request on the connection:
            // a Spawn announcing exe + stdio gets the three /dev/null fds first.
            let (out_r, out_w) = pipe();
            let exe = open(&fx.echo);
            let io = [dev_null(), out_w, dev_null()];
            let fds = [exe.as_fd(), io[0].as_fd(), io[1].as_fd(), io[2].as_fd()];
            let _ = c.send_msg(&Request::Spawn(spawn_args(&fx.echo, &["stray"])), &fds);
            drop(io);
            let next = c.read(DEADLINE);
            drop(out_r);
            panic!(
                "a Stats frame announcing 0 fds but carrying 3 got {other} instead of an Error TooManyFds or a \
                 disconnect; the next Spawn on that connection (announcing exe + 3 fds) then got {next:?}"
            );
        }
    }
    real_spawn(&daemon, &fx.echo, "after stray fds");
}

/// argv + environ above `max_args_bytes` gets its own error code,
/// ArgsTooLarge. The request is encoded as compactly as the protocol allows
/// (argv bytes of value 1: two JSON characters each).
#[test]
fn argv_above_max_args_bytes_gets_args_too_large() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&socket_path("argmax"), &[]);
    let limits = Limits::default();
    let mut c = handshake(&daemon.socket);
    let mut args = spawn_args(&fx.echo, &[]);
    args.environ.clear();
    let fixed = args.args_bytes();
    args.argv.push(vec![1u8; limits.max_args_bytes as usize + 1 - fixed - 1]);
    assert_eq!(args.args_bytes(), limits.max_args_bytes as usize + 1);
    let body = serde_json::to_vec(&Request::Spawn(args)).expect("encode");
    let exe = open(&fx.echo);
    let io = null_fds(3);
    let fds = [exe.as_fd(), io[0].as_fd(), io[1].as_fd(), io[2].as_fd()];
    // The daemon may stop reading early; what it answers is what counts.
    let sent = c.send_bytes(&raw_frame(&body, 4), &fds);
    match c.read(DEADLINE) {
        Reply::Response(Response::Error { code: ErrorCode::ArgsTooLarge, .. }, _) => {}
        other => panic!(
            "a Spawn with args_bytes = max_args_bytes + 1 = {} (frame body {} bytes, max_message_bytes {}) \
             got {other:?} (send: {sent:?}), not an Error ArgsTooLarge",
            limits.max_args_bytes + 1,
            body.len(),
            limits.max_message_bytes
        ),
    }
    real_spawn(&daemon, &fx.echo, "after ArgsTooLarge");
}

/// An argv well within `max_args_bytes` (and within what execve takes) is
/// spawned: `zygote spawn` behaves like a direct run.
#[test]
fn argv_within_max_args_bytes_is_spawned() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&socket_path("argok"), &[]);
    // 12 arguments of 128 KiB - 1 (MAX_ARG_STRLEN is 128 KiB): 1.5 MiB of the
    // 2 MiB max_args_bytes.
    let big: Vec<String> = (0..12).map(|i| ((b'a' + i) as char).to_string().repeat(128 * 1024 - 1)).collect();
    let total: usize = big.iter().map(|a| a.len() + 1).sum();
    assert!(total <= Limits::default().max_args_bytes as usize / 4 * 3, "{total} bytes of arguments");
    let direct = run_command(Command::new(&fx.echo).args(&big).env_clear());
    assert_eq!(direct.code, 0, "direct run with {total} bytes of arguments failed: {}", direct.stderr_str());
    let remote = run_command(
        Command::new(zygote_bin())
            .arg("spawn")
            .arg("--daemon-side")
            .arg("--socket")
            .arg(&daemon.socket)
            .arg("--clear-env")
            .arg("--")
            .arg(&fx.echo)
            .args(&big)
            .env_clear(),
    );
    assert!(
        remote.code == 0 && remote.stdout == direct.stdout && remote.stderr.is_empty(),
        "`zygote spawn` with {total} bytes of arguments (max_args_bytes {}): status {}, stdout {} bytes \
         (direct: {} bytes), stderr: {}",
        Limits::default().max_args_bytes,
        remote.code,
        remote.stdout.len(),
        direct.stdout.len(),
        remote.stderr_str()
    );
}

/// A thousand bad requests, each on a new connection, some with fds
/// attached: the daemon's fd count does not grow.
#[test]
fn a_thousand_bad_requests_leak_no_fds() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&socket_path("leak"), &[]);
    let all = cases();
    let round = |n: usize| {
        let mut failures = Vec::new();
        for i in 0..n {
            let (name, send) = all[i % all.len()];
            if let Err(e) = run_case(&fx, &daemon.socket, name, send) {
                failures.push(e);
            }
        }
        failures.sort();
        failures.dedup();
        assert!(failures.is_empty(), "bad requests were mishandled:\n{}", failures.join("\n"));
    };
    // Warm up with the same mix (lazily opened things, thread pools, ...).
    round(2 * all.len());
    real_spawn(&daemon, &fx.echo, "warm-up");
    let mut watcher = daemon.client();
    let baseline = daemon.quiet_fd_count(&mut watcher);
    round(1000);
    daemon.wait_quiet_with(&mut watcher, 1);
    daemon.expect_fds_at_most(baseline + 2, &format!("after 1000 bad requests (baseline {baseline})"));
    real_spawn(&daemon, &fx.echo, "after 1000 bad requests");
}
