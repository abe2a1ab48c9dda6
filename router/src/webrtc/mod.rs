//! WebRTC: WHIP publishers and WHEP viewers on one UDP port, with str0m.
//!
//! - [`WebRtc`] is the handle the HTTP API uses: it answers offers (building each peer's `Rtc` on the caller's
//!   task, so SDP work never stalls media), then hands the session to the shard.
//! - [`shard`] is the driver: one thread owns the UDP socket and every session.
//! - [`session`] is one peer's state machine around str0m's `Rtc` (sans-IO).
//! - [`packetize`] turns a route frame into RTP payloads once; every viewer shares them ([`subscription`] brings
//!   each route's frames into the shard once, however many viewers it has).
//! - [`publish`] turns a publisher's depacketized frames into route frames.
//!
//! Why str0m and not the `webrtc` crate: webrtc binds a UDP socket per connection and runs tasks per peer, while
//! a media server needs every peer on one port (NAT, firewalls) and hundreds of peers driven by one thread.

pub mod candidates;
pub mod packetize;
pub mod publish;
pub mod session;
pub mod shard;
pub mod subscription;
pub mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::crypto::dtls::DtlsCert;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::config::model::{RouteName, WebrtcConfig};
use crate::connections::{AddressCounts, AddressSlot};
use crate::media::Codec;
use crate::route::{RouteError, RouteHandle, RouteSnapshot};
use session::{Outgoing, Publisher, Role, Session, Viewer, accepted_payload_types};
pub use shard::{SessionInfo, SessionRef, ShardStats};
use shard::{Shard, ShardCommand};
use subscription::{ShardFrame, Subscription};

/// Offers and answers larger than this are refused (413): real ones are a few KB.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Retransmission buffer per viewer video stream, in packets: ~1 s of a 4 Mbit/s stream. Payloads are shared
/// with every other viewer of the route, so this holds references, not copies.
const SEND_BUFFER_VIDEO: usize = 400;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebRtcError {
    #[error("the SDP offer is not valid: {0}")]
    BadOffer(String),
    #[error("{0}")]
    NoCommonCodec(String),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("no such WebRTC session")]
    SessionNotFound,
    #[error("ICE restarts are not supported: end this session and start a new one")]
    IceRestart,
    #[error("this address already holds {0} WebRTC sessions (`server.limits.webrtc_sessions_per_ip`)")]
    TooManySessions(u32),
    #[error("the WebRTC engine is not running")]
    Unavailable,
}

/// What the HTTP layer returns for a new session.
#[derive(Debug, Clone)]
pub struct Answer {
    pub session_id: String,
    pub sdp: String,
}

/// The handle to the WebRTC engine. Cheap to clone.
#[derive(Clone)]
pub struct WebRtc {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WebRtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtc").field("local", &self.inner.local).finish()
    }
}

struct Inner {
    commands: mpsc::Sender<ShardCommand>,
    frames: mpsc::Sender<ShardFrame>,
    local: SocketAddr,
    candidates: Vec<SocketAddr>,
    cert: DtlsCert,
    subscriptions: Mutex<HashMap<RouteName, std::sync::Weak<Subscription>>>,
    /// WHIP and WHEP sessions per client address; each session holds its place until it ends.
    per_address: Arc<AddressCounts>,
}

impl WebRtc {
    /// Binds the UDP port and starts the shard on its own thread.
    pub fn start(config: &WebrtcConfig) -> std::io::Result<WebRtc> {
        let socket = std::net::UdpSocket::bind(config.udp)?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let candidates = candidates::candidate_addrs(local, &config.public_ips);
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| std::io::Error::other("the crypto provider cannot make a DTLS certificate"))?;
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (frame_tx, frame_rx) = mpsc::channel(1024);
        std::thread::Builder::new().name("webrtc-shard".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(error = %e, "cannot start the WebRTC shard"),
            };
            rt.block_on(async move {
                match UdpSocketFrom::from_std(socket).and_then(udp::UdpIo::new) {
                    Ok(io) => Shard::new(io, cmd_rx, frame_rx).run().await,
                    Err(e) => tracing::error!(error = %e, "cannot start the WebRTC shard"),
                }
            });
        })?;
        tracing::info!(udp = %local, candidates = ?candidates, "WebRTC listening");
        Ok(WebRtc {
            inner: Arc::new(Inner {
                commands: cmd_tx,
                frames: frame_tx,
                local,
                candidates,
                cert,
                subscriptions: Mutex::new(HashMap::new()),
                per_address: Arc::default(),
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Takes a session place for a client address: one client cannot make sessions without end (each costs
    /// memory and a share of the shard). The session created with it gives it back when it ends.
    pub fn reserve(&self, ip: std::net::IpAddr, per_ip: u32) -> Result<AddressSlot, WebRtcError> {
        self.inner.per_address.take(ip, per_ip).ok_or(WebRtcError::TooManySessions(per_ip))
    }

    /// A peer's `Rtc`. `video` limits video to one codec (a publisher's first choice); `None` offers both.
    fn rtc(&self, rtp_mode: bool, video: Option<Codec>, ufrag: &str) -> Rtc {
        let creds = IceCreds { ufrag: ufrag.to_string(), pass: random_hex(12) };
        let mut rtc = RtcConfig::new()
            .set_local_ice_credentials(creds)
            .set_ice_lite(true)
            .set_rtp_mode(rtp_mode)
            .set_dtls_cert(self.inner.cert.clone())
            .clear_codecs()
            .enable_h264(video.is_none_or(|c| c == Codec::H264))
            .enable_vp8(video.is_none_or(|c| c == Codec::Vp8))
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .set_send_buffer_video(SEND_BUFFER_VIDEO)
            .set_stats_interval(Some(std::time::Duration::from_secs(1)))
            .build(Instant::now());
        for addr in &self.inner.candidates {
            if let Ok(c) = Candidate::host(*addr, "udp") {
                rtc.add_local_candidate(c);
            }
        }
        rtc
    }

    /// Answers a WHEP offer: a viewer of `route`.
    pub async fn view(
        &self,
        route: &RouteHandle,
        snapshot: &RouteSnapshot,
        offer: &str,
        remote: Option<SocketAddr>,
        slot: AddressSlot,
    ) -> Result<Answer, WebRtcError> {
        let mids = offered_media(offer)?;
        let remote_ice = IceCredentials::of(offer);
        let offer = parse_offer(offer)?;
        let ufrag = random_hex(4);
        let mut rtc = self.rtc(true, None, &ufrag);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| WebRtcError::BadOffer(e.to_string()))?;
        let now = Instant::now();
        let media = negotiated_media(&rtc, &mids);
        let profile = snapshot.tracks.iter().find(|t| t.codec == Codec::H264).and_then(|t| t.h264_profile_idc);
        let mut video = None;
        let mut audio = None;
        for (mid, kind, direction) in media {
            if !matches!(direction, Direction::SendOnly | Direction::SendRecv) {
                continue;
            }
            let pts = accepted_payload_types(negotiated_params(&rtc, mid).into_iter(), profile);
            match kind {
                MediaKind::Video if video.is_none() => video = Some(Outgoing::new(mid, pts)),
                MediaKind::Audio if audio.is_none() => audio = Some(Outgoing::new(mid, pts)),
                _ => {}
            }
        }
        check_codecs(snapshot, video.as_ref(), audio.as_ref())?;
        let subscription = self.subscribe(route).await?;
        let ticket = route.admit_viewer(subscription.reader).await?;
        let id = session_id();
        let role = Role::Viewer(Viewer { subscription, _ticket: ticket, video, audio, synced: false });
        let session = Session::new(id.clone(), route.name().clone(), rtc, role, ufrag, remote, now);
        self.add(session, remote_ice, slot).await?;
        Ok(Answer { session_id: id, sdp: answer.to_sdp_string() })
    }

    /// Answers a WHIP offer: the publisher of `route` (replacing a current one when `replace`).
    pub async fn publish(
        &self,
        route: &RouteHandle,
        offer: &str,
        remote: Option<SocketAddr>,
        replace: bool,
        slot: AddressSlot,
    ) -> Result<Answer, WebRtcError> {
        let mids = offered_media(offer)?;
        let remote_ice = IceCredentials::of(offer);
        let video = preferred_video_codec(offer);
        let offer = parse_offer(offer)?;
        let ufrag = random_hex(4);
        let mut rtc = self.rtc(false, video, &ufrag);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| WebRtcError::BadOffer(e.to_string()))?;
        let media = negotiated_media(&rtc, &mids);
        let receiving: Vec<_> =
            media.iter().filter(|(_, _, d)| matches!(d, Direction::RecvOnly | Direction::SendRecv)).collect();
        let usable = receiving.iter().any(|(mid, _, _)| {
            negotiated_params(&rtc, *mid).iter().any(|p| publish::route_codec(p.spec().codec).is_some())
        });
        if !usable {
            return Err(WebRtcError::NoCommonCodec(
                "the offer sends no media in a codec the router takes (H.264, VP8, Opus, PCMU, PCMA)".into(),
            ));
        }
        let feed = route.attach_publisher(remote.map(|r| r.to_string()), replace).await?;
        let id = session_id();
        let keyframe_task = {
            let feed = feed.clone();
            let commands = self.inner.commands.clone();
            let id = id.clone();
            tokio::spawn(async move {
                loop {
                    feed.keyframe_requested().await;
                    if commands.send(ShardCommand::KeyframeRequest { id: id.clone() }).await.is_err() {
                        return;
                    }
                }
            })
        };
        let now = Instant::now();
        let role = Role::Publisher(Publisher {
            feed,
            tracks: Default::default(),
            video_mids: receiving.iter().filter(|(_, k, _)| *k == MediaKind::Video).map(|(m, _, _)| *m).collect(),
            announced: Vec::new(),
            keyframe_task: Some(keyframe_task),
        });
        let session = Session::new(id.clone(), route.name().clone(), rtc, role, ufrag, remote, now);
        self.add(session, remote_ice, slot).await?;
        Ok(Answer { session_id: id, sdp: answer.to_sdp_string() })
    }

    /// Hands a new session to the shard, with what its offer said about the peer's ICE credentials (trickle
    /// fragments are compared with them) and its client address's place (given back when the session ends).
    async fn add(
        &self,
        mut session: Session,
        remote_ice: IceCredentials,
        slot: AddressSlot,
    ) -> Result<(), WebRtcError> {
        session.remote_ice = remote_ice;
        session.slot = Some(slot);
        self.inner.commands.send(ShardCommand::Add(Box::new(session))).await.map_err(|_| WebRtcError::Unavailable)
    }

    /// Adds the `a=candidate` lines of a trickle-ICE SDP fragment (RFC 8840) to a session. Fragments carry the
    /// peer's `a=ice-ufrag`/`a=ice-pwd` (RFC 9725 section 4.3.1); only credentials other than the offer's ask for
    /// an ICE restart, which is refused.
    pub async fn trickle(&self, session: SessionRef, fragment: &str) -> Result<(), WebRtcError> {
        let ice = IceCredentials::of(fragment);
        let candidates: Vec<Candidate> = fragment
            .lines()
            .filter_map(|l| l.trim().strip_prefix("a="))
            .filter(|l| l.starts_with("candidate:"))
            .map(|l| Candidate::from_sdp_string(l).map_err(|e| WebRtcError::BadOffer(format!("bad candidate: {e}"))))
            .collect::<Result<_, _>>()?;
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(ShardCommand::Trickle { id: session, ice, candidates, reply })
            .await
            .map_err(|_| WebRtcError::Unavailable)?;
        rx.await.map_err(|_| WebRtcError::Unavailable)?
    }

    /// Ends a session; `false` if there was none.
    pub async fn end(&self, session: SessionRef) -> Result<bool, WebRtcError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(ShardCommand::End { id: session, reply })
            .await
            .map_err(|_| WebRtcError::Unavailable)?;
        rx.await.map_err(|_| WebRtcError::Unavailable)
    }

    /// Sessions and socket counters, for /metrics and the route API.
    pub async fn stats(&self) -> ShardStats {
        let (reply, rx) = oneshot::channel();
        if self.inner.commands.send(ShardCommand::Stats(reply)).await.is_err() {
            return ShardStats::default();
        }
        rx.await.unwrap_or_default()
    }

    /// The route's subscription into the shard, started on its first viewer.
    async fn subscribe(&self, route: &RouteHandle) -> Result<Arc<Subscription>, RouteError> {
        let mut subs = self.inner.subscriptions.lock().await;
        if let Some(sub) = subs.get(route.name()).and_then(std::sync::Weak::upgrade)
            && sub.is_alive()
        {
            return Ok(sub);
        }
        subs.retain(|_, s| s.strong_count() > 0);
        let sub = Subscription::start(route, self.inner.frames.clone()).await?;
        subs.insert(route.name().clone(), Arc::downgrade(&sub));
        Ok(sub)
    }
}

use tokio::net::UdpSocket as UdpSocketFrom;

/// The ICE username fragment and password an SDP offer or trickle fragment carries (the first of each: a bundled
/// session uses one pair for every media section).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
}

impl IceCredentials {
    pub fn of(sdp: &str) -> IceCredentials {
        let value = |key: &str| sdp.lines().find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()));
        IceCredentials { ufrag: value("a=ice-ufrag:"), pwd: value("a=ice-pwd:") }
    }

    /// Whether a trickle fragment carrying `fragment` asks for an ICE restart: a ufrag or password that differs
    /// from the session's. Absent lines change nothing.
    pub fn restarts(&self, fragment: &IceCredentials) -> bool {
        let differs = |ours: &Option<String>, theirs: &Option<String>| theirs.is_some() && theirs != ours;
        differs(&self.ufrag, &fragment.ufrag) || differs(&self.pwd, &fragment.pwd)
    }
}

fn parse_offer(offer: &str) -> Result<SdpOffer, WebRtcError> {
    if !offer.trim_start().starts_with("v=0") {
        return Err(WebRtcError::BadOffer("it does not start with v=0".into()));
    }
    SdpOffer::from_sdp_string(offer).map_err(|_| WebRtcError::BadOffer(sdp_problem(offer)))
}

/// Says in words why an offer did not parse. str0m's parser error is a position in its own memory (e.g.
/// `Parse error at PointerOffset(0x7efe...)`), useless to a client and a leaked heap address, so it is never shown:
/// the offer is checked here for what str0m requires, line by line.
fn sdp_problem(offer: &str) -> String {
    const DIRECTIONS: [&str; 4] = ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"];
    for (n, line) in offer.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let bytes = line.as_bytes();
        if !line.is_empty() && (bytes.len() < 2 || !bytes[0].is_ascii_lowercase() || bytes[1] != b'=') {
            return format!("line {} is not an SDP line of the form `x=value`", n + 1);
        }
    }
    let session: Vec<&str> = offer.lines().map(str::trim).take_while(|l| !l.starts_with("m=")).collect();
    let sections = offer.split("\nm=").skip(1);
    for (i, section) in sections.enumerate() {
        let kind = section.split_whitespace().next().unwrap_or("?");
        let lines: Vec<&str> = section.lines().map(str::trim).collect();
        let has = |prefix: &str| lines.iter().chain(&session).any(|l| l.starts_with(prefix));
        let missing = if !lines.iter().any(|l| DIRECTIONS.iter().any(|d| l.starts_with(d))) {
            Some("a direction attribute (a=sendrecv, a=sendonly, a=recvonly or a=inactive)")
        } else if !has("a=ice-ufrag:") {
            Some("an a=ice-ufrag line")
        } else if !has("a=ice-pwd:") {
            Some("an a=ice-pwd line")
        } else if !has("a=fingerprint:") {
            Some("an a=fingerprint line")
        } else if !has("a=setup:") {
            Some("an a=setup line")
        } else {
            None
        };
        if let Some(missing) = missing {
            return format!("media section {} ({kind}) lacks {missing}", i + 1);
        }
    }
    "it could not be parsed as a WebRTC offer (check the media lines and their attributes)".into()
}

/// The `a=mid` of every audio/video media section of an offer. str0m reports media only once connected, and
/// the answer must already reflect what the route can send.
fn offered_media(offer: &str) -> Result<Vec<Mid>, WebRtcError> {
    let mut mids = Vec::new();
    let mut in_media = false;
    for line in offer.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            in_media = m.starts_with("audio") || m.starts_with("video");
        } else if let Some(mid) = line.strip_prefix("a=mid:")
            && in_media
        {
            mids.push(Mid::from(mid.trim()));
        }
    }
    if mids.is_empty() {
        return Err(WebRtcError::BadOffer("it has no audio or video media sections with an a=mid".into()));
    }
    Ok(mids)
}

/// The publisher's first choice among the video codecs routes carry (SDP lists formats in preference order),
/// so the answer keeps it instead of imposing ours.
fn preferred_video_codec(offer: &str) -> Option<Codec> {
    let mut formats: Vec<&str> = Vec::new();
    let mut in_video = false;
    let mut rtpmap: HashMap<&str, &str> = HashMap::new();
    let mut h264_mode1: Vec<&str> = Vec::new();
    for line in offer.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video");
            if in_video && formats.is_empty() {
                formats = m.split_whitespace().skip(3).collect();
            }
        } else if in_video {
            if let Some(rest) = line.strip_prefix("a=rtpmap:")
                && let Some((pt, codec)) = rest.split_once(' ')
            {
                rtpmap.insert(pt, codec);
            } else if let Some(rest) = line.strip_prefix("a=fmtp:")
                && let Some((pt, params)) = rest.split_once(' ')
                && params.contains("packetization-mode=1")
            {
                h264_mode1.push(pt);
            }
        }
    }
    formats.iter().find_map(|pt| {
        let codec = rtpmap.get(pt)?.split('/').next()?.to_ascii_uppercase();
        match codec.as_str() {
            "H264" if h264_mode1.contains(pt) => Some(Codec::H264),
            "VP8" => Some(Codec::Vp8),
            _ => None,
        }
    })
}

/// The media lines the answer accepted: (mid, kind, our direction).
fn negotiated_media(rtc: &Rtc, mids: &[Mid]) -> Vec<(Mid, MediaKind, Direction)> {
    mids.iter().filter_map(|mid| rtc.media(*mid).map(|m| (*mid, m.kind(), m.direction()))).collect()
}

/// The payload types both sides agreed on for a media line.
fn negotiated_params(rtc: &Rtc, mid: Mid) -> Vec<str0m::format::PayloadParams> {
    let Some(media) = rtc.media(mid) else { return Vec::new() };
    let config = rtc.codec_config().params();
    media.remote_pts().iter().filter_map(|pt| config.iter().find(|p| p.pt() == *pt).copied()).collect()
}

/// A viewer must be able to decode the route's video (or audio, for audio-only routes).
fn check_codecs(
    snapshot: &RouteSnapshot,
    video: Option<&Outgoing>,
    audio: Option<&Outgoing>,
) -> Result<(), WebRtcError> {
    let accepts =
        |out: Option<&Outgoing>, codec: Codec| out.is_some_and(|o| o.payload_types.iter().any(|(c, _)| *c == codec));
    let route_video = snapshot.tracks.iter().find(|t| t.kind == crate::media::MediaKind::Video);
    let route_audio = snapshot.tracks.iter().find(|t| t.kind == crate::media::MediaKind::Audio);
    match (route_video, route_audio) {
        (Some(v), _) if !accepts(video, v.codec) => Err(WebRtcError::NoCommonCodec(format!(
            "the route sends {} video and the offer does not accept it{}",
            v.codec,
            if v.codec == Codec::H264 { " (H.264 with packetization-mode=1)" } else { "" }
        ))),
        (None, Some(a)) if !accepts(audio, a.codec) => Err(WebRtcError::NoCommonCodec(format!(
            "the route sends {} audio and the offer does not accept it",
            a.codec
        ))),
        (None, None)
            if video.is_none_or(|v| v.payload_types.is_empty()) && audio.is_none_or(|a| a.payload_types.is_empty()) =>
        {
            Err(WebRtcError::NoCommonCodec("the offer accepts none of H.264, VP8, Opus, PCMU, PCMA".into()))
        }
        _ => Ok(()),
    }
}

/// 128 random bits, hex: the session URL is the capability to end or update it.
fn session_id() -> String {
    random_hex(16)
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publishers_first_video_codec_wins() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 102 103\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n\
            a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n";
        assert_eq!(preferred_video_codec(offer), Some(Codec::Vp8));
        let h264_first = offer
            .replace("96 102 103", "103 102 96")
            .replace("a=rtpmap:102", "a=rtpmap:103 H264/90000\r\na=rtpmap:102");
        // 103 is H.264 without packetization mode 1: skipped, 102 qualifies.
        assert_eq!(preferred_video_codec(&h264_first), Some(Codec::H264));
        assert_eq!(offered_media(offer).map(|m| m.len()), Ok(1));
    }

    #[test]
    fn only_changed_ice_credentials_are_a_restart() {
        let session = IceCredentials::of("v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n");
        assert_eq!(session.ufrag.as_deref(), Some("abcd"));
        // RFC 8840 fragments repeat the session's credentials beside the candidates.
        let same = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n";
        assert!(!session.restarts(&IceCredentials::of(same)));
        assert!(!session.restarts(&IceCredentials::of("a=candidate:1 1 udp 1 127.0.0.1 5 typ host\r\n")));
        assert!(!session.restarts(&IceCredentials::of("a=ice-ufrag:abcd\r\n")), "ufrag alone, unchanged");
        assert!(session.restarts(&IceCredentials::of("a=ice-ufrag:efgh\r\na=ice-pwd:0123456789abcdef012345\r\n")));
        assert!(session.restarts(&IceCredentials::of("a=ice-ufrag:abcd\r\na=ice-pwd:ffffffffffffffffffffff\r\n")));
    }

    #[test]
    fn unparsable_offers_are_explained_in_words() {
        let good = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\n\
            a=ice-pwd:0123456789abcdef012345\r\na=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\n\
            a=rtcp-mux\r\na=rtpmap:96 H264/90000\r\na=recvonly\r\n";
        let no_direction = good.replace("a=recvonly\r\n", "");
        let Err(WebRtcError::BadOffer(why)) = parse_offer(&no_direction) else { panic!("parsed") };
        assert_eq!(
            why,
            "media section 1 (video) lacks a direction attribute (a=sendrecv, a=sendonly, a=recvonly or a=inactive)"
        );
        assert_eq!(
            sdp_problem(&good.replace("a=setup:actpass\r\n", "")),
            "media section 1 (video) lacks an a=setup line"
        );
        assert_eq!(sdp_problem("v=0\r\nhello\r\n"), "line 2 is not an SDP line of the form `x=value`");
        for garbage in ["v=0\r\nm=\r\n", "v=0\r\n\u{0}\u{1}", &good.replace("96 H264", "x"), &no_direction] {
            if let Err(e) = parse_offer(garbage) {
                assert!(!e.to_string().contains("0x"), "{e}");
            }
        }
    }

    #[test]
    fn offers_without_media_or_version_are_refused() {
        assert_eq!(
            offered_media("v=0\r\n"),
            Err(WebRtcError::BadOffer("it has no audio or video media sections with an a=mid".into()))
        );
        assert!(matches!(parse_offer("hello"), Err(WebRtcError::BadOffer(_))));
    }
}
