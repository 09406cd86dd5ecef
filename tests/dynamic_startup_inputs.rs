//! What a dynamically linked program's start-up (the dynamic linker and the
//! shared libraries' constructors, which run once, in the prototype) reads
//! from the process must be the spawned process's, as in a direct run:
//!
//! - loader variables: `GLIBC_TUNABLES`, `LD_LIBRARY_PATH` (part of the image
//!   key, passed to the prototype), and glibc's legacy tunable aliases such
//!   as `MALLOC_PERTURB_`, which the dynamic linker reads the same way;
//! - argc/argv/envp that glibc hands ELF constructors, when a constructor
//!   keeps them (pointer and argc fixups);
//! - the environment and arguments a constructor reads.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use zygote_linux::SpawnRequest;

fn perturb() -> PathBuf {
    cc_cached(&dyn_src("perturb.c"), "perturb", &["-O0"], &[])
}

const PERTURBED: &str = "fresh malloc byte: 0x5a\n";
const PLAIN: &str = "fresh malloc byte: 0\n";

#[test]
fn glibc_tunables_take_effect() {
    let prog = perturb();
    let env = [("GLIBC_TUNABLES", "glibc.malloc.perturb=165")];
    let direct = direct_run(&prog, &[], &env, true);
    assert_eq!(direct.stdout_str(), PERTURBED, "the tunable should show in a direct run:\n{direct}");
    let stats = assert_same_as_direct(&prog, &[], &env, "GLIBC_TUNABLES=glibc.malloc.perturb=165");
    assert_restored(&stats, "perturb with GLIBC_TUNABLES");

    // One zygote: the tunable is part of the image key.
    let z = new_zygote();
    for (env, want) in [(None, PLAIN), (Some(env[0]), PERTURBED), (None, PLAIN)] {
        let mut req = SpawnRequest::new(prog.as_os_str()).env_clear();
        if let Some((k, v)) = env {
            req = req.env(k, v);
        }
        let (_, out) = lib_run(&z, req);
        assert_eq!(out.stdout_str(), want, "library spawn with {env:?}:\n{out}");
    }
    let s = z.stats();
    assert_eq!((s.misses, s.hits), (2, 1), "one image per tunable setting: {}", stats_line(&s));
}

/// glibc's dynamic linker also takes malloc tunables from the legacy
/// variables MALLOC_PERTURB_, MALLOC_CHECK_, MALLOC_TOP_PAD_,
/// MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_MAX_,
/// MALLOC_ARENA_MAX and MALLOC_ARENA_TEST (tunable env aliases), read
/// before the entry point like GLIBC_TUNABLES.
#[test]
fn legacy_malloc_variables_take_effect() {
    let prog = perturb();
    let env = [("MALLOC_PERTURB_", "165")];
    let direct = direct_run(&prog, &[], &env, true);
    assert_eq!(direct.stdout_str(), PERTURBED, "MALLOC_PERTURB_ should show in a direct run:\n{direct}");
    let stats = assert_same_as_direct(&prog, &[], &env, "MALLOC_PERTURB_=165");
    assert_restored(&stats, "perturb with MALLOC_PERTURB_");

    let z = new_zygote();
    for (env, want) in [(None, PLAIN), (Some(env[0]), PERTURBED)] {
        let mut req = SpawnRequest::new(prog.as_os_str()).env_clear();
        if let Some((k, v)) = env {
            req = req.env(k, v);
        }
        let (_, out) = lib_run(&z, req);
        assert_eq!(out.stdout_str(), want, "library spawn with {env:?} after one without:\n{out}");
    }
}

/// LD_LIBRARY_PATH (searched before DT_RUNPATH) picks another libv.so.
#[test]
fn ld_library_path_selects_the_library() {
    let dir1 = unique_dir("libv-runpath");
    let dir2 = unique_dir("libv-ld-path");
    for (dir, v) in [(&dir1, 1), (&dir2, 2)] {
        let define = format!("-DZT_VERSION={v}");
        shared_lib("gcc", &[&dyn_src("libv.c")], &dir.join("libv.so"), &["-O1", &define]);
    }
    let mut flags = link_lib_flags(&dir1, "v");
    flags.push("-Wl,--enable-new-dtags".into());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let prog = compile("gcc", &[&dyn_src("vprog.c")], &dir1.join("vprog"), &["-O1"], &flags);
    assert!(readelf(&["-d"], &prog).contains("(RUNPATH)"), "{} should have DT_RUNPATH", prog.display());
    let ld_path = dir2.display().to_string();

    let v1 = "version v1 1\nagain v1 1\n";
    let v2 = "version v2 2\nagain v2 2\n";
    let stats = assert_same_as_direct(&prog, &[], &[], "without LD_LIBRARY_PATH");
    assert_restored(&stats, "vprog");
    let stats = assert_same_as_direct(&prog, &[], &[("LD_LIBRARY_PATH", &ld_path)], "with LD_LIBRARY_PATH");
    assert_restored(&stats, "vprog with LD_LIBRARY_PATH");
    assert_eq!(direct_run(&prog, &[], &[("LD_LIBRARY_PATH", &ld_path)], true).stdout_str(), v2);

    let z = new_zygote();
    for (with, want) in [(false, v1), (true, v2), (false, v1), (true, v2)] {
        let mut req = SpawnRequest::new(prog.as_os_str()).env_clear();
        if with {
            req = req.env("LD_LIBRARY_PATH", &ld_path);
        }
        let (_, out) = lib_run(&z, req);
        assert_eq!(out.stdout_str(), want, "library spawn, LD_LIBRARY_PATH set: {with}:\n{out}");
    }
    let s = z.stats();
    assert_eq!((s.misses, s.hits), (2, 2), "one image per LD_LIBRARY_PATH: {}", stats_line(&s));
}

fn ctor_inputs() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = unique_dir("ctor-inputs");
        shared_lib("gcc", &[&dyn_src("ctor_inputs.c")], &dir.join("libzt_ctor_inputs.so"), &["-O1"]);
        let flags = link_lib_flags(&dir, "zt_ctor_inputs");
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        compile("gcc", &[&dyn_src("ctor_inputs_main.c")], &dir.join("ctor_inputs"), &["-O1"], &flags)
    })
}

fn lines_with(o: &Outcome, prefix: &str) -> Vec<String> {
    o.stdout_str().lines().filter(|l| l.starts_with(prefix)).map(str::to_string).collect()
}

/// Compare the lines starting with `prefix` of a direct run and a zygote
/// run (which must be restored), for each case.
fn compare_lines(prog: &Path, prefix: &str, cases: &[ArgsEnv<'_>]) {
    for (i, (args, env)) in cases.iter().enumerate() {
        let env = sorted_env(env);
        let direct = direct_run(prog, args, &env, true);
        assert_eq!(direct.code, 0, "direct run:\n{direct}");
        let run = zygote_run_stats(prog, args, &env, true);
        assert_restored(&run.stats, &format!("case {i}"));
        assert_eq!(run.outcome.code, 0, "zygote run:\n{}", run.outcome);
        let (want, got) = (lines_with(&direct, prefix), lines_with(&run.outcome, prefix));
        assert!(!want.is_empty(), "no {prefix:?} lines in:\n{direct}");
        assert_eq!(got, want, "case {i} (args {args:?}, env {env:?}): {prefix:?} lines differ from a direct run");
    }
}

/// argc, argv and envp a constructor keeps are the spawned process's
/// (argc copied as an int, argv/envp as pointers into the initial stack).
#[test]
fn constructor_saved_argc_argv_envp_are_the_spawns() {
    compare_lines(
        ctor_inputs(),
        "saved",
        &[
            (vec![], vec![]),
            (vec!["one", "two", "three"], vec![("A", "1"), ("B", "2")]),
            (vec!["x"; 12], vec![("LONG", &"l".repeat(1000))]),
        ],
    );
}

/// Documented snapshot semantics (docs/ARCHITECTURE.md, "What a snapshot
/// freezes"): a library constructor runs once, in the prototype, which has only
/// argv[0] and the loader environment. Values it *computed* from the
/// environment are the prototype's, whatever the spawn passes; a direct run
/// differs. (Pointers it kept are fixed up: see the test above.)
#[test]
fn constructor_reading_the_environment_sees_the_prototypes() {
    let prog = ctor_inputs();
    for mode in ["on", "other"] {
        let env = sorted_env(&[("ZT_MODE", mode)]);
        let direct = direct_run(prog, &[], &env, true);
        assert_eq!(lines_with(&direct, "env"), vec![format!("env ZT_MODE in the constructor: {mode}")], "{direct}");
        let run = zygote_run_stats(prog, &[], &env, true);
        assert_restored(&run.stats, &format!("ZT_MODE={mode}"));
        assert_eq!(run.outcome.code, 0, "zygote run:\n{}", run.outcome);
        assert_eq!(
            lines_with(&run.outcome, "env"),
            vec!["env ZT_MODE in the constructor: (null)".to_string()],
            "the constructor ran in the prototype, without ZT_MODE:\n{}",
            run.outcome
        );
    }
}

/// Likewise for arguments: the prototype ran with argv[0] only.
#[test]
fn constructor_reading_arguments_sees_the_prototypes() {
    let prog = ctor_inputs();
    for args in [vec!["-v"], vec!["-v", "more"]] {
        let direct = direct_run(prog, &args, &[], true);
        assert_eq!(lines_with(&direct, "args"), vec!["args -v in the constructor: 1".to_string()], "{direct}");
        let run = zygote_run_stats(prog, &args, &[], true);
        assert_restored(&run.stats, &format!("args {args:?}"));
        assert_eq!(run.outcome.code, 0, "zygote run:\n{}", run.outcome);
        assert_eq!(
            lines_with(&run.outcome, "args"),
            vec!["args -v in the constructor: 0".to_string()],
            "the constructor ran in the prototype, without arguments:\n{}",
            run.outcome
        );
    }
}
