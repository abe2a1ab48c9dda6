//! RTSP 1.0 (RFC 2326) as the router serves it: requests in, responses out, transports, SDP both ways, RTP and
//! RTCP packets. Pure: no sockets here; `listen::rtsp` drives a connection, `egress::rtsp_play` and
//! `ingest::rtsp_publish` move its media. Pulling cameras is retina's (`ingest::rtsp_pull`).

pub mod message;
pub mod packet;
pub mod sdp;
pub mod transport;

pub use message::{Incoming, Reply};

/// Why an RTSP connection ended.
#[derive(Debug, thiserror::Error)]
pub enum RtspError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol; it was told (400) where it could be.
    #[error("{0}")]
    Protocol(String),
    #[error("no traffic for {} s", .0.as_secs())]
    Idle(std::time::Duration),
    /// The route went away, replaced the publisher, or dropped this reader.
    #[error("{0}")]
    Ended(String),
}
