//! Listeners for protocols where one port takes both publishers and players: the accept loop and the
//! per-connection driver, which admits a connection once it says what it wants and hands it to `ingest` (a
//! publisher) or `egress` (a player). RTMP now; the RTSP server lands beside it. HTTP's listener is `api`.

pub mod rtmp;
