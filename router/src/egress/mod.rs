//! Outputs a route's frames leave by, one module per kind: WebRTC viewers ([`whep`]), RTSP players
//! ([`rtsp_play`]), RTMP players ([`rtmp_play`]), pushes to other servers ([`push`]), recordings through sink
//! plugins ([`record`]), (LL-)HLS viewers ([`hls`]).

pub mod hls;
pub mod push;
pub mod record;
pub mod rtmp_play;
pub mod rtsp_play;
pub mod whep;
