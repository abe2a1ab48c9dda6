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
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admit::Admission;
use crate::connections::Connections;

/// Binds the RTMP listener and serves connections until the process ends. Connections are admitted through the
/// caps every listener shares (`[server.limits]`); one over them is closed at once.
pub async fn serve(
    addr: SocketAddr,
    admission: Admission,
    connections: Arc<Connections>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(rtmp = %local, "RTMP listening");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let limits = admission.routes().table.server.limits.clone();
                    let Ok(permit) = connections.admit(peer.ip(), &limits) else { continue };
                    let _ = stream.set_nodelay(true);
                    let admission = admission.clone();
                    tokio::spawn(async move {
                        connection::run(stream, peer, admission).await;
                        drop(permit);
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
