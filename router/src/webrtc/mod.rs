//! WebRTC: WHIP publishers and WHEP viewers on one UDP port, with str0m.
//!
//! - [`WebRtc`] is the handle the HTTP API uses: it answers offers (building each peer's `Rtc` on the caller's
//!   task, so SDP work never stalls media), then hands the session to the shard.
//! - [`shard`] is the driver: a thread that owns its sessions and its socket. There is one shard per core by
//!   default, their sockets one SO_REUSEPORT group on the one port ([`udp::bind_group`]). A peer lives on the shard
//!   chosen when its offer is answered (the least loaded), which is coded in its ICE ufrag and session id, so a
//!   datagram the kernel hands another shard is passed on to it ([`shard::AddrTable`]) and a URL finds its shard.
//! - [`session`] is one peer's state machine around str0m's `Rtc` (sans-IO).
//! - A route's frames are made ready for WebRTC once per route, however many viewers on however many shards
//!   ([`subscription`]): RTP payloads (`media::rtp`, through `Frame::rtp`), Opus from AAC, the clock and the GOP
//!   new viewers get; every shard and viewer shares them.
//! - [`depacketize`] turns a publisher's depacketized frames into route frames.
//! - [`sdp`] reads what str0m does not tell us about an offer, and explains offers it cannot parse.
//!
//! What a WHIP offer becomes is `ingest::whip`'s choice, a WHEP offer `egress::whep`'s: both negotiate through
//! [`WebRtc::accept_offer`] and start their session with [`WebRtc::start_session`].
//!
//! Why str0m and not the `webrtc` crate: webrtc binds a UDP socket per connection and runs tasks per peer, while
//! a media server needs every peer on one port (NAT, firewalls) and hundreds of peers driven by each thread.

pub mod candidates;
pub mod depacketize;
pub mod media_clock;
pub mod sdp;
pub mod session;
pub mod shard;
pub mod subscription;
pub mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use str0m::crypto::CryptoProvider;
use str0m::crypto::dtls::DtlsCert;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::config::model::{RouteName, WebrtcConfig};
use crate::connections::{AddressCounts, AddressSlot};
use crate::media::Codec;
use crate::route::{RouteError, RouteHandle, SourceFeed};
pub use sdp::IceCredentials;
use session::{Role, Session};
use shard::{AddrTable, Inbox, Shard, ShardCommand, ShardParts};
pub use shard::{SessionInfo, SessionRef, ShardLoad, ShardStats};
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
    shards: Vec<ShardLink>,
    /// Turns taken breaking ties between equally loaded shards, so a burst of offers spreads.
    turn: AtomicUsize,
    local: SocketAddr,
    candidates: Vec<SocketAddr>,
    provider: Arc<CryptoProvider>,
    cert: DtlsCert,
    subscriptions: Mutex<HashMap<RouteName, std::sync::Weak<Subscription>>>,
    /// WHIP and WHEP sessions per client address; each session holds its place until it ends.
    per_address: Arc<AddressCounts>,
}

/// The way to one shard's thread.
struct ShardLink {
    commands: mpsc::Sender<ShardCommand>,
    frames: mpsc::Sender<ShardFrame>,
    /// Its sessions, counted up here as one is handed over and down by the shard as one ends.
    load: Arc<AtomicUsize>,
}

/// Forwarded datagrams queued for one shard, in batches (one per receive round of the shard passing them on).
const INBOX_BATCHES: usize = 256;

impl WebRtc {
    /// Binds the UDP port (a socket per shard) and starts each shard on its own thread.
    pub fn start(config: &WebrtcConfig) -> std::io::Result<WebRtc> {
        let sockets = udp::bind_group(config.udp, config.shard_count())?;
        let local = sockets.first().ok_or_else(|| std::io::Error::other("no WebRTC socket"))?.local_addr()?;
        let candidates = candidates::candidate_addrs(local, &config.public_ips);
        // OpenSSL by name: str0m prefers its pure-Rust provider whenever a build also carries it (the edge's).
        let provider = Arc::new(str0m_openssl::default_provider());
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| std::io::Error::other("the crypto provider cannot make a DTLS certificate"))?;
        let addrs = Arc::new(AddrTable::default());
        let (inboxes, inbox_rxs): (Vec<_>, Vec<_>) =
            sockets.iter().map(|_| mpsc::channel::<Inbox>(INBOX_BATCHES)).unzip();
        let peers: Arc<[mpsc::Sender<Inbox>]> = inboxes.into();
        let mut shards = Vec::with_capacity(sockets.len());
        for (index, (socket, inbox)) in sockets.into_iter().zip(inbox_rxs).enumerate() {
            let (cmd_tx, commands) = mpsc::channel(1024);
            let (frame_tx, frames) = mpsc::channel(1024);
            let load = Arc::new(AtomicUsize::new(0));
            let parts = ShardParts {
                index,
                commands,
                frames,
                inbox,
                peers: Arc::clone(&peers),
                addrs: Arc::clone(&addrs),
                load: Arc::clone(&load),
            };
            std::thread::Builder::new().name(format!("webrtc-shard-{index}")).spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(error = %e, "cannot start the WebRTC shard"),
                };
                rt.block_on(async move {
                    match UdpSocketFrom::from_std(socket).and_then(udp::UdpIo::new) {
                        Ok(io) => Shard::new(io, parts).run().await,
                        Err(e) => tracing::error!(error = %e, "cannot start the WebRTC shard"),
                    }
                });
            })?;
            shards.push(ShardLink { commands: cmd_tx, frames: frame_tx, load });
        }
        tracing::info!(udp = %local, candidates = ?candidates, shards = shards.len(), "WebRTC listening");
        Ok(WebRtc {
            inner: Arc::new(Inner {
                shards,
                turn: AtomicUsize::new(0),
                local,
                candidates,
                provider,
                cert,
                subscriptions: Mutex::new(HashMap::new()),
                per_address: Arc::default(),
            }),
        })
    }

    /// How many shards the peers are spread over.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The shard a new peer goes to: the one with the fewest sessions, ties taken in turn.
    fn pick_shard(&self) -> usize {
        let n = self.inner.shards.len();
        let first = self.inner.turn.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).map(|i| (first + i) % n).min_by_key(|&i| self.inner.shards[i].load.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// The shard a session id names (its first two hex digits), if there is such a shard.
    fn link(&self, id: &str) -> Option<&ShardLink> {
        self.inner.shards.get(shard_of(id)?)
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
            .set_crypto_provider(self.inner.provider.clone())
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

    /// Accepts an offer into a new peer: `rtp_mode` for viewers (they are sent RTP packetized once per route),
    /// `video` to answer with one video codec only (a publisher's first choice); `None` offers both.
    pub fn accept_offer(&self, offer: &str, rtp_mode: bool, video: Option<Codec>) -> Result<Negotiated, WebRtcError> {
        let mids = sdp::offered_media(offer)?;
        let remote_ice = IceCredentials::of(offer);
        let parsed = sdp::parse_offer(offer)?;
        let shard = self.pick_shard();
        // The shard leads the ufrag: a STUN check reaching another shard's socket names the one to pass it to.
        let ufrag = format!("{shard:02x}{}", random_hex(4));
        let mut rtc = self.rtc(rtp_mode, video, &ufrag);
        let answer = rtc.sdp_api().accept_offer(parsed).map_err(|e| WebRtcError::BadOffer(e.to_string()))?;
        let media = sdp::negotiated_media(&rtc, &mids);
        Ok(Negotiated { rtc, answer: answer.to_sdp_string(), media, shard, ufrag, remote_ice })
    }

    /// Hands a negotiated peer to the shard as a session of `route` in `role`, holding its client address's place
    /// until it ends. Trickle fragments are later compared with the ICE credentials its offer carried.
    pub async fn start_session(
        &self,
        negotiated: Negotiated,
        route: &RouteName,
        mut role: Role,
        remote: Option<SocketAddr>,
        slot: AddressSlot,
    ) -> Result<Answer, WebRtcError> {
        let id = session_id(negotiated.shard);
        let link = self.link(&id).ok_or(WebRtcError::Unavailable)?;
        if let Role::Publisher(p) = &mut role {
            p.keyframe_task = Some(self.forward_keyframe_requests(p.feed.clone(), id.clone()));
        }
        let Negotiated { rtc, answer, ufrag, remote_ice, .. } = negotiated;
        let mut session = Session::new(id.clone(), route.clone(), rtc, role, ufrag, remote, Instant::now());
        session.remote_ice = remote_ice;
        session.slot = Some(slot);
        link.load.fetch_add(1, Ordering::Relaxed);
        if link.commands.send(ShardCommand::Add(Box::new(session))).await.is_err() {
            link.load.fetch_sub(1, Ordering::Relaxed);
            return Err(WebRtcError::Unavailable);
        }
        Ok(Answer { session_id: id, sdp: answer })
    }

    /// Turns the route's keyframe requests (a new viewer, a recorder starting) into PLIs to the publisher.
    fn forward_keyframe_requests(&self, feed: SourceFeed, id: String) -> tokio::task::JoinHandle<()> {
        let commands = self.link(&id).map(|l| l.commands.clone());
        tokio::spawn(async move {
            loop {
                feed.keyframe_requested().await;
                let Some(commands) = &commands else { return };
                if commands.send(ShardCommand::KeyframeRequest { id: id.clone() }).await.is_err() {
                    return;
                }
            }
        })
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
        let link = self.link(&session.id).ok_or(WebRtcError::SessionNotFound)?;
        let (reply, rx) = oneshot::channel();
        link.commands
            .send(ShardCommand::Trickle { id: session, ice, candidates, reply })
            .await
            .map_err(|_| WebRtcError::Unavailable)?;
        rx.await.map_err(|_| WebRtcError::Unavailable)?
    }

    /// Ends a session; `false` if there was none.
    pub async fn end(&self, session: SessionRef) -> Result<bool, WebRtcError> {
        let Some(link) = self.link(&session.id) else { return Ok(false) };
        let (reply, rx) = oneshot::channel();
        link.commands.send(ShardCommand::End { id: session, reply }).await.map_err(|_| WebRtcError::Unavailable)?;
        rx.await.map_err(|_| WebRtcError::Unavailable)
    }

    /// Sessions and socket counters of every shard, for /metrics and the route API.
    pub async fn stats(&self) -> ShardStats {
        let mut all = ShardStats::default();
        for link in &self.inner.shards {
            let (reply, rx) = oneshot::channel();
            if link.commands.send(ShardCommand::Stats(reply)).await.is_err() {
                continue;
            }
            if let Ok(stats) = rx.await {
                all.merge(stats);
            }
        }
        all
    }

    /// The route's subscription into the shard, started on its first viewer.
    pub async fn subscribe(&self, route: &RouteHandle) -> Result<Arc<Subscription>, RouteError> {
        let mut subs = self.inner.subscriptions.lock().await;
        if let Some(sub) = subs.get(route.name()).and_then(std::sync::Weak::upgrade)
            && sub.is_alive()
        {
            return Ok(sub);
        }
        subs.retain(|_, s| s.strong_count() > 0);
        let frames = self.inner.shards.iter().map(|l| l.frames.clone()).collect();
        let sub = Subscription::start(route, frames).await?;
        subs.insert(route.name().clone(), Arc::downgrade(&sub));
        Ok(sub)
    }
}

use tokio::net::UdpSocket as UdpSocketFrom;

/// An offer a new peer accepted: its `Rtc`, holding our answer, and what the offer said.
#[derive(Debug)]
pub struct Negotiated {
    pub rtc: Rtc,
    pub answer: String,
    /// The media lines the answer accepted: (mid, kind, our direction).
    pub media: Vec<(Mid, MediaKind, Direction)>,
    /// The shard the peer will live on.
    pub shard: usize,
    ufrag: String,
    remote_ice: IceCredentials,
}

/// The shard in two hex digits, then 120 random bits, hex: the session URL is the capability to end or update it.
fn session_id(shard: usize) -> String {
    format!("{shard:02x}{}", random_hex(15))
}

/// The shard a session id or one of our ICE ufrags starts with.
pub fn shard_of(id: &str) -> Option<usize> {
    usize::from_str_radix(id.get(..2)?, 16).ok()
}

/// `bytes` random bytes as hex: session ids that are capabilities.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_ufrags_name_their_shard() {
        for shard in [0, 1, 9, 10, 63] {
            let id = session_id(shard);
            assert_eq!(id.len(), 32);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            assert_eq!(shard_of(&id), Some(shard));
        }
        assert_eq!(shard_of("0a1b2c3d"), Some(10));
        assert_eq!(shard_of("zz12"), None);
        assert_eq!(shard_of("1"), None);
        assert_eq!(shard_of("é1"), None);
    }

    #[tokio::test]
    async fn offers_spread_over_shards_by_load() {
        let config = WebrtcConfig {
            udp: "127.0.0.1:0".parse().expect("addr"),
            public_ips: Vec::new(),
            ice_servers: Vec::new(),
            shards: Some(3),
        };
        let webrtc = WebRtc::start(&config).expect("start");
        assert_eq!(webrtc.shard_count(), 3);
        let picks: Vec<usize> = (0..3).map(|_| webrtc.pick_shard()).collect();
        let mut sorted = picks.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2], "equal loads are taken in turn: {picks:?}");
        webrtc.inner.shards[0].load.store(5, Ordering::Relaxed);
        webrtc.inner.shards[2].load.store(1, Ordering::Relaxed);
        assert!((0..4).all(|_| webrtc.pick_shard() == 1), "the least loaded shard");
    }
}
