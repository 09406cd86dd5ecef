//! The quick cases (`/bin/true`, `COMPILER --version`): every method once
//! per round, in an order that rotates round by round, each run a
//! vfork + execve of the command with stdio on /dev/null, then waitpid.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zygote_linux::baseline::{Baseline, Stdio};

use super::daemon::Setup;
use super::report::{CaseReport, MethodReport, ServedCheck};
use super::{BenchExecArgs, BenchExecError, Method, environ, io_err, loadavg, methods, progress};

/// One method's prepared command.
struct Runner {
    method: Method,
    command: String,
    spawn: Baseline,
    times: Vec<Option<Duration>>,
    failures: usize,
    first_failure: Option<String>,
}

impl Runner {
    fn new(setup: &Setup, method: Method, argv: Vec<OsString>, path: PathBuf) -> Result<Runner, BenchExecError> {
        let env = setup.env(method);
        let command = shell_words(&argv, &path, method);
        let cstr = |v: Vec<u8>| CString::new(v).map_err(|_| BenchExecError::Usage(format!("{command}: a NUL byte")));
        let c_path = cstr(path.clone().into_os_string().into_vec())?;
        let c_argv = argv.into_iter().map(|a| cstr(a.into_vec())).collect::<Result<Vec<_>, _>>()?;
        let c_env = environ(&env).into_iter().map(cstr).collect::<Result<Vec<_>, _>>()?;
        let spawn =
            Baseline::new(&c_path, &c_argv, &c_env, Stdio::Null).map_err(io_err(format!("{command}: setup")))?;
        Ok(Runner { method, command, spawn, times: Vec::new(), failures: 0, first_failure: None })
    }

    /// One run: its wall time when it exited with status 0.
    fn once(&mut self) -> Result<Option<Duration>, BenchExecError> {
        let t = Instant::now();
        let status = self.spawn.vfork_exec_wait().map_err(io_err(format!("{}: vfork+execve", self.command)))?;
        let took = t.elapsed();
        if status == 0 {
            return Ok(Some(took));
        }
        self.failures += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(format!("{}: wait status {status:#x}", self.command));
        }
        Ok(None)
    }
}

/// How a shell line would read (for the report).
fn shell_words(argv: &[OsString], path: &Path, method: Method) -> String {
    let mut words: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    if method == Method::Link {
        words[0] = path.display().to_string();
        return format!("PATH=<links>:$PATH {}", words.join(" "));
    }
    words.join(" ")
}

/// The case `program args` (`true` stands for `/bin/true`).
pub(super) fn run(
    setup: &Setup,
    args: &BenchExecArgs,
    program: &str,
    rest: &[OsString],
) -> Result<CaseReport, BenchExecError> {
    let (given, name, direct) = if program == "true" {
        ("/bin/true".to_string(), "true".to_string(), PathBuf::from("/bin/true"))
    } else {
        (program.to_string(), program.to_string(), setup.compiler_path.clone())
    };
    let label = std::iter::once(given.clone()).chain(rest.iter().map(|a| a.to_string_lossy().into_owned()));
    let label = label.collect::<Vec<_>>().join(" ");
    let with = |first: Vec<&str>| -> Vec<OsString> {
        first.into_iter().map(OsString::from).chain(rest.iter().cloned()).collect()
    };
    let mut runners = Vec::new();
    for method in methods(args, true) {
        let (argv, path) = match method {
            Method::Direct => (with(vec![&given]), direct.clone()),
            Method::Client => (with(vec!["zygote-exec", &given]), setup.client()),
            Method::Link => (with(vec![&name]), setup.links.join(&name)),
            Method::DaemonSide => {
                let z = setup.zygote.to_string_lossy().into_owned();
                (with(vec![&z, "spawn", "--daemon-side", "--", &given]), setup.zygote.clone())
            }
        };
        runners.push(Runner::new(setup, method, argv, path)?);
    }
    progress(format_args!("{label}: warming the cache (the first caller-side runs miss)"));
    for r in runners.iter_mut().filter(|r| r.method.caller_side()) {
        let command = r.command.clone();
        let n = setup.warm(&command, || r.once().map(|_| ()))?;
        progress(format_args!("{label}: {command}: served after {n} run(s)"));
    }
    for _ in 0..args.warmup {
        for r in runners.iter_mut() {
            r.once()?;
        }
    }
    for r in runners.iter_mut() {
        (r.failures, r.first_failure) = (0, None);
    }
    let load_before = loadavg();
    let before = setup.stats()?;
    let m = runners.len();
    for round in 0..args.rounds {
        for i in 0..m {
            let r = &mut runners[(i + round) % m];
            let t = r.once()?;
            r.times.push(t);
        }
        if (round + 1) % 50 == 0 || round + 1 == args.rounds {
            progress(format_args!("{label}: {} of {} rounds", round + 1, args.rounds));
        }
    }
    let after = setup.stats()?;
    let caller_runs = runners.iter().filter(|r| r.method.caller_side()).count() as u64 * args.rounds as u64;
    let methods = runners
        .iter()
        .map(|r| MethodReport::new(r.method, r.command.clone(), &r.times, r.failures, r.first_failure.clone(), None))
        .collect();
    Ok(CaseReport::new(
        label,
        "us",
        args.rounds,
        methods,
        ServedCheck::new(caller_runs, &before, &after),
        load_before,
        loadavg(),
    ))
}
