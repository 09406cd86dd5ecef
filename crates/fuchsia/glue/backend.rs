// Copyright 2026 The Fuchsia Authors. All rights reserved.
// Use of this source code is governed by a BSD-style license that can be
// found in the LICENSE file.

//! The one glue file that names the Zircon backend (crates/zircon, crate
//! zygote_zircon): its `Kernel` (`File` = `FileVmo`, a program VMO and its
//! identity) and its `launch::Launcher`, which implements
//! `zygote_fuchsia::service::Backend` with the backend's own handle types
//! (`zygote_zircon::zx::{Handle, Job, Process}`, `Created`). Handles cross
//! between those and the FIDL bindings' `zx` here, by ownership
//! (`zygote_zircon::adopt`, `Handle::release`: `zygote_zircon::zx::Foreign`,
//! implemented for `zx::Handle` when BUILD.gn builds the backend with
//! `--cfg zygote_in_tree`). It also implements the service's
//! `zygote_fuchsia::interp::Loader` over a launch's `PA_LDSVC_LOADER`
//! channel (`fuchsia.ldsvc.Loader`, synchronous calls: a launch is
//! synchronous work on the executor's threads anyway).

use anyhow::Context as _;
use fidl::endpoints::SynchronousProxy as _;
use fidl_fuchsia_kernel as fkernel;
use fidl_fuchsia_ldsvc as fldsvc;
use fidl_fuchsia_process as fproc;
use fuchsia_runtime::{HandleInfo, HandleType};
use zygote_fuchsia::Status;
use zygote_fuchsia::interp::Loader;
use zygote_fuchsia::launcher::{HandleEntry, LaunchInfo, NameEntry};
use zygote_zircon::zx as zyx;

pub use zygote_zircon::launch::{Created, Launcher as Backend};
pub use zygote_zircon::{FileVmo, Zircon as Kernel};

/// The backend, with the VMEX resource that lets it map relocated text
/// executable (`zx_vmo_replace_as_executable`) and the system vDSO: the
/// component's own `PA_VDSO_VMO` startup handle, as component_manager's ELF
/// runner takes it (process_builder maps the vDSO it is given).
pub async fn connect() -> anyhow::Result<Backend> {
    let vmex = fuchsia_component::client::connect_to_protocol::<fkernel::VmexResourceMarker>()
        .context("connecting to fuchsia.kernel.VmexResource")?
        .get()
        .await
        .context("fuchsia.kernel.VmexResource/Get")?;
    let vdso = fuchsia_runtime::take_startup_handle(HandleInfo::new(HandleType::VdsoVmo, 0))
        .context("no PA_VDSO_VMO startup handle")?;
    Ok(Backend::new(Some(ours(vmex).context("the VMEX resource")?), ours(vdso).context("the vDSO")?))
}

/// A FIDL handle as the backend's `T` (ownership moves).
fn ours<T: From<zyx::Handle>>(h: impl Into<zx::Handle>) -> Result<T, zx::Status> {
    let h: zx::Handle = h.into();
    zygote_zircon::adopt(h).ok_or(zx::Status::BAD_HANDLE)
}

/// A backend handle as the FIDL bindings' `T` (ownership moves).
fn theirs<T: From<zx::Handle>>(h: impl Into<zyx::Handle>) -> T {
    let h: zyx::Handle = h.into();
    T::from(h.release::<zx::Handle>())
}

/// A program VMO (LaunchInfo.executable, Preload, Evict) as the kernel's file.
pub fn file(vmo: zx::Vmo) -> Result<FileVmo, zx::Status> {
    FileVmo::new(ours(vmo)?).map_err(|s| zx::Status::from_raw(s.into_raw()))
}

/// `fuchsia.process.LaunchInfo` with the backend's types.
pub fn launch_info(info: fproc::LaunchInfo) -> Result<LaunchInfo<FileVmo, zyx::Job>, zx::Status> {
    Ok(LaunchInfo { executable: file(info.executable)?, job: ours(info.job)?, name: info.name })
}

/// AddNames' entries. The bindings never give an invalid handle for these
/// required fields; one would be dropped.
pub fn names(names: Vec<fproc::NameInfo>) -> Vec<NameEntry<zyx::Handle>> {
    let entry = |n: fproc::NameInfo| {
        Some(NameEntry { path: n.path.into_bytes(), directory: ours(n.directory.into_channel()).ok()? })
    };
    names.into_iter().filter_map(entry).collect()
}

/// AddHandles' entries (as [`names`]).
pub fn handles(handles: Vec<fproc::HandleInfo>) -> Vec<HandleEntry<zyx::Handle>> {
    handles.into_iter().filter_map(|h| Some(HandleEntry { handle: ours(h.handle).ok()?, id: h.id })).collect()
}

/// Launch's reply.
pub fn process(p: zyx::Process) -> zx::Process {
    theirs(p)
}

/// CreateWithoutStarting's reply.
pub fn start_data(c: Created) -> fproc::ProcessStartData {
    fproc::ProcessStartData {
        process: theirs(c.process),
        root_vmar: theirs(c.root_vmar),
        thread: theirs(c.thread),
        entry: c.entry,
        stack: c.stack,
        bootstrap: theirs(c.bootstrap),
        vdso_base: c.vdso_base,
        base: c.base,
    }
}

/// A launch's `fuchsia.ldsvc.Loader` (its `PA_LDSVC_LOADER` handle), for the
/// service to ask for a PT_INTERP program's interpreter
/// (`Service::with_loaders`); the channel then goes on to the interpreter.
pub fn loader(handle: zyx::Handle) -> Box<dyn Loader<Kernel, zyx::Handle>> {
    let channel: zx::Channel = theirs(handle);
    Box::new(LdsvcLoader(fldsvc::LoaderSynchronousProxy::new(channel)))
}

struct LdsvcLoader(fldsvc::LoaderSynchronousProxy);

/// The service's status for a FIDL error (the channel closed, say).
fn fidl_status(e: fidl::Error) -> Status {
    match e {
        fidl::Error::ClientChannelClosed { status, .. } => Status(status.into_raw()),
        _ => Status::IO,
    }
}

impl Loader<Kernel, zyx::Handle> for LdsvcLoader {
    fn config(&mut self, config: &str) -> Result<(), Status> {
        let rv = self.0.config(config, zx::MonotonicInstant::INFINITE).map_err(fidl_status)?;
        zx::Status::ok(rv).map_err(|s| Status(s.into_raw()))
    }

    fn load_object(&mut self, name: &str) -> Result<FileVmo, Status> {
        let (rv, vmo) = self.0.load_object(name, zx::MonotonicInstant::INFINITE).map_err(fidl_status)?;
        zx::Status::ok(rv).map_err(|s| Status(s.into_raw()))?;
        let vmo = vmo.ok_or(Status::NOT_FOUND)?;
        file(vmo).map_err(|s| Status(s.into_raw()))
    }

    fn into_handle(self: Box<Self>) -> Option<zyx::Handle> {
        let channel: zx::Channel = self.0.into_channel();
        ours(channel).ok()
    }
}
