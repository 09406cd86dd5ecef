//! The shared-page metrics are true: real processes, real smaps.
//!
//! `tests/c/metrics_dirty.c` (a glibc static PIE) writes one byte in each of
//! the first K pages of a page-aligned, 64 KiB-aligned array in .data, prints
//! "ready" and pauses. Instances with K = 0 give the baseline (what start-up
//! dirties anyway); for each instance with K > 0, the metrics module must
//! report Private_Dirty (and Anonymous) in the image's mappings of baseline +
//! K pages, within one page, and its "bytes saved" must be the arithmetic
//! the test does itself on the raw smaps: Σ (Rss - Pss) over the entries that
//! overlap the image's regions.

mod common;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::*;
use zygote_core::metrics::ImageLayout;
use zygote_linux::Image;
use zygote_linux::SpawnRequest;
use zygote_linux::account::{self, LiveProcess, Registry};
use zygote_linux::smaps::measure;

const PAGE: u64 = 4096;
/// Pages the dirtying instances write.
const K: u64 = 24;
const INSTANCES: usize = 10;
const BASELINES: usize = 2;

/// The tests start instances of one image; one at a time keeps each test's
/// Pss its own.
static SERIAL: Mutex<()> = Mutex::new(());

fn program() -> PathBuf {
    let p = static_pie("metrics_dirty.c");
    // Freshly written file pages count as dirty until written back.
    sync();
    p
}

fn spawn(z: &zygote_linux::Zygote, prog: &Path, k: &str) -> LiveChild {
    let mut c = LiveChild::spawn(z, SpawnRequest::new(prog.as_os_str()).arg(k));
    c.wait_for_line("ready");
    c
}

fn live(c: &LiveChild, image: &Arc<Image>) -> LiveProcess {
    let child = c.guard.0.as_ref().expect("live child");
    LiveProcess {
        pid: child.pid(),
        uid: 0,
        pidfd: Arc::new(child.pidfd().try_clone_to_owned().expect("dup pidfd")),
        image: image.clone(),
        started: std::time::Instant::now(),
    }
}

/// The test's own accounting, from the raw smaps (tests/common's parser):
/// per process, (Σ Rss, Σ Pss, Σ Private_Dirty) in bytes over the entries
/// that overlap a region of the image.
fn raw(pid: i32, image: &Image) -> (u64, u64, u64) {
    let regions: Vec<(u64, u64)> = image.regions().iter().map(|r| (r.vaddr, r.vaddr + r.len)).collect();
    let (mut rss, mut pss, mut dirty) = (0, 0, 0);
    for m in smaps(pid) {
        if regions.iter().any(|&(a, b)| m.start < b && a < m.end) {
            rss += m.kb("Rss") * 1024;
            pss += m.kb("Pss") * 1024;
            dirty += m.kb("Private_Dirty") * 1024;
        }
    }
    (rss, pss, dirty)
}

#[test]
fn private_dirty_is_the_pages_written_and_saved_is_rss_minus_pss() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prog = program();
    let z = new_zygote();
    let baselines: Vec<LiveChild> = (0..BASELINES).map(|_| spawn(&z, &prog, "0")).collect();
    let dirtiers: Vec<LiveChild> = (0..INSTANCES).map(|_| spawn(&z, &prog, &K.to_string())).collect();
    let image = z.prepare(&prog).unwrap_or_else(|e| panic!("prepare {}: {e}", prog.display()));
    let layout = ImageLayout::of(&image);

    let measure = |c: &LiveChild| {
        let child = c.guard.0.as_ref().expect("live child");
        measure(child.pid(), Some(child.pidfd()), &layout)
            .unwrap_or_else(|e| panic!("measure {}: {e}", child.pid()))
            .unwrap_or_else(|| panic!("pid {} is alive but measured as gone", child.pid()))
    };
    let base: Vec<_> = baselines.iter().map(measure).collect();
    let (b_dirty, b_anon) = (base[0].total.private_dirty, base[0].total.anonymous);
    for b in &base {
        assert!(b.mappings >= image.regions().len(), "every region is mapped: {b:?}");
        assert!(
            b.total.private_dirty.abs_diff(b_dirty) <= PAGE,
            "the K = 0 instances disagree on the baseline by more than a page: {base:?}"
        );
    }
    let mut report = format!("baseline: Private_Dirty {b_dirty} B, Anonymous {b_anon} B\n");
    let mut wrong = Vec::new();
    for (c, u) in dirtiers.iter().map(|c| (c.guard.pid(), measure(c))) {
        let dirty = u.total.private_dirty - b_dirty.min(u.total.private_dirty);
        let anon = u.total.anonymous - b_anon.min(u.total.anonymous);
        let sealed = u.by_kind.sealed.anonymous - base[0].by_kind.sealed.anonymous.min(u.by_kind.sealed.anonymous);
        report.push_str(&format!(
            "pid {c}: Private_Dirty {} B (+{dirty}), Anonymous {} B (+{anon}), Sealed anonymous +{sealed}\n",
            u.total.private_dirty, u.total.anonymous
        ));
        for (what, got) in [("Private_Dirty", dirty), ("Anonymous", anon), ("Anonymous in the Sealed regions", sealed)]
        {
            if got.abs_diff(K * PAGE) > PAGE {
                wrong.push(format!("pid {c}: {what} beyond the baseline is {got} B, not {K} pages ({} B)", K * PAGE));
            }
        }
    }
    assert!(wrong.is_empty(), "{}\n{report}", wrong.join("\n"));

    // The image report the daemon builds, against the test's own arithmetic
    // on the raw smaps. The processes are paused, but retry if the kernel's
    // numbers move between the reads (they must agree on a quiet snapshot).
    let registry = Registry::new();
    for c in baselines.iter().chain(&dirtiers) {
        registry.insert(live(c, &image));
    }
    let pids: Vec<i32> = registry.snapshot().iter().map(|p| p.pid).collect();
    let mut attempts = Vec::new();
    for _ in 0..10 {
        let before: Vec<_> = pids.iter().map(|&p| raw(p, &image)).collect();
        let r = account::report(std::slice::from_ref(&image), &registry.snapshot());
        let after: Vec<_> = pids.iter().map(|&p| raw(p, &image)).collect();
        if before != after {
            attempts.push("smaps changed while measuring".to_string());
            continue;
        }
        assert_eq!(r.images.len(), 1, "one image: {r:?}");
        let s = &r.images[0];
        assert!(s.cached);
        assert_eq!(s.key, image.key().to_string());
        assert_eq!(s.live_processes, pids.len() as u64);
        assert_eq!(s.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), pids, "processes, by pid");
        assert_eq!(s.sealed_bytes, image.sealed_bytes());
        assert!(
            s.resident_bytes > 0 && s.resident_bytes <= s.sealed_bytes.next_multiple_of(PAGE),
            "resident {} of {} sealed bytes",
            s.resident_bytes,
            s.sealed_bytes
        );
        let mut sum_rss = 0;
        let mut sum_pss = 0;
        for (p, &(rss, pss, dirty)) in s.processes.iter().zip(&before) {
            assert_eq!((p.memory.rss, p.memory.pss, p.memory.private_dirty), (rss, pss, dirty), "pid {}", p.pid);
            assert_eq!(p.saved_bytes, rss - pss, "pid {}: saved = Rss - Pss", p.pid);
            sum_rss += rss;
            sum_pss += pss;
        }
        assert_eq!((s.memory.rss, s.memory.pss), (sum_rss, sum_pss), "image totals are the sums");
        assert_eq!(s.saved_bytes, sum_rss - sum_pss, "image saved = Σ Rss - Σ Pss");
        assert_eq!((r.memory, r.saved_bytes), (s.memory, s.saved_bytes), "report totals");
        let k = &s.by_kind;
        let mut kinds = k.file;
        kinds.add(&k.sealed);
        kinds.add(&k.zero);
        assert_eq!(kinds, s.memory, "by_kind adds up");
        // Twelve instances share the text: sharing must save most of it.
        assert!(k.file.rss > 0 && s.saved_bytes >= k.file.rss / 2, "{s:#?}");
        println!("{report}saved {} B of {} B Rss over {} processes", s.saved_bytes, s.memory.rss, pids.len());
        return;
    }
    panic!("no quiet snapshot in 10 attempts: {attempts:?}");
}

#[test]
fn processes_that_exit_are_skipped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prog = program();
    let z = new_zygote();
    let mut c = spawn(&z, &prog, "1");
    let image = z.prepare(&prog).expect("prepare");
    let layout = ImageLayout::of(&image);
    let registry = Registry::new();
    let p = live(&c, &image);
    let pid = p.pid;
    registry.insert(p.clone());
    let alive = measure(pid, Some(p.pidfd.as_fd()), &layout).expect("measure");
    assert!(alive.is_some_and(|u| u.total.rss > 0), "{alive:?}");
    assert_eq!(account::report(&[], &registry.snapshot()).images[0].live_processes, 1);

    // Dead but not reaped (a zombie: /proc/PID still exists): skipped.
    signal(c.guard.0.as_ref().expect("live"), libc::SIGKILL);
    let mut fds = [rustix::event::PollFd::from_borrowed_fd(p.pidfd.as_fd(), rustix::event::PollFlags::IN)];
    let limit = rustix::event::Timespec { tv_sec: DEADLINE.as_secs() as i64, tv_nsec: 0 };
    assert_eq!(rustix::event::poll(&mut fds, Some(&limit)).expect("poll pidfd"), 1, "pid {pid} did not die");
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "a zombie keeps its /proc entry");
    assert_eq!(measure(pid, Some(p.pidfd.as_fd()), &layout).expect("measure a zombie"), None);

    // Reaped: skipped too, even if the pid has been reused meanwhile.
    let st = c.guard.wait();
    assert_eq!(lib_shell_code(&st), 128 + libc::SIGKILL);
    assert_eq!(measure(pid, Some(p.pidfd.as_fd()), &layout).expect("measure a reaped process"), None);
    // Its image, not among the cached ones passed in, is reported as not
    // cached, with nobody left.
    let r = account::report(&[], &registry.snapshot());
    assert_eq!(r.images.len(), 1);
    let s = &r.images[0];
    assert!(!s.cached);
    assert_eq!((s.live_processes, s.processes.len(), s.memory.rss, s.saved_bytes), (0, 0, 0, 0), "{s:#?}");
}
