// Copyright 2026 The Fuchsia Authors. All rights reserved.
// Use of this source code is governed by a BSD-style license that can be
// found in the LICENSE file.

//! The one glue file that names the Zircon backend (crates/zircon, crate
//! zygote_zircon): its `Kernel` (`File` = `zx::Vmo`) and the type that
//! implements `zygote_fuchsia::service::Backend` with `Handle = zx::Handle`,
//! `Job = zx::Job`, `Process = zx::Process` and `Created` =
//! [`Created`]. The names below are the ones this glue expects of that crate;
//! they are reconciled here, and only here, when it lands.

use anyhow::Context as _;
use fidl_fuchsia_kernel as fkernel;
use fidl_fuchsia_process as fproc;

pub use zygote_zircon::Zircon as Kernel;
pub use zygote_zircon::launch::{Created, Launcher as Backend};

/// The backend, with the VMEX resource that lets it map relocated text
/// executable (`zx_vmo_replace_as_executable`).
pub async fn connect() -> anyhow::Result<Backend> {
    let vmex = fuchsia_component::client::connect_to_protocol::<fkernel::VmexResourceMarker>()
        .context("connecting to fuchsia.kernel.VmexResource")?
        .get()
        .await
        .context("fuchsia.kernel.VmexResource/Get")?;
    Ok(Backend::new(vmex))
}

/// CreateWithoutStarting's reply.
pub fn start_data(c: Created) -> fproc::ProcessStartData {
    fproc::ProcessStartData {
        process: c.process,
        root_vmar: c.root_vmar,
        thread: c.thread,
        entry: c.entry,
        stack: c.stack,
        bootstrap: c.bootstrap,
        vdso_base: c.vdso_base,
        base: c.base,
    }
}
