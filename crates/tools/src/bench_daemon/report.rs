//! `zygote bench-daemon`'s report: per method throughput and latency, per block and per
//! program results and the daemon's counters, as the `--json` output and as a table.

use std::io::{self, Write};

use serde::Serialize;

use crate::report::{Latency, Method, write_method_failures};

/// One method's timed results.
#[derive(Clone, Debug, Serialize)]
pub struct MethodReport {
    pub method: Method,
    /// Timed rounds that ended with exit status 0.
    pub spawns: usize,
    /// `spawns` over `wall_seconds`.
    pub spawns_per_sec: f64,
    /// Wall time of the method's timed blocks, summed.
    pub wall_seconds: f64,
    /// Lowest and highest throughput of one block.
    pub block_min_per_sec: f64,
    pub block_max_per_sec: f64,
    /// Round latency of the timed rounds that ended (with any status): from sending
    /// `Spawn` to receiving `Exited`, or from calling `posix_spawn` until `waitpid` returned.
    #[serde(flatten)]
    pub latency: Latency,
    /// Until the spawn alone was done (same rounds): `Spawned` received, or `posix_spawn`
    /// returned.
    pub spawn_call: Latency,
    /// Every round of this method, first spawns and warm-up included.
    pub rounds: usize,
    /// Rounds that did not end with exit status 0.
    pub failures: usize,
    /// One such round (the lowest-numbered client's first): where, and how it ended.
    pub first_failure: Option<String>,
}

/// A ratio with `digits` decimals, or `n/a`.
fn show_ratio(r: Option<f64>, digits: usize) -> String {
    r.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
}

/// One timed block.
#[derive(Clone, Debug, Serialize)]
pub struct BlockReport {
    pub method: Method,
    /// 0-based, per method.
    pub block: usize,
    /// Rounds per client in this block.
    pub rounds_per_client: usize,
    /// Rounds that ended with exit status 0.
    pub spawns: usize,
    pub failures: usize,
    pub wall_seconds: f64,
    pub spawns_per_sec: f64,
}

/// Median latency of one program by one method.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramLatency {
    pub n: usize,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// One program: what was started, its first spawns, and its medians.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramReport {
    /// The program as given.
    pub program: String,
    /// The file `posix_spawn` starts (after the `PATH` lookup).
    pub path: String,
    /// The ELF file the daemon prepares (after following `#!` lines).
    pub daemon_path: String,
    /// argv, argv[0] included, as `posix_spawn` passes it.
    pub argv: Vec<String>,
    /// The first daemon spawn of the run (spawn and wait), left out of the latencies.
    pub first_daemon_us: f64,
    /// Time the daemon spent building images during that spawn; `None` when it built
    /// none (the image was cached already).
    pub first_build_us: Option<f64>,
    /// The first `posix_spawn` of the run, left out of the latencies.
    pub first_posix_spawn_us: f64,
    pub daemon: ProgramLatency,
    pub posix_spawn: ProgramLatency,
    /// daemon p50 / posix_spawn p50.
    pub p50_ratio: Option<f64>,
}

/// The daemon's own counters over the run.
#[derive(Clone, Debug, Serialize)]
pub struct DaemonSide {
    /// Spawn requests it served during the run (from every client) and refused.
    pub spawns: u64,
    pub spawn_errors: u64,
    /// Images it built during the first spawns.
    pub builds_first: u64,
    /// Images it built after the first spawns (should be 0: otherwise the cache is too
    /// small for the programs, or one changed).
    pub rebuilds: u64,
    /// Cached images and sealed bytes at the end.
    pub cache_entries: u64,
    pub cache_bytes: u64,
}

/// Everything one run measured. Serialises to the `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct DaemonBenchReport {
    pub socket: String,
    pub clients: usize,
    pub spawns_per_client: usize,
    pub warmup: usize,
    /// Timed blocks per method (after capping at `spawns_per_client`).
    pub blocks: usize,
    /// Which method each timed block ran, in run order.
    pub order: Vec<Method>,
    pub programs: Vec<ProgramReport>,
    /// In [`super::METHODS`] order.
    pub methods: Vec<MethodReport>,
    /// daemon p50 / posix_spawn p50 (below 1: the daemon is faster).
    pub p50_ratio: Option<f64>,
    /// daemon p99 / posix_spawn p99.
    pub p99_ratio: Option<f64>,
    /// daemon spawns/s / posix_spawn spawns/s (above 1: the daemon is faster).
    pub throughput_ratio: Option<f64>,
    /// Every timed block, in run order.
    pub block_results: Vec<BlockReport>,
    pub daemon: DaemonSide,
    /// Rounds (both methods) that did not end with exit status 0.
    pub failures: usize,
    /// Wall time of the whole benchmark.
    pub wall_seconds: f64,
}

impl DaemonBenchReport {
    /// Rounds, of both methods, that did not end with exit status 0. Non-zero must make
    /// the CLI exit non-zero.
    pub fn failures(&self) -> usize {
        self.failures
    }

    /// The human-readable report.
    pub fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "zygote bench-daemon: {} clients x {} spawns per method ({} blocks each, interleaved; {} warm-up rounds per client)",
            self.clients, self.spawns_per_client, self.blocks, self.warmup
        )?;
        writeln!(w, "  socket: {}", self.socket)?;
        for p in &self.programs {
            let build = match p.first_build_us {
                Some(b) => format!("image built in {b:.1} µs"),
                None => "image already cached".to_owned(),
            };
            writeln!(
                w,
                "  program: {}  (first spawns: daemon {:.1} µs, {build}; posix_spawn {:.1} µs)",
                p.argv.join(" "),
                p.first_daemon_us,
                p.first_posix_spawn_us
            )?;
        }
        self.write_methods(w)?;
        writeln!(w, "  (latency: spawn and wait; call p50: until Spawned was received / posix_spawn returned)")?;
        writeln!(w)?;
        writeln!(
            w,
            "  daemon / posix_spawn: p50 {}, p99 {}, throughput {}x",
            show_ratio(self.p50_ratio, 3),
            show_ratio(self.p99_ratio, 3),
            show_ratio(self.throughput_ratio, 2)
        )?;
        if self.programs.len() > 1 {
            self.write_programs(w)?;
        }
        let d = &self.daemon;
        writeln!(
            w,
            "  daemon side: {} spawns served, {} refused; {} image(s) built by the first spawns, {} rebuilt later; {} cached",
            d.spawns, d.spawn_errors, d.builds_first, d.rebuilds, d.cache_entries
        )?;
        if d.rebuilds > 0 {
            writeln!(w, "  warning: the daemon rebuilt images during the run (cache too small?)")?;
        }
        if self.failures > 0 {
            writeln!(w, "  FAILED: {} round(s) did not end with exit status 0", self.failures)?;
            let rows = self.methods.iter().map(|m| (m.method, m.failures, m.rounds, m.first_failure.as_deref()));
            write_method_failures(w, "round", rows)?;
        }
        writeln!(w, "  wall time {:.1} s", self.wall_seconds)
    }

    /// The methods' table.
    fn write_methods(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w)?;
        writeln!(
            w,
            "  {:<12} {:>6} {:>9} {:>17} {:>9} {:>9} {:>9} {:>9}  {:>11}  {:>8}",
            "method",
            "n",
            "spawns/s",
            "(block min-max)",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "max µs",
            "call p50 µs",
            "failures"
        )?;
        for m in &self.methods {
            let l = &m.latency;
            let spread = format!("({:.0}-{:.0})", m.block_min_per_sec, m.block_max_per_sec);
            writeln!(
                w,
                "  {:<12} {:>6} {:>9.1} {:>17} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {:>11.1}  {:>8}",
                m.method.name(),
                l.n,
                m.spawns_per_sec,
                spread,
                l.p50_us,
                l.p90_us,
                l.p99_us,
                l.max_us,
                m.spawn_call.p50_us,
                m.failures
            )?;
        }
        Ok(())
    }

    /// The per-program table, when there are several.
    fn write_programs(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w)?;
        let width = self.programs.iter().map(|p| p.program.chars().count()).max().unwrap_or(0).max(7);
        writeln!(
            w,
            "  {:<width$} {:>6} {:>13} {:>13} {:>7}",
            "program", "n", "daemon p50 µs", "posix p50 µs", "ratio"
        )?;
        for p in &self.programs {
            writeln!(
                w,
                "  {:<width$} {:>6} {:>13.1} {:>13.1} {:>7}",
                p.program,
                p.daemon.n.min(p.posix_spawn.n),
                p.daemon.p50_us,
                p.posix_spawn.p50_us,
                show_ratio(p.p50_ratio, 3)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_daemon::blocks::block_order;
    use crate::report::{assert_contains, table_text};

    fn sample_report(failures: usize) -> DaemonBenchReport {
        let mk = |method, p50: f64, rate: f64, failures| MethodReport {
            method,
            spawns: 2000,
            spawns_per_sec: rate,
            wall_seconds: 2000.0 / rate,
            block_min_per_sec: rate * 0.9,
            block_max_per_sec: rate * 1.1,
            latency: Latency { n: 2000, p50_us: p50, p99_us: p50 * 3.0, ..Latency::default() },
            spawn_call: Latency { p50_us: 42.0, ..Latency::default() },
            rounds: 2084,
            failures,
            first_failure: (failures > 0).then(|| "tiny: client 1, block 2 of 4: exited with status 1".into()),
        };
        let prog = |name: &str| ProgramReport {
            program: name.into(),
            path: format!("/b/{name}"),
            daemon_path: format!("/b/{name}"),
            argv: vec![name.into()],
            first_daemon_us: 900.0,
            first_build_us: Some(800.0),
            first_posix_spawn_us: 700.0,
            daemon: ProgramLatency { n: 1000, p50_us: 200.0, p99_us: 600.0 },
            posix_spawn: ProgramLatency { n: 1000, p50_us: 400.0, p99_us: 900.0 },
            p50_ratio: Some(0.5),
        };
        DaemonBenchReport {
            socket: "/tmp/s".into(),
            clients: 4,
            spawns_per_client: 500,
            warmup: 20,
            blocks: 4,
            order: block_order(4),
            programs: vec![prog("tiny"), prog("bigrel-ends")],
            methods: vec![mk(Method::Daemon, 200.0, 4000.0, failures), mk(Method::PosixSpawn, 400.0, 2000.0, 0)],
            p50_ratio: Some(0.5),
            p99_ratio: Some(0.5),
            throughput_ratio: Some(2.0),
            block_results: Vec::new(),
            daemon: DaemonSide {
                spawns: 2084,
                spawn_errors: 0,
                builds_first: 2,
                rebuilds: 0,
                cache_entries: 2,
                cache_bytes: 8192,
            },
            failures,
            wall_seconds: 2.5,
        }
    }

    #[test]
    fn table_shows_methods_ratios_programs_and_failures() {
        let text = table_text(|w| sample_report(0).write_table(w));
        let needles =
            ["daemon ", "posix_spawn", "p50 0.500", "throughput 2.00x", "bigrel-ends", "4000.0", "(3600-4400)"];
        assert_contains(&text, &needles);
        assert!(!text.contains("FAILED"));
        let text = table_text(|w| sample_report(3).write_table(w));
        assert_contains(&text, &["FAILED: 3 round(s)", "exited with status 1"]);
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v = serde_json::to_value(sample_report(0)).expect("json");
        assert_eq!(v["methods"][0]["method"], "daemon");
        assert_eq!(v["methods"][1]["method"], "posix_spawn");
        assert_eq!(v["methods"][0]["p50_us"], 200.0);
        assert_eq!(v["methods"][0]["spawns_per_sec"], 4000.0);
        assert_eq!(v["methods"][0]["spawn_call"]["p50_us"], 42.0);
        assert_eq!(v["throughput_ratio"], 2.0);
        assert_eq!(v["p50_ratio"], 0.5);
        assert_eq!(v["order"][1], "posix_spawn");
        assert_eq!(v["programs"][1]["daemon"]["p50_us"], 200.0);
        assert_eq!(v["daemon"]["rebuilds"], 0);
        assert_eq!(v["failures"], 0);
    }
}
