//! `zygote run` (and the library) must behave exactly like running the
//! program directly: same stdout, stderr and exit status, for four builds of
//! `tests/c/spie_test.c` (glibc static-PIE, glibc static-PIE with RELR, glibc
//! static non-PIE, musl static-PIE) and several argv/env combinations.

mod common;

use common::*;
use std::path::Path;
use zygote_linux::SpawnRequest;

struct Case {
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

fn cases() -> Vec<Case> {
    vec![
        // no arguments, empty environment
        Case { args: vec![], env: vec![] },
        // a few arguments with a space, one variable, non-zero exit
        Case { args: vec!["hello".into(), "two words".into(), "exit=3".into()], env: vec![("ZT_A", "alpha".into())] },
        // empty and non-ASCII arguments, option-looking arguments, a long
        // argument, several variables (empty value, '=' in value, long)
        Case {
            args: vec![
                String::new(),
                "ünïcödé ✓".into(),
                "--flag".into(),
                "-x".into(),
                "x=y".into(),
                "a".repeat(3000),
                "exit=42".into(),
            ],
            env: vec![
                ("ZT_A", String::new()),
                ("ZT_B", "b=c d".into()),
                ("ZT_LONG", "v".repeat(2000)),
                ("LANG", "C".into()),
            ],
        },
    ]
}

fn check_variant(variant: Variant) {
    let prog = build_spie_test(variant);
    let z = new_zygote();
    for (i, case) in cases().iter().enumerate() {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = case.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let direct = direct_run(&prog, &args, &env, true);
        // The program checks itself: a failure of its own checks (exit 99)
        // when run directly means the test program, not zygote, is broken.
        assert_ne!(direct.code, 99, "{variant:?} case {i}: direct run failed its self-checks:\n{direct}");
        assert!(direct.stdout_str().contains("failures=0"), "{variant:?} case {i}: direct run:\n{direct}");

        let via_cli = zygote_run(&prog, &args, &env, true);
        assert_eq!(
            via_cli,
            direct,
            "{variant:?} case {i}: `zygote run --clear-env ... -- {} ...` differs from a direct run\n\
             === zygote run ===\n{via_cli}\n=== direct ===\n{direct}",
            prog.display()
        );

        let via_lib = lib_spawn(&z, &prog, &args, &env);
        assert_eq!(
            via_lib, direct,
            "{variant:?} case {i}: library spawn differs from a direct run\n\
             === library ===\n{via_lib}\n=== direct ===\n{direct}"
        );
    }
    let s = z.stats();
    assert_eq!((s.misses, s.hits), (1, cases().len() as u64 - 1), "{variant:?}: one image build, then cache hits");
}

fn lib_spawn(z: &zygote_linux::Zygote, prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut req = SpawnRequest::new(prog.as_os_str()).args(args.iter().copied()).env_clear();
    for (k, v) in env {
        req = req.env(k, v);
    }
    let (st, out) = lib_run(z, req);
    assert_eq!(st.shell_code(), lib_shell_code(&st), "ExitStatus::shell_code for {}", describe(&st));
    out
}

#[test]
fn glibc_static_pie() {
    check_variant(Variant::GlibcStaticPie);
}

#[test]
fn glibc_static_pie_relr() {
    check_variant(Variant::GlibcStaticPieRelr);
}

#[test]
fn glibc_static_non_pie() {
    check_variant(Variant::GlibcStatic);
}

#[test]
fn musl_static_pie() {
    check_variant(Variant::MuslStaticPie);
}

/// Without `--clear-env` the child inherits zygote's environment, plus any
/// `--env` settings (checked against a direct run with the same additions).
#[test]
fn inherited_environment() {
    let prog = build_spie_test(Variant::GlibcStaticPie);
    let env = [("ZT_A", "inherited-plus-one"), ("ZT_B", "second")];
    let direct = direct_run(&prog, &["x"], &env, false);
    let via_cli = zygote_run(&prog, &["x"], &env, false);
    assert_eq!(via_cli, direct, "=== zygote run ===\n{via_cli}\n=== direct ===\n{direct}");
}
