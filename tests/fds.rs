//! File descriptors: a child gets exactly the fds it was given (at the
//! requested numbers) and nothing else, neither the spawner's internal fds
//! (cache memfds, ...) nor its non-CLOEXEC fds.
//!
//! One test function: the steps rely on which fds this process has open.

mod common;

use common::*;
use std::os::fd::OwnedFd;
use zygote_linux::SpawnRequest;

#[test]
fn child_gets_exactly_the_passed_fds() {
    let prog = static_pie("fds.c");
    let other = build_spie_test(Variant::GlibcStaticPie);

    // The CLI: the child gets the standard streams, and nothing of
    // zygote's own (cache memfds, the stub, sockets...). Whether the CLI
    // forwards fds it inherited itself is its policy, so those (this test
    // process's non-CLOEXEC fds, which `Command` passes on) are tolerated.
    let inherited = non_cloexec_fds();
    let out = zygote_run(&prog, &[], &[], false);
    assert_eq!(out.code, 0, "{out}");
    let listed: Vec<i32> = out.stdout_str().split_whitespace().map(|s| s.parse().expect("fd number")).collect();
    assert!(
        listed.starts_with(&[0, 1, 2]) && listed[3..].iter().all(|fd| *fd > 2 && inherited.contains(fd)),
        "`zygote run -- fds` listed {listed:?}; allowed: 0 1 2 plus the fds zygote itself \
         inherited {inherited:?}\n{out}"
    );

    // Non-CLOEXEC fds in the spawner must not leak (dup gives no CLOEXEC).
    let null = dev_null();
    let inheritable: Vec<OwnedFd> = (0..4).map(|_| rustix::io::dup(&null).expect("dup")).collect();
    for fd in &inheritable {
        let flags = rustix::io::fcntl_getfd(fd).expect("F_GETFD");
        assert!(!flags.contains(rustix::io::FdFlags::CLOEXEC), "dup'd fd unexpectedly CLOEXEC");
    }

    let z = new_zygote();
    // Populate the cache with another image first, so the zygote holds
    // several memfds of its own.
    let (st, o) = lib_run(&z, SpawnRequest::new(other.as_os_str()).env_clear());
    assert_eq!(lib_shell_code(&st), 0, "{o}");

    for round in 0..2 {
        let (out_r, out_w) = pipe();
        let (nine_r, nine_w) = pipe();
        let req = SpawnRequest::new(prog.as_os_str())
            .arg("write9")
            .fd(dev_null(), 0)
            .fd(out_w, 1)
            .fd(dev_null(), 2)
            .fd(dev_null(), 5)
            .fd(nine_w, 9);
        let child = z.spawn(req).unwrap_or_else(|e| panic!("spawn fds.c: {e}"));
        let mut g = ChildGuard::new(child);
        let out_rx = spawn_reader(std::fs::File::from(out_r));
        let nine_rx = spawn_reader(std::fs::File::from(nine_r));
        let st = g.wait();
        let listing = String::from_utf8_lossy(&collect(out_rx, "fd 1 pipe")).into_owned();
        let via9 = String::from_utf8_lossy(&collect(nine_rx, "fd 9 pipe")).into_owned();
        assert_eq!(lib_shell_code(&st), 0, "round {round}: fds.c exit {}; stdout {listing:?}", describe(&st));
        assert_eq!(listing, "0 1 2 5 9\n", "round {round}: child's fds");
        assert_eq!(via9, "via9\n", "round {round}: fd 9 is not our pipe");
    }

    // The same, with no extra fds: exactly the standard streams.
    let (st, o) = lib_run(&z, SpawnRequest::new(prog.as_os_str()));
    assert_eq!(lib_shell_code(&st), 0, "{o}");
    assert_eq!(o.stdout_str(), "0 1 2\n", "library spawn with stdio only");
    drop(inheritable);

    // Sanity of the test program: run directly with fds 5 and 9 open it
    // lists them, next to whatever this process lets `Command` inherit.
    let mut want: Vec<i32> = vec![0, 1, 2, 5, 9];
    want.extend(non_cloexec_fds().into_iter().filter(|fd| *fd > 2));
    want.sort();
    want.dedup();
    let want: Vec<String> = want.iter().map(|fd| fd.to_string()).collect();
    let direct = run_command(
        std::process::Command::new("sh").arg("-c").arg(format!("exec '{}' 5</dev/null 9</dev/null", prog.display())),
    );
    assert_eq!(direct.stdout_str(), format!("{}\n", want.join(" ")), "direct: {direct}");
}

/// Fds of this process without FD_CLOEXEC (inherited by `Command` children).
fn non_cloexec_fds() -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| {
            // SAFETY: F_GETFD only queries flags; an fd closed meanwhile
            // (e.g. the directory's own) just returns -1.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .collect();
    v.sort();
    v
}
