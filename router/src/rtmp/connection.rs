//! One RTMP connection: handshake, then publish into a route or play one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::flv;
use super::ingest::FlvTracks;
use crate::admit::{Admission, Ask, Wants};
use crate::auth::{Credentials, Protocol};
use crate::config::model::{Output, PublishProtocol};
use crate::media::{CodecParams, Frame, TrackId};
use crate::route::{ReaderKind, RouteHandle, RouteReader, SourceEvent, SourceFeed};

/// A connection with no traffic either way for this long (no media or acknowledgements from the peer, no frames to
/// it) is dropped, within one check period more. A player that stops reading is caught sooner, by the same limit
/// on a single write.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often idleness is checked: a silent publisher frees its route 30-35 s after its last byte, not 30-60 s.
const IDLE_CHECK: Duration = Duration::from_secs(5);
const IDLE_CHECKS: u32 = (IDLE_TIMEOUT.as_secs() / IDLE_CHECK.as_secs()) as u32;
/// The handshake must complete in this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection must be publishing or playing this long after it opened, or it is closed: idle sockets and
/// command floods do not get to hold resources.
const START_DEADLINE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("RTMP handshake failed: {0}")]
    Handshake(rml_rtmp::handshake::HandshakeError),
    #[error("RTMP protocol error: {0}")]
    Session(rml_rtmp::sessions::ServerSessionError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Media(#[from] flv::FlvError),
    #[error("no data for {0:?}")]
    Idle(Duration),
}

impl From<rml_rtmp::sessions::ServerSessionError> for ConnError {
    fn from(e: rml_rtmp::sessions::ServerSessionError) -> Self {
        ConnError::Session(e)
    }
}

pub async fn run(stream: TcpStream, peer: SocketAddr, admission: Admission) {
    let mut conn = Connection {
        stream,
        peer,
        admission,
        publishing: None,
        playing: None,
        buf: vec![0u8; 16 * 1024],
        out: Vec::new(),
    };
    match conn.serve().await {
        Ok(()) => tracing::debug!(%peer, "RTMP connection closed"),
        Err(ConnError::Io(e)) => tracing::debug!(%peer, error = %e, "RTMP connection ended"),
        Err(e) => tracing::warn!(%peer, error = %e, "RTMP connection closed"),
    }
}

/// What a publishing connection feeds.
struct Publishing {
    route: String,
    feed: SourceFeed,
    tracks: FlvTracks,
}

/// What a playing connection reads.
struct Playing {
    stream_id: u32,
    reader: RouteReader,
    route: RouteHandle,
    /// Whether `onMetaData` went out (before the first frame, once the route's tracks are known).
    sent_metadata: bool,
    /// Parameter sets last sent to the player, per track (a change sends a new sequence header).
    sent_params: Vec<(TrackId, CodecParams)>,
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    admission: Admission,
    publishing: Option<Publishing>,
    playing: Option<Playing>,
    buf: Vec<u8>,
    /// What one wake sends to a player, kept between wakes to reuse its allocation.
    out: Vec<Bytes>,
}

impl Connection {
    async fn serve(&mut self) -> Result<(), ConnError> {
        let remaining = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake())
            .await
            .map_err(|_| ConnError::Idle(HANDSHAKE_TIMEOUT))??;
        let (mut session, results) = ServerSession::new(ServerSessionConfig::new())?;
        self.handle_results(&mut session, results).await?;
        let results = handle_input(&mut session, &remaining)?;
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
                    return Err(ConnError::Refused(format!("neither publishing nor playing after {}s", START_DEADLINE.as_secs())));
                }
                () = &mut idle_check => {
                    if activity.idle_since_last_check() >= IDLE_CHECKS {
                        return Err(ConnError::Idle(IDLE_TIMEOUT));
                    }
                    idle_check.as_mut().reset(tokio::time::Instant::now() + IDLE_CHECK);
                }
                read = self.stream.read(&mut self.buf) => {
                    let n = read?;
                    if n == 0 {
                        return Ok(());
                    }
                    activity.note();
                    let results = handle_input(&mut session, &self.buf[..n])?;
                    self.handle_results(&mut session, results).await?;
                }
                frame = next_frame(&mut self.playing) => match frame {
                    Some(frame) => {
                        activity.note();
                        self.play_frames(&mut session, frame).await?;
                    }
                    None => {
                        // The route ended (removed by a reload) or dropped this reader.
                        return Err(ConnError::Refused("the route stopped serving this player".into()));
                    }
                },
            }
        }
    }

    async fn handshake(&mut self) -> Result<Vec<u8>, ConnError> {
        let mut handshake = Handshake::new(PeerType::Server);
        loop {
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            match handshake.process_bytes(&self.buf[..n]).map_err(ConnError::Handshake)? {
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
    ) -> Result<(), ConnError> {
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => write(&mut self.stream, &packet.bytes).await?,
                ServerSessionResult::RaisedEvent(event) => self.handle_event(session, event).await?,
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    async fn handle_event(&mut self, session: &mut ServerSession, event: ServerSessionEvent) -> Result<(), ConnError> {
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
                        return Err(ConnError::Refused(format!("publish refused: {why}")));
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
                        return Err(ConnError::Refused(format!("play refused: {why}")));
                    }
                }
            }
            ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => self.video(&data, timestamp).await?,
            ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => self.audio(&data, timestamp).await?,
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

    async fn start_publishing(&mut self, app: &str, stream: &str) -> Result<Publishing, String> {
        let admitted = self.admit(app, stream, Wants::Publish(PublishProtocol::Rtmp)).await?;
        let feed = admitted
            .route
            .attach_publisher(Some(self.peer.to_string()), admitted.config.override_publisher)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Publishing { route: admitted.config.name.to_string(), feed, tracks: FlvTracks::default() })
    }

    async fn start_playing(&mut self, app: &str, stream: &str, stream_id: u32) -> Result<Playing, String> {
        let admitted = self.admit(app, stream, Wants::Read(Output::Rtmp)).await?;
        let reader = admitted
            .route
            .add_reader(ReaderKind::Rtmp, Some(self.peer.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(peer = %self.peer, route = %admitted.config.name, "RTMP player connected");
        Ok(Playing { stream_id, reader, route: admitted.route, sent_metadata: false, sent_params: Vec::new() })
    }

    /// The route an (app, stream name) pair names, through admission; a refusal becomes the publish/play error.
    async fn admit(&self, app: &str, stream: &str, wants: Wants) -> Result<crate::admit::Admitted, String> {
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
        let (name, key) = if dir.route(app).is_some() {
            let key = query_key.or_else(|| (!stream.is_empty()).then(|| StreamKey::Key(stream.to_string())));
            (app.to_string(), key.unwrap_or(StreamKey::None))
        } else if dir.route(stream).is_some() {
            (stream.to_string(), query_key.unwrap_or(StreamKey::None))
        } else {
            return Err(format!(
                "there is no route \"{app}\" (use rtmp://host/ROUTE with the stream key as the stream name)"
            ));
        };
        Ok((name, key))
    }

    async fn video(&mut self, data: &Bytes, timestamp: RtmpTimestamp) -> Result<(), ConnError> {
        let Some(p) = &mut self.publishing else { return Ok(()) };
        let events = match p.tracks.video(data, timestamp.value) {
            Ok(events) => events,
            Err(e) => {
                // Tell whoever looks at the route why its publisher was dropped (Enhanced RTMP, another codec).
                let _ = p.feed.send(SourceEvent::Problem { error: format!("publisher refused: {e}") }).await;
                return Err(e.into());
            }
        };
        deliver(&p.feed, events).await
    }

    async fn audio(&mut self, data: &Bytes, timestamp: RtmpTimestamp) -> Result<(), ConnError> {
        let Some(p) = &mut self.publishing else { return Ok(()) };
        let events = p.tracks.audio(data, timestamp.value)?;
        deliver(&p.feed, events).await
    }

    /// Sends `first` and whatever else the player's queue already holds, in one vectored write: when a server
    /// is busy, queues deepen and each wake carries more frames per system call.
    async fn play_frames(&mut self, session: &mut ServerSession, first: Arc<Frame>) -> Result<(), ConnError> {
        let mut out = std::mem::take(&mut self.out);
        if let Some(p) = self.playing.as_mut().filter(|p| !p.sent_metadata) {
            // The first frame has arrived, so the route knows its tracks.
            let tracks = p.route.snapshot().await.map(|s| s.tracks).unwrap_or_default();
            out.extend(flv::metadata_message(&tracks, p.stream_id));
            p.sent_metadata = true;
        }
        self.queue_frame(session, &first, &mut out)?;
        for _ in 0..MAX_FRAMES_PER_WRITE {
            let Some(next) = self.playing.as_mut().and_then(|p| p.reader.try_recv()) else { break };
            self.queue_frame(session, &next, &mut out)?;
        }
        let written = write_vectored(&mut self.stream, &mut out).await;
        out.clear();
        self.out = out;
        written
    }

    /// Appends what one frame needs on the wire (a sequence header first if the track's parameters changed).
    fn queue_frame(
        &mut self,
        session: &mut ServerSession,
        frame: &Arc<Frame>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), ConnError> {
        let Some(p) = &mut self.playing else { return Ok(()) };
        let stream_id = p.stream_id;
        let sent = p.sent_params.iter().find(|(id, _)| *id == frame.track.id).map(|(_, params)| params);
        if sent != Some(&frame.track.params)
            && let Some((is_video, header)) = flv::sequence_header(&frame.track.params)
        {
            let ts = RtmpTimestamp::new((frame.dts.max(0) * 1000 / i64::from(frame.track.clock_rate.max(1))) as u32);
            let packet = if is_video {
                session.send_video_data(stream_id, header, ts, false)?
            } else {
                session.send_audio_data(stream_id, header, ts, false)?
            };
            out.push(Bytes::from(packet.bytes));
            p.sent_params.retain(|(id, _)| *id != frame.track.id);
            p.sent_params.push((frame.track.id, frame.track.params.clone()));
        }
        // Built once per route frame, shared by every RTMP player of the route.
        if let Some(m) = frame.flv.get_or_init(|| flv::route_message(frame)) {
            if stream_id == flv::PLAYER_STREAM_ID {
                // Full-header chunks on our own chunk streams: the same bytes for every player, no copy.
                out.push(m.chunked.clone());
            } else {
                let ts = RtmpTimestamp::new(m.timestamp_ms);
                let droppable = !frame.keyframe;
                let packet = if m.video {
                    session.send_video_data(stream_id, m.body.clone(), ts, droppable)?
                } else {
                    session.send_audio_data(stream_id, m.body.clone(), ts, droppable)?
                };
                out.push(Bytes::from(packet.bytes));
            }
        }
        Ok(())
    }
}

/// Frames coalesced into one write at most.
const MAX_FRAMES_PER_WRITE: usize = 32;

/// Writes every buffer, in one `writev` when the socket takes them all (the usual case: no timer is armed); a
/// player whose socket stays full for [`IDLE_TIMEOUT`] is dropped.
async fn write_vectored(stream: &mut TcpStream, bufs: &mut [Bytes]) -> Result<(), ConnError> {
    if bufs.is_empty() {
        // Frames with no RTMP form (a codec FLV cannot carry) leave nothing to send.
        return Ok(());
    }
    let written = match try_write_vectored(stream, bufs) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e.into()),
    };
    let rest = advance(bufs, written);
    if rest.is_empty() {
        return Ok(());
    }
    tokio::time::timeout(IDLE_TIMEOUT, write_all_vectored(stream, rest))
        .await
        .map_err(|_| ConnError::Idle(IDLE_TIMEOUT))??;
    Ok(())
}

fn try_write_vectored(stream: &TcpStream, bufs: &[Bytes]) -> std::io::Result<usize> {
    match bufs {
        [one] => stream.try_write(one),
        _ => {
            let slices: Vec<std::io::IoSlice<'_>> = bufs.iter().map(|b| std::io::IoSlice::new(b)).collect();
            stream.try_write_vectored(&slices)
        }
    }
}

/// `write_all` for several buffers with `writev`, resuming after partial writes.
async fn write_all_vectored(stream: &mut TcpStream, mut bufs: &mut [Bytes]) -> std::io::Result<()> {
    while !bufs.is_empty() {
        let slices: Vec<std::io::IoSlice<'_>> = bufs.iter().map(|b| std::io::IoSlice::new(b)).collect();
        let n = stream.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bufs = advance(bufs, n);
    }
    Ok(())
}

/// What is left of `bufs` after `n` bytes of them were written.
fn advance(bufs: &mut [Bytes], mut n: usize) -> &mut [Bytes] {
    let mut i = 0;
    while i < bufs.len() && n >= bufs[i].len() {
        n -= bufs[i].len();
        i += 1;
    }
    let rest = &mut bufs[i..];
    if let Some(first) = rest.first_mut() {
        *first = first.slice(n..);
    }
    rest
}

/// Whether a connection has been idle: traffic either way is noted (a flag, not a clock read per frame), and each
/// check counts the periods in a row that saw none.
#[derive(Debug, Default)]
struct Activity {
    noted: bool,
    idle_checks: u32,
}

impl Activity {
    fn note(&mut self) {
        self.noted = true;
    }

    /// Check periods in a row, this one included, with nothing noted.
    fn idle_since_last_check(&mut self) -> u32 {
        if std::mem::take(&mut self.noted) {
            self.idle_checks = 0;
        } else {
            self.idle_checks += 1;
        }
        self.idle_checks
    }
}

/// Feeds peer bytes to rml_rtmp. Its chunk deserializer can panic on crafted lengths (an integer underflow);
/// a panic here ends this connection like any protocol error instead of unwinding through the task.
fn handle_input(session: &mut ServerSession, data: &[u8]) -> Result<Vec<ServerSessionResult>, ConnError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.handle_input(data))) {
        Ok(r) => Ok(r?),
        Err(_) => Err(ConnError::Refused("malformed RTMP chunk (the decoder rejected it)".into())),
    }
}

/// Writes with a deadline: a player that stops reading (its TCP window stays full) is disconnected instead of
/// holding this task, and its route reader, forever.
async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), ConnError> {
    tokio::time::timeout(IDLE_TIMEOUT, stream.write_all(bytes)).await.map_err(|_| ConnError::Idle(IDLE_TIMEOUT))??;
    Ok(())
}

/// Hands events to the route, waiting when it is behind: TCP backpressure slows the publisher rather than the
/// route losing frames mid-GOP.
async fn deliver(feed: &SourceFeed, events: Vec<SourceEvent>) -> Result<(), ConnError> {
    for event in events {
        if !feed.send(event).await {
            return Err(ConnError::Refused("another publisher replaced this one, or the route ended".into()));
        }
    }
    Ok(())
}

async fn next_frame(playing: &mut Option<Playing>) -> Option<Arc<Frame>> {
    match playing {
        Some(p) => p.reader.recv().await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_skips_written_buffers_and_cuts_a_partial_one() {
        let mut bufs: Vec<Bytes> = [&b"abc"[..], b"", b"de", b"fgh"].into_iter().map(Bytes::from_static).collect();
        assert_eq!(advance(&mut bufs, 0), [&b"abc"[..], b"", b"de", b"fgh"]);
        assert_eq!(advance(&mut bufs, 4), [&b"e"[..], b"fgh"], "the empty one and a part of \"de\" are gone");
        let mut bufs: Vec<Bytes> = [&b"abc"[..], b"de"].into_iter().map(Bytes::from_static).collect();
        assert!(advance(&mut bufs, 5).is_empty());
    }

    #[test]
    fn a_connection_is_idle_when_check_periods_in_a_row_passed_without_traffic() {
        let mut activity = Activity::default();
        assert_eq!(activity.idle_since_last_check(), 1, "nothing since it opened");
        assert_eq!(activity.idle_since_last_check(), 2);
        activity.note();
        activity.note();
        assert_eq!(activity.idle_since_last_check(), 0, "traffic starts the count again");
        assert_eq!(activity.idle_since_last_check(), 1, "what was noted counts for one period only");
        assert_eq!(IDLE_CHECKS, 6);
    }
}
