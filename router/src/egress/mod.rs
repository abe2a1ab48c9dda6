//! Outputs a route's frames leave by, one module per kind: WebRTC viewers ([`whep`]), RTMP players
//! ([`rtmp_play`]), pushes to other servers ([`push`]), recordings through sink plugins ([`record`]). RTSP serving and HLS land here.

pub mod push;
pub mod record;
pub mod rtmp_play;
pub mod whep;
