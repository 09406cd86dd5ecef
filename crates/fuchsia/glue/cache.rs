// Copyright 2026 The Fuchsia Authors. All rights reserved.
// Use of this source code is governed by a BSD-style license that can be
// found in the LICENSE file.

//! fuchsia.process.zygote.Cache glue: tables in, zygote_fuchsia::protocol's
//! preload and evict (tested on Linux), tables or an `Error` out.

use std::sync::Arc;

use fidl_fuchsia_process_zygote as fzygote;
use futures::TryStreamExt as _;
use zygote_fuchsia::protocol::{self, CacheError, ErrorCode, EvictTarget};

use crate::ZygoteService;
use crate::backend;

pub async fn serve(service: Arc<ZygoteService>, mut stream: fzygote::CacheRequestStream) -> Result<(), fidl::Error> {
    while let Some(request) = stream.try_next().await? {
        match request {
            fzygote::CacheRequest::Preload { payload, responder } => {
                let reply = match payload.executable {
                    None => Err(error(ErrorCode::InvalidArgs)),
                    Some(vmo) => match backend::file(vmo) {
                        Err(_) => Err(error(ErrorCode::InvalidArgs)),
                        Ok(file) => {
                            let name = payload.name.unwrap_or_default();
                            protocol::preload(service.images(), &name, &file)
                                .map(|r| fzygote::PreloadResponse {
                                    key: Some(r.key),
                                    sealed_bytes: Some(r.sealed_bytes),
                                    fallback: r.fallback,
                                    ..Default::default()
                                })
                                .map_err(logged)
                        }
                    },
                };
                responder.send(reply.as_ref().map_err(|e| *e))?;
            }
            fzygote::CacheRequest::Evict { payload, responder } => {
                let target = match payload.target {
                    Some(fzygote::EvictTarget::Key(key)) => Some(EvictTarget::Key(key)),
                    Some(fzygote::EvictTarget::Executable(vmo)) => backend::file(vmo).ok().map(EvictTarget::Executable),
                    _ => None, // absent, or a member this zygote does not know
                };
                let reply = match target {
                    None => Err(error(ErrorCode::InvalidArgs)),
                    Some(t) => protocol::evict(service.images(), &t)
                        .map(|r| fzygote::EvictResponse { count: Some(r.count), ..Default::default() })
                        .map_err(logged),
                };
                responder.send(reply.as_ref().map_err(|e| *e))?;
            }
            fzygote::CacheRequest::_UnknownMethod { ordinal, .. } => {
                log::warn!("unknown fuchsia.process.zygote.Cache method, ordinal {ordinal}");
            }
        }
    }
    Ok(())
}

fn error(code: ErrorCode) -> fzygote::Error {
    fzygote::Error::from_primitive_allow_unknown(code.into_raw())
}

fn logged(e: CacheError) -> fzygote::Error {
    log::warn!("{e}");
    error(e.code)
}
