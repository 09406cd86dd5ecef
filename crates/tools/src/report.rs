//! What the tools report about rounds of spawn-and-wait: the methods compared, one
//! round's times and outcome, a tally of rounds, and latency percentiles. One definition
//! each, shared by `bench`, `bench-daemon`, `stress` (and `experiment`'s methods).

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use serde::{Serialize, Serializer};

/// A way of starting a program; each tool compares a few (its `METHODS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// [`zygote_linux::Zygote::spawn`] from the cached image.
    Zygote,
    /// `Spawn` + `Wait` through the daemon.
    Daemon,
    /// glibc `posix_spawn` + `waitpid` in this process.
    PosixSpawn,
    /// `clone(CLONE_VM | CLONE_VFORK)` + `execve`.
    VforkExec,
    /// `std::process::Command::spawn` (posix_spawn or fork+exec inside std).
    Command,
    /// Plain exec through `std::process::Command`: the kernel loads the program.
    Exec,
}

impl Method {
    /// The name used in the tables and the JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Zygote => "zygote",
            Method::Daemon => "daemon",
            Method::PosixSpawn => "posix_spawn",
            Method::VforkExec => "vfork+execve",
            Method::Command => "std::process::Command",
            Method::Exec => "exec",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Method {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The methods with failed rounds, a line each: `    METHOD: F of N UNIT(s); first: ...`,
/// from (method, failures, rounds, first failure).
pub fn write_method_failures<'a>(
    w: &mut dyn Write,
    unit: &str,
    rows: impl IntoIterator<Item = (Method, usize, usize, Option<&'a str>)>,
) -> io::Result<()> {
    for (method, failures, rounds, first) in rows.into_iter().filter(|r| r.1 > 0) {
        writeln!(w, "    {method}: {failures} of {rounds} {unit}(s); first: {}", first.unwrap_or("?"))?;
    }
    Ok(())
}

/// Percentile `p` (0..=100) of sorted `sorted` (0 when empty), by linear interpolation
/// between closest ranks (numpy's default): the median of an even count is the mean of
/// the middle two.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    let rank = p.clamp(0.0, 100.0) / 100.0 * last as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(last);
    let frac = rank - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// `a / b`, when both are positive.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (a > 0.0 && b > 0.0).then(|| a / b)
}

/// Latency distribution, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub n: usize,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    /// Statistics of `samples` (any order). All zero when empty.
    pub fn from_samples(samples: impl IntoIterator<Item = Duration>) -> Latency {
        let mut us: Vec<f64> = samples.into_iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        let (Some(&min_us), Some(&max_us)) = (us.first(), us.last()) else {
            return Latency::default();
        };
        Latency {
            n: us.len(),
            min_us,
            p50_us: percentile(&us, 50.0),
            p90_us: percentile(&us, 90.0),
            p99_us: percentile(&us, 99.0),
            max_us,
            mean_us: us.iter().sum::<f64>() / us.len() as f64,
        }
    }
}

/// A [`Latency`] as `zygote bench` reports it: the median by that name, no p99.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    pub n: usize,
    pub min_us: f64,
    pub median_us: f64,
    pub p90_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl LatencyStats {
    /// Statistics of `samples` (any order). All zero when empty.
    pub fn from_samples(samples: &[Duration]) -> LatencyStats {
        LatencyStats::from(&Latency::from_samples(samples.iter().copied()))
    }
}

impl From<&Latency> for LatencyStats {
    fn from(l: &Latency) -> LatencyStats {
        LatencyStats {
            n: l.n,
            min_us: l.min_us,
            median_us: l.p50_us,
            p90_us: l.p90_us,
            max_us: l.max_us,
            mean_us: l.mean_us,
        }
    }
}

/// How one round ended: its times (spawn call, and spawn until the end), when it got
/// as far as the program's end, and how it failed, if it did not end with status 0.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub times: Option<(Duration, Duration)>,
    pub failure: Option<String>,
}

impl Outcome {
    /// A round that got to the program's end.
    pub fn ended(call: Duration, total: Duration, failure: Option<String>) -> Outcome {
        Outcome { times: Some((call, total)), failure }
    }

    /// A round that failed before the program's end.
    pub fn failed(how: String) -> Outcome {
        Outcome { times: None, failure: Some(how) }
    }
}

/// One timed round: which program (an index into the tool's programs), until the spawn
/// call returned, and until the program's end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub program: usize,
    pub call: Duration,
    pub total: Duration,
}

/// Rounds of one method (or of one client): every round's program, the timed samples,
/// and the failures with what happened, each in order.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub rounds: Vec<usize>,
    pub samples: Vec<Sample>,
    pub failures: Vec<(usize, String)>,
}

impl Tally {
    /// Room for `rounds` rounds.
    pub fn with_capacity(rounds: usize) -> Tally {
        Tally { rounds: Vec::with_capacity(rounds), samples: Vec::with_capacity(rounds), failures: Vec::new() }
    }

    /// One round of `program`: its times become a sample, its failure (`describe`d) is kept.
    pub fn record(&mut self, program: usize, outcome: Outcome, describe: impl FnOnce(String) -> String) {
        self.rounds.push(program);
        if let Some((call, total)) = outcome.times {
            self.samples.push(Sample { program, call, total });
        }
        if let Some(how) = outcome.failure {
            self.failures.push((program, describe(how)));
        }
    }

    /// Rounds that did not fail.
    pub fn ok(&self) -> usize {
        self.rounds.len() - self.failures.len()
    }

    /// The first failure's description.
    pub fn first_failure(&self) -> Option<String> {
        self.failures.first().map(|(_, f)| f.clone())
    }

    /// Add `other`'s rounds after these.
    pub fn append(&mut self, other: Tally) {
        self.rounds.extend(other.rounds);
        self.samples.extend(other.samples);
        self.failures.extend(other.failures);
    }

    /// Until the program's end, over every sample.
    pub fn latency(&self) -> Latency {
        Latency::from_samples(self.samples.iter().map(|s| s.total))
    }

    /// Until the spawn call returned, over every sample.
    pub fn call_latency(&self) -> Latency {
        Latency::from_samples(self.samples.iter().map(|s| s.call))
    }

    /// Until the program's end, over the samples of `program`.
    pub fn program_latency(&self, program: usize) -> Latency {
        Latency::from_samples(self.samples.iter().filter(|s| s.program == program).map(|s| s.total))
    }

    /// Rounds, and failures, of `program`.
    pub fn program_counts(&self, program: usize) -> (usize, usize) {
        let rounds = self.rounds.iter().filter(|&&p| p == program).count();
        (rounds, self.failures.iter().filter(|(p, _)| *p == program).count())
    }
}

/// A report's table as text (for tests).
#[cfg(test)]
pub(crate) fn table_text(write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    write(&mut out).expect("write");
    String::from_utf8(out).expect("utf8")
}

/// Panics unless `text` holds every one of `needles` (for tests).
#[cfg(test)]
pub(crate) fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_micros(x)).collect()
    }

    #[test]
    fn stats_of_odd_and_even_counts() {
        let s = LatencyStats::from_samples(&us(&[5, 1, 3, 2, 4]));
        assert_eq!(s.n, 5);
        assert_eq!((s.min_us, s.median_us, s.max_us), (1.0, 3.0, 5.0));
        assert!((s.p90_us - 4.6).abs() < 1e-9, "{}", s.p90_us);
        assert!((s.mean_us - 3.0).abs() < 1e-9);

        let s = LatencyStats::from_samples(&us(&[10, 40, 20, 30]));
        assert!((s.median_us - 25.0).abs() < 1e-9);
        assert_eq!(s.max_us, 40.0);
    }

    #[test]
    fn stats_of_nothing_and_one() {
        assert_eq!(LatencyStats::from_samples(&[]), LatencyStats::default());
        let s = LatencyStats::from_samples(&us(&[7]));
        assert_eq!((s.n, s.min_us, s.median_us, s.p90_us, s.max_us), (1, 7.0, 7.0, 7.0, 7.0));
    }

    #[test]
    fn latency_percentiles() {
        let l = Latency::from_samples((1..=100).map(Duration::from_micros));
        assert_eq!((l.n, l.min_us, l.max_us), (100, 1.0, 100.0));
        assert!((l.p50_us - 50.5).abs() < 1e-9, "{}", l.p50_us);
        assert!((l.p90_us - 90.1).abs() < 1e-9, "{}", l.p90_us);
        assert!((l.p99_us - 99.01).abs() < 1e-9, "{}", l.p99_us);
        assert!((l.mean_us - 50.5).abs() < 1e-9);
        assert_eq!(Latency::from_samples([]), Latency::default());
        let one = Latency::from_samples([Duration::from_micros(7)]);
        assert_eq!((one.p50_us, one.p99_us), (7.0, 7.0));
    }

    #[test]
    fn methods_serialise_by_name() {
        let v = serde_json::to_value([Method::Zygote, Method::VforkExec, Method::Command]).expect("json");
        assert_eq!(v, serde_json::json!(["zygote", "vfork+execve", "std::process::Command"]));
    }

    #[test]
    fn tallies_count_rounds_samples_and_failures() {
        let mut t = Tally::default();
        let d = Duration::from_micros;
        t.record(0, Outcome::ended(d(1), d(2), None), |h| h);
        t.record(1, Outcome::failed("refused".into()), |h| format!("p1: {h}"));
        let mut u = Tally::default();
        u.record(1, Outcome::ended(d(3), d(4), Some("exited with status 1".into())), |h| h);
        t.append(u);
        assert_eq!((t.rounds.len(), t.ok(), t.samples.len()), (3, 1, 2));
        assert_eq!(t.first_failure().as_deref(), Some("p1: refused"));
        assert_eq!(t.program_counts(1), (2, 2));
        assert_eq!(t.program_latency(1).n, 1);
        assert_eq!(t.call_latency().max_us, 3.0);
    }
}
