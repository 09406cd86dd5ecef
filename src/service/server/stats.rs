//! The daemon's statistics: counters, spawn latency, and every cached image
//! with its live processes measured from smaps (for Stats and OpenMetrics).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::State;
use crate::service::message::{DaemonStats, LauncherStats};

/// Serve the statistics as OpenMetrics on the loopback listener `http`.
pub(super) fn serve_metrics(state: &Arc<State>, http: tokio::net::TcpListener) {
    if let Ok(addr) = http.local_addr() {
        tracing::info!(%addr, "serving OpenMetrics at GET /metrics");
    }
    let st = state.clone();
    let body = move || {
        let st = st.clone();
        async move { zygote_core::metrics::openmetrics::render(&stats_blocking(st).await) }
    };
    tokio::spawn(crate::service::http::serve(http, body, state.shutdown.clone()));
}

/// [`stats`] on the blocking pool (it reads every live process's smaps).
pub(super) async fn stats_blocking(state: Arc<State>) -> DaemonStats {
    let fallback = state.clone();
    tokio::task::spawn_blocking(move || stats(&state)).await.unwrap_or_else(|e| {
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
        ..DaemonStats::default()
    }
}

/// Counters, latency, and every image with its live processes measured.
fn stats(state: &State) -> DaemonStats {
    let report = zygote_linux::account::report(&state.zygote.cache().images(), &state.live.snapshot());
    DaemonStats {
        images: report.images,
        memory: Box::new(report.memory),
        saved_bytes: report.saved_bytes,
        ..stats_counters(state)
    }
}
