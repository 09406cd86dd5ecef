//! Measuring a live process's mappings of an image: read `/proc/PID/smaps`
//! (parsed and accounted by `zygote_core::metrics::smaps`), race-free
//! against exit and pid reuse through the process's pidfd.

use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use zygote_core::metrics::smaps::{self, ImageLayout, Mapping, ProcessUsage, SmapsError};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: SmapsError },
}

/// The smaps of `pid`, or `None` if the process is gone (ENOENT, ESRCH).
pub fn read(pid: i32) -> Result<Option<Vec<Mapping>>, MetricsError> {
    let path = PathBuf::from(format!("/proc/{pid}/smaps"));
    match std::fs::read_to_string(&path) {
        Ok(text) => smaps::parse(&text).map(Some).map_err(|source| MetricsError::Parse { path, source }),
        Err(e) if gone(&e) => Ok(None),
        Err(source) => Err(MetricsError::Read { path, source }),
    }
}

fn gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error())
}

/// Has the process behind `pidfd` exited (or been reaped)?
pub fn exited(pidfd: BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    let mut fds = [PollFd::from_borrowed_fd(pidfd, PollFlags::IN)];
    // A pidfd that cannot be polled tells nothing reliable: skip the process.
    crate::fd::retry(|| poll(&mut fds, Some(&zero))).map_or(true, |n| n > 0)
}

/// Measure the image's mappings in process `pid`. `None` if the process is
/// gone: procfs says so, or `pidfd` (when given) shows it exited once the
/// read is over. Since an unreaped process keeps its pid, a pidfd that is
/// not readable after the read also proves the smaps were that process's.
pub fn measure(
    pid: i32,
    pidfd: Option<BorrowedFd<'_>>,
    layout: &ImageLayout,
) -> Result<Option<ProcessUsage>, MetricsError> {
    let Some(maps) = read(pid)? else { return Ok(None) };
    if pidfd.is_some_and(exited) {
        return Ok(None);
    }
    Ok(Some(layout.account(&maps)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_process_is_none() {
        // Pid numbers are below pid_max (at most 2^22); this one never exists.
        assert!(matches!(read(i32::MAX), Ok(None)));
        let own = read(std::process::id() as i32).expect("own smaps").expect("alive");
        assert!(!own.is_empty());
    }
}
