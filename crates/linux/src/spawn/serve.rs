//! Images for caller-side clients (the thin exec client): the cached image
//! of the file the client opened and passed, with the stub plan for a whole
//! launch, for the client to map into its own process. Never builds (a miss
//! is the caller's to build in the background: the client execs meanwhile)
//! and never serves what only execve may start.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use zygote_core::elf::ProgramKind;

use super::start::ProgramFile;
use super::{SpawnError, Zygote};
use crate::plan::{Phase, SpawnParts};
use crate::{Image, prototype};

/// The answer to an image request.
pub enum ImageAnswer {
    /// Map `plan`; attach [`attached_fds`] of `image`.
    Image { image: Arc<Image>, plan: Vec<u8> },
    /// The kernel must exec the file (why, for the client's diagnostics).
    Exec(&'static str),
    /// Not cached (or cached for a file that changed).
    Miss,
    /// Cached, but whether its libraries read `/proc/self/exe` (which a
    /// client that cannot set it must not be served) is not known yet:
    /// exec now, [`Zygote::scan_exe_refs`] in the background.
    Unscanned(Arc<Image>),
}

/// What a client says of itself in its request.
#[derive(Clone, Copy, Debug)]
pub struct ClientSide<'a> {
    /// Its `personality(2)`: the images are laid out for ours.
    pub personality: u32,
    /// It may make `/proc/self/exe` the program.
    pub set_exe: bool,
    /// The process name (comm) execve would give: the file name.
    pub name: &'a [u8],
    /// Its view of the file system when it is not ours (another mount
    /// namespace or root: `/proc/PID/root`): a prototype image is served
    /// only if its library paths name the same files there.
    pub root: Option<&'a Path>,
}

impl Zygote {
    /// The image for `file` (the client's open program, checked as execve
    /// would check it), as `env` (its loader environment and credentials)
    /// would have it built, with the plan the client maps.
    pub fn serve_image(
        &self,
        file: BorrowedFd<'_>,
        path: &Path,
        env: &prototype::Environment<'_>,
        client: ClientSide<'_>,
        own_personality: u32,
    ) -> Result<ImageAnswer, SpawnError> {
        let program = ProgramFile::check(file, path)?;
        if program.privileged {
            return Ok(ImageAnswer::Exec("set-user-ID, set-group-ID or file capabilities"));
        }
        if client.personality != own_personality {
            return Ok(ImageAnswer::Exec("a personality that changes the layout"));
        }
        let Some(image) = self.lookup(&program.identity, path, Some(file), env) else { return Ok(ImageAnswer::Miss) };
        if image.fallback().is_some() {
            return Ok(ImageAnswer::Exec("an image the zygote does not build"));
        }
        if image.kind() == ProgramKind::Dynamic
            && (image.identity().dev, image.identity().ino) != (program.identity.dev, program.identity.ino)
        {
            return Ok(ImageAnswer::Miss);
        }
        if image.kind() == ProgramKind::Dynamic && client.root.is_some_and(|r| !image.libraries_unchanged_under(r)) {
            return Ok(ImageAnswer::Exec("its mount namespace or root has other libraries at the image's paths"));
        }
        if !client.set_exe {
            match self.exe_refs_known(&image) {
                None => return Ok(ImageAnswer::Unscanned(image)),
                Some(true) => {
                    return Ok(ImageAnswer::Exec(
                        "a library of the program reads /proc/self/exe, which would name the client (it lacks \
                         CAP_CHECKPOINT_RESTORE)",
                    ));
                }
                Some(false) => {}
            }
        }
        let parts = SpawnParts {
            program: -1,
            fds: &[],
            sigmask: 0,
            name: client.name,
            set_exe: client.set_exe,
            prestart: None,
            phase: Phase::Full,
            kept_exe_fd: -1,
        };
        let plan = crate::plan::build(&image, &parts).plan;
        Ok(ImageAnswer::Image { image, plan })
    }
}

impl Zygote {
    /// Does a library the image maps (not the dynamic loader, whose use of
    /// it is over by the entry point) contain `/proc/self/exe` or
    /// `/proc/%d/exe`? Then the program may locate its own files through it
    /// (clang finds its resource directory with LLVM's getMainExecutable),
    /// and a client that cannot set it must exec the program. Reads every
    /// library not seen before (blocking: on a worker thread); remembered
    /// per file identity.
    pub fn scan_exe_refs(&self, image: &Image) -> bool {
        let mut any = false;
        for f in image.files().iter().skip(1).filter(|f| !is_loader(&f.path)) {
            let known = self.exe_refs.lock().unwrap_or_else(|e| e.into_inner()).get(&f.identity).copied();
            let found = known.unwrap_or_else(|| {
                let found = names_own_exe(&f.file).unwrap_or(true);
                let mut memo = self.exe_refs.lock().unwrap_or_else(|e| e.into_inner());
                if memo.len() >= MAX_EXE_REFS {
                    memo.clear();
                }
                memo.insert(f.identity, found);
                found
            });
            any |= found;
        }
        any
    }

    /// [`Zygote::scan_exe_refs`]'s answer if every library was read before.
    fn exe_refs_known(&self, image: &Image) -> Option<bool> {
        let memo = self.exe_refs.lock().unwrap_or_else(|e| e.into_inner());
        let mut any = false;
        for f in image.files().iter().skip(1).filter(|f| !is_loader(&f.path)) {
            any |= *memo.get(&f.identity)?;
        }
        Some(any)
    }
}

/// Most library verdicts remembered.
const MAX_EXE_REFS: usize = 4096;

/// The dynamic loader (ld-linux-x86-64.so.2, ld-musl-x86_64.so.1, ...).
fn is_loader(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ld-"))
}

/// Does the file contain `/proc/self/exe` or `/proc/%d/exe`? (Read in 1 MiB
/// chunks that overlap by the needle's length.)
fn names_own_exe(file: &std::os::fd::OwnedFd) -> std::io::Result<bool> {
    const NEEDLES: [&[u8]; 2] = [b"/proc/self/exe", b"/proc/%d/exe"];
    const OVERLAP: usize = 16;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = crate::fd::pread_full(file, &mut buf, offset)?;
        let chunk = &buf[..n];
        let found = chunk
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'/' && NEEDLES.iter().any(|needle| chunk[i..].starts_with(needle)));
        if found {
            return Ok(true);
        }
        if n < buf.len() {
            return Ok(false);
        }
        offset += (n - OVERLAP) as u64;
    }
}

/// The fds a reply attaches, in the plan's order: the image's files after
/// the program (its first), then its sealed objects.
pub fn attached_fds(image: &Image) -> Vec<BorrowedFd<'_>> {
    let files = image.files().iter().skip(1).map(|f| f.file.as_fd());
    files.chain(image.objects().iter().map(|o| o.fd())).collect()
}
