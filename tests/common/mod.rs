//! Shared helpers for the zygote integration tests.
//!
//! Every test binary includes this module with `mod common;` and uses a
//! subset of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use zygote_linux::{Child, ExitStatus, SpawnRequest, Zygote};

/// Safety deadline for anything that should finish quickly. Never used to
/// assert speed: only to turn a hang into a clear failure.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Path of the `zygote` binary under test.
pub fn zygote_bin() -> &'static str {
    env!("CARGO_BIN_EXE_zygote")
}

/// Path of a C source under `tests/c/`.
pub fn c_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c").join(name)
}

/// A build directory unique to this test process, under `CARGO_TARGET_TMPDIR`.
/// Directories left behind by earlier test processes that are no longer
/// alive are removed the first time this is called.
pub fn build_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(root).expect("create CARGO_TARGET_TMPDIR");
        if let Ok(entries) = fs::read_dir(root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix("zt-") else {
                    continue;
                };
                let Some(pid) = rest.rsplit('-').next() else {
                    continue;
                };
                if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let exe = std::env::current_exe().expect("current_exe");
        let stem = exe.file_stem().map(|s| s.to_string_lossy().replace('-', "_")).unwrap_or_else(|| "test".to_string());
        let dir = root.join(format!("zt-{stem}-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create per-process build dir");
        dir
    })
}

/// A fresh path inside [`build_dir`] (unique per call).
pub fn unique_path(stem: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    build_dir().join(format!("{stem}-{n}"))
}

/// A fresh directory inside [`build_dir`].
pub fn unique_dir(stem: &str) -> PathBuf {
    let d = unique_path(stem);
    fs::create_dir_all(&d).expect("create unique dir");
    d
}

/// Run a build tool; panic with its full output if it fails.
pub fn run_tool(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Compile `src` with gcc into `build_dir()/out_name` with `flags`
/// (flags go before the source, libraries after it).
pub fn cc(src: &Path, out_name: &str, flags: &[&str], libs: &[&str]) -> PathBuf {
    let out = build_dir().join(out_name);
    run_tool(Command::new("gcc").args(flags).arg(src).args(libs).arg("-o").arg(&out));
    out
}

/// Like [`cc`], but compiles each distinct `out_name` only once per test
/// process, so tests running in parallel can share binaries.
pub fn cc_cached(src: &Path, out_name: &str, flags: &[&str], libs: &[&str]) -> PathBuf {
    static CACHE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(out_name) {
        return p.clone();
    }
    let p = cc(src, out_name, flags, libs);
    map.insert(out_name.to_string(), p.clone());
    p
}

/// A glibc static-PIE build of a C source under `tests/c/` (cached).
pub fn static_pie(c_name: &str) -> PathBuf {
    let stem = c_name.trim_end_matches(".c");
    cc_cached(&c_src(c_name), &format!("{stem}.spie"), &["-static-pie", "-O2", "-pthread"], &["-lm"])
}

/// The four builds of `spie_test.c` the run-equivalence tests use.
#[derive(Clone, Copy, Debug)]
pub enum Variant {
    GlibcStaticPie,
    GlibcStaticPieRelr,
    GlibcStatic,
    MuslStaticPie,
}

/// Build `spie_test.c` as `variant`, checking the result has the expected shape.
pub fn build_spie_test(variant: Variant) -> PathBuf {
    let src = c_src("spie_test.c");
    let libs = ["-lm"];
    let out = match variant {
        Variant::GlibcStaticPie => cc_cached(&src, "spie_test.glibc-spie", &["-static-pie", "-O2", "-pthread"], &libs),
        Variant::GlibcStaticPieRelr => {
            let p = cc_cached(
                &src,
                "spie_test.glibc-spie-relr",
                &["-static-pie", "-O2", "-pthread", "-Wl,-z,pack-relative-relocs"],
                &libs,
            );
            let dynamic = readelf(&["-d"], &p);
            assert!(
                dynamic.contains("(RELR)"),
                "{} was linked with -z pack-relative-relocs but has no DT_RELR:\n{dynamic}",
                p.display()
            );
            p
        }
        Variant::GlibcStatic => {
            cc_cached(&src, "spie_test.glibc-static", &["-static", "-no-pie", "-O2", "-pthread"], &libs)
        }
        Variant::MuslStaticPie => musl_static_pie(&src, "spie_test.musl-spie"),
    };
    let header = readelf(&["-h"], &out);
    let want = match variant {
        Variant::GlibcStatic => "EXEC",
        _ => "DYN",
    };
    assert!(
        header.lines().any(|l| l.contains("Type:") && l.contains(want)),
        "{} ({variant:?}) is not ELF type {want}:\n{header}",
        out.display()
    );
    assert!(!has_interp(&out), "{} ({variant:?}) has a PT_INTERP: not static", out.display());
    out
}

/// A musl static-PIE build of `src` (cached by `out_name`).
///
/// Debian's `musl-gcc -static-pie` silently produces a dynamic PIE (its specs
/// file overrides the link spec), so compile with `-fPIE`, try the driver,
/// and if the result has a PT_INTERP link by hand with musl's `rcrt1.o`.
pub fn musl_static_pie(src: &Path, out_name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = build_dir().join(out_name);
    if out.exists() {
        return out;
    }
    let obj = build_dir().join(format!("{out_name}.o"));
    run_tool(Command::new("musl-gcc").args(["-fPIE", "-O2", "-c"]).arg(src).arg("-o").arg(&obj));
    let first = build_dir().join(format!("{out_name}.driver"));
    run_tool(Command::new("musl-gcc").arg("-static-pie").arg(&obj).arg("-o").arg(&first));
    if !has_interp(&first) {
        fs::rename(&first, &out).expect("rename musl binary");
        return out;
    }
    let musl = musl_lib_dir();
    let libgcc = PathBuf::from(run_tool(Command::new("gcc").arg("-print-libgcc-file-name")).trim().to_string());
    let gccdir = libgcc.parent().expect("libgcc dir").to_path_buf();
    run_tool(
        Command::new("gcc")
            .args(["-static-pie", "-nostdlib", "-nostartfiles"])
            .arg(musl.join("rcrt1.o"))
            .arg(musl.join("crti.o"))
            .arg(gccdir.join("crtbeginS.o"))
            .arg(&obj)
            .arg("-L")
            .arg(&musl)
            .arg("-lc")
            .arg(&libgcc)
            .arg(musl.join("libc.a"))
            .arg(gccdir.join("crtendS.o"))
            .arg(musl.join("crtn.o"))
            .arg("-o")
            .arg(&out),
    );
    assert!(!has_interp(&out), "manual musl static-PIE link of {} still has PT_INTERP", out.display());
    out
}

fn musl_lib_dir() -> PathBuf {
    for d in ["/usr/lib/musl/lib", "/usr/lib/x86_64-linux-musl", "/usr/local/musl/lib"] {
        let d = Path::new(d);
        if d.join("rcrt1.o").exists() {
            return d.to_path_buf();
        }
    }
    panic!("musl rcrt1.o not found (looked in /usr/lib/musl/lib, /usr/lib/x86_64-linux-musl)");
}

/// `readelf ARGS PATH` (wide output); panics if readelf fails.
pub fn readelf(args: &[&str], path: &Path) -> String {
    run_tool(Command::new("readelf").arg("-W").args(args).arg(path))
}

/// Whether the ELF file has a PT_INTERP program header.
pub fn has_interp(path: &Path) -> bool {
    readelf(&["-l"], path).lines().any(|l| l.trim_start().starts_with("INTERP"))
}

/// Value of a dynamic tag such as `RELACOUNT` from `readelf -d`.
pub fn dynamic_tag(path: &Path, tag: &str) -> Option<u64> {
    let want = format!("({tag})");
    readelf(&["-d"], path).lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let _addr = it.next()?;
        if it.next()? != want {
            return None;
        }
        let v = it.next()?;
        if let Some(h) = v.strip_prefix("0x") { u64::from_str_radix(h, 16).ok() } else { v.parse().ok() }
    })
}

/// Flush written files (freshly written, unsynced pages show as dirty in smaps).
pub fn sync() {
    rustix::fs::sync();
}

/// Write `contents` to `path` with mode `mode`.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// What a program run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Shell-style status: exit code, or 128 + signal number.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Outcome {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status {}\n--- stdout ---\n{}--- stderr ---\n{}", self.code, self.stdout_str(), self.stderr_str())
    }
}

/// Shell-style code of a std exit status.
pub fn std_shell_code(st: std::process::ExitStatus) -> i32 {
    match (st.code(), st.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => panic!("exit status with neither code nor signal: {st:?}"),
    }
}

/// Shell-style code of a library exit status (computed by the test, not by
/// `ExitStatus::shell_code`, so that one can be checked against it).
pub fn lib_shell_code(st: &ExitStatus) -> i32 {
    match st {
        ExitStatus::Exited(c) => *c,
        ExitStatus::Signaled(s) => 128 + *s,
    }
}

/// Human-readable library exit status.
pub fn describe(st: &ExitStatus) -> String {
    match st {
        ExitStatus::Exited(c) => format!("Exited({c})"),
        ExitStatus::Signaled(s) => format!("Signaled({s})"),
    }
}

/// Read a pipe to EOF on a helper thread.
pub fn spawn_reader(r: impl Read + Send + 'static) -> mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut r = r;
        let mut buf = Vec::new();
        let res = r.read_to_end(&mut buf).map(|_| buf);
        // close the pipe before reporting, so a caller that counts its fds
        // after collecting does not race with this thread
        drop(r);
        let _ = tx.send(res);
    });
    rx
}

/// Wait for a reader started with [`spawn_reader`]; panics on timeout.
pub fn collect(rx: mpsc::Receiver<io::Result<Vec<u8>>>, what: &str) -> Vec<u8> {
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("reading {what}: {e}"),
        Err(_) => panic!(
            "{what} did not reach EOF within {DEADLINE:?} after the process exited \
             (a write end leaked to another process, or to the spawner itself?)"
        ),
    }
}

/// Kills (SIGKILL) and reaps a std child on drop unless it was waited for.
pub struct StdChildGuard(pub Option<std::process::Child>);

impl Drop for StdChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run a command with stdin from /dev/null, capturing stdout and stderr,
/// with a safety deadline. Retries on ETXTBSY (a file written by this
/// multi-threaded process may briefly be open in a concurrently forked child).
pub fn run_command(cmd: &mut Command) -> Outcome {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut tries = 0;
    let child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot spawn {cmd:?}: {e}"),
        }
    };
    wait_for_outcome(cmd, StdChildGuard(Some(child)))
}

/// Wait for the child of `cmd` (stdout and stderr piped), with the safety
/// deadline (the guard kills it past that), and collect its outcome.
fn wait_for_outcome(cmd: &Command, mut guard: StdChildGuard) -> Outcome {
    let c = guard.0.as_mut().expect("child present");
    let out_rx = spawn_reader(c.stdout.take().expect("stdout piped"));
    let err_rx = spawn_reader(c.stderr.take().expect("stderr piped"));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = c.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > DEADLINE {
            panic!("{cmd:?} still running after {DEADLINE:?}; killed");
        }
        thread::sleep(Duration::from_millis(5));
    };
    guard.0 = None;
    Outcome { code: std_shell_code(status), stdout: collect(out_rx, "stdout"), stderr: collect(err_rx, "stderr") }
}

/// Run `zygote ARGS...` (the CLI).
pub fn zygote_cli<I, S>(args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_command(Command::new(zygote_bin()).args(args))
}

/// `zygote run [--clear-env] [--env K=V]... -- PROG ARGS...`; with
/// `clear_env` the child's environment is exactly `env`.
pub fn zygote_run(prog: &Path, args: &[&str], env: &[(&str, &str)], clear_env: bool) -> Outcome {
    let mut cli: Vec<OsString> = vec!["run".into()];
    if clear_env {
        cli.push("--clear-env".into());
    }
    for (k, v) in env {
        cli.push("--env".into());
        cli.push(format!("{k}={v}").into());
    }
    cli.push("--".into());
    cli.push(prog.into());
    cli.extend(args.iter().map(OsString::from));
    zygote_cli(cli)
}

/// Run PROG directly the same way [`zygote_run`] would.
pub fn direct_run(prog: &Path, args: &[&str], env: &[(&str, &str)], clear_env: bool) -> Outcome {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    if clear_env {
        cmd.env_clear();
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_command(&mut cmd)
}

/// A new `Zygote` with the default cache configuration.
pub fn new_zygote() -> Zygote {
    Zygote::new(zygote_core::CacheConfig::default()).expect("Zygote::new(CacheConfig::default())")
}

/// Kills (SIGKILL) and reaps a library child on drop unless it was waited for.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn new(c: Child) -> Self {
        ChildGuard(Some(c))
    }
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child already reaped")
    }
    pub fn pid(&self) -> i32 {
        self.0.as_ref().expect("child already reaped").pid()
    }
    /// Wait (with the safety deadline) and disarm the guard.
    pub fn wait(&mut self) -> ExitStatus {
        let st = wait_deadline(self.child(), DEADLINE);
        self.0 = None;
        st
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill(libc::SIGKILL);
            let _ = c.wait();
        }
    }
}

/// Wait for a library child, but SIGKILL it and panic if it has not exited
/// by `deadline` (a safety net against hangs, not a timing assertion).
pub fn wait_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    use rustix::event::{PollFd, PollFlags, poll};
    let start = Instant::now();
    loop {
        let exited = {
            let pidfd = child.pidfd();
            let mut fds = [PollFd::from_borrowed_fd(pidfd, PollFlags::IN)];
            let ts = rustix::event::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
            match poll(&mut fds, Some(&ts)) {
                Ok(n) => n > 0,
                Err(rustix::io::Errno::INTR) => false,
                Err(e) => panic!("poll(pidfd of {}): {e}", child.pid()),
            }
        };
        if exited {
            break;
        }
        if start.elapsed() > deadline {
            let pid = child.pid();
            let _ = child.kill(libc::SIGKILL);
            let _ = child.wait();
            panic!("child {pid} still running after {deadline:?}; killed");
        }
    }
    child.wait().expect("Child::wait")
}

/// Open /dev/null (read-write) as an owned fd.
pub fn dev_null() -> OwnedFd {
    fs::OpenOptions::new().read(true).write(true).open("/dev/null").expect("open /dev/null").into()
}

/// A CLOEXEC pipe as (read end, write end).
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = io::pipe().expect("pipe");
    (r.into(), w.into())
}

/// Spawn via the library with stdin = /dev/null and stdout/stderr piped
/// back to the test; wait (with the safety deadline) and collect output.
pub fn lib_run(z: &Zygote, req: SpawnRequest) -> (ExitStatus, Outcome) {
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let req = req.fd(dev_null(), 0).fd(out_w, 1).fd(err_w, 2);
    let child = z.spawn(req).unwrap_or_else(|e| panic!("Zygote::spawn failed: {e}"));
    let mut g = ChildGuard::new(child);
    let out_rx = spawn_reader(fs::File::from(out_r));
    let err_rx = spawn_reader(fs::File::from(err_r));
    let st = g.wait();
    let outcome = Outcome {
        code: lib_shell_code(&st),
        stdout: collect(out_rx, "child stdout pipe"),
        stderr: collect(err_rx, "child stderr pipe"),
    };
    (st, outcome)
}

/// A library child whose stdout is piped to the test and read line by line.
pub struct LiveChild {
    pub guard: ChildGuard,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl LiveChild {
    /// Spawn `req` with stdin /dev/null, stdout piped, stderr inherited.
    pub fn spawn(z: &Zygote, req: SpawnRequest) -> LiveChild {
        let (out_r, out_w) = pipe();
        let stderr: OwnedFd = io::stderr().as_fd().try_clone_to_owned().expect("dup stderr");
        let req = req.fd(dev_null(), 0).fd(out_w, 1).fd(stderr, 2);
        let child = z.spawn(req).unwrap_or_else(|e| panic!("Zygote::spawn failed: {e}"));
        let guard = ChildGuard::new(child);
        let (tx, rx) = mpsc::channel();
        let file = fs::File::from(out_r);
        thread::spawn(move || {
            use std::io::BufRead;
            for line in io::BufReader::new(file).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        LiveChild { guard, lines: rx, seen: Vec::new() }
    }

    /// Wait until the child prints exactly `want` on a line; panics (the
    /// guard then kills it) if it exits or stays silent past the deadline.
    pub fn wait_for_line(&mut self, want: &str) {
        let start = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l == want;
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "pid {}: no {want:?} line within {DEADLINE:?}; output so far: {:?}",
                    self.guard.pid(),
                    self.seen
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("pid {}: stdout closed before {want:?}; output: {:?}", self.guard.pid(), self.seen)
                }
            }
        }
    }

    /// All remaining stdout lines (after the child exited).
    pub fn rest(&mut self) -> Vec<String> {
        let start = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.seen.clone(),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("stdout pipe never reached EOF (write end leaked?)")
                }
            }
        }
    }
}

/// Number of entries in /proc/self/fd (not counting the directory's own fd).
pub fn count_fds() -> usize {
    // read_dir's own fd shows up in the listing; subtract it.
    fs::read_dir("/proc/self/fd").expect("read /proc/self/fd").count() - 1
}

/// `fd->target` for every entry of /proc/self/fd, sorted (for messages;
/// includes the listing's own directory fd, like [`count_fds`] before the -1).
pub fn list_fds() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .flatten()
        .map(|e| {
            let target = fs::read_link(e.path()).map(|t| t.display().to_string()).unwrap_or_else(|_| "?".into());
            format!("{}->{}", e.file_name().to_string_lossy(), target)
        })
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// ELF64 little-endian header patching (by hand, for the bad-input tests)
// ---------------------------------------------------------------------------

pub const PT_LOAD: u32 = 1;

/// A decoded ELF64 program header and where it lives in the file.
#[derive(Clone, Copy, Debug)]
pub struct Phdr {
    pub file_off: usize,
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_paddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

pub fn rd_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().expect("2 bytes"))
}
pub fn rd_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
pub fn rd_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}
pub fn wr_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn wr_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn wr_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Program headers of an ELF64 LE file (panics if it is not one).
pub fn phdrs(b: &[u8]) -> Vec<Phdr> {
    assert!(b.len() >= 64 && &b[..4] == b"\x7fELF" && b[4] == 2 && b[5] == 1, "not an ELF64 LE file");
    let phoff = rd_u64(b, 0x20) as usize;
    let phentsize = rd_u16(b, 0x36) as usize;
    let phnum = rd_u16(b, 0x38) as usize;
    assert_eq!(phentsize, 56, "e_phentsize");
    (0..phnum)
        .map(|i| {
            let o = phoff + i * phentsize;
            Phdr {
                file_off: o,
                p_type: rd_u32(b, o),
                p_flags: rd_u32(b, o + 4),
                p_offset: rd_u64(b, o + 8),
                p_vaddr: rd_u64(b, o + 0x10),
                p_paddr: rd_u64(b, o + 0x18),
                p_filesz: rd_u64(b, o + 0x20),
                p_memsz: rd_u64(b, o + 0x28),
                p_align: rd_u64(b, o + 0x30),
            }
        })
        .collect()
}

/// Write a (modified) program header back to its place in the file.
pub fn write_phdr(b: &mut [u8], p: &Phdr) {
    let o = p.file_off;
    wr_u32(b, o, p.p_type);
    wr_u32(b, o + 4, p.p_flags);
    wr_u64(b, o + 8, p.p_offset);
    wr_u64(b, o + 0x10, p.p_vaddr);
    wr_u64(b, o + 0x18, p.p_paddr);
    wr_u64(b, o + 0x20, p.p_filesz);
    wr_u64(b, o + 0x28, p.p_memsz);
    wr_u64(b, o + 0x30, p.p_align);
}

/// The PT_LOAD headers, in file order.
pub fn loads(b: &[u8]) -> Vec<Phdr> {
    phdrs(b).into_iter().filter(|p| p.p_type == PT_LOAD).collect()
}

// ---------------------------------------------------------------------------
// /proc/PID/smaps
// ---------------------------------------------------------------------------

/// One mapping from /proc/PID/smaps with its kB fields.
#[derive(Clone, Debug, Default)]
pub struct SmapsEntry {
    pub start: u64,
    pub end: u64,
    pub header: String,
    pub fields: HashMap<String, u64>,
}

impl SmapsEntry {
    pub fn kb(&self, field: &str) -> u64 {
        self.fields.get(field).copied().unwrap_or(0)
    }
}

/// Parse /proc/PID/smaps.
pub fn smaps(pid: i32) -> Vec<SmapsEntry> {
    let path = format!("/proc/{pid}/smaps");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut out: Vec<SmapsEntry> = Vec::new();
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
        {
            out.push(SmapsEntry { start, end, header: line.to_string(), fields: HashMap::new() });
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            let mut it = v.split_whitespace();
            if let (Some(n), Some("kB")) = (it.next(), it.next())
                && let (Some(e), Ok(n)) = (out.last_mut(), n.parse::<u64>())
            {
                e.fields.insert(k.trim().to_string(), n);
            }
        }
    }
    out
}

/// One-line summary of cache statistics for assertion messages.
pub fn stats_line(s: &zygote_core::CacheStats) -> String {
    format!(
        "entries={} bytes={} max_entries={} max_bytes={} hits={} misses={} evictions={} builds={}",
        s.entries, s.bytes, s.max_entries, s.max_bytes, s.hits, s.misses, s.evictions, s.builds
    )
}

/// Send `sig` to the child, panicking with context on failure.
pub fn signal(child: &Child, sig: i32) {
    child.kill(sig).unwrap_or_else(|e| panic!("kill({}, {sig}): {e}", child.pid()));
}

// ---------------------------------------------------------------------------
// The daemon (`zygote daemon`), its clients and its protocol
// ---------------------------------------------------------------------------

use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;

use zygote::service::client::{Client, ClientError};
use zygote::service::frame::{FrameReader, HEADER_SIZE, MAGIC, ReadStatus};
use zygote::service::message::{DaemonStats, Hello, Limits, PROTOCOL_VERSION, Request, Response, SpawnArgs, Welcome};

/// How long a condition that the daemon brings about asynchronously (a
/// reaped child, a closed connection) may take before a test gives up. A
/// safety net against hangs, not a timing assertion: a passing test never
/// waits for it.
pub const SETTLE: Duration = Duration::from_secs(20);

/// A socket path for a test daemon, unique per call. Inside [`build_dir`]
/// when it fits in `sun_path` (108 bytes), else in a fresh directory under
/// the system temp dir.
pub fn socket_path(stem: &str) -> PathBuf {
    let p = unique_path(&format!("{stem}.sock"));
    if p.as_os_str().len() < 100 {
        return p;
    }
    let d = std::env::temp_dir().join(format!("zt-sock-{}", std::process::id()));
    fs::create_dir_all(&d).expect("create short socket dir");
    let p = d.join(p.file_name().expect("socket file name"));
    assert!(p.as_os_str().len() < 100, "no short socket path available: {}", p.display());
    p
}

/// Poll `check` until it returns `Ok`, for at most `limit`; panic with the
/// last `Err` (and `what`) if it never does.
pub fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > limit => panic!("{what}: still not true after {limit:?}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Send `sig` to a process by pid.
pub fn kill_pid(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, sig) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// State letter (`R`, `S`, `Z`, ...) and parent pid of a process, from
/// /proc/PID/stat; `None` if it does not exist (anymore).
pub fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` exists and is not a zombie.
pub fn pid_running(pid: i32) -> bool {
    matches!(proc_stat(pid), Some((s, _)) if s != 'Z' && s != 'X')
}

/// `(pid, state)` of every process whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Some((state, parent)) = proc_stat(pid)
            && parent == ppid
        {
            out.push((pid, state));
        }
    }
    out.sort();
    out
}

/// Number of open fds of another process (entries of /proc/PID/fd).
pub fn fd_count_of(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}")).count()
}

/// `fd->target` of every open fd of another process (for messages).
pub fn fd_list_of(pid: i32) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let t = fs::read_link(e.path()).map(|t| t.display().to_string()).unwrap_or_else(|_| "?".into());
                    format!("{}->{}", e.file_name().to_string_lossy(), t)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|s| s.split("->").next().and_then(|n| n.parse::<u32>().ok()).unwrap_or(u32::MAX));
    v
}

/// Kills (SIGKILL) a process by pid on drop if it still runs: for processes
/// the daemon started that a failing test might leave behind.
pub struct PidGuard(pub i32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if self.0 > 0 && pid_running(self.0) {
            let _ = kill_pid(self.0, libc::SIGKILL);
        }
    }
}

/// A `zygote daemon` started by a test, on its own socket. Dropping it sends
/// SIGTERM, then SIGKILL if it has not exited shortly after, and reaps it.
pub struct Daemon {
    child: Option<std::process::Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
    status: Option<std::process::ExitStatus>,
}

impl Daemon {
    /// `zygote daemon --socket SOCKET EXTRA...`, waiting until it serves.
    pub fn start(socket: &Path, extra: &[&OsStr]) -> Daemon {
        let d = Self::spawn(socket, extra);
        d.wait_ready();
        d
    }

    /// Start the daemon process without waiting for it to serve.
    pub fn spawn(socket: &Path, extra: &[&OsStr]) -> Daemon {
        let log = PathBuf::from(format!("{}.log", socket.display()));
        let log_file = fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let mut cmd = Command::new(zygote_bin());
        cmd.arg("daemon").arg("--socket").arg(socket).args(extra);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Daemon { child: Some(child), socket: socket.to_path_buf(), log, status: None }
    }

    /// Wait until a client can connect and shake hands.
    pub fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if Client::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(st) = self.child.as_ref().and_then(|c| proc_stat(c.id() as i32).filter(|s| s.0 == 'Z')) {
                panic!("the daemon exited before serving ({st:?}); its log:\n{}", self.log_text());
            }
            assert!(start.elapsed() < DEADLINE, "the daemon did not serve within {DEADLINE:?}:\n{}", self.log_text());
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("daemon already reaped").id() as i32
    }

    /// What the daemon logged so far (its stderr).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `max` bytes (or so) of the log, for failure messages.
    pub fn log_tail(&self, max: usize) -> String {
        let log = self.log_text();
        let mut start = log.len().saturating_sub(max);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        log[start..].to_string()
    }

    /// A connected, handshaken library client.
    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
            .unwrap_or_else(|e| panic!("connect to the daemon at {}: {e}\n{}", self.socket.display(), self.log_text()))
    }

    /// `Request::Stats` on a fresh connection.
    pub fn stats(&self) -> DaemonStats {
        match self.client().call(&Request::Stats, &[]) {
            Ok((Response::Stats(s), _)) => s,
            other => panic!("Stats: {other:?}"),
        }
    }

    /// Send a signal to the daemon.
    pub fn signal(&self, sig: i32) {
        kill_pid(self.pid(), sig).unwrap_or_else(|e| panic!("kill(daemon {}, {sig}): {e}", self.pid()));
    }

    /// Wait for the daemon to exit (it was told to); SIGKILL and panic if it
    /// has not within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        let c = self.child.as_mut().expect("daemon child");
        let start = Instant::now();
        loop {
            if let Some(st) = c.try_wait().expect("try_wait on the daemon") {
                self.status = Some(st);
                self.child = None;
                return st;
            }
            if start.elapsed() > limit {
                let _ = c.kill();
                let _ = c.wait();
                self.child = None;
                panic!("the daemon did not exit within {limit:?}; killed. Its log:\n{}", self.log_text());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Number of fds the daemon has open.
    pub fn fd_count(&self) -> usize {
        fd_count_of(self.pid())
    }

    /// The daemon's children that are zombies (exited, not reaped).
    pub fn zombies(&self) -> Vec<i32> {
        children_of(self.pid()).into_iter().filter(|(_, s)| *s == 'Z').map(|(p, _)| p).collect()
    }

    /// Wait until the daemon has no unreaped children, no running children
    /// and exactly `open` open connections (counting the one asking).
    pub fn wait_quiet(&self, open: u64) {
        let mut client = self.client();
        self.wait_quiet_with(&mut client, open);
    }

    /// [`Daemon::wait_quiet`], asking on `client`.
    pub fn wait_quiet_with(&self, client: &mut Client, open: u64) {
        eventually("daemon quiet (no live children, no zombies, no stray connections)", SETTLE, || {
            let z = self.zombies();
            let s = match client.call(&Request::Stats, &[]) {
                Ok((Response::Stats(s), _)) => s,
                other => panic!("Stats: {other:?}"),
            };
            if z.is_empty() && s.live_children == 0 && s.open_connections == open {
                Ok(())
            } else {
                Err(format!(
                    "zombies {z:?}, live_children {}, open_connections {} (want {open}); children {:?}",
                    s.live_children,
                    s.open_connections,
                    children_of(self.pid())
                ))
            }
        })
    }

    /// The daemon's fd count once it is quiet with only `client` connected.
    pub fn quiet_fd_count(&self, client: &mut Client) -> usize {
        self.wait_quiet_with(client, 1);
        self.fd_count()
    }

    /// Wait until the daemon's fd count is at most `limit` (it closes
    /// connections asynchronously); panic listing its fds if it never is.
    pub fn expect_fds_at_most(&self, limit: usize, context: &str) {
        eventually(&format!("{context}: daemon fd count <= {limit}"), SETTLE, || {
            let n = self.fd_count();
            if n <= limit { Ok(()) } else { Err(format!("{n} fds open: {:?}", fd_list_of(self.pid()))) }
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let _ = kill_pid(c.id() as i32, libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// `SpawnArgs` for `PROG ARGS...` with stdio at fds 0, 1 and 2 and a small
/// fixed environment.
pub fn spawn_args(prog: &Path, args: &[&str]) -> SpawnArgs {
    let mut argv = vec![prog.as_os_str().as_bytes().to_vec()];
    argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    SpawnArgs {
        argv,
        environ: vec![b"PATH=/usr/bin:/bin".to_vec(), b"ZYGOTE_TEST=1".to_vec()],
        fds: vec![0, 1, 2],
        path: prog.as_os_str().as_bytes().to_vec(),
        ..SpawnArgs::default()
    }
}

/// A Spawn through the library client: the executable (opened here) plus
/// `stdio` as the child's fds 0, 1 and 2. Returns the pid and the pidfd the
/// daemon attached. The caller's copies of `stdio` are closed on return.
pub fn remote_spawn(client: &mut Client, args: SpawnArgs, stdio: [OwnedFd; 3]) -> Result<(i32, OwnedFd), ClientError> {
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(&args.path));
    let exe = fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let fds = [exe.as_fd(), stdio[0].as_fd(), stdio[1].as_fd(), stdio[2].as_fd()];
    let (reply, mut reply_fds) = client.call(&Request::Spawn(args), &fds)?;
    match reply {
        Response::Spawned { pid, .. } if reply_fds.len() == 1 => Ok((pid, reply_fds.remove(0))),
        other => {
            Err(ClientError::Protocol(format!("expected Spawned with one pidfd, got {other:?} with {reply_fds:?}")))
        }
    }
}

/// Shell-style code of an `Exited` reply.
pub fn exited_code(r: &Response) -> Result<i32, String> {
    match r {
        Response::Exited { code: Some(c), signal: None, .. } => Ok(*c),
        Response::Exited { code: None, signal: Some(s), .. } => Ok(128 + s),
        other => Err(format!("expected Exited with a code or a signal, got {other:?}")),
    }
}

/// `Request::Wait` for `pid`; the shell-style status.
pub fn remote_wait(client: &mut Client, pid: i32) -> Result<i32, ClientError> {
    let (reply, _) = client.call(&Request::Wait { pid }, &[])?;
    match &reply {
        Response::Exited { pid: p, .. } if *p == pid => exited_code(&reply).map_err(ClientError::Protocol),
        other => Err(ClientError::Protocol(format!("Wait({pid}): got {other:?}"))),
    }
}

/// A pipe whose read end carries exactly `input` then EOF (the write end is
/// closed). `input` must fit in the pipe buffer.
pub fn input_pipe(input: &[u8]) -> OwnedFd {
    use std::io::Write;
    assert!(input.len() <= 16 * 1024, "input_pipe is for small inputs");
    let (r, w) = pipe();
    fs::File::from(w).write_all(input).expect("write to the stdin pipe");
    r
}

/// Spawn `PROG ARGS` through the daemon with `input` on stdin and stdout
/// and stderr piped back, wait for it (Request::Wait) and collect.
pub fn remote_run(client: &mut Client, prog: &Path, args: &[&str], input: &[u8]) -> Result<Outcome, String> {
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let stdin = input_pipe(input);
    let out_rx = spawn_reader(fs::File::from(out_r));
    let err_rx = spawn_reader(fs::File::from(err_r));
    let (pid, _pidfd) =
        remote_spawn(client, spawn_args(prog, args), [stdin, out_w, err_w]).map_err(|e| format!("Spawn: {e}"))?;
    let _guard = PidGuard(pid);
    let code = remote_wait(client, pid).map_err(|e| format!("Wait({pid}): {e}"))?;
    Ok(Outcome { code, stdout: collect(out_rx, "remote stdout"), stderr: collect(err_rx, "remote stderr") })
}

/// Like [`run_command`], with `input` written to the command's stdin.
pub fn run_command_input(cmd: &mut Command, input: &[u8]) -> Outcome {
    use std::io::Write;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let mut guard = StdChildGuard(Some(child));
    let c = guard.0.as_mut().expect("child present");
    let mut stdin = c.stdin.take().expect("stdin piped");
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        // A program may exit without reading all of it: EPIPE is fine.
        let _ = stdin.write_all(&input);
    });
    let outcome = wait_for_outcome(cmd, guard);
    let _ = writer.join();
    outcome
}

/// A frame header as the protocol lays it out, with any values.
pub fn raw_header(magic: u32, body_len: u32, fd_count: u32) -> [u8; HEADER_SIZE] {
    let mut h = [0u8; HEADER_SIZE];
    h[0..4].copy_from_slice(&magic.to_le_bytes());
    h[4..8].copy_from_slice(&body_len.to_le_bytes());
    h[8..12].copy_from_slice(&fd_count.to_le_bytes());
    h
}

/// A well-formed frame (header + body) announcing `fd_count` fds.
pub fn raw_frame(body: &[u8], fd_count: u32) -> Vec<u8> {
    let mut v = raw_header(MAGIC, body.len() as u32, fd_count).to_vec();
    v.extend_from_slice(body);
    v
}

/// What came back on a raw connection.
#[derive(Debug)]
pub enum Reply {
    /// A decoded response (with the fds attached to it).
    Response(Response, Vec<OwnedFd>),
    /// A frame whose body is not a `Response` (e.g. a `Welcome`).
    Other(Vec<u8>),
    /// The daemon closed the connection (or it broke); the reason.
    Closed(String),
}

/// A connection to the daemon that can send anything, for protocol tests.
pub struct RawConn {
    pub sock: UnixStream,
    reader: FrameReader,
}

impl RawConn {
    pub fn connect(socket: &Path) -> RawConn {
        let sock = UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
        RawConn { sock, reader: FrameReader::new() }
    }

    /// Connect and shake hands (Hello, Welcome).
    pub fn handshake(socket: &Path) -> RawConn {
        let mut c = Self::connect(socket);
        c.send_msg(&Hello { version: PROTOCOL_VERSION }, &[]).expect("send Hello");
        match c.read(DEADLINE) {
            Reply::Other(body) => {
                let _: Welcome = serde_json::from_slice(&body)
                    .unwrap_or_else(|e| panic!("expected Welcome: {e}: {}", String::from_utf8_lossy(&body)));
            }
            other => panic!("expected Welcome, got {other:?}"),
        }
        c
    }

    /// Send raw bytes; `fds` go with the first `sendmsg`.
    pub fn send_bytes(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
        let mut sent = 0;
        let mut first = true;
        while sent < bytes.len() || first {
            let iov = [io::IoSlice::new(&bytes[sent..])];
            let n = if first && !fds.is_empty() {
                let mut space = vec![std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                assert!(control.push(SendAncillaryMessage::ScmRights(fds)), "cmsg buffer too small");
                sendmsg(&self.sock, &iov, &mut control, SendFlags::NOSIGNAL)
            } else {
                sendmsg(&self.sock, &iov, &mut SendAncillaryBuffer::default(), SendFlags::NOSIGNAL)
            };
            match n {
                Ok(n) => sent += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            first = false;
        }
        Ok(())
    }

    /// Send a message as a well-formed frame with `fds`.
    pub fn send_msg<T: serde::Serialize>(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let body = serde_json::to_vec(msg).expect("encode message");
        self.send_bytes(&raw_frame(&body, fds.len() as u32), fds)
    }

    /// Close our sending side (the daemon sees EOF; we can still read).
    pub fn shutdown_write(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }

    /// The next frame, or the connection's end. Panics if neither comes
    /// within `limit` (safety net).
    pub fn read(&mut self, limit: Duration) -> Reply {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let limits = Limits::default();
        let start = Instant::now();
        loop {
            match self.reader.next_frame(&limits) {
                Ok(Some(f)) => return decode_reply(f.body, f.fds),
                Ok(None) => {}
                Err(e) => return Reply::Closed(format!("bad frame from the daemon: {e}")),
            }
            let mut fds = [PollFd::new(&self.sock, PollFlags::IN)];
            let ts = Timespec { tv_sec: 0, tv_nsec: 50_000_000 };
            match poll(&mut fds, Some(&ts)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => {
                    assert!(start.elapsed() < limit, "no reply and no close from the daemon within {limit:?}");
                    continue;
                }
                Ok(_) => {}
                Err(e) => return Reply::Closed(format!("poll: {e}")),
            }
            match self.reader.read_once(self.sock.as_fd()) {
                Ok(ReadStatus::Data) | Ok(ReadStatus::WouldBlock) => {}
                Ok(ReadStatus::Eof) => {
                    return match self.reader.finish(&limits) {
                        Ok(Some(f)) => decode_reply(f.body, f.fds),
                        Ok(None) => Reply::Closed("EOF".into()),
                        Err(e) => Reply::Closed(format!("EOF inside a frame: {e}")),
                    };
                }
                Err(e) => return Reply::Closed(format!("read: {e}")),
            }
        }
    }

    /// Read until the daemon closes the connection, failing if it sends
    /// anything else first.
    pub fn expect_closed(&mut self, context: &str) {
        match self.read(DEADLINE) {
            Reply::Closed(_) => {}
            other => panic!("{context}: expected the daemon to close the connection, got {other:?}"),
        }
    }
}

fn decode_reply(body: Vec<u8>, fds: Vec<OwnedFd>) -> Reply {
    match serde_json::from_slice::<Response>(&body) {
        Ok(r) => Reply::Response(r, fds),
        Err(_) => Reply::Other(body),
    }
}

/// Borrowed fds of a slice of owned ones.
pub fn borrow_all(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|f| f.as_fd()).collect()
}

/// `n` fresh fds (/dev/null) to attach to a frame.
pub fn null_fds(n: usize) -> Vec<OwnedFd> {
    (0..n).map(|_| dev_null()).collect()
}

/// Lines read from a pipe on a helper thread, with a safety deadline.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn new(r: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            use std::io::BufRead;
            for line in io::BufReader::new(r).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen: Vec::new() }
    }

    /// The next line, or `None` at EOF (every write end closed). Panics if
    /// neither comes within `limit`.
    pub fn next(&mut self, limit: Duration) -> Option<String> {
        match self.rx.recv_timeout(limit) {
            Ok(l) => {
                self.seen.push(l.clone());
                Some(l)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("no line and no EOF within {limit:?}; lines so far: {:?}", self.seen)
            }
        }
    }

    /// Whether the pipe reaches EOF within `limit` (after any further lines,
    /// which are kept in `seen`).
    pub fn eof_within(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            match self.rx.recv_timeout(limit.saturating_sub(start.elapsed())) {
                Ok(l) => self.seen.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => return true,
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}

/// Whether `sig` is blocked in the main thread of `pid` (SigBlk of
/// /proc/PID/status).
pub fn sig_blocked(pid: i32, sig: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1u64 << (sig - 1)) != 0)
}

/// The pid in a `started PID` / `ready PID` line of daemon_sleep.c.
pub fn pid_in(line: &str, word: &str) -> i32 {
    line.strip_prefix(word)
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("expected a line `{word} PID`, got {line:?}"))
}

// ---------------------------------------------------------------------------
// Dynamically linked programs (the prototype preparer)
// ---------------------------------------------------------------------------

/// Path of a source under `tests/c/dyn/`.
pub fn dyn_src(name: &str) -> PathBuf {
    c_src(&format!("dyn/{name}"))
}

/// `tool FLAGS SRCS... LIBS... -o OUT` (tool: gcc or g++); panics with the
/// tool's output if it fails. Returns `out`.
pub fn compile(tool: &str, srcs: &[&Path], out: &Path, flags: &[&str], libs: &[&str]) -> PathBuf {
    run_tool(Command::new(tool).args(flags).args(srcs).args(libs).arg("-o").arg(out));
    out.to_path_buf()
}

/// A shared library: `tool -shared -fPIC FLAGS SRCS -o OUT`.
pub fn shared_lib(tool: &str, srcs: &[&Path], out: &Path, flags: &[&str]) -> PathBuf {
    let mut all = vec!["-shared", "-fPIC"];
    all.extend_from_slice(flags);
    compile(tool, srcs, out, &all, &[])
}

/// Link flags for `-lNAME` found in `dir` at link time and, through an
/// rpath, at run time.
pub fn link_lib_flags(dir: &Path, name: &str) -> Vec<String> {
    vec![format!("-L{}", dir.display()), format!("-l{name}"), format!("-Wl,-rpath,{}", dir.display())]
}

/// `zygote run [--stats --json] [--clear-env] [--env K=V]... -- PROG ARGS...`
/// as CLI arguments (without the binary).
pub fn zygote_run_cli(prog: &Path, args: &[&str], env: &[(&str, &str)], clear_env: bool, stats: bool) -> Vec<OsString> {
    let mut cli: Vec<OsString> = vec!["run".into()];
    if stats {
        cli.push("--stats".into());
        cli.push("--json".into());
    }
    if clear_env {
        cli.push("--clear-env".into());
    }
    for (k, v) in env {
        cli.push("--env".into());
        cli.push(format!("{k}={v}").into());
    }
    cli.push("--".into());
    cli.push(prog.into());
    cli.extend(args.iter().map(OsString::from));
    cli
}

/// Split the stderr of `zygote run --stats --json` into the program's own
/// stderr and the JSON line zygote prints after the program ended (the last
/// line; the program's stderr need not end with a newline).
pub fn split_stats_json(stderr: &[u8]) -> Option<(Vec<u8>, serde_json::Value)> {
    let s = stderr.strip_suffix(b"\n")?;
    for i in (0..s.len()).rev().filter(|&i| s[i] == b'{') {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&s[i..])
            && v.get("image").is_some()
            && v.get("cache").is_some()
        {
            return Some((s[..i].to_vec(), v));
        }
    }
    None
}

/// A program's outcome under `zygote run --stats --json`, with the stats
/// line taken out of stderr, and the stats.
#[derive(Clone, Debug)]
pub struct StatsRun {
    pub outcome: Outcome,
    pub stats: serde_json::Value,
}

/// Run `zygote run --stats --json ...` (under `wrapper`, e.g. setpriv, if
/// not empty) and split its stderr; panics if there is no stats line.
pub fn zygote_run_stats_via(
    wrapper: &[&str],
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    clear_env: bool,
) -> StatsRun {
    let cli = zygote_run_cli(prog, args, env, clear_env, true);
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(zygote_bin());
            c
        }
        None => Command::new(zygote_bin()),
    };
    cmd.args(&cli);
    let raw = run_command(&mut cmd);
    let Some((stderr, stats)) = split_stats_json(&raw.stderr) else {
        panic!("{cmd:?}: no --stats --json line at the end of stderr:\n{raw}");
    };
    StatsRun { outcome: Outcome { stderr, ..raw }, stats }
}

/// [`zygote_run_stats_via`] without a wrapper.
pub fn zygote_run_stats(prog: &Path, args: &[&str], env: &[(&str, &str)], clear_env: bool) -> StatsRun {
    zygote_run_stats_via(&[], prog, args, env, clear_env)
}

/// `image.fallback` of a stats line: `None` if null (the image was used).
pub fn stats_fallback(stats: &serde_json::Value) -> Option<String> {
    match &stats["image"]["fallback"] {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => panic!("image.fallback is neither null nor a string: {other} in {stats}"),
    }
}

/// Assert a stats line says the program was started from a dynamic-program
/// image (restored from its prototype, not run by plain exec).
pub fn assert_restored(stats: &serde_json::Value, context: &str) {
    assert_eq!(stats["image"]["kind"], "Dynamic", "{context}: image.kind in {stats}");
    assert_eq!(stats_fallback(stats), None, "{context}: image.fallback should be null (restored, not exec'd): {stats}");
}

/// The environment sorted by key: `std::process::Command` passes its
/// environment sorted (it keeps it in a BTreeMap) while `zygote run --env`
/// keeps the order given, so both get the sorted order and a program
/// printing `environ` in order prints the same thing.
pub fn sorted_env<'a>(env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = env.to_vec();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

/// Run PROG directly, through `zygote run --clear-env --stats --json`, and
/// directly again, all with exactly `env` and the same argv and cwd, and
/// assert the zygote run's stdout, stderr and status equal the direct
/// run's. If the two direct runs differ (the program's world changed in
/// between, e.g. a directory listing), the triple is repeated (a few
/// times). Returns the zygote run's stats line.
pub fn assert_same_as_direct(prog: &Path, args: &[&str], env: &[(&str, &str)], context: &str) -> serde_json::Value {
    assert_same_as_direct_with(prog, args, env, context, |o| o.clone())
}

/// [`assert_same_as_direct`], comparing the outcomes after `normalize`
/// (for a value outside the program's control, such as a global counter).
pub fn assert_same_as_direct_with(
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    context: &str,
    normalize: impl Fn(&Outcome) -> Outcome,
) -> serde_json::Value {
    let env = sorted_env(env);
    let mut last = String::new();
    for _ in 0..6 {
        let before = normalize(&direct_run(prog, args, &env, true));
        let z = zygote_run_stats(prog, args, &env, true);
        let after = normalize(&direct_run(prog, args, &env, true));
        if before != after {
            last = format!("=== direct (1) ===\n{before}\n=== direct (2) ===\n{after}");
            continue;
        }
        let via = normalize(&z.outcome);
        assert_eq!(
            via,
            before,
            "{context}: `zygote run --clear-env ... -- {} {args:?}` differs from a direct run\n\
             === zygote run ===\n{via}\n=== direct ===\n{before}\n=== stats ===\n{}",
            prog.display(),
            z.stats
        );
        return z.stats;
    }
    panic!("{context}: two direct runs of {} {args:?} in a row kept differing:\n{last}", prog.display());
}

/// Effective capability set of a process, from the CapEff line of its
/// /proc/PID/status text.
pub fn cap_eff(status_text: &str) -> u64 {
    status_text
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no CapEff line in:\n{status_text}"))
}

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_CHECKPOINT_RESTORE: u32 = 40;

/// `setpriv` prefix that runs a command without CAP_SYS_ADMIN and
/// CAP_CHECKPOINT_RESTORE (dropped from the bounding and inheritable sets
/// before the exec, so a root process gets neither in its permitted or
/// effective set).
pub const WITHOUT_RESTORE_CAPS: [&str; 4] =
    ["setpriv", "--bounding-set=-sys_admin,-checkpoint_restore", "--inh-caps=-sys_admin,-checkpoint_restore", "--"];

/// Whether this process may set a child's exe file (CAP_SYS_ADMIN or
/// CAP_CHECKPOINT_RESTORE effective).
pub fn have_restore_caps() -> bool {
    let eff = cap_eff(&fs::read_to_string("/proc/self/status").expect("read /proc/self/status"));
    eff & (1 << CAP_SYS_ADMIN) != 0 || eff & (1 << CAP_CHECKPOINT_RESTORE) != 0
}

impl LiveChild {
    /// Like [`LiveChild::spawn`], with stdin a pipe whose write end is
    /// returned (write lines to it; drop it for EOF).
    pub fn spawn_with_stdin(z: &Zygote, req: SpawnRequest) -> (LiveChild, fs::File) {
        let (in_r, in_w) = pipe();
        let (out_r, out_w) = pipe();
        let stderr: OwnedFd = io::stderr().as_fd().try_clone_to_owned().expect("dup stderr");
        let req = req.fd(in_r, 0).fd(out_w, 1).fd(stderr, 2);
        let child = z.spawn(req).unwrap_or_else(|e| panic!("Zygote::spawn failed: {e}"));
        let guard = ChildGuard::new(child);
        let (tx, rx) = mpsc::channel();
        let file = fs::File::from(out_r);
        thread::spawn(move || {
            use std::io::BufRead;
            for line in io::BufReader::new(file).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        (LiveChild { guard, lines: rx, seen: Vec::new() }, fs::File::from(in_w))
    }
}

/// The cached image that spawns with no loader variables in their
/// environment (`env_clear`, no `LD_*`/`GLIBC_TUNABLES`) were started from.
/// (`Zygote::prepare` would key on this test process's environment, where
/// cargo sets LD_LIBRARY_PATH.) Panics unless it is a cache hit, so it is the
/// very image those spawns used.
pub fn cached_clear_env_image(z: &Zygote, prog: &Path) -> std::sync::Arc<zygote_linux::Image> {
    let before = z.stats();
    let img = z
        .prepare_for(prog, &zygote_linux::prototype::Environment { loader_env: &[], creds: None })
        .unwrap_or_else(|e| panic!("prepare_for({}): {e}", prog.display()));
    let after = z.stats();
    assert_eq!(
        (after.misses, after.builds, after.hits),
        (before.misses, before.builds, before.hits + 1),
        "{}: expected a cache hit for the image spawns used; before: {}; after: {}",
        prog.display(),
        stats_line(&before),
        stats_line(&after)
    );
    img
}

/// One run's arguments (after argv[0]) and environment.
pub type ArgsEnv<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);

/// A daemon configuration file at `path`: the shipped defaults (every field
/// is required) with `changes` (an object of fields) applied.
pub fn write_config(path: &Path, changes: serde_json::Value) -> PathBuf {
    let mut v: serde_json::Value = serde_json::from_str(zygote::config::DEFAULT_CONFIG).expect("default config");
    for (k, val) in changes.as_object().expect("changes object") {
        v[k] = val.clone();
    }
    fs::write(path, serde_json::to_vec_pretty(&v).expect("encode config")).expect("write config");
    path.to_path_buf()
}
