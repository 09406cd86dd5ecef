// Copyright 2026 The Fuchsia Authors. All rights reserved.
// Use of this source code is governed by a BSD-style license that can be
// found in the LICENSE file.

//! fuchsia.process.Launcher glue: decode each request into the service's
//! per-connection state (zygote_fuchsia::service::Connection, which holds
//! the limits, the reset after Launch and the launch itself) and encode the
//! reply.

use std::sync::Arc;

use fidl_fuchsia_process as fproc;
use futures::TryStreamExt as _;
use zx::HandleBased as _;
use zygote_fuchsia::launcher::{HandleEntry, LaunchInfo, NameEntry};

use crate::ZygoteService;

pub async fn serve(service: Arc<ZygoteService>, mut stream: fproc::LauncherRequestStream) -> Result<(), fidl::Error> {
    let mut conn = service.connect();
    while let Some(request) = stream.try_next().await? {
        match request {
            fproc::LauncherRequest::AddArgs { args, control_handle: _ } => conn.add_args(args),
            fproc::LauncherRequest::AddEnvirons { environ, control_handle: _ } => conn.add_environs(environ),
            fproc::LauncherRequest::AddNames { names, control_handle: _ } => conn.add_names(
                names
                    .into_iter()
                    .map(|n| NameEntry {
                        path: n.path.into_bytes(),
                        directory: n.directory.into_channel().into_handle(),
                    })
                    .collect(),
            ),
            fproc::LauncherRequest::AddHandles { handles, control_handle: _ } => {
                conn.add_handles(handles.into_iter().map(|h| HandleEntry { handle: h.handle, id: h.id }).collect())
            }
            fproc::LauncherRequest::SetOptions { options, control_handle: _ } => conn.set_options(options),
            fproc::LauncherRequest::Launch { info, responder } => match conn.launch(launch_info(info)) {
                Ok(process) => responder.send(zx::Status::OK.into_raw(), Some(process))?,
                Err(e) => {
                    log::warn!("launch failed: {e}");
                    responder.send(e.status.into_raw(), None)?
                }
            },
            fproc::LauncherRequest::CreateWithoutStarting { info, responder } => {
                match conn.create_without_starting(launch_info(info)) {
                    Ok(created) => {
                        responder.send(zx::Status::OK.into_raw(), Some(crate::backend::start_data(created)))?
                    }
                    Err(e) => {
                        log::warn!("create failed: {e}");
                        responder.send(e.status.into_raw(), None)?
                    }
                }
            }
        }
    }
    Ok(())
}

fn launch_info(info: fproc::LaunchInfo) -> LaunchInfo<zx::Vmo, zx::Job> {
    LaunchInfo { executable: info.executable, job: info.job, name: info.name }
}
