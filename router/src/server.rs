//! Starts everything `sluice run` needs and stops it in order on SIGINT/SIGTERM.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::api::{self, AppState};
use crate::connections::{self, Connections};
use crate::runtime::{Runtime, watch};
use crate::webrtc::WebRtc;

/// How long in-flight HTTP requests get to finish once the routes are stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long stopping the routes may take (recorders finish their files within 10 s); past it the process exits
/// anyway, whatever a reload or a route is doing.
const SHUTDOWN_ROUTES_BUDGET: Duration = Duration::from_secs(12);

pub async fn run(config_path: PathBuf) -> anyhow::Result<()> {
    // Installed first: a SIGTERM that comes while the router starts up is a request to stop, not a kill.
    let mut signals = ShutdownSignals::install().context("installing the SIGINT/SIGTERM handlers")?;
    let fd_limit = connections::raise_fd_limit();
    // Startup compiles plugins and opens the index: off the async threads, and a signal meanwhile still stops it.
    let starting = tokio::task::spawn_blocking({
        let path = config_path.clone();
        move || Runtime::start(path)
    });
    let runtime = tokio::select! {
        started = starting => started.context("starting the routes")?,
        signal = signals.recv() => {
            tracing::info!(signal, "stopped while starting");
            return Ok(());
        }
    }
    .map_err(|errors| {
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

    let connections = Connections::new(fd_limit);
    let listener = tokio::net::TcpListener::bind(server.http)
        .await
        .with_context(|| format!("binding the HTTP listener on {} (`server.http`)", server.http))?;
    let local = listener.local_addr()?;
    let rtmp = crate::listen::rtmp::serve(server.rtmp, runtime.admission.clone(), connections.clone())
        .await
        .with_context(|| format!("binding the RTMP listener on {} (`server.rtmp`)", server.rtmp))?;
    let rtsp = crate::listen::rtsp::serve(server.rtsp, runtime.admission.clone(), connections.clone())
        .await
        .with_context(|| format!("binding the RTSP listener on {} (`server.rtsp`)", server.rtsp))?;

    let https = match server.https {
        None => None,
        Some(addr) => {
            let tls = api::tls::Tls::load(server).context("setting up HTTPS (`server.https`)")?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTPS listener on {addr} (`server.https`)"))?;
            let fingerprint = tls.fingerprint();
            tracing::info!(https = %listener.local_addr()?, sha256 = %fingerprint.sha256, spki_sha256 = %fingerprint.spki_sha256,
                self_signed = tls.generated(), "HTTPS listening; a browser shows this certificate fingerprint (SHA-256)");
            Some((listener, tls))
        }
    };
    let https_local = https.as_ref().map(|(l, _)| l.local_addr()).transpose()?;

    tracing::info!(http = %local, https = https_local.map(|a| a.to_string()), rtmp = %rtmp, rtsp = %rtsp,
        routes = dir.routes.len(), config = %config_path.display(), fd_limit,
        max_connections = connections.cap(&server.limits),
        "sluice {} is up; open http://{}/", env!("CARGO_PKG_VERSION"), browsable(local));

    let webrtc = WebRtc::start(&server.webrtc)
        .with_context(|| format!("binding the WebRTC UDP port {} (`server.webrtc.udp`)", server.webrtc.udp))?;
    let client_bundle = api::web::asset("vendor/socket.io.min.js");
    let signaling = crate::signal::Signaling::start(runtime.clone(), webrtc.clone(), client_bundle);
    let accounts = match &dir.table.accounts {
        None => None,
        Some(_) => {
            let store = runtime.index.store().clone();
            let opening = runtime.clone();
            let accounts = tokio::task::spawn_blocking(move || crate::accounts::Accounts::open(store, opening))
                .await
                .context("starting the accounts")?
                .context("starting the accounts")?;
            runtime.admission.gate().use_accounts(std::sync::Arc::new(accounts.clone()));
            crate::accounts::sessions::spawn(accounts.clone());
            tracing::info!("accounts on: /api/auth and /api/cameras");
            if dir.table.server.api_auth.is_none() {
                tracing::warn!(
                    "accounts are on but /v1 is open (`api_auth = \"none\"`): whoever reaches the HTTP port can change \
                     routes, the cameras' template included; set `api_auth = \"accounts\"` (admins' logins) or an auth plugin"
                );
            }
            Some(accounts)
        }
    };
    let state = AppState {
        runtime: runtime.clone(),
        webrtc,
        signaling,
        accounts,
        started: Instant::now(),
        connections: connections.clone(),
        tls: https.as_ref().map(|(_, tls)| tls.clone()),
        hls: crate::egress::hls::Hls::new((&server.hls).into()),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut mediamtx_api = None;
    if let Some(addr) = server.mediamtx_api {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding MediaMTX's API listener on {addr} (`server.mediamtx_api`)"))?;
        tracing::info!(mediamtx_api = %listener.local_addr()?, "MediaMTX's read-only v3 API listening");
        let app = api::mediamtx::router(state.clone());
        mediamtx_api =
            Some(tokio::spawn(api::serve::serve(listener, app, runtime.clone(), connections.clone(), stop_rx.clone())));
    }
    let mut https_task = None;
    let app = api::router(state);
    let http_app = match (&https, server.https_redirect) {
        (Some((l, _)), true) => api::tls::redirect_to_https(l.local_addr()?.port(), app.clone()),
        _ => app.clone(),
    };
    if let Some((listener, tls)) = https {
        https_task = Some(tokio::spawn(api::serve::serve_tls(
            listener,
            app,
            runtime.clone(),
            connections.clone(),
            stop_rx.clone(),
            tls,
        )));
    }
    let serve = api::serve::serve(listener, http_app, runtime.clone(), connections, stop_rx);
    tokio::pin!(serve);
    let signal = tokio::select! {
        signal = signals.recv() => signal,
        () = &mut serve => anyhow::bail!("the HTTP server stopped"),
    };
    tracing::info!(signal, "shutting down: stopping routes");
    // Ending the routes ends every streaming response, so the HTTP connections can drain.
    if tokio::time::timeout(SHUTDOWN_ROUTES_BUDGET, runtime.shutdown()).await.is_err() {
        tracing::warn!("routes still stopping after {SHUTDOWN_ROUTES_BUDGET:?}; exiting anyway");
    }
    let _ = stop_tx.send(true);
    let others = async {
        for task in [mediamtx_api, https_task].into_iter().flatten() {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, futures_util::future::join(serve, others)).await.is_err() {
        tracing::warn!("HTTP connections still open after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The address to print for people: 0.0.0.0 is not something a browser can open.
fn browsable(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() { format!("localhost:{}", addr.port()) } else { addr.to_string() }
}

/// SIGINT and SIGTERM, registered once; the process keeps running when one arrives until [`run`] has stopped.
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
