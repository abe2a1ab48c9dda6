//! RTMP's protocol core, shared by every RTMP path: [`flv`] converts between FLV tag bodies and route frames,
//! [`tracks`] turns a stream's tags into route events, [`client`] is the outbound connection (pull and push),
//! [`wire`] the writes every connection makes. rml_rtmp is the state machine underneath (handshake, chunking,
//! client and server sessions).
//!
//! Where the paths are: the RTMP port's driver is `listen::rtmp`; a publisher feeds its route through
//! `ingest::rtmp_publish`, a player reads through `egress::rtmp_play`; pulls are `ingest::rtmp_pull`, pushes
//! `egress::push`.

pub mod flv;
pub mod tracks;
pub mod wire;

/// Outbound connections live in their own crate so that `sluice-edge` shares them.
pub use sluice_client::rtmp as client;

use std::time::Duration;

/// Why an RTMP connection ended.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("RTMP handshake failed: {0}")]
    Handshake(rml_rtmp::handshake::HandshakeError),
    #[error("RTMP protocol error: {0}")]
    Session(#[from] rml_rtmp::sessions::ServerSessionError),
    /// The connection was refused or stopped for a reason said in words (a refused publish, a replaced
    /// publisher, a decoder rejection).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Media(#[from] flv::FlvError),
    #[error("no data for {0:?}")]
    Idle(Duration),
}
