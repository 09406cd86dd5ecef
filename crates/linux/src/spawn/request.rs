//! What a spawn is asked to do: [`SpawnRequest`] (built like
//! `std::process::Command`), the per-spawn [`StartOptions`], and the checks of
//! what a caller may ask for.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use zygote_core::Credentials;

use super::{MAX_TARGET_FD, SpawnError};
use crate::restrictions::ChildRestrictions;

/// What to start, built like `std::process::Command`.
#[derive(Debug)]
pub struct SpawnRequest {
    pub(super) program: OsString,
    pub(super) argv: Vec<OsString>,
    env_inherit: bool,
    env_set: Vec<(OsString, OsString)>,
    /// Exact `KEY=VALUE` entries (a resolved request: the daemon's).
    env_exact: Option<Vec<OsString>>,
    pub(super) cwd: Option<PathBuf>,
    pub(super) name: Option<OsString>,
    pub(super) fds: Vec<(OwnedFd, RawFd)>,
}

impl SpawnRequest {
    pub fn new(program: impl Into<OsString>) -> Self {
        let program = program.into();
        SpawnRequest {
            argv: vec![program.clone()],
            program,
            env_inherit: true,
            env_set: Vec::new(),
            env_exact: None,
            cwd: None,
            name: None,
            fds: Vec::new(),
        }
    }
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.argv.push(a.into());
        self
    }
    pub fn args(mut self, it: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.argv.extend(it.into_iter().map(Into::into));
        self
    }
    pub fn argv0(mut self, a: impl Into<OsString>) -> Self {
        self.argv[0] = a.into();
        self
    }
    pub fn env_clear(mut self) -> Self {
        self.env_inherit = false;
        self.env_set.clear();
        self
    }
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        let k = k.as_ref().to_os_string();
        self.env_set.retain(|(ek, _)| *ek != k);
        self.env_set.push((k, v.as_ref().to_os_string()));
        self
    }
    pub fn cwd(mut self, d: impl Into<PathBuf>) -> Self {
        self.cwd = Some(d.into());
        self
    }
    pub fn name(mut self, n: impl Into<OsString>) -> Self {
        self.name = Some(n.into());
        self
    }
    /// Give the child `fd` as fd number `target`; 0..=2 replace stdio. Every fd
    /// not passed (other than inherited stdio) is closed in the child.
    pub fn fd(mut self, fd: OwnedFd, target: RawFd) -> Self {
        self.fds.retain(|(_, t)| *t != target);
        self.fds.push((fd, target));
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }
    /// argv, argv[0] included.
    pub fn argv(&self) -> &[OsString] {
        &self.argv
    }
    pub fn cwd_path(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }
    pub fn process_name(&self) -> Option<&OsStr> {
        self.name.as_deref()
    }
    /// The fds given with [`SpawnRequest::fd`], with their target numbers.
    pub fn fds(&self) -> &[(OwnedFd, RawFd)] {
        &self.fds
    }

    /// Exactly these `KEY=VALUE` entries, in this order (duplicates kept, as
    /// execve would pass them): for a request resolved elsewhere.
    pub fn environ(mut self, entries: Vec<OsString>) -> Self {
        self.env_exact = Some(entries);
        self
    }

    /// Give the child these fds at these targets, refusing targets out of
    /// range or given twice (a caller's mistake, not something to resolve).
    pub fn fds_checked(mut self, fds: Vec<(OwnedFd, RawFd)>) -> Result<Self, SpawnError> {
        let raw: Vec<(RawFd, RawFd)> = fds.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
        check_fd_targets(&raw)?;
        self.fds = fds;
        Ok(self)
    }

    /// The final environment, as `KEY=VALUE` strings.
    pub fn environment(&self) -> Vec<OsString> {
        if let Some(exact) = &self.env_exact {
            return exact.clone();
        }
        let mut env: Vec<(OsString, OsString)> =
            if self.env_inherit { std::env::vars_os().collect() } else { Vec::new() };
        for (k, v) in &self.env_set {
            match env.iter_mut().find(|(ek, _)| ek == k) {
                Some(slot) => slot.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        env.into_iter()
            .map(|(k, v)| {
                let mut s = k;
                s.push("=");
                s.push(v);
                s
            })
            .collect()
    }
}

/// Per-spawn options for [`Zygote::start`](super::Zygote::start).
#[derive(Clone, Copy, Debug)]
pub struct StartOptions<'a> {
    /// The program file, opened by the requester (its proof of access): the
    /// image's file-backed regions are mapped from it, and a program that
    /// runs by plain exec is exec'd from it. Never another requester's file.
    pub program: BorrowedFd<'a>,
    /// `KEY=VALUE` entries.
    pub env: &'a [OsString],
    pub cwd: Option<&'a Path>,
    /// Process name; `None` or empty: the exec'd file's name.
    pub name: Option<&'a [u8]>,
    /// (fd in the caller, fd number in the child).
    pub fds: &'a [(RawFd, RawFd)],
    /// Run with these credentials; `None`: the caller's.
    pub creds: Option<Credentials<'a>>,
    /// The requester's restrictions (rlimits, cgroup, no-new-privs, ...)
    /// when they are not ours; `None`: the program inherits ours.
    pub restrict: Option<&'a ChildRestrictions>,
}

/// Refuse fd targets a caller may not ask for: outside `0..=MAX_TARGET_FD`,
/// or the same target twice.
pub(super) fn check_fd_targets(fds: &[(RawFd, RawFd)]) -> Result<(), SpawnError> {
    for (i, (_, t)) in fds.iter().enumerate() {
        if !(0..=MAX_TARGET_FD).contains(t) {
            return Err(SpawnError::Request(format!("fd target {t} is outside 0..={MAX_TARGET_FD}")));
        }
        if fds[..i].iter().any(|(_, u)| u == t) {
            return Err(SpawnError::Request(format!("fd target {t} is given twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(fds: &[(RawFd, RawFd)]) -> String {
        match check_fd_targets(fds) {
            Err(SpawnError::Request(msg)) => msg,
            other => panic!("{fds:?}: expected a request error, got {other:?}"),
        }
    }

    #[test]
    fn fd_targets_in_range_and_distinct_pass() {
        check_fd_targets(&[]).unwrap();
        check_fd_targets(&[(7, 0), (8, 1), (9, 2)]).unwrap();
        check_fd_targets(&[(7, 3), (7, 4), (8, MAX_TARGET_FD)]).unwrap();
        // The same source may go to several targets; order does not matter.
        check_fd_targets(&[(5, 9), (5, 1), (6, 0)]).unwrap();
    }

    #[test]
    fn fd_targets_out_of_range_are_request_errors() {
        assert_eq!(refusal(&[(7, -1)]), format!("fd target -1 is outside 0..={MAX_TARGET_FD}"));
        assert_eq!(
            refusal(&[(7, 0), (8, MAX_TARGET_FD + 1)]),
            format!("fd target {} is outside 0..={MAX_TARGET_FD}", MAX_TARGET_FD + 1)
        );
        refusal(&[(7, RawFd::MIN)]);
        refusal(&[(7, RawFd::MAX)]);
    }

    #[test]
    fn duplicate_fd_targets_are_request_errors() {
        assert_eq!(refusal(&[(7, 4), (8, 4)]), "fd target 4 is given twice");
        assert_eq!(refusal(&[(7, 0), (8, 1), (9, 0)]), "fd target 0 is given twice");
        // The first problem found is reported.
        assert_eq!(refusal(&[(7, 4), (8, 4), (9, -2)]), "fd target 4 is given twice");
    }

    #[test]
    fn a_request_keeps_one_fd_per_target() {
        let null = || crate::dev_null().unwrap();
        let req = SpawnRequest::new("prog").fd(null(), 5).fd(null(), 1).fd(null(), 5);
        let targets: Vec<RawFd> = req.fds.iter().map(|p| p.1).collect();
        assert_eq!(targets, [1, 5]);
    }

    #[test]
    fn environment_overrides_and_clear() {
        let req = SpawnRequest::new("prog").env_clear().env("A", "1").env("B", "2").env("A", "3");
        assert_eq!(req.environment(), [OsString::from("B=2"), OsString::from("A=3")]);
        let req = SpawnRequest::new("prog").env("A", "1").env_clear();
        assert!(req.environment().is_empty());
    }

    #[test]
    fn argv_starts_with_the_program() {
        let req = SpawnRequest::new("prog").arg("a").args(["b", "c"]);
        assert_eq!(req.argv, ["prog", "a", "b", "c"]);
        assert_eq!(req.argv0("zero").argv[0], "zero");
    }
}
