//! One WebRTC peer of a WHIP or WHEP session: str0m (the protocol, fed bytes and time) driven over one UDP
//! socket, the offer POSTed to the router and the session DELETEd when it ends. The push (WHIP) and the pull
//! (WHEP) differ only in the media they ask for and what they do with events.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use url::Url;

/// An HTTP request that gets no answer in this time is treated as failed.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Time from the answer to a working ICE + DTLS connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const RECV_BUFFER: usize = 4 << 20;
const MAX_ANSWER: usize = 256 * 1024;
/// A connected router sends RTCP (reports, feedback) and ICE answers every second or so; this long without a
/// datagram means it is gone (restarted, unplugged), long before ICE itself would give up.
pub const SILENCE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Peer {
    pub rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    timeout: Instant,
    buf: Vec<u8>,
    resource: Option<Url>,
    http: reqwest::Client,
    token: Option<String>,
    last_keyframe_request: Option<Instant>,
    last_received: Instant,
}

impl Peer {
    /// Offers `media` to the WHIP/WHEP endpoint `url` and applies its answer. Returns the peer and the mids of
    /// `media`, in order.
    pub async fn connect(
        url: &Url,
        token: Option<&str>,
        media: &[(MediaKind, Direction)],
        configure: impl FnOnce(RtcConfig) -> RtcConfig,
    ) -> anyhow::Result<(Peer, Vec<Mid>)> {
        let host = url.host_str().context("the URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let remote = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        let socket = UdpSocket::bind(if remote.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).await?;
        // A viewer joins with the route's whole GOP sent at once; the default buffer would drop its keyframe.
        // The kernel caps this at net.core.rmem_max.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, RECV_BUFFER);
        // The address this machine reaches the router from is the one candidate worth offering.
        let probe = std::net::UdpSocket::bind(if remote.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
        probe.connect(remote).with_context(|| format!("no route to {remote}"))?;
        let local = SocketAddr::new(probe.local_addr()?.ip(), socket.local_addr()?.port());
        drop(probe);

        let mut rtc =
            configure(RtcConfig::new().set_stats_interval(Some(Duration::from_secs(1)))).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").context("host candidate")?);
        let mut change = rtc.sdp_api();
        let mids: Vec<Mid> = media.iter().map(|&(kind, dir)| change.add_media(kind, dir, None, None, None)).collect();
        let (offer, pending) = change.apply().context("str0m made no offer")?;

        let http = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build()?;
        let (answer, resource) = post_offer(&http, url, token, &offer).await?;
        if let Err(e) = rtc.sdp_api().accept_answer(pending, answer) {
            // The router made a session for an answer we cannot use: end it rather than leave it to time out.
            if let Some(resource) = resource {
                let _ = with_token(http.delete(resource), token).timeout(Duration::from_secs(2)).send().await;
            }
            return Err(anyhow::Error::new(e).context("the router's answer does not fit the offer"));
        }
        let peer = Peer {
            rtc,
            socket,
            local,
            timeout: Instant::now(),
            buf: vec![0; 2048],
            resource,
            http,
            token: token.map(str::to_string),
            last_keyframe_request: None,
            last_received: Instant::now(),
        };
        Ok((peer, mids))
    }

    /// Sends what str0m has queued and returns the events it raised, until it next needs time or input.
    pub fn drain(&mut self) -> anyhow::Result<Vec<Event>> {
        let mut events = Vec::new();
        loop {
            match self.rtc.poll_output().context("WebRTC")? {
                Output::Timeout(t) => {
                    self.timeout = t;
                    return Ok(events);
                }
                Output::Transmit(t) => {
                    // UDP: a datagram the kernel cannot take now is lost like any other; NACK/RTX repairs it.
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => events.push(e),
            }
        }
    }

    /// Waits for a datagram or str0m's next timer and feeds it in. Cancel-safe.
    pub async fn wait_input(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::from_std(self.timeout);
        tokio::select! {
            r = self.socket.recv_from(&mut self.buf) => {
                let (n, source) = r?;
                let now = Instant::now();
                self.last_received = now;
                if let Ok(contents) = self.buf[..n].try_into() {
                    let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination: self.local, contents });
                    self.rtc.handle_input(input).context("WebRTC input")?;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                self.rtc.handle_input(Input::Timeout(Instant::now())).context("WebRTC timer")?;
            }
        }
        Ok(())
    }

    /// Fails when the router has sent nothing for [`SILENCE`].
    pub fn check_alive(&self) -> anyhow::Result<()> {
        if self.last_received.elapsed() > SILENCE {
            anyhow::bail!("the router went silent for {}s", SILENCE.as_secs());
        }
        Ok(())
    }

    /// Asks the sender of `mid` for a keyframe (PLI), at most once a second.
    pub fn request_keyframe(&mut self, mid: Mid) {
        if self.last_keyframe_request.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.last_keyframe_request = Some(Instant::now());
        if let Some(mut writer) = self.rtc.writer(mid) {
            let _ = writer.request_keyframe(None, str0m::media::KeyframeRequestKind::Pli);
        }
    }

    /// Ends the session on the router (DELETE of the resource it made), so the route frees its slot at once.
    pub async fn close(mut self) {
        self.rtc.disconnect();
        let Some(resource) = self.resource.take() else { return };
        let req = with_token(self.http.delete(resource.clone()), self.token.as_deref()).timeout(Duration::from_secs(2));
        if let Err(e) = req.send().await {
            tracing::debug!(%resource, "DELETE: {e}");
        }
    }
}

async fn post_offer(
    http: &reqwest::Client,
    url: &Url,
    token: Option<&str>,
    offer: &SdpOffer,
) -> anyhow::Result<(SdpAnswer, Option<Url>)> {
    let req = http.post(url.clone()).header("content-type", "application/sdp").body(offer.to_sdp_string());
    let mut resp = with_token(req, token).send().await.with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let resource = resp.headers().get("location").and_then(|l| l.to_str().ok()).and_then(|l| url.join(l).ok());
    // An answer is a few KB; a server that sends more is not a WHIP/WHEP endpoint.
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.context("reading the answer")? {
        if body.len() + chunk.len() > MAX_ANSWER {
            anyhow::bail!("the answer from {url} is over {MAX_ANSWER} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        let said: String = body.chars().take(300).collect();
        anyhow::bail!("the router answered {status}: {}", said.trim());
    }
    let answer = SdpAnswer::from_sdp_string(&body).context("the router's answer is not SDP")?;
    Ok((answer, resource))
}

fn with_token(req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}
