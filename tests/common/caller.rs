//! Caller-side spawning (the thin exec client `zygote-exec` and masquerade
//! links): a world-readable scratch directory with a daemon of its own, the
//! client installed there by `zygote install-links`, runs with an exact
//! environment (so that a run through the client compares byte for byte
//! with a direct exec), the client's `ZYGOTE_EXEC_DEBUG` lines and the
//! daemon's image-request counters.

use std::ffi::OsStr;
use std::fmt::Display;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use zygote_core::metrics::stats::ImageRequestStats;

use super::{Daemon, Outcome, SETTLE, c_src, cc_cached, run_command, write_config, zygote_cli};

/// The unprivileged user of these tests.
pub const NOBODY: u32 = 65534;
/// The client's file name in an install directory.
pub const CLIENT: &str = "zygote-exec";
/// How the client's debug line starts when it execs the program instead.
pub const EXEC_INSTEAD: &str = "zygote-exec: exec instead: ";
pub const WHY_MISS: &str = "not cached yet (the daemon builds it now)";
pub const WHY_NO_DAEMON: &str = "no daemon at the socket";
pub const WHY_NO_ANSWER: &str = "no answer from the daemon in time";
pub const WHY_EXEC: &str = "the daemon says the program needs exec";
/// How the client's debug line starts when mapping a served image failed.
pub const MAP_FAILED: &str = "zygote-exec: mapping the image failed";
/// The client's debug line when it starts again for a placement collision
/// (and asks the daemon again).
pub const AGAIN: &str = "zygote-exec: the image collided with the client's own layout; starting again";

/// A world-readable scratch directory under /tmp (uid 65534 can run what
/// is in it), removed on drop: `run/` (0711, the daemon's socket
/// directory), `bin/` (the client and its links), `prog/` (programs).
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        assert!(rustix::process::getuid().is_root(), "the caller-side tests need root");
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("zt-cs-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (d, mode) in [("", 0o755), ("run", 0o711), ("prog", 0o755)] {
            let p = root.join(d);
            fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        }
        Scratch { root }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The socket of [`Scratch::daemon`].
    pub fn socket(&self) -> PathBuf {
        self.root.join("run/z.sock")
    }

    /// A root daemon on [`Scratch::socket`] that admits uid 65534, with
    /// `config` applied over the defaults.
    pub fn daemon(&self, config: serde_json::Value) -> Daemon {
        let mut changes = serde_json::json!({ "allowed_uids": [NOBODY] });
        for (k, v) in config.as_object().expect("config object") {
            changes[k] = v.clone();
        }
        let cfg = write_config(&self.path("config.json"), changes);
        Daemon::start(&self.socket(), &["--config".as_ref(), cfg.as_os_str()])
    }

    /// `zygote install-links ROOT/bin NAMES...`; the directory.
    pub fn install_links(&self, names: &[&str]) -> PathBuf {
        let bin = self.path("bin");
        let mut args: Vec<&OsStr> = vec!["install-links".as_ref(), bin.as_os_str()];
        args.extend(names.iter().map(OsStr::new));
        let out = zygote_cli(args);
        assert_eq!(out.code, 0, "zygote install-links: {out}");
        for n in names.iter().chain([&CLIENT]) {
            assert!(bin.join(n).exists(), "install-links made no {n}: {out}");
        }
        bin
    }

    /// The installed client (after [`Scratch::install_links`]).
    pub fn client(&self) -> PathBuf {
        self.path("bin").join(CLIENT)
    }

    /// A copy of `src` as `prog/NAME` with `mode`.
    pub fn copy(&self, src: &Path, name: &str, mode: u32) -> PathBuf {
        let dst = self.path("prog").join(name);
        fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
        fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).expect("chmod");
        dst
    }

    pub fn prog_dir(&self) -> PathBuf {
        self.path("prog")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// How `caller_info.c` is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linkage {
    Static,
    StaticPie,
    Dynamic,
}

pub const LINKAGES: [Linkage; 3] = [Linkage::Static, Linkage::StaticPie, Linkage::Dynamic];

impl Linkage {
    /// A short program name for this build (also a masquerade link name).
    pub fn name(self) -> &'static str {
        match self {
            Linkage::Static => "cinfo-static",
            Linkage::StaticPie => "cinfo-spie",
            Linkage::Dynamic => "cinfo-dyn",
        }
    }
}

/// `tests/c/caller_info.c` built as `linkage` (cached per test process).
pub fn caller_info(linkage: Linkage) -> PathBuf {
    let flags: &[&str] = match linkage {
        Linkage::Static => &["-static", "-no-pie", "-O2"],
        Linkage::StaticPie => &["-static-pie", "-O2"],
        Linkage::Dynamic => &["-O2"],
    };
    cc_cached(&c_src("caller_info.c"), linkage.name(), flags, &[])
}

/// An exact environment for a run (the same for the direct run and the
/// run through the client, so that the program's output compares).
#[derive(Clone, Debug)]
pub struct Env(pub Vec<(String, String)>);

impl Env {
    /// `PATH`, the daemon's socket, `ZYGOTE_EXEC_DEBUG=1` (the client then
    /// says why it execs; a served run says nothing) and two plain entries.
    pub fn new(socket: &Path, path: &str) -> Env {
        let v = [
            ("PATH", path.to_string()),
            ("ZYGOTE_SOCKET", socket.display().to_string()),
            ("ZYGOTE_EXEC_DEBUG", "1".to_string()),
            ("HOME", "/".to_string()),
            ("LC_ALL", "C".to_string()),
        ];
        Env(v.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    pub fn with(mut self, k: &str, v: &str) -> Env {
        self.0.retain(|(key, _)| key != k);
        self.0.push((k.to_string(), v.to_string()));
        self
    }

    pub fn without(mut self, k: &str) -> Env {
        self.0.retain(|(key, _)| key != k);
        self
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
}

/// `PROG ARGS...` with exactly `env`, in `/`.
pub fn command(prog: impl AsRef<OsStr>, args: &[&str], env: &Env) -> Command {
    let mut cmd = Command::new(prog);
    cmd.args(args).env_clear().envs(env.0.iter().map(|(k, v)| (k, v))).current_dir("/");
    // With a pre_exec hook std always forks and execs (without one it may
    // use posix_spawn for some commands and not for others, and the two
    // leave different signal dispositions to the child).
    // SAFETY: the hook does nothing.
    unsafe { cmd.pre_exec(|| Ok(())) };
    cmd
}

/// The client's debug lines (why it execs the program instead) at the
/// start of stderr, and the outcome without them. Its [`AGAIN`] lines are
/// left out of both ([`starts`] counts them).
pub fn split_debug(o: &Outcome) -> (Vec<String>, Outcome) {
    let mut rest: &[u8] = &o.stderr;
    let mut lines = Vec::new();
    let client_line = |r: &[u8]| [EXEC_INSTEAD, MAP_FAILED, AGAIN].iter().any(|p| r.starts_with(p.as_bytes()));
    while client_line(rest) {
        let end = rest.iter().position(|&c| c == b'\n').map_or(rest.len(), |i| i + 1);
        let line = String::from_utf8_lossy(&rest[..end]).trim_end().to_string();
        if line != AGAIN {
            lines.push(line);
        }
        rest = &rest[end..];
    }
    (lines, Outcome { code: o.code, stdout: o.stdout.clone(), stderr: rest.to_vec() })
}

/// How many times the client asked the daemon for the image in `o`: once,
/// plus once for each new start after a placement collision.
pub fn starts(o: &Outcome) -> u64 {
    1 + restarts(&o.stderr_str())
}

/// The client's new starts after placement collisions in `text` (its
/// [`AGAIN`] lines; each asked the daemon once more).
pub fn restarts(text: &str) -> u64 {
    text.lines().filter(|l| l.trim_end() == AGAIN).count() as u64
}

/// The client's lines in `text` (stderr of several runs, or a screen) that
/// say a run was not served: all but [`AGAIN`].
pub fn not_served_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains("zygote-exec:") && l.trim_end() != AGAIN).collect()
}

/// Check that `runs` runs through the client since `before`, whose client
/// lines are in `text` (their stderr, or a screen; `shown` on failure), were
/// all served: no client line but new starts, and the daemon counted each
/// run and each new start, and no miss.
pub fn assert_all_served(d: &Daemon, before: &ImageRequestStats, runs: u64, text: &str, shown: &dyn Display) {
    assert!(not_served_lines(text).is_empty(), "a run was not served:\n{shown}");
    let after = requests(d);
    let want = (before.served + runs + restarts(text), before.misses);
    assert_eq!((after.served, after.misses), want, "{before:?} -> {after:?}");
}

/// The daemon's image-request counters.
pub fn requests(d: &Daemon) -> ImageRequestStats {
    d.stats().image_requests
}

/// Run `cmd` (through the client, with `ZYGOTE_EXEC_DEBUG=1`) and check
/// that it was served: the daemon counted one more served image and the
/// client said nothing about exec'ing instead.
pub fn run_served(d: &Daemon, cmd: &mut Command) -> Outcome {
    let before = requests(d);
    let out = run_command(cmd);
    let after = requests(d);
    let (debug, _) = split_debug(&out);
    assert!(
        debug.is_empty() && after.served == before.served + starts(&out),
        "{cmd:?} was not served from the image: client said {debug:?}; requests before {before:?}, after \
         {after:?}\n{out}\nthe daemon's log:\n{}",
        d.log_tail(3000)
    );
    out
}

/// Run what `make` builds until a run is served (a first run misses and
/// the daemon builds the image in the background), within [`SETTLE`].
/// Every run must be either served or a miss.
pub fn run_until_served(d: &Daemon, mut make: impl FnMut() -> Command) -> Outcome {
    let start = Instant::now();
    loop {
        let before = requests(d);
        let out = run_command(&mut make());
        let after = requests(d);
        let (debug, _) = split_debug(&out);
        if debug.is_empty() && after.served == before.served + starts(&out) {
            return out;
        }
        let miss = format!("{EXEC_INSTEAD}{WHY_MISS}");
        assert!(
            debug == [miss.as_str()] && after.misses == before.misses + 1,
            "{:?}: neither served nor a miss: client said {debug:?}; requests {before:?} -> {after:?}\n{out}\n{}",
            make(),
            d.log_tail(3000)
        );
        assert!(
            start.elapsed() < SETTLE,
            "{:?} still not served after {SETTLE:?} (builds {}; cache {:?})\n{}",
            make(),
            after.builds,
            d.stats().cache,
            d.log_tail(3000)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Run `cmd` and check that the client exec'd the program, saying `why`;
/// the outcome without the client's line.
pub fn run_exec_instead(cmd: &mut Command, why: &str) -> Outcome {
    let out = run_command(cmd);
    let (debug, rest) = split_debug(&out);
    assert_eq!(debug, [format!("{EXEC_INSTEAD}{why}")], "{cmd:?}: the client's lines\n{out}");
    rest
}

/// Assert two outcomes are identical, showing both.
pub fn assert_same_outcome(what: &str, via: &Outcome, direct: &Outcome) {
    assert!(
        via == direct,
        "{what}: differs from a direct exec\n=== through the client ===\n{via}\n=== direct ===\n{direct}"
    );
}
