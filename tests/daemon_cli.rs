//! The client commands against a running daemon: `zygote spawn` behaves like
//! running the program directly (in pipelines, with its exit status or
//! 128+N, relaying signals), `zygote stats [--json]`, `preload` and `evict`,
//! and a clear message when no daemon runs.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

fn cat() -> PathBuf {
    static_pie("daemon_cat.c")
}

/// `zygote spawn --socket S -- ARGS...` as a command prefix.
fn spawn_prefix(daemon: &Daemon) -> Vec<String> {
    vec![
        zygote_bin().to_string(),
        "spawn".into(),
        "--daemon-side".into(),
        "--socket".into(),
        daemon.socket.display().to_string(),
        "--".into(),
    ]
}

/// Run `script` in bash with `$@` = `cmd`; the script decides the status.
fn bash(script: &str, cmd: &[String]) -> Outcome {
    run_command(Command::new("bash").arg("-c").arg(script).arg("bash").args(cmd))
}

/// `zygote ARGS` with `--socket` of `daemon` added after the subcommand.
fn zyg(daemon: &Daemon, sub: &str, args: &[&OsStr]) -> Outcome {
    run_command(Command::new(zygote_bin()).arg(sub).arg("--socket").arg(&daemon.socket).args(args))
}

#[test]
fn spawn_in_a_pipeline_is_like_a_direct_run() {
    let daemon = Daemon::start(&socket_path("pipe"), &[]);
    let prog = cat().display().to_string();
    let scripts = [
        // The issue's example; the status is the program's (PIPESTATUS[1]).
        r#"printf "a\nb\n" | "$@" x | tr a-z A-Z; exit ${PIPESTATUS[1]}"#,
        // More than a pipe buffer each way.
        r#"seq 1 40000 | "$@" big | tail -n 2; exit ${PIPESTATUS[1]}"#,
        // stdin from /dev/null, stdout to a file that is read back.
        r#"f=$(mktemp); "$@" empty </dev/null >"$f"; st=$?; cat "$f"; rm -f "$f"; exit $st"#,
        // No final newline, stderr merged into stdout.
        r#"printf "one\ntwo" | "$@" m 2>&1 | cat -A"#,
    ];
    let mut failures = Vec::new();
    for script in scripts {
        let (remote, direct) = both_ways(&daemon, script, &prog);
        if remote != direct {
            failures.push(format!("script {script:?}\n=== through the daemon ===\n{remote}\n=== direct ===\n{direct}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The expectations are not vacuous.
    let direct = bash(scripts[0], std::slice::from_ref(&prog));
    assert_eq!(
        direct,
        Outcome { code: 2, stdout: b"X:A\nX:B\n".to_vec(), stderr: b"x: 2 lines, 4 bytes\n".to_vec() },
        "direct run of the first script"
    );
}

/// `script` run with `$@` = PROG and with `$@` = `zygote spawn ... -- PROG`.
fn both_ways(daemon: &Daemon, script: &str, prog: &str) -> (Outcome, Outcome) {
    let direct = bash(script, &[prog.to_string()]);
    let mut via = spawn_prefix(daemon);
    via.push(prog.to_string());
    (bash(script, &via), direct)
}

/// A program whose reader goes away gets SIGPIPE and dies of it (status
/// 141), as when a shell starts it: the daemon (a Rust program, which
/// ignores SIGPIPE itself) must not pass the ignored disposition on.
#[test]
fn a_program_whose_reader_goes_away_dies_of_sigpipe() {
    let daemon = Daemon::start(&socket_path("sigpipe"), &[]);
    let prog = cat().display().to_string();
    let script = r#"seq 1 40000 | "$@" head | head -n 1; exit ${PIPESTATUS[1]}"#;
    let (remote, direct) = both_ways(&daemon, script, &prog);
    assert_eq!(direct.code, 128 + libc::SIGPIPE, "direct run: {direct}");
    assert_eq!(remote, direct, "script {script:?}\n=== through the daemon ===\n{remote}\n=== direct ===\n{direct}");
}

#[test]
fn exit_status_is_the_programs_or_128_plus_the_signal() {
    let daemon = Daemon::start(&socket_path("status"), &[]);
    let signal = static_pie("signal.c");
    for (how, sig) in
        [("kill", libc::SIGKILL), ("term", libc::SIGTERM), ("abort", libc::SIGABRT), ("segv", libc::SIGSEGV)]
    {
        let direct = direct_run(&signal, &[how], &[], false);
        let remote =
            zyg(&daemon, "spawn", &["--daemon-side".as_ref(), "--".as_ref(), signal.as_os_str(), how.as_ref()]);
        assert_eq!(remote.code, 128 + sig, "`zygote spawn -- signal {how}`:\n{remote}");
        assert_eq!((remote.code, &remote.stdout), (direct.code, &direct.stdout), "signal {how}: remote vs direct");
    }
    let exit = static_pie("daemon_exit.c");
    for code in ["0", "1", "42", "255"] {
        let direct = direct_run(&exit, &[code], &[], false);
        let remote = zyg(&daemon, "spawn", &["--daemon-side".as_ref(), "--".as_ref(), exit.as_os_str(), code.as_ref()]);
        assert_eq!(remote, direct, "`zygote spawn -- exit {code}`");
        assert_eq!(remote.code.to_string(), code);
    }
}

/// A signal sent to the `zygote spawn` process reaches the program: SIGTERM
/// runs its handler (it prints and exits 42); SIGINT and SIGHUP kill it
/// (status 128+N). The client starts with those signals at their defaults
/// (`env --default-signal`): ignored ones (under nohup, or in a shell's
/// background job) would stay ignored in the program, as under execve.
#[test]
fn signals_to_the_client_reach_the_program() {
    let daemon = Daemon::start(&socket_path("sig"), &[]);
    let prog = static_pie("daemon_sleep.c");
    for (sig, want) in [(libc::SIGTERM, 42), (libc::SIGINT, 128 + libc::SIGINT), (libc::SIGHUP, 128 + libc::SIGHUP)] {
        let mut cmd = Command::new("env");
        cmd.arg("--default-signal=HUP,INT,TERM")
            .arg(zygote_bin())
            .arg("spawn")
            .arg("--daemon-side")
            .arg("--socket")
            .arg(&daemon.socket)
            .arg("--")
            .arg(&prog)
            .arg("term");
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let mut lines = Lines::new(child.stdout.take().expect("stdout"));
        let stderr = spawn_reader(child.stderr.take().expect("stderr"));
        let cli_pid = child.id() as i32;
        let mut cli = StdChildGuard(Some(child));
        let ready = lines.next(DEADLINE).expect("the program prints ready");
        let pid = pid_in(&ready, "ready ");
        let _guard = PidGuard(pid);
        // Signal the client once it relays signals (it blocks them for that),
        // not in the moment between starting the program and waiting for it.
        eventually("the client relays signals", DEADLINE, || {
            if sig_blocked(cli_pid, sig) { Ok(()) } else { Err(format!("pid {cli_pid} does not block signal {sig}")) }
        });
        kill_pid(cli_pid, sig).expect("signal the client");
        let st = cli.0.take().expect("cli").wait().expect("wait for the client");
        let code = std_shell_code(st);
        assert!(lines.eof_within(SETTLE), "the program's stdout did not close");
        let err = String::from_utf8_lossy(&collect(stderr, "client stderr")).into_owned();
        assert_eq!(code, want, "signal {sig} to `zygote spawn`: status; stdout {:?}; stderr {err}", lines.seen);
        let mut want_lines = vec![ready.clone()];
        if sig == libc::SIGTERM {
            want_lines.push("got SIGTERM".to_string());
        }
        assert_eq!(lines.seen, want_lines, "signal {sig}: the program's output");
        assert!(!pid_running(pid), "the program {pid} still runs");
    }
}

fn parse_json(out: &Outcome) -> serde_json::Value {
    assert_eq!(out.code, 0, "`zygote stats --json` failed:\n{out}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("`zygote stats --json` is not JSON: {e}\n{out}"))
}

#[test]
fn stats_json_has_the_documented_keys() {
    let daemon = Daemon::start(&socket_path("json"), &[]);
    let echo = static_pie("daemon_echo.c");
    let exit = static_pie("daemon_exit.c");
    let out = zyg(&daemon, "spawn", &["--daemon-side".as_ref(), "--".as_ref(), echo.as_os_str()]);
    assert_eq!(out.code, 0, "{out}");
    let pre = zyg(&daemon, "preload", &[exit.as_os_str()]);
    assert_eq!(pre.code, 0, "{pre}");

    let v = parse_json(&zyg(&daemon, "stats", &["--json".as_ref()]));
    for key in ["cache", "spawns", "spawn_errors", "live_children", "connections", "open_connections", "images"] {
        assert!(v.get(key).is_some(), "`zygote stats --json` lacks {key:?}:\n{v:#}");
    }
    for key in ["entries", "bytes", "max_entries", "max_bytes", "hits", "misses", "evictions", "builds"] {
        assert!(v["cache"].get(key).is_some_and(|x| x.is_u64()), "cache.{key} missing or not a number:\n{v:#}");
    }
    assert_eq!(v["spawns"], 1, "{v:#}");
    assert_eq!(v["spawn_errors"], 0, "{v:#}");
    assert_eq!(v["cache"]["entries"], 2, "{v:#}");
    assert_eq!(v["cache"]["builds"], 2, "{v:#}");
    let images = v["images"].as_array().expect("images is an array");
    let mut paths: Vec<&str> = images.iter().map(|i| i["path"].as_str().expect("image path")).collect();
    paths.sort();
    let mut want = vec![echo.to_str().expect("utf-8 path"), exit.to_str().expect("utf-8 path")];
    want.sort();
    assert_eq!(paths, want, "{v:#}");
    for i in images {
        assert!(i["key"].as_str().is_some_and(|k| k.len() == 64), "image key: {i}");
        assert!(i["sealed_bytes"].as_u64().is_some_and(|b| b > 0), "image sealed_bytes: {i}");
    }
    // The human form too.
    let text = zyg(&daemon, "stats", &[]);
    assert_eq!(text.code, 0, "{text}");
    assert!(text.stdout_str().contains("cache") && text.stdout_str().contains("spawns"), "{text}");
}

#[test]
fn without_a_daemon_the_client_says_how_to_start_one() {
    let dir = unique_dir("nodaemon");
    let socket = dir.join("none.sock");
    let echo = static_pie("daemon_echo.c");
    let spawn = run_command(
        Command::new(zygote_bin()).arg("spawn").arg("--daemon-side").arg("--socket").arg(&socket).arg("--").arg(&echo),
    );
    let stats = run_command(Command::new(zygote_bin()).arg("stats").arg("--socket").arg(&socket));
    for (what, out) in [("spawn", spawn), ("stats", stats)] {
        assert_ne!(out.code, 0, "`zygote {what}` without a daemon succeeded:\n{out}");
        assert!(out.stdout.is_empty(), "`zygote {what}` without a daemon printed to stdout:\n{out}");
        assert!(
            out.stderr_str().contains("zygote daemon") && out.stderr_str().contains(&socket.display().to_string()),
            "`zygote {what}` without a daemon should name the socket and say to start `zygote daemon`:\n{out}"
        );
    }
}

/// Image keys listed by `zygote stats --json`.
fn cached_keys(daemon: &Daemon) -> Vec<String> {
    let v = parse_json(&zyg(daemon, "stats", &["--json".as_ref()]));
    let mut keys: Vec<String> = v["images"]
        .as_array()
        .expect("images")
        .iter()
        // Evicted images that processes still map may be listed as not cached.
        .filter(|i| i.get("cached").is_none_or(|c| c.as_bool() != Some(false)))
        .map(|i| i["key"].as_str().expect("key").to_string())
        .collect();
    keys.sort();
    keys
}

#[test]
fn preload_and_evict() {
    let daemon = Daemon::start(&socket_path("evict"), &[]);
    let echo = static_pie("daemon_echo.c");
    let exit = static_pie("daemon_exit.c");

    let pre = zyg(&daemon, "preload", &[echo.as_os_str(), exit.as_os_str()]);
    assert_eq!(pre.code, 0, "{pre}");
    let lines: Vec<Vec<String>> =
        pre.stdout_str().lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect();
    assert_eq!(lines.len(), 2, "`zygote preload` prints one line per program:\n{pre}");
    for (l, prog) in lines.iter().zip([&echo, &exit]) {
        assert_eq!(l.len(), 3, "KEY SEALED_BYTES PROGRAM: {l:?}");
        assert!(l[0].len() == 64 && l[0].bytes().all(|b| b.is_ascii_hexdigit()), "key {:?}", l[0]);
        assert!(l[1].parse::<u64>().is_ok_and(|n| n > 0), "sealed bytes {:?}", l[1]);
        assert_eq!(Path::new(&l[2]), prog.as_path());
    }
    let (echo_key, exit_key) = (lines[0][0].clone(), lines[1][0].clone());
    let mut both = vec![echo_key.clone(), exit_key.clone()];
    both.sort();
    assert_eq!(cached_keys(&daemon), both);

    // A spawn after preload builds nothing new.
    let out = zyg(&daemon, "spawn", &["--daemon-side".as_ref(), "--".as_ref(), echo.as_os_str()]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(daemon.stats().cache.builds, 2);

    // Evict by hash.
    let ev = zyg(&daemon, "evict", &[echo_key.as_ref()]);
    assert_eq!((ev.code, ev.stdout_str()), (0, "evicted 1\n".to_string()), "{ev}");
    assert_eq!(cached_keys(&daemon), vec![exit_key.clone()]);
    // Again: nothing to evict.
    let again = zyg(&daemon, "evict", &[echo_key.as_ref()]);
    assert_ne!(again.code, 0, "evicting an absent key succeeded:\n{again}");
    assert!(again.stderr_str().starts_with("zygote: "), "{again}");
    // Evict by program.
    let ev = zyg(&daemon, "evict", &[exit.as_os_str()]);
    assert_eq!((ev.code, ev.stdout_str()), (0, "evicted 1\n".to_string()), "{ev}");
    assert_eq!(cached_keys(&daemon), Vec::<String>::new());

    // The next spawn rebuilds, and works.
    let out = zyg(&daemon, "spawn", &["--daemon-side".as_ref(), "--".as_ref(), echo.as_os_str(), "back".as_ref()]);
    assert_eq!((out.code, out.stdout_str()), (0, "argc=2\n[1]=back\n".to_string()), "{out}");
    let s = daemon.stats();
    assert_eq!((s.cache.builds, s.cache.entries), (3, 1), "{s:?}");
    assert_eq!(cached_keys(&daemon), vec![echo_key]);
}
