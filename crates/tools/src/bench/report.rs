//! `zygote bench`'s report: per method latencies, the first spawn and the cache, as the
//! `--json` output and as a table.

use std::io::{self, Write};

use serde::Serialize;

use crate::report::{LatencyStats, Method, Tally, write_method_failures};

/// One method's results.
#[derive(Clone, Debug, Serialize)]
pub struct MethodReport {
    pub method: Method,
    /// Distribution of the timed runs: spawn and wait, until the child has been reaped.
    #[serde(flatten)]
    pub latency: LatencyStats,
    /// Distribution of the spawn call alone (same runs): until `Zygote::spawn`,
    /// `posix_spawn` or `clone` returned, that is until the new program runs (for the
    /// zygote: until the stub reported every mapping made).
    pub spawn_call: LatencyStats,
    /// Every run of this method, warm-up (and, for the zygote, the first spawn) included.
    pub runs: usize,
    /// Runs that did not exit with status 0.
    pub failures: usize,
    /// The first such run: which round, and how it ended.
    pub first_failure: Option<String>,
}

impl MethodReport {
    /// `method`'s results, from its tally.
    pub(crate) fn of(method: Method, t: &Tally) -> MethodReport {
        MethodReport {
            method,
            latency: LatencyStats::from(&t.latency()),
            spawn_call: LatencyStats::from(&t.call_latency()),
            runs: t.rounds.len(),
            failures: t.failures.len(),
            first_failure: t.first_failure(),
        }
    }
}

/// The first zygote spawn of the run, left out of the latencies.
#[derive(Clone, Debug, Serialize)]
pub struct FirstSpawn {
    /// Spawn and wait, image build included.
    pub total_us: f64,
    /// Time the cache spent building images during it; `None` when it built none (the
    /// image was cached already).
    pub build_us: Option<f64>,
}

/// The zygote's cache at the end of the run.
#[derive(Clone, Debug, Serialize)]
pub struct CacheSummary {
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub builds: u64,
    /// Images built after the first spawn, in warm-up and timed rounds (should be 0).
    pub rebuilds: u64,
}

/// Everything one `zygote bench` run measured. Serialises to the `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The program as given.
    pub program: String,
    /// The file every method started (after the `PATH` lookup).
    pub path: String,
    /// argv, argv[0] included.
    pub argv: Vec<String>,
    pub iterations: usize,
    pub warmup: usize,
    pub first_spawn: FirstSpawn,
    /// In [`super::METHODS`] order.
    pub methods: Vec<MethodReport>,
    /// zygote median / posix_spawn median (lower is better for the zygote).
    pub ratio: Option<f64>,
    /// posix_spawn median / zygote median, the inverse of `ratio`.
    pub speedup: Option<f64>,
    /// Runs (all methods) that did not exit with status 0.
    pub failures: usize,
    pub cache: CacheSummary,
    /// Wall time of the whole benchmark.
    pub wall_seconds: f64,
}

impl BenchReport {
    /// Runs, of every method, that did not exit with status 0. Non-zero must make the
    /// CLI exit non-zero.
    pub fn failures(&self) -> usize {
        self.failures
    }

    /// The human-readable report: one line per method, then the ratio and any failures.
    pub fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "zygote bench: {} ({} timed + {} warm-up rounds, methods interleaved)",
            self.argv.join(" "),
            self.iterations,
            self.warmup
        )?;
        if self.path != self.program {
            writeln!(w, "  path: {}", self.path)?;
        }
        match self.first_spawn.build_us {
            Some(build) => writeln!(
                w,
                "  first zygote spawn (cache miss): {:.1} µs, image build {:.1} µs",
                self.first_spawn.total_us, build
            )?,
            None => writeln!(w, "  first zygote spawn (image already cached): {:.1} µs", self.first_spawn.total_us)?,
        }
        writeln!(w)?;
        writeln!(
            w,
            "  {:<21} {:>7} {:>10} {:>10} {:>10} {:>10}  {:>12}  {:>8}",
            "method", "n", "min µs", "median µs", "p90 µs", "max µs", "call med µs", "failures"
        )?;
        for m in &self.methods {
            let l = &m.latency;
            writeln!(
                w,
                "  {:<21} {:>7} {:>10.1} {:>10.1} {:>10.1} {:>10.1}  {:>12.1}  {:>8}",
                m.method.name(),
                l.n,
                l.min_us,
                l.median_us,
                l.p90_us,
                l.max_us,
                m.spawn_call.median_us,
                m.failures
            )?;
        }
        writeln!(w, "  (spawn and wait; call med: median time until the spawn call returned)")?;
        writeln!(w)?;
        match (self.ratio, self.speedup) {
            (Some(r), Some(s)) => writeln!(w, "  zygote / posix_spawn median: {r:.3}  (speed-up {s:.2}x)")?,
            _ => writeln!(w, "  zygote / posix_spawn median: n/a")?,
        }
        if self.cache.rebuilds > 0 {
            writeln!(w, "  warning: the image was rebuilt {} time(s) after the first spawn", self.cache.rebuilds)?;
        }
        if self.failures > 0 {
            writeln!(w, "  FAILED: {} run(s) did not exit 0", self.failures)?;
            let rows = self.methods.iter().map(|m| (m.method, m.failures, m.runs, m.first_failure.as_deref()));
            write_method_failures(w, "run", rows)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{assert_contains, table_text};
    use std::time::Duration;

    fn us(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_micros(x)).collect()
    }

    fn sample_report(failures: usize) -> BenchReport {
        let latency = LatencyStats::from_samples(&us(&[100, 120, 110]));
        let mk = |method, scale: f64, failures| MethodReport {
            method,
            latency: LatencyStats { median_us: latency.median_us * scale, ..latency.clone() },
            spawn_call: LatencyStats { median_us: 42.0, ..latency.clone() },
            runs: 4,
            failures,
            first_failure: (failures > 0).then(|| "iteration 2 of 3: exited with status 1".into()),
        };
        BenchReport {
            program: "tiny".into(),
            path: "/tmp/tiny".into(),
            argv: vec!["tiny".into(), "a".into()],
            iterations: 3,
            warmup: 1,
            first_spawn: FirstSpawn { total_us: 900.0, build_us: Some(800.0) },
            methods: vec![
                mk(Method::Zygote, 1.0, failures),
                mk(Method::PosixSpawn, 4.0, 0),
                mk(Method::VforkExec, 3.5, 0),
                mk(Method::Command, 4.5, 0),
            ],
            ratio: Some(0.25),
            speedup: Some(4.0),
            failures,
            cache: CacheSummary { entries: 1, bytes: 4096, hits: 4, misses: 1, builds: 1, rebuilds: 0 },
            wall_seconds: 0.01,
        }
    }

    #[test]
    fn table_shows_every_method_ratio_and_failures() {
        let text = table_text(|w| sample_report(0).write_table(w));
        assert_contains(&text, &["zygote ", "posix_spawn", "vfork+execve", "0.250", "4.00x", "image build 800.0"]);
        assert!(!text.contains("FAILED"));
        let text = table_text(|w| sample_report(2).write_table(w));
        assert_contains(&text, &["FAILED: 2 run(s)", "exited with status 1"]);
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v = serde_json::to_value(sample_report(0)).expect("json");
        assert_eq!(v["methods"][0]["method"], "zygote");
        assert_eq!(v["methods"][1]["method"], "posix_spawn");
        assert_eq!(v["methods"][2]["method"], "vfork+execve");
        assert_eq!(v["methods"][0]["n"], 3);
        assert!(v["methods"][0]["median_us"].is_number());
        assert_eq!(v["methods"][0]["spawn_call"]["median_us"], 42.0);
        assert_eq!(v["ratio"], 0.25);
        assert_eq!(v["speedup"], 4.0);
        assert_eq!(v["failures"], 0);
        assert_eq!(v["first_spawn"]["build_us"], 800.0);
    }
}
