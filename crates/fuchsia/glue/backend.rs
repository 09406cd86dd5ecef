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
//! `--cfg zygote_in_tree`).

use anyhow::Context as _;
use fidl_fuchsia_kernel as fkernel;
use fidl_fuchsia_process as fproc;
use fuchsia_runtime::{HandleInfo, HandleType};
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
