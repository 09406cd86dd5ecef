//! Caller-side spawning: a program started through the thin exec client
//! (`zygote-exec PROGRAM`, `zygote-exec -p PATH ARGV0`, or a masquerade link
//! made by `zygote install-links`) is what a direct exec would have made,
//! and it is the caller's own process:
//!
//! - static, static-PIE and dynamically linked programs, in every way of
//!   invoking the client and for several argv/environment sets, print the
//!   same stdout and stderr and end with the same status as a direct exec,
//!   and each of those runs was served from the daemon's image (its
//!   `image_requests.served` grew and the client, with `ZYGOTE_EXEC_DEBUG`,
//!   said nothing), after a first run that missed;
//! - `#!` scripts and PATH lookup (execvp's rule; the client skips its own
//!   links on PATH);
//! - parent, process group, session, pid: those of a direct exec from the
//!   same shell (not the daemon's);
//! - RLIMIT_NOFILE, umask, nice, ignored and blocked signals, the cgroup and
//!   the mount namespace of the caller are the program's;
//! - socket discovery: `$XDG_RUNTIME_DIR/zygote/zygote.sock`, then
//!   `/tmp/zygote-$UID/zygote.sock`.
//!
//! Every run sets `ZYGOTE_EXEC_DEBUG=1` in both the direct and the client
//! run (the environments are identical, so the programs' output compares).
//!
//! Failing when written (on 2b7c766), each for a bug it shows:
//! `at_execfn_is_the_path_execve_got`, `a_script_is_not_rebuilt_at_every_run`,
//! `a_dynamic_programs_libraries_are_those_of_the_callers_mount_namespace`,
//! `origin_is_the_directory_the_program_was_run_from`,
//! `clang_works_through_a_link_without_the_capability`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The ways of starting a program through the client.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `zygote-exec /full/path ARGS`.
    FullPath,
    /// `zygote-exec NAME ARGS`, NAME found on PATH.
    Search,
    /// `zygote-exec -p /full/path ARGV0 ARGS`.
    Dash,
    /// `NAME ARGS` with NAME a link to the client first on PATH.
    Masquerade,
}

const MODES: [Mode; 4] = [Mode::FullPath, Mode::Search, Mode::Dash, Mode::Masquerade];

/// The client run and the direct run it must equal, for `prog` (in the
/// scratch's prog dir, named as its file) and `args`.
fn pair(s: &Scratch, mode: Mode, prog: &Path, args: &[&str], env: &Env) -> (Command, Command) {
    let name = prog.file_name().and_then(|n| n.to_str()).expect("program name");
    let with = |first: Vec<&str>| {
        let mut a = first;
        a.extend_from_slice(args);
        command(s.client(), &a, env)
    };
    match mode {
        Mode::FullPath => (with(vec![prog.to_str().expect("utf-8")]), command(prog, args, env)),
        // The direct run: std's Command looks NAME up on the child's PATH
        // and execs what it found with argv[0] = NAME, as execvp does.
        // (Without the masquerade links on PATH: through one of those the
        // client would run itself first; see `path_lookup_is_execvps`.)
        Mode::Search => {
            let env = &without_links(s, env);
            let with_name = [&[name][..], args].concat();
            (command(s.client(), &with_name, env), command(name, args, env))
        }
        Mode::Dash => {
            let mut direct = command(prog, args, env);
            direct.arg0("argv0-given");
            (with(vec!["-p", prog.to_str().expect("utf-8"), "argv0-given"]), direct)
        }
        // Through a masquerade link the client runs the program with argv[0]
        // the full path it found it at (as ccache does, so a compiler driver
        // that looks for itself through argv[0] and PATH finds itself, not
        // the link); execve of that path with that argv[0] is what it must
        // equal.
        Mode::Masquerade => (command(name, args, env), command(prog, args, env)),
    }
}

/// `env` with the install directory taken out of PATH.
fn without_links(s: &Scratch, env: &Env) -> Env {
    let bin = s.path("bin").display().to_string();
    let path = env.get("PATH").unwrap_or_default().split(':').filter(|d| *d != bin).collect::<Vec<_>>().join(":");
    env.clone().with("PATH", &path)
}

/// Arguments and extra environment entries.
type ArgSet = (Vec<String>, Vec<(String, String)>);

/// Argument and extra environment sets.
fn arg_sets() -> Vec<ArgSet> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let many: Vec<String> = (0..3000).map(|i| format!("arg-{i}")).collect();
    vec![
        (vec![], vec![]),
        (
            s(&["one", "two words", "", "err=an error line", "exit=3"]),
            vec![("FOO".into(), "bar".into()), ("EMPTY".into(), String::new())],
        ),
        (s(&["kill=15"]), vec![("WITH=EQUALS".into(), "a=b".into())]),
        (many, vec![("BIG".into(), "x".repeat(64 << 10))]),
    ]
}

/// A scratch with a daemon, caller_info built as `linkage` copied into it,
/// and masquerade links for it.
fn setup(linkage: Linkage) -> (Scratch, Daemon, PathBuf, Env) {
    let s = Scratch::new();
    let daemon = s.daemon(serde_json::json!({}));
    let prog = s.copy(&caller_info(linkage), linkage.name(), 0o755);
    let bin = s.install_links(&[linkage.name()]);
    let path = format!("{}:{}:/usr/bin:/bin", bin.display(), s.prog_dir().display());
    let env = Env::new(&s.socket(), &path);
    (s, daemon, prog, env)
}

/// The first run through the client misses (and execs, with the same
/// output); once the daemon has built the image every mode and every
/// argument set is served and equals a direct exec.
fn same_as_direct_exec(linkage: Linkage) {
    let (s, daemon, prog, env) = setup(linkage);
    let (mut via, mut direct) = pair(&s, Mode::FullPath, &prog, &[], &env);
    let first = run_exec_instead(&mut via, WHY_MISS);
    assert_same_outcome("the first run (a miss)", &first, &run_command(&mut direct));
    let r = requests(&daemon);
    assert_eq!((r.misses, r.served, r.builds), (1, 0, 1), "{r:?}");
    run_until_served(&daemon, || pair(&s, Mode::FullPath, &prog, &[], &env).0);
    for mode in MODES {
        for (args, extra) in arg_sets() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut e = env.clone();
            for (k, v) in &extra {
                e = e.with(k, v);
            }
            let (mut via, mut direct) = pair(&s, mode, &prog, &args, &e);
            let mut direct = run_command(&mut direct);
            let mut out = run_served(&daemon, &mut via);
            if matches!(mode, Mode::Search | Mode::Dash) {
                // AT_EXECFN differs there: at_execfn_is_the_path_execve_got.
                (direct, out) = (without_execfn(&direct), without_execfn(&out));
            }
            let shown: Vec<&str> = args.iter().take(6).copied().collect();
            assert_same_outcome(
                &format!("{linkage:?} {mode:?} args {shown:?}... ({} args)", args.len()),
                &out,
                &direct,
            );
        }
    }
    // What the sets exercised: a status, stderr, a signal.
    let (mut via, _) = pair(&s, Mode::Masquerade, &prog, &["err=E", "exit=3"], &env);
    let out = run_served(&daemon, &mut via);
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr_str().ends_with("E\n"), "{out}");
    assert!(out.stdout_str().contains(&format!("argv[0] {}\n", prog.display())), "{out}");
}

/// The outcome without caller_info's `execfn` line.
fn without_execfn(o: &Outcome) -> Outcome {
    let text = o.stdout_str();
    let kept: String = text.split_inclusive('\n').filter(|l| !l.starts_with("execfn ")).collect();
    Outcome { code: o.code, stdout: kept.into_bytes(), stderr: o.stderr.clone() }
}

/// AT_EXECFN is the path execve got: the file found on PATH
/// (`zygote-exec NAME`), the PATH of `zygote-exec -p PATH ARGV0`, as
/// glibc's execvp and `exec -a` give it, not argv[0].
#[test]
fn at_execfn_is_the_path_execve_got() {
    let (s, daemon, prog, env) = setup(Linkage::StaticPie);
    run_until_served(&daemon, || pair(&s, Mode::FullPath, &prog, &[], &env).0);
    for mode in [Mode::Search, Mode::Dash] {
        let (mut via, mut direct) = pair(&s, mode, &prog, &[], &env);
        let direct = run_command(&mut direct);
        assert!(direct.stdout_str().contains(&format!("execfn {}\n", prog.display())), "{direct}");
        let out = run_served(&daemon, &mut via);
        let line = |o: &Outcome| o.stdout_str().lines().find(|l| l.starts_with("execfn")).map(str::to_string);
        assert_eq!(line(&out), line(&direct), "{mode:?}: AT_EXECFN through the client");
    }
}

#[test]
fn a_static_program_is_served_and_equals_a_direct_exec() {
    same_as_direct_exec(Linkage::Static);
}

#[test]
fn a_static_pie_program_is_served_and_equals_a_direct_exec() {
    same_as_direct_exec(Linkage::StaticPie);
}

#[test]
fn a_dynamically_linked_program_is_served_and_equals_a_direct_exec() {
    same_as_direct_exec(Linkage::Dynamic);
}

/// `#!` scripts through the client: the same output and status as execve
/// of the script, whether the interpreter is /bin/sh or a program whose
/// image is cached.
#[test]
fn scripts_run_as_under_execve() {
    let (s, daemon, prog, env) = setup(Linkage::StaticPie);
    run_until_served(&daemon, || pair(&s, Mode::FullPath, &prog, &[], &env).0);
    let sh_script = s.prog_dir().join("zt-script");
    write_file(&sh_script, b"#!/bin/sh\necho \"script $0 [$*]\"\necho to-stderr >&2\nexit 7\n", 0o755);
    let interp_script = s.prog_dir().join("zt-interp");
    let text = format!("#!{} -x\nthis line is not run\n", prog.display());
    write_file(&interp_script, text.as_bytes(), 0o755);
    let bin = s.install_links(&["zt-script", "zt-interp"]);
    assert!(bin.join("zt-interp").exists());
    for script in [&sh_script, &interp_script] {
        for mode in MODES {
            for round in 0..2 {
                let (mut via, mut direct) = pair(&s, mode, script, &["a", "b c"], &env);
                let direct = run_command(&mut direct);
                let out = run_command(&mut via);
                let (debug, rest) = split_debug(&out);
                assert!(debug.iter().all(|l| l.starts_with(EXEC_INSTEAD)), "{debug:?}");
                assert_same_outcome(&format!("{} {mode:?} round {round}", script.display()), &rest, &direct);
            }
        }
    }
    let out = run_command(&mut pair(&s, Mode::FullPath, &interp_script, &["a"], &env).0);
    assert!(out.stdout_str().contains(&format!("argv[2] {}\n", interp_script.display())), "{out}");
    assert_eq!(out.code, 0, "{out}");
}

/// A `#!` script is not an image the daemon can build: once it has tried
/// (the first run misses and starts a build, which fails), later runs are
/// told to exec at once, not answered "not cached yet" with another build
/// of the same file every time.
#[test]
fn a_script_is_not_rebuilt_at_every_run() {
    let (s, daemon, _, env) = setup(Linkage::Static);
    let script = s.prog_dir().join("zt-script");
    write_file(&script, b"#!/bin/sh\necho script ran\n", 0o755);
    let run = || command(s.client(), &[script.to_str().expect("utf-8")], &env);
    let first = run_command(&mut run());
    assert_eq!(split_debug(&first).1.stdout_str(), "script ran\n", "{first}");
    let failed = format!("building {} for a caller-side client", script.display());
    eventually("the daemon's build of the script ended", SETTLE, || {
        if daemon.log_text().contains(&failed) { Ok(()) } else { Err(daemon.log_tail(2000)) }
    });
    let before = requests(&daemon);
    for round in 0..3 {
        let out = run_exec_instead(&mut run(), WHY_EXEC);
        assert_eq!(out.stdout_str(), "script ran\n", "round {round}: {out}");
    }
    let after = requests(&daemon);
    assert_eq!((after.builds, after.misses), (before.builds, before.misses), "{before:?} -> {after:?}");
}

/// PATH lookup is execvp's: entries without the name, with a directory of
/// that name, with a file of that name that is not executable are passed
/// over; a masquerade link skips every entry that is the client itself
/// (symlinks and hard links to it). 127 when nothing is found, 126 when
/// only a file that cannot be executed is (as bash says).
#[test]
fn path_lookup_is_execvps() {
    let (s, daemon, prog, _) = setup(Linkage::Static);
    let name = Linkage::Static.name();
    let (empty, with_dir, not_exec, hard) = (s.path("empty"), s.path("withdir"), s.path("noexec"), s.path("hard"));
    for d in [&empty, &with_dir, &not_exec, &hard] {
        fs::create_dir_all(d).expect("mkdir");
    }
    fs::create_dir(with_dir.join(name)).expect("mkdir");
    write_file(&not_exec.join(name), b"#!/bin/sh\necho wrong file\n", 0o644);
    fs::hard_link(s.client(), hard.join(name)).expect("hard link to the client");
    let join = |dirs: &[&PathBuf]| dirs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
    let bin = s.path("bin");
    let path = join(&[&bin, &hard, &empty, &with_dir, &not_exec, &s.prog_dir()]);
    let env = Env::new(&s.socket(), &path);
    run_until_served(&daemon, || pair(&s, Mode::FullPath, &prog, &[], &env).0);
    // `zygote-exec NAME` looks NAME up as execvp does: given the links on
    // PATH it would find one of them (the client itself) first, so it runs
    // without them here.
    let search_env = Env::new(&s.socket(), &join(&[&empty, &with_dir, &not_exec, &s.prog_dir()]));
    for (mode, env) in [(Mode::Search, &search_env), (Mode::Masquerade, &env)] {
        let (mut via, mut direct) = pair(&s, mode, &prog, &["x"], env);
        let mut direct = run_command(&mut direct);
        assert_eq!(direct.code, 0, "{direct}");
        let mut out = run_served(&daemon, &mut via);
        if let Mode::Search = mode {
            (direct, out) = (without_execfn(&direct), without_execfn(&out));
        }
        assert_same_outcome(&format!("{mode:?} on {:?}", env.get("PATH")), &out, &direct);
    }
    // Nothing found: 127; only a file that cannot be executed: 126 (as sh).
    let only_not_exec = Env::new(&s.socket(), &join(&[&empty, &not_exec]));
    for (env, want) in [(Env::new(&s.socket(), &join(&[&empty])), 127), (only_not_exec, 126)] {
        // (bash: dash says 127 for both.)
        let sh = run_command(&mut command("/bin/bash", &["-c", &format!("{name} x")], &env));
        let out = run_command(&mut command(s.client(), &[name, "x"], &env));
        assert_eq!((sh.code, out.code), (want, want), "PATH={:?}\nsh: {sh}\nclient: {out}", env.get("PATH"));
        assert!(out.stdout.is_empty(), "{out}");
    }
}

/// `zygote-exec NAME` where NAME on PATH is a masquerade link: execvp's
/// rule finds the link, i.e. the client itself, which then runs NAME as a
/// masquerade link does; the outcome is that of a direct exec of the link.
#[test]
fn the_client_named_through_its_own_link_runs_the_program() {
    let (s, daemon, prog, env) = setup(Linkage::StaticPie);
    run_until_served(&daemon, || pair(&s, Mode::FullPath, &prog, &[], &env).0);
    let name = Linkage::StaticPie.name();
    let direct = run_command(&mut command(&prog, &["y"], &env));
    for _ in 0..3 {
        let out = run_command(&mut command(s.client(), &[name, "y"], &env));
        let (_, rest) = split_debug(&out);
        assert_same_outcome("zygote-exec NAME, NAME a link to it first on PATH", &rest, &direct);
    }
}

/// The sections of a shell's output, each after a line `=== NAME`.
fn sections(stdout: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cur = String::from("(before)");
    for l in stdout.lines() {
        if let Some(n) = l.strip_prefix("=== ") {
            cur = n.to_string();
            out.entry(cur.clone()).or_default();
        } else {
            out.entry(cur.clone()).or_default().push(l.to_string());
        }
    }
    out
}

/// The value of the line `KEY VALUE` in a section.
fn field<'a>(lines: &'a [String], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key).filter(|r| r.starts_with([' ', '\t'])).map(str::trim_start))
        .unwrap_or_else(|| panic!("no line {key:?} in {lines:#?}"))
}

/// A shell script that runs `prog` directly, through the client and
/// through its masquerade link, each after a `=== NAME` line; in the
/// foreground and in the background (then `bgpid PID` follows).
fn three_ways(s: &Scratch, prog: &Path) -> String {
    let (c, p, n) = (s.client(), prog.display(), prog.file_name().and_then(|n| n.to_str()).expect("name"));
    let c = c.display();
    format!(
        "echo \"=== shell\"; echo \"shell $$\"; \
         echo '=== direct'; {p}; echo '=== client'; {c} {p}; echo '=== link'; {n}; \
         echo '=== bg-direct'; {p} & b=$!; wait $b; echo \"bgpid $b\"; \
         echo '=== bg-client'; {c} {p} & b=$!; wait $b; echo \"bgpid $b\"; \
         echo '=== bg-link'; {n} & b=$!; wait $b; echo \"bgpid $b\"; true"
    )
}

/// Check that the program sections are identical but for the pid, and
/// return them.
fn same_but_pid(out: &Outcome, names: &[&str]) -> BTreeMap<String, Vec<String>> {
    let secs = sections(&out.stdout_str());
    let strip = |n: &str| -> Vec<String> {
        let v = secs.get(n).unwrap_or_else(|| panic!("no section {n}: {out}"));
        v.iter().filter(|l| !l.starts_with("pid ") && !l.starts_with("bgpid ")).cloned().collect()
    };
    for n in names {
        // A non-interactive shell runs background jobs with SIGINT and
        // SIGQUIT ignored: compare like with like.
        let first = if n.starts_with("bg-") { "bg-direct" } else { "direct" };
        assert_eq!(strip(n), strip(first), "{n} differs from {first}:\n{out}");
    }
    secs
}

const SIX: [&str; 6] = ["direct", "client", "link", "bg-direct", "bg-client", "bg-link"];

/// The program is the process the caller started: its pid is the one the
/// shell got (`$!`), its parent the shell, its process group and session
/// the shell's (a session leader here), as for a direct exec.
#[test]
fn the_program_is_the_callers_own_process() {
    for linkage in [Linkage::StaticPie, Linkage::Dynamic] {
        let (s, daemon, prog, env) = setup(linkage);
        run_until_served(&daemon, || pair(&s, Mode::FullPath, &prog, &[], &env).0);
        let before = requests(&daemon);
        let mut sh = command("/bin/sh", &["-c", &three_ways(&s, &prog)], &env.clone().with("CALLER_INFO_PID", "1"));
        // SAFETY: setsid() only, between fork and exec.
        unsafe {
            sh.pre_exec(|| rustix::process::setsid().map(drop).map_err(std::io::Error::from));
        }
        let out = run_command(&mut sh);
        assert_eq!(out.code, 0, "{out}");
        assert_all_served(&daemon, &before, 4, &out.stderr_str(), &out);
        let secs = same_but_pid(&out, &SIX);
        let shell = field(&secs["shell"], "shell").to_string();
        let ids = field(&secs["client"], "ppid");
        assert_eq!(
            ids,
            format!("{shell} pgid {shell} sid {shell}"),
            "{linkage:?}: the shell is the parent, group and session leader\n{out}"
        );
        for n in ["bg-direct", "bg-client", "bg-link"] {
            assert_eq!(
                field(&secs[n], "pid"),
                field(&secs[n], "bgpid"),
                "{linkage:?} {n}: the program is the process the shell started\n{out}"
            );
        }
    }
}

/// A caller that closed its stdin and stderr: the program starts with them
/// closed too (nothing the client opened is left in their place), as after
/// a direct exec. (A static PIE never collides with the client's layout: no
/// new start, which the served count would show and stderr could not say.)
#[test]
fn closed_stdio_stays_closed() {
    let (s, daemon, prog, env) = setup(Linkage::StaticPie);
    run_until_served(&daemon, || pair(&s, Mode::FullPath, &prog, &[], &env).0);
    let before = requests(&daemon);
    let (c, p, n) = (s.client(), prog.display(), Linkage::StaticPie.name());
    let script = format!(
        "exec <&- 2>&-; echo '=== direct'; {p}; echo '=== client'; {c} {p}; echo '=== link'; {n}",
        c = c.display()
    );
    let out = run_command(&mut command("/bin/sh", &["-c", &script], &env));
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(requests(&daemon).served, before.served + 2, "{:?}", requests(&daemon));
    let secs = same_but_pid(&out, &["direct", "client", "link"]);
    let fds: Vec<&str> = field(&secs["direct"], "fds").split_whitespace().collect();
    assert_eq!(fds.first(), Some(&"1"), "stdin and stderr are closed, stdout is open\n{out}");
}

/// A command line near the kernel's limit (about 1.5 MiB of arguments)
/// through a masquerade link (the client rebuilds the stack with argv[0]
/// replaced) and by name.
#[test]
fn a_huge_command_line_is_passed_on() {
    let (s, daemon, prog, env) = setup(Linkage::StaticPie);
    run_until_served(&daemon, || pair(&s, Mode::FullPath, &prog, &[], &env).0);
    let args: Vec<String> = (0..12_000).map(|i| format!("{i:06}-{}", "y".repeat(120))).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = env.with("LARGE", &"z".repeat(100 << 10));
    for mode in [Mode::Masquerade, Mode::Search] {
        let (mut via, mut direct) = pair(&s, mode, &prog, &args, &env);
        let direct = without_execfn(&run_command(&mut direct));
        assert_eq!(direct.code, 0, "{}", direct.stderr_str());
        let out = without_execfn(&run_served(&daemon, &mut via));
        assert!(out == direct, "{mode:?}: a huge command line differs (stderr {:?})", out.stderr_str());
    }
}

/// A cgroup of our own for the parent shell, removed on drop. cgroup2 (the
/// unified hierarchy) if mounted, else the v1 pids hierarchy.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(tag: &str) -> Cgroup {
        let base = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/pids"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.join("cgroup.procs").exists())
            .expect("no cgroup hierarchy under /sys/fs/cgroup to test the program's cgroup with");
        let dir = base.join(format!("zt-caller-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir(&dir);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create the cgroup {}: {e}", dir.display()));
        Cgroup(dir)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

static CGROUP_PROCS: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

/// The parent shell's state (async-signal-safe: system calls only): its
/// cgroup, RLIMIT_NOFILE 123/456, umask 027, nice 7, SIGUSR1 ignored,
/// SIGUSR2 blocked (which the shell may undo: whatever its children get is
/// compared).
fn restrict_parent() -> std::io::Result<()> {
    let check = |r: i32| if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) };
    // SAFETY: system calls on this process with valid pointers.
    unsafe {
        let procs = CGROUP_PROCS.get().expect("cgroup set");
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
        check(fd)?;
        check(libc::write(fd, b"0\n".as_ptr().cast(), 2) as i32)?;
        libc::close(fd);
        check(libc::setrlimit(libc::RLIMIT_NOFILE, &libc::rlimit { rlim_cur: 123, rlim_max: 456 }))?;
        libc::umask(0o027);
        check(libc::setpriority(libc::PRIO_PROCESS, 0, 7))?;
        libc::signal(libc::SIGUSR1, libc::SIG_IGN);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        check(libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()))
    }
}

/// What execve passes on from the caller is the program's: RLIMIT_NOFILE,
/// umask, nice, ignored and blocked signals and the cgroup of the shell
/// that runs it, as a direct exec from that shell shows.
#[test]
fn the_callers_limits_umask_nice_signals_and_cgroup_are_the_programs() {
    let cg = Cgroup::new("limits");
    let procs = cg.0.join("cgroup.procs").into_os_string().into_encoded_bytes();
    CGROUP_PROCS.set(std::ffi::CString::new(procs).expect("path")).expect("set once");
    let cg_name = cg.0.file_name().and_then(|n| n.to_str()).expect("name").to_string();
    for linkage in [Linkage::Static, Linkage::Dynamic] {
        let (s, daemon, prog, env) = setup(linkage);
        run_until_served(&daemon, || pair(&s, Mode::FullPath, &prog, &[], &env).0);
        let before = requests(&daemon);
        let mut sh = command("/bin/sh", &["-c", &three_ways(&s, &prog)], &env.clone().with("CALLER_INFO_PID", "1"));
        // SAFETY: restrict_parent makes system calls only.
        unsafe { sh.pre_exec(restrict_parent) };
        let out = run_command(&mut sh);
        assert_eq!(out.code, 0, "{out}");
        assert_all_served(&daemon, &before, 4, &out.stderr_str(), &out);
        let secs = same_but_pid(&out, &SIX);
        let d = &secs["direct"];
        for (key, want) in [("umask", "027"), ("nice", "7"), ("nofile", "123 456")] {
            assert_eq!(field(d, key), want, "{linkage:?}: the direct run shows the shell's {key}\n{out}");
        }
        let ignored = u64::from_str_radix(field(d, "SigIgn:"), 16).expect("SigIgn");
        assert!(ignored & (1 << (libc::SIGUSR1 - 1)) != 0, "{linkage:?}: SIGUSR1 ignored\n{out}");
        assert!(d.iter().any(|l| l.starts_with("cgroup ") && l.contains(&cg_name)), "{linkage:?}: cgroup\n{out}");
    }
}

/// The inode of a process's mount namespace.
fn mntns_of_self() -> u64 {
    fs::metadata("/proc/self/ns/mnt").expect("stat /proc/self/ns/mnt").ino()
}

/// A client run in another mount namespace (`unshare -m`) gives the
/// program that namespace: it sees a tmpfs mounted only there, and its
/// namespace is the one a direct exec from the same shell has.
#[test]
fn the_callers_mount_namespace_is_the_programs() {
    let (s, daemon, prog, env) = setup(Linkage::StaticPie);
    run_until_served(&daemon, || pair(&s, Mode::FullPath, &prog, &[], &env).0);
    run_until_served(&daemon, || command(s.client(), &["/bin/cat", "/dev/null"], &env));
    let mnt = s.path("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    let before = requests(&daemon);
    let script = format!(
        "mount -t tmpfs zt-private {m} && echo only-in-this-namespace > {m}/f || exit 9; {three}; \
         echo '=== cat'; {c} /bin/cat {m}/f",
        m = mnt.display(),
        three = three_ways(&s, &prog),
        c = s.client().display()
    );
    let out = run_command(&mut command("unshare", &["-m", "--propagation", "private", "/bin/sh", "-c", &script], &env));
    assert_eq!(out.code, 0, "{out}");
    assert_all_served(&daemon, &before, 5, &out.stderr_str(), &out);
    let secs = same_but_pid(&out, &SIX);
    let ns: u64 = field(&secs["client"], "mntns").parse().expect("mntns");
    assert_ne!(ns, mntns_of_self(), "the program ran in the test's mount namespace, not the caller's:\n{out}");
    assert_eq!(secs["cat"], ["only-in-this-namespace"], "{out}");
    assert!(!mnt.join("f").exists(), "the tmpfs leaked out of the namespace");
}

/// A dynamically linked program started through the client in another
/// mount namespace loads the libraries that namespace has at their paths,
/// as a direct exec there does (not those the daemon sees at those paths).
#[test]
fn a_dynamic_programs_libraries_are_those_of_the_callers_mount_namespace() {
    let s = Scratch::new();
    let daemon = s.daemon(serde_json::json!({}));
    s.install_links(&[]);
    let lib_dir = s.prog_dir().join("lib");
    fs::create_dir(&lib_dir).expect("mkdir");
    let src = c_src("caller_lib.c");
    let lib = lib_dir.join("libztcaller.so");
    let other = s.path("libztcaller-other.so");
    for (out, text) in [(&lib, "\"seen-by-the-daemon\""), (&other, "\"only-in-the-callers-namespace\"")] {
        run_tool(
            Command::new("gcc")
                .args(["-shared", "-fPIC", "-O2", &format!("-DZT_LIB={text}")])
                .arg(&src)
                .arg("-o")
                .arg(out),
        );
    }
    let prog = s.prog_dir().join("zt-libuser");
    let rpath = format!("-Wl,-rpath,{}", lib_dir.display());
    run_tool(
        Command::new("gcc")
            .arg("-O2")
            .arg(&src)
            .arg("-o")
            .arg(&prog)
            .arg(format!("-L{}", lib_dir.display()))
            .args(["-lztcaller", &rpath]),
    );
    let env = Env::new(&s.socket(), "/usr/bin:/bin");
    let first = run_until_served(&daemon, || command(s.client(), &[prog.to_str().expect("utf-8")], &env));
    assert_eq!(first.stdout_str(), "library seen-by-the-daemon\n", "{first}");
    let script = format!(
        "mount --bind {o} {l} || exit 9; echo '=== direct'; {p}; echo '=== client'; {c} {p}",
        o = other.display(),
        l = lib.display(),
        p = prog.display(),
        c = s.client().display()
    );
    let out = run_command(&mut command("unshare", &["-m", "--propagation", "private", "/bin/sh", "-c", &script], &env));
    assert_eq!(out.code, 0, "{out}");
    let secs = sections(&out.stdout_str());
    assert_eq!(secs["direct"], ["library only-in-the-callers-namespace"], "{out}");
    assert_eq!(
        secs["client"], secs["direct"],
        "through the client, in a mount namespace where another file is at the library's path, the program \
         loaded a different library than a direct exec there\n{out}"
    );
}

/// A dynamically linked program whose library path is `$ORIGIN/lib`, with
/// two hard links (one file) in two directories, each with its own
/// `lib/`: through the client from each directory it loads that
/// directory's library, as a direct exec does (`$ORIGIN` is the directory
/// of the path it was run by, not a property of the file).
#[test]
fn origin_is_the_directory_the_program_was_run_from() {
    let s = Scratch::new();
    let daemon = s.daemon(serde_json::json!({}));
    s.install_links(&[]);
    let src = c_src("caller_lib.c");
    let dirs = [s.path("a"), s.path("b")];
    for (d, text) in dirs.iter().zip(["\"the-library-of-a\"", "\"the-library-of-b\""]) {
        fs::create_dir_all(d.join("lib")).expect("mkdir");
        let lib = d.join("lib/libztcaller.so");
        run_tool(
            Command::new("gcc")
                .args(["-shared", "-fPIC", "-O2", &format!("-DZT_LIB={text}")])
                .arg(&src)
                .arg("-o")
                .arg(lib),
        );
    }
    let prog = dirs[0].join("zt-origin");
    let lib_dir = format!("-L{}", dirs[0].join("lib").display());
    run_tool(Command::new("gcc").arg("-O2").arg(&src).arg("-o").arg(&prog).args([
        &lib_dir,
        "-lztcaller",
        "-Wl,-rpath,$ORIGIN/lib",
    ]));
    let other = dirs[1].join("zt-origin");
    fs::hard_link(&prog, &other).expect("hard link");
    let env = Env::new(&s.socket(), "/usr/bin:/bin");
    for p in [&prog, &other] {
        let direct = run_command(&mut command(p, &[], &env));
        let via = || command(s.client(), &[p.to_str().expect("utf-8")], &env);
        let first = split_debug(&run_command(&mut via())).1;
        assert_same_outcome(&format!("{}, the first run", p.display()), &first, &direct);
        let out = run_until_served(&daemon, via);
        assert_same_outcome(&format!("{} served", p.display()), &out, &direct);
    }
    for p in [&prog, &other] {
        let direct = run_command(&mut command(p, &[], &env));
        let out = run_command(&mut command(s.client(), &[p.to_str().expect("utf-8")], &env));
        assert_same_outcome(&format!("{} again", p.display()), &split_debug(&out).1, &direct);
    }
}

/// A program that finds itself through `/proc/self/exe` keeps working when
/// the client cannot make `/proc/self/exe` the program (it lacks
/// CAP_SYS_ADMIN and CAP_CHECKPOINT_RESTORE: any user but root; here uid
/// 65534, and root without those capabilities). clang does: it locates its
/// resource directory (builtin headers, sanitizer runtimes) from there,
/// runs its `-cc1` jobs as that file, and names itself after it in
/// diagnostics. Its LLVM library names `/proc/self/exe`, so the daemon tells
/// such a client to exec it (docs/ARCHITECTURE.md, "Caller-side
/// spawning"); a client that can set it (root) is served.
#[test]
fn clang_works_through_a_link_without_the_capability() {
    let s = Scratch::new();
    let daemon = s.daemon(serde_json::json!({}));
    let bin = s.install_links(&["clang-14"]);
    let env = Env::new(&s.socket(), &format!("{}:/usr/bin:/bin", bin.display()));
    let as_nobody = |args: &[&str]| {
        let mut c = command("clang-14", args, &env);
        c.uid(NOBODY).gid(NOBODY);
        c
    };
    let without_caps =
        |args: &[&str]| command("setpriv", &[&WITHOUT_RESTORE_CAPS[1..], &["clang-14"], args].concat(), &env);
    // Linking with -fsanitize=address takes the sanitizer runtime from the
    // resource directory.
    let src = s.prog_dir().join("asan-main.c");
    write_file(&src, b"int main(void) { return 0; }\n", 0o644);
    let out_dir = s.path("out");
    fs::create_dir(&out_dir).expect("mkdir");
    std::os::unix::fs::chown(&out_dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    let exe = out_dir.join("asan-main");
    let check = ["-fsanitize=address", src.to_str().expect("utf-8"), "-o", exe.to_str().expect("utf-8")];
    let direct = run_command(&mut command("/usr/bin/clang-14", &["-print-resource-dir"], &env));
    let direct_check = run_command(&mut command("/usr/bin/clang-14", &check, &env));
    assert_eq!((direct.code, direct_check.code), (0, 0), "{direct}\n{direct_check}");
    // Root, which may set /proc/self/exe, is served (the first runs miss).
    let as_root = |args: &[&str]| command("clang-14", args, &env);
    run_until_served(&daemon, || as_root(&["--version"]));
    assert_same_outcome(
        "clang-14 -print-resource-dir as root",
        &run_served(&daemon, &mut as_root(&["-print-resource-dir"])),
        &direct,
    );
    for (who, make) in
        [("uid 65534", &as_nobody as &dyn Fn(&[&str]) -> Command), ("root without the capabilities", &without_caps)]
    {
        // The verdict on its libraries may still be read in the background:
        // exec'd either way, until the daemon knows.
        eventually(&format!("the daemon knows clang-14 reads /proc/self/exe ({who})"), SETTLE, || {
            let before = requests(&daemon);
            let out = run_command(&mut make(&["--version"]));
            let after = requests(&daemon);
            let (debug, _) = split_debug(&out);
            let exec = format!("{EXEC_INSTEAD}{WHY_EXEC}");
            if debug == [exec.as_str()] && after.exec > before.exec && after.served == before.served {
                Ok(())
            } else {
                Err(format!("{debug:?} {before:?} -> {after:?}"))
            }
        });
        let before = requests(&daemon);
        let out = run_exec_instead(&mut make(&["-print-resource-dir"]), WHY_EXEC);
        let out_check = run_exec_instead(&mut make(&check), WHY_EXEC);
        assert_eq!(requests(&daemon).served, before.served, "{who}: never served");
        assert_same_outcome(&format!("clang-14 {check:?} as {who}"), &out_check, &direct_check);
        assert_same_outcome(&format!("clang-14 -print-resource-dir as {who}"), &out, &direct);
    }
}

/// Without `ZYGOTE_SOCKET` the client finds the daemon at
/// `$XDG_RUNTIME_DIR/zygote/zygote.sock`, and without that at
/// `/tmp/zygote-$UID/zygote.sock` (here for uid 65534).
#[test]
fn the_client_finds_the_socket_as_the_cli_does() {
    let s = Scratch::new();
    let prog = s.copy(&caller_info(Linkage::StaticPie), "cinfo", 0o755);
    s.install_links(&[]);
    let xdg = s.path("xdg");
    // The socket directories exist as the daemon would make them (the
    // harness puts the daemon's log next to its socket).
    fs::create_dir_all(xdg.join("zygote")).expect("mkdir");
    fs::set_permissions(xdg.join("zygote"), fs::Permissions::from_mode(0o700)).expect("chmod");
    let daemon = Daemon::start(&xdg.join("zygote/zygote.sock"), &[]);
    let env = Env::new(Path::new("-"), "/usr/bin:/bin")
        .without("ZYGOTE_SOCKET")
        .with("XDG_RUNTIME_DIR", &xdg.display().to_string());
    let via = || command(s.client(), &[prog.to_str().expect("utf-8")], &env);
    run_until_served(&daemon, via);
    let out = run_served(&daemon, &mut via());
    assert_same_outcome("through $XDG_RUNTIME_DIR", &out, &run_command(&mut command(&prog, &[], &env)));
    drop(daemon);

    let tmp_dir = PathBuf::from(format!("/tmp/zygote-{NOBODY}"));
    let _ = fs::remove_dir_all(&tmp_dir);
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(tmp_dir.clone());
    fs::create_dir(&tmp_dir).expect("mkdir");
    fs::set_permissions(&tmp_dir, fs::Permissions::from_mode(0o711)).expect("chmod");
    let cfg = write_config(&s.path("nobody.json"), serde_json::json!({ "allowed_uids": [NOBODY] }));
    let daemon = Daemon::start(&tmp_dir.join("zygote.sock"), &["--config".as_ref(), cfg.as_os_str()]);
    let env = env.without("XDG_RUNTIME_DIR");
    let as_nobody = || {
        let mut c = command(s.client(), &[prog.to_str().expect("utf-8")], &env);
        c.uid(NOBODY).gid(NOBODY);
        c
    };
    run_until_served(&daemon, as_nobody);
    let out = run_served(&daemon, &mut as_nobody());
    let mut direct = command(&prog, &[], &env);
    direct.uid(NOBODY).gid(NOBODY);
    let direct = run_command(&mut direct);
    assert!(direct.stdout_str().contains("uid 65534 euid 65534"), "{direct}");
    // /proc/self/exe: a client without CAP_SYS_ADMIN or
    // CAP_CHECKPOINT_RESTORE cannot make it the program (it stays the
    // client); everything else equals the direct run.
    let no_exe = |o: &Outcome| o.stdout_str().lines().filter(|l| !l.starts_with("exe ")).collect::<Vec<_>>().join("\n");
    assert_eq!(no_exe(&out), no_exe(&direct), "through /tmp/zygote-{NOBODY}:\n{out}\n{direct}");
}
