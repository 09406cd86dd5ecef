//! Allowed users share the daemon, not each other's business: a user other
//! than the daemon's sees in `zygote stats` only the images it used (under
//! the paths it named) and only its own processes, and evicts only images no
//! one else used; the daemon's own uid sees and evicts everything. Eviction
//! finds dynamically linked programs' images by key and by path.
//!
//! The other user is uid 65534 (nobody); the daemon runs as root.

mod common;
use common::*;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const NOBODY: u32 = 65534;

/// A world-readable scratch directory (removed on drop): `run/` (0711) holds
/// the socket, `root/` (0700) root's programs, `nobody/` nobody's.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        assert!(rustix::process::getuid().is_root(), "these tests run processes as uid {NOBODY}: they need root");
        static N: AtomicUsize = AtomicUsize::new(0);
        let d =
            std::env::temp_dir().join(format!("zt-scope-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = fs::remove_dir_all(&d);
        for (sub, mode) in [("", 0o755), ("run", 0o711), ("root", 0o700), ("nobody", 0o755)] {
            fs::create_dir_all(d.join(sub)).expect("mkdir");
            fs::set_permissions(d.join(sub), fs::Permissions::from_mode(mode)).expect("chmod");
        }
        chown(d.join("nobody"), Some(NOBODY), Some(NOBODY)).expect("chown");
        Dir(d)
    }
    fn socket(&self) -> PathBuf {
        self.0.join("run/z.sock")
    }
    /// `src` copied to `who/name` (mode 0755, owned by `who`'s uid).
    fn program(&self, src: &Path, who: &str, name: &str) -> PathBuf {
        let dst = self.0.join(who).join(name);
        fs::copy(src, &dst).expect("copy");
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).expect("chmod");
        if who == "nobody" {
            chown(&dst, Some(NOBODY), Some(NOBODY)).expect("chown");
        }
        dst
    }
    fn daemon(&self) -> Daemon {
        let cfg = write_config(&self.0.join("run/config.json"), serde_json::json!({ "allowed_uids": [NOBODY] }));
        Daemon::start(&self.socket(), &["--config".as_ref(), cfg.as_os_str()])
    }
    /// `zygote ARGS --socket S...` as `uid`, stdout to `out` when given (a
    /// program left running keeps it open).
    fn zygote(&self, uid: u32, args: &[&OsStr], out: Option<&Path>) -> Outcome {
        let exe = self.0.join("zygote");
        if !exe.exists() {
            fs::copy(zygote_bin(), &exe).expect("copy zygote");
            fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let mut cmd = Command::new(exe);
        cmd.args(&args[..1]).arg("--socket").arg(self.socket()).args(&args[1..]).current_dir("/");
        if uid != 0 {
            cmd.uid(uid).gid(uid);
        }
        match out {
            None => run_command(&mut cmd),
            Some(path) => {
                let st = cmd
                    .stdin(Stdio::null())
                    .stdout(fs::File::create(path).expect("create"))
                    .status()
                    .expect("run zygote");
                Outcome { code: st.code().unwrap_or(-1), stdout: Vec::new(), stderr: Vec::new() }
            }
        }
    }
    /// `zygote stats --json` as `uid`.
    fn stats(&self, uid: u32) -> Value {
        let out = self.zygote(uid, &["stats".as_ref(), "--json".as_ref()], None);
        assert_eq!(out.code, 0, "stats as {uid}:\n{out}");
        serde_json::from_slice(&out.stdout).expect("stats JSON")
    }
    /// A sleeper started with `spawn --no-wait` as `uid`: its pid.
    fn sleeper(&self, uid: u32, prog: &Path) -> i32 {
        let out = self.0.join(format!("run/sleeper-{uid}.out"));
        let args = [
            OsStr::new("spawn"),
            "--daemon-side".as_ref(),
            "--no-wait".as_ref(),
            "--".as_ref(),
            prog.as_os_str(),
            "sleep".as_ref(),
        ];
        let st = self.zygote(uid, &[&args[..], &["60000".as_ref(), "0".as_ref()]].concat(), Some(&out));
        assert_eq!(st.code, 0, "spawn --no-wait as {uid}");
        let start = Instant::now();
        loop {
            let text = fs::read_to_string(&out).unwrap_or_default();
            if let Some(pid) = text.lines().find_map(|l| l.trim().parse().ok()) {
                return pid;
            }
            assert!(start.elapsed() < DEADLINE, "no pid from spawn --no-wait: {text:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn images(stats: &Value) -> &Vec<Value> {
    stats["images"].as_array().expect("images")
}

fn key_of(stats: &Value, path: &Path) -> String {
    let path = path.to_str().expect("utf-8 path");
    let img = images(stats).iter().find(|i| i["path"] == path).unwrap_or_else(|| panic!("no image {path}: {stats:#}"));
    img["key"].as_str().expect("key").to_string()
}

fn pids(stats: &Value) -> Vec<i64> {
    let procs = images(stats).iter().flat_map(|i| i["processes"].as_array().cloned().unwrap_or_default());
    procs.map(|p| p["pid"].as_i64().expect("pid")).collect()
}

#[test]
fn allowed_users_see_and_evict_only_their_own() {
    let dir = Dir::new();
    let _daemon = dir.daemon();
    let (sleep_src, echo_src, exit_src) =
        (static_pie("daemon_sleep.c"), static_pie("daemon_echo.c"), static_pie("daemon_exit.c"));
    let (root_sleeper, root_only) =
        (dir.program(&sleep_src, "root", "sleeper"), dir.program(&exit_src, "root", "exit"));
    let (their_sleeper, their_echo) =
        (dir.program(&sleep_src, "nobody", "sleeper"), dir.program(&echo_src, "nobody", "echo"));

    // Root first: the shared sleeper image is built from root's copy.
    let root_pid = PidGuard(dir.sleeper(0, &root_sleeper));
    let out = dir.zygote(
        0,
        &["spawn".as_ref(), "--daemon-side".as_ref(), "--".as_ref(), root_only.as_os_str(), "0".as_ref()],
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    let their_pid = PidGuard(dir.sleeper(NOBODY, &their_sleeper));
    let out = dir.zygote(
        NOBODY,
        &["spawn".as_ref(), "--daemon-side".as_ref(), "--".as_ref(), their_echo.as_os_str(), "hi".as_ref()],
        None,
    );
    assert_eq!((out.code, out.stdout_str().as_str()), (0, "argc=2\n[1]=hi\n"), "{out}");

    let all = dir.stats(0);
    let (shared, root_key) = (key_of(&all, &root_sleeper), key_of(&all, &root_only));
    assert_eq!(images(&all).len(), 3, "root sees every image: {all:#}");
    assert!(pids(&all).contains(&i64::from(root_pid.0)) && pids(&all).contains(&i64::from(their_pid.0)));

    let theirs = dir.stats(NOBODY);
    let paths: Vec<&str> = images(&theirs).iter().filter_map(|i| i["path"].as_str()).collect();
    let (ts, te) = (their_sleeper.to_str().unwrap(), their_echo.to_str().unwrap());
    assert_eq!(paths.len(), 2, "nobody sees the two images it used: {theirs:#}");
    assert!(paths.contains(&ts) && paths.contains(&te), "under the paths it named: {paths:?}");
    assert!(!serde_json::to_string(&theirs).unwrap().contains(dir.0.join("root").to_str().unwrap()), "root's paths");
    assert_eq!(pids(&theirs), [i64::from(their_pid.0)], "only its own process: {theirs:#}");
    assert_eq!(key_of(&theirs, &their_sleeper), shared, "one image, shared by content");

    // Evict: not root's image, not the shared one; its own, yes.
    for key in [&root_key, &shared] {
        let out = dir.zygote(NOBODY, &["evict".as_ref(), key.as_ref()], None);
        assert_ne!(out.code, 0, "nobody evicted {key}:\n{out}");
        assert!(out.stderr_str().contains("no cached image of yours"), "{out}");
    }
    let out = dir.zygote(NOBODY, &["evict".as_ref(), their_echo.as_os_str()], None);
    assert_eq!(out.code, 0, "nobody evicts its own image:\n{out}");
    let after = dir.stats(0);
    assert_eq!(images(&after).len(), 2, "only nobody's own image went: {after:#}");
    assert!(images(&after).iter().any(|i| i["key"] == root_key.as_str()));
    // Root may evict what others use.
    let out = dir.zygote(0, &["evict".as_ref(), shared.as_ref()], None);
    assert_eq!(out.code, 0, "{out}");
}

#[test]
fn dynamic_images_evict_by_key_and_by_path() {
    let dir = Dir::new();
    let _daemon = dir.daemon();
    let spawn_true = || {
        let out =
            dir.zygote(0, &["spawn".as_ref(), "--daemon-side".as_ref(), "--".as_ref(), "/bin/true".as_ref()], None);
        assert_eq!(out.code, 0, "{out}");
    };
    spawn_true();
    let key = key_of(&dir.stats(0), Path::new("/bin/true"));
    let out = dir.zygote(0, &["evict".as_ref(), key.as_ref()], None);
    assert_eq!((out.code, out.stdout_str().trim().is_empty()), (0, false), "evict by key:\n{out}");
    assert!(images(&dir.stats(0)).is_empty(), "evicted by key");
    spawn_true();
    let out = dir.zygote(0, &["evict".as_ref(), "/bin/true".as_ref()], None);
    assert_eq!(out.code, 0, "evict by path:\n{out}");
    assert!(images(&dir.stats(0)).is_empty(), "evicted by path");
}
