//! Dynamically linked programs through the daemon (`zygote daemon`,
//! `zygote spawn`):
//!
//! - they run from their prototype images and behave like a direct run;
//! - the prototype the daemon builds runs the file the client passed (whose
//!   execute permission the daemon checked), never another file the
//!   request's `path` names, so no client can make the image cached under
//!   one program's content hash hold another program;
//! - the program's start-up (dynamic linker, library constructors), which
//!   the daemon runs in the prototype, never runs with more privilege than
//!   the client that asked: a root daemon serving another uid must not run
//!   that uid's constructors as root.
//!
//! The other uid is 65534 (nobody); files it must reach live in a
//! world-readable directory under the system temp dir.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use zygote::service::message::{Request, Response};

const NOBODY: u32 = 65534;

fn showme() -> PathBuf {
    cc_cached(&dyn_src("showme.c"), "showme", &["-O1", "-pthread", "-rdynamic"], &[])
}

fn exe_prog() -> PathBuf {
    cc_cached(&dyn_src("exe.c"), "exe", &["-O1"], &[])
}

#[test]
fn daemon_runs_dynamic_programs_from_their_images() {
    let socket = socket_path("dyn");
    let daemon = Daemon::start(&socket, &[]);
    let prog = showme();
    let cases: [ArgsEnv<'_>; 3] = [
        (vec![], vec![]),
        (vec!["via", "the daemon", "exit=9"], vec![("X", "1"), ("PATH", "/usr/bin:/bin")]),
        (vec!["kill=15"], vec![("X", "")]),
    ];
    for (i, (args, env)) in cases.iter().enumerate() {
        let env = sorted_env(env);
        let direct = direct_run(&prog, args, &env, true);
        let out = zygote_cli(daemon_spawn_cli(&socket, &prog, args, &env));
        assert_eq!(
            out,
            direct,
            "case {i}: `zygote spawn` differs from a direct run\n\
             === zygote spawn ===\n{out}\n=== direct ===\n{direct}\n=== daemon log ===\n{}",
            daemon.log_tail(3000)
        );
    }

    // A live process: its memory comes from the image's sealed objects, and
    // (the daemon runs as root) /proc/PID/exe names the program.
    let exe = exe_prog();
    let mut client = daemon.client();
    let (in_r, in_w) = pipe();
    let (out_r, out_w) = pipe();
    let (pid, _pidfd) =
        remote_spawn(&mut client, spawn_args(&exe, &["wait"]), [in_r, out_w, dev_null()]).expect("Spawn exe wait");
    let _guard = PidGuard(pid);
    let mut lines = Lines::new(fs::File::from(out_r));
    while lines.next(DEADLINE).is_some_and(|l| l != "ready") {}
    assert_eq!(lines.seen.last().map(String::as_str), Some("ready"), "output: {:?}", lines.seen);
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    assert!(maps.contains("/memfd:zygote:"), "no sealed image objects mapped in pid {pid}:\n{maps}");
    let canonical = fs::canonicalize(&exe).expect("canonicalize");
    assert_eq!(fs::read_link(format!("/proc/{pid}/exe")).expect("readlink exe"), canonical);
    fs::File::from(in_w).write_all(b"go\n").expect("write to the child");
    assert_eq!(remote_wait(&mut client, pid).expect("Wait"), 0);
}

/// Two dynamic programs, A and B, that print their name.
fn build_a_and_b() -> (PathBuf, PathBuf) {
    let dir = unique_dir("whoami");
    let build = |name: &str| {
        let define = format!("-DZT_NAME=\"{name}\"");
        compile("gcc", &[&dyn_src("whoami.c")], &dir.join(format!("whoami-{name}")), &["-O1", &define], &[])
    };
    (build("A"), build("B"))
}

/// A Spawn request whose executable fd is `file` but whose `path` names
/// `path`: the stdout it produced (or the daemon's error).
fn spawn_fd_with_path(
    client: &mut zygote::service::client::Client,
    file: &Path,
    path: &Path,
) -> Result<String, String> {
    let exe = fs::File::open(file).expect("open the program");
    let stdin = dev_null();
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let out_rx = spawn_reader(fs::File::from(out_r));
    let err_rx = spawn_reader(fs::File::from(err_r));
    let args = spawn_args(path, &[]);
    let reply = client.call(&Request::Spawn(args), &[exe.as_fd(), stdin.as_fd(), out_w.as_fd(), err_w.as_fd()]);
    drop((out_w, err_w, stdin, exe));
    match reply {
        Ok((Response::Spawned { pid, .. }, _)) => {
            let _guard = PidGuard(pid);
            let code = remote_wait(client, pid).map_err(|e| format!("Wait: {e}"))?;
            let out = String::from_utf8_lossy(&collect(out_rx, "stdout")).into_owned();
            let err = String::from_utf8_lossy(&collect(err_rx, "stderr")).into_owned();
            assert_eq!(code, 0, "exit status; stdout {out:?}, stderr {err:?}");
            Ok(out)
        }
        Ok((Response::Error { code, message }, _)) => Err(format!("{code:?} {message}")),
        other => panic!("Spawn: unexpected reply {other:?}"),
    }
}

#[test]
fn prototype_runs_the_file_passed_not_the_path_named() {
    let (a, b) = build_a_and_b();
    let socket = socket_path("dyn-path");
    let daemon = Daemon::start(&socket, &[]);
    let mut client = daemon.client();
    // The daemon checked the execute permission of A's fd; it must never run
    // B because the request's `path` (documented as "for messages and the
    // process name") names it.
    let first = spawn_fd_with_path(&mut client, &a, &b);
    // Whatever happened to that request, an honest spawn of A runs A (the
    // image cached under A's content hash must hold A).
    let honest = remote_run(&mut daemon.client(), &a, &[], b"").expect("spawn A");
    let context = format!(
        "request with A's fd and B's path gave {first:?}; an honest spawn of A after it printed {:?}\n{}",
        honest.stdout_str(),
        daemon.log_tail(2000)
    );
    assert_ne!(first.as_deref(), Ok("I am B\n"), "the daemon ran the file the path named, not the fd: {context}");
    assert_eq!(honest.stdout_str(), "I am A\n", "the image cached for A's content holds another program: {context}");
    let direct = direct_run(&b, &[], &[], true);
    assert_eq!(direct.stdout_str(), "I am B\n");
}

/// A world-readable directory under the system temp dir, removed on drop.
struct SharedDir(PathBuf);

impl SharedDir {
    fn new() -> SharedDir {
        assert!(rustix::process::getuid().is_root(), "this test runs processes as uid {NOBODY}: it needs root");
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("zt-dyn-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("create shared dir");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod 0755 shared dir");
        SharedDir(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn constructors_never_run_with_more_privilege_than_the_client() {
    let dir = SharedDir::new();
    let log = dir.path("ctor.log");
    write_file(&log, b"", 0o666);
    let define = format!("-DZT_LOG_FILE=\"{}\"", log.display());
    shared_lib("gcc", &[&dyn_src("ctor_uid.c")], &dir.path("libzt_ctor_uid.so"), &["-O1", &define]);
    let flags = link_lib_flags(&dir.0, "zt_ctor_uid");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let prog = compile("gcc", &[&dyn_src("uid_main.c")], &dir.path("uid_main"), &["-O1"], &flags);
    let zygote = dir.path("zygote");
    fs::copy(zygote_bin(), &zygote).expect("copy the zygote binary");
    fs::set_permissions(&zygote, fs::Permissions::from_mode(0o755)).expect("chmod zygote");
    let want = format!("main euid={NOBODY} linked=1\n");

    // Run directly as the other uid: its constructor runs as that uid.
    let direct = run_command(Command::new(&prog).env_clear().current_dir(&dir.0).uid(NOBODY).gid(NOBODY));
    assert_eq!(direct.stdout_str(), want, "direct run as uid {NOBODY}:\n{direct}");
    assert_eq!(fs::read_to_string(&log).expect("read log"), format!("ctor euid={NOBODY}\n"));
    write_file(&log, b"", 0o666);

    // Through a root daemon that admits that uid.
    let mut cfg: serde_json::Value = serde_json::from_str(zygote::config::DEFAULT_CONFIG).expect("default config");
    cfg["allowed_uids"] = serde_json::json!([NOBODY]);
    let cfg_path = dir.path("config.json");
    fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).expect("encode config")).expect("write config");
    let socket = dir.path("z.sock");
    let daemon = Daemon::start(&socket, &["--config".as_ref(), cfg_path.as_os_str()]);
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).expect("chmod 0666 the socket");
    let out = run_command(
        Command::new(&zygote)
            .args(daemon_spawn_cli(&socket, &prog, &[], &[]))
            .current_dir(&dir.0)
            .uid(NOBODY)
            .gid(NOBODY),
    );
    assert_eq!(out.stdout_str(), want, "`zygote spawn` as uid {NOBODY}:\n{out}\n{}", daemon.log_tail(2000));
    let logged = fs::read_to_string(&log).expect("read log");
    for line in logged.lines() {
        assert_eq!(
            line,
            format!("ctor euid={NOBODY}"),
            "a constructor of uid {NOBODY}'s program ran with another uid while the daemon served it; \
             everything it logged:\n{logged}"
        );
    }
}
