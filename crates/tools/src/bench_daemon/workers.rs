//! `zygote bench-daemon`'s clients: the programs prepared once for both methods, and
//! one client thread's rounds by each method (through the daemon, or `posix_spawn`).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use zygote_linux::baseline::{self, Baseline, Stdio};
use zygote_linux::exec as resolve;
use zygote_protocol::client::{Client, ClientError};
use zygote_protocol::message::Request;

use super::blocks::{ClientBlock, Gate};
use super::{DaemonBenchError as Error, DaemonBenchOptions, Phase};
use crate::client::{self, Exit};
use crate::launch::{CArgs, Env, spawn_request};
use crate::report::{Method, Outcome, Tally};

/// One program, with everything both methods need built once.
pub(super) struct Program {
    /// As given, for messages.
    pub(super) label: String,
    /// What `posix_spawn` starts, and its arguments.
    pub(super) path: PathBuf,
    pub(super) c: CArgs,
    /// The ELF file the daemon gets (after `#!`), opened by each client.
    pub(super) daemon_path: PathBuf,
    /// `Request::Spawn`, stdio on fds 0, 1 and 2.
    request: Request,
}

/// Everything shared by the client threads.
pub(super) struct Shared {
    pub(super) programs: Vec<Program>,
}

impl Shared {
    /// The program client `client` starts in its round `round` (counted over the run).
    fn program_for(&self, client: usize, round: usize) -> usize {
        program_for(client, round, self.programs.len())
    }
}

/// Client `client`'s program in its round `round`, of `programs`: the clients start at
/// different programs and each cycles through all of them.
fn program_for(client: usize, round: usize, programs: usize) -> usize {
    (client + round).checked_rem(programs).unwrap_or(0)
}

/// Resolve every program as `zygote spawn` does (PATH, then `#!` for the daemon) and
/// build both methods' arguments.
pub(super) fn prepare(opts: &DaemonBenchOptions) -> Result<Shared, Error> {
    let cwd = std::env::current_dir().map_err(|source| Error::Cwd { source })?;
    let env = Env::current();
    let mut programs = Vec::with_capacity(opts.programs.len());
    for (program, args) in &opts.programs {
        let label = program.to_string_lossy().into_owned();
        let found = resolve::find_program(program.as_os_str(), env.path.as_deref(), Some(&cwd))
            .map_err(|source| Error::Resolve { source })?;
        let mut argv: Vec<OsString> = Vec::with_capacity(args.len() + 1);
        argv.push(program.as_os_str().to_owned());
        argv.extend(args.iter().cloned());
        let c = CArgs::new(&found, &argv, &env.environ).map_err(|what| Error::Nul { program: label.clone(), what })?;
        let launch = resolve::follow_interpreters(found.clone(), argv, Some(&cwd))
            .map_err(|source| Error::Resolve { source })?;
        let request = spawn_request(&launch, &env.environ, &cwd);
        programs.push(Program { label, path: found, c, daemon_path: launch.program, request });
    }
    Ok(Shared { programs })
}

/// How one round ended, and when the program could not be started at all, the status a
/// shell would give.
pub(super) struct RoundResult {
    pub(super) outcome: Outcome,
    pub(super) refused_code: Option<i32>,
}

impl RoundResult {
    fn ended(outcome: Outcome) -> RoundResult {
        RoundResult { outcome, refused_code: None }
    }

    fn refused(how: String, code: i32) -> RoundResult {
        RoundResult { outcome: Outcome::failed(how), refused_code: Some(code) }
    }
}

/// `rounds` rounds of client `client`, its round `first` on, each made by `round`
/// (`None`: no such program, nothing done).
fn client_rounds(
    shared: &Shared,
    client: usize,
    first: usize,
    (rounds, phase): (usize, Phase),
    mut round: impl FnMut(usize, &Program) -> Result<Option<RoundResult>, Error>,
) -> Result<ClientBlock, Error> {
    let (mut tally, started) = (Tally::with_capacity(rounds), Some(Instant::now()));
    for n in first..first + rounds {
        let index = shared.program_for(client, n);
        let Some(program) = shared.programs.get(index) else { continue };
        let Some(r) = round(index, program)? else { continue };
        tally.record(index, r.outcome, |how| format!("{}: client {client}, {phase}: {how}", program.label));
    }
    Ok(ClientBlock { tally, started, finished: Some(Instant::now()) })
}

/// A client of the daemon: its connection, the programs opened, `/dev/null`.
pub(super) struct DaemonWorker {
    pub(super) client_index: usize,
    client: Client,
    exes: Vec<OwnedFd>,
    null: OwnedFd,
    /// Rounds done so far (selects the next program).
    round: usize,
}

impl DaemonWorker {
    pub(super) fn connect(client_index: usize, socket: &Path, shared: &Shared) -> Result<DaemonWorker, Error> {
        let client = Client::connect(socket).map_err(|source| Error::Connect { client: client_index, source })?;
        let exes =
            client::open_all(shared.programs.iter().map(|p| p.daemon_path.as_path())).map_err(|(i, source)| {
                let p = &shared.programs[i];
                Error::Open { program: p.label.clone(), path: p.daemon_path.clone(), source }
            })?;
        let null = zygote_linux::dev_null().map_err(|source| Error::DevNull { source })?;
        Ok(DaemonWorker { client_index, client, exes, null, round: 0 })
    }

    /// `Spawn` + `Wait` of program `index`.
    pub(super) fn round(&mut self, program: &Program, index: usize) -> Result<RoundResult, ClientError> {
        let exe = self.exes.get(index).ok_or_else(|| ClientError::Protocol(format!("no program {index}")))?;
        let null = self.null.as_fd();
        let fds = [exe.as_fd(), null, null, null];
        let start = Instant::now();
        self.client.send(&program.request, &fds)?;
        let (pid, _key, pidfd) = match client::recv_spawned(&mut self.client)? {
            Ok(spawned) => spawned,
            Err(r) => return Ok(RoundResult::refused(r.describe("Spawn"), r.code.exit_code())),
        };
        let call = start.elapsed();
        self.client.send(&Request::Wait { pid }, &[])?;
        let exit = match client::recv_exited(&mut self.client)? {
            Ok(exit) => exit,
            Err(r) => return Ok(RoundResult::refused(r.describe("Wait"), r.code.exit_code())),
        };
        let total = start.elapsed();
        // The pidfd is closed after the clock stopped.
        drop(pidfd);
        let failure = match exit {
            Exit::Code(0) => None,
            Exit::Code(c) => Some(format!("exited with status {c}")),
            Exit::Signal(s) => Some(format!("killed by signal {s}")),
            Exit::Unknown => Some("ended, the daemon could not tell how".to_owned()),
        };
        Ok(RoundResult::ended(Outcome::ended(call, total, failure)))
    }

    pub(super) fn run(&mut self, shared: &Shared, block: (usize, Phase), gate: &Gate) -> Result<ClientBlock, Error> {
        if !gate.ready_and_wait() {
            return Ok(ClientBlock::default());
        }
        let (client, first, phase) = (self.client_index, self.round, block.1);
        self.round += block.0;
        client_rounds(shared, client, first, block, |index, program| {
            let r = self.round(program, index).map_err(|source| Error::Daemon {
                program: program.label.clone(),
                client,
                method: Method::Daemon,
                phase,
                source,
            })?;
            Ok(Some(r))
        })
    }
}

/// A `posix_spawn` client thread's place in the program cycle (its `Baseline`s are
/// built in the thread: they hold raw pointers and stay on the thread that made them).
pub(super) struct PosixWorker {
    pub(super) client_index: usize,
    pub(super) round: usize,
}

impl PosixWorker {
    pub(super) fn baselines(&self, shared: &Shared, phase: Phase) -> Result<Vec<Baseline>, Error> {
        shared
            .programs
            .iter()
            .map(|p| {
                Baseline::new(&p.c.path, &p.c.argv, &p.c.envp, Stdio::Null).map_err(|source| Error::Posix {
                    program: p.label.clone(),
                    client: self.client_index,
                    phase,
                    step: "preparing posix_spawn",
                    source,
                })
            })
            .collect()
    }

    pub(super) fn round(&self, baseline: &mut Baseline, program: &Program, phase: Phase) -> Result<RoundResult, Error> {
        let start = Instant::now();
        let pid = match baseline.posix_spawn() {
            Ok(pid) => pid,
            Err(e) => {
                let code = if e.kind() == io::ErrorKind::NotFound { 127 } else { 126 };
                return Ok(RoundResult::refused(format!("posix_spawn failed: {e}"), code));
            }
        };
        let call = start.elapsed();
        let status = baseline::wait_pid(pid).map_err(|source| Error::Posix {
            program: program.label.clone(),
            client: self.client_index,
            phase,
            step: "waitpid",
            source,
        })?;
        let total = start.elapsed();
        let failure = (!baseline::wait_status_success(status)).then(|| baseline::describe_wait_status(status));
        Ok(RoundResult::ended(Outcome::ended(call, total, failure)))
    }

    pub(super) fn run(&mut self, shared: &Shared, block: (usize, Phase), gate: &Gate) -> Result<ClientBlock, Error> {
        // Set up before the gate, and pass the gate even on failure so no thread waits
        // for this one.
        let baselines = self.baselines(shared, block.1);
        let go = gate.ready_and_wait();
        let mut baselines = baselines?;
        if !go {
            return Ok(ClientBlock::default());
        }
        let first = self.round;
        self.round += block.0;
        client_rounds(shared, self.client_index, first, block, |index, program| {
            baselines.get_mut(index).map(|b| self.round(b, program, block.1)).transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_cycle_through_the_programs() {
        // Clients start at different programs; each cycles through all of them.
        let firsts: Vec<usize> = (0..4).map(|c| program_for(c, 0, 2)).collect();
        assert_eq!(firsts, vec![0, 1, 0, 1]);
        let client1: Vec<usize> = (0..4).map(|r| program_for(1, r, 3)).collect();
        assert_eq!(client1, vec![1, 2, 0, 1]);
        assert_eq!(program_for(3, 5, 0), 0);
    }
}
