//! One WebRTC peer: its str0m `Rtc` and what it does for the router (view a route or publish into one).
//!
//! No IO here: the shard feeds packets and time in, and takes the datagrams to send out through `out`.
//! Every mutation of the `Rtc` is followed by [`Session::drain`], str0m's single-mutation invariant.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::format::Codec as WebrtcCodec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::net::Transmit;
use str0m::rtp::RtpWrite;
use str0m::{Event, IceConnectionState, Output, Rtc};

use super::depacketize::PublishedTracks;
use super::subscription::Subscription;
use crate::config::model::RouteName;
use crate::media::Codec;
use crate::media::rtp::RtpFrame;
use crate::route::{FeedError, SourceEvent, SourceFeed, ViewerTicket};

/// A peer that has not connected by then is dropped (it never will: wrong candidates, blocked UDP). Short,
/// because a WHIP publisher that never connects holds its route's publisher slot until then.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleKind {
    Viewer,
    Publisher,
}

/// Per-session counters for /metrics and the route API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionStats {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub packets_sent: u64,
    pub frames_received: u64,
    pub nacks: u64,
    pub plis: u64,
    pub firs: u64,
    /// Fraction lost, as the peer reports it (viewers) or as we measure it (publishers).
    pub loss: Option<f32>,
    pub rtt_ms: Option<f64>,
    /// Frames a publisher sent that the route could not take in time.
    pub frames_dropped: u64,
}

/// What the shard must act on after a session processed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// ICE and DTLS are up: a viewer gets the route's GOP now.
    Connected,
    /// A viewer lost a picture (PLI/FIR): ask the route's source for a keyframe.
    KeyframeWanted,
    /// The peer is gone or broken; remove the session.
    Closed,
}

/// Where a viewer's media line sends, and the payload types the viewer accepted per codec.
#[derive(Debug)]
pub struct Outgoing {
    pub mid: Mid,
    pub payload_types: Vec<(Codec, str0m::format::PayloadParams)>,
    seq: u64,
}

impl Outgoing {
    pub fn new(mid: Mid, payload_types: Vec<(Codec, str0m::format::PayloadParams)>) -> Self {
        // A random start keeps sequence numbers unguessable across sessions (RFC 3550 5.1); below 2^15 so the
        // rollover counter stays 0 for the first half hour at least.
        let mut b = [0u8; 2];
        let _ = getrandom::fill(&mut b);
        Outgoing { mid, payload_types, seq: u64::from(u16::from_be_bytes(b) & 0x7fff) }
    }

    fn pt(&self, codec: Codec) -> Option<str0m::format::PayloadParams> {
        self.payload_types.iter().find(|(c, _)| *c == codec).map(|(_, p)| *p)
    }
}

#[derive(Debug)]
pub struct Viewer {
    pub subscription: Arc<Subscription>,
    pub _ticket: ViewerTicket,
    pub video: Option<Outgoing>,
    pub audio: Option<Outgoing>,
    /// A keyframe went out: video frames before it would not decode, so they are not sent.
    pub synced: bool,
    /// Held while this viewer's audio line takes Opus, so that the route's AAC is transcoded for it.
    _opus: Option<super::subscription::OpusDemand>,
    /// Held for life: the route's frames come to this viewer's shard.
    _shard: super::subscription::ShardDemand,
    /// The number of the last frame the viewer's first burst (the route's GOP) held: frames up to it that reach
    /// the shard afterwards were sent already.
    pub replayed_through: u64,
}

#[derive(Debug)]
pub struct Publisher {
    pub feed: SourceFeed,
    pub tracks: PublishedTracks,
    /// Video media lines, where keyframe requests go.
    pub video_mids: Vec<Mid>,
    /// The tracks last announced to the route.
    pub announced: Vec<Arc<crate::media::Track>>,
    /// Ends the task that turns the route's keyframe requests into shard commands.
    pub keyframe_task: Option<tokio::task::JoinHandle<()>>,
}

impl Viewer {
    /// A viewer of the route `subscription` brings into `shard`, sending on the media lines it accepted.
    pub fn new(
        subscription: Arc<Subscription>,
        ticket: ViewerTicket,
        video: Option<Outgoing>,
        audio: Option<Outgoing>,
        shard: usize,
    ) -> Viewer {
        let opus = audio.as_ref().and_then(|a| a.pt(Codec::Opus)).map(|_| subscription.demand_opus());
        let demand = subscription.attach(shard);
        Viewer {
            subscription,
            _ticket: ticket,
            video,
            audio,
            synced: false,
            _opus: opus,
            _shard: demand,
            replayed_through: 0,
        }
    }
}

impl Publisher {
    /// A publisher feeding `feed`, whose video arrives on `video_mids`.
    pub fn new(feed: SourceFeed, video_mids: Vec<Mid>) -> Publisher {
        Publisher { feed, tracks: PublishedTracks::default(), video_mids, announced: Vec::new(), keyframe_task: None }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(task) = &self.keyframe_task {
            task.abort();
        }
    }
}

#[derive(Debug)]
pub enum Role {
    Viewer(Viewer),
    Publisher(Publisher),
}

#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub route: RouteName,
    pub rtc: Rtc,
    pub role: Role,
    pub created: Instant,
    pub connected_at: Option<Instant>,
    pub stats: SessionStats,
    pub next_timeout: Instant,
    /// The peer's media address once known (the HTTP client address until then).
    pub remote: Option<std::net::SocketAddr>,
    /// Our ICE username fragment: how the shard finds this session for a STUN check from a new address.
    pub ufrag: String,
    /// Addresses the shard routes to this session.
    pub addrs: Vec<std::net::SocketAddr>,
    /// Remote candidates added by trickle ICE (capped).
    pub remote_candidates: usize,
    /// The peer's ICE credentials from its offer: trickle fragments repeat them; others would be a restart.
    pub remote_ice: super::IceCredentials,
    /// Set once the connect timeout has closed the session, so it is said once.
    timed_out: bool,
    /// The client address's place among its sessions (`server.limits.webrtc_sessions_per_ip`), held for life.
    pub slot: Option<crate::connections::AddressSlot>,
    /// Per media line (packets, nacks), summed into `stats`.
    pub egress: std::collections::HashMap<Mid, (u64, u64)>,
}

impl Session {
    /// A session that has answered its offer and waits for the peer to connect.
    pub fn new(
        id: String,
        route: RouteName,
        rtc: Rtc,
        role: Role,
        ufrag: String,
        remote: Option<std::net::SocketAddr>,
        now: Instant,
    ) -> Session {
        Session {
            id,
            route,
            rtc,
            role,
            created: now,
            connected_at: None,
            stats: SessionStats::default(),
            next_timeout: now,
            remote,
            ufrag,
            addrs: Vec::new(),
            remote_candidates: 0,
            remote_ice: super::IceCredentials::default(),
            timed_out: false,
            slot: None,
            egress: std::collections::HashMap::new(),
        }
    }

    /// The last route frame a viewer was sent in its first burst; publishers are sent none.
    pub fn replayed_through(&self) -> u64 {
        match &self.role {
            Role::Viewer(v) => v.replayed_through,
            Role::Publisher(_) => u64::MAX,
        }
    }

    pub fn kind(&self) -> RoleKind {
        match self.role {
            Role::Viewer(_) => RoleKind::Viewer,
            Role::Publisher(_) => RoleKind::Publisher,
        }
    }

    /// Polls str0m until it has nothing more to say; datagrams go to `out`, what the shard must do to `events`.
    pub fn drain(&mut self, now: Instant, out: &mut dyn FnMut(Transmit), events: &mut Vec<SessionEvent>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    self.stats.bytes_sent += t.contents.len() as u64;
                    out(t);
                }
                Ok(Output::Event(e)) => self.handle_event(e, now, events),
                Err(e) => {
                    tracing::debug!(session = %self.id, error = %e, "session failed");
                    events.push(SessionEvent::Closed);
                    self.next_timeout = now + Duration::from_secs(3600);
                    break;
                }
            }
        }
        if !self.rtc.is_alive() {
            events.push(SessionEvent::Closed);
        }
        if self.connected_at.is_none() && now.duration_since(self.created) > CONNECT_TIMEOUT && !self.timed_out {
            self.timed_out = true;
            tracing::info!(session = %self.id, route = %self.route, "peer never connected; dropping the session");
            events.push(SessionEvent::Closed);
        }
    }

    fn handle_event(&mut self, event: Event, now: Instant, events: &mut Vec<SessionEvent>) {
        match event {
            Event::Connected => {
                self.connected_at = Some(now);
                tracing::info!(session = %self.id, route = %self.route, role = ?self.kind(),
                    setup_ms = now.duration_since(self.created).as_millis() as u64, "WebRTC peer connected");
                events.push(SessionEvent::Connected);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                tracing::info!(session = %self.id, route = %self.route, "WebRTC peer disconnected");
                events.push(SessionEvent::Closed);
            }
            Event::MediaAdded(added) => {
                if let Role::Publisher(p) = &mut self.role
                    && added.kind == MediaKind::Video
                    && !p.video_mids.contains(&added.mid)
                {
                    p.video_mids.push(added.mid);
                }
            }
            Event::MediaData(data) => {
                self.stats.frames_received += 1;
                self.stats.bytes_received += data.data.len() as u64;
                if let Role::Publisher(p) = &mut self.role {
                    let codec = data.params.spec().codec;
                    if let Some(frame) = p.tracks.frame(data.mid, codec, data.time.numer(), &data.data) {
                        // Announce again whenever a track changed (a new Arc: SPS/PPS arrived or changed).
                        let tracks = p.tracks.tracks();
                        let same = tracks.len() == p.announced.len()
                            && tracks.iter().zip(&p.announced).all(|(a, b)| Arc::ptr_eq(a, b));
                        if !same && p.feed.try_send(SourceEvent::Tracks(tracks.clone())).is_ok() {
                            p.announced = tracks;
                        }
                        match p.feed.try_send(SourceEvent::Frame(frame)) {
                            Ok(()) => {}
                            Err(FeedError::Full) => self.stats.frames_dropped += 1,
                            Err(FeedError::Closed) => events.push(SessionEvent::Closed),
                        }
                    }
                }
            }
            Event::KeyframeRequest(req) => {
                match req.kind {
                    KeyframeRequestKind::Pli => self.stats.plis += 1,
                    KeyframeRequestKind::Fir => self.stats.firs += 1,
                }
                events.push(SessionEvent::KeyframeWanted);
            }
            Event::PeerStats(s) => {
                self.stats.rtt_ms = s.rtt.map(|d| d.as_secs_f64() * 1000.0);
            }
            Event::MediaEgressStats(s) => {
                // Cumulative per media line: keep each line's latest and sum them.
                self.egress.insert(s.mid, (s.packets, s.nacks));
                self.stats.packets_sent = self.egress.values().map(|v| v.0).sum();
                self.stats.nacks = self.egress.values().map(|v| v.1).sum();
                if let Some(loss) = s.loss {
                    self.stats.loss = Some(loss);
                }
            }
            Event::MediaIngressStats(s) => {
                self.egress.insert(s.mid, (0, s.nacks));
                self.stats.nacks = self.egress.values().map(|v| v.1).sum();
                if let Some(loss) = s.loss {
                    self.stats.loss = Some(loss);
                }
            }
            _ => {}
        }
    }

    /// Sends one route frame to a viewer, returning whether it did: not for publishers, unconnected viewers,
    /// codecs the viewer did not accept, or video before the first keyframe.
    /// `wallclock` is the frame's time on the router's clock (the route's `MediaClock`): sender reports map RTP time
    /// to it, and a browser plays audio and video in step by those reports.
    pub fn send_frame(
        &mut self,
        frame: &RtpFrame,
        wallclock: Instant,
        now: Instant,
        out: &mut dyn FnMut(Transmit),
        events: &mut Vec<SessionEvent>,
    ) -> bool {
        if self.connected_at.is_none() {
            return false;
        }
        let Role::Viewer(viewer) = &mut self.role else { return false };
        let is_video = matches!(frame.codec, Codec::H264 | Codec::Vp8 | Codec::H265);
        if is_video {
            if !viewer.synced && !frame.keyframe {
                return false;
            }
            viewer.synced = true;
        }
        let track = if is_video { viewer.video.as_mut() } else { viewer.audio.as_mut() };
        let Some(track) = track else { return false };
        let Some(params) = track.pt(frame.codec) else { return false };
        let mid = track.mid;
        let first_seq = track.seq;
        track.seq += frame.payloads.len() as u64;
        for (i, payload) in frame.payloads.iter().enumerate() {
            let seq = first_seq + i as u64;
            let write = RtpWrite::new(params.pt(), seq.into(), frame.timestamp, wallclock, Arc::clone(&payload.data))
                .marker(payload.marker)
                .nackable(is_video);
            match self.rtc.direct_api().stream_tx_by_mid(mid, None) {
                Some(stream) => stream.write_rtp(write),
                None => return false,
            }
            self.drain(now, out, events);
        }
        true
    }

    /// Asks a publisher for a keyframe on every video line.
    pub fn request_keyframe(&mut self, now: Instant, out: &mut dyn FnMut(Transmit), events: &mut Vec<SessionEvent>) {
        let Role::Publisher(p) = &self.role else { return };
        for mid in p.video_mids.clone() {
            if let Some(mut writer) = self.rtc.writer(mid)
                && writer.is_request_keyframe_possible(KeyframeRequestKind::Pli)
            {
                let _ = writer.request_keyframe(None, KeyframeRequestKind::Pli);
                self.drain(now, out, events);
            }
        }
    }
}

/// The payload types a viewer's media line accepted, per route codec, preferring H.264 packetization mode 1 with
/// the route's profile.
pub fn accepted_payload_types(
    params: impl Iterator<Item = str0m::format::PayloadParams>,
    h264_profile_idc: Option<u8>,
) -> Vec<(Codec, str0m::format::PayloadParams)> {
    let mut out: Vec<(Codec, str0m::format::PayloadParams)> = Vec::new();
    let mut h264: Vec<str0m::format::PayloadParams> = Vec::new();
    for p in params {
        let spec = p.spec();
        match spec.codec {
            WebrtcCodec::H264 if spec.format.packetization_mode == Some(1) => h264.push(p),
            codec => {
                if let Some((c, _)) = super::depacketize::route_codec(codec)
                    && c != Codec::H264
                    && !out.iter().any(|(x, _)| *x == c)
                {
                    out.push((c, p));
                }
            }
        }
    }
    let profile_of = |p: &str0m::format::PayloadParams| p.spec().format.profile_level_id.map(|id| (id >> 16) as u8);
    // Constrained Baseline (66) < Main (77) < High (100): a decoder of a higher profile decodes the lower ones.
    // When the viewer lists nothing at or above the route's profile, still send: browsers decode High even when
    // they only advertise Baseline/Main (Chromium's software decoder does), and OBS/ffmpeg publish High.
    let rank = |idc: u8| match idc {
        66 => 0,
        77 => 1,
        _ => 2,
    };
    let best = match h264_profile_idc {
        Some(route) => h264
            .iter()
            .find(|p| profile_of(p) == Some(route))
            .or_else(|| h264.iter().find(|p| profile_of(p).is_some_and(|v| rank(v) >= rank(route))))
            .or_else(|| h264.iter().max_by_key(|p| profile_of(p).map(rank))),
        None => h264.first(),
    };
    if let Some(p) = best {
        out.push((Codec::H264, *p));
    }
    out
}
