//! The one home of fd I/O loops: retrying EINTR, and reading or writing a
//! whole buffer (at an offset) whatever the kernel returns per call.

use std::os::fd::AsFd;

use rustix::io::Errno;

/// Run a system call until it is not interrupted by a signal (EINTR).
pub fn retry<T>(mut call: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    loop {
        match call() {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

/// Read `fd` from `offset` until `buf` is full or the file ends; the number
/// of bytes read.
pub fn pread_full(fd: impl AsFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let mut n = 0;
    while n < buf.len() {
        match retry(|| rustix::io::pread(&fd, &mut buf[n..], offset + n as u64))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Read `fd` until `buf` is full or the stream ends; the number of bytes read.
pub fn read_full(fd: impl AsFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut n = 0;
    while n < buf.len() {
        match retry(|| rustix::io::read(&fd, &mut buf[n..]))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Write all of `buf` to `fd` at `offset`.
pub fn pwrite_all(fd: impl AsFd, mut buf: &[u8], mut offset: u64) -> Result<(), Errno> {
    while !buf.is_empty() {
        match retry(|| rustix::io::pwrite(&fd, buf, offset))? {
            0 => return Err(Errno::IO),
            n => {
                buf = &buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_buffers_at_offsets() {
        let f = crate::memfd::memfd_with("fd-test", b"").expect("memfd");
        pwrite_all(&f, b"hello, world", 3).expect("write");
        let mut buf = [0u8; 32];
        assert_eq!(pread_full(&f, &mut buf, 0).expect("read"), 15, "stops at the end of the file");
        assert_eq!(&buf[..15], b"\0\0\0hello, world");
        let mut two = [0u8; 2];
        assert_eq!(pread_full(&f, &mut two, 10).expect("read"), 2, "stops when the buffer is full");
        assert_eq!(&two, b"wo");
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        rustix::io::write(&w, b"abc").expect("write");
        drop(w);
        assert_eq!(read_full(&r, &mut buf).expect("read"), 3);
    }
}
