//! Programs whose start-up cannot be captured in a snapshot are refused with
//! the reason, and still run correctly by plain exec (the fallback): a
//! shared-library constructor that starts a thread, one that opens a file,
//! and one that installs a signal handler. (The main executable's own
//! constructors run after the entry point, in __libc_start_main, so these
//! constructors live in shared libraries the programs link.)

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use zygote_linux::SpawnRequest;

struct Built {
    thread: PathBuf,
    fd: PathBuf,
    sig: PathBuf,
    data_file: PathBuf,
}

fn build() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = unique_dir("ctor-libs");
        let data_file = dir.join("data.txt");
        write_file(&data_file, b"data for the constructor\nsecond line\n", 0o644);
        let define = format!("-DZT_DATA_FILE=\"{}\"", data_file.display());
        shared_lib("gcc", &[&dyn_src("ctor_thread.c")], &dir.join("libzt_ctor_thread.so"), &["-O1", "-pthread"]);
        shared_lib("gcc", &[&dyn_src("ctor_fd.c")], &dir.join("libzt_ctor_fd.so"), &["-O1", &define]);
        shared_lib("gcc", &[&dyn_src("ctor_sig.c")], &dir.join("libzt_ctor_sig.so"), &["-O1"]);
        let link = |lib: &str| {
            let flags = link_lib_flags(&dir, lib);
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            compile("gcc", &[&dyn_src("ctor_main.c")], &dir.join(format!("main_{lib}")), &["-O1"], &flags)
        };
        Built { thread: link("zt_ctor_thread"), fd: link("zt_ctor_fd"), sig: link("zt_ctor_sig"), data_file }
    })
}

/// The refusal shows in `--stats --json`, and output and status equal a
/// direct run's, for two argv/env sets; through the library, two spawns
/// (one image build, the refusal cached) both run correctly.
fn check_refused(prog: &Path, reason_part: &str, report_line: &str) {
    let cases: [ArgsEnv<'_>; 2] =
        [(vec![], vec![]), (vec!["one", "two words", "exit=6"], vec![("PATH", "/usr/bin:/bin"), ("X", "x")])];
    for (i, (args, env)) in cases.iter().enumerate() {
        let context = format!("{} case {i}", prog.display());
        let stats = assert_same_as_direct(prog, args, env, &context);
        assert_eq!(stats["image"]["kind"], "Dynamic", "{context}: {stats}");
        let reason = stats_fallback(&stats)
            .unwrap_or_else(|| panic!("{context}: image.fallback is null; the program should be refused: {stats}"));
        assert!(reason.contains(reason_part), "{context}: fallback reason {reason:?} does not mention {reason_part:?}");
    }
    let direct = direct_run(prog, &["lib"], &[("X", "lib")], true);
    assert!(direct.stdout_str().contains(report_line), "direct run lacks {report_line:?}:\n{direct}");
    let z = new_zygote();
    for round in 0..2 {
        let req = SpawnRequest::new(prog.as_os_str()).arg("lib").env_clear().env("X", "lib");
        let (_, out) = lib_run(&z, req);
        assert_eq!(out, direct, "library spawn {round}\n=== library ===\n{out}\n=== direct ===\n{direct}");
    }
    let s = z.stats();
    assert_eq!((s.misses, s.builds, s.hits), (1, 1, 1), "the refusal is cached: {}", stats_line(&s));
    let img = cached_clear_env_image(&z, prog);
    assert_eq!(img.kind(), zygote_core::elf::ProgramKind::Dynamic);
    let reason = img.fallback().unwrap_or_else(|| panic!("{}: Image::fallback() is None", prog.display()));
    assert!(reason.contains(reason_part), "Image::fallback() = {reason:?}");
}

#[test]
fn constructor_starting_a_thread_is_refused() {
    check_refused(&build().thread, "thread", "constructor thread computed 5050");
}

#[test]
fn constructor_opening_a_file_is_refused() {
    let b = build();
    check_refused(&b.fd, "opened fd", "read [data for the constructor]");
    // The reason names the fd and the file.
    let run = zygote_run_stats(&b.fd, &[], &[], true);
    let reason = stats_fallback(&run.stats).expect("refused");
    assert!(
        reason.contains(&b.data_file.display().to_string()),
        "fallback reason {reason:?} does not name {}",
        b.data_file.display()
    );
}

#[test]
fn constructor_installing_a_signal_handler_is_refused() {
    check_refused(&build().sig, "signal handler", "constructor handler caught SIGUSR1");
}
