//! `zygote stress` with real processes: a storm through a private daemon with cache churn
//! (a static PIE twice with other arguments, another static PIE and a dynamically linked
//! program; two cache entries) passes with no failure and no leak; the same through an
//! external daemon found by its socket (pid from SO_PEERCRED); and a program whose
//! output differs from run to run fails the check and the command.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

struct Programs {
    echo: PathBuf,
    spie: PathBuf,
    dynamic: PathBuf,
}

fn programs() -> Programs {
    let p = Programs {
        echo: static_pie("daemon_echo.c"),
        spie: static_pie("exp_instance.c"),
        dynamic: cc_cached(&c_src("exp_instance.c"), "exp_instance.dyn", &["-O2"], &[]),
    };
    assert!(!has_interp(&p.spie) && !has_interp(&p.echo), "static PIEs");
    assert!(has_interp(&p.dynamic), "{} should be dynamically linked", p.dynamic.display());
    p
}

/// A `--programs` word for a path (escaping what the list syntax would split on).
fn word(p: &Path) -> String {
    let mut s = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, ',' | ' ' | '\t' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

fn list(p: &Programs) -> String {
    format!(
        "{} two words,{} report a b\\,c,{} report dyn,{} report again",
        word(&p.echo),
        word(&p.spie),
        word(&p.dynamic),
        word(&p.spie)
    )
}

fn stress(args: &[&str]) -> (Outcome, Value) {
    let mut cli: Vec<OsString> = vec!["stress".into(), "--json".into()];
    cli.extend(args.iter().map(OsString::from));
    let o = zygote_cli(cli);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("--json output: {e}\n{o}"));
    (o, v)
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} is not an unsigned number in {v}"))
}

/// A passing run: every count as it should be, no leak.
fn check_passed(o: &Outcome, r: &Value, clients: u64, spawns: u64) {
    assert_eq!(o.code, 0, "zygote stress: {o}");
    assert_eq!(r["passed"], true, "{r:#}");
    assert_eq!(u64_of(r, "failures"), 0, "{:#}", r["failure_samples"]);
    assert_eq!(u64_of(r, "rounds"), clients * spawns);
    assert_eq!(u64_of(r, "ok"), clients * spawns);
    assert_eq!(u64_of(r, "warmup_failures"), 0);
    assert!(r["throughput_per_sec"].as_f64().is_some_and(|t| t > 0.0), "{}", r["throughput_per_sec"]);
    let l = &r["latency"];
    let (p50, p99, max) = (l["p50_us"].as_f64(), l["p99_us"].as_f64(), l["max_us"].as_f64());
    assert!(matches!((p50, p99, max), (Some(a), Some(b), Some(c)) if 0.0 < a && a <= b && b <= c), "{l}");

    let leaks = &r["leaks"];
    assert_eq!(leaks["ok"], true, "{leaks:#}");
    assert_eq!(leaks["problems"].as_array().map(Vec::len), Some(0), "{leaks:#}");
    let fin = &leaks["final"];
    assert_eq!(fin["zombies"].as_array().map(Vec::len), Some(0), "zombies: {fin}");
    assert_eq!(u64_of(fin, "live_children"), 0);
    assert!(u64_of(&fin["cache"], "entries") <= u64_of(&fin["cache"], "max_entries"), "{fin}");
    assert!(u64_of(&fin["cache"], "bytes") <= u64_of(&fin["cache"], "max_bytes"), "{fin}");
    assert_eq!(u64_of(fin, "image_memfds"), u64_of(fin, "cached_image_objects"), "{fin}");
    assert!(leaks["fd_growth"].as_i64() <= leaks["allowed_fd_growth"].as_i64(), "{leaks:#}");
    assert!(leaks["memfd_growth"].as_i64() <= leaks["allowed_memfd_growth"].as_i64(), "{leaks:#}");

    let progs = r["programs"].as_array().expect("programs");
    assert_eq!(progs.len(), 4);
    for p in progs {
        assert_eq!(u64_of(p, "failures"), 0, "{p}");
        assert!(u64_of(p, "rounds") > 0, "{p}");
        assert!(p["key"].as_str().is_some_and(|k| k.len() == 64), "{p}");
        assert!(u64_of(p, "image_fds") > u64_of(p, "image_objects"), "an image holds its file too: {p}");
    }
    // The dynamically linked program maps libraries: more fds than a static image.
    assert!(u64_of(&progs[2], "image_fds") > u64_of(&progs[0], "image_fds"), "{progs:?}");
}

#[test]
fn storm_through_a_private_daemon_with_cache_churn() {
    let p = programs();
    let (o, r) = stress(&["--clients", "4", "--spawns", "25", "--cache-entries", "2", "--programs", &list(&p)]);
    check_passed(&o, &r, 4, 25);
    assert_eq!(r["private_daemon"], true);
    assert_eq!(r["daemon_exit"], "exited with status 0", "{r:#}");
    let cache = &r["cache"];
    assert_eq!(u64_of(cache, "max_entries"), 2);
    assert_eq!(cache["churn"], true, "3 images, 2 entries: {cache}");
    assert!(u64_of(cache, "evictions") > 0 && u64_of(cache, "builds") > 0, "the storm churns the cache: {cache}");
    // The private daemon is gone.
    let pid = r["daemon_pid"].as_i64().expect("daemon_pid") as i32;
    assert!(!pid_running(pid), "the private daemon {pid} still runs");
    let table = o.stderr_str();
    assert!(table.contains("PASSED") && table.contains("p99"), "{table}");
}

#[test]
fn storm_through_an_external_daemon() {
    let p = programs();
    let socket = socket_path("stress");
    let daemon = Daemon::start(&socket, &["--cache-entries".as_ref(), "2".as_ref()]);
    let sock = socket.to_string_lossy().into_owned();
    let (o, r) = stress(&["--clients", "3", "--spawns", "10", "--socket", &sock, "--programs", &list(&p)]);
    check_passed(&o, &r, 3, 10);
    assert_eq!(r["private_daemon"], false);
    assert_eq!(r["daemon_pid"].as_i64(), Some(i64::from(daemon.pid())), "SO_PEERCRED names the daemon");
    assert!(r["daemon_exit"].is_null());
    assert!(pid_running(daemon.pid()), "an external daemon is left running");
    daemon.wait_quiet(1);
}

#[test]
fn output_that_differs_from_the_direct_run_fails() {
    let p = programs();
    let programs = format!("{} pid,{} report ok", word(&p.spie), word(&p.echo));
    let (o, r) = stress(&["--clients", "1", "--spawns", "4", "--programs", &programs]);
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(r["passed"], false);
    // Warm-up (1) plus every other storm round (2) ran `pid`.
    assert_eq!(u64_of(&r, "failures"), 3, "{r:#}");
    let samples = r["failure_samples"].as_array().expect("failure_samples");
    assert!(samples.iter().all(|s| s.as_str().is_some_and(|s| s.contains("stdout differs"))), "{samples:?}");
    assert_eq!(r["leaks"]["ok"], true, "failing rounds leak nothing: {:#}", r["leaks"]);
    assert!(o.stderr_str().contains("FAILED"), "{o}");
}

#[test]
fn bad_options_are_refused() {
    let o = zygote_cli(["stress", "--programs", "a,,b"]);
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr_str().contains("entry 2 is empty"), "{o}");
    let o = zygote_cli(["stress", "--programs", "/nonexistent/program"]);
    assert_eq!(o.code, 127, "{o}");
}
