//! Outputs a route's frames leave by, one module per kind: RTMP players ([`rtmp_play`]), pushes to other
//! servers ([`push`]). RTSP serving and HLS land here.

pub mod push;
pub mod rtmp_play;
