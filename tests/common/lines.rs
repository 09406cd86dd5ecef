//! Reading a pipe line by line on a helper thread, with a safety deadline
//! (a daemon-spawned program's output, a live library child's stdout).

use std::io::{self, BufRead, Read};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The lines of `r`, read on a helper thread until EOF or a read error (the
/// channel then disconnects).
pub fn line_channel(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in io::BufReader::new(r).lines() {
            let Ok(l) = line else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Lines read from a pipe on a helper thread, with a safety deadline.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn new(r: impl Read + Send + 'static) -> Lines {
        Lines { rx: line_channel(r), seen: Vec::new() }
    }

    /// The next line, or `None` at EOF (every write end closed). Panics if
    /// neither comes within `limit`.
    pub fn next(&mut self, limit: Duration) -> Option<String> {
        match self.rx.recv_timeout(limit) {
            Ok(l) => {
                self.seen.push(l.clone());
                Some(l)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("no line and no EOF within {limit:?}; lines so far: {:?}", self.seen)
            }
        }
    }

    /// Whether the pipe reaches EOF within `limit` (after any further lines,
    /// which are kept in `seen`).
    pub fn eof_within(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            match self.rx.recv_timeout(limit.saturating_sub(start.elapsed())) {
                Ok(l) => self.seen.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => return true,
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}
