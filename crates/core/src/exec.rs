//! Exec semantics: PATH lookup as execvp does, and `#!` interpreters with the
//! kernel's argv rules (binfmt_script).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// execvp's search path when PATH is unset (confstr _CS_PATH on glibc).
pub const DEFAULT_PATH: &str = "/bin:/usr/bin";
/// The kernel reads this much of a file to find a `#!` line (BINPRM_BUF_SIZE).
pub const SHEBANG_BUF: usize = 256;
/// Most nested interpreters the kernel follows (BINPRM_MAX_RECURSION + 1 files).
pub const MAX_INTERP_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{program}: command not found")]
    CommandNotFound { program: String },
    #[error("{path}: No such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path}: Permission denied")]
    PermissionDenied { path: PathBuf },
    #[error("{path}: Is a directory")]
    IsDirectory { path: PathBuf },
    #[error("{script}: {interp}: bad interpreter: {why}")]
    BadInterpreter { script: PathBuf, interp: String, why: String },
    #[error("{script}: too many levels of #! interpreters (the kernel allows {MAX_INTERP_DEPTH})")]
    TooDeep { script: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl ResolveError {
    /// The status a shell exits with for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            ResolveError::CommandNotFound { .. } | ResolveError::NotFound { .. } => 127,
            _ => 126,
        }
    }
}

/// What to run: the ELF file to prepare, and the argv the program sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// The ELF program (after following `#!` lines).
    pub program: PathBuf,
    pub argv: Vec<OsString>,
    /// The path first exec'd (the script, for scripts): its basename is the
    /// process name, as the kernel does.
    pub exec_path: PathBuf,
}

/// What a file is, as far as exec cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Directory,
    Regular,
    Other,
}

/// The file-system questions exec's rules ask; the kernel backend answers them.
pub trait ExecFs {
    /// The type and permission bits of the file `path` names (links followed).
    fn stat(&self, path: &Path) -> io::Result<(FileType, u32)>;
    /// May this process execute `path` (access(2) with X_OK)?
    fn may_execute(&self, path: &Path) -> bool;
    /// Open `path` for reading and return its first `n` bytes (fewer at its end).
    fn read_head(&self, path: &Path, n: usize) -> io::Result<Vec<u8>>;
}

/// Check that `path` is an executable regular file, as execve would.
fn check_executable(fs: &impl ExecFs, path: &Path) -> Result<(), ResolveError> {
    let (kind, mode) = match fs.stat(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ResolveError::NotFound { path: path.to_path_buf() });
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(ResolveError::PermissionDenied { path: path.to_path_buf() });
        }
        Err(source) => return Err(ResolveError::Io { path: path.to_path_buf(), source }),
    };
    if kind == FileType::Directory {
        return Err(ResolveError::IsDirectory { path: path.to_path_buf() });
    }
    if kind != FileType::Regular || mode & 0o111 == 0 || !fs.may_execute(path) {
        return Err(ResolveError::PermissionDenied { path: path.to_path_buf() });
    }
    Ok(())
}

/// Find `program` as execvp does: a name with a slash is used as is (checked
/// relative to `cwd` when given); otherwise each PATH entry is tried in order (an empty
/// entry is the current directory), skipping entries that are missing, and
/// reporting "Permission denied" if only non-executable candidates were found.
///
/// Returns the path as execvp would pass it to execve (`./x`, `bin/x`,
/// `/usr/bin/x`): a relative one is relative to `cwd` (see
/// [`follow_interpreters`], which keeps the name for a script's argv and
/// opens the file in `cwd`).
pub fn find_program(
    fs: &impl ExecFs,
    program: &OsStr,
    path_var: Option<&OsStr>,
    cwd: Option<&Path>,
) -> Result<PathBuf, ResolveError> {
    let in_cwd = |p: PathBuf| match cwd {
        Some(c) if p.is_relative() => c.join(p),
        _ => p,
    };
    if program.is_empty() {
        return Err(ResolveError::NotFound { path: PathBuf::new() });
    }
    if program.as_bytes().contains(&b'/') {
        check_executable(fs, &in_cwd(PathBuf::from(program)))?;
        return Ok(PathBuf::from(program));
    }
    let path_var = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut denied = None;
    for dir in path_var.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
        let candidate = dir.join(program);
        match check_executable(fs, &in_cwd(candidate.clone())) {
            Ok(()) => return Ok(candidate),
            Err(ResolveError::PermissionDenied { path } | ResolveError::IsDirectory { path }) => {
                denied.get_or_insert(path);
            }
            Err(_) => {}
        }
    }
    match denied {
        Some(path) => Err(ResolveError::PermissionDenied { path }),
        None => Err(ResolveError::CommandNotFound { program: program.to_string_lossy().into_owned() }),
    }
}

/// A parsed `#!` line: interpreter and its optional single argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shebang {
    pub interp: OsString,
    pub arg: Option<OsString>,
}

/// Parse the start of a file as the kernel's binfmt_script does. `None` if it
/// is not a `#!` file. `Err` with a reason for a malformed line.
pub fn parse_shebang(buf: &[u8]) -> Option<Result<Shebang, &'static str>> {
    let rest = buf.strip_prefix(b"#!")?;
    let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
        Some(n) => (&rest[..n], true),
        None => (rest, buf.len() < SHEBANG_BUF),
    };
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let trimmed_end = line.iter().rposition(|b| !is_ws(b)).map_or(&line[..0], |i| &line[..=i]);
    let start = trimmed_end.iter().position(|b| !is_ws(b)).unwrap_or(trimmed_end.len());
    let body = &trimmed_end[start..];
    let name_end = body.iter().position(|b| is_ws(b) || *b == 0).unwrap_or(body.len());
    let interp = &body[..name_end];
    if interp.is_empty() {
        return Some(Err("no interpreter named"));
    }
    if !complete && name_end == body.len() {
        // The interpreter's name runs past the buffer: the kernel refuses it.
        return Some(Err("interpreter path too long"));
    }
    let after = &body[name_end..];
    let arg_start = after.iter().position(|b| !is_ws(b)).unwrap_or(after.len());
    let arg = &after[arg_start..];
    let arg = arg.split(|&b| b == 0).next().unwrap_or(arg);
    Some(Ok(Shebang {
        interp: OsString::from_vec(interp.to_vec()),
        arg: (!arg.is_empty()).then(|| OsString::from_vec(arg.to_vec())),
    }))
}

fn read_head(fs: &impl ExecFs, path: &Path) -> Result<Vec<u8>, ResolveError> {
    fs.read_head(path, SHEBANG_BUF).map_err(|source| match source.kind() {
        std::io::ErrorKind::PermissionDenied => ResolveError::PermissionDenied { path: path.to_path_buf() },
        _ => ResolveError::Io { path: path.to_path_buf(), source },
    })
}

/// Follow `#!` lines from `path` (from [`find_program`]: executable, relative
/// to `cwd` if relative) to the ELF program that will really run, rewriting
/// argv as the kernel does: `[interp, arg?, script, argv[1..]...]`, where
/// `script` is the name execve got (`path`, or the interpreter named by the
/// `#!` line one level up), as given, while the files read and the program
/// returned are taken in `cwd`.
pub fn follow_interpreters(
    fs: &impl ExecFs,
    path: PathBuf,
    argv: Vec<OsString>,
    cwd: Option<&Path>,
) -> Result<Launch, ResolveError> {
    let in_cwd = |p: &Path| match cwd {
        Some(c) if p.is_relative() => c.join(p),
        _ => p.to_path_buf(),
    };
    let exec_path = in_cwd(&path);
    let mut program = exec_path.clone();
    let mut name = path.into_os_string();
    let mut argv = argv;
    for _ in 0..=MAX_INTERP_DEPTH {
        let head = read_head(fs, &program)?;
        let sb = match parse_shebang(&head) {
            None => return Ok(Launch { program, argv, exec_path }),
            Some(Err(why)) => {
                return Err(ResolveError::BadInterpreter { script: program, interp: String::new(), why: why.into() });
            }
            Some(Ok(sb)) => sb,
        };
        let interp_path = in_cwd(Path::new(&sb.interp));
        if let Err(e) = check_executable(fs, &interp_path) {
            let why = match e {
                ResolveError::NotFound { .. } => "No such file or directory".to_string(),
                ResolveError::PermissionDenied { .. } => "Permission denied".to_string(),
                ResolveError::IsDirectory { .. } => "Is a directory".to_string(),
                other => other.to_string(),
            };
            return Err(ResolveError::BadInterpreter {
                script: program,
                interp: sb.interp.to_string_lossy().into_owned(),
                why,
            });
        }
        let mut next = Vec::with_capacity(argv.len() + 2);
        next.push(sb.interp.clone());
        next.extend(sb.arg);
        next.push(name);
        next.extend(argv.into_iter().skip(1));
        argv = next;
        program = interp_path;
        name = sb.interp;
    }
    Err(ResolveError::TooDeep { script: exec_path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(s: &[u8]) -> Option<Result<Shebang, &'static str>> {
        parse_shebang(s)
    }

    #[test]
    fn shebang_rules() {
        assert_eq!(sb(b"\x7fELF"), None);
        assert_eq!(sb(b"#!/bin/sh\n"), Some(Ok(Shebang { interp: "/bin/sh".into(), arg: None })));
        assert_eq!(
            sb(b"#!  /usr/bin/env   python3 -u  \nprint()"),
            Some(Ok(Shebang { interp: "/usr/bin/env".into(), arg: Some("python3 -u".into()) }))
        );
        assert_eq!(sb(b"#!/i\targ\n"), Some(Ok(Shebang { interp: "/i".into(), arg: Some("arg".into()) })));
        assert_eq!(sb(b"#!\n"), Some(Err("no interpreter named")));
        let mut long = b"#!/".to_vec();
        long.resize(SHEBANG_BUF, b'a');
        assert_eq!(sb(&long), Some(Err("interpreter path too long")));
        // No newline in a short file is fine.
        assert_eq!(sb(b"#!/bin/x y"), Some(Ok(Shebang { interp: "/bin/x".into(), arg: Some("y".into()) })));
    }

    /// A file system of a few entries: (type, mode, may execute, contents).
    struct MemFs(Vec<(&'static str, FileType, u32, bool, &'static [u8])>);

    impl MemFs {
        fn find(&self, path: &Path) -> io::Result<&(&'static str, FileType, u32, bool, &'static [u8])> {
            self.0.iter().find(|e| Path::new(e.0) == path).ok_or_else(|| io::ErrorKind::NotFound.into())
        }
    }

    impl ExecFs for MemFs {
        fn stat(&self, path: &Path) -> io::Result<(FileType, u32)> {
            self.find(path).map(|e| (e.1, e.2))
        }
        fn may_execute(&self, path: &Path) -> bool {
            self.find(path).is_ok_and(|e| e.3)
        }
        fn read_head(&self, path: &Path, n: usize) -> io::Result<Vec<u8>> {
            self.find(path).map(|e| e.4[..n.min(e.4.len())].to_vec())
        }
    }

    fn fs() -> MemFs {
        use FileType::*;
        MemFs(vec![
            ("/bin", Directory, 0o755, true, b""),
            ("/bin/sh", Regular, 0o755, true, b"\x7fELF"),
            ("/bin/ro", Regular, 0o644, false, b"\x7fELF"),
            ("/sbin/ro", Regular, 0o755, false, b"\x7fELF"),
            ("/usr/bin/ro", Regular, 0o755, true, b"\x7fELF"),
            ("/etc/passwd", Regular, 0o644, false, b"root"),
            ("/s/script", Regular, 0o755, true, b"#!/bin/sh -e\necho"),
            ("/s/nested", Regular, 0o755, true, b"#!/s/script\n"),
            ("/s/rel-interp", Regular, 0o755, true, b"#!s/script\n"),
            ("/s/bad", Regular, 0o755, true, b"#!/no/such\n"),
            ("/s/loop", Regular, 0o755, true, b"#!/s/loop\n"),
            ("/work/rel", Regular, 0o755, true, b"\x7fELF"),
        ])
    }

    #[test]
    fn path_lookup() {
        let fs = fs();
        let find = |p: &str, path: Option<&str>| find_program(&fs, OsStr::new(p), path.map(OsStr::new), None);
        assert!(matches!(find("zz", Some("/nonexistent:/also-not")), Err(ResolveError::CommandNotFound { .. })));
        assert_eq!(find("sh", Some("/nonexistent:/bin")).unwrap(), PathBuf::from("/bin/sh"));
        assert_eq!(find("sh", None).unwrap(), PathBuf::from("/bin/sh"), "the default PATH has /bin");
        // Not executable: skipped, but reported when nothing else is found.
        assert_eq!(find("ro", Some("/bin:/sbin:/usr/bin")).unwrap(), PathBuf::from("/usr/bin/ro"));
        assert!(matches!(find("ro", Some("/bin:/sbin")), Err(ResolveError::PermissionDenied { .. })));
        assert!(matches!(find("/etc/passwd", None), Err(ResolveError::PermissionDenied { .. })));
        assert!(matches!(find("/bin", None), Err(ResolveError::IsDirectory { .. })));
        assert!(matches!(find("/no/such", None), Err(ResolveError::NotFound { .. })));
        let rel = find_program(&fs, OsStr::new("./rel"), None, Some(Path::new("/work"))).unwrap();
        assert_eq!(rel, PathBuf::from("./rel"), "a relative name with a slash stays as given");
    }

    #[test]
    fn interpreters_rewrite_argv_as_the_kernel_does() {
        let fs = fs();
        let argv = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let l = follow_interpreters(&fs, "/s/nested".into(), argv(&["nested", "x"]), None).unwrap();
        assert_eq!(l.program, PathBuf::from("/bin/sh"));
        assert_eq!(l.exec_path, PathBuf::from("/s/nested"));
        assert_eq!(l.argv, argv(&["/bin/sh", "-e", "/s/script", "/s/nested", "x"]));
        // The script's name stays as given (binfmt_script passes execve's
        // filename); the files are read in cwd. So does a relative `#!`.
        let l = follow_interpreters(&fs, "./nested".into(), argv(&["./nested", "x"]), Some(Path::new("/s"))).unwrap();
        assert_eq!((l.program, l.exec_path), (PathBuf::from("/bin/sh"), PathBuf::from("/s/./nested")));
        assert_eq!(l.argv, argv(&["/bin/sh", "-e", "/s/script", "./nested", "x"]));
        let l = follow_interpreters(&fs, "s/rel-interp".into(), argv(&["r"]), Some(Path::new("/"))).unwrap();
        assert_eq!(l.argv, argv(&["/bin/sh", "-e", "s/script", "s/rel-interp"]));
        let e = follow_interpreters(&fs, "/s/bad".into(), argv(&["bad"]), None).unwrap_err();
        assert!(matches!(&e, ResolveError::BadInterpreter { why, .. } if why == "No such file or directory"), "{e}");
        let e = follow_interpreters(&fs, "/s/loop".into(), argv(&["loop"]), None).unwrap_err();
        assert!(matches!(e, ResolveError::TooDeep { .. }), "{e}");
    }
}
