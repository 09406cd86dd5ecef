//! `zygote bench`'s progress on stderr, so a long run shows it is alive.

use std::io::{self, IsTerminal};
use std::time::Duration;

use super::METHODS;

/// Progress on stderr: a line rewritten at every 10% on a terminal; otherwise a line at
/// the start and one at the end.
pub(super) struct Progress {
    tty: bool,
    total: usize,
    shown_decile: usize,
}

impl Progress {
    pub(super) fn start(label: &str, warmup: usize, iterations: usize) -> Progress {
        let tty = io::stderr().is_terminal();
        let total = warmup + iterations;
        if tty {
            eprint!("\rzygote bench: {label}:   0% (0/{total} rounds)");
        } else {
            eprintln!(
                "zygote bench: {label}: {warmup} warm-up + {iterations} timed rounds of {} spawns",
                METHODS.len()
            );
        }
        Progress { tty, total, shown_decile: 0 }
    }

    pub(super) fn round_done(&mut self, label: &str, done: usize) {
        if !self.tty || self.total == 0 {
            return;
        }
        let decile = done * 10 / self.total;
        if decile > self.shown_decile {
            self.shown_decile = decile;
            eprint!("\rzygote bench: {label}: {:3}% ({done}/{} rounds)", decile * 10, self.total);
        }
    }

    pub(super) fn finish(&self, label: &str, wall: Duration) {
        if self.tty {
            // Clear the progress line so the table starts on a clean screen.
            eprint!("\r\x1b[K");
        } else {
            eprintln!("zygote bench: {label}: done in {:.1} s", wall.as_secs_f64());
        }
    }
}
