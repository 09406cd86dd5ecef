//! The remaining spawn-request options: working directory (library and
//! `zygote run --cwd`), process name (comm) and argv[0].

mod common;

use common::*;
use std::process::Command;
use zygote_linux::{ExitStatus, SpawnRequest};

#[test]
fn cwd_library_and_cli() {
    let prog = build_spie_test(Variant::GlibcStaticPie);
    let dir = unique_dir("cwd");
    let dir = dir.canonicalize().expect("canonicalize cwd dir");

    let direct = run_command(Command::new(&prog).arg("x").current_dir(&dir).env_clear());
    assert!(direct.stdout_str().contains(&format!("cwd={}\n", dir.display())), "{direct}");

    let (st, lib) = lib_run(&new_zygote(), SpawnRequest::new(prog.as_os_str()).arg("x").env_clear().cwd(&dir));
    assert_eq!(lib_shell_code(&st), 0, "{lib}");
    assert_eq!(lib, direct, "library .cwd()\n=== library ===\n{lib}\n=== direct ===\n{direct}");

    let cli = zygote_cli([
        "run".as_ref(),
        "--clear-env".as_ref(),
        "--cwd".as_ref(),
        dir.as_os_str(),
        "--".as_ref(),
        prog.as_os_str(),
        "x".as_ref(),
    ]);
    assert_eq!(cli, direct, "zygote run --cwd\n=== zygote run ===\n{cli}\n=== direct ===\n{direct}");
}

fn comm_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_else(|e| panic!("read /proc/{pid}/comm: {e}"))
}

#[test]
fn process_name() {
    let prog = static_pie("evict.c");
    let z = new_zygote();

    // default: like exec, the program file's name
    let mut plain = LiveChild::spawn(&z, SpawnRequest::new(prog.as_os_str()));
    plain.wait_for_line("ready");
    let base = prog.file_name().expect("file name").to_string_lossy().into_owned();
    let want: String = base.chars().take(15).collect();
    assert_eq!(comm_of(plain.guard.pid()), format!("{want}\n"), "default comm");

    let mut named = LiveChild::spawn(&z, SpawnRequest::new(prog.as_os_str()).name("zt-custom"));
    named.wait_for_line("ready");
    assert_eq!(comm_of(named.guard.pid()), "zt-custom\n", "comm set with .name()");

    for c in [&mut plain, &mut named] {
        signal(c.guard.child(), libc::SIGTERM);
        match c.guard.wait() {
            ExitStatus::Exited(0) => {}
            other => panic!("evict.c after SIGTERM: {}", describe(&other)),
        }
    }
}

#[test]
fn argv0() {
    let prog = build_spie_test(Variant::GlibcStaticPie);
    let (st, out) = lib_run(&new_zygote(), SpawnRequest::new(prog.as_os_str()).argv0("custom-zero").arg("y"));
    assert_eq!(lib_shell_code(&st), 0, "{out}");
    let s = out.stdout_str();
    assert!(s.contains("argv0-base=<custom-zero>\n"), "{out}");
    assert!(s.contains("argc=2\n") && s.contains("argv[1]=<y>\n"), "{out}");
}
