//! The caller-side client library (`zygote_linux::client::Command`) and
//! `zygote spawn`'s caller-side default, with real processes and a real
//! daemon:
//!
//! - a `Command`'s output is `std::process::Command`'s, the child is ours
//!   (its ppid is this process), and once the image is built the child is
//!   started from it (the daemon's `image_requests.served` grows);
//! - without a daemon it is a plain spawn; a missing program fails in
//!   `spawn` with NotFound, as std's does;
//! - `zygote spawn` makes the program its own child in the caller's process
//!   group, served from the image; `--exec` replaces it.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command as StdCommand;
use std::time::Duration;

use common::*;
use zygote_linux::client::Command;

/// `sh -c` script printing its ppid, process group and arguments.
const SCRIPT: &str = "echo ppid=$PPID pgid=$(cut -d' ' -f5 /proc/$$/stat) args=\"$*\" v=$ZT_V; exit 7";

fn served(d: &Daemon) -> u64 {
    d.stats().image_requests.served
}

/// Run `make` until the daemon serves it (the first runs miss and start a
/// background build); returns the output of the served run.
fn until_served(d: &Daemon, what: &str, mut make: impl FnMut() -> std::process::Output) -> std::process::Output {
    eventually(what, Duration::from_secs(20), || {
        let before = served(d);
        let out = make();
        if served(d) > before { Ok(out) } else { Err(format!("not served yet: {:?}", d.stats().image_requests)) }
    })
}

#[test]
fn a_command_is_our_child_with_std_output_and_served_from_the_image() {
    let socket = socket_path("clientlib");
    let daemon = Daemon::start(&socket, &[]);
    let std_out = StdCommand::new("sh").args(["-c", SCRIPT, "sh", "a", "b c"]).env("ZT_V", "1").output().expect("sh");
    let ours = until_served(&daemon, "sh served through the client library", || {
        Command::new("sh").args(["-c", SCRIPT, "sh", "a", "b c"]).env("ZT_V", "1").socket(&socket).output().expect("sh")
    });
    assert_eq!(ours.status.code(), Some(7), "{ours:?}");
    assert_eq!(ours.status, std_out.status);
    assert_eq!(String::from_utf8_lossy(&ours.stdout), String::from_utf8_lossy(&std_out.stdout));
    assert_eq!(ours.stderr, std_out.stderr);
    let me = std::process::id();
    let pgid = rustix::process::getpgrp().as_raw_nonzero().get();
    let line = String::from_utf8_lossy(&ours.stdout).into_owned();
    assert!(line.starts_with(&format!("ppid={me} pgid={pgid} args=a b c v=1")), "{line}");
    // A signal death, and a static PIE.
    let echo = static_pie("daemon_echo.c");
    let kill = "kill -TERM $$";
    let killed = until_served(&daemon, "sh -c kill", || {
        Command::new("sh").args(["-c", kill]).socket(&socket).output().expect("sh")
    });
    assert_eq!(killed.status.signal(), Some(libc::SIGTERM), "{killed:?}");
    let args = ["x", "", "y z"];
    let direct = StdCommand::new(&echo).args(args).output().expect("echo");
    let via = until_served(&daemon, "a static PIE served", || {
        Command::new(&echo).args(args).socket(&socket).output().expect("echo")
    });
    assert_eq!(via.status.code(), Some(0));
    assert_eq!((via.status, &via.stdout, &via.stderr), (direct.status, &direct.stdout, &direct.stderr));
}

#[test]
fn without_a_daemon_it_is_a_plain_spawn_and_a_missing_program_is_not_found() {
    let nowhere = socket_path("clientlib-none");
    let out = Command::new("sh").args(["-c", "echo plain $0", "x"]).socket(&nowhere).output().expect("plain spawn");
    assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(0), &b"plain x\n"[..]));
    let e = Command::new("zt-no-such-program").socket(&nowhere).spawn().expect_err("a missing program");
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    let socket = socket_path("clientlib-missing");
    let _daemon = Daemon::start(&socket, &[]);
    let e = Command::new("zt-no-such-program").socket(&socket).spawn().expect_err("a missing program");
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
}

#[test]
fn zygote_spawn_makes_the_program_its_child_in_our_process_group() {
    let socket = socket_path("clientlib-cli");
    let daemon = Daemon::start(&socket, &[]);
    let pgid = rustix::process::getpgrp().as_raw_nonzero().get();
    let cli = |extra: &[&str]| {
        let mut cmd = StdCommand::new(zygote_bin());
        cmd.args(["spawn", "--socket"]).arg(&socket).args(extra).args(["--", "sh", "-c", SCRIPT, "sh", "z"]);
        let child = cmd.stdout(std::process::Stdio::piped()).spawn().expect("zygote spawn");
        let pid = child.id();
        (pid, child.wait_with_output().expect("wait"))
    };
    let (pid, out) = eventually("zygote spawn served", Duration::from_secs(20), || {
        let before = served(&daemon);
        let r = cli(&[]);
        if served(&daemon) > before { Ok(r) } else { Err("not served yet".to_string()) }
    });
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(line.starts_with(&format!("ppid={pid} pgid={pgid} args=z")), "the CLI ({pid}) is the parent: {line}");
    // --exec: the program is the CLI process itself, so its parent is us.
    let (_, out) = cli(&["--exec"]);
    let me = std::process::id();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(line.starts_with(&format!("ppid={me} pgid={pgid} args=z")), "{line}");
    assert!(Path::new(&socket).exists());
}
