//! `zygote experiment`'s progress on stderr: a bar redrawn in place on a terminal, a
//! line per step otherwise.

use std::fmt;
use std::io::{self, IsTerminal};

use super::report::UsageSample;
use crate::report::Method;
use zygote_core::metrics::human_bytes;

/// Progress on stderr: a bar redrawn in place on a terminal, plain lines otherwise.
pub(super) struct Progress {
    tty: bool,
    total: usize,
    done: usize,
    /// The last sample's total Pss, shown after the bar.
    last: String,
}

impl Progress {
    const WIDTH: usize = 30;

    pub(super) fn new(total: usize) -> Progress {
        Progress { tty: io::stderr().is_terminal(), total: total.max(1), done: 0, last: String::new() }
    }

    fn line(&self, msg: fmt::Arguments<'_>) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
        eprintln!("zygote experiment: {msg}");
    }

    pub(super) fn phase(&mut self, method: Method, n: usize, step: usize) {
        self.last.clear();
        if !self.tty {
            self.line(format_args!("{method}: starting {n} instances in steps of {step}"));
        }
    }

    pub(super) fn started(&mut self, method: Method, alive: usize, n: usize) {
        self.done += 1;
        self.draw(method, alive, n);
    }

    fn draw(&self, method: Method, alive: usize, n: usize) {
        if !self.tty {
            return;
        }
        let filled = self.done * Self::WIDTH / self.total;
        eprint!(
            "\r\x1b[K[{}{}] {:3}% {method}: {alive}/{n} instances{}",
            "#".repeat(filled),
            "-".repeat(Self::WIDTH - filled),
            self.done * 100 / self.total,
            self.last
        );
    }

    pub(super) fn sample(&mut self, s: &UsageSample, n: usize) {
        if self.tty {
            self.last = format!(" (total Pss at {}: {})", s.instances, human_bytes(s.total.pss));
            self.draw(s.method, s.instances, n);
        } else {
            self.line(format_args!(
                "{}: {}/{n} instances: total Pss {}, USS {}, Rss {}",
                s.method,
                s.instances,
                human_bytes(s.total.pss),
                human_bytes(s.total.uss),
                human_bytes(s.total.rss)
            ));
        }
    }

    pub(super) fn finish(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }
}
