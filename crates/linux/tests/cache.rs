//! The image cache's bounds and single-flight builds, on real images of real
//! static PIEs (compiled with gcc here) in sealed memfds.

use std::path::PathBuf;
use std::process::Command;

use zygote_core::CacheConfig;
use zygote_linux::Zygote;

/// Compile a small static PIE whose data segment size depends on `n`.
fn program(n: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zygote-cache-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let src = dir.join(format!("p{n}.c"));
    let exe = dir.join(format!("p{n}"));
    std::fs::write(&src, format!("int x; int *tbl[{n}] = {{ &x }}; int main(void) {{ return tbl[0] != &x; }}\n"))
        .expect("write source");
    let out = Command::new("gcc").args(["-static-pie", "-O0", "-o"]).arg(&exe).arg(&src).output().expect("run gcc");
    assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
    exe
}

#[test]
fn bounds_evict_least_recently_used() {
    let (a, b, c) = (program(10), program(20_000), program(30));
    let z = Zygote::new(CacheConfig { max_entries: 2, max_bytes: 1 << 30 }).expect("zygote");
    let ia = z.prepare(&a).expect("a");
    z.prepare(&b).expect("b");
    z.prepare(&a).expect("a again"); // a is now most recent
    z.prepare(&c).expect("c"); // evicts b
    let s = z.stats();
    assert_eq!((s.entries, s.hits, s.misses, s.evictions, s.builds), (2, 1, 3, 1, 3));
    let keys: Vec<_> = z.cache().images().iter().map(|i| *i.key()).collect();
    assert!(keys.contains(ia.key()) && keys.len() == 2);
    assert_eq!(s.bytes, z.cache().images().iter().map(|i| i.sealed_bytes()).sum::<u64>());

    // A byte bound below b's size keeps b out, alone.
    let ib = z.prepare(&b).expect("b again");
    z.set_limits(10, ib.sealed_bytes() - 1);
    let s = z.stats();
    assert!(s.bytes < ib.sealed_bytes(), "{s:?}");
    assert!(!z.cache().images().iter().any(|i| i.key() == ib.key()));
    // Evicted images stay usable by whoever holds them.
    assert!(ib.objects().iter().all(|o| rustix::fs::fstat(o.fd()).is_ok()));

    z.set_limits(0, 0);
    assert_eq!((z.stats().entries, z.stats().bytes), (0, 0));
}

#[test]
fn concurrent_first_requests_build_once() {
    let p = program(50);
    let z = Zygote::new(CacheConfig::default()).expect("zygote");
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| z.prepare(&p).expect("prepare"));
        }
    });
    let st = z.stats();
    assert_eq!(st.builds, 1, "{st:?}");
    assert_eq!(st.hits + st.misses, 8, "{st:?}");
}
