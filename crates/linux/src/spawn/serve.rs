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

/// The fds a reply attaches, in the plan's order: the image's files after
/// the program (its first), then its sealed objects.
pub fn attached_fds(image: &Image) -> Vec<BorrowedFd<'_>> {
    let files = image.files().iter().skip(1).map(|f| f.file.as_fd());
    files.chain(image.objects().iter().map(|o| o.fd())).collect()
}
