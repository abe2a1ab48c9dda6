//! Outbound RTMP with rml_rtmp's client session: pull a stream from another server (`from = "rtmp://..."`) and
//! push a route to one (`to = ["rtmp://..."]`), both reconnecting with backoff.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use url::Url;

use super::flv;
use super::ingest::FlvTracks;
use crate::backoff::Backoff;
use crate::config::model::{redact_push_url, redact_url};
use crate::media::{CodecParams, TrackId};
use crate::route::actor::{SourceEvent, SourceFactory, SourceFeed};
use crate::route::{ReaderKind, RouteError, RouteHandle};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A server that does not take our data for this long is treated as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A pulled stream that sends nothing for this long is considered stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where an `rtmp://host[:port]/app/stream` URL points.
#[derive(Debug, Clone)]
pub struct RtmpTarget {
    pub addr: String,
    pub app: String,
    pub stream: String,
    pub tc_url: String,
}

impl RtmpTarget {
    pub fn parse(url: &Url) -> Result<RtmpTarget, String> {
        if url.scheme() != "rtmp" {
            return Err(format!("{}:// is not supported yet; use rtmp://", url.scheme()));
        }
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port().unwrap_or(1935);
        let mut segments = url.path().trim_start_matches('/').splitn(2, '/');
        let app = segments.next().unwrap_or_default().to_string();
        let mut stream = segments.next().unwrap_or_default().to_string();
        if let Some(q) = url.query() {
            stream = format!("{stream}?{q}");
        }
        if app.is_empty() || stream.is_empty() {
            return Err("write the URL as rtmp://host[:port]/APP/STREAM".into());
        }
        Ok(RtmpTarget { addr: format!("{host}:{port}"), tc_url: format!("rtmp://{host}:{port}/{app}"), app, stream })
    }
}

/// A connected client session and its socket.
struct Client {
    tcp: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
}

enum Mode {
    Publish,
    Play,
}

impl Client {
    /// Connects, handshakes and gets publishing or playing accepted, all within [`CONNECT_TIMEOUT`].
    async fn connect(target: &RtmpTarget, mode: Mode) -> Result<(Client, Vec<ClientSessionEvent>), String> {
        tokio::time::timeout(CONNECT_TIMEOUT * 2, Client::connect_inner(target, mode))
            .await
            .map_err(|_| format!("{} did not complete the RTMP setup in time", target.addr))?
    }

    async fn connect_inner(target: &RtmpTarget, mode: Mode) -> Result<(Client, Vec<ClientSessionEvent>), String> {
        let mut tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target.addr))
            .await
            .map_err(|_| format!("{} did not answer within {}s", target.addr, CONNECT_TIMEOUT.as_secs()))?
            .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
        let _ = tcp.set_nodelay(true);
        let mut buf = vec![0u8; 64 * 1024];
        let mut handshake = Handshake::new(PeerType::Client);
        let p0p1 = handshake.generate_outbound_p0_and_p1().map_err(|e| format!("RTMP handshake: {e}"))?;
        tcp.write_all(&p0p1).await.map_err(|e| e.to_string())?;
        let remaining = loop {
            let n = read(&mut tcp, &mut buf).await?;
            match handshake.process_bytes(&buf[..n]).map_err(|e| format!("RTMP handshake: {e}"))? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    tcp.write_all(&response_bytes).await.map_err(|e| e.to_string())?
                }
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    tcp.write_all(&response_bytes).await.map_err(|e| e.to_string())?;
                    break remaining_bytes;
                }
            }
        };
        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(target.tc_url.clone());
        let (session, results) = ClientSession::new(config).map_err(|e| e.to_string())?;
        let mut client = Client { tcp, session, buf };
        let mut events = client.apply(results).await?;
        events.extend(client.input(&remaining).await?);
        let request = client.session.request_connection(target.app.clone()).map_err(|e| e.to_string())?;
        events.extend(client.apply(vec![request]).await?);
        client.wait_for(&mut events, |e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted)).await?;
        let request = match mode {
            Mode::Publish => client.session.request_publishing(target.stream.clone(), PublishRequestType::Live),
            Mode::Play => client.session.request_playback(target.stream.clone()),
        }
        .map_err(|e| e.to_string())?;
        events.extend(client.apply(vec![request]).await?);
        client
            .wait_for(&mut events, |e| {
                matches!(e, ClientSessionEvent::PublishRequestAccepted | ClientSessionEvent::PlaybackRequestAccepted)
            })
            .await?;
        Ok((client, events))
    }

    /// Reads until an event matching `done` arrives (removing it and what came before it from `events`).
    async fn wait_for(
        &mut self,
        events: &mut Vec<ClientSessionEvent>,
        done: impl Fn(&ClientSessionEvent) -> bool,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        loop {
            if let Some(i) = events.iter().position(&done) {
                events.drain(..=i);
                return Ok(());
            }
            if let Some(ClientSessionEvent::ConnectionRequestRejected { description }) =
                events.iter().find(|e| matches!(e, ClientSessionEvent::ConnectionRequestRejected { .. }))
            {
                return Err(format!("the server refused: {description}"));
            }
            if let Some(ClientSessionEvent::UnhandleableOnStatusCode { code }) =
                events.iter().find(|e| matches!(e, ClientSessionEvent::UnhandleableOnStatusCode { .. }))
            {
                return Err(format!("the server answered {code}"));
            }
            let n = tokio::time::timeout_at(deadline, read(&mut self.tcp, &mut self.buf))
                .await
                .map_err(|_| "the server did not answer the RTMP request".to_string())??;
            let data = self.buf[..n].to_vec();
            events.extend(self.input(&data).await?);
        }
    }

    async fn input(&mut self, data: &[u8]) -> Result<Vec<ClientSessionEvent>, String> {
        // rml_rtmp's chunk decoder can panic on crafted lengths: a bad server ends this connection, nothing else.
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.session.handle_input(data)))
            .map_err(|_| "malformed RTMP chunk from the server".to_string())?
            .map_err(|e| format!("RTMP protocol error: {e}"))?;
        self.apply(results).await
    }

    /// Sends outbound packets, returns raised events.
    async fn apply(&mut self, results: Vec<ClientSessionResult>) -> Result<Vec<ClientSessionEvent>, String> {
        let mut events = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => {
                    tokio::time::timeout(WRITE_TIMEOUT, self.tcp.write_all(&p.bytes))
                        .await
                        .map_err(|_| format!("the server stopped reading for {}s", WRITE_TIMEOUT.as_secs()))?
                        .map_err(|e| e.to_string())?
                }
                ClientSessionResult::RaisedEvent(e) => events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(events)
    }
}

async fn read(tcp: &mut TcpStream, buf: &mut [u8]) -> Result<usize, String> {
    match tcp.read(buf).await {
        Ok(0) => Err("the server closed the connection".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `from = "rtmp://host/app/stream"`: plays a stream from another server into the route.
#[derive(Debug, Clone)]
pub struct RtmpPullSource {
    url: Url,
}

impl RtmpPullSource {
    pub fn new(url: Url) -> Self {
        RtmpPullSource { url }
    }
}

impl SourceFactory for RtmpPullSource {
    fn start(&self, feed: SourceFeed) -> JoinHandle<()> {
        tokio::spawn(pull(self.url.clone(), feed))
    }
}

async fn pull(url: Url, feed: SourceFeed) {
    let name = redact_url(&url);
    let mut backoff = Backoff::default();
    let mut last_error: Option<String> = None;
    loop {
        let (error, healthy_for) = match pull_once(&url, &feed).await {
            Ok(()) => return, // the route stopped this source
            Err(e) => e,
        };
        let wait = backoff.failed(healthy_for);
        if last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!(source = %name, %error, retry_in_ms = wait.as_millis() as u64, "RTMP pull failed; retrying with backoff");
        }
        last_error = Some(error.clone());
        if !feed.send(SourceEvent::Reconnecting { error }).await {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Ok when the route stopped us; Err((why, how long it delivered)) otherwise.
async fn pull_once(url: &Url, feed: &SourceFeed) -> Result<(), (String, Option<Duration>)> {
    let target = RtmpTarget::parse(url).map_err(|e| (e, None))?;
    let (mut client, mut pending) = Client::connect(&target, Mode::Play).await.map_err(|e| (e, None))?;
    if !feed.send(SourceEvent::Connected).await {
        return Ok(());
    }
    let started = Instant::now();
    let mut tracks = FlvTracks::default();
    loop {
        for event in pending.drain(..) {
            let events = match event {
                ClientSessionEvent::VideoDataReceived { data, timestamp } => tracks.video(&data, timestamp.value),
                ClientSessionEvent::AudioDataReceived { data, timestamp } => tracks.audio(&data, timestamp.value),
                _ => continue,
            };
            for e in events.map_err(|e| (e.to_string(), Some(started.elapsed())))? {
                if !feed.send(e).await {
                    return Ok(());
                }
            }
        }
        let n = tokio::time::timeout(STALL_TIMEOUT, read(&mut client.tcp, &mut client.buf))
            .await
            .map_err(|_| (format!("no data for {}s", STALL_TIMEOUT.as_secs()), Some(started.elapsed())))?
            .map_err(|e| (e, Some(started.elapsed())))?;
        let data = client.buf[..n].to_vec();
        pending = client.input(&data).await.map_err(|e| (e, Some(started.elapsed())))?;
    }
}

/// What the API shows about one push target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushStatus {
    pub target: String,
    /// "connecting", "live" or "retrying".
    pub state: &'static str,
    pub last_error: Option<String>,
    pub attempts: u64,
    pub frames_sent: u64,
}

/// Pushes a route to `url` until aborted (the route ended or its `to` no longer lists the URL).
pub fn spawn_push(route: RouteHandle, url: Url) -> (JoinHandle<()>, Arc<Mutex<PushStatus>>) {
    let status =
        Arc::new(Mutex::new(PushStatus { target: redact_push_url(&url), state: "connecting", ..Default::default() }));
    let task = tokio::spawn(push(route, url, Arc::clone(&status)));
    (task, status)
}

fn set(status: &Mutex<PushStatus>, f: impl FnOnce(&mut PushStatus)) {
    if let Ok(mut s) = status.lock() {
        f(&mut s);
    }
}

async fn push(route: RouteHandle, url: Url, status: Arc<Mutex<PushStatus>>) {
    let name = redact_push_url(&url);
    let mut backoff = Backoff::default();
    let mut last_error: Option<String> = None;
    loop {
        set(&status, |s| {
            s.state = "connecting";
            s.attempts += 1;
        });
        let (error, healthy_for) = match push_once(&route, &url, &status).await {
            Ok(()) => {
                set(&status, |s| s.state = "stopped");
                return; // the route ended
            }
            Err(e) => e,
        };
        let wait = backoff.failed(healthy_for);
        set(&status, |s| {
            s.state = "retrying";
            s.last_error = Some(error.clone());
        });
        if last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!(route = %route.name(), target = %name, %error, retry_in_ms = wait.as_millis() as u64, "RTMP push failed; retrying with backoff");
        }
        last_error = Some(error);
        tokio::time::sleep(wait).await;
    }
}

async fn push_once(
    route: &RouteHandle,
    url: &Url,
    status: &Mutex<PushStatus>,
) -> Result<(), (String, Option<Duration>)> {
    let target = RtmpTarget::parse(url).map_err(|e| (e, None))?;
    let mut reader = match route.add_reader(ReaderKind::Push, Some(redact_push_url(url))).await {
        Ok(r) => r,
        Err(RouteError::Ended(_)) => return Ok(()),
        Err(e) => return Err((e.to_string(), None)),
    };
    let (mut client, _) = Client::connect(&target, Mode::Publish).await.map_err(|e| (e, None))?;
    tracing::info!(route = %route.name(), target = %redact_push_url(url), "RTMP push connected");
    set(status, |s| s.state = "live");
    let started = Instant::now();
    let failed = |e: String| (e, Some(started.elapsed()));
    let mut sent_params: Vec<(TrackId, CodecParams)> = Vec::new();
    loop {
        tokio::select! {
            frame = reader.recv() => {
                let Some(frame) = frame else { return Ok(()) };
                let mut results = Vec::new();
                let sent = sent_params.iter().find(|(id, _)| *id == frame.track.id).map(|(_, p)| p);
                if sent != Some(&frame.track.params)
                    && let Some((is_video, header)) = flv::sequence_header(&frame.track.params)
                {
                    let ts = (frame.dts.max(0) * 1000 / i64::from(frame.track.clock_rate.max(1))) as u32;
                    results.push(publish(&mut client.session, is_video, header, ts, false).map_err(failed)?);
                    sent_params.retain(|(id, _)| *id != frame.track.id);
                    sent_params.push((frame.track.id, frame.track.params.clone()));
                }
                if let Some(m) = frame.flv.get_or_init(|| flv::route_message(&frame)) {
                    results.push(
                        publish(&mut client.session, m.video, m.body.clone(), m.timestamp_ms, !frame.keyframe)
                            .map_err(failed)?,
                    );
                    set(status, |s| s.frames_sent += 1);
                }
                client.apply(results).await.map_err(failed)?;
            }
            n = read(&mut client.tcp, &mut client.buf) => {
                let n = n.map_err(failed)?;
                let data = client.buf[..n].to_vec();
                client.input(&data).await.map_err(failed)?;
            }
        }
    }
}

fn publish(
    session: &mut ClientSession,
    video: bool,
    body: Bytes,
    ts: u32,
    droppable: bool,
) -> Result<ClientSessionResult, String> {
    let ts = RtmpTimestamp::new(ts);
    if video {
        session.publish_video_data(body, ts, droppable)
    } else {
        session.publish_audio_data(body, ts, droppable)
    }
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = RtmpTarget::parse(&Url::parse("rtmp://live.example.com/app/key?x=1").expect("url")).expect("target");
        assert_eq!((t.addr.as_str(), t.app.as_str(), t.stream.as_str()), ("live.example.com:1935", "app", "key?x=1"));
        assert_eq!(t.tc_url, "rtmp://live.example.com:1935/app");
        assert!(RtmpTarget::parse(&Url::parse("rtmp://h/app").expect("url")).is_err());
        assert!(RtmpTarget::parse(&Url::parse("rtmps://h/app/s").expect("url")).is_err());
    }
}
