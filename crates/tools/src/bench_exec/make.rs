//! The C project case: Lua's C sources (the crates.io package lua-src)
//! with tests/cproject/Makefile, built with `make -jN CC=COMPILER
//! CFLAGS=OPT` by each method in its own directory, the methods alternating
//! build by build (the objects removed before each build, untimed).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::daemon::Setup;
use super::pss::Sampler;
use super::report::{CaseReport, Dist, MethodReport, PssSummary, ServedCheck};
use super::{BenchExecArgs, BenchExecError, Method, io_err, loadavg, methods, progress};

/// The project's Makefile (one object per source file).
pub const MAKEFILE: &str = include_str!("../../../../tests/cproject/Makefile");
/// The manifest that fetches lua-src.
const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/cproject/Cargo.toml");

/// The sources and their file names.
pub(super) struct Project {
    pub(super) sources: PathBuf,
    files: Vec<PathBuf>,
    objects: usize,
}

impl Project {
    pub(super) fn prepare(args: &BenchExecArgs) -> Result<Project, BenchExecError> {
        let sources = match &args.c_sources {
            Some(d) => d.clone(),
            None => match find_lua_sources() {
                Some(d) => d,
                None => {
                    fetch()?;
                    find_lua_sources().ok_or_else(|| {
                        BenchExecError::Failed(format!(
                            "no lua-src sources in Cargo's registry after fetching {MANIFEST}"
                        ))
                    })?
                }
            },
        };
        let mut files = Vec::new();
        for e in fs::read_dir(&sources).map_err(io_err(sources.display().to_string()))? {
            let p = e.map_err(io_err(sources.display().to_string()))?.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("c" | "h")) {
                files.push(p);
            }
        }
        let objects = files.iter().filter(|p| p.extension().is_some_and(|x| x == "c")).count();
        if objects == 0 {
            return Err(BenchExecError::Usage(format!("{}: no .c files", sources.display())));
        }
        Ok(Project { sources, files, objects })
    }

    /// A build directory: the sources and the Makefile.
    fn lay_out(&self, dir: &Path) -> Result<(), BenchExecError> {
        for f in &self.files {
            let to = dir.join(f.file_name().unwrap_or_default());
            fs::copy(f, &to).map_err(io_err(format!("copying {}", f.display())))?;
        }
        fs::write(dir.join("Makefile"), MAKEFILE).map_err(io_err("writing the Makefile"))
    }
}

/// `$CARGO_HOME/registry/src/*/lua-src-*/lua-5.4*`, the newest.
pub fn find_lua_sources() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let mut found = Vec::new();
    for index in fs::read_dir(home.join("registry/src")).ok()?.flatten() {
        for pkg in fs::read_dir(index.path()).into_iter().flatten().flatten() {
            if !pkg.file_name().to_string_lossy().starts_with("lua-src-") {
                continue;
            }
            for v in fs::read_dir(pkg.path()).into_iter().flatten().flatten() {
                if v.file_name().to_string_lossy().starts_with("lua-5.4") && v.path().join("lapi.c").is_file() {
                    found.push(v.path());
                }
            }
        }
    }
    found.sort();
    found.pop()
}

fn fetch() -> Result<(), BenchExecError> {
    progress(format_args!("fetching lua-src: cargo fetch --manifest-path {MANIFEST}"));
    let st = Command::new("cargo")
        .args(["fetch", "--manifest-path", MANIFEST])
        .stdin(Stdio::null())
        .status()
        .map_err(io_err("running cargo fetch"))?;
    if !st.success() {
        return Err(BenchExecError::Failed(format!("cargo fetch --manifest-path {MANIFEST}: {st}")));
    }
    Ok(())
}

/// One method's build directory and command.
struct Builder {
    method: Method,
    dir: PathBuf,
    cc: String,
    env: Vec<(OsString, OsString)>,
    times: Vec<Option<Duration>>,
    pss: Vec<PssSummary>,
    /// CPU time (ms) of each successful build: see [`cpu_ms`].
    cpu: Vec<Duration>,
    failures: usize,
    first_failure: Option<String>,
}

impl Builder {
    fn command(&self, args: &BenchExecArgs, opt: &str) -> String {
        let path = if self.method == Method::Link { "PATH=<links>:$PATH " } else { "" };
        format!("{path}make -j{} CC=\"{}\" CFLAGS={opt}", args.jobs, self.cc)
    }

    /// One build from scratch: its wall time, the compilers' Pss.
    fn build(&mut self, setup: &Setup, args: &BenchExecArgs, opt: &str) -> Result<Option<Duration>, BenchExecError> {
        clean(&self.dir)?;
        let log = fs::File::create(self.dir.join("make.log")).map_err(io_err("creating make.log"))?;
        let err = log.try_clone().map_err(io_err("make.log"))?;
        let mut cmd = Command::new("make");
        cmd.arg(format!("-j{}", args.jobs)).arg(format!("CC={}", self.cc)).arg(format!("CFLAGS={opt}"));
        cmd.current_dir(&self.dir).env_clear().envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(log).stderr(err);
        let daemon = setup.daemon_pid();
        let cpu_before = cpu_ms(daemon);
        let t = Instant::now();
        let mut child = cmd.spawn().map_err(io_err("starting make"))?;
        let mut roots = vec![child.id() as i32];
        if self.method == Method::DaemonSide {
            roots.extend(daemon);
        }
        let exes = vec![setup.compiler_exe.clone(), fs::canonicalize(setup.client()).unwrap_or(setup.client())];
        let sampler = Sampler::start(roots, exes, Duration::from_millis(args.pss_interval_ms));
        let st = child.wait().map_err(io_err("waiting for make"))?;
        let took = t.elapsed();
        let pss = sampler.finish();
        if st.success() {
            self.pss.extend(pss);
            self.cpu.push(Duration::from_millis(cpu_ms(daemon).saturating_sub(cpu_before)));
            return Ok(Some(took));
        }
        self.failures += 1;
        if self.first_failure.is_none() {
            let text = fs::read_to_string(self.dir.join("make.log")).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            self.first_failure = Some(format!("{}: {st}: {}", self.command(args, opt), tail.join(" | ")));
        }
        Ok(None)
    }
}

/// CPU time so far, in ms, user + system: of this process's reaped children
/// (make, and through it the compilers it reaped) and of the daemon with its
/// reaped children (what it did to serve, and the compilers `zygote spawn`
/// started). From `/proc/PID/stat` (clock ticks).
fn cpu_ms(daemon: Option<i32>) -> u64 {
    let ticks = |pid: &str, fields: &[usize]| -> u64 {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0 };
        // `after` starts at field 3 (state).
        let words: Vec<&str> = after.split_whitespace().collect();
        fields.iter().filter_map(|f| words.get(f - 3)?.parse::<u64>().ok()).sum()
    };
    let own = ticks("self", &[16, 17]);
    let d = daemon.map_or(0, |pid| ticks(&pid.to_string(), &[14, 15, 16, 17]));
    let hz = rustix::param::clock_ticks_per_second().max(1);
    (own + d) * 1000 / hz
}

/// Remove the objects.
fn clean(dir: &Path) -> Result<(), BenchExecError> {
    for e in fs::read_dir(dir).map_err(io_err(dir.display().to_string()))?.flatten() {
        if e.path().extension().is_some_and(|x| x == "o") {
            fs::remove_file(e.path()).map_err(io_err(e.path().display().to_string()))?;
        }
    }
    Ok(())
}

/// The make case at optimisation level `opt`.
pub(super) fn run(
    setup: &Setup,
    args: &BenchExecArgs,
    project: &Project,
    opt: &str,
    first: bool,
) -> Result<CaseReport, BenchExecError> {
    let label = format!("make -j{} CFLAGS={opt} ({} objects, CC {})", args.jobs, project.objects, args.compiler);
    let mut builders = Vec::new();
    for method in methods(args, false) {
        let dir = setup.subdir(&format!("make-{}", method.name().replace(' ', "-")))?;
        project.lay_out(&dir)?;
        let cc = match method {
            Method::DaemonSide => format!("{} spawn --daemon-side -- {}", setup.zygote.display(), args.compiler),
            _ => args.compiler.clone(),
        };
        let env = setup.env(method);
        let b = Builder {
            method,
            dir,
            cc,
            env,
            times: Vec::new(),
            pss: Vec::new(),
            cpu: Vec::new(),
            failures: 0,
            first_failure: None,
        };
        builders.push(b);
    }
    let link_env = setup.env(Method::Link);
    let link = setup.links.join(&args.compiler);
    let n = setup.warm(&format!("{} --version", link.display()), || {
        let st = Command::new(&link)
            .arg("--version")
            .env_clear()
            .envs(link_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_err(io_err(link.display().to_string()))?;
        if st.success() { Ok(()) } else { Err(BenchExecError::Failed(format!("{}: {st}", link.display()))) }
    })?;
    progress(format_args!("{label}: the compiler served after {n} run(s)"));
    if first {
        progress(format_args!("{label}: one untimed build per method"));
        for b in builders.iter_mut() {
            b.build(setup, args, opt)?;
            (b.failures, b.first_failure) = (0, None);
            b.pss.clear();
            b.cpu.clear();
        }
    }
    let load_before = loadavg();
    let before = setup.stats()?;
    let m = builders.len();
    for round in 0..args.make_rounds {
        for i in 0..m {
            let b = &mut builders[(i + round) % m];
            let t = b.build(setup, args, opt)?;
            b.times.push(t);
            progress(format_args!(
                "{label}: round {} of {}: {} {:.2} s (load {})",
                round + 1,
                args.make_rounds,
                b.method.name(),
                b.times.last().copied().flatten().map_or(0.0, |t| t.as_secs_f64()),
                loadavg()
            ));
        }
    }
    let after = setup.stats()?;
    let caller_runs = builders.iter().filter(|b| b.method.caller_side()).count() * args.make_rounds * project.objects;
    let methods = builders
        .iter()
        .map(|b| {
            let pss = PssSummary::median_of(&b.pss);
            let mut m =
                MethodReport::new(b.method, b.command(args, opt), &b.times, b.failures, b.first_failure.clone(), pss);
            m.cpu_ms = Some(Dist::new(&b.cpu.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>()));
            m
        })
        .collect();
    Ok(CaseReport::new(
        label,
        "ms",
        args.make_rounds,
        methods,
        ServedCheck::new(caller_runs as u64, &before, &after),
        load_before,
        loadavg(),
    ))
}
