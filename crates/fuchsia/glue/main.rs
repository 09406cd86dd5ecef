// Copyright 2026 The Fuchsia Authors. All rights reserved.
// Use of this source code is governed by a BSD-style license that can be
// found in the LICENSE file.

//! The zygote component's entry (FIDL glue: built in-tree by BUILD.gn's
//! rustc_binary("bin"), not by cargo). It reads the structured configuration,
//! builds the service (crates/fuchsia, tested on Linux) over the Zircon
//! backend, preloads, publishes Inspect, and serves fuchsia.process.Launcher
//! and fuchsia.process.zygote.Cache. Each protocol's glue is one file.

use std::sync::Arc;

use anyhow::Context as _;
use fidl_fuchsia_io as fio;
use fidl_fuchsia_process as fproc;
use fidl_fuchsia_process_zygote as fzygote;
use fuchsia_component::server::ServiceFs;
use futures::StreamExt as _;
use zygote_fuchsia::images::Relocating;
use zygote_fuchsia::service::Service;

mod backend;
mod cache;
mod inspect;
mod launcher;

/// The service over the Zircon backend.
pub type ZygoteService = Service<backend::Kernel, Relocating, backend::Backend>;

enum Incoming {
    Launcher(fproc::LauncherRequestStream),
    Cache(fzygote::CacheRequestStream),
}

// Launches build images synchronously (read, hash, relocate, seal), so the
// executor has threads to spare for the other connections.
#[fuchsia::main(logging_tags = ["zygote"], threads = 4)]
async fn main() -> anyhow::Result<()> {
    let values = zygote_config::Config::take_from_startup_handle();
    let config = zygote_fuchsia::config::Config {
        cache_max_entries: values.cache_max_entries,
        cache_max_bytes: values.cache_max_bytes,
        log_filter: values.log_filter,
        preload: values.preload,
    };
    config.validate().context("structured configuration")?;
    log::set_max_level(match config.log_filter.as_str() {
        "trace" => log::LevelFilter::Trace,
        "debug" => log::LevelFilter::Debug,
        "warn" => log::LevelFilter::Warn,
        "error" => log::LevelFilter::Error,
        _ => log::LevelFilter::Info,
    });

    let backend = backend::connect().await.context("the Zircon backend")?;
    let service = ZygoteService::new(&config, Relocating, backend).context("the service")?;
    // PT_INTERP programs: their interpreter through the launch's loader.
    let service = Arc::new(service.with_loaders(Box::new(backend::loader)));
    for path in &config.preload {
        if let Err(e) = preload(&service, path).await {
            log::warn!("preload {path}: {e:#}");
        }
    }
    let _inspect = inspect::publish(service.clone());

    let mut fs = ServiceFs::new();
    fs.dir("svc").add_fidl_service(Incoming::Launcher).add_fidl_service(Incoming::Cache);
    fs.take_and_serve_directory_handle().context("serving the outgoing directory")?;
    fs.for_each_concurrent(None, |incoming| {
        let service = service.clone();
        async move {
            let served = match incoming {
                Incoming::Launcher(stream) => launcher::serve(service, stream).await,
                Incoming::Cache(stream) => cache::serve(service, stream).await,
            };
            if let Err(e) = served {
                log::warn!("connection ended: {e}");
            }
        }
    })
    .await;
    Ok(())
}

/// Build `path`'s image into the cache (config.preload).
async fn preload(service: &ZygoteService, path: &str) -> anyhow::Result<()> {
    let flags = fio::OpenFlags::RIGHT_READABLE | fio::OpenFlags::RIGHT_EXECUTABLE;
    let file = fuchsia_fs::file::open_in_namespace(path, flags)?;
    let vmo =
        file.get_backing_memory(fio::VmoFlags::READ | fio::VmoFlags::EXECUTE).await?.map_err(zx::Status::from_raw)?;
    let reply = zygote_fuchsia::protocol::preload(service.images(), path, &backend::file(vmo)?)?;
    log::info!("preloaded {path}: image {} ({} sealed bytes)", reply.key, reply.sealed_bytes);
    Ok(())
}
