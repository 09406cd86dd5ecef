//! Per-process identity of dynamically linked programs started from one
//! prototype image:
//!
//! - the stack canary (`%fs:0x28`) is re-randomised in every process (two
//!   spawns from one image differ; glibc's zero low byte is kept);
//! - `/proc/PID/exe` names the real program when the spawner holds
//!   CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE, and, as documented, the stub's
//!   memfd (`/memfd:zygote-stub (deleted)`) without them, while the program
//!   still runs correctly.

mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use zygote_linux::SpawnRequest;

fn canary_prog() -> PathBuf {
    cc_cached(&dyn_src("canary.c"), "canary", &["-O1"], &[])
}

fn exe_prog() -> PathBuf {
    cc_cached(&dyn_src("exe.c"), "exe", &["-O1"], &[])
}

fn showme() -> PathBuf {
    cc_cached(&dyn_src("showme.c"), "showme", &["-O1", "-pthread", "-rdynamic"], &[])
}

fn parse_canary(out: &Outcome) -> u64 {
    let s = out.stdout_str();
    let hex = s
        .strip_prefix("canary=")
        .and_then(|r| r.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("expected `canary=HEX`, got:\n{out}"));
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("canary {hex:?}: {e}"))
}

#[test]
fn stack_canary_differs_between_spawns_from_one_image() {
    let prog = canary_prog();
    let direct = parse_canary(&direct_run(&prog, &[], &[], true));
    assert_eq!(direct & 0xff, 0, "glibc's canary has a zero low byte (direct run: {direct:016x})");

    let z = new_zygote();
    let mut canaries = Vec::new();
    for i in 0..3 {
        let (st, out) = lib_run(&z, SpawnRequest::new(prog.as_os_str()).env_clear());
        assert_eq!(lib_shell_code(&st), 0, "spawn {i}: {}\n{out}", describe(&st));
        canaries.push(parse_canary(&out));
    }
    let s = z.stats();
    assert_eq!((s.misses, s.builds, s.hits), (1, 1, 2), "three spawns from one image: {}", stats_line(&s));
    let img = cached_clear_env_image(&z, &prog);
    assert_eq!(img.kind(), zygote_core::elf::ProgramKind::Dynamic);
    assert_eq!(img.fallback(), None, "the canary program must be restored, not exec'd");

    for (i, c) in canaries.iter().enumerate() {
        assert_eq!(c & 0xff, 0, "spawn {i}: canary {c:016x} lost glibc's zero low byte");
        assert_ne!(*c, 0, "spawn {i}: canary is zero");
    }
    assert_ne!(canaries[0], canaries[1], "two spawns from one image share the stack canary {:016x}", canaries[0]);
    assert_ne!(canaries[1], canaries[2], "spawns 1 and 2 share the stack canary {:016x}", canaries[1]);
    assert_ne!(canaries[0], canaries[2], "spawns 0 and 2 share the stack canary {:016x}", canaries[0]);
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
}

/// Spawn `exe wait` from `path` via the library; once it printed "ready",
/// /proc/PID/exe (seen from outside and from inside) must name `want`.
fn check_exe_of_live_child(z: &zygote_linux::Zygote, path: &Path, want: &Path) {
    let req = SpawnRequest::new(path.as_os_str()).arg("wait").env_clear().env("X", "live");
    let (mut child, mut stdin) = LiveChild::spawn_with_stdin(z, req);
    let pid = child.guard.pid();
    child.wait_for_line("ready");
    let outside = std::fs::read_link(format!("/proc/{pid}/exe")).expect("readlink /proc/PID/exe");
    assert_eq!(outside, want, "readlink /proc/{pid}/exe of a process spawned from {}", path.display());
    let inside = format!("exe=[{}]", want.display());
    assert_eq!(child.seen[0], inside, "what the program itself reads; output {:?}", child.seen);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("read cmdline");
    assert_eq!(cmdline, format!("{}\0wait\0", path.display()).into_bytes(), "/proc/{pid}/cmdline");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    assert_eq!(environ, b"X=live\0", "/proc/{pid}/environ");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("read comm");
    let name = path.file_name().expect("file name").to_string_lossy();
    assert_eq!(comm.trim_end(), &name[..name.len().min(15)], "/proc/{pid}/comm");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    assert!(!maps.contains("zygote-stub"), "the stub's image should be unmapped once the exe file is set:\n{maps}");
    stdin.write_all(b"go\n").expect("write to the child's stdin");
    drop(stdin);
    let st = child.guard.wait();
    assert_eq!(lib_shell_code(&st), 0, "exit status {}", describe(&st));
    let lines = child.rest();
    assert_eq!(
        lines,
        vec![inside.clone(), "arg[1]=[wait]".to_string(), "X=live".to_string(), "ready".to_string(), inside],
        "output of the live child"
    );
}

#[test]
fn proc_exe_names_the_program_with_the_capability() {
    assert!(
        have_restore_caps(),
        "this test needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE in the test process (run as root)"
    );
    let prog = exe_prog();
    let z = new_zygote();
    check_exe_of_live_child(&z, &prog, &canonical(&prog));
    // Through a symlink: the exe is the file itself.
    let dir = unique_dir("exe-link");
    let link = dir.join("link-to-exe");
    std::os::unix::fs::symlink(&prog, &link).expect("symlink");
    check_exe_of_live_child(&z, &link, &canonical(&prog));
    let s = z.stats();
    assert_eq!(s.builds, 1, "one image for both paths: {}", stats_line(&s));
    let img = cached_clear_env_image(&z, &prog);
    assert_eq!((img.kind(), img.fallback()), (zygote_core::elf::ProgramKind::Dynamic, None));

    // The CLI too.
    let run = zygote_run_stats(&prog, &["cli"], &[("X", "1")], true);
    assert_restored(&run.stats, "zygote run of the exe program");
    assert_eq!(
        run.outcome.stdout_str(),
        format!("exe=[{}]\narg[1]=[cli]\nX=1\n", canonical(&prog).display()),
        "zygote run: {}",
        run.outcome
    );
}

/// Check that `setpriv` really drops both capabilities here.
fn assert_setpriv_drops_caps() {
    let mut cmd = Command::new(WITHOUT_RESTORE_CAPS[0]);
    cmd.args(&WITHOUT_RESTORE_CAPS[1..]).args(["cat", "/proc/self/status"]);
    let out = run_command(&mut cmd);
    assert_eq!(out.code, 0, "{cmd:?}:\n{out}");
    let eff = cap_eff(&out.stdout_str());
    assert_eq!(eff & (1 << CAP_SYS_ADMIN), 0, "CAP_SYS_ADMIN still effective under {cmd:?}: {eff:x}");
    assert_eq!(eff & (1 << CAP_CHECKPOINT_RESTORE), 0, "CAP_CHECKPOINT_RESTORE still effective: {eff:x}");
}

fn direct_without_caps(prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(WITHOUT_RESTORE_CAPS[0]);
    cmd.args(&WITHOUT_RESTORE_CAPS[1..]).arg(prog).args(args).env_clear().envs(env.iter().copied());
    run_command(&mut cmd)
}

#[test]
fn proc_exe_names_the_stub_memfd_without_the_capability() {
    assert_setpriv_drops_caps();
    let prog = exe_prog();
    let env = [("X", "no caps")];
    let run = zygote_run_stats_via(&WITHOUT_RESTORE_CAPS, &prog, &["a", "b c"], &env, true);
    assert_restored(&run.stats, "zygote run without the capabilities");
    let want_tail = "arg[1]=[a]\narg[2]=[b c]\nX=no caps\n";
    assert_eq!(
        run.outcome,
        Outcome {
            code: 0,
            stdout: format!("exe=[/memfd:zygote-stub (deleted)]\n{want_tail}").into_bytes(),
            stderr: Vec::new()
        },
        "zygote run without CAP_SYS_ADMIN/CAP_CHECKPOINT_RESTORE:\n{}",
        run.outcome
    );
    // The same program run directly under the same setpriv: only the exe line differs.
    let direct = direct_without_caps(&prog, &["a", "b c"], &env);
    assert_eq!(
        direct.stdout_str(),
        format!("exe=[{}]\n{want_tail}", canonical(&prog).display()),
        "direct run under setpriv:\n{direct}"
    );
}

/// Without the capabilities, everything but the exe link is as with them:
/// showme (heap growth through the restored brk, threads, fork, signals...)
/// matches a direct run under the same setpriv.
#[test]
fn programs_run_correctly_without_the_capability() {
    assert_setpriv_drops_caps();
    let prog = showme();
    for (args, env) in [(vec!["x", "exit=4"], vec![("PATH", "/usr/bin:/bin"), ("X", "1")]), (vec![], vec![("A", "b")])]
    {
        let env = sorted_env(&env);
        let direct = direct_without_caps(&prog, &args, &env);
        assert!(direct.stdout_str().contains("failures=0\n"), "direct run under setpriv:\n{direct}");
        let run = zygote_run_stats_via(&WITHOUT_RESTORE_CAPS, &prog, &args, &env, true);
        assert_restored(&run.stats, "showme without the capabilities");
        assert_eq!(
            run.outcome, direct,
            "showme {args:?} without the capabilities\n=== zygote run ===\n{}\n=== direct ===\n{direct}",
            run.outcome
        );
    }
}
