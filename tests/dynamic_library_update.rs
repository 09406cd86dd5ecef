//! A new version of a shared library renamed over the old one makes the next
//! spawn rebuild the program's image (the cached one maps the old library),
//! while processes already running from the old image are unaffected.

mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use zygote_linux::SpawnRequest;

/// Build libv.c with ZT_VERSION=`version` into `out`.
fn build_libv(version: u32, out: &Path) {
    let define = format!("-DZT_VERSION={version}");
    shared_lib("gcc", &[&dyn_src("libv.c")], out, &["-O1", &define]);
}

/// (directory holding libv.so, the program linked to it with an rpath).
fn setup() -> (PathBuf, PathBuf) {
    let dir = unique_dir("libv");
    build_libv(1, &dir.join("libv.so"));
    let flags = link_lib_flags(&dir, "v");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let prog = compile("gcc", &[&dyn_src("vprog.c")], &dir.join("vprog"), &["-O1"], &flags);
    (dir, prog)
}

fn expect_version(z: &zygote_linux::Zygote, prog: &Path, v: u32, what: &str) {
    let (st, out) = lib_run(z, SpawnRequest::new(prog.as_os_str()).env_clear());
    assert_eq!(
        out,
        Outcome { code: 0, stdout: format!("version v{v} {v}\nagain v{v} {v}\n").into_bytes(), stderr: Vec::new() },
        "{what} ({})",
        describe(&st)
    );
}

#[test]
fn renamed_library_rebuilds_image_and_running_processes_keep_the_old_one() {
    let (dir, prog) = setup();
    let lib = dir.join("libv.so");
    let z = new_zygote();

    // A long-lived process from the version-1 image.
    let req = SpawnRequest::new(prog.as_os_str()).env_clear();
    let (mut first, mut first_stdin) = LiveChild::spawn_with_stdin(&z, req);
    first.wait_for_line("version v1 1");
    let s = z.stats();
    assert_eq!((s.misses, s.builds), (1, 1), "{}", stats_line(&s));
    let img = cached_clear_env_image(&z, &prog);
    assert_eq!((img.kind(), img.fallback()), (zygote_core::elf::ProgramKind::Dynamic, None), "restored, not exec'd");
    drop(img);

    // A cache hit while nothing changed.
    expect_version(&z, &prog, 1, "second spawn before the update");
    let s = z.stats();
    assert_eq!(s.builds, 1, "no rebuild while the library is unchanged: {}", stats_line(&s));

    // Version 2, built beside it and renamed over it.
    let tmp = dir.join("libv.so.new");
    build_libv(2, &tmp);
    std::fs::rename(&tmp, &lib).expect("rename the new libv.so over the old one");

    expect_version(&z, &prog, 2, "first spawn after the library was replaced");
    let s = z.stats();
    assert_eq!((s.misses, s.builds), (2, 2), "the replaced library makes the image rebuild: {}", stats_line(&s));
    let img = cached_clear_env_image(&z, &prog);
    assert_eq!((img.kind(), img.fallback()), (zygote_core::elf::ProgramKind::Dynamic, None), "rebuilt image restored");
    drop(img);

    // The new image is cached and valid.
    expect_version(&z, &prog, 2, "second spawn after the update");
    let s = z.stats();
    assert_eq!((s.misses, s.builds), (2, 2), "the rebuilt image is reused: {}", stats_line(&s));

    // The first process still runs the version it started with.
    first_stdin.write_all(b"continue\n").expect("write to the first process");
    drop(first_stdin);
    let st = first.guard.wait();
    assert_eq!(lib_shell_code(&st), 0, "first process: {}", describe(&st));
    assert_eq!(
        first.rest(),
        vec!["version v1 1".to_string(), "again v1 1".to_string()],
        "the process started before the update must keep version 1"
    );
}

/// The same through `zygote run`, which starts with an empty cache each
/// time: it simply picks up whichever library is installed.
#[test]
fn zygote_run_sees_the_installed_version() {
    let (dir, prog) = setup();
    for v in [1, 2, 3] {
        if v > 1 {
            let tmp = dir.join(format!("libv.so.{v}"));
            build_libv(v, &tmp);
            std::fs::rename(&tmp, dir.join("libv.so")).expect("rename");
        }
        let run = zygote_run_stats(&prog, &[], &[], true);
        assert_restored(&run.stats, &format!("version {v}"));
        assert_eq!(
            run.outcome.stdout_str(),
            format!("version v{v} {v}\nagain v{v} {v}\n"),
            "version {v}: {}",
            run.outcome
        );
        assert_eq!(run.outcome.code, 0, "{}", run.outcome);
    }
}
