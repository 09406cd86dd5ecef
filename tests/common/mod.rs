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

use zygote::{Child, ExitStatus, SpawnRequest, Zygote};

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
    let mut guard = StdChildGuard(Some(child));
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
    Zygote::new(zygote::CacheConfig::default()).expect("Zygote::new(CacheConfig::default())")
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
pub fn stats_line(s: &zygote::CacheStats) -> String {
    format!(
        "entries={} bytes={} max_entries={} max_bytes={} hits={} misses={} evictions={} builds={}",
        s.entries, s.bytes, s.max_entries, s.max_bytes, s.hits, s.misses, s.evictions, s.builds
    )
}

/// Send `sig` to the child, panicking with context on failure.
pub fn signal(child: &Child, sig: i32) {
    child.kill(sig).unwrap_or_else(|e| panic!("kill({}, {sig}): {e}", child.pid()));
}
