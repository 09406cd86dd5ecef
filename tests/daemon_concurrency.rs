//! Many clients at once: 16 library clients x 50 spawns of five distinct
//! static and static-PIE programs (glibc and musl), plus `zygote spawn` CLI
//! runs alongside. Every output and status must be right, and the daemon must
//! have built exactly one image per distinct binary although the first
//! requests for each raced.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;

use common::*;

const THREADS: usize = 16;
const SPAWNS_PER_THREAD: usize = 50;
const CLI_THREADS: usize = 3;
const CLI_RUNS_PER_THREAD: usize = 4;

/// The distinct binaries under test.
struct Programs {
    echo_glibc: PathBuf,
    echo_musl: PathBuf,
    exit_static: PathBuf,
    cat_musl: PathBuf,
    signal: PathBuf,
}

impl Programs {
    fn build() -> Programs {
        let p = Programs {
            echo_glibc: static_pie("daemon_echo.c"),
            echo_musl: musl_static_pie(&c_src("daemon_echo.c"), "daemon_echo.musl-spie"),
            exit_static: cc_cached(
                &c_src("daemon_exit.c"),
                "daemon_exit.glibc-static",
                &["-static", "-no-pie", "-O2"],
                &[],
            ),
            cat_musl: musl_static_pie(&c_src("daemon_cat.c"), "daemon_cat.musl-spie"),
            signal: static_pie("signal.c"),
        };
        for prog in p.all() {
            assert!(!has_interp(prog), "{} is not static", prog.display());
        }
        let exit_header = readelf(&["-h"], &p.exit_static);
        assert!(exit_header.contains("EXEC"), "daemon_exit.glibc-static should be ET_EXEC:\n{exit_header}");
        p
    }

    fn all(&self) -> [&Path; 5] {
        [&self.echo_glibc, &self.echo_musl, &self.exit_static, &self.cat_musl, &self.signal]
    }
}

/// One spawn: program, arguments, stdin, and what it must produce.
struct Job {
    prog: PathBuf,
    args: Vec<String>,
    input: Vec<u8>,
    want: Outcome,
}

fn echo_want(args: &[String]) -> Outcome {
    let mut out = format!("argc={}\n", args.len() + 1);
    for (i, a) in args.iter().enumerate() {
        out.push_str(&format!("[{}]={a}\n", i + 1));
    }
    Outcome { code: 0, stdout: out.into_bytes(), stderr: Vec::new() }
}

fn cat_want(tag: &str, input: &[u8]) -> Outcome {
    let text = String::from_utf8(input.to_vec()).expect("utf-8 input");
    let mut out = String::new();
    let mut lines = 0;
    for l in text.split_inclusive('\n') {
        out.push_str(&format!("{tag}:{l}"));
        if !l.ends_with('\n') {
            out.push('\n');
        }
        lines += 1;
    }
    Outcome {
        code: lines % 256,
        stdout: out.into_bytes(),
        stderr: format!("{tag}: {lines} lines, {} bytes\n", input.len()).into_bytes(),
    }
}

/// The `n`-th job of client `t` (a deterministic mix of all programs).
fn job(p: &Programs, t: usize, n: usize) -> Job {
    match (t + n) % 5 {
        0 => {
            let args = vec![format!("t{t}"), format!("n{n}"), "two words".to_string(), "ünïcödé".to_string()];
            Job { prog: p.echo_glibc.clone(), want: echo_want(&args), args, input: Vec::new() }
        }
        1 => {
            let code = (t * SPAWNS_PER_THREAD + n) % 256;
            Job {
                prog: p.exit_static.clone(),
                args: vec![code.to_string()],
                input: Vec::new(),
                want: Outcome {
                    code: code as i32,
                    stdout: format!("exit {code}\n").into_bytes(),
                    stderr: format!("bye {code}\n").into_bytes(),
                },
            }
        }
        2 => {
            let tag = format!("c{t}.{n}");
            let mut input: String = (0..n % 7).map(|i| format!("line {i} of {t}/{n}\n")).collect();
            if n.is_multiple_of(3) {
                input.push_str("no newline at the end");
            }
            Job {
                prog: p.cat_musl.clone(),
                want: cat_want(&tag, input.as_bytes()),
                args: vec![tag],
                input: input.into(),
            }
        }
        3 => {
            let args = vec![format!("musl-{t}-{n}"), String::new(), "x".repeat(n * 10)];
            Job { prog: p.echo_musl.clone(), want: echo_want(&args), args, input: Vec::new() }
        }
        _ => {
            let (how, sig) = if n.is_multiple_of(2) { ("kill", libc::SIGKILL) } else { ("term", libc::SIGTERM) };
            Job {
                prog: p.signal.clone(),
                args: vec![how.to_string()],
                input: Vec::new(),
                want: Outcome { code: 128 + sig, stdout: format!("dying by {how}\n").into_bytes(), stderr: Vec::new() },
            }
        }
    }
}

fn check(what: &str, job: &Job, got: Result<Outcome, String>) -> Option<String> {
    match got {
        Ok(out) if out == job.want => None,
        Ok(out) => Some(format!(
            "{what}: {} {:?}\n=== got ===\n{out}\n=== want ===\n{}",
            job.prog.display(),
            job.args,
            job.want
        )),
        Err(e) => Some(format!("{what}: {} {:?}: {e}", job.prog.display(), job.args)),
    }
}

#[test]
fn sixteen_clients_mixed_programs_one_build_per_binary() {
    let progs = Arc::new(Programs::build());
    // Sanity: the expectations hold for direct runs.
    for t in 0..2 {
        for n in 0..5 {
            let j = job(&progs, t, n);
            let direct = run_command_input(Command::new(&j.prog).args(&j.args), &j.input);
            assert_eq!(
                direct,
                j.want,
                "direct run of {} {:?} does not match the expectation",
                j.prog.display(),
                j.args
            );
        }
    }

    let daemon = Daemon::start(&socket_path("conc"), &[]);
    let before = daemon.stats();
    assert_eq!(before.cache.builds, 0, "fresh daemon has built images already: {before:?}");

    let barrier = Arc::new(Barrier::new(THREADS + CLI_THREADS));
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let progs = progs.clone();
        let barrier = barrier.clone();
        let socket = daemon.socket.clone();
        handles.push(thread::spawn(move || {
            let mut failures = Vec::new();
            // Even clients keep one connection; odd ones connect per spawn.
            let mut conn = (t % 2 == 0).then(|| zygote::service::client::Client::connect(&socket));
            barrier.wait();
            for n in 0..SPAWNS_PER_THREAD {
                let j = job(&progs, t, n);
                let got = match &mut conn {
                    Some(Ok(c)) => {
                        remote_run(c, &j.prog, &j.args.iter().map(String::as_str).collect::<Vec<_>>(), &j.input)
                    }
                    Some(Err(e)) => Err(format!("connect: {e}")),
                    None => match zygote::service::client::Client::connect(&socket) {
                        Ok(mut c) => remote_run(
                            &mut c,
                            &j.prog,
                            &j.args.iter().map(String::as_str).collect::<Vec<_>>(),
                            &j.input,
                        ),
                        Err(e) => Err(format!("connect: {e}")),
                    },
                };
                failures.extend(check(&format!("client {t} spawn {n}"), &j, got));
            }
            failures
        }));
    }
    for t in 0..CLI_THREADS {
        let progs = progs.clone();
        let barrier = barrier.clone();
        let socket = daemon.socket.clone();
        handles.push(thread::spawn(move || {
            let mut failures = Vec::new();
            barrier.wait();
            for n in 0..CLI_RUNS_PER_THREAD {
                let j = job(&progs, 100 + t, n);
                let out = run_command_input(
                    Command::new(zygote_bin())
                        .arg("spawn")
                        .arg("--daemon-side")
                        .arg("--socket")
                        .arg(&socket)
                        .arg("--")
                        .arg(&j.prog)
                        .args(&j.args),
                    &j.input,
                );
                failures.extend(check(&format!("CLI {t} run {n}"), &j, Ok(out)));
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for h in handles {
        failures.extend(h.join().expect("client thread panicked"));
    }
    let total = failures.len();
    failures.truncate(5);
    assert!(
        total == 0,
        "{total} spawns went wrong; the first ones:\n{}\n--- daemon log ---\n{}",
        failures.join("\n"),
        daemon.log_tail(4000)
    );

    daemon.wait_quiet(1);
    let stats = daemon.stats();
    let want_spawns = (THREADS * SPAWNS_PER_THREAD + CLI_THREADS * CLI_RUNS_PER_THREAD) as u64;
    assert_eq!(stats.spawns, want_spawns, "spawns served: {stats:#?}");
    assert_eq!(stats.spawn_errors, 0, "spawn errors: {stats:#?}");
    assert_eq!(
        stats.cache.builds,
        progs.all().len() as u64,
        "exactly one image build per distinct binary ({} binaries): {stats:#?}",
        progs.all().len()
    );
    assert_eq!(stats.cache.entries, progs.all().len() as u64, "{stats:#?}");
    let mut paths: Vec<String> = stats.images.iter().map(|i| i.path.clone()).collect();
    paths.sort();
    let mut want: Vec<String> = progs.all().iter().map(|p| p.display().to_string()).collect();
    want.sort();
    assert_eq!(paths, want, "cached images");
    assert_eq!(
        stats.cache.hits + stats.cache.misses,
        want_spawns,
        "every spawn looked its image up once (hits + misses): {stats:#?}"
    );
}
