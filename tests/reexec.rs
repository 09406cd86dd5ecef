//! A static program that re-executes `/proc/self/exe` runs itself again,
//! under `zygote run` and through the daemon, as it does run directly: the
//! zygote (holding CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE) makes
//! `/proc/PID/exe` the program for static images too. Without those
//! capabilities `/proc/self/exe` names the stub, and the re-exec ends with
//! the stub's clear message (exit 127), not a stage code.

mod common;

use common::*;
use std::path::PathBuf;

/// Without an argument: re-exec /proc/self/exe with one. With one: print it
/// and what /proc/self/exe names, and exit 3.
const REEXEC: &str = r#"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) {
        printf("parent\n");
        fflush(stdout);
        char *args[] = {argv[0], "again", NULL};
        execv("/proc/self/exe", args);
        perror("execv /proc/self/exe");
        return 1;
    }
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n < 0 ? 0 : n] = 0;
    printf("child: argc=%d argv[1]=%s exe=%s\n", argc, argv[1], exe);
    return 3;
}
"#;

fn programs() -> Vec<(&'static str, PathBuf)> {
    let src = build_dir().join("reexec.c");
    std::fs::write(&src, REEXEC).expect("write reexec.c");
    let spie = cc(&src, "reexec-spie", &["-O1", "-static-pie"], &[]);
    let fixed = cc(&src, "reexec-static", &["-O1", "-static", "-no-pie"], &[]);
    sync();
    vec![("static-pie", spie), ("static", fixed)]
}

#[test]
fn reexec_of_proc_self_exe_runs_the_program() {
    assert!(have_restore_caps(), "the tests run as root, with CAP_SYS_ADMIN");
    let socket = socket_path("reexec");
    let daemon = Daemon::start(&socket, &[]);
    for (name, prog) in programs() {
        let direct = direct_run(&prog, &[], &[], true);
        assert_eq!(direct.code, 3, "{name}: direct run:\n{direct}");
        assert!(direct.stdout_str().starts_with("parent\nchild: argc=2 argv[1]=again exe=/"), "{name}: {direct}");

        let run = zygote_run_stats(&prog, &[], &[], true);
        assert_eq!(stats_fallback(&run.stats), None, "{name}: imaged, not exec'd: {}", run.stats);
        assert_eq!(run.outcome, direct, "{name}: `zygote run` differs\n{}\n{direct}", run.outcome);

        // Twice through the daemon: the second spawn goes through a launcher.
        for round in 0..2 {
            let out = zygote_cli(daemon_spawn_cli(socket.as_ref(), &prog, &[], &[]));
            assert_eq!(out, direct, "{name} round {round}: `zygote spawn` differs\n{out}\n{}", daemon.log_tail(2000));
        }
    }
}

#[test]
fn reexec_without_the_capabilities_says_why() {
    let (name, prog) = programs().remove(0);
    let mut cmd = std::process::Command::new(WITHOUT_RESTORE_CAPS[0]);
    cmd.args(&WITHOUT_RESTORE_CAPS[1..]).arg(zygote_bin()).args(zygote_run_cli(&prog, &[], &[], true, false));
    let out = run_command(&mut cmd);
    assert_eq!(out.code, 127, "{name} without the capabilities:\n{out}");
    assert_eq!(out.stdout_str(), "parent\n", "{name}: {out}");
    let err = out.stderr_str();
    assert!(err.contains("started without a plan") && err.contains("/proc/self/exe"), "{name}: {out}");
    assert!(!err.contains("stage"), "{name}: no stage code: {out}");
}
