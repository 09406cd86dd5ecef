//! What the tools start, prepared once before any clock runs: the program found in
//! `PATH`, its argv and environment as C strings for the baselines, the daemon's `Spawn`
//! request, and how a directly started child ended.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zygote_core::exec::Launch;
use zygote_protocol::message::{Request, SpawnArgs};

/// Find `program` like `execvp`: a name with a `/` is used as it is; otherwise the first
/// executable regular file of that name in `PATH` (default `/bin:/usr/bin`).
pub fn resolve_program(program: &OsStr) -> io::Result<PathBuf> {
    if program.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "empty program name"));
    }
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/bin:/usr/bin"));
    for dir in std::env::split_paths(&path) {
        // An empty PATH entry means the current directory.
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let candidate = dir.join(program);
        if is_executable_file(&candidate) {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(io::ErrorKind::NotFound, "command not found (not in PATH)"))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// This process's environment: `KEY=VALUE` entries, and `PATH`.
pub struct Env {
    pub environ: Vec<Vec<u8>>,
    pub path: Option<OsString>,
}

impl Env {
    pub fn current() -> Env {
        let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let environ = env.iter().map(|(k, v)| env_entry(k, v)).collect();
        let path = env.into_iter().find(|(k, _)| k == "PATH").map(|(_, v)| v);
        Env { environ, path }
    }
}

fn env_entry(key: &OsStr, value: &OsStr) -> Vec<u8> {
    let mut kv = Vec::with_capacity(key.len() + value.len() + 1);
    kv.extend_from_slice(key.as_bytes());
    kv.push(b'=');
    kv.extend_from_slice(value.as_bytes());
    kv
}

/// A program's path, argv and environment as C strings, for the baselines.
pub struct CArgs {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
}

impl CArgs {
    /// Err: which of them holds a NUL byte ("program path", "argument list", "environment").
    pub fn new(path: &Path, argv: &[OsString], environ: &[Vec<u8>]) -> Result<CArgs, &'static str> {
        let all = |what, items: &mut dyn Iterator<Item = &[u8]>| {
            items.map(|b| CString::new(b).map_err(|_| what)).collect::<Result<Vec<_>, _>>()
        };
        let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| "program path")?;
        let argv = all("argument list", &mut argv.iter().map(|a| a.as_bytes()))?;
        let envp = all("environment", &mut environ.iter().map(Vec::as_slice))?;
        Ok(CArgs { path, argv, envp })
    }
}

/// `Request::Spawn` of `launch` as `zygote spawn` sends it: stdio on fds 0, 1 and 2.
pub fn spawn_request(launch: &Launch, environ: &[Vec<u8>], cwd: &Path) -> Request {
    Request::Spawn(SpawnArgs {
        argv: launch.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        environ: environ.to_vec(),
        name: launch.exec_path.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default(),
        cwd: cwd.as_os_str().as_bytes().to_vec(),
        fds: vec![0, 1, 2],
        path: launch.program.as_os_str().as_bytes().to_vec(),
        detach: false,
    })
}

pub use zygote_linux::process::describe_std;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_uses_path_only_without_slash() {
        assert_eq!(resolve_program(OsStr::new("./x/y")).expect("as is"), PathBuf::from("./x/y"));
        let sh = resolve_program(OsStr::new("sh")).expect("sh is in PATH");
        assert!(sh.is_absolute() || sh.starts_with("."), "{}", sh.display());
        assert!(sh.ends_with("sh"));
        let e = resolve_program(OsStr::new("zygote-no-such-program-xyz")).expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(resolve_program(OsStr::new("")).is_err());
    }

    #[test]
    fn nul_bytes_are_named() {
        let argv = [OsString::from("a")];
        assert!(CArgs::new(Path::new("/bin/true"), &argv, &[b"A=1".to_vec()]).is_ok());
        assert_eq!(CArgs::new(Path::new("/bin/true"), &argv, &[b"A=\0".to_vec()]).err(), Some("environment"));
    }
}
