//! A running program's file cannot be written, as with execve (ETXTBSY):
//! started from an image, in-process or through the daemon, the program is
//! its process's executable (`/proc/PID/exe`), and the kernel keeps writers
//! out of it while the process runs. (This needs the zygote to hold
//! CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE, as root here; docs/ARCHITECTURE.md,
//! "Known limits", says what happens without.)

mod common;
use common::*;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// Start `cmd` (which runs the sleeper at `prog`), wait for its "started PID"
/// line, and try to open `prog` for writing: the error number.
fn write_error_while_running(mut cmd: Command, prog: &Path) -> Option<i32> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = StdChildGuard(Some(cmd.spawn().expect("start")));
    let mut lines = Lines::new(child.0.as_mut().expect("child").stdout.take().expect("stdout"));
    let pid = pid_in(&lines.next(DEADLINE).expect("the sleeper started"), "started ");
    let _guard = PidGuard(pid);
    let exe = fs::read_link(format!("/proc/{pid}/exe")).expect("exe link");
    assert_eq!(exe, prog, "the process's executable is the program");
    let err = fs::OpenOptions::new().append(true).open(prog).err().and_then(|e| e.raw_os_error());
    let _ = kill_pid(pid, libc::SIGKILL);
    err
}

#[test]
fn a_running_programs_file_is_busy_as_with_execve() {
    assert!(have_restore_caps(), "run as root: the zygote sets /proc/PID/exe with CAP_SYS_ADMIN");
    let prog = unique_path("busy");
    fs::copy(static_pie("daemon_sleep.c"), &prog).expect("copy");
    sync();
    let args = ["sleep", "60000", "0"];

    let mut direct = Command::new(&prog);
    direct.args(args);
    assert_eq!(write_error_while_running(direct, &prog), Some(libc::ETXTBSY), "direct exec (the reference)");

    let mut run = Command::new(zygote_bin());
    run.arg("run").arg("--").arg(&prog).args(args);
    assert_eq!(write_error_while_running(run, &prog), Some(libc::ETXTBSY), "zygote run");

    let daemon = Daemon::start(&socket_path("busy"), &[]);
    for round in 0..2 {
        // The second spawn of the image comes from a pre-started launcher.
        let mut spawn = Command::new(zygote_bin());
        spawn.arg("spawn").arg("--daemon-side").arg("--socket").arg(&daemon.socket).arg("--").arg(&prog).args(args);
        assert_eq!(write_error_while_running(spawn, &prog), Some(libc::ETXTBSY), "zygote spawn, round {round}");
    }
    // Once the processes are gone, the file is writable again.
    eventually("the file is writable", DEADLINE, || {
        fs::OpenOptions::new().append(true).open(&prog).map(drop).map_err(|e| e.to_string())
    });
}
