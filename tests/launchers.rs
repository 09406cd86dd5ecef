//! Pre-started launchers: a spawn through a launcher (exec'd before the
//! request, the image mapped ahead, the stack built by the stub) gives the
//! program exactly what an exec'd stub and a direct exec give it; signals
//! sent to an idle launcher never reach the program; a dead launcher is
//! replaced; launchers end with their image or their zygote; requests a
//! launcher cannot take (huge environment, fd targets past its control fd)
//! exec the stub instead.
//!
//! Program: `tests/c/launched.c` (argv, environ, cwd, fds, AT_EXECFN,
//! AT_RANDOM, /proc/self/cmdline and environ, signal mask and pending
//! signals), as a static PIE and as a dynamically linked program.

mod common;

use common::*;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use zygote_core::CacheConfig;
use zygote_linux::{SpawnRequest, Zygote};

fn static_prog() -> PathBuf {
    static_pie("launched.c")
}

fn dynamic_prog() -> PathBuf {
    cc_cached(&c_src("launched.c"), "launched.dyn", &["-O1"], &[])
}

fn zygote_with(prestarted: usize) -> Zygote {
    let z = new_zygote();
    z.set_prestarted(prestarted);
    z
}

/// A request for `prog` with `args`, exactly `env`, and `cwd`.
fn request(prog: &Path, args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> SpawnRequest {
    let mut req = SpawnRequest::new(prog.as_os_str()).args(args).env_clear();
    for (k, v) in env {
        req = req.env(k, v);
    }
    if let Some(d) = cwd {
        req = req.cwd(d);
    }
    req
}

/// The same run as a direct exec (stdin /dev/null, stdout and stderr piped).
fn direct(prog: &Path, args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Outcome {
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args).env_clear().envs(env.iter().copied());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    run_command(&mut cmd)
}

/// `o` without the lines for fds 3 and up: a direct run (`Command`) also
/// inherits whatever fds other tests of this process hold open without
/// CLOEXEC at that moment.
fn stdio_fds_only(o: &Outcome) -> Outcome {
    let text = o.stdout_str();
    let kept: String = text
        .split_inclusive('\n')
        .filter(|l| {
            let fd = l.strip_prefix("fd ").and_then(|r| r.split(' ').next()).and_then(|n| n.parse::<i32>().ok());
            fd.is_none_or(|fd| fd < 3)
        })
        .collect();
    Outcome { stdout: kept.into_bytes(), ..o.clone() }
}

/// Spawn through `z` and check the spawn went through a launcher (or not).
fn run_counted(z: &Zygote, req: SpawnRequest, via_launcher: bool, context: &str) -> Outcome {
    let before = z.prestarted_spawns();
    let (_, out) = lib_run(z, req);
    let used = z.prestarted_spawns() - before;
    assert_eq!(used, u64::from(via_launcher), "{context}: spawns through a launcher (want {via_launcher})");
    out
}

#[test]
fn launched_programs_match_exec_and_direct_runs() {
    let with = zygote_with(4);
    let without = zygote_with(0);
    let dir = unique_dir("launched-cwd");
    let long = "e".repeat(3000);
    let cases: Vec<(ArgsEnv<'_>, Option<&Path>)> = vec![
        ((vec![], vec![]), None),
        ((vec!["one", "two words", ""], vec![("X", "1"), ("PATH", "/usr/bin:/bin")]), Some(&dir)),
        ((vec!["--flag=ünï"], vec![("A", "b=c"), ("LONG", &long), ("EMPTY", "")]), Some(Path::new("/"))),
    ];
    for prog in [static_prog(), dynamic_prog()] {
        for (i, ((args, env), cwd)) in cases.iter().enumerate() {
            // In the order `Command` passes them.
            let env = &sorted_env(env);
            let context = format!("{} case {i}", prog.display());
            let want = stdio_fds_only(&direct(&prog, args, env, *cwd));
            assert!(want.stdout_str().contains("failures=0\n"), "{context}: direct run fails its checks:\n{want}");
            // The first spawn of an image in a zygote execs the stub and warms
            // a launcher up; the next ones go through launchers.
            let first = run_counted(&with, request(&prog, args, env, *cwd), i > 0, &context);
            let second = run_counted(&with, request(&prog, args, env, *cwd), true, &context);
            let exec = run_counted(&without, request(&prog, args, env, *cwd), false, &context);
            for (what, got) in [("first", &first), ("through a launcher", &second), ("exec'd stub", &exec)] {
                assert_eq!(
                    got, &want,
                    "{context}: {what} differs from a direct run\n=== zygote ===\n{got}\n=== direct ===\n{want}"
                );
            }
        }
    }
    assert!(with.idle_launchers() >= 1, "a launcher waits for the next spawn");
}

/// A relative working directory means relative to the zygote's, as for an
/// exec'd child, not to where the launcher was started.
#[test]
fn relative_cwd_is_the_zygotes() {
    let z = zygote_with(2);
    let prog = static_prog();
    let here = std::env::current_dir().expect("cwd");
    let want = format!("cwd=[{}]\n", here.join("tests").display());
    for round in 0..2 {
        let out = run_counted(&z, request(&prog, &[], &[], Some(Path::new("tests"))), round == 1, "relative cwd");
        assert!(out.stdout_str().contains(&want), "round {round}: want {want:?} in\n{out}");
    }
    // A directory that does not exist is the request's error (127, like a
    // failed `cd`), naming the directory.
    let err = z.spawn(request(&prog, &[], &[], Some(Path::new("no/such/dir")))).expect_err("missing cwd");
    assert!(matches!(err, zygote_linux::SpawnError::Cwd { .. }), "{err:?}");
    assert!(err.to_string().contains("no/such/dir"), "{err}");
    assert_eq!(err.exit_code(), 127, "{err}");
}

/// /proc/PID/cmdline, environ, comm and cwd of a running launched process,
/// read from outside, are the request's.
#[test]
fn proc_shows_the_request() {
    let z = zygote_with(2);
    let prog = dynamic_prog();
    let env = [("K", "v"), ("Z", "last")];
    let dir = unique_dir("launched-proc");
    let _ = run_counted(&z, request(&prog, &[], &env, None), false, "warm-up spawn");
    let (stdin_r, stdin_w) = pipe();
    let (out_r, out_w) = pipe();
    let req = request(&prog, &["wait", "x y"], &env, Some(&dir))
        .name("zt-launched")
        .fd(stdin_r, 0)
        .fd(out_w, 1)
        .fd(dev_null(), 2);
    let mut guard = ChildGuard::new(z.spawn(req).expect("spawn"));
    // It has printed its report (the fd list ends with stderr) and waits on stdin.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::from(out_r)));
    let mut seen = Vec::new();
    while seen.last().is_none_or(|l: &String| l != "fd 2 chr") {
        match lines.next() {
            Some(Ok(l)) => seen.push(l),
            other => panic!("the program stopped before its fd list ({other:?}); so far {seen:?}"),
        }
    }
    let pid = guard.pid();
    let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_else(|e| panic!("/proc/{pid}/{f}: {e}"));
    let mut cmdline = prog.as_os_str().to_os_string().into_vec();
    cmdline.extend_from_slice(b"\0wait\0x y\0");
    assert_eq!(read("cmdline"), cmdline);
    assert_eq!(read("environ"), b"K=v\0Z=last\0");
    assert_eq!(read("comm"), b"zt-launched\n");
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd link"), dir);
    assert_eq!(z.prestarted_spawns(), 1, "the live process came from a launcher");
    drop(stdin_w);
    assert!(guard.wait().success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(rest, ["failures=0"], "after {seen:?}");
}

/// Signals sent to an idle launcher (blocked while it waits) are dropped
/// when it becomes the program: they were sent before the program existed.
#[test]
fn signals_sent_to_an_idle_launcher_do_not_reach_the_program() {
    let z = zygote_with(1);
    let prog = static_prog();
    let _ = run_counted(&z, request(&prog, &[], &[], None), false, "warm-up spawn");
    let pids = z.launcher_pids();
    assert_eq!(pids.len(), 1, "one idle launcher");
    for sig in [libc::SIGUSR1, libc::SIGTERM, libc::SIGINT] {
        kill_pid(pids[0], sig).expect("signal the launcher");
    }
    assert!(pid_running(pids[0]), "blocked signals leave the launcher waiting");
    let out = run_counted(&z, request(&prog, &[], &[], None), true, "after signals");
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout_str().contains("failures=0\n"), "{out}");
}

/// A launcher killed while idle is reaped and replaced; the spawn that finds
/// it dead execs the stub instead.
#[test]
fn a_killed_launcher_is_replaced() {
    let z = zygote_with(1);
    let prog = static_prog();
    let _ = run_counted(&z, request(&prog, &[], &[], None), false, "warm-up spawn");
    let dead = z.launcher_pids()[0];
    kill_pid(dead, libc::SIGKILL).expect("kill the launcher");
    eventually("the launcher dies", SETTLE, || match proc_stat(dead) {
        Some(('Z', _)) | None => Ok(()),
        other => Err(format!("state {other:?}")),
    });
    let out = run_counted(&z, request(&prog, &["after"], &[], None), false, "dead launcher");
    assert_eq!(out.code, 0, "{out}");
    let me = std::process::id() as i32;
    assert!(!children_of(me).iter().any(|&(p, _)| p == dead), "the dead launcher {dead} was not reaped");
    let again = run_counted(&z, request(&prog, &["again"], &[], None), true, "replacement launcher");
    assert_eq!(again.code, 0, "{again}");
}

/// Launchers end with their zygote, when the pool shrinks, and when their
/// image leaves the cache (their mappings would keep its memory alive).
#[test]
fn launchers_end_with_their_image_and_zygote() {
    let gone = |pids: &[i32], what: &str| {
        for &p in pids {
            eventually(&format!("launcher {p} gone ({what})"), SETTLE, || match proc_stat(p) {
                None => Ok(()),
                Some(s) => Err(format!("still there: {s:?}")),
            });
        }
    };
    let (a, b) = (static_prog(), dynamic_prog());
    let z = Zygote::new(CacheConfig { max_entries: 1, max_bytes: 1 << 30 }).expect("zygote");
    z.set_prestarted(4);
    let _ = run_counted(&z, request(&a, &[], &[], None), false, "image a");
    let of_a = z.launcher_pids();
    assert_eq!(of_a.len(), 1);
    // b evicts a (one cache entry): a's launcher goes, b's comes.
    let _ = run_counted(&z, request(&b, &[], &[], None), false, "image b");
    gone(&of_a, "image evicted");
    let of_b = z.launcher_pids();
    assert_eq!(of_b.len(), 1);
    z.set_prestarted(0);
    gone(&of_b, "pool set to 0");
    assert!(z.launcher_pids().is_empty());
    z.set_prestarted(4);
    let _ = run_counted(&z, request(&b, &[], &[], None), false, "pool back");
    let last = z.launcher_pids();
    assert_eq!(last.len(), 1);
    drop(z);
    gone(&last, "zygote dropped");
}

/// Requests a launcher cannot take run by an exec'd stub, correctly.
#[test]
fn requests_beyond_a_launcher_exec_the_stub() {
    let z = zygote_with(2);
    let prog = static_prog();
    let _ = run_counted(&z, request(&prog, &[], &[], None), false, "warm-up spawn");
    // An environment larger than a launcher takes.
    // (Each entry below the kernel's 128 KiB limit for one string.)
    let big = "v".repeat(zygote_linux::spawn::MAX_PRESTART_ARGS / 4);
    let env = [("B1", big.as_str()), ("B2", big.as_str()), ("B3", big.as_str()), ("B4", big.as_str())];
    let env = sorted_env(&env);
    let out = run_counted(&z, request(&prog, &[], &env, None), false, "huge environment");
    assert_eq!(out, stdio_fds_only(&direct(&prog, &[], &env, None)), "huge environment");
    // An fd target above the launcher's control socket.
    let req = request(&prog, &[], &[], None).fd(dev_null(), 2000);
    let out = run_counted(&z, req, false, "fd 2000");
    assert!(out.stdout_str().contains("fd 2000 chr\n"), "{out}");
    // The launcher is still there for an ordinary request.
    let out = run_counted(&z, request(&prog, &["plain"], &[], None), true, "plain");
    assert_eq!(out.code, 0, "{out}");
}

/// A launcher that takes a spawn first forks its replacement (the spawner's
/// child, already warm), so the next spawn of the image needs no exec: every
/// spawn after the first goes through a launcher, each a different process,
/// and no process is left behind.
#[test]
fn a_launcher_forks_its_replacement() {
    let z = zygote_with(1);
    let prog = dynamic_prog();
    let me = std::process::id() as i32;
    let _ = run_counted(&z, request(&prog, &[], &[], None), false, "first spawn");
    let mut seen = Vec::new();
    for round in 0..5 {
        let pids = z.launcher_pids();
        assert_eq!(pids.len(), 1, "round {round}: one idle launcher");
        let pid = pids[0];
        assert!(!seen.contains(&pid), "round {round}: launcher {pid} again");
        seen.push(pid);
        assert_eq!(proc_stat(pid).map(|s| s.1), Some(me), "round {round}: launcher {pid} is our child");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("launcher cmdline");
        assert!(cmdline.starts_with(b"zygote-launcher\0--wait-for-plan\0"), "{cmdline:?}");
        let out = run_counted(&z, request(&prog, &["round"], &[], None), true, &format!("round {round}"));
        assert_eq!(out.code, 0, "{out}");
    }
    let left = z.launcher_pids();
    drop(z);
    for p in seen.iter().chain(&left) {
        eventually(&format!("process {p} gone"), SETTLE, || match proc_stat(*p) {
            None => Ok(()),
            Some(s) => Err(format!("still there: {s:?}")),
        });
    }
}
