//! `zygote experiment` with real processes: the report directory (report.json with every
//! sample, pss.svg, pss.png) for a static PIE and a dynamically linked program, no
//! instance left behind after a run, after SIGINT during the exec phase and after
//! SIGTERM during the zygote phase, and a program that does not stay alive.

mod common;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn spie() -> PathBuf {
    static_pie("exp_instance.c")
}

fn dynamic() -> PathBuf {
    let p = cc_cached(&c_src("exp_instance.c"), "exp_instance.dyn", &["-O2"], &[]);
    assert!(has_interp(&p), "{} should be dynamically linked", p.display());
    p
}

/// A word no other process has on its command line: finds our instances in /proc.
fn marker(tag: &str) -> String {
    format!("zygote-exp-{tag}-{}", std::process::id())
}

/// Pids of live (not zombie) processes with `word` among their arguments.
fn processes_with(word: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        if cmdline.split(|&b| b == 0).any(|a| a == word.as_bytes()) && pid_running(pid) {
            out.push(pid);
        }
    }
    out
}

/// No process started with `word` may exist, nor any of `pids` with it.
fn assert_no_survivors(word: &str, pids: &[i32]) {
    // The experiment reaps its instances before it exits; allow the kernel a moment to
    // tear down a process it has just reaped.
    let left = eventually("no instance left", SETTLE, || {
        let left = processes_with(word);
        if left.is_empty() { Ok(left) } else { Err(format!("still running: {left:?}")) }
    });
    assert!(left.is_empty());
    for &pid in pids {
        if let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) {
            assert!(
                !cmdline.split(|&b| b == 0).any(|a| a == word.as_bytes()),
                "instance pid {pid} still exists ({:?})",
                proc_stat(pid)
            );
        }
    }
}

fn experiment_args(out: &Path, extra: &[&str], prog: &Path, args: &[&str]) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["experiment".into(), "--out".into(), out.into()];
    v.extend(extra.iter().map(OsString::from));
    v.push("--".into());
    v.push(prog.into());
    v.extend(args.iter().map(OsString::from));
    v
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} is not an unsigned number in {v}"))
}

/// report.json's structure and arithmetic; returns every pid it lists.
fn check_report(r: &Value, instances: usize, counts: &[u64]) -> Vec<i32> {
    assert_eq!(r["instances"].as_u64(), Some(instances as u64), "{r}");
    let want_counts: Vec<Value> = counts.iter().map(|&c| Value::from(c)).collect();
    assert_eq!(r["counts"].as_array(), Some(&want_counts), "counts");
    let samples = r["samples"].as_array().expect("samples array");
    let mut pids = Vec::new();
    for method in ["exec", "zygote"] {
        let got: Vec<u64> = samples.iter().filter(|s| s["method"] == method).map(|s| u64_of(s, "instances")).collect();
        assert_eq!(got, counts, "{method}: instance counts sampled");
        for s in samples.iter().filter(|s| s["method"] == method) {
            let n = u64_of(s, "instances") as usize;
            let procs = s["processes"].as_array().expect("processes array");
            assert_eq!(procs.len(), n, "{method} at {n}: one entry per instance");
            let total = &s["total"];
            for key in ["rss", "pss", "uss", "pss_anon", "pss_file", "pss_shmem"] {
                let sum: u64 = procs.iter().map(|p| u64_of(p, key)).sum();
                assert_eq!(u64_of(total, key), sum, "{method} at {n}: total {key} = sum of the instances'");
            }
            for p in procs {
                for key in ["rss", "pss", "uss"] {
                    assert!(u64_of(p, key) > 0, "{method} at {n}: {key} of {p}");
                }
                assert!(u64_of(p, "pss") <= u64_of(p, "rss"), "pss <= rss: {p}");
                assert!(u64_of(p, "uss") <= u64_of(p, "pss"), "uss <= pss: {p}");
                pids.push(p["pid"].as_i64().expect("pid") as i32);
            }
        }
    }
    let summary = r["summary"].as_array().expect("summary");
    assert_eq!(summary.len(), counts.len(), "a summary row per count");
    for row in summary {
        let n = u64_of(row, "instances");
        let find = |m: &str| samples.iter().find(|s| s["method"] == m && u64_of(s, "instances") == n).expect("sample");
        assert_eq!(u64_of(row, "exec_pss"), u64_of(&find("exec")["total"], "pss"));
        assert_eq!(u64_of(row, "zygote_pss"), u64_of(&find("zygote")["total"], "pss"));
        assert!(row["ratio"].as_f64().is_some_and(|r| r > 0.0), "{row}");
    }
    assert!(r["image"]["fallback"].is_null(), "the zygote should start it from an image: {}", r["image"]);
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 2 * instances, "every instance has its own pid: {pids:?}");
    pids
}

fn check_charts(out: &Path) {
    let svg = fs::read_to_string(out.join("pss.svg")).expect("pss.svg");
    assert!(svg.contains("<svg"), "pss.svg is not SVG: {}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("instances") && svg.contains("zygote"), "the SVG has its labels");
    let png = fs::read(out.join("pss.png")).expect("pss.png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "pss.png is not a PNG");
    assert!(png.len() > 1000, "pss.png is suspiciously small: {} bytes", png.len());
}

fn run_and_check(prog: &Path, tag: &str, extra: &[&str]) {
    let out = unique_dir(&format!("exp-{tag}"));
    let word = marker(tag);
    let mut flags = vec!["--instances", "4", "--step", "2", "--json"];
    flags.extend_from_slice(extra);
    let o = zygote_cli(experiment_args(&out, &flags, prog, &["pause", &word]));
    assert_eq!(o.code, 0, "zygote experiment: {o}");
    let from_stdout: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("--json output: {e}\n{o}"));
    let text = fs::read_to_string(out.join("report.json")).expect("report.json");
    let report: Value = serde_json::from_str(&text).expect("report.json parses");
    assert_eq!(report, from_stdout, "--json prints what report.json holds");
    let pids = check_report(&report, 4, &[1, 2, 4]);
    check_charts(&out);
    let table = o.stderr_str();
    assert!(table.contains("zygote/exec") && table.contains("report.json"), "summary table on stderr: {table}");
    assert_no_survivors(&word, &pids);
}

#[test]
fn static_pie_report_charts_and_cleanup() {
    run_and_check(&spie(), "spie", &[]);
}

#[test]
fn dynamic_program_with_a_ready_line() {
    run_and_check(&dynamic(), "dyn", &["--ready-line", "ready"]);
}

#[test]
fn a_program_that_does_not_stay_alive_is_an_error() {
    let out = unique_dir("exp-exits");
    let o = zygote_cli(experiment_args(&out, &["--instances", "2", "--step", "1"], &spie(), &["report"]));
    assert_eq!(o.code, 1, "{o}");
    let err = o.stderr_str();
    assert!(err.contains("exited with status 0 before it was measured") && err.contains("stay alive"), "{err}");
    assert!(!out.join("report.json").exists(), "no report for a failed run");
}

/// Start `zygote experiment` with stderr piped; the child and its stderr lines.
fn start(out: &Path, flags: &[&str], prog: &Path, word: &str) -> (StdChildGuard, Lines) {
    let mut cmd = Command::new(zygote_bin());
    cmd.args(experiment_args(out, flags, prog, &["pause", word]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start zygote experiment");
    let lines = Lines::new(child.stderr.take().expect("stderr piped"));
    (StdChildGuard(Some(child)), lines)
}

/// Wait for an instance (a child of `pid` running with `word`); its pids.
fn first_instances(pid: i32, word: &str) -> Vec<i32> {
    eventually("an instance started", DEADLINE, || {
        let mine: Vec<i32> =
            children_of(pid).into_iter().map(|(p, _)| p).filter(|p| processes_with(word).contains(p)).collect();
        if mine.is_empty() { Err(format!("children so far: {:?}", children_of(pid))) } else { Ok(mine) }
    })
}

/// Wait for the experiment to exit; its shell-style status.
fn exit_code(guard: &mut StdChildGuard, limit: Duration) -> i32 {
    let c = guard.0.as_mut().expect("child");
    let start = Instant::now();
    loop {
        if let Some(st) = c.try_wait().expect("try_wait") {
            guard.0 = None;
            return std_shell_code(st);
        }
        assert!(start.elapsed() < limit, "zygote experiment did not exit within {limit:?} of the signal");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigint_during_the_exec_phase_stops_every_instance() {
    let out = unique_dir("exp-sigint");
    let word = marker("sigint");
    // A long settle: the run would take minutes; the signal must end it at once.
    let flags = ["--instances", "40", "--step", "10", "--settle-ms", "60000"];
    let (mut guard, mut lines) = start(&out, &flags, &spie(), &word);
    let pid = guard.0.as_ref().expect("child").id() as i32;
    let seen = first_instances(pid, &word);
    kill_pid(pid, libc::SIGINT).expect("SIGINT");
    assert_eq!(exit_code(&mut guard, Duration::from_secs(30)), 128 + libc::SIGINT);
    assert!(lines.eof_within(DEADLINE), "stderr reaches EOF");
    let err = lines.seen.join("\n");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
    assert_no_survivors(&word, &seen);
    assert!(!out.join("report.json").exists(), "no report for an interrupted run");
}

#[test]
fn sigterm_during_the_zygote_phase_stops_every_instance() {
    let out = unique_dir("exp-sigterm");
    let word = marker("sigterm");
    let flags = ["--instances", "3", "--step", "1", "--settle-ms", "1500"];
    let (mut guard, mut lines) = start(&out, &flags, &spie(), &word);
    let pid = guard.0.as_ref().expect("child").id() as i32;
    // The exec phase (three steps of 1.5 s) ends, its instances are stopped, then:
    loop {
        match lines.next(DEADLINE) {
            Some(l) if l.contains("zygote experiment: zygote: starting") => break,
            Some(_) => {}
            None => panic!("zygote experiment ended before the zygote phase: {:?}", lines.seen),
        }
    }
    let seen = first_instances(pid, &word);
    kill_pid(pid, libc::SIGTERM).expect("SIGTERM");
    assert_eq!(exit_code(&mut guard, Duration::from_secs(30)), 128 + libc::SIGTERM);
    assert!(lines.eof_within(DEADLINE), "stderr reaches EOF");
    let err = lines.seen.join("\n");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert_no_survivors(&word, &seen);
}
