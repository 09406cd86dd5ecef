//! File descriptors: /dev/null and pipes to hand to children, and the open
//! fds of this or another process (for leak checks and their messages).

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Open /dev/null (read-write) as an owned fd.
pub fn dev_null() -> OwnedFd {
    zygote_linux::dev_null().expect("open /dev/null")
}

/// A CLOEXEC pipe as (read end, write end).
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = io::pipe().expect("pipe");
    (r.into(), w.into())
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

/// A pipe whose read end carries exactly `input` then EOF (the write end is
/// closed). `input` must fit in the pipe buffer.
pub fn input_pipe(input: &[u8]) -> OwnedFd {
    use std::io::Write;
    assert!(input.len() <= 16 * 1024, "input_pipe is for small inputs");
    let (r, w) = pipe();
    fs::File::from(w).write_all(input).expect("write to the stdin pipe");
    r
}

/// Borrowed fds of a slice of owned ones.
pub fn borrow_all(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|f| f.as_fd()).collect()
}

/// `n` fresh fds (/dev/null) to attach to a frame.
pub fn null_fds(n: usize) -> Vec<OwnedFd> {
    (0..n).map(|_| dev_null()).collect()
}
