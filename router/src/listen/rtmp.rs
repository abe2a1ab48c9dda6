//! The RTMP port (`[server] rtmp`): accepts connections, runs each one's handshake and rml_rtmp server session,
//! and once the peer asks to publish or play, admits it and hands it to `ingest::rtmp_publish` or
//! `egress::rtmp_play`. This file is the IO driver; the protocol is rml_rtmp's and `rtmp`'s.
//!
//! URLs: `rtmp://host[:port]/{route}` with the stream key in OBS's "Stream Key" field (or
//! `rtmp://host/{route}/{key}`, or `?key=`/`?token=`). The route is the RTMP "app"; if the app is not a route,
//! the stream name is tried, so `rtmp://host/live/{route}` works for tools that insist on an app.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::admit::{Admission, Admitted, Ask, Wants};
use crate::auth::{Credentials, Protocol};
use crate::config::model::{Output, PublishProtocol};
use crate::connections::Connections;
use crate::egress::rtmp_play::RtmpPlayer;
use crate::ingest::rtmp_publish::RtmpPublisher;
use crate::media::Frame;
use crate::rtmp::wire::{self, write};
use crate::rtmp::{RtmpError, flv};

use super::Activity;

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
    super::accept(listener, "RTMP", admission, connections, run);
    Ok(local)
}

/// A connection with no traffic either way for this long (no media or acknowledgements from the peer, no frames to
/// it) is dropped, within one check period more. A player that stops reading is caught sooner, by the same limit
/// on a single write.
const IDLE_TIMEOUT: Duration = wire::WRITE_TIMEOUT;
/// How often idleness is checked: a silent publisher frees its route 30-35 s after its last byte, not 30-60 s.
const IDLE_CHECK: Duration = Duration::from_secs(5);
const IDLE_CHECKS: u32 = (IDLE_TIMEOUT.as_secs() / IDLE_CHECK.as_secs()) as u32;
/// The handshake must complete in this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection must be publishing or playing this long after it opened, or it is closed: idle sockets and
/// command floods do not get to hold resources.
const START_DEADLINE: Duration = Duration::from_secs(15);

async fn run(stream: TcpStream, peer: SocketAddr, admission: Admission) {
    let mut conn = Connection { stream, peer, admission, publishing: None, playing: None, buf: vec![0u8; 16 * 1024] };
    let result = conn.serve().await;
    if let Some(publisher) = conn.publishing.take() {
        // Gone without ending its stream (killed, network lost): the route records it, so the publish counts as
        // failed rather than finished.
        let why = match &result {
            Ok(()) => "the connection closed".to_string(),
            Err(e) => e.to_string(),
        };
        publisher.lost(&why).await;
    }
    match result {
        Ok(()) => tracing::debug!(%peer, "RTMP connection closed"),
        Err(RtmpError::Io(e)) => tracing::debug!(%peer, error = %e, "RTMP connection ended"),
        Err(e) => tracing::warn!(%peer, error = %e, "RTMP connection closed"),
    }
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    admission: Admission,
    publishing: Option<RtmpPublisher>,
    playing: Option<RtmpPlayer>,
    buf: Vec<u8>,
}

impl Connection {
    async fn serve(&mut self) -> Result<(), RtmpError> {
        let remaining = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake())
            .await
            .map_err(|_| RtmpError::Idle(HANDSHAKE_TIMEOUT))??;
        let (mut session, results) = ServerSession::new(ServerSessionConfig::new())?;
        self.handle_results(&mut session, results).await?;
        let results = wire::server_input(&mut session, &remaining)?;
        self.handle_results(&mut session, results).await?;
        let start_deadline = tokio::time::sleep(START_DEADLINE);
        tokio::pin!(start_deadline);
        // One timer for the connection's life, moved only when it fires: arming a timeout around every read
        // would cost a timer-wheel insert and removal for every frame a player is sent.
        let idle_check = tokio::time::sleep(IDLE_CHECK);
        tokio::pin!(idle_check);
        let mut activity = Activity::default();
        loop {
            let started = self.publishing.is_some() || self.playing.is_some();
            tokio::select! {
                () = &mut start_deadline, if !started => {
                    return Err(RtmpError::Refused(format!("neither publishing nor playing after {}s", START_DEADLINE.as_secs())));
                }
                () = &mut idle_check => {
                    if activity.idle_since_last_check() >= IDLE_CHECKS {
                        return Err(RtmpError::Idle(IDLE_TIMEOUT));
                    }
                    idle_check.as_mut().reset(tokio::time::Instant::now() + IDLE_CHECK);
                }
                read = self.stream.read(&mut self.buf) => {
                    let n = read?;
                    if n == 0 {
                        return Ok(());
                    }
                    activity.note();
                    let results = wire::server_input(&mut session, &self.buf[..n])?;
                    self.handle_results(&mut session, results).await?;
                }
                frame = next_frame(&mut self.playing) => match frame {
                    Some(frame) => {
                        activity.note();
                        if let Some(player) = &mut self.playing {
                            player.send(&mut session, &mut self.stream, frame).await?;
                        }
                    }
                    None => {
                        // The route ended (removed by a reload) or dropped this reader.
                        return Err(RtmpError::Refused("the route stopped serving this player".into()));
                    }
                },
            }
        }
    }

    async fn handshake(&mut self) -> Result<Vec<u8>, RtmpError> {
        let mut handshake = Handshake::new(PeerType::Server);
        loop {
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Err(RtmpError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            match handshake.process_bytes(&self.buf[..n]).map_err(RtmpError::Handshake)? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    write(&mut self.stream, &response_bytes).await?
                }
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    write(&mut self.stream, &response_bytes).await?;
                    return Ok(remaining_bytes);
                }
            }
        }
    }

    async fn handle_results(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), RtmpError> {
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => write(&mut self.stream, &packet.bytes).await?,
                ServerSessionResult::RaisedEvent(event) => self.handle_event(session, event).await?,
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    async fn handle_event(&mut self, session: &mut ServerSession, event: ServerSessionEvent) -> Result<(), RtmpError> {
        match event {
            ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                let results = session.accept_request(request_id)?;
                Box::pin(self.handle_results(session, results)).await?;
            }
            ServerSessionEvent::PublishStreamRequested { request_id, app_name, stream_key, .. } => {
                match self.start_publishing(&app_name, &stream_key).await {
                    Ok(p) => {
                        tracing::info!(peer = %self.peer, route = %p.route, "RTMP publisher connected");
                        self.publishing = Some(p);
                        let results = session.accept_request(request_id)?;
                        Box::pin(self.handle_results(session, results)).await?;
                    }
                    Err(why) => {
                        let results = session.reject_request(request_id, "NetStream.Publish.BadName", &why)?;
                        Box::pin(self.handle_results(session, results)).await?;
                        return Err(RtmpError::Refused(format!("publish refused: {why}")));
                    }
                }
            }
            ServerSessionEvent::PlayStreamRequested { request_id, app_name, stream_key, stream_id, .. } => {
                match self.start_playing(&app_name, &stream_key, stream_id).await {
                    Ok(p) => {
                        self.playing = Some(p);
                        // Without rml_rtmp's data messages (see `flv::is_rml_data_packet`); ours follow at ts 0.
                        let results = session
                            .accept_request(request_id)?
                            .into_iter()
                            .filter(|r| !matches!(r, ServerSessionResult::OutboundResponse(p) if flv::is_rml_data_packet(&p.bytes)))
                            .collect();
                        Box::pin(self.handle_results(session, results)).await?;
                        if let Some(access) = flv::sample_access_message(stream_id) {
                            write(&mut self.stream, &access).await?;
                        }
                    }
                    Err(why) => {
                        let results = session.reject_request(request_id, "NetStream.Play.StreamNotFound", &why)?;
                        Box::pin(self.handle_results(session, results)).await?;
                        return Err(RtmpError::Refused(format!("play refused: {why}")));
                    }
                }
            }
            ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
                if let Some(p) = &mut self.publishing {
                    p.video(&data, timestamp.value).await?;
                }
            }
            ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
                if let Some(p) = &mut self.publishing {
                    p.audio(&data, timestamp.value).await?;
                }
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                if let Some(p) = self.publishing.take() {
                    tracing::info!(peer = %self.peer, route = %p.route, "RTMP publisher finished");
                }
            }
            ServerSessionEvent::PlayStreamFinished { .. } => self.playing = None,
            _ => {}
        }
        Ok(())
    }

    async fn start_publishing(&mut self, app: &str, stream: &str) -> Result<RtmpPublisher, String> {
        let admitted = self.admit(app, stream, Wants::Publish(PublishProtocol::Rtmp)).await?;
        RtmpPublisher::start(admitted, self.peer).await.map_err(|e| e.to_string())
    }

    async fn start_playing(&mut self, app: &str, stream: &str, stream_id: u32) -> Result<RtmpPlayer, String> {
        let admitted = self.admit(app, stream, Wants::Read(Output::Rtmp)).await?;
        RtmpPlayer::start(admitted, self.peer, stream_id).await.map_err(|e| e.to_string())
    }

    /// The route an (app, stream name) pair names, through admission; a refusal becomes the publish/play error.
    async fn admit(&self, app: &str, stream: &str, wants: Wants) -> Result<Admitted, String> {
        let (route, key) = self.resolve(app, stream)?;
        let ask = Ask {
            // The target is the route's path, never the stream name: that is often the key itself.
            target: format!("/{route}"),
            route,
            wants,
            protocol: Protocol::Rtmp,
            remote: Some(self.peer.ip()),
            query: Vec::new(),
            stream_key: key.stream_key().map(str::to_string),
            credentials: key.into_credentials(),
        };
        self.admission.admit(ask).await.map_err(|refusal| refusal.to_string())
    }

    /// The route an (app, stream name) pair names, and the key or token presented.
    fn resolve(&self, app: &str, stream: &str) -> Result<(String, StreamKey), String> {
        let (app, app_query) = app.split_once('?').unwrap_or((app, ""));
        let (stream, stream_query) = stream.split_once('?').unwrap_or((stream, ""));
        let query_key = [app_query, stream_query]
            .iter()
            .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
            .find(|(k, _)| k == "key" || k == "token")
            .map(|(k, v)| if k == "token" { StreamKey::Token(v.into_owned()) } else { StreamKey::Key(v.into_owned()) });
        let dir = self.admission.routes();
        let app = app.trim_matches('/');
        // App and stream name together are the path: `live` + `cam1/KEY` or `live/cam1` + `KEY` alike. The route
        // is its longest start that names a route (an exact name, else a template's), the rest the key as sent.
        // Empty segments dropped (an OBS server URL with no app, a doubled '/'); a name has at most 64 segments,
        // and one more is the key.
        let segments: Vec<&str> = app.split('/').chain(stream.split('/')).filter(|s| !s.is_empty()).take(65).collect();
        let path = segments.join("/");
        let found = super::route_prefix(&dir, &path).map(|(name, rest)| {
            (name.to_string(), query_key.clone().or_else(|| (!rest.is_empty()).then(|| StreamKey::Key(rest.into()))))
        });
        let (name, key) = match found {
            Some(found) => found,
            // `rtmp://host/live/ROUTE`, for tools that insist on an app.
            None if dir.route(stream).is_some() => (stream.to_string(), query_key),
            None => {
                return Err(format!(
                    "there is no route \"{app}\" (use rtmp://host/ROUTE with the stream key as the stream name)"
                ));
            }
        };
        Ok((name, key.unwrap_or(StreamKey::None)))
    }
}

async fn next_frame(playing: &mut Option<RtmpPlayer>) -> Option<Arc<Frame>> {
    match playing {
        Some(p) => p.next_frame().await,
        None => std::future::pending().await,
    }
}

/// What an RTMP client presented: OBS's stream key (or `?key=`), a `?token=`, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StreamKey {
    None,
    Key(String),
    Token(String),
}

impl StreamKey {
    fn stream_key(&self) -> Option<&str> {
        match self {
            StreamKey::Key(k) => Some(k),
            _ => None,
        }
    }

    fn into_credentials(self) -> Credentials {
        match self {
            StreamKey::None => Credentials::None,
            StreamKey::Key(k) => Credentials::StreamKey(k),
            StreamKey::Token(t) => Credentials::Bearer(t),
        }
    }
}
