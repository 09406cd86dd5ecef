//! The daemon's statistics: counters, spawn latency, and every cached image
//! with its live processes measured from smaps (for Stats and OpenMetrics).

use std::collections::HashMap;
use std::sync::Arc;

use std::sync::atomic::Ordering;
use zygote_core::image::ImageKey;

use super::State;
use super::scope::Scope;
use crate::service::message::{DaemonStats, LauncherStats};

/// Serve the statistics as OpenMetrics on the loopback listener `http`.
pub(super) fn serve_metrics(state: &Arc<State>, http: tokio::net::TcpListener) {
    if let Ok(addr) = http.local_addr() {
        tracing::info!(%addr, "serving OpenMetrics at GET /metrics");
    }
    let st = state.clone();
    let body = move || {
        let st = st.clone();
        // The endpoint is daemon-wide: it is opt-in (metrics_port), on loopback.
        async move { zygote_core::metrics::openmetrics::render(&stats_blocking(st, Scope::All).await) }
    };
    tokio::spawn(crate::service::http::serve(http, body, state.shutdown.clone()));
}

/// [`stats`] on the blocking pool (it reads every live process's smaps).
pub(super) async fn stats_blocking(state: Arc<State>, scope: Scope) -> DaemonStats {
    let fallback = state.clone();
    tokio::task::spawn_blocking(move || stats(&state, scope)).await.unwrap_or_else(|e| {
        tracing::warn!("stats: {e}");
        stats_counters(&fallback)
    })
}

/// The counters, without the images and their measurements.
fn stats_counters(state: &State) -> DaemonStats {
    let c = &state.counters;
    DaemonStats {
        cache: state.zygote.stats(),
        spawns: c.spawns.load(Ordering::Relaxed),
        spawn_errors: c.spawn_errors.load(Ordering::Relaxed),
        live_children: c.live_children.load(Ordering::Relaxed),
        connections: c.connections.load(Ordering::Relaxed),
        open_connections: c.open_connections.load(Ordering::Relaxed),
        launchers: Box::new(LauncherStats {
            idle: state.zygote.idle_launchers() as u64,
            capacity: state.zygote.prestarted() as u64,
            spawns: state.zygote.prestarted_spawns(),
        }),
        spawn_latency: state.spawn_latency.snapshot(),
        image_requests: state.images.snapshot(),
        ..DaemonStats::default()
    }
}

/// Counters, latency, and every image `scope` may see with its live
/// processes (those `scope` may see) measured.
fn stats(state: &State, scope: Scope) -> DaemonStats {
    let images = state.zygote.cache().images();
    state.live.prune_exited();
    let live = state.live.snapshot();
    state.image_users.retain(|k| images.iter().chain(live.iter().map(|p| &p.image)).any(|i| i.key() == k));
    let images: Vec<_> = images.into_iter().filter(|i| state.image_users.sees(scope, i.key())).collect();
    let live: Vec<_> = live.into_iter().filter(|p| scope.sees_process(p.uid)).collect();
    let mut report = zygote_linux::account::report(&images, &live);
    if let Scope::User(uid) = scope {
        // Each image under the path this user named for it.
        let keys: HashMap<String, ImageKey> =
            images.iter().chain(live.iter().map(|p| &p.image)).map(|i| (i.key().to_string(), *i.key())).collect();
        for stats in &mut report.images {
            if let Some(p) = keys.get(&stats.key).and_then(|k| state.image_users.path_of(k, uid)) {
                stats.path = p.to_string_lossy().into_owned();
            }
        }
    }
    DaemonStats {
        images: report.images,
        memory: Box::new(report.memory),
        saved_bytes: report.saved_bytes,
        ..stats_counters(state)
    }
}
