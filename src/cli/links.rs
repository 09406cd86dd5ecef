//! `zygote install-links`: install the thin exec client into a directory
//! with links named after programs (masquerade, as ccache's): with the
//! directory first in PATH, every build and script starts those programs
//! from the daemon's cache, as the caller's own processes.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use clap::Args;

use super::CliError;

/// The client's file name in the directory (links point at it).
const CLIENT: &str = "zygote-exec";
/// Linked when no names are given (those found on PATH).
const DEFAULT_NAMES: &[&str] =
    &["cc", "c++", "gcc", "g++", "clang", "clang++", "clang-14", "clang++-14", "cpp", "as", "ld", "python3", "perl"];

#[derive(Args)]
pub struct LinksArgs {
    /// Directory to install into (created when missing); put it first in PATH.
    dir: PathBuf,
    /// Program names to link (default: common compilers and interpreters
    /// found on PATH: cc, c++, gcc, g++, clang, clang++, python3, ...).
    names: Vec<String>,
    /// Replace files of those names that are not links to the client.
    #[arg(long)]
    force: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn install_links(a: LinksArgs) -> Result<i32, CliError> {
    let fail = |what: &str, p: &Path, e: std::io::Error| CliError {
        message: format!("{}: {what}: {e}", p.display()),
        code: 1,
    };
    fs::create_dir_all(&a.dir).map_err(|e| fail("create", &a.dir, e))?;
    let client = a.dir.join(CLIENT);
    write_client(&client).map_err(|e| fail("write", &client, e))?;
    let dir_id = fs::metadata(&a.dir).map(|m| (m.dev(), m.ino())).ok();
    let (names, explicit): (Vec<String>, bool) = if a.names.is_empty() {
        (DEFAULT_NAMES.iter().filter(|n| on_path(n, dir_id)).map(|n| n.to_string()).collect(), false)
    } else {
        (a.names.clone(), true)
    };
    let mut linked = Vec::new();
    for name in &names {
        if name.is_empty() || name.contains('/') || name == CLIENT {
            return Err(CliError::usage(format!("{name:?}: not a program name")));
        }
        let link = a.dir.join(name);
        match fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() && fs::read_link(&link).is_ok_and(|t| t == Path::new(CLIENT)) => {}
            Ok(_) if !a.force => {
                return Err(CliError {
                    message: format!("{}: exists and is not a link to {CLIENT} (--force replaces it)", link.display()),
                    code: 1,
                });
            }
            Ok(_) => {
                fs::remove_file(&link).map_err(|e| fail("remove", &link, e))?;
                symlink(CLIENT, &link).map_err(|e| fail("link", &link, e))?;
            }
            Err(_) => symlink(CLIENT, &link).map_err(|e| fail("link", &link, e))?,
        }
        if explicit && !on_path(name, dir_id) {
            eprintln!("zygote: warning: {name} is not on PATH (the link will say so when run)");
        }
        linked.push(name.clone());
    }
    if a.json {
        let v = serde_json::json!({ "dir": a.dir, "client": client, "links": linked });
        println!("{v:#}");
    } else {
        println!("installed {} with {} links: {}", client.display(), linked.len(), linked.join(" "));
        println!("to use them: export PATH={}:$PATH", a.dir.display());
    }
    Ok(0)
}

/// Write the client atomically (a temporary file renamed over it), mode 0755.
fn write_client(path: &Path) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(zygote_linux::EXEC_CLIENT)?;
    f.set_permissions(fs::Permissions::from_mode(0o755))?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)
}

/// Is `name` an executable file on PATH, outside the directory `skip`?
fn on_path(name: &str, skip: Option<(u64, u64)>) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| {
        let same = fs::metadata(&d).is_ok_and(|m| Some((m.dev(), m.ino())) == skip);
        let f = d.join(OsStr::new(name));
        !same && fs::metadata(&f).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
    })
}
