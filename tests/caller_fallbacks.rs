//! When the thin exec client does not get an image it execs the program
//! itself, with the same argv and environment, so the outcome is a direct
//! exec's (stdout, stderr, status), whatever the reason:
//!
//! - no daemon (no socket file, a stale socket, a file that is no socket);
//! - a daemon that does not answer (stopped: the client's timeout) or is
//!   killed while the client waits for its answer;
//! - set-user-ID, set-group-ID and file-capability programs (the daemon
//!   says exec, and the kernel gives exactly execve's privileges);
//! - a program the daemon refuses to image (a shared library with an entry
//!   point);
//! - a personality that changes the layout (`setarch -R`);
//! - a cache miss (exec now; the image is built in the background and the
//!   next run is served).
//!
//! With `ZYGOTE_EXEC_DEBUG=1` the client says why on stderr, first; the
//! tests check that line and compare the rest with a direct exec.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Through the client by full path, with `-p`, and through a masquerade
/// link (see caller_side.rs `pair`), each with the direct exec it must equal.
fn ways(s: &Scratch, prog: &Path, args: &[&str], env: &Env) -> Vec<(&'static str, Command, Command)> {
    let p = prog.to_str().expect("utf-8");
    let name = prog.file_name().and_then(|n| n.to_str()).expect("name");
    fn cat<'a>(first: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
        [first, args].concat()
    }
    let mut dash_direct = command(prog, args, env);
    dash_direct.arg0("argv0-given");
    vec![
        ("full path", command(s.client(), &cat(&[p], args), env), command(prog, args, env)),
        ("-p", command(s.client(), &cat(&["-p", p, "argv0-given"], args), env), dash_direct),
        ("masquerade", command(name, args, env), command(prog, args, env)),
    ]
}

/// A scratch with `linkage`'s caller_info in it under its name, a link for
/// it, and an environment naming the scratch's socket.
fn setup(linkage: Linkage) -> (Scratch, PathBuf, Env) {
    let s = Scratch::new();
    let prog = s.copy(&caller_info(linkage), linkage.name(), 0o755);
    let bin = s.install_links(&[linkage.name()]);
    let env = Env::new(&s.socket(), &format!("{}:{}:/usr/bin:/bin", bin.display(), s.prog_dir().display()));
    (s, prog, env)
}

const ARGS: [&str; 4] = ["one", "two words", "err=on stderr", "exit=5"];

/// For every way of running `prog`: the client says `why` and the rest of
/// the outcome is the direct exec's.
fn all_exec_instead(s: &Scratch, prog: &Path, env: &Env, why: &str, context: &str) {
    for (way, mut via, mut direct) in ways(s, prog, &ARGS, env) {
        let direct = run_command(&mut direct);
        assert_eq!(direct.code, 5, "{direct}");
        let out = run_exec_instead(&mut via, why);
        assert_same_outcome(&format!("{context}: {} {way}", prog.display()), &out, &direct);
    }
}

/// No daemon: no socket file, a socket file nobody listens on any more,
/// and a path that is not a socket.
#[test]
fn without_a_daemon_the_program_is_execd() {
    for linkage in LINKAGES {
        let (s, prog, env) = setup(linkage);
        all_exec_instead(&s, &prog, &env, WHY_NO_DAEMON, "no socket file");
        let stale = s.path("run/stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
        assert!(stale.exists());
        let env_stale = env.clone().with("ZYGOTE_SOCKET", stale.to_str().expect("utf-8"));
        all_exec_instead(&s, &prog, &env_stale, WHY_NO_DAEMON, "a stale socket");
        let env_file = env.clone().with("ZYGOTE_SOCKET", prog.to_str().expect("utf-8"));
        all_exec_instead(&s, &prog, &env_file, WHY_NO_DAEMON, "not a socket");
    }
}

/// Continues a stopped process on drop (a daemon a failing test left
/// stopped would not stop on SIGTERM).
struct ContinueOnDrop(i32);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        let _ = kill_pid(self.0, libc::SIGCONT);
    }
}

fn wait_state(pid: i32, want: char) {
    eventually(&format!("process {pid} in state {want}"), SETTLE, || match proc_stat(pid) {
        Some((st, _)) if st == want => Ok(()),
        other => Err(format!("{other:?}")),
    });
}

/// A daemon that accepts no connection (stopped with SIGSTOP): the client
/// gives up after its timeout and execs, for images the daemon has cached.
/// Once the daemon runs again, the same command is served.
#[test]
fn a_daemon_that_does_not_answer_is_not_waited_for() {
    let (s, prog, env) = setup(Linkage::StaticPie);
    let daemon = s.daemon(serde_json::json!({}));
    run_until_served(&daemon, || command(s.client(), &[prog.to_str().expect("utf-8")], &env));
    daemon.signal(libc::SIGSTOP);
    let cont = ContinueOnDrop(daemon.pid());
    wait_state(daemon.pid(), 'T');
    all_exec_instead(&s, &prog, &env, WHY_NO_ANSWER, "a stopped daemon");
    drop(cont);
    // The connections the clients left in the listen queue are accepted
    // (before any later one) and answered now: wait until they are closed,
    // so that the counters below count only the next run.
    daemon.wait_quiet(1);
    let mut via = command(s.client(), &[prog.to_str().expect("utf-8")], &env);
    let out = run_served(&daemon, &mut via);
    assert_eq!(out.code, 0, "{out}");
}

/// The system call a process is in (the first field of /proc/PID/syscall),
/// if it is in one.
fn syscall_of(pid: i32) -> Option<i64> {
    let text = fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

const SYS_RECVMSG: i64 = 47;

/// A daemon killed (SIGKILL) while the client waits for its answer: the
/// client execs. To kill it at that moment for certain, the daemon is
/// stopped first (it never answers), the client is caught in its recvmsg
/// (/proc/PID/syscall) and stopped there, the daemon is killed, and the
/// client continued; an attempt in which the client gave up before it was
/// caught is repeated.
#[test]
fn a_daemon_killed_while_the_client_waits() {
    let (s, prog, env) = setup(Linkage::Dynamic);
    let mut daemon = s.daemon(serde_json::json!({}));
    run_until_served(&daemon, || command(s.client(), &[prog.to_str().expect("utf-8")], &env));
    let direct = run_command(&mut command(&prog, &ARGS, &env));
    daemon.signal(libc::SIGSTOP);
    let cont = ContinueOnDrop(daemon.pid());
    wait_state(daemon.pid(), 'T');
    let mut attempts = 0;
    let mut client = loop {
        attempts += 1;
        assert!(attempts <= 20, "the client was never caught waiting for the daemon's answer");
        let mut via = command(s.client(), &[&[prog.to_str().expect("utf-8")][..], &ARGS].concat(), &env);
        via.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let child = StdChildGuard(Some(via.spawn().expect("spawn the client")));
        let pid = child.0.as_ref().expect("child").id() as i32;
        let start = Instant::now();
        while syscall_of(pid) != Some(SYS_RECVMSG) && start.elapsed() < Duration::from_secs(2) && pid_running(pid) {
            std::hint::spin_loop();
        }
        if kill_pid(pid, libc::SIGSTOP).is_err() {
            continue;
        }
        eventually("the client stopped", SETTLE, || match proc_stat(pid) {
            Some(('T', _)) => Ok(()),
            Some(('Z', _)) | None => Ok(()),
            other => Err(format!("{other:?}")),
        });
        if proc_stat(pid).is_some_and(|(st, _)| st == 'T') && syscall_of(pid) == Some(SYS_RECVMSG) {
            break child;
        }
        let _ = kill_pid(pid, libc::SIGCONT);
        drop(child);
    };
    let pid = client.0.as_ref().expect("child").id() as i32;
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(SETTLE);
    // (Reaped: its pid may be another process's now.)
    std::mem::forget(cont);
    kill_pid(pid, libc::SIGCONT).expect("continue the client");
    let c = client.0.take().expect("child");
    let out = c.wait_with_output().expect("wait for the client");
    let out = Outcome { code: std_shell_code(out.status), stdout: out.stdout, stderr: out.stderr };
    let (debug, rest) = split_debug(&out);
    assert_eq!(debug, [format!("{EXEC_INSTEAD}{WHY_NO_ANSWER}")], "{out}");
    assert_same_outcome("the daemon killed while the client waited", &rest, &direct);
}

/// Set-user-ID, set-group-ID and file-capability programs, run by uid
/// 65534 through the client: the daemon says exec (its `exec` counter
/// grows), and the program has exactly the ids, AT_SECURE and capabilities
/// a direct execve gives it.
#[test]
fn set_id_and_file_capability_programs_get_execves_privileges() {
    let s = Scratch::new();
    let daemon = s.daemon(serde_json::json!({}));
    let owner = 4321;
    let mut names = Vec::new();
    for linkage in [Linkage::StaticPie, Linkage::Dynamic] {
        for (kind, mode) in [("suid", 0o4755), ("sgid", 0o2755), ("fcap", 0o755)] {
            let name = format!("{kind}-{}", linkage.name());
            let p = s.copy(&caller_info(linkage), &name, 0o755);
            if kind == "fcap" {
                run_tool(Command::new("setcap").arg("cap_net_raw+ep").arg(&p));
            } else {
                std::os::unix::fs::chown(&p, Some(owner), Some(owner)).expect("chown");
                fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).expect("chmod");
            }
            names.push((kind, name));
        }
    }
    let bin = s.install_links(&names.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>());
    let env = Env::new(&s.socket(), &format!("{}:{}:/usr/bin:/bin", bin.display(), s.prog_dir().display()));
    for (kind, name) in &names {
        let prog = s.prog_dir().join(name);
        for (way, mut via, mut direct) in ways(&s, &prog, &[], &env) {
            for c in [&mut via, &mut direct] {
                c.uid(NOBODY).gid(NOBODY);
            }
            let direct = run_command(&mut direct);
            let text = direct.stdout_str();
            let want = match *kind {
                "suid" => format!("uid {NOBODY} euid {owner} gid {NOBODY} egid {NOBODY}"),
                "sgid" => format!("uid {NOBODY} euid {NOBODY} gid {NOBODY} egid {owner}"),
                _ => format!("uid {NOBODY} euid {NOBODY} gid {NOBODY} egid {NOBODY}"),
            };
            assert!(text.contains(&want) && text.contains("secure 1\n"), "{name}, direct: {direct}");
            let before = requests(&daemon);
            let out = run_exec_instead(&mut via, WHY_EXEC);
            let after = requests(&daemon);
            assert_eq!(after.exec, before.exec + 1, "{name} {way}: {before:?} -> {after:?}");
            assert_eq!(after.served, before.served, "{name} {way}: {before:?} -> {after:?}");
            assert_same_outcome(&format!("{name} {way} as uid {NOBODY}"), &out, &direct);
        }
    }
}

/// A shared library with an entry point (which the kernel runs, and zygote
/// does not image): the first run misses and the daemon's build refuses
/// it; from then on the daemon says exec, without building again. Every
/// run equals a direct exec (relocation not applied, status 4).
#[test]
fn a_program_the_daemon_refuses_is_execd() {
    let s = Scratch::new();
    let daemon = s.daemon(serde_json::json!({}));
    let lib = cc_cached(
        &c_src("caller_shared_entry.c"),
        "caller-shared-entry.so",
        &["-O1", "-shared", "-fPIC", "-nostdlib", "-Wl,-e,zt_entry"],
        &[],
    );
    let prog = s.copy(&lib, "zt-shared", 0o755);
    let bin = s.install_links(&["zt-shared"]);
    let env = Env::new(&s.socket(), &format!("{}:{}:/usr/bin:/bin", bin.display(), s.prog_dir().display()));
    let direct = run_command(&mut command(&prog, &[], &env));
    assert_eq!((direct.code, direct.stdout_str().as_str()), (4, "symbol relocation not applied\n"), "{direct}");
    let first = run_exec_instead(&mut command(s.client(), &[prog.to_str().expect("utf-8")], &env), WHY_MISS);
    assert_same_outcome("the first run", &first, &direct);
    let start = Instant::now();
    loop {
        let out = run_command(&mut command(s.client(), &[prog.to_str().expect("utf-8")], &env));
        let (debug, rest) = split_debug(&out);
        assert_same_outcome("a run while the daemon builds", &rest, &direct);
        if debug == [format!("{EXEC_INSTEAD}{WHY_EXEC}")] {
            break;
        }
        assert_eq!(debug, [format!("{EXEC_INSTEAD}{WHY_MISS}")], "{out}");
        assert!(
            start.elapsed() < SETTLE,
            "the daemon never said exec: {:?}\n{}",
            requests(&daemon),
            daemon.log_tail(2000)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = requests(&daemon);
    for (way, mut via, mut direct) in ways(&s, &prog, &[], &env) {
        let direct = run_command(&mut direct);
        let out = run_exec_instead(&mut via, WHY_EXEC);
        assert_same_outcome(&format!("refused, {way}"), &out, &direct);
    }
    let after = requests(&daemon);
    assert_eq!((after.exec, after.builds, after.served), (before.exec + 3, before.builds, 0), "{after:?}");
}

/// A client under another personality (`setarch -R`: no address
/// randomisation) would be laid out otherwise than the daemon's images:
/// the daemon says exec.
#[test]
fn another_personality_is_execd() {
    let (s, prog, env) = setup(Linkage::StaticPie);
    let daemon = s.daemon(serde_json::json!({}));
    run_until_served(&daemon, || command(s.client(), &[prog.to_str().expect("utf-8")], &env));
    for (way, via, direct) in ways(&s, &prog, &ARGS, &env) {
        let setarch = |c: &Command| {
            let args: Vec<&std::ffi::OsStr> = c.get_args().collect();
            let mut w = command("setarch", &[], &env);
            w.args(["x86_64", "-R"]).arg(c.get_program()).args(args);
            w
        };
        // (-p sets argv[0], which setarch cannot: compare without it.)
        let direct = if way == "-p" { command(&prog, &ARGS, &env) } else { direct };
        let direct = run_command(&mut setarch(&direct));
        let out = run_exec_instead(&mut setarch(&via), WHY_EXEC);
        let out = if way == "-p" {
            let fixed = out.stdout_str().replace("argv[0] argv0-given\n", &format!("argv[0] {}\n", prog.display()));
            Outcome { stdout: fixed.into_bytes(), ..out }
        } else {
            out
        };
        assert_same_outcome(&format!("setarch -R, {way}"), &out, &direct);
    }
}

/// A cache miss: the first run execs at once (saying so), the daemon counts
/// a miss and starts a build; once the build is in the cache the next run
/// is served. Both equal a direct exec.
#[test]
fn a_cache_miss_execs_now_and_the_next_run_is_served() {
    let s = Scratch::new();
    let daemon = s.daemon(serde_json::json!({}));
    s.install_links(&[]);
    for (i, linkage) in LINKAGES.into_iter().enumerate() {
        let prog = s.copy(&caller_info(linkage), linkage.name(), 0o755);
        let env = Env::new(&s.socket(), "/usr/bin:/bin");
        let direct = run_command(&mut command(&prog, &ARGS, &env));
        let before = daemon.stats();
        let via = || command(s.client(), &[&[prog.to_str().expect("utf-8")][..], &ARGS].concat(), &env);
        let first = run_exec_instead(&mut via(), WHY_MISS);
        assert_same_outcome(&format!("{linkage:?}: the first run"), &first, &direct);
        let r = requests(&daemon);
        let n = i as u64;
        assert_eq!((r.served, r.misses, r.builds), (2 * n, before.image_requests.misses + 1, n + 1), "{r:?}");
        eventually("the image built in the background is cached", SETTLE, || {
            let c = daemon.stats().cache;
            if c.entries > before.cache.entries { Ok(()) } else { Err(format!("{c:?}")) }
        });
        let out = run_served(&daemon, &mut via());
        assert_same_outcome(&format!("{linkage:?}: the next run"), &out, &direct);
        let out = run_served(&daemon, &mut via());
        assert_same_outcome(&format!("{linkage:?}: the run after"), &out, &direct);
        assert_eq!(requests(&daemon).misses, before.image_requests.misses + 1);
    }
}
