//! `zygote experiment`'s report: every sample, the image, the summary per count and the
//! files written, as `report.json`, the `--json` output and a table.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::usage::Usage;
use super::{ExperimentError, ExperimentOptions, METHODS, chart};
use crate::report::Method;
use zygote_core::metrics::human_bytes;

/// One instance at one sample.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceUsage {
    pub pid: i32,
    #[serde(flatten)]
    pub usage: Usage,
}

/// Every instance of one method alive at one count.
#[derive(Clone, Debug, Serialize)]
pub struct UsageSample {
    pub method: Method,
    /// Instances alive and measured (= `processes.len()`).
    pub instances: usize,
    pub processes: Vec<InstanceUsage>,
    /// Sums over `processes`.
    pub total: Usage,
}

/// One count of the summary: total Pss both ways.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryRow {
    pub instances: usize,
    pub exec_pss: u64,
    pub zygote_pss: u64,
    pub exec_uss: u64,
    pub zygote_uss: u64,
    /// `zygote_pss / exec_pss` (below 1: the zygote's instances cost less).
    pub ratio: Option<f64>,
}

/// The image the zygote instances were started from.
#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    pub key: String,
    pub kind: String,
    /// Logical size of the sealed objects.
    pub sealed_bytes: u64,
    /// Their pages in memory after the zygote phase (held by this process's memfds;
    /// charged to instances only while they map them).
    pub sealed_resident_bytes: u64,
    /// Time to prepare the image (read, hash, relocate, seal), cache miss.
    pub build_us: f64,
    /// Why the zygote starts the program by plain exec, if it does (the comparison then
    /// measures two plain execs).
    pub fallback: Option<String>,
}

/// How instances were judged ready.
#[derive(Clone, Debug, Serialize)]
pub struct Readiness {
    /// A line starting with this on stdout; `None`: the settle time.
    pub ready_line: Option<String>,
    pub settle_ms: u64,
    pub ready_timeout_ms: u64,
}

/// The files written.
#[derive(Clone, Debug, Serialize)]
pub struct ReportFiles {
    pub report: String,
    pub svg: String,
    pub png: String,
}

/// Everything one experiment measured: `report.json`, and the `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct ExperimentReport {
    /// The program as given.
    pub program: String,
    /// The file both methods started.
    pub path: String,
    /// argv, argv[0] included.
    pub argv: Vec<String>,
    pub instances: usize,
    pub step: usize,
    /// The instance counts measured, per method.
    pub counts: Vec<usize>,
    pub readiness: Readiness,
    pub methods: Vec<Method>,
    /// Every sample: all counts of `exec`, then all of `zygote`.
    pub samples: Vec<UsageSample>,
    pub image: ImageInfo,
    pub summary: Vec<SummaryRow>,
    pub files: ReportFiles,
    pub wall_seconds: f64,
}

impl ExperimentReport {
    /// The report of a run of `opts` that started `path`, measured `samples` at `counts`
    /// and began at `wall`.
    pub(super) fn new(
        opts: &ExperimentOptions,
        path: PathBuf,
        counts: Vec<usize>,
        samples: Vec<UsageSample>,
        image: ImageInfo,
        wall: Instant,
    ) -> ExperimentReport {
        let summary = counts
            .iter()
            .map(|&n| {
                let get = |m| samples.iter().find(|s| s.method == m && s.instances == n).map(|s| s.total);
                let (e, z) = (get(Method::Exec).unwrap_or_default(), get(Method::Zygote).unwrap_or_default());
                SummaryRow {
                    instances: n,
                    exec_pss: e.pss,
                    zygote_pss: z.pss,
                    exec_uss: e.uss,
                    zygote_uss: z.uss,
                    ratio: (e.pss > 0).then(|| z.pss as f64 / e.pss as f64),
                }
            })
            .collect();
        let file = |name: &str| opts.out.join(name).to_string_lossy().into_owned();
        let files = ReportFiles { report: file("report.json"), svg: file("pss.svg"), png: file("pss.png") };
        let label = opts.program.to_string_lossy().into_owned();
        let mut argv = vec![label.clone()];
        argv.extend(opts.args.iter().map(|a| a.to_string_lossy().into_owned()));
        ExperimentReport {
            program: label,
            path: path.to_string_lossy().into_owned(),
            argv,
            instances: opts.instances,
            step: opts.step,
            counts,
            readiness: Readiness {
                ready_line: opts.ready_line.clone(),
                settle_ms: opts.settle.as_millis() as u64,
                ready_timeout_ms: opts.ready_timeout.as_millis() as u64,
            },
            methods: METHODS.to_vec(),
            samples,
            image,
            summary,
            files,
            wall_seconds: wall.elapsed().as_secs_f64(),
        }
    }

    /// The sample of `method` at `instances`.
    pub fn sample(&self, method: Method, instances: usize) -> Option<&UsageSample> {
        self.samples.iter().find(|s| s.method == method && s.instances == instances)
    }

    /// The summary for people: total Pss (and USS) at every count, both ways, and the ratio.
    pub fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let how = match &self.readiness.ready_line {
            Some(l) => format!("ready when it prints a line starting with {l:?}"),
            None => format!("measured {} ms after the last spawn of each step", self.readiness.settle_ms),
        };
        writeln!(
            w,
            "zygote experiment: {} ({} instances per method, steps of {}; {how})",
            self.argv.join(" "),
            self.instances,
            self.step
        )?;
        let i = &self.image;
        match &i.fallback {
            Some(why) => writeln!(w, "  warning: the zygote starts this program by plain exec ({why})")?,
            None => writeln!(
                w,
                "  image: {}, {} sealed ({} resident), prepared in {:.1} ms",
                i.kind,
                human_bytes(i.sealed_bytes),
                human_bytes(i.sealed_resident_bytes),
                i.build_us / 1e3
            )?,
        }
        writeln!(w)?;
        writeln!(
            w,
            "  {:>9} {:>12} {:>12} {:>12}  {:>12} {:>12}",
            "instances", "exec Pss", "zygote Pss", "zygote/exec", "exec USS", "zygote USS"
        )?;
        for r in &self.summary {
            let ratio = r.ratio.map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"));
            writeln!(
                w,
                "  {:>9} {:>12} {:>12} {:>12}  {:>12} {:>12}",
                r.instances,
                human_bytes(r.exec_pss),
                human_bytes(r.zygote_pss),
                ratio,
                human_bytes(r.exec_uss),
                human_bytes(r.zygote_uss)
            )?;
        }
        writeln!(w, "  (totals over the instances alive; Pss and USS from /proc/PID/smaps_rollup)")?;
        writeln!(w)?;
        writeln!(w, "  report: {}", self.files.report)?;
        writeln!(w, "  charts: {}, {}", self.files.svg, self.files.png)?;
        Ok(())
    }
}

/// `report.json`, `pss.svg` and `pss.png`.
pub(super) fn write_report(report: &ExperimentReport) -> Result<(), ExperimentError> {
    let json_path = PathBuf::from(&report.files.report);
    let file = File::create(&json_path).map_err(|source| ExperimentError::Io {
        path: json_path.clone(),
        what: "create",
        source,
    })?;
    let mut w = io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut w, report)
        .map_err(|source| ExperimentError::Json { path: json_path.clone(), source })?;
    w.write_all(b"\n").and_then(|()| w.flush()).map_err(|source| ExperimentError::Io {
        path: json_path,
        what: "write",
        source,
    })?;
    chart::draw_svg(Path::new(&report.files.svg), report)?;
    chart::draw_png(Path::new(&report.files.png), report)?;
    Ok(())
}
