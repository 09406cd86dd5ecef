//! The directory the daemon's socket lives in.
//!
//! Whoever can write to that directory can rename the socket away and listen
//! in its place, and clients would then hand their environment and stdio to
//! the impostor. So the daemon only binds in a directory that is its own:
//! not a symbolic link, owned by its uid, and writable by no one else. The
//! default runtime directory (`$XDG_RUNTIME_DIR/zygote`, `/tmp/zygote-$UID`)
//! must also be unreadable by group and other (mode 0700 or 0711); an
//! explicitly configured directory may be readable (0755), which reveals
//! names but allows no impersonation.
//!
//! A directory the daemon creates is made with its final mode by `mkdir`
//! (0700, or 0711 when other uids are allowed and must traverse it), then
//! checked through an fd opened with `O_NOFOLLOW`; a directory it did not
//! create is never changed.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, fchmod, fstat, mkdir, open, statat};
use rustix::io::Errno;

#[derive(Debug, thiserror::Error)]
pub enum SocketDirError {
    #[error("socket directory {path}: {what}: {source}")]
    Io { path: PathBuf, what: &'static str, source: std::io::Error },
    #[error("socket directory {path} is a symbolic link; refusing to use it (remove it or choose another --socket)")]
    Symlink { path: PathBuf },
    #[error("socket directory {path} is not a directory")]
    NotDirectory { path: PathBuf },
    #[error(
        "socket directory {path} is owned by uid {owner}, not by the daemon's uid {own}; another user could replace \
         the socket (remove the directory or choose another --socket)"
    )]
    NotOwned { path: PathBuf, owner: u32, own: u32 },
    #[error(
        "socket directory {path} has mode {mode:04o}: group or other may {access} it, so another user could replace \
         or spy on the socket; it must be at most {max:04o} (chmod it or choose another --socket)"
    )]
    TooOpen { path: PathBuf, mode: u32, access: &'static str, max: u32 },
}

/// How strictly an existing directory is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// The default runtime directory: no group/other read or write (0711 at most).
    Private,
    /// An explicitly configured directory: no group/other write (0755 at most).
    Configured,
}

impl Strictness {
    /// The group/other bits refused.
    fn refused_bits(self) -> u32 {
        match self {
            Strictness::Private => 0o066,
            Strictness::Configured => 0o022,
        }
    }
}

/// What [`prepare`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirOrigin {
    /// The daemon created it, with the mode it needs.
    Created,
    /// It existed and passed the checks; its mode was left alone.
    Existing { mode: u32 },
}

/// The mode of a directory the daemon creates.
pub fn created_mode(open_to_others: bool) -> u32 {
    if open_to_others { 0o711 } else { 0o700 }
}

/// Check an existing directory (without following a symbolic link): a
/// directory, owned by `own_uid`, without the group/other bits `strictness`
/// refuses. Returns its permission bits.
pub fn check(dir: &Path, own_uid: u32, strictness: Strictness) -> Result<u32, SocketDirError> {
    let st = statat(CWD, dir, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io_err(dir, "lstat", e))?;
    verify(dir, &st, own_uid, strictness)
}

fn verify(dir: &Path, st: &rustix::fs::Stat, own_uid: u32, strictness: Strictness) -> Result<u32, SocketDirError> {
    let path = dir.to_path_buf();
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {}
        FileType::Symlink => return Err(SocketDirError::Symlink { path }),
        _ => return Err(SocketDirError::NotDirectory { path }),
    }
    if st.st_uid != own_uid {
        return Err(SocketDirError::NotOwned { path, owner: st.st_uid, own: own_uid });
    }
    let mode = st.st_mode & 0o7777;
    let bad = mode & strictness.refused_bits();
    if bad != 0 {
        let access = if bad & 0o022 != 0 { "write to" } else { "read" };
        let max = 0o777 & !strictness.refused_bits();
        return Err(SocketDirError::TooOpen { path, mode, access, max });
    }
    Ok(mode)
}

/// Make sure `dir` is fit for the socket: create it (and missing parents)
/// with [`created_mode`], or check the existing one (see [`check`]). With
/// `open_to_others`, an existing directory that other users cannot search
/// is logged as a warning (they will not reach the socket) and left as it is.
pub fn prepare(
    dir: &Path,
    own_uid: u32,
    open_to_others: bool,
    strictness: Strictness,
) -> Result<DirOrigin, SocketDirError> {
    let want = created_mode(open_to_others);
    match statat(CWD, dir, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => {}
        Err(Errno::NOENT) => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), want)
                    .create(parent)
                    .map_err(|source| SocketDirError::Io { path: parent.to_path_buf(), what: "creating", source })?;
            }
            match mkdir(dir, Mode::from_raw_mode(want)) {
                Ok(()) => return finish_created(dir, own_uid, want),
                // Someone else made it meanwhile: check it as an existing one.
                Err(Errno::EXIST) => {}
                Err(e) => return Err(io_err(dir, "mkdir", e)),
            }
        }
        Err(e) => return Err(io_err(dir, "lstat", e)),
    }
    let mode = check(dir, own_uid, strictness)?;
    if open_to_others && mode & 0o001 == 0 {
        tracing::warn!(
            "socket directory {} has mode {mode:04o}: other users cannot search it, so the uids in allowed_uids will \
             not reach the socket; the daemon leaves its mode alone (chmod o+x it to let them in)",
            dir.display()
        );
    }
    Ok(DirOrigin::Existing { mode })
}

/// The directory was just made by `mkdir`: open it without following links,
/// check it is ours, and put back bits the umask took away (through the fd,
/// so the object checked is the one changed).
fn finish_created(dir: &Path, own_uid: u32, want: u32) -> Result<DirOrigin, SocketDirError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd: OwnedFd = open(dir, flags, Mode::empty()).map_err(|e| io_err(dir, "opening the new directory", e))?;
    let st = fstat(&fd).map_err(|e| io_err(dir, "fstat", e))?;
    verify(dir, &st, own_uid, Strictness::Private)?;
    if st.st_mode & 0o7777 != want {
        fchmod(&fd, Mode::from_raw_mode(want)).map_err(|e| io_err(dir, "setting the new directory's mode", e))?;
    }
    Ok(DirOrigin::Created)
}

fn io_err(dir: &Path, what: &'static str, e: Errno) -> SocketDirError {
    SocketDirError::Io { path: dir.to_path_buf(), what, source: e.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zygote-sockdir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn creates_private_and_checks_existing() {
        let uid = rustix::process::getuid().as_raw();
        let d = scratch("a");
        let dir = d.join("sub");
        assert_eq!(prepare(&dir, uid, false, Strictness::Private).unwrap(), DirOrigin::Created);
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777, 0o700);
        assert_eq!(prepare(&dir, uid, true, Strictness::Private).unwrap(), DirOrigin::Existing { mode: 0o700 });
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(check(&dir, uid, Strictness::Private), Err(SocketDirError::TooOpen { .. })));
        assert_eq!(check(&dir, uid, Strictness::Configured).unwrap(), 0o755);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check(&dir, uid, Strictness::Configured).unwrap_err().to_string();
        assert!(e.contains(&dir.display().to_string()) && e.contains("0777"), "{e}");
        assert!(matches!(check(&dir, uid.wrapping_add(1), Strictness::Private), Err(SocketDirError::NotOwned { .. })));
        let link = d.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(check(&link, uid, Strictness::Private), Err(SocketDirError::Symlink { .. })));
        let created = d.join("open");
        assert_eq!(prepare(&created, uid, true, Strictness::Private).unwrap(), DirOrigin::Created);
        assert_eq!(std::fs::metadata(&created).unwrap().permissions().mode() & 0o7777, 0o711);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
