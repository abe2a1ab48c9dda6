//! Starts everything `sluice run` needs and stops it in order on SIGINT/SIGTERM.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::api::{self, AppState};
use crate::runtime::{Runtime, watch};
use crate::webrtc::WebRtc;

/// How long in-flight HTTP requests get to finish once the routes are stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub async fn run(config_path: PathBuf) -> anyhow::Result<()> {
    let runtime = Runtime::start(config_path.clone()).map_err(|errors| {
        anyhow::anyhow!(
            "{errors}\n\nfix the routes file and start again (`sluice check {}` checks it)",
            config_path.display()
        )
    })?;
    let dir = runtime.directory();
    let server = &dir.table.server;
    let _watch = watch::watch_file(&config_path, runtime.clone())
        .with_context(|| format!("watching {} for changes", config_path.display()))?;
    watch::reload_on_sighup(runtime.clone()).context("installing the SIGHUP handler")?;

    let listener = tokio::net::TcpListener::bind(server.http)
        .await
        .with_context(|| format!("binding the HTTP listener on {} (`server.http`)", server.http))?;
    let local = listener.local_addr()?;
    let rtmp = crate::rtmp::serve(server.rtmp, runtime.clone())
        .await
        .with_context(|| format!("binding the RTMP listener on {} (`server.rtmp`)", server.rtmp))?;

    tracing::info!(http = %local, rtmp = %rtmp, routes = dir.routes.len(), config = %config_path.display(),
        "sluice {} is up; open http://{}/", env!("CARGO_PKG_VERSION"), browsable(local));

    let webrtc = WebRtc::start(&server.webrtc)
        .with_context(|| format!("binding the WebRTC UDP port {} (`server.webrtc.udp`)", server.webrtc.udp))?;
    let app = api::router(AppState { runtime: runtime.clone(), webrtc, started: Instant::now() });
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown_runtime = runtime.clone();
    let shutdown = async move {
        let signal = shutdown_signal().await;
        tracing::info!(signal, "shutting down: stopping routes");
        // Ending the routes ends every streaming response, so the HTTP server can drain.
        shutdown_runtime.shutdown().await;
        let _ = stopped_tx.send(());
    };
    let serve = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown);
    tokio::select! {
        r = serve => r.context("HTTP server")?,
        _ = async {
            let _ = stopped_rx.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!("HTTP connections still open after {SHUTDOWN_GRACE:?}; exiting anyway"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// The address to print for people: 0.0.0.0 is not something a browser can open.
fn browsable(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() { format!("localhost:{}", addr.port()) } else { addr.to_string() }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return tokio::signal::ctrl_c().await.map_or("error", |_| "SIGINT"),
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
