//! Copy-on-write isolation (in the style of Fuchsia's LdRemoteTests.Zygote):
//! ten processes from one cached image each mutate their relocated pointer
//! table, initialised data and bss; every one must still start from the
//! pristine image (tests/c/cow.c exits 17 only then).

mod common;

use common::*;
use zygote_linux::{ExitStatus, SpawnRequest};

#[test]
fn ten_spawns_from_one_image_see_pristine_data() {
    let prog = static_pie("cow.c");
    let relative = readelf(&["-r"], &prog).lines().filter(|l| l.contains("R_X86_64_RELATIVE")).count();
    assert!(relative >= 4, "cow.c static-PIE should have RELATIVE relocs (found {relative})");
    let direct = direct_run(&prog, &[], &[], false);
    assert_eq!(direct.code, 17, "direct run of cow.c:\n{direct}");

    let z = new_zygote();
    for i in 0..10 {
        let (st, out) = lib_run(&z, SpawnRequest::new(prog.as_os_str()));
        match st {
            ExitStatus::Exited(17) => {}
            other => panic!(
                "spawn #{i}: cow.c saw non-pristine state: {} (1=pointer table, 2=pointees, \
                 4=data, 8=bss)\n{out}",
                describe(&other)
            ),
        }
    }
    let s = z.stats();
    assert_eq!(s.misses, 1, "the image must be built once: {}", stats_line(&s));
    assert_eq!(s.hits, 9, "nine cache hits: {}", stats_line(&s));
    assert_eq!(s.builds, 1, "one build: {}", stats_line(&s));
    assert_eq!(s.entries, 1, "one cache entry: {}", stats_line(&s));
}
