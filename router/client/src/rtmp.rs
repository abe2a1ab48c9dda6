//! Outbound RTMP with rml_rtmp's client session: the connection both directions share (handshake, connect,
//! publish or play accepted). In the router, pulling a stream into a route is `ingest::rtmp_pull` and pushing
//! one out is `egress::push`; `sluice-edge` publishes a camera with it.

use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A server that does not take our data for this long is treated as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an outbound RTMP connection failed or ended.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}:// is not supported yet; use rtmp://")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("write the URL as rtmp://host[:port]/APP/STREAM")]
    Shape,
    #[error("{addr} did not answer within {}s", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout { addr: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("{0} did not complete the RTMP setup in time")]
    SetupTimeout(String),
    #[error("RTMP handshake: {0}")]
    Handshake(rml_rtmp::handshake::HandshakeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("RTMP protocol error: {0}")]
    Protocol(#[from] rml_rtmp::sessions::ClientSessionError),
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("the server answered {0}")]
    Status(String),
    #[error("the server did not answer the RTMP request")]
    NoAnswer,
    #[error("malformed RTMP chunk from the server")]
    Malformed,
    #[error("the server stopped reading for {}s", WRITE_TIMEOUT.as_secs())]
    WriteStalled,
    #[error("the server closed the connection")]
    Closed,
}

/// Where an `rtmp://host[:port]/app/stream` URL points.
#[derive(Debug, Clone)]
pub struct RtmpTarget {
    pub addr: String,
    pub app: String,
    pub stream: String,
    pub tc_url: String,
}

impl RtmpTarget {
    pub fn parse(url: &Url) -> Result<RtmpTarget, ClientError> {
        if url.scheme() != "rtmp" {
            return Err(ClientError::Scheme(url.scheme().to_string()));
        }
        let host = url.host_str().ok_or(ClientError::NoHost)?;
        let port = url.port().unwrap_or(1935);
        let mut segments = url.path().trim_start_matches('/').splitn(2, '/');
        let app = segments.next().unwrap_or_default().to_string();
        let mut stream = segments.next().unwrap_or_default().to_string();
        if let Some(q) = url.query() {
            stream = format!("{stream}?{q}");
        }
        if app.is_empty() || stream.is_empty() {
            return Err(ClientError::Shape);
        }
        Ok(RtmpTarget { addr: format!("{host}:{port}"), tc_url: format!("rtmp://{host}:{port}/{app}"), app, stream })
    }
}

/// A connected client session and its socket.
#[allow(missing_debug_implementations, reason = "rml_rtmp's ClientSession has no Debug")]
pub struct Client {
    pub tcp: TcpStream,
    pub session: ClientSession,
    pub buf: Vec<u8>,
}

/// Which way the stream goes once connected.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Publish,
    Play,
}

impl Client {
    /// Connects, handshakes and gets publishing or playing accepted, all within [`CONNECT_TIMEOUT`].
    pub async fn connect(target: &RtmpTarget, mode: Mode) -> Result<(Client, Vec<ClientSessionEvent>), ClientError> {
        tokio::time::timeout(CONNECT_TIMEOUT * 2, Client::connect_inner(target, mode))
            .await
            .map_err(|_| ClientError::SetupTimeout(target.addr.clone()))?
    }

    async fn connect_inner(target: &RtmpTarget, mode: Mode) -> Result<(Client, Vec<ClientSessionEvent>), ClientError> {
        let mut tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target.addr))
            .await
            .map_err(|_| ClientError::ConnectTimeout { addr: target.addr.clone() })?
            .map_err(|source| ClientError::Connect { addr: target.addr.clone(), source })?;
        let _ = tcp.set_nodelay(true);
        let mut buf = vec![0u8; 64 * 1024];
        let mut handshake = Handshake::new(PeerType::Client);
        let p0p1 = handshake.generate_outbound_p0_and_p1().map_err(ClientError::Handshake)?;
        tcp.write_all(&p0p1).await?;
        let remaining = loop {
            let n = read(&mut tcp, &mut buf).await?;
            match handshake.process_bytes(&buf[..n]).map_err(ClientError::Handshake)? {
                HandshakeProcessResult::InProgress { response_bytes } => tcp.write_all(&response_bytes).await?,
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    tcp.write_all(&response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };
        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(target.tc_url.clone());
        let (session, results) = ClientSession::new(config)?;
        let mut client = Client { tcp, session, buf };
        let mut events = client.apply(results).await?;
        events.extend(client.input(&remaining).await?);
        let request = client.session.request_connection(target.app.clone())?;
        events.extend(client.apply(vec![request]).await?);
        client.wait_for(&mut events, |e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted)).await?;
        let request = match mode {
            Mode::Publish => client.session.request_publishing(target.stream.clone(), PublishRequestType::Live),
            Mode::Play => client.session.request_playback(target.stream.clone()),
        }?;
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
    ) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        loop {
            if let Some(i) = events.iter().position(&done) {
                events.drain(..=i);
                return Ok(());
            }
            if let Some(ClientSessionEvent::ConnectionRequestRejected { description }) =
                events.iter().find(|e| matches!(e, ClientSessionEvent::ConnectionRequestRejected { .. }))
            {
                return Err(ClientError::Refused(description.clone()));
            }
            if let Some(ClientSessionEvent::UnhandleableOnStatusCode { code }) = events
                .iter()
                .find(|e| matches!(e, ClientSessionEvent::UnhandleableOnStatusCode { code } if !informational(code)))
            {
                return Err(ClientError::Status(code.clone()));
            }
            let n = tokio::time::timeout_at(deadline, read(&mut self.tcp, &mut self.buf))
                .await
                .map_err(|_| ClientError::NoAnswer)??;
            let data = self.buf[..n].to_vec();
            events.extend(self.input(&data).await?);
        }
    }

    pub async fn input(&mut self, data: &[u8]) -> Result<Vec<ClientSessionEvent>, ClientError> {
        // rml_rtmp's chunk decoder can panic on crafted lengths: a bad server ends this connection, nothing else.
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.session.handle_input(data)))
            .map_err(|_| ClientError::Malformed)??;
        self.apply(results).await
    }

    /// Sends outbound packets, returns raised events.
    pub async fn apply(&mut self, results: Vec<ClientSessionResult>) -> Result<Vec<ClientSessionEvent>, ClientError> {
        let mut events = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => {
                    tokio::time::timeout(WRITE_TIMEOUT, self.tcp.write_all(&p.bytes))
                        .await
                        .map_err(|_| ClientError::WriteStalled)??
                }
                ClientSessionResult::RaisedEvent(e) => events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(events)
    }
}

/// Status codes servers send on the way to (or beside) an accepted play or publish, which rml_rtmp does not
/// know: `NetStream.Play.Reset` comes before `Play.Start` from nginx-rtmp and Sluice, in the same packet or not.
fn informational(code: &str) -> bool {
    [".Reset", ".PublishNotify", ".Start", ".Switch", ".Notify"].iter().any(|end| code.ends_with(end))
}

pub async fn read(tcp: &mut TcpStream, buf: &mut [u8]) -> Result<usize, ClientError> {
    match tcp.read(buf).await? {
        0 => Err(ClientError::Closed),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_end_a_connection_attempt() {
        assert!(informational("NetStream.Play.Reset"));
        assert!(informational("NetStream.Play.PublishNotify"));
        assert!(!informational("NetStream.Play.StreamNotFound"));
        assert!(!informational("NetStream.Publish.BadName"));
    }

    #[test]
    fn targets() {
        let t = RtmpTarget::parse(&Url::parse("rtmp://live.example.com/app/key?x=1").expect("url")).expect("target");
        assert_eq!((t.addr.as_str(), t.app.as_str(), t.stream.as_str()), ("live.example.com:1935", "app", "key?x=1"));
        assert_eq!(t.tc_url, "rtmp://live.example.com:1935/app");
        assert!(RtmpTarget::parse(&Url::parse("rtmp://h/app").expect("url")).is_err());
        assert!(RtmpTarget::parse(&Url::parse("rtmps://h/app/s").expect("url")).is_err());
    }
}
