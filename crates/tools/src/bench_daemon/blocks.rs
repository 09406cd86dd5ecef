//! `zygote bench-daemon`'s blocks: the client threads of a block started together
//! behind a gate, the ABBA order of the blocks, and what each method gathered.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::report::{BlockReport, MethodReport, ProgramLatency};
use super::{DaemonBenchError, METHODS, Phase};
use crate::report::{Method, Tally};

/// Starts the client threads of a block together, once every one is set up.
pub(super) struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    ready: usize,
    open: Option<bool>,
}

impl Gate {
    fn new() -> Gate {
        Gate { state: Mutex::new(GateState::default()), changed: Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A client thread: say it is ready, then wait for the gate. True: go; false: the
    /// block was called off.
    pub(super) fn ready_and_wait(&self) -> bool {
        let mut s = self.lock();
        s.ready += 1;
        self.changed.notify_all();
        loop {
            if let Some(go) = s.open {
                return go;
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The coordinator: wait until `n` threads are ready.
    fn wait_ready(&self, n: usize) {
        let mut s = self.lock();
        while s.ready < n {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn open(&self, go: bool) {
        self.lock().open = Some(go);
        self.changed.notify_all();
    }
}

/// Run `body` on one thread per worker, all starting together, and collect what they did.
pub(super) fn run_block<W: Send>(
    workers: &mut [W],
    method: Method,
    phase: Phase,
    body: &(dyn Fn(&mut W, &Gate) -> Result<ClientBlock, DaemonBenchError> + Sync),
) -> Result<Vec<ClientBlock>, DaemonBenchError> {
    let gate = Gate::new();
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(workers.len());
        for (client, worker) in workers.iter_mut().enumerate() {
            let gate = &gate;
            let spawned = std::thread::Builder::new()
                .name(format!("bench-{}-{client}", method.name()))
                .spawn_scoped(s, move || body(worker, gate));
            match spawned {
                Ok(h) => handles.push(h),
                Err(source) => {
                    // The threads started so far return at once; the scope joins them.
                    gate.open(false);
                    return Err(DaemonBenchError::Thread { client, source });
                }
            }
        }
        gate.wait_ready(handles.len());
        gate.open(true);
        let mut blocks = Vec::with_capacity(handles.len());
        let mut first_error = None;
        for (client, h) in handles.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(b)) => blocks.push(b),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(DaemonBenchError::Panicked { client, method, phase });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(blocks),
        }
    })
}

/// Rounds per client in each of `blocks` blocks: `total` split as evenly as possible.
pub(super) fn split_rounds(total: usize, blocks: usize) -> Vec<usize> {
    let blocks = blocks.clamp(1, total.max(1));
    (0..blocks).map(|b| total / blocks + usize::from(b < total % blocks)).collect()
}

/// Which method each timed block runs: ABBA pairs, starting with the daemon.
pub(super) fn block_order(blocks: usize) -> Vec<Method> {
    (0..blocks).flat_map(|k| if k % 2 == 0 { METHODS } else { [METHODS[1], METHODS[0]] }).collect()
}

/// What one client thread did in one block, and when it started and finished.
#[derive(Default)]
pub(super) struct ClientBlock {
    pub(super) tally: Tally,
    pub(super) started: Option<Instant>,
    pub(super) finished: Option<Instant>,
}

/// Everything one method gathered: the first spawns and warm-up (counted, not timed),
/// and its timed blocks.
pub(super) struct Gathered {
    method: Method,
    pub(super) untimed: Tally,
    timed: Tally,
    wall: Duration,
    block_rates: Vec<f64>,
}

impl Gathered {
    pub(super) fn new(method: Method) -> Gathered {
        Gathered {
            method,
            untimed: Tally::default(),
            timed: Tally::default(),
            wall: Duration::ZERO,
            block_rates: Vec::new(),
        }
    }

    /// Count untimed rounds and failures.
    pub(super) fn count(&mut self, blocks: Vec<ClientBlock>) {
        for b in blocks {
            self.untimed.append(b.tally);
        }
    }

    /// Add a timed block; returns its report.
    pub(super) fn add_block(
        &mut self,
        block: usize,
        rounds_per_client: usize,
        blocks: Vec<ClientBlock>,
    ) -> BlockReport {
        let start = blocks.iter().filter_map(|b| b.started).min();
        let end = blocks.iter().filter_map(|b| b.finished).max();
        let wall = match (start, end) {
            (Some(s), Some(e)) => e.saturating_duration_since(s),
            _ => Duration::ZERO,
        };
        let ok: usize = blocks.iter().map(|b| b.tally.ok()).sum();
        let failures = blocks.iter().map(|b| b.tally.failures.len()).sum();
        let rate = if wall.is_zero() { 0.0 } else { ok as f64 / wall.as_secs_f64() };
        self.wall += wall;
        self.block_rates.push(rate);
        for b in blocks {
            self.timed.append(b.tally);
        }
        BlockReport {
            method: self.method,
            block,
            rounds_per_client,
            spawns: ok,
            failures,
            wall_seconds: wall.as_secs_f64(),
            spawns_per_sec: rate,
        }
    }

    pub(super) fn report(&self) -> MethodReport {
        let secs = self.wall.as_secs_f64();
        let ok = self.timed.ok();
        MethodReport {
            method: self.method,
            spawns: ok,
            spawns_per_sec: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            wall_seconds: secs,
            block_min_per_sec: self.block_rates.iter().copied().reduce(f64::min).unwrap_or(0.0),
            block_max_per_sec: self.block_rates.iter().copied().reduce(f64::max).unwrap_or(0.0),
            latency: self.timed.latency(),
            spawn_call: self.timed.call_latency(),
            rounds: self.untimed.rounds.len() + self.timed.rounds.len(),
            failures: self.untimed.failures.len() + self.timed.failures.len(),
            first_failure: self.untimed.first_failure().or_else(|| self.timed.first_failure()),
        }
    }

    pub(super) fn program(&self, index: usize) -> ProgramLatency {
        let l = self.timed.program_latency(index);
        ProgramLatency { n: l.n, p50_us: l.p50_us, p99_us: l.p99_us }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_split_evenly_and_blocks_alternate() {
        assert_eq!(split_rounds(500, 4), vec![125; 4]);
        assert_eq!(split_rounds(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(split_rounds(2, 4), vec![1, 1]);
        assert_eq!(split_rounds(5, 1), vec![5]);
        use Method::{Daemon as D, PosixSpawn as P};
        assert_eq!(block_order(3), vec![D, P, P, D, D, P]);
    }
}
