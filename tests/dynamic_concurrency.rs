//! Many processes started at once from one dynamic-program image: one
//! prototype build however many threads ask for it first (single flight),
//! every process correct, and every process with its own stack canary.

mod common;

use common::*;
use std::collections::HashSet;
use zygote_linux::SpawnRequest;

const THREADS: usize = 4;
const PER_THREAD: usize = 25;

#[test]
fn concurrent_spawns_share_one_image_and_not_their_canaries() {
    let prog = cc_cached(&dyn_src("canary.c"), "canary", &["-O1"], &[]);
    let z = new_zygote();
    let results: Vec<Vec<Outcome>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    (0..PER_THREAD)
                        .map(|_| lib_run(&z, SpawnRequest::new(prog.as_os_str()).env_clear()).1)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("spawning thread panicked")).collect()
    });
    let mut canaries = HashSet::new();
    for out in results.iter().flatten() {
        assert_eq!(out.code, 0, "{out}");
        let s = out.stdout_str();
        let hex = s.strip_prefix("canary=").and_then(|r| r.strip_suffix('\n')).unwrap_or_else(|| panic!("{out}"));
        let c = u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{hex}: {e}"));
        assert_eq!(c & 0xff, 0, "canary {c:016x}");
        assert!(canaries.insert(c), "canary {c:016x} seen twice among {} spawns from one image", THREADS * PER_THREAD);
    }
    assert_eq!(canaries.len(), THREADS * PER_THREAD);
    let s = z.stats();
    assert_eq!(s.builds, 1, "one prototype build for all concurrent spawns: {}", stats_line(&s));
    assert_eq!(s.hits + s.misses, (THREADS * PER_THREAD) as u64, "{}", stats_line(&s));
    let img = cached_clear_env_image(&z, &prog);
    assert_eq!((img.kind(), img.fallback()), (zygote_core::elf::ProgramKind::Dynamic, None));
}
