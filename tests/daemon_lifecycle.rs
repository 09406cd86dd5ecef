//! Process lifecycle around the daemon: a client that dies while its process
//! runs takes the process with it (no orphan, no zombie, no fd left in the
//! daemon), unless it was started `--no-wait`; SIGTERM lets in-flight work
//! finish, removes the socket and exits 0, and the socket can be reused. A
//! daemon killed with SIGKILL leaves its programs running; their `zygote
//! spawn` clients wait for them and then say the status is unknown.

mod common;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use zygote::service::message::{Request, Response};

fn sleeper() -> PathBuf {
    static_pie("daemon_sleep.c")
}

/// A long sleep: the process only ends if something kills it.
const FOREVER_MS: &str = "600000";

/// `zygote spawn -- daemon_sleep sleep FOREVER 0` with stdout piped to us.
fn cli_sleeper(daemon: &Daemon, extra: &[&str]) -> (StdChildGuard, Lines) {
    let mut cmd = Command::new(zygote_bin());
    cmd.arg("spawn").arg("--daemon-side").arg("--socket").arg(&daemon.socket).args(extra).arg("--").arg(sleeper());
    cmd.args(["sleep", FOREVER_MS, "0"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let lines = Lines::new(child.stdout.take().expect("stdout piped"));
    (StdChildGuard(Some(child)), lines)
}

/// One round: `zygote spawn` of a sleeper, SIGKILL the client while it waits;
/// the sleeper must be killed and reaped.
fn killed_client_round(daemon: &Daemon, round: usize) {
    let (mut cli, mut lines) = cli_sleeper(daemon, &[]);
    let line = lines.next(DEADLINE).unwrap_or_else(|| panic!("round {round}: the sleeper printed nothing"));
    let pid = pid_in(&line, "started ");
    let _guard = PidGuard(pid);
    assert_eq!(proc_stat(pid).map(|s| s.1), Some(daemon.pid()), "round {round}: the sleeper is the daemon's child");
    let cli_pid = cli.0.as_ref().expect("cli").id() as i32;
    // The client blocks the signals it relays once it has sent Wait: then it
    // is waiting.
    eventually("the client waits (relaying signals)", DEADLINE, || {
        if sig_blocked(cli_pid, libc::SIGTERM) { Ok(()) } else { Err(format!("pid {cli_pid} SigBlk lacks SIGTERM")) }
    });
    let mut c = cli.0.take().expect("cli");
    c.kill().expect("SIGKILL the client");
    let st = c.wait().expect("reap the client");
    assert_eq!(std_shell_code(st), 128 + libc::SIGKILL, "round {round}: client status");
    // The daemon sees the client go and kills the sleeper: its stdout pipe
    // (held only by the sleeper now) reaches EOF.
    assert!(
        lines.eof_within(SETTLE),
        "round {round}: the client was killed but its process {pid} still runs ({:?}) after {SETTLE:?}; \
         daemon children {:?}\n{}",
        proc_stat(pid),
        children_of(daemon.pid()),
        daemon.log_tail(2000)
    );
    eventually("the sleeper is gone", SETTLE, || {
        if pid_running(pid) { Err(format!("pid {pid}: {:?}", proc_stat(pid))) } else { Ok(()) }
    });
}

#[test]
fn a_killed_client_leaves_no_process_no_zombie_no_fd() {
    let daemon = Daemon::start(&socket_path("kill"), &[]);
    let mut watcher = daemon.client();
    killed_client_round(&daemon, 0);
    let baseline = daemon.quiet_fd_count(&mut watcher);
    for round in 1..=3 {
        killed_client_round(&daemon, round);
        daemon.wait_quiet_with(&mut watcher, 1);
    }
    daemon.expect_fds_at_most(baseline + 2, &format!("after 3 killed clients (baseline {baseline})"));
}

/// A client that sends Spawn and goes away without reading the reply: the
/// process, if it started at all, is killed.
#[test]
fn a_client_gone_before_the_reply_leaves_no_process() {
    let daemon = Daemon::start(&socket_path("gone"), &[]);
    let prog = sleeper();
    let mut watcher = daemon.client();
    let mut baseline = None;
    for round in 0..4 {
        let (out_r, out_w) = pipe();
        let mut lines = Lines::new(std::fs::File::from(out_r));
        {
            let c = RawConn::handshake(&daemon.socket);
            let exe = std::fs::File::open(&prog).expect("open sleeper");
            let io = [dev_null(), out_w, dev_null()];
            let fds = [exe.as_fd(), io[0].as_fd(), io[1].as_fd(), io[2].as_fd()];
            c.send_msg(&Request::Spawn(spawn_args(&prog, &["sleep", FOREVER_MS, "0"])), &fds).expect("send Spawn");
            // `c` and our copies of the fds are dropped here.
        }
        let mut guard = PidGuard(0);
        if let Some(line) = lines.next(DEADLINE) {
            guard.0 = pid_in(&line, "started ");
        }
        assert!(
            lines.eof_within(SETTLE),
            "round {round}: the client went away after Spawn but process {} still runs; daemon children {:?}\n{}",
            guard.0,
            children_of(daemon.pid()),
            daemon.log_tail(2000)
        );
        daemon.wait_quiet_with(&mut watcher, 1);
        if round == 0 {
            baseline = Some(daemon.fd_count());
        }
    }
    let baseline = baseline.expect("baseline");
    daemon.expect_fds_at_most(baseline + 2, &format!("after clients that vanished (baseline {baseline})"));
}

/// `zygote spawn --no-wait`: the process keeps running after the client
/// exits, as a child of the daemon, which reaps it when it ends.
#[test]
fn a_no_wait_process_outlives_its_client() {
    let daemon = Daemon::start(&socket_path("nowait"), &[]);
    let (mut cli, mut lines) = cli_sleeper(&daemon, &["--no-wait"]);
    // The client prints the pid; the sleeper prints "started PID" on the same pipe.
    let (mut printed, mut started) = (None, None);
    while printed.is_none() || started.is_none() {
        let l = lines.next(DEADLINE).unwrap_or_else(|| panic!("pipe closed early; lines: {:?}", lines.seen));
        if let Some(rest) = l.strip_prefix("started ") {
            started = Some(pid_in(&format!("started {rest}"), "started "));
        } else {
            printed = Some(l.trim().parse::<i32>().unwrap_or_else(|_| panic!("unexpected line {l:?}")));
        }
    }
    let pid = started.expect("started");
    let _guard = PidGuard(pid);
    assert_eq!(printed, Some(pid), "`zygote spawn --no-wait` printed another pid than the process has");
    let c = cli.0.take().expect("cli");
    let out = c.wait_with_output().expect("wait for the client");
    assert!(out.status.success(), "`zygote spawn --no-wait` failed: {:?}", out.status);

    // Once the daemon has closed the client's connection, the process still runs.
    let mut watcher = daemon.client();
    eventually("the client's connection is closed", SETTLE, || match watcher.call(&Request::Stats, &[]) {
        Ok((Response::Stats(s), _)) if s.open_connections == 1 => Ok(s),
        other => Err(format!("{other:?}")),
    });
    assert!(pid_running(pid), "the --no-wait process {pid} died with its client: {:?}", proc_stat(pid));
    assert_eq!(proc_stat(pid).map(|s| s.1), Some(daemon.pid()), "the process is the daemon's child");
    let s = daemon.stats();
    assert_eq!(s.live_children, 1, "{s:?}");

    // Ending it is up to us; the daemon reaps it.
    kill_pid(pid, libc::SIGKILL).expect("kill the --no-wait process");
    assert!(lines.eof_within(SETTLE), "the killed process's stdout never closed");
    daemon.wait_quiet_with(&mut watcher, 1);
    assert!(!pid_running(pid), "{pid} still there: {:?}", proc_stat(pid));
}

/// Spawn `sleeper sleep MS CODE` through `client` with stdout piped to us,
/// without reading the reply. Returns the stdout lines.
fn send_sleeper_spawn(client: &mut zygote::service::client::Client, ms: &str, code: &str) -> Lines {
    let prog = sleeper();
    let (out_r, out_w) = pipe();
    let exe = std::fs::File::open(&prog).expect("open sleeper");
    let io = [dev_null(), out_w, dev_null()];
    let fds = [exe.as_fd(), io[0].as_fd(), io[1].as_fd(), io[2].as_fd()];
    client.send(&Request::Spawn(spawn_args(&prog, &["sleep", ms, code])), &fds).expect("send Spawn");
    Lines::new(std::fs::File::from(out_r))
}

/// After the daemon exited on SIGTERM: status 0, socket gone, and a new
/// daemon on the same path serves.
fn check_clean_exit_and_restart(mut daemon: Daemon) {
    let socket = daemon.socket.clone();
    let st = daemon.wait_exit(Duration::from_secs(30));
    assert_eq!(st.code(), Some(0), "daemon exit status after SIGTERM: {st:?}\n{}", daemon.log_tail(2000));
    assert!(!socket.exists(), "the daemon left its socket {} behind", socket.display());
    drop(daemon);
    let again = Daemon::start(&socket, &[]);
    let echo = static_pie("daemon_echo.c");
    let out = remote_run(&mut again.client(), &echo, &["again"], b"").expect("spawn on the restarted daemon");
    assert_eq!((out.code, out.stdout_str()), (0, "argc=2\n[1]=again\n".to_string()), "{out}");
}

/// SIGTERM while a spawn is in flight: the Spawn is answered, the client's
/// Wait for it completes with the right status (within the grace period),
/// then the daemon exits 0 and removes its socket.
///
/// The client sends its Wait once it has the pid, as `zygote spawn` does;
/// here that is after the daemon has begun shutting down (its socket file is
/// gone) and has had a moment to act on it, so that a daemon which stops
/// reading requests at SIGTERM shows it every time instead of depending on
/// who wins the race.
#[test]
fn sigterm_lets_an_in_flight_spawn_finish_and_be_waited_for() {
    let daemon = Daemon::start(&socket_path("term"), &["--grace-secs".as_ref(), "20".as_ref()]);
    let mut client = daemon.client();
    let mut lines = send_sleeper_spawn(&mut client, "1000", "7");
    // The daemon is handling the request: the process has started.
    let line = lines.next(DEADLINE).expect("the sleeper started");
    let pid = pid_in(&line, "started ");
    let _guard = PidGuard(pid);
    daemon.signal(libc::SIGTERM);
    match client.recv() {
        Ok((Response::Spawned { pid: p, .. }, fds)) => {
            assert_eq!(p, pid, "Spawned names another pid");
            assert_eq!(fds.len(), 1, "Spawned carries a pidfd");
        }
        other => panic!("in-flight Spawn at SIGTERM: expected Spawned, got {other:?}\n{}", daemon.log_tail(2000)),
    }
    eventually("the daemon removes its socket on SIGTERM", SETTLE, || {
        if daemon.socket.exists() { Err("socket still there".to_string()) } else { Ok(()) }
    });
    // Give the daemon a moment to act on the shutdown (not a timing
    // assertion: a daemon that keeps the connection just waits here).
    let closed_early = {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let sock = client.socket();
        let mut fds = [PollFd::new(&sock, PollFlags::IN)];
        let ts = Timespec { tv_sec: 0, tv_nsec: 300_000_000 };
        matches!(poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
    };
    let waited = remote_wait(&mut client, pid);
    assert!(
        matches!(waited, Ok(7)),
        "Wait for the in-flight spawn (pid {pid}, exits 7 after 1 s), sent after SIGTERM: got {waited:?} \
         (the connection was readable before the Wait was sent: {closed_early}); the process printed {:?} \
         (without \"done\" it was killed)\n{}",
        {
            lines.eof_within(SETTLE);
            lines.seen.clone()
        },
        daemon.log_tail(2000)
    );
    assert!(lines.eof_within(SETTLE));
    assert_eq!(lines.seen, vec![format!("started {pid}"), "done".to_string()], "the process ran to its end");
    drop(client);
    check_clean_exit_and_restart(daemon);
}

/// SIGTERM while a Wait is pending: it completes within the grace period.
#[test]
fn sigterm_lets_a_pending_wait_complete() {
    let daemon = Daemon::start(&socket_path("wait"), &["--grace-secs".as_ref(), "20".as_ref()]);
    let mut client = daemon.client();
    let mut lines = send_sleeper_spawn(&mut client, "300", "9");
    let pid = match client.recv() {
        Ok((Response::Spawned { pid, .. }, _)) => pid,
        other => panic!("Spawn: {other:?}"),
    };
    let _guard = PidGuard(pid);
    client.send(&Request::Wait { pid }, &[]).expect("send Wait");
    // Requests are handled in order: once Stats is answered, the Wait is pending.
    client.send(&Request::Stats, &[]).expect("send Stats");
    let mut exited = None;
    loop {
        match client.recv() {
            Ok((Response::Stats(_), _)) => break,
            Ok((r @ Response::Exited { .. }, _)) => exited = Some(r),
            other => panic!("expected Stats (or Exited), got {other:?}"),
        }
    }
    daemon.signal(libc::SIGTERM);
    let exited = match exited {
        Some(r) => r,
        None => match client.recv() {
            Ok((r, _)) => r,
            Err(e) => panic!("pending Wait at SIGTERM: {e}\n{}", daemon.log_tail(2000)),
        },
    };
    assert_eq!(exited_code(&exited), Ok(9), "pending Wait at SIGTERM: {exited:?}");
    assert!(lines.eof_within(SETTLE));
    assert_eq!(lines.seen, vec![format!("started {pid}"), "done".to_string()], "the process ran to its end");
    drop(client);
    check_clean_exit_and_restart(daemon);
}

/// `kill -9` of the daemon: its programs are not its to take along (they run
/// on, re-parented), and a `zygote spawn` client keeps waiting for its
/// program through the pidfd it holds, then exits 125 saying the status is
/// unknown (only the dead daemon, the parent, could have collected it).
#[test]
fn a_killed_daemon_leaves_its_programs_running_and_their_clients_wait() {
    let daemon = Daemon::start(&socket_path("killed"), &[]);
    let mut cmd = Command::new(zygote_bin());
    cmd.arg("spawn")
        .arg("--daemon-side")
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("--")
        .arg(sleeper())
        .args(["sleep", "3000", "7"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut cli = StdChildGuard(Some(cmd.spawn().expect("start zygote spawn")));
    let child = cli.0.as_mut().expect("cli");
    let mut lines = Lines::new(child.stdout.take().expect("stdout"));
    let stderr = spawn_reader(child.stderr.take().expect("stderr"));
    let cli_pid = child.id() as i32;
    let pid = pid_in(&lines.next(DEADLINE).expect("the sleeper started"), "started ");
    let _guard = PidGuard(pid);
    // Once the client holds the pidfd from the daemon's reply, it can wait
    // for the program without the daemon.
    eventually("the client has the pidfd", DEADLINE, || {
        let fds = fd_list_of(cli_pid);
        if fds.iter().any(|l| l.contains("pidfd")) { Ok(()) } else { Err(format!("fds: {fds:?}")) }
    });
    kill_pid(daemon.pid(), libc::SIGKILL).expect("SIGKILL the daemon");
    eventually("the daemon is gone", DEADLINE, || {
        if proc_stat(daemon.pid()).is_none_or(|s| s.0 == 'Z') { Ok(()) } else { Err("still running".into()) }
    });
    // The program runs on (no longer the daemon's child), and so does its client.
    // (Its threads end after its leader shows as a zombie; the program is
    // re-parented when the last one has.)
    eventually("the sleeper is re-parented", DEADLINE, || match proc_stat(pid) {
        Some((_, ppid)) if ppid != daemon.pid() => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert!(pid_running(pid), "the sleeper died with the daemon");
    let c = cli.0.as_mut().expect("cli");
    if let Some(st) = c.try_wait().expect("try_wait") {
        let err = String::from_utf8_lossy(&collect(stderr, "client stderr")).into_owned();
        panic!("the client left ({st:?}) before its program ended: {err}");
    }
    assert_eq!(lines.next(DEADLINE).as_deref(), Some("done"), "the sleeper finished its work");
    let st = cli.0.take().expect("cli").wait().expect("wait for the client");
    assert!(!pid_running(pid) || proc_stat(pid).is_some_and(|s| s.0 == 'Z'), "the client exited before its program");
    let err = String::from_utf8_lossy(&collect(stderr, "client stderr")).into_owned();
    assert_eq!(std_shell_code(st), 125, "client status; stderr: {err}");
    assert!(err.contains("daemon ended") && err.contains("exit status"), "{err}");
}
