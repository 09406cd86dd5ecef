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

use crate::ZygoteService;
use crate::backend;

pub async fn serve(service: Arc<ZygoteService>, mut stream: fproc::LauncherRequestStream) -> Result<(), fidl::Error> {
    let mut conn = service.connect();
    while let Some(request) = stream.try_next().await? {
        match request {
            fproc::LauncherRequest::AddArgs { args, control_handle: _ } => conn.add_args(args),
            fproc::LauncherRequest::AddEnvirons { environ, control_handle: _ } => conn.add_environs(environ),
            fproc::LauncherRequest::AddNames { names, control_handle: _ } => conn.add_names(backend::names(names)),
            fproc::LauncherRequest::AddHandles { handles, control_handle: _ } => {
                conn.add_handles(backend::handles(handles))
            }
            fproc::LauncherRequest::SetOptions { options, control_handle: _ } => conn.set_options(options),
            fproc::LauncherRequest::Launch { info, responder } => {
                let launched = match backend::launch_info(info) {
                    Ok(info) => conn.launch(info).map_err(|e| {
                        log::warn!("launch failed: {e}");
                        e.status.into_raw()
                    }),
                    Err(status) => {
                        conn.discard();
                        Err(status.into_raw())
                    }
                };
                match launched {
                    Ok(process) => responder.send(zx::Status::OK.into_raw(), Some(backend::process(process)))?,
                    Err(status) => responder.send(status, None)?,
                }
            }
            fproc::LauncherRequest::CreateWithoutStarting { info, responder } => {
                let created = match backend::launch_info(info) {
                    Ok(info) => conn.create_without_starting(info).map_err(|e| {
                        log::warn!("create failed: {e}");
                        e.status.into_raw()
                    }),
                    Err(status) => {
                        conn.discard();
                        Err(status.into_raw())
                    }
                };
                match created {
                    Ok(c) => responder.send(zx::Status::OK.into_raw(), Some(backend::start_data(c)))?,
                    Err(status) => responder.send(status, None)?,
                }
            }
        }
    }
    Ok(())
}
