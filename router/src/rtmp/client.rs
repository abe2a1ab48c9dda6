//! Outbound RTMP with rml_rtmp's client session: the connection both directions share (handshake, connect,
//! publish or play accepted). Pulling a stream into a route is `ingest::rtmp_pull`; pushing one out is
//! `egress::push`.

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
    pub async fn connect(target: &RtmpTarget, mode: Mode) -> Result<(Client, Vec<ClientSessionEvent>), String> {
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

    pub async fn input(&mut self, data: &[u8]) -> Result<Vec<ClientSessionEvent>, String> {
        // rml_rtmp's chunk decoder can panic on crafted lengths: a bad server ends this connection, nothing else.
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.session.handle_input(data)))
            .map_err(|_| "malformed RTMP chunk from the server".to_string())?
            .map_err(|e| format!("RTMP protocol error: {e}"))?;
        self.apply(results).await
    }

    /// Sends outbound packets, returns raised events.
    pub async fn apply(&mut self, results: Vec<ClientSessionResult>) -> Result<Vec<ClientSessionEvent>, String> {
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

pub async fn read(tcp: &mut TcpStream, buf: &mut [u8]) -> Result<usize, String> {
    match tcp.read(buf).await {
        Ok(0) => Err("the server closed the connection".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
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
