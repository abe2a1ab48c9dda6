//! RTMP: publishers (OBS, ffmpeg, encoders) and players (ffplay, VLC, ffmpeg) on `[server] rtmp`, with rml_rtmp.
//!
//! rml_rtmp is the protocol core (handshake, chunking, the server session state machine); [`connection`] is the
//! thin driver owning one TCP connection; [`flv`] converts between FLV tag bodies and route frames.
//!
//! URLs: `rtmp://host[:port]/{route}` with the stream key in OBS's "Stream Key" field (or
//! `rtmp://host/{route}/{key}`, or `?key=`/`?token=`). The route is the RTMP "app"; if the app is not a route,
//! the stream name is tried, so `rtmp://host/live/{route}` works for tools that insist on an app.

pub mod client;
pub mod connection;
pub mod flv;
pub mod ingest;

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::runtime::Runtime;

/// RTMP connections served at once (publishers and players).
pub const MAX_CONNECTIONS: usize = 10_000;

/// Binds the RTMP listener and serves connections until the process ends.
pub async fn serve(addr: SocketAddr, runtime: Runtime) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(rtmp = %local, "RTMP listening");
    // Bounds what connection floods can take; beyond it new connections wait in the kernel's accept queue.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = std::sync::Arc::clone(&slots).acquire_owned().await else { return };
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let runtime = runtime.clone();
                    tokio::spawn(async move {
                        connection::run(stream, peer, runtime).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "RTMP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(local)
}
