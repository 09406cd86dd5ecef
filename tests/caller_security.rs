//! A program started through the daemon is what execve would have made of
//! it for the requester, and nothing another user wrote:
//!
//! - the requester's restrictions (no-new-privs, bounding set, rlimits,
//!   umask, nice, oom_score_adj, affinity, I/O priority, personality, cgroup)
//!   are the program's, exactly as a direct exec under them shows;
//! - a seccomp filter or another mount namespace refuses the request;
//! - set-user-ID programs get execve's privileges (none under no-new-privs);
//! - a cached image never maps another user's copy of the program;
//! - an `O_PATH` fd (what an execute-only program allows) is refused;
//! - a program on a noexec mount is refused as execve refuses it, also one
//!   whose text segment is writable (nothing executable mapped from the file);
//! - duplicate fd targets are a request error and change nothing;
//! - a chrooted client is told apart from one that sees the daemon's root
//!   (which an image request's library paths depend on).
//!
//! The other user is uid 65534 (nobody); processes run as it are the `zygote`
//! CLI and this test binary (the ignored `helper_as_nobody`), placed in a
//! world-readable directory.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use zygote::service::client::{Client, ClientError};
use zygote::service::message::ErrorCode;

const NOBODY: u32 = 65534;
const HELPER_SOCKET: &str = "ZYGOTE_TEST_CALLER_SOCKET";
const HELPER_PROG: &str = "ZYGOTE_TEST_CALLER_PROG";

/// Run by [`opath_fd_of_an_execute_only_program_is_refused`] as uid 65534:
/// passes an `O_PATH` fd of the program and prints the daemon's answer.
#[test]
#[ignore = "helper: run as uid 65534 by another test of this file"]
fn helper_as_nobody() {
    let Some(socket) = std::env::var_os(HELPER_SOCKET) else { return };
    let prog = PathBuf::from(std::env::var_os(HELPER_PROG).expect("program"));
    let fd: OwnedFd =
        rustix::fs::open(&prog, rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC, 0.into()).expect("O_PATH open");
    let mut client = Client::connect(Path::new(&socket)).expect("connect");
    let mut args = spawn_args(&prog, &[]);
    args.fds = vec![];
    match client.call(&zygote::service::message::Request::Spawn(args), &[fd.as_fd()]) {
        Ok((r, _)) => println!("RESULT {r:?}"),
        Err(ClientError::Server { code, message }) => println!("RESULT server {code:?} {message}"),
        Err(e) => println!("RESULT failed {e}"),
    }
}

/// A world-readable scratch directory (removed on drop) with a socket
/// directory only root may list.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        assert!(rustix::process::getuid().is_root(), "these tests need root");
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "zt-caller-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("run")).expect("mkdir");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(d.join("run"), fs::Permissions::from_mode(0o711)).expect("chmod");
        Dir(d)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn socket(&self) -> PathBuf {
        self.0.join("run/z.sock")
    }
    fn copy(&self, src: &Path, name: &str, mode: u32) -> PathBuf {
        let dst = self.path(name);
        fs::copy(src, &dst).expect("copy");
        fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).expect("chmod");
        dst
    }
    /// A daemon (as root) that admits uid 65534.
    fn daemon(&self, config: serde_json::Value) -> Daemon {
        let mut changes = serde_json::json!({ "allowed_uids": [NOBODY] });
        for (k, val) in config.as_object().expect("object") {
            changes[k] = val.clone();
        }
        let cfg = write_config(&self.path("config.json"), changes);
        Daemon::start(&self.socket(), &["--config".as_ref(), cfg.as_os_str()])
    }
    /// `zygote spawn` of `prog` through the daemon, run as `uid` with `setup`
    /// applied to the client first.
    fn spawn_as(&self, uid: u32, prog: &Path, setup: Option<Setup>) -> Outcome {
        let exe = self.path("zygote");
        if !exe.exists() {
            self.copy(Path::new(zygote_bin()), "zygote", 0o755);
        }
        let mut cmd = Command::new(exe);
        cmd.arg("spawn").arg("--daemon-side").arg("--socket").arg(self.socket()).arg("--").arg(prog);
        run_as(&mut cmd, uid, setup)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Restrictions a test puts on a process before it execs (async-signal-safe).
type Setup = fn() -> std::io::Result<()>;

fn run_as(cmd: &mut Command, uid: u32, setup: Option<Setup>) -> Outcome {
    cmd.current_dir("/");
    if uid != 0 {
        // Command::uid drops supplementary groups when run as root.
        cmd.uid(uid).gid(uid);
    }
    if let Some(f) = setup {
        // SAFETY: the setup functions make system calls only.
        unsafe { cmd.pre_exec(f) };
    }
    run_command(cmd)
}

fn check(r: libc::c_long) -> std::io::Result<()> {
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// Everything execve keeps that a process can tighten for itself (as root).
fn restrict() -> std::io::Result<()> {
    // SAFETY: system calls on the calling process with valid arguments.
    unsafe {
        let lim = |cur, max| libc::rlimit { rlim_cur: cur, rlim_max: max };
        check(libc::setrlimit(libc::RLIMIT_NOFILE, &lim(200, 300)).into())?;
        check(libc::setrlimit(libc::RLIMIT_CORE, &lim(0, 0)).into())?;
        check(libc::setrlimit(libc::RLIMIT_STACK, &lim(4 << 20, 16 << 20)).into())?;
        libc::umask(0o027);
        check(libc::setpriority(libc::PRIO_PROCESS, 0, 7).into())?;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        check(libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set).into())?;
        check(libc::syscall(libc::SYS_ioprio_set, 1, 0, (2 << 13) | 6))?;
        check(libc::personality(0x0040000).into())?; // ADDR_NO_RANDOMIZE
        let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
        check(fd.into())?;
        check(libc::write(fd, b"321\n".as_ptr().cast(), 4) as libc::c_long)?;
        libc::close(fd);
        check(libc::prctl(libc::PR_CAPBSET_DROP, 13, 0, 0, 0).into())?; // CAP_NET_RAW
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into())
    }
}

fn no_new_privs() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())
}

fn seccomp_allow_all() -> std::io::Result<()> {
    let insn = [libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 }]; // BPF_RET|BPF_K, ALLOW
    let prog = libc::sock_fprog { len: 1, filter: insn.as_ptr().cast_mut() };
    // SAFETY: installs a one-instruction filter from valid memory.
    check(unsafe { libc::prctl(libc::PR_SET_SECCOMP, 2, &prog as *const libc::sock_fprog) }.into())
}

fn new_mount_namespace() -> std::io::Result<()> {
    // SAFETY: unshare with a flag.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) }.into())
}

/// A memory cgroup (v1 here, or cgroup2) of our own, removed on drop.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new() -> Option<Cgroup> {
        let base = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.join("cgroup.procs").exists())?;
        let dir = base.join(format!("zygote-test-{}", std::process::id()));
        fs::create_dir(&dir).ok()?;
        Some(Cgroup(dir))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

static CGROUP_PROCS: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

fn restrict_in_cgroup() -> std::io::Result<()> {
    if let Some(p) = CGROUP_PROCS.get() {
        // SAFETY: open/write/close with a valid path and buffer.
        unsafe {
            let fd = libc::open(p.as_ptr(), libc::O_WRONLY);
            check(fd.into())?;
            check(libc::write(fd, b"0\n".as_ptr().cast(), 2) as libc::c_long)?;
            libc::close(fd);
        }
    }
    restrict()
}

fn attrs_static() -> PathBuf {
    static_pie("attrs.c")
}

fn attrs_dynamic() -> PathBuf {
    cc_cached(&c_src("attrs.c"), "attrs.dyn", &["-O2"], &[])
}

/// Through the daemon, under the caller's restrictions, a program sees what
/// a direct exec under them shows (static-PIE and dynamically linked).
#[test]
fn the_callers_restrictions_are_the_programs() {
    let dir = Dir::new();
    let daemon = dir.daemon(serde_json::json!({}));
    let cg = Cgroup::new();
    if let Some(cg) = &cg {
        let _ = CGROUP_PROCS.set(
            std::ffi::CString::new(cg.0.join("cgroup.procs").into_os_string().into_encoded_bytes()).expect("path"),
        );
    }
    for prog in [attrs_static(), attrs_dynamic()] {
        let prog = dir.copy(&prog, prog.file_name().and_then(OsStr::to_str).expect("name"), 0o755);
        let direct = run_as(&mut Command::new(&prog), 0, Some(restrict_in_cgroup));
        assert_eq!(direct.code, 0, "{direct}");
        for round in 0..2 {
            let via = dir.spawn_as(0, &prog, Some(restrict_in_cgroup));
            assert_eq!(via.code, 0, "{}: {via}\n{}", prog.display(), daemon.log_tail(2000));
            assert_eq!(via.stdout_str(), direct.stdout_str(), "{} (round {round}) through the daemon", prog.display());
        }
        let out = direct.stdout_str();
        for want in ["NoNewPrivs:\t1", "umask 027", "rlimit 7 200 300", "nice 7", "oom_score_adj 321", "cpus 1 first 0"]
        {
            assert!(out.contains(want), "the restriction {want:?} did not apply to the direct run:\n{out}");
        }
        if cg.is_some() {
            assert!(out.contains("zygote-test-"), "the cgroup did not apply:\n{out}");
        }
    }
}

/// What the daemon cannot give the program refuses the request: a seccomp
/// filter, another mount namespace. Without them the same client is served.
#[test]
fn a_sandbox_the_program_could_not_keep_refuses_the_request() {
    let dir = Dir::new();
    let _daemon = dir.daemon(serde_json::json!({}));
    let prog = dir.copy(&attrs_static(), "attrs", 0o755);
    let ok = dir.spawn_as(0, &prog, None);
    assert_eq!(ok.code, 0, "{ok}");
    for (what, setup) in [("seccomp", seccomp_allow_all as Setup), ("mnt namespace", new_mount_namespace)] {
        let out = dir.spawn_as(0, &prog, Some(setup));
        assert_eq!(out.code, 126, "a client with {what}: {out}");
        assert!(out.stderr_str().contains(what), "a client with {what}: {out}");
        assert!(!out.stdout_str().contains("payload"), "the program ran: {out}");
    }
}

/// A set-user-ID program gets exactly execve's privileges: the owner's euid
/// for a plain caller, its own under no-new-privs.
#[test]
fn set_user_id_programs_get_execves_privileges() {
    let dir = Dir::new();
    let _daemon = dir.daemon(serde_json::json!({}));
    for (name, src) in [("suid-static", attrs_static()), ("suid-dyn", attrs_dynamic())] {
        let prog = dir.copy(&src, name, 0o4755);
        for setup in [None, Some(no_new_privs as Setup)] {
            let direct = run_as(&mut Command::new(&prog), NOBODY, setup);
            let via = dir.spawn_as(NOBODY, &prog, setup);
            let euid = |o: &Outcome| o.stdout_str().lines().find(|l| l.starts_with("euid")).map(str::to_string);
            assert!(euid(&direct).is_some(), "{direct}");
            assert_eq!(euid(&via), euid(&direct), "{name} (nnp: {}): {via}", setup.is_some());
        }
    }
}

/// uid 65534 runs its own copy of a root-owned program through the daemon
/// (the image is then cached), rewrites the copy in place, and root runs the
/// original: root's process shows the original bytes.
#[test]
fn a_cached_image_never_maps_another_users_copy() {
    let dir = Dir::new();
    let daemon = dir.daemon(serde_json::json!({ "prestarted_launchers": 2 }));
    let original = dir.copy(&attrs_static(), "attrs", 0o755);
    let theirs = dir.copy(&original, "their-copy", 0o755);
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).expect("chown");
    let first = dir.spawn_as(NOBODY, &theirs, None);
    assert!(first.stdout_str().contains("payload PAYLOAD-GENUINE"), "{first}");
    let bytes = fs::read(&theirs).expect("read copy");
    let at = bytes.windows(15).position(|w| w == b"PAYLOAD-GENUINE").expect("payload in the file");
    let mut f = fs::OpenOptions::new().write(true).open(&theirs).expect("open copy");
    f.seek(SeekFrom::Start(at as u64)).expect("seek");
    f.write_all(b"PAYLOAD-PATCHED").expect("patch");
    drop(f);
    // Root's spawns: the first finds the image by its bytes, the later ones
    // may go through a launcher warmed up by the first.
    for round in 0..3 {
        let out = dir.spawn_as(0, &original, None);
        assert!(
            out.stdout_str().contains("payload PAYLOAD-GENUINE"),
            "round {round}: root's spawn of {} ran bytes of uid {NOBODY}'s copy: {out}\n{}",
            original.display(),
            daemon.log_tail(2000)
        );
    }
    assert_eq!(fs::metadata(&original).expect("stat").uid(), 0);
    let theirs_now = dir.spawn_as(NOBODY, &theirs, None);
    assert!(theirs_now.stdout_str().contains("payload PAYLOAD-PATCHED"), "{theirs_now}");
}

/// An execute-only program (mode 0711): uid 65534 can open it only with
/// O_PATH, and the daemon refuses that fd.
#[test]
fn opath_fd_of_an_execute_only_program_is_refused() {
    let dir = Dir::new();
    let daemon = dir.daemon(serde_json::json!({}));
    let prog = dir.copy(&attrs_static(), "xonly", 0o711);
    let helper = dir.copy(&std::env::current_exe().expect("exe"), "helper", 0o755);
    let mut cmd = Command::new(helper);
    cmd.args(["--exact", "helper_as_nobody", "--ignored", "--nocapture", "--test-threads=1"]);
    cmd.env(HELPER_SOCKET, dir.socket()).env(HELPER_PROG, &prog);
    let out = run_as(&mut cmd, NOBODY, None);
    let stdout = out.stdout_str();
    let result: Vec<&str> = stdout.lines().filter_map(|l| l.find("RESULT").map(|i| &l[i..])).collect();
    assert_eq!(result.len(), 1, "{out}");
    assert!(
        result[0].starts_with(&format!("RESULT server {:?}", ErrorCode::PermissionDenied)),
        "an O_PATH fd of an execute-only program: {result:?}\n{}",
        daemon.log_tail(2000)
    );
    assert_eq!(daemon.stats().spawns, 0);
}

/// A tmpfs mounted noexec at `mnt` (created), unmounted on drop.
struct NoexecMount(PathBuf);

impl NoexecMount {
    fn new(mnt: PathBuf) -> NoexecMount {
        fs::create_dir(&mnt).expect("mkdir");
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", "noexec,mode=755", "tmpfs"]).arg(&mnt).status();
        assert!(st.is_ok_and(|s| s.success()), "mount a noexec tmpfs at {}", mnt.display());
        NoexecMount(mnt)
    }
}

impl Drop for NoexecMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// execve itself refuses `prog` with EACCES.
fn assert_execve_refuses(prog: &Path) {
    let direct = Command::new(prog).status();
    assert!(
        direct.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::EACCES)),
        "execve of a program on a noexec mount: {direct:?}"
    );
}

/// A program on a noexec mount: 126 and "Permission denied", in-process and
/// through the daemon.
#[test]
fn a_program_on_a_noexec_mount_is_refused() {
    let dir = Dir::new();
    let _daemon = dir.daemon(serde_json::json!({}));
    let mnt = NoexecMount::new(dir.path("noexec"));
    let prog = mnt.0.join("attrs");
    fs::copy(attrs_static(), &prog).expect("copy");
    assert_execve_refuses(&prog);
    let run = zygote_cli(["run".as_ref(), "--".as_ref(), prog.as_os_str()]);
    let via = dir.spawn_as(0, &prog, None);
    for out in [run, via] {
        assert_eq!(out.code, 126, "{out}");
        assert!(out.stderr_str().contains("Permission denied"), "{out}");
    }
}

/// `wx_exit.c` linked into one read-write-execute PT_LOAD (checked).
fn wx_program() -> PathBuf {
    let ld = format!("-Wl,-T,{}", c_src("wx_exit.ld").display());
    let prog = cc_cached(&c_src("wx_exit.c"), "wx_exit", &["-nostdlib", "-static", "-no-pie", "-O2", &ld], &[]);
    let phdrs = readelf(&["-l"], &prog);
    let loads: Vec<&str> = phdrs.lines().filter(|l| l.trim_start().starts_with("LOAD")).collect();
    assert!(loads.len() == 1 && loads[0].contains(" RWE "), "{} should have one RWE PT_LOAD:\n{phdrs}", prog.display());
    prog
}

/// A program whose text segment is writable and executable maps nothing
/// from its file with PROT_EXEC (zygote seals a copy of a writable segment),
/// so on a noexec mount the kernel's own mmap check never sees it: the mount
/// check must refuse it, in-process and for a raw client request (the
/// requester's fd, no CLI in between) alike, as execve does.
#[test]
fn a_writable_executable_program_on_a_noexec_mount_is_refused() {
    let dir = Dir::new();
    let daemon = dir.daemon(serde_json::json!({}));
    let wx = wx_program();
    // Elsewhere it runs, both ways: a refusal below is the mount's doing.
    let ok = dir.copy(&wx, "wx", 0o755);
    let run = zygote_cli(["run".as_ref(), "--".as_ref(), ok.as_os_str()]);
    let via = remote_run(&mut daemon.client(), &ok, &[], b"").unwrap_or_else(|e| panic!("{e}"));
    for out in [run, via] {
        assert_eq!((out.code, out.stdout_str().as_str()), (42, "wx\n"), "{out}");
    }

    let mnt = NoexecMount::new(dir.path("noexec"));
    let prog = mnt.0.join("wx");
    fs::copy(&wx, &prog).expect("copy");
    assert_execve_refuses(&prog);
    let run = zygote_cli(["run".as_ref(), "--".as_ref(), prog.as_os_str()]);
    assert_eq!(run.code, 126, "{run}");
    assert!(run.stderr_str().contains("Permission denied"), "{run}");
    let mut client = daemon.client();
    let r = remote_spawn(&mut client, spawn_args(&prog, &[]), [dev_null(), dev_null(), dev_null()]);
    match r {
        Err(ClientError::Server { code: ErrorCode::PermissionDenied, message }) => {
            assert!(message.contains("Permission denied"), "{message}");
        }
        other => panic!("a raw Spawn of a W+X program on a noexec mount: {other:?}\n{}", daemon.log_tail(2000)),
    }
    // The connection still serves.
    let again = remote_run(&mut client, &ok, &[], b"").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.code, 42, "{again}");
}

/// Duplicate fd targets are a request error; launchers stay on.
#[test]
fn duplicate_fd_targets_are_refused_and_change_nothing() {
    let dir = Dir::new();
    let daemon = dir.daemon(serde_json::json!({ "prestarted_launchers": 2 }));
    let prog = dir.copy(&attrs_static(), "attrs", 0o755);
    for _ in 0..2 {
        assert_eq!(dir.spawn_as(0, &prog, None).code, 0);
    }
    let before = daemon.stats();
    let mut client = daemon.client();
    let mut args = spawn_args(&prog, &[]);
    args.fds = vec![0, 0, 0];
    let r = remote_spawn(&mut client, args, [dev_null(), dev_null(), dev_null()]);
    assert!(matches!(r, Err(ClientError::Server { code: ErrorCode::BadRequest, .. })), "{r:?}");
    let after = daemon.stats();
    assert_eq!(after.launchers.capacity, before.launchers.capacity, "{after:?}");
    assert!(after.launchers.capacity > 0, "{after:?}");
}

/// A spawn that passes no fds gets /dev/null as stdio, never the daemon's
/// own (its log).
#[test]
fn stdio_not_passed_is_dev_null() {
    let dir = Dir::new();
    let daemon = dir.daemon(serde_json::json!({}));
    let out = dir.path("fds.txt");
    let script = format!("readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2 | cat > {}", out.display());
    let sh = Path::new("/bin/sh");
    let mut args = spawn_args(sh, &["-c", &script]);
    args.fds = vec![];
    let mut client = daemon.client();
    let fd = fs::File::open(sh).expect("open sh");
    let (reply, _) = client.call(&zygote::service::message::Request::Spawn(args), &[fd.as_fd()]).expect("spawn");
    let zygote::service::message::Response::Spawned { pid, .. } = reply else { panic!("{reply:?}") };
    assert_eq!(remote_wait(&mut client, pid).expect("wait"), 0);
    let text = fs::read_to_string(&out).expect("read output");
    assert_eq!(text, "/dev/null\n/dev/null\n/dev/null\n", "{}", daemon.log_tail(2000));
}

/// A daemon that is not root refuses to serve other uids (it would run their
/// programs as its own).
#[test]
fn a_daemon_that_is_not_root_refuses_allowed_uids() {
    let dir = Dir::new();
    let cfg = write_config(&dir.path("foreign.json"), serde_json::json!({ "allowed_uids": [0] }));
    let exe = dir.copy(Path::new(zygote_bin()), "zygote", 0o755);
    let mut cmd = Command::new(exe);
    cmd.arg("daemon").arg("--config").arg(&cfg).arg("--socket").arg(dir.path("nobody.sock"));
    let out = run_as(&mut cmd, NOBODY, None);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr_str().contains("allowed_uids"), "{out}");
}

/// How the daemon tells whether an image-requesting client sees the file
/// system as it does (`procfs::same_mounts`, which decides whether the
/// image's library paths must be checked under `/proc/PID/root`): a process
/// chrooted into a directory does not, and passing that directory as its
/// root changes nothing; passing our own root does, since a process of our
/// mount namespace holding our root can reach every path we can.
#[test]
fn a_chrooted_client_is_told_apart_by_its_root() {
    use zygote_linux::procfs::same_mounts;
    let dir = std::env::temp_dir().join(format!("zt-chroot-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("mkdir");
    fs::copy(static_pie("daemon_sleep.c"), dir.join("prog")).expect("copy");
    let mut cmd = Command::new("chroot");
    cmd.arg(&dir).args(["/prog", "sleep", "60000", "0"]).stdout(std::process::Stdio::piped());
    let mut child = StdChildGuard(Some(cmd.spawn().expect("chroot")));
    let out = child.0.as_mut().and_then(|c| c.stdout.take()).expect("stdout");
    let pid = pid_in(&Lines::new(out).next(DEADLINE).expect("the program starts"), "started ");
    let _guard = PidGuard(pid);
    let raw = rustix::process::Pid::from_raw(pid).expect("pid");
    let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()).expect("pidfd");
    let (inner, ours) = (fs::File::open(&dir).expect("open dir"), fs::File::open("/").expect("open /"));
    assert!(!same_mounts(pid, Some(pidfd.as_fd()), None), "chrooted: /proc/PID/root is not our root");
    assert!(!same_mounts(pid, Some(pidfd.as_fd()), Some(inner.as_fd())), "its root passed as its root");
    assert!(same_mounts(pid, Some(pidfd.as_fd()), Some(ours.as_fd())), "our root passed: it reaches what we do");
    let me = std::process::id() as i32;
    assert!(same_mounts(me, None, None) && same_mounts(me, None, Some(ours.as_fd())), "we see what we see");
    kill_pid(pid, libc::SIGKILL).expect("kill");
    let _ = child.0.take().map(|mut c| c.wait());
    let _ = fs::remove_dir_all(&dir);
}
