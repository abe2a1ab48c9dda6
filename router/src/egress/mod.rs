//! Outputs a route's frames leave by, one module per kind. Today: pushes to other servers; WHEP viewers
//! (`webrtc`), RTMP players (`rtmp::connection`) and recorders (`recording::recorder`) move here with the
//! re-layering (issue 19), and RTSP serving and HLS land here.

pub mod push;
