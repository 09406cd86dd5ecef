//! systemd socket activation: the daemon serves on the listener it inherits as
//! fd 3 (LISTEN_FDS=1, LISTEN_PID=its pid), and leaves the socket file alone
//! when it exits, since systemd owns it.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zygote::service::client::Client;
use zygote::service::message::{Request, Response};

fn sock_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("act-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[test]
fn serves_on_an_inherited_listener() {
    let dir = sock_dir();
    let path = dir.join("z.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    // Let the listener survive exec, as systemd's would.
    rustix::io::fcntl_setfd(&listener, rustix::io::FdFlags::empty()).expect("clear CLOEXEC");
    let fd = listener.as_raw_fd();
    // The shell keeps its pid across `exec`, so LISTEN_PID=$$ names the daemon.
    // The --socket path points elsewhere: with activation it must not be used.
    let unused = dir.join("unused.sock");
    let moves = if fd == 3 { String::new() } else { format!("exec 3<&{fd}; exec {fd}<&-; ") };
    let script = format!("{moves}export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" daemon --socket \"$1\" --grace-secs 1");
    let mut daemon = Command::new("bash")
        .args(["-c", &script, env!("CARGO_BIN_EXE_zygote")])
        .arg(&unused)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    drop(listener);

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = loop {
        match Client::connect(&path) {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                let _ = daemon.kill();
                panic!("daemon never answered on the inherited socket: {e}");
            }
        }
    };
    let (reply, _) = client.call(&Request::Stats, &[]).expect("stats");
    assert!(matches!(reply, Response::Stats(_)), "{reply:?}");
    assert!(!unused.exists(), "the daemon bound --socket although it was socket-activated");
    drop(client);

    rustix::process::kill_process(
        rustix::process::Pid::from_raw(daemon.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
    let status = daemon.wait().expect("wait daemon");
    assert!(status.success(), "daemon exit: {status:?}");
    assert!(path.exists(), "the activated socket belongs to systemd and must stay");
    let _ = std::fs::remove_dir_all(&dir);
}
