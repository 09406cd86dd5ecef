//! Evicting an image while processes started from it are still running:
//! they keep working (their mappings hold the sealed objects), the cache is
//! empty afterwards, and the next spawn rebuilds the image.

mod common;

use common::*;
use zygote_linux::{ExitStatus, SpawnRequest};

#[test]
fn eviction_with_live_processes() {
    let prog = static_pie("evict.c");
    let other = static_pie("cow.c");
    let z = new_zygote();

    let mut live: Vec<LiveChild> = (0..3).map(|_| LiveChild::spawn(&z, SpawnRequest::new(prog.as_os_str()))).collect();
    for c in &mut live {
        c.wait_for_line("ready");
    }
    let before = z.stats();
    assert_eq!(before.entries, 1, "{}", stats_line(&before));
    assert_eq!(before.misses, 1, "{}", stats_line(&before));

    z.set_limits(0, 0);
    let after = z.stats();
    assert_eq!(after.entries, 0, "cache not emptied: {}", stats_line(&after));
    assert_eq!(after.bytes, 0, "cache bytes after eviction: {}", stats_line(&after));
    assert!(
        after.evictions > before.evictions,
        "evictions did not grow: before {} / after {}",
        stats_line(&before),
        stats_line(&after)
    );
    assert_eq!((after.max_entries, after.max_bytes), (0, 0), "limits not applied");

    // Churn: other images are built and dropped while the instances run
    // (memory from the evicted image must not be reused under them).
    for _ in 0..3 {
        let (st, out) = lib_run(&z, SpawnRequest::new(other.as_os_str()));
        assert_eq!(lib_shell_code(&st), 17, "cow.c with limits 0/0:\n{out}");
    }
    assert_eq!(z.stats().entries, 0, "limits 0/0 must keep the cache empty");

    for c in &live {
        signal(c.guard.0.as_ref().expect("live child"), libc::SIGTERM);
    }
    for (i, c) in live.iter_mut().enumerate() {
        let st = c.guard.wait();
        let lines = c.rest();
        match st {
            ExitStatus::Exited(0) => {}
            other => panic!("instance {i} after eviction: {} (output {lines:?})", describe(&other)),
        }
        assert_eq!(lines.last().map(String::as_str), Some("done"), "instance {i} output: {lines:?}");
    }

    z.set_limits(64, 1 << 30);
    let mid = z.stats();
    let mut again = LiveChild::spawn(&z, SpawnRequest::new(prog.as_os_str()));
    again.wait_for_line("ready");
    let end = z.stats();
    assert_eq!(
        end.misses,
        mid.misses + 1,
        "spawn after eviction must rebuild: before {} / after {}",
        stats_line(&mid),
        stats_line(&end)
    );
    assert_eq!(end.builds, mid.builds + 1, "{}", stats_line(&end));
    assert_eq!(end.entries, 1, "{}", stats_line(&end));
    signal(again.guard.0.as_ref().expect("live child"), libc::SIGTERM);
    match again.guard.wait() {
        ExitStatus::Exited(0) => {}
        other => panic!("rebuilt instance: {} (output {:?})", describe(&other), again.rest()),
    }
}
