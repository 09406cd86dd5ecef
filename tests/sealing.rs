//! Every memfd a prepared image owns is sealed: no write path (write,
//! pwrite, shared writable mapping, truncate, grow, hole punching) works,
//! no further seals can be added, and the contents do not change.
//! Checked on the fd the image holds and on a fresh read-write reopen of it
//! through /proc/self/fd.

mod common;

use common::*;
use rustix::fs::{FallocateFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

fn read_all(fd: BorrowedFd<'_>, len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    let mut off = 0usize;
    while off < buf.len() {
        let n = rustix::io::pread(fd, &mut buf[off..], off as u64).expect("pread memfd");
        assert!(n > 0, "unexpected EOF reading memfd at {off}");
        off += n;
    }
    buf
}

fn assert_refuses_writes(fd: BorrowedFd<'_>, what: &str) {
    let size = rustix::fs::fstat(fd).expect("fstat memfd").st_size as u64;
    assert!(size > 0, "{what}: empty memfd");
    let before = read_all(fd, size);

    let seals = rustix::fs::fcntl_get_seals(fd).expect("F_GET_SEALS");
    let need = SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
    assert!(seals.contains(need), "{what}: F_GET_SEALS = {seals:?}, missing {:?}", need - seals);

    let r = rustix::io::write(fd, b"X");
    assert!(r.is_err(), "{what}: write(2) succeeded: {r:?}");
    let r = rustix::io::pwrite(fd, b"X", 0);
    assert!(r.is_err(), "{what}: pwrite at 0 succeeded: {r:?}");
    let r = rustix::io::pwrite(fd, b"X", size);
    assert!(r.is_err(), "{what}: pwrite at EOF (grow) succeeded: {r:?}");

    // SAFETY: a fresh mapping chosen by the kernel (null hint, no MAP_FIXED),
    // so no existing memory is affected; if it unexpectedly succeeds it is
    // unmapped right away without having been accessed.
    let r = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            size as usize,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )
    };
    if let Ok(p) = r {
        // SAFETY: `p` is the mapping of `size` bytes just created above.
        let _ = unsafe { rustix::mm::munmap(p, size as usize) };
        panic!("{what}: mmap(PROT_WRITE, MAP_SHARED) succeeded");
    }

    let r = rustix::fs::ftruncate(fd, size - 1);
    assert!(r.is_err(), "{what}: ftruncate shrink succeeded");
    let r = rustix::fs::ftruncate(fd, 0);
    assert!(r.is_err(), "{what}: ftruncate to 0 succeeded");
    let r = rustix::fs::ftruncate(fd, size + 4096);
    assert!(r.is_err(), "{what}: ftruncate grow succeeded");
    let r = rustix::fs::fallocate(fd, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, 0, size.min(4096));
    assert!(r.is_err(), "{what}: fallocate(PUNCH_HOLE|KEEP_SIZE) succeeded");
    let r = rustix::fs::fallocate(fd, FallocateFlags::empty(), 0, size + 4096);
    assert!(r.is_err(), "{what}: fallocate grow succeeded");
    let r = rustix::fs::fcntl_add_seals(fd, SealFlags::FUTURE_WRITE);
    assert!(r.is_err(), "{what}: F_ADD_SEALS succeeded");
    let r = rustix::fs::fcntl_add_seals(fd, SealFlags::WRITE);
    assert!(r.is_err(), "{what}: F_ADD_SEALS (WRITE again) succeeded");

    let after_size = rustix::fs::fstat(fd).expect("fstat memfd").st_size as u64;
    assert_eq!(after_size, size, "{what}: size changed");
    assert!(read_all(fd, size) == before, "{what}: contents changed by a write attempt");
    assert_eq!(rustix::fs::fcntl_get_seals(fd).expect("F_GET_SEALS"), seals, "{what}: seals changed");
}

#[test]
fn image_memfds_are_sealed() {
    let prog = build_spie_test(Variant::GlibcStaticPie);
    let relocs = dynamic_tag(&prog, "RELACOUNT").unwrap_or(0);
    assert!(relocs > 0, "test binary should have RELATIVE relocs");

    let z = new_zygote();
    let image = z.prepare(&prog).unwrap_or_else(|e| panic!("prepare({}): {e}", prog.display()));
    let fds: Vec<_> = image.objects().iter().map(|o| o.fd()).collect();
    assert!(!fds.is_empty(), "a static-PIE with {relocs} relocations must have at least one sealed memfd");
    assert!(image.sealed_bytes() > 0, "sealed_bytes() is 0");
    for (i, fd) in fds.iter().enumerate() {
        let what = format!("image memfd #{i} (fd {})", fd.as_raw_fd());
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        assert!(link.starts_with("/memfd:"), "{what}: not a memfd ({link:?})");
        assert_refuses_writes(*fd, &what);

        // A fresh open for writing through /proc must not get around the seals.
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        if let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(&path) {
            assert_refuses_writes(f.as_fd(), &format!("{what} reopened O_RDWR"));
        }
    }

    // The image still spawns correctly after all that.
    let (st, out) = lib_run(&z, zygote_linux::SpawnRequest::new(prog.as_os_str()).arg("exit=5").env_clear());
    assert_eq!(lib_shell_code(&st), 5, "spawn after seal checks:\n{out}");
    assert!(out.stdout_str().contains("failures=0"), "{out}");
}
