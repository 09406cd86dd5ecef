//! A program that dies by a signal: `zygote run` exits with 128+N, and the
//! library's `Child::wait` reports `ExitStatus::Signaled(N)`.

mod common;

use common::*;
use zygote_linux::{ExitStatus, SpawnRequest};

const CASES: [(&str, i32); 3] = [("abort", libc::SIGABRT), ("kill", libc::SIGKILL), ("term", libc::SIGTERM)];

#[test]
fn cli_exits_128_plus_signal() {
    let prog = static_pie("signal.c");
    for (how, sig) in CASES {
        let direct = direct_run(&prog, &[how], &[], false);
        assert_eq!(direct.code, 128 + sig, "direct run of signal.c {how} did not die by signal {sig}:\n{direct}");
        let out = zygote_run(&prog, &[how], &[], false);
        assert_eq!(out.code, 128 + sig, "`zygote run -- {} {how}` should exit {}:\n{out}", prog.display(), 128 + sig);
        assert_eq!(out.stdout, direct.stdout, "stdout differs for {how}:\n{out}\n--- direct ---\n{direct}");
    }
}

#[test]
fn library_reports_signaled() {
    let prog = static_pie("signal.c");
    let z = new_zygote();
    for (how, sig) in CASES {
        let (st, out) = lib_run(&z, SpawnRequest::new(prog.as_os_str()).arg(how));
        match st {
            ExitStatus::Signaled(n) if n == sig => {}
            other => panic!("signal.c {how}: expected Signaled({sig}), got {}\n{out}", describe(&other)),
        }
        assert_eq!(st.shell_code(), 128 + sig, "shell_code for Signaled({sig})");
        assert_eq!(out.stdout_str(), format!("dying by {how}\n"));
    }
}

/// Killing a running child through `Child::kill` is reported as Signaled too.
#[test]
fn library_kill_running_child() {
    let prog = static_pie("evict.c");
    let z = new_zygote();
    let mut live = LiveChild::spawn(&z, SpawnRequest::new(prog.as_os_str()));
    live.wait_for_line("ready");
    signal(live.guard.child(), libc::SIGKILL);
    match live.guard.wait() {
        ExitStatus::Signaled(9) => {}
        other => panic!("expected Signaled(9), got {}", describe(&other)),
    }
}
