//! Every ET_DYN without an interpreter that the kernel runs, zygote runs
//! (`zygote run` and through the daemon), with the same output and status:
//!
//! - a glibc static PIE whose DT_FLAGS_1 lost DF_1_PIE is imaged as a
//!   static PIE all the same (only relative relocations, which its start-up
//!   applies);
//! - an ET_DYN without a PT_DYNAMIC (nothing to relocate) is imaged too;
//! - a shared library with an entry point and a symbol relocation (which
//!   the kernel leaves unapplied) runs by plain exec.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// Position-independent, no libc and no relocations: writes and exits 5.
const NO_RELOCS: &str = r#"
static const char msg[] = "no PT_DYNAMIC here\n";
void _start(void) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(1), "D"(1), "S"(msg), "d"(sizeof msg - 1) : "rcx", "r11", "memory");
    __asm__ volatile("syscall" :: "a"(60), "D"(5) : "rcx", "r11", "memory");
    for (;;) {}
}
"#;

const PT_NULL: u32 = 0;
const PT_DYNAMIC: u32 = 2;
const ET_DYN: u16 = 3;
const DT_FLAGS_1: u64 = 0x6fff_fffb;
const DF_1_PIE: u64 = 0x0800_0000;

fn source(name: &str, text: &str) -> PathBuf {
    let p = build_dir().join(name);
    std::fs::write(&p, text).expect("write C source");
    p
}

/// A copy of `prog` named `name`, its bytes changed by `patch`.
fn patched(prog: &Path, name: &str, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = std::fs::read(prog).expect("read program");
    patch(&mut b);
    let out = build_dir().join(name);
    write_file(&out, &b, 0o755);
    out
}

/// The file offset and size of PT_DYNAMIC.
fn pt_dynamic(b: &[u8]) -> (usize, usize) {
    let p = phdrs(b).into_iter().find(|p| p.p_type == PT_DYNAMIC).expect("a PT_DYNAMIC");
    (p.p_offset as usize, p.p_filesz as usize)
}

/// The three programs, each with what a direct run must print.
fn programs() -> Vec<(&'static str, PathBuf)> {
    let spie = build_spie_test(Variant::GlibcStaticPie);
    let no_pie_flag = patched(&spie, "etdyn-no-pie-flag", |b| {
        let (off, len) = pt_dynamic(b);
        let at = (off..off + len).step_by(16).find(|&o| rd_u64(b, o) == DT_FLAGS_1);
        let at = at.expect("a DT_FLAGS_1") + 8;
        let flags = rd_u64(b, at);
        assert_ne!(flags & DF_1_PIE, 0, "the static PIE has DF_1_PIE");
        wr_u64(b, at, flags & !DF_1_PIE);
    });
    let raw = cc(&source("etdyn-no-relocs.c", NO_RELOCS), "etdyn-no-relocs", &["-O1", "-nostdlib", "-static-pie"], &[]);
    let no_dynamic = patched(&raw, "etdyn-no-dynamic", |b| {
        let mut p = phdrs(b).into_iter().find(|p| p.p_type == PT_DYNAMIC).expect("a PT_DYNAMIC");
        p.p_type = PT_NULL;
        write_phdr(b, &p);
    });
    let lib_flags = ["-O1", "-shared", "-fPIC", "-nostdlib", "-Wl,-e,zt_entry"];
    let shared = cc(&c_src("caller_shared_entry.c"), "etdyn-shared.so", &lib_flags, &[]);
    sync();
    for p in [&no_pie_flag, &no_dynamic, &shared] {
        assert!(!has_interp(p), "{} has no interpreter", p.display());
        assert_eq!(rd_u16(&std::fs::read(p).expect("read"), 0x10), ET_DYN, "{}", p.display());
    }
    vec![("no-pie-flag", no_pie_flag), ("no-dynamic", no_dynamic), ("shared-with-entry", shared)]
}

#[test]
fn et_dyn_without_interpreter_runs_like_execve() {
    let args = ["one", "exit=3"];
    let socket = socket_path("etdyn");
    let daemon = Daemon::start(&socket, &[]);
    for (name, prog) in programs() {
        let direct = direct_run(&prog, &args, &[], true);
        assert!(!direct.stdout.is_empty(), "{name}: a direct run prints something:\n{direct}");

        let run = zygote_run_stats(&prog, &args, &[], true);
        assert_eq!(run.outcome, direct, "{name}: `zygote run` differs from a direct run\n{}\n{direct}", run.outcome);
        let fallback = stats_fallback(&run.stats);
        if name == "shared-with-entry" {
            assert!(fallback.as_deref().is_some_and(|f| f.contains("not a static PIE")), "{name}: {}", run.stats);
        } else {
            assert_eq!(fallback, None, "{name}: imaged as a static PIE: {}", run.stats);
            assert_eq!(run.stats["image"]["kind"], "StaticPie", "{name}: {}", run.stats);
        }

        let out = zygote_cli(daemon_spawn_cli(socket.as_ref(), &prog, &args, &[]));
        assert_eq!(out, direct, "{name}: `zygote spawn` differs\n{out}\n{direct}\n{}", daemon.log_tail(2000));
    }
}

/// Programs the kernel runs but an image cannot hold run by plain exec, with
/// the kernel's output and status: an executable stack (`-z execstack`), and
/// program headers in no PT_LOAD (`-N`, no PT_PHDR).
#[test]
fn what_an_image_cannot_hold_runs_by_plain_exec() {
    let src = source("etdyn-no-relocs-exec.c", NO_RELOCS);
    let exec_stack = cc(&src, "etdyn-execstack", &["-O1", "-nostdlib", "-static", "-Wl,-z,execstack"], &[]);
    let wx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/wx_exit.c");
    let omagic = cc(&wx, "etdyn-omagic", &["-O1", "-nostdlib", "-static", "-no-pie", "-Wl,-N"], &[]);
    sync();
    let socket = socket_path("etdyn-plain");
    let daemon = Daemon::start(&socket, &[]);
    for (name, prog, why) in
        [("execstack", &exec_stack, "executable stack"), ("omagic", &omagic, "in no PT_LOAD and there is no PT_PHDR")]
    {
        let direct = direct_run(prog, &[], &[], true);
        assert!(!direct.stdout.is_empty(), "{name}: a direct run prints something:\n{direct}");
        let run = zygote_run_stats(prog, &[], &[], true);
        assert_eq!(run.outcome, direct, "{name}: `zygote run` differs from a direct run\n{}\n{direct}", run.outcome);
        let fallback = stats_fallback(&run.stats);
        assert!(fallback.as_deref().is_some_and(|f| f.contains(why)), "{name}: {}", run.stats);
        let out = zygote_cli(daemon_spawn_cli(socket.as_ref(), prog, &[], &[]));
        assert_eq!(out, direct, "{name}: `zygote spawn` differs\n{out}\n{direct}\n{}", daemon.log_tail(2000));
    }
}
