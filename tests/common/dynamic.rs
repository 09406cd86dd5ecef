//! Dynamically linked programs: compiling them and their libraries, and
//! `zygote run --stats --json` compared with a direct run of the same program.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Outcome, c_src, direct_run, run_command, run_tool, zygote_bin, zygote_run_cli};

/// Path of a source under `tests/c/dyn/`.
pub fn dyn_src(name: &str) -> PathBuf {
    c_src(&format!("dyn/{name}"))
}

/// `tool FLAGS SRCS... LIBS... -o OUT` (tool: gcc or g++); panics with the
/// tool's output if it fails. Returns `out`.
pub fn compile(tool: &str, srcs: &[&Path], out: &Path, flags: &[&str], libs: &[&str]) -> PathBuf {
    run_tool(Command::new(tool).args(flags).args(srcs).args(libs).arg("-o").arg(out));
    out.to_path_buf()
}

/// A shared library: `tool -shared -fPIC FLAGS SRCS -o OUT`.
pub fn shared_lib(tool: &str, srcs: &[&Path], out: &Path, flags: &[&str]) -> PathBuf {
    let mut all = vec!["-shared", "-fPIC"];
    all.extend_from_slice(flags);
    compile(tool, srcs, out, &all, &[])
}

/// Link flags for `-lNAME` found in `dir` at link time and, through an
/// rpath, at run time.
pub fn link_lib_flags(dir: &Path, name: &str) -> Vec<String> {
    vec![format!("-L{}", dir.display()), format!("-l{name}"), format!("-Wl,-rpath,{}", dir.display())]
}

/// Split the stderr of `zygote run --stats --json` into the program's own
/// stderr and the JSON line zygote prints after the program ended (the last
/// line; the program's stderr need not end with a newline).
pub fn split_stats_json(stderr: &[u8]) -> Option<(Vec<u8>, serde_json::Value)> {
    let s = stderr.strip_suffix(b"\n")?;
    for i in (0..s.len()).rev().filter(|&i| s[i] == b'{') {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&s[i..])
            && v.get("image").is_some()
            && v.get("cache").is_some()
        {
            return Some((s[..i].to_vec(), v));
        }
    }
    None
}

/// A program's outcome under `zygote run --stats --json`, with the stats
/// line taken out of stderr, and the stats.
#[derive(Clone, Debug)]
pub struct StatsRun {
    pub outcome: Outcome,
    pub stats: serde_json::Value,
}

/// Run `zygote run --stats --json ...` (under `wrapper`, e.g. setpriv, if
/// not empty) and split its stderr; panics if there is no stats line.
pub fn zygote_run_stats_via(
    wrapper: &[&str],
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    clear_env: bool,
) -> StatsRun {
    let cli = zygote_run_cli(prog, args, env, clear_env, true);
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(zygote_bin());
            c
        }
        None => Command::new(zygote_bin()),
    };
    cmd.args(&cli);
    let raw = run_command(&mut cmd);
    let Some((stderr, stats)) = split_stats_json(&raw.stderr) else {
        panic!("{cmd:?}: no --stats --json line at the end of stderr:\n{raw}");
    };
    StatsRun { outcome: Outcome { stderr, ..raw }, stats }
}

/// [`zygote_run_stats_via`] without a wrapper.
pub fn zygote_run_stats(prog: &Path, args: &[&str], env: &[(&str, &str)], clear_env: bool) -> StatsRun {
    zygote_run_stats_via(&[], prog, args, env, clear_env)
}

/// `image.fallback` of a stats line: `None` if null (the image was used).
pub fn stats_fallback(stats: &serde_json::Value) -> Option<String> {
    match &stats["image"]["fallback"] {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => panic!("image.fallback is neither null nor a string: {other} in {stats}"),
    }
}

/// Assert a stats line says the program was started from a dynamic-program
/// image (restored from its prototype, not run by plain exec).
pub fn assert_restored(stats: &serde_json::Value, context: &str) {
    assert_eq!(stats["image"]["kind"], "Dynamic", "{context}: image.kind in {stats}");
    assert_eq!(stats_fallback(stats), None, "{context}: image.fallback should be null (restored, not exec'd): {stats}");
}

/// The environment sorted by key: `std::process::Command` passes its
/// environment sorted (it keeps it in a BTreeMap) while `zygote run --env`
/// keeps the order given, so both get the sorted order and a program
/// printing `environ` in order prints the same thing.
pub fn sorted_env<'a>(env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = env.to_vec();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

/// Run PROG directly, through `zygote run --clear-env --stats --json`, and
/// directly again, all with exactly `env` and the same argv and cwd, and
/// assert the zygote run's stdout, stderr and status equal the direct
/// run's. If the two direct runs differ (the program's world changed in
/// between, e.g. a directory listing), the triple is repeated (a few
/// times). Returns the zygote run's stats line.
pub fn assert_same_as_direct(prog: &Path, args: &[&str], env: &[(&str, &str)], context: &str) -> serde_json::Value {
    assert_same_as_direct_with(prog, args, env, context, |o| o.clone())
}

/// [`assert_same_as_direct`], comparing the outcomes after `normalize`
/// (for a value outside the program's control, such as a global counter).
pub fn assert_same_as_direct_with(
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    context: &str,
    normalize: impl Fn(&Outcome) -> Outcome,
) -> serde_json::Value {
    let env = sorted_env(env);
    let mut last = String::new();
    for _ in 0..6 {
        let before = normalize(&direct_run(prog, args, &env, true));
        let z = zygote_run_stats(prog, args, &env, true);
        let after = normalize(&direct_run(prog, args, &env, true));
        if before != after {
            last = format!("=== direct (1) ===\n{before}\n=== direct (2) ===\n{after}");
            continue;
        }
        let via = normalize(&z.outcome);
        assert_eq!(
            via,
            before,
            "{context}: `zygote run --clear-env ... -- {} {args:?}` differs from a direct run\n\
             === zygote run ===\n{via}\n=== direct ===\n{before}\n=== stats ===\n{}",
            prog.display(),
            z.stats
        );
        return z.stats;
    }
    panic!("{context}: two direct runs of {} {args:?} in a row kept differing:\n{last}", prog.display());
}

/// One run's arguments (after argv[0]) and environment.
pub type ArgsEnv<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
