//! A working directory that cannot be entered is the request's error, like
//! `cd` failing, not the zygote's (which would be INTERNAL, exit 125): a
//! missing one (or a file) is "not found", 127, with the path in the
//! message, for `zygote run`, the library and `zygote spawn` (whose daemon
//! answers NOT_FOUND and keeps serving), whether the spawn execs the stub or
//! goes through a pre-started launcher.

mod common;

use common::*;
use std::path::Path;
use zygote_linux::SpawnRequest;

fn check(what: &str, out: &Outcome, cwd: &Path) {
    let shown = cwd.display().to_string();
    assert_eq!(out.code, 127, "{what}:\n{out}");
    let err = out.stderr_str();
    assert!(err.contains(&shown) && err.contains("working directory"), "{what}: the message names {shown}:\n{out}");
    assert!(!err.contains("internal") && !err.contains("stage"), "{what}: not an internal error:\n{out}");
}

#[test]
fn a_missing_cwd_is_not_found() {
    let prog = static_pie("daemon_echo.c");
    let file = unique_path("cwd-is-a-file");
    write_file(&file, b"not a directory\n", 0o644);
    let missing = Path::new("/nonexistent/zygote-cwd");
    let daemon = Daemon::start(&socket_path("cwd"), &[]);
    let socket = daemon.socket.display().to_string();
    for cwd in [missing, &file] {
        let d = cwd.display().to_string();
        let out = zygote_cli(["run", "--cwd", &d, "--", "/bin/true"]);
        check(&format!("zygote run --cwd {d} -- /bin/true"), &out, cwd);
        // A static image twice: the exec'd stub, then a pre-started launcher.
        let p = prog.display().to_string();
        for round in 0..3 {
            // Warm a launcher for the image with a good spawn first.
            let ok = zygote_cli(["spawn", "--daemon-side", "--socket", &socket, "--", &p, "warm"]);
            assert_eq!(ok.code, 0, "a good spawn:\n{ok}\n{}", daemon.log_tail(2000));
            for program in [p.as_str(), "/bin/true"] {
                let out = zygote_cli(["spawn", "--daemon-side", "--socket", &socket, "--cwd", &d, "--", program]);
                check(&format!("round {round}: zygote spawn --cwd {d} -- {program}"), &out, cwd);
            }
        }
        let z = new_zygote();
        for round in 0..2 {
            match z.spawn(SpawnRequest::new(prog.as_os_str()).cwd(cwd)) {
                Err(e) => {
                    assert_eq!(e.exit_code(), 127, "library spawn {round} in {d}: {e:?}");
                    assert!(e.to_string().contains(&d), "library spawn {round}: {e}");
                }
                Ok(_) => panic!("library spawn {round} in {d} succeeded"),
            }
        }
    }
    daemon.wait_quiet(1);
}
