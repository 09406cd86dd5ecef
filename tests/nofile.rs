//! The zygote raises its own RLIMIT_NOFILE soft limit (a cache holds many
//! images' fds); programs it starts get the soft limit it was started with,
//! as a direct exec would give them.

mod common;

use common::*;
use std::process::Command;

fn under_soft_limit(soft: u32, prog: &std::path::Path, via_zygote: bool) -> String {
    let run = if via_zygote {
        format!("exec \"{}\" run -- \"{}\"", env!("CARGO_BIN_EXE_zygote"), prog.display())
    } else {
        format!("exec \"{}\"", prog.display())
    };
    let out = Command::new("bash").arg("-c").arg(format!("ulimit -Sn {soft} && {run}")).output().expect("run bash");
    assert!(out.status.success(), "{run}: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn programs_get_the_callers_soft_limit() {
    let static_prog = static_pie("nofile.c");
    let dynamic_prog = cc(&c_src("nofile.c"), "nofile-dyn", &["-O1"], &[]);
    for prog in [&static_prog, &dynamic_prog] {
        let direct = under_soft_limit(256, prog, false);
        assert!(direct.starts_with("256 "), "direct run: {direct}");
        assert_eq!(under_soft_limit(256, prog, true), direct, "{}", prog.display());
    }
}
