//! The launcher as the service layer's backend
//! (`zygote_fuchsia::service::Backend`): a `fuchsia.process.Launcher`
//! request, checked by the service, becomes [`LaunchOptions`] and a
//! [`Launcher::create`] in the caller's job; Launch then starts it.
//!
//! The caller's handles go into the bootstrap message as they came:
//! AddHandles' with their `PA_HND` id, AddNames' directories as `PA_NS_DIR`
//! with the index of their path. A `PA_LDSVC_LOADER` is the interpreter's
//! loader and a `PA_VMO_VDSO` replaces the launcher's vDSO (the service
//! keeps both aside; after asking the loader for a PT_INTERP program's
//! interpreter, it passes the loader on, and the image of kind `Dynamic` is
//! that interpreter's). A `Source::Plain` launch (what the service could not
//! load as it is) is refused, `ZX_ERR_NOT_SUPPORTED`. Errors become the
//! `zx_status_t` the client gets.

use std::io;

use zygote_fuchsia::Status as ServiceStatus;
use zygote_fuchsia::launcher::LaunchSpec;
use zygote_fuchsia::service::{Backend, Source, Spec};

use crate::kernel::{FileVmo, Zircon};
use crate::launch::{Created, LaunchError, LaunchOptions, Launcher};
use crate::processargs::{HandleInfo, HandleType, ProcessargsError};
use crate::zx::{Channel, Handle, HandleBased, Job, Process, Rights, Vmo};

impl Backend<Zircon> for Launcher {
    type Handle = Handle;
    type Job = Job;
    type Created = Created;
    type Process = Process;
    type Error = LaunchError;

    fn duplicate(&self, file: &FileVmo) -> io::Result<FileVmo> {
        Ok(FileVmo { vmo: file.vmo.duplicate_handle(Rights::SAME_RIGHTS)?, identity: file.identity })
    }

    fn create(&self, source: Source<'_, Zircon>, spec: Spec<Zircon, Self>) -> Result<Created, LaunchError> {
        match source {
            Source::Image(image) => {
                let (job, options) = launch_options(spec);
                Launcher::create(self, &job, image, options)
            }
            Source::Plain { reason } => Err(LaunchError::Plain { image: spec.name, reason: reason.into_owned() }),
        }
    }

    fn start(&self, created: Created) -> Result<Process, LaunchError> {
        Launcher::start(self, created)
    }

    fn status(&self, e: &LaunchError) -> ServiceStatus {
        status(e)
    }
}

/// The job and the options of a checked launch request.
fn launch_options(spec: LaunchSpec<FileVmo, Handle, Job>) -> (Job, LaunchOptions) {
    let LaunchSpec { executable, job, name, args, environ, names, handles, loader, vdso, options: _ } = spec;
    let (paths, dirs): (Vec<_>, Vec<_>) = names.into_iter().map(|n| (n.path, n.directory)).unzip();
    // The service bounds names by the handle budget (58), so each index fits.
    let dirs = dirs.into_iter().enumerate().map(|(i, d)| (HandleInfo::new(HandleType::NamespaceDir, i as u16), d));
    let handles = dirs.chain(handles.into_iter().map(|h| (HandleInfo::from_raw(h.id), h.handle))).collect();
    let options = LaunchOptions {
        name,
        args,
        environ,
        names: paths,
        handles,
        executable: Some(executable.vmo),
        loader: loader.map(Channel::from),
        vdso: vdso.map(Vmo::from),
    };
    (job, options)
}

/// The status `fuchsia.process.Launcher` answers for `e`: a failed system
/// call's own; `ZX_ERR_INVALID_ARGS` for what the caller asked that cannot
/// be done (as process_builder answers a message it cannot build);
/// `ZX_ERR_NOT_SUPPORTED` for a program this backend cannot start.
pub fn status(e: &LaunchError) -> ServiceStatus {
    match e {
        LaunchError::Zx { status, .. } => ServiceStatus(status.into_raw()),
        LaunchError::Processargs { source, .. } => match source {
            ProcessargsError::Nul { .. }
            | ProcessargsError::TooManyHandles { .. }
            | ProcessargsError::TooLarge { .. }
            | ProcessargsError::BadNameIndex { .. } => ServiceStatus::INVALID_ARGS,
        },
        LaunchError::TooManyHandles { .. } | LaunchError::NoLoader { .. } => ServiceStatus::INVALID_ARGS,
        LaunchError::Vdso { .. } | LaunchError::VdsoWritable { .. } => ServiceStatus::INVALID_ARGS,
        LaunchError::Plan { .. } | LaunchError::Refused { .. } | LaunchError::Plain { .. } => {
            ServiceStatus::NOT_SUPPORTED
        }
        LaunchError::NoVmex { .. } => ServiceStatus::ACCESS_DENIED,
        LaunchError::Placement { .. } => ServiceStatus::NO_RESOURCES,
        LaunchError::NoObject { .. } => ServiceStatus::INTERNAL,
    }
}

/// A handle from another zx binding (the FIDL bindings'), typed as this
/// crate's `T`; `None` for an invalid one.
pub fn adopt<T: From<Handle>>(handle: impl crate::zx::Foreign) -> Option<T> {
    Handle::adopt(handle).ok().map(T::from)
}
