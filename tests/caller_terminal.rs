//! Job control with caller-side spawning, in a real terminal (tmux, on a
//! private server socket, a detached session of a fixed size, driven with
//! `send-keys` and read with `capture-pane`): a program started from an
//! interactive bash through a masquerade link or `zygote-exec`, and served
//! from the daemon's image, is the shell's foreground job:
//!
//! - it reads what is typed; Ctrl-Z stops it (state T) and gives the
//!   terminal back to the shell, so lines typed then are the shell's, not
//!   the program's; `fg` resumes it and it reads the terminal again;
//! - a job of several processes (`zygote-exec sh -c 'cat > OUT'`) stops and
//!   resumes as a whole;
//! - an interactive program (the Python REPL through a `python3` link)
//!   reads the terminal as the foreground process group.
//!
//! Everything is polled with bounded waits; the tmux server is killed at
//! the end of each test.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;

/// A tmux server of our own running one interactive bash in a detached
/// 100x30 session; killed on drop.
struct Tmux {
    server: String,
    socket: Option<PathBuf>,
}

impl Tmux {
    fn start(env: &Env) -> Tmux {
        static N: AtomicUsize = AtomicUsize::new(0);
        let server = format!("zt-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut t = Tmux { server, socket: None };
        let mut cmd = t.tmux();
        cmd.args(["new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "env", "-i"]);
        cmd.args(env.0.iter().map(|(k, v)| format!("{k}={v}")));
        cmd.args(["TERM=screen", "PS1=zt$ ", "/bin/bash", "--norc", "--noprofile", "-i"]);
        run_tool(&mut cmd);
        let socket = run_tool(t.tmux().args(["display-message", "-p", "#{socket_path}"]));
        t.socket = Some(PathBuf::from(socket.trim()));
        // (capture-pane drops trailing blanks: the prompt shows as "zt$".)
        t.wait_screen("the shell's prompt", |s| s.lines().any(|l| l.trim_end() == "zt$"));
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.server, "-f", "/dev/null"]);
        c
    }

    /// Keys by tmux name (`Enter`, `C-z`, `C-d`).
    fn keys(&self, keys: &[&str]) {
        run_tool(self.tmux().args(["send-keys", "-t", "t"]).args(keys));
    }

    /// Type `text` literally, then Enter.
    fn line(&self, text: &str) {
        run_tool(self.tmux().args(["send-keys", "-t", "t", "-l", text]));
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        run_tool(self.tmux().args(["capture-pane", "-p", "-t", "t"]))
    }

    fn wait_screen(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        eventually(what, SETTLE, || {
            let s = self.screen();
            if ok(&s) { Ok(s) } else { Err(format!("the screen:\n{s}")) }
        })
    }

    /// The shell's pid.
    fn shell(&self) -> i32 {
        let out = run_tool(self.tmux().args(["display-message", "-p", "-t", "t", "#{pane_pid}"]));
        out.trim().parse().unwrap_or_else(|_| panic!("pane_pid: {out:?}"))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
        if let Some(p) = &self.socket {
            let _ = fs::remove_file(p);
        }
    }
}

/// Fields of /proc/PID/stat: (state, ppid, pgrp, session, tpgid).
fn stat_of(pid: i32) -> Option<(char, i32, i32, i32, i32)> {
    use zygote_linux::procfs::{stat_field, stat_state};
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f = |n| stat_field(&text, n) as i32;
    Some((stat_state(&text)?, f(4), f(5), f(6), f(8)))
}

/// The pid of the shell's child that runs `exe` (its /proc/PID/exe: the
/// program, once the client has mapped it and jumped; root's client makes
/// it the program's file).
fn child_running(shell: i32, exe: &Path) -> i32 {
    let exe = fs::canonicalize(exe).expect("canonical exe");
    eventually(&format!("a child of the shell running {}", exe.display()), SETTLE, || {
        let kids = children_of(shell);
        kids.iter()
            .map(|&(p, _)| p)
            .find(|p| fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == exe))
            .ok_or(format!("children {kids:?}"))
    })
}

fn wait_stat(pid: i32, what: &str, ok: impl Fn((char, i32, i32, i32, i32)) -> bool) {
    eventually(what, SETTLE, || match stat_of(pid) {
        Some(s) if ok(s) => Ok(()),
        other => Err(format!("stat {other:?}")),
    });
}

fn wait_file(path: &Path, want: &str) {
    eventually(&format!("{} holds {want:?}", path.display()), SETTLE, || {
        let got = fs::read_to_string(path).unwrap_or_default();
        if got == want { Ok(()) } else { Err(format!("it holds {got:?}")) }
    });
}

/// A scratch with a daemon, links for `names`, and the environment for the
/// terminal's shell (the links first on PATH).
fn setup(names: &[&str]) -> (Scratch, Daemon, Env) {
    let s = Scratch::new();
    let daemon = s.daemon(serde_json::json!({}));
    let bin = s.install_links(names);
    let env = Env::new(&s.socket(), &format!("{}:/usr/bin:/bin", bin.display()));
    (s, daemon, env)
}

/// Ctrl-Z, lines for the shell, `fg`: the program of `job` (pids, the
/// first the group leader) stops, the shell runs what is typed meanwhile,
/// and the job resumes in the foreground.
fn stop_type_and_resume(t: &Tmux, shell: i32, job: &[i32], out: &Path, so_far: &str) {
    let leader = job[0];
    t.keys(&["C-z"]);
    for &p in job {
        wait_stat(p, "the job stopped by Ctrl-Z", |(st, ..)| st == 'T');
    }
    let (_, _, shell_pgrp, _, _) = stat_of(shell).expect("shell stat");
    wait_stat(leader, "the shell has the terminal back", |(.., tpgid)| tpgid == shell_pgrp);
    t.line("echo typed-$((6*7)) at the shell");
    t.wait_screen("the shell ran the line typed while the job was stopped", |s| {
        s.lines().any(|l| l.trim_end() == "typed-42 at the shell")
    });
    assert_eq!(fs::read_to_string(out).unwrap_or_default(), so_far, "the stopped job read from the terminal");
    assert!(job.iter().all(|&p| stat_of(p).is_some_and(|s| s.0 == 'T')), "the job runs on: {job:?}");
    t.line("fg");
    for &p in job {
        wait_stat(p, "the job resumed by fg", |(st, ..)| st != 'T');
    }
    wait_stat(leader, "the job has the terminal again", |(.., tpgid)| tpgid == leader);
}

/// `cat > OUT` through a masquerade link: the foreground job, stopped by
/// Ctrl-Z, resumed by `fg`, reading only what is typed while it is in the
/// foreground; served from the image.
#[test]
fn a_program_through_a_masquerade_link_is_the_foreground_job() {
    let (s, daemon, env) = setup(&["cat"]);
    run_until_served(&daemon, || command("cat", &[], &env));
    let before = requests(&daemon);
    let out = s.path("out.txt");
    let t = Tmux::start(&env);
    let shell = t.shell();
    t.line(&format!("cat > {}", out.display()));
    let cat = child_running(shell, Path::new("/usr/bin/cat"));
    let (_, ppid, pgrp, sid, tpgid) = stat_of(cat).expect("cat's stat");
    assert_eq!((ppid, pgrp, sid, tpgid), (shell, cat, shell, cat), "cat's (ppid, pgrp, session, tpgid)");
    t.line("hello");
    wait_file(&out, "hello\n");
    stop_type_and_resume(&t, shell, &[cat], &out, "hello\n");
    t.line("world");
    wait_file(&out, "hello\nworld\n");
    t.keys(&["C-d"]);
    eventually("cat ended by Ctrl-D", SETTLE, || if pid_running(cat) { Err("running".into()) } else { Ok(()) });
    let screen = t.wait_screen("the prompt after cat", |s| s.trim_end().ends_with("zt$"));
    assert_all_served(&daemon, &before, 1, &screen, &screen);
    assert_eq!(fs::read_to_string(&out).expect("read"), "hello\nworld\n");
}

/// `zygote-exec sh -c 'cat > OUT'`: a job of two processes (sh served
/// through the client, cat through its link), stopped and resumed as one.
#[test]
fn a_job_started_through_the_client_stops_and_resumes_as_a_whole() {
    let (s, daemon, env) = setup(&["cat"]);
    run_until_served(&daemon, || command("cat", &[], &env));
    run_until_served(&daemon, || command(s.client(), &["sh", "-c", "true"], &env));
    let before = requests(&daemon);
    let out = s.path("out.txt");
    let t = Tmux::start(&env);
    let shell = t.shell();
    t.line(&format!("{} sh -c 'cat > {}; echo sh-after-cat'", s.client().display(), out.display()));
    let sh = child_running(shell, Path::new("/bin/sh"));
    let cat = child_running(sh, Path::new("/usr/bin/cat"));
    assert_eq!(
        stat_of(sh).map(|s| (s.1, s.2, s.3, s.4)),
        Some((shell, sh, shell, sh)),
        "sh's (ppid, pgrp, sid, tpgid)"
    );
    assert_eq!(stat_of(cat).map(|s| (s.1, s.2, s.3)), Some((sh, sh, shell)), "cat's (ppid, pgrp, sid)");
    t.line("first");
    wait_file(&out, "first\n");
    stop_type_and_resume(&t, shell, &[sh, cat], &out, "first\n");
    t.line("second");
    wait_file(&out, "first\nsecond\n");
    t.keys(&["C-d"]);
    t.wait_screen("sh went on after cat", |s| s.lines().any(|l| l.trim_end() == "sh-after-cat"));
    eventually("the job ended", SETTLE, || if pid_running(sh) { Err("running".into()) } else { Ok(()) });
    let screen = t.screen();
    assert!(not_served_lines(&screen).is_empty(), "the client said something:\n{screen}");
    let after = requests(&daemon);
    assert_eq!((after.served, after.misses), (before.served + 2, before.misses), "{before:?} -> {after:?}");
}

/// The Python REPL through a `python3` link reads what is typed, as the
/// terminal's foreground process group, and answers on the terminal.
#[test]
fn an_interactive_program_reads_the_terminal() {
    let (_s, daemon, env) = setup(&["python3"]);
    let python: PathBuf = fs::canonicalize("/usr/bin/python3").expect("/usr/bin/python3");
    run_until_served(&daemon, || command("python3", &["-c", "pass"], &env));
    let before = requests(&daemon);
    let t = Tmux::start(&env);
    let shell = t.shell();
    t.line("python3 -q");
    let py = child_running(shell, &python);
    t.wait_screen("the REPL's prompt", |s| s.lines().any(|l| l.trim_end() == ">>>"));
    t.line("print('answer', 6*7)");
    t.wait_screen("the REPL's answer", |s| s.lines().any(|l| l.trim_end() == "answer 42"));
    t.line("import os; print('fg', os.tcgetpgrp(0) == os.getpgrp() == os.getpid(), os.getppid() == os.getsid(0))");
    t.wait_screen("the REPL is the foreground group", |s| s.lines().any(|l| l.trim_end() == "fg True True"));
    t.line("exit()");
    eventually("python ended", SETTLE, || if pid_running(py) { Err("running".into()) } else { Ok(()) });
    let screen = t.wait_screen("the prompt after python", |s| s.trim_end().ends_with("zt$"));
    assert_all_served(&daemon, &before, 1, &screen, &screen);
}

/// `zygote spawn -- sh -c 'cat > OUT'` (issue 9, defect 6: through the
/// daemon the program was not in the caller's session or process group, so
/// Ctrl-Z stopped only the client and lines typed at the shell went to the
/// program). Caller-side, `zygote spawn`, sh and cat are one job of the
/// shell's session: Ctrl-Z stops all three, what is typed meanwhile goes to
/// the shell, `fg` resumes them, and the program has the terminal
/// (`/dev/tty` opens).
#[test]
fn zygote_spawn_is_a_job_of_the_callers_terminal() {
    let (s, daemon, env) = setup(&["cat"]);
    run_until_served(&daemon, || command("cat", &[], &env));
    let zygote = Path::new(zygote_bin()).canonicalize().expect("zygote binary");
    let socket = s.socket();
    let spawn = |script: &str| format!("{} spawn --socket {} -- sh -c '{script}'", zygote.display(), socket.display());
    let out = s.path("out.txt");
    let t = Tmux::start(&env);
    let shell = t.shell();
    t.line(&spawn("test -r /dev/tty && echo tty-$((6*7)) || echo no-tty"));
    t.wait_screen("the program opened /dev/tty", |s| s.lines().any(|l| l.trim_end() == "tty-42"));
    t.line(&spawn(&format!("cat > {}; echo sh-after-cat", out.display())));
    let cli = child_running(shell, &zygote);
    let sh = child_running(cli, Path::new("/bin/sh"));
    let cat = child_running(sh, Path::new("/usr/bin/cat"));
    let (_, ppid, pgrp, sid, tpgid) = stat_of(cli).expect("zygote's stat");
    assert_eq!((ppid, pgrp, sid, tpgid), (shell, cli, shell, cli), "zygote spawn's (ppid, pgrp, sid, tpgid)");
    for p in [sh, cat] {
        assert_eq!(stat_of(p).map(|s| (s.2, s.3)), Some((cli, shell)), "pid {p}: (pgrp, sid) of the job");
    }
    t.line("first");
    wait_file(&out, "first\n");
    stop_type_and_resume(&t, shell, &[cli, sh, cat], &out, "first\n");
    t.line("second");
    wait_file(&out, "first\nsecond\n");
    t.keys(&["C-d"]);
    t.wait_screen("sh went on after cat", |s| s.lines().any(|l| l.trim_end() == "sh-after-cat"));
    eventually("the job ended", SETTLE, || if pid_running(cli) { Err("running".into()) } else { Ok(()) });
    assert_eq!(fs::read_to_string(&out).expect("read"), "first\nsecond\n");
}
