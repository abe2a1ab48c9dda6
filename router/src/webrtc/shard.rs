//! The WebRTC driver: one UDP socket, every peer, one thread.
//!
//! Owns the socket and all [`Session`]s; nothing else touches either. Three inputs wake it: datagrams (routed to
//! the session whose ICE/DTLS state accepts them, then remembered by source address), frames of subscribed
//! routes (their RTP form made once per frame, written to each viewer), and commands (new session, trickle, end, stats). Timers are
//! one ordered set of (deadline, session), so a wake costs O(log n), not a scan of every peer.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Input};
use tokio::sync::{mpsc, oneshot};

use super::WebRtcError;
use super::session::{Role, RoleKind, Session, SessionEvent, SessionStats};
use super::subscription::{ShardFrame, Subscription};
use super::udp::{Received, UdpIo, recv_buffers};
use crate::media::{Codec, Frame, MediaKind};
use crate::route::gop::{GopCache, GopLimits};

/// Receive calls (each up to 32 datagrams) per wake before looking at other inputs, so a flood cannot starve
/// timers or frames.
const RECV_ROUNDS: usize = 4;
/// Route frames handled per wake.
const FRAME_BATCH: usize = 16;
/// What a newly connected viewer is sent at once: the route's frames since its last keyframe, at most 800 frames
/// and what a viewer can take in one burst without overflowing socket buffers (~4 s of a 4 Mbit/s stream).
/// Longer GOPs (browsers publishing without periodic keyframes) make new viewers ask the publisher for a keyframe
/// instead.
const REPLAY_LIMITS: GopLimits = GopLimits { max_frames: 800, max_bytes: 2 << 20 };

/// A session as its URL names it: `/{route}/{whip|whep}/{id}`.
#[derive(Debug, Clone)]
pub struct SessionRef {
    pub route: String,
    pub role: RoleKind,
    pub id: String,
}

/// Remote candidates one session may add by trickle ICE; every one costs connectivity checks.
const MAX_REMOTE_CANDIDATES: usize = 20;

#[derive(Debug)]
pub enum ShardCommand {
    Add(Box<Session>),
    Trickle {
        id: SessionRef,
        ice: super::IceCredentials,
        candidates: Vec<Candidate>,
        reply: oneshot::Sender<Result<(), WebRtcError>>,
    },
    End {
        id: SessionRef,
        reply: oneshot::Sender<bool>,
    },
    KeyframeRequest {
        id: String,
    },
    Stats(oneshot::Sender<ShardStats>),
}

/// Upper bounds (seconds) of the frame latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1];

/// How long frames took from arriving at the router (last packet in) to their first packet leaving for a WHEP
/// viewer: the latency the router adds. Cumulative counts per bucket, as Prometheus histograms want them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LatencyHistogram {
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    pub fn record(&mut self, seconds: f64) {
        for (bucket, le) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= le {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }
}

/// The shard's sessions and socket counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShardStats {
    pub frame_latency: LatencyHistogram,
    pub sessions: Vec<SessionInfo>,
    pub datagrams_sent: u64,
    /// Send system calls: fewer than datagrams when GSO batches them.
    pub send_calls: u64,
    /// Datagrams dropped because the socket buffer was full.
    pub send_errors: u64,
}

/// A session as /metrics and the API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub id: String,
    pub route: String,
    pub role: RoleKind,
    pub remote: Option<SocketAddr>,
    pub connected: bool,
    pub age_seconds: f64,
    #[serde(flatten)]
    pub stats: SessionStats,
}

type Key = u64;

/// A route's viewers in this shard, and the route's frames since its last keyframe for viewers that connect
/// later: the route's own GOP cache type over the same `Arc<Frame>`s, kept here, on the shard's thread, so a
/// replay is in order with the frames the shard has sent (their RTP forms are the frames', made once).
#[derive(Debug)]
struct Fanout {
    viewers: Vec<Key>,
    gop: GopCache,
    clock: MediaClock,
}

impl Default for Fanout {
    fn default() -> Fanout {
        Fanout { viewers: Vec::new(), gop: GopCache::new(REPLAY_LIMITS), clock: MediaClock::default() }
    }
}

/// A route's timeline on the router's clock: the wall-clock time sender reports give each frame. One origin for
/// all the route's tracks, so a browser lines audio up with video as the source timestamped them, not as their
/// frames happened to arrive (an AAC encoder's delay, a muxer's interleaving, the transcoder's 20 ms packets).
#[derive(Debug, Default)]
struct MediaClock {
    /// An instant and the route time (seconds) it corresponds to.
    origin: Option<(Instant, f64)>,
}

impl MediaClock {
    /// Further behind its arrival than this, a frame's route time is taken as a new start (a source that stalled or
    /// restarted): the origin moves up to it.
    const MAX_LAG: Duration = Duration::from_secs(1);

    /// A frame's time without moving the origin, for replays of frames already dated once (never after `now`).
    fn peek(&self, frame: &Frame, now: Instant) -> Instant {
        let Some(origin) = self.origin else { return frame.received.min(now) };
        Self::on_clock(origin, Self::route_secs(frame)).unwrap_or(frame.received).min(now)
    }

    /// A frame's time on the route's timeline, in seconds.
    fn route_secs(frame: &Frame) -> f64 {
        frame.pts as f64 / f64::from(frame.track.clock_rate.max(1))
    }

    /// Route time `secs` as an instant, from `origin`; `None` when out of the clock's range.
    fn on_clock((at, origin): (Instant, f64), secs: f64) -> Option<Instant> {
        let offset = secs - origin;
        if offset >= 0.0 {
            at.checked_add(Duration::from_secs_f64(offset.min(1e9)))
        } else {
            at.checked_sub(Duration::from_secs_f64((-offset).min(1e9)))
        }
    }

    fn wallclock(&mut self, frame: &Frame, now: Instant) -> Instant {
        let secs = Self::route_secs(frame);
        let received = frame.received.min(now);
        let Some((at, origin)) = self.origin else {
            self.origin = Some((received, secs));
            return received;
        };
        match Self::on_clock((at, origin), secs) {
            // Ahead of now (a source clock running fast, a reordered frame): the origin moves back for every
            // track alike, since reports must not be dated in the future.
            Some(w) if w > now => {
                self.origin = Some((at.checked_sub(w - now).unwrap_or(at), origin));
                now
            }
            Some(w) if received.duration_since(w) <= Self::MAX_LAG => w,
            _ => {
                self.origin = Some((received, secs));
                received
            }
        }
    }
}

#[derive(Debug)]
pub struct Shard {
    io: UdpIo,
    recv_bufs: Vec<Vec<u8>>,
    commands: mpsc::Receiver<ShardCommand>,
    frames: mpsc::Receiver<ShardFrame>,
    sessions: HashMap<Key, Session>,
    ids: HashMap<String, Key>,
    by_addr: HashMap<SocketAddr, Key>,
    by_ufrag: HashMap<String, Key>,
    timers: BTreeSet<(Instant, Key)>,
    fanouts: HashMap<crate::config::model::RouteName, Fanout>,
    next_key: Key,
    latency: LatencyHistogram,
}

impl Shard {
    pub fn new(io: UdpIo, commands: mpsc::Receiver<ShardCommand>, frames: mpsc::Receiver<ShardFrame>) -> Shard {
        Shard {
            io,
            recv_bufs: recv_buffers(),
            commands,
            frames,
            sessions: HashMap::new(),
            ids: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            timers: BTreeSet::new(),
            fanouts: HashMap::new(),
            next_key: 1,
            latency: LatencyHistogram::default(),
        }
    }

    pub async fn run(mut self) {
        let mut received = Vec::with_capacity(128);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        loop {
            let deadline =
                self.timers.first().map(|(t, _)| *t).unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.handle_command(cmd),
                    None => return,
                },
                r = self.io.readable() => {
                    if r.is_ok() {
                        self.receive(&mut received);
                    }
                    // A busy socket must not starve timers (RTCP, NACK, consent) or route frames.
                    self.handle_timeouts();
                    self.handle_frame_batch();
                }
                f = self.frames.recv() => {
                    if let Some((sub, frame)) = f {
                        self.handle_frame(&sub, &frame);
                    }
                    self.handle_frame_batch();
                }
                _ = tokio::time::sleep_until(deadline.into()) => self.handle_timeouts(),
                _ = housekeeping.tick() => self.end_viewers_of_ended_routes(),
            }
        }
    }

    fn handle_command(&mut self, cmd: ShardCommand) {
        let now = Instant::now();
        match cmd {
            ShardCommand::Add(session) => {
                let key = self.next_key;
                self.next_key += 1;
                if let Role::Viewer(v) = &session.role {
                    self.fanouts.entry(v.subscription.name.clone()).or_default().viewers.push(key);
                }
                self.ids.insert(session.id.clone(), key);
                self.by_ufrag.insert(session.ufrag.clone(), key);
                self.sessions.insert(key, *session);
                self.with_session(key, now, |s, out, ev| s.drain(now, out, ev));
            }
            ShardCommand::Trickle { id, ice, candidates, reply } => {
                let result = match self.lookup(&id) {
                    Some(key) if self.sessions.get(&key).is_some_and(|s| s.remote_ice.restarts(&ice)) => {
                        Err(WebRtcError::IceRestart)
                    }
                    Some(key)
                        if self
                            .sessions
                            .get(&key)
                            .is_some_and(|s| s.remote_candidates + candidates.len() > MAX_REMOTE_CANDIDATES) =>
                    {
                        Err(WebRtcError::BadOffer(format!(
                            "more than {MAX_REMOTE_CANDIDATES} remote candidates for one session"
                        )))
                    }
                    Some(key) => {
                        if let Some(s) = self.sessions.get_mut(&key) {
                            s.remote_candidates += candidates.len();
                        }
                        for c in candidates {
                            self.with_session(key, now, |s, out, ev| {
                                s.rtc.add_remote_candidate(c);
                                s.drain(now, out, ev);
                            });
                        }
                        Ok(())
                    }
                    None => Err(WebRtcError::SessionNotFound),
                };
                let _ = reply.send(result);
            }
            ShardCommand::End { id, reply } => {
                let found = self.lookup(&id);
                if let Some(key) = found {
                    self.remove(key, "ended by DELETE");
                }
                let _ = reply.send(found.is_some());
            }
            ShardCommand::KeyframeRequest { id } => {
                if let Some(key) = self.ids.get(&id).copied() {
                    self.with_session(key, now, |s, out, ev| s.request_keyframe(now, out, ev));
                }
            }
            ShardCommand::Stats(reply) => {
                let sessions = self
                    .sessions
                    .values()
                    .map(|s| SessionInfo {
                        id: s.id.clone(),
                        route: s.route.to_string(),
                        role: s.kind(),
                        remote: s.remote,
                        connected: s.connected_at.is_some(),
                        age_seconds: now.duration_since(s.created).as_secs_f64(),
                        stats: s.stats.clone(),
                    })
                    .collect();
                let _ = reply.send(ShardStats {
                    frame_latency: self.latency.clone(),
                    sessions,
                    datagrams_sent: self.io.datagrams_sent,
                    send_calls: self.io.send_calls,
                    send_errors: self.io.send_errors,
                });
            }
        }
    }

    /// Reads and handles what the socket holds, a bounded number of rounds.
    fn receive(&mut self, received: &mut Vec<Received>) {
        let mut bufs = std::mem::take(&mut self.recv_bufs);
        for _ in 0..RECV_ROUNDS {
            received.clear();
            if self.io.try_recv(&mut bufs, received).is_err() {
                break;
            }
            for r in received.iter() {
                self.handle_datagram(&bufs[r.slot][r.offset..r.offset + r.len], r.source, r.destination);
            }
        }
        self.recv_bufs = bufs;
    }

    /// The session a URL names, if the route and role in the URL are its own.
    fn lookup(&self, r: &SessionRef) -> Option<Key> {
        let key = *self.ids.get(&r.id)?;
        let s = self.sessions.get(&key)?;
        (s.route.as_str() == r.route && s.kind() == r.role).then_some(key)
    }

    fn handle_datagram(&mut self, data: &[u8], source: SocketAddr, destination: SocketAddr) {
        let now = Instant::now();
        let Ok(contents) = data.try_into() else { return };
        let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination, contents });
        let known = self.by_addr.get(&source).copied().filter(|k| {
            // A STUN check from a known address for another session (a peer reusing a port) re-points it.
            self.sessions.get(k).is_some_and(|s| s.rtc.accepts(&input))
        });
        let key = match known {
            Some(k) => k,
            None => {
                // A new address: only a STUN check naming one of our sessions' ICE username can open it; anything
                // else from an unknown address is dropped without touching any session.
                let Some(k) = stun_local_ufrag(data).and_then(|u| self.by_ufrag.get(u)).copied() else { return };
                if !self.sessions.get(&k).is_some_and(|s| s.rtc.accepts(&input)) {
                    return;
                }
                self.by_addr.insert(source, k);
                if let Some(s) = self.sessions.get_mut(&k) {
                    s.addrs.push(source);
                    s.remote = Some(source);
                }
                k
            }
        };
        self.with_session(key, now, |s, out, ev| {
            if let Err(e) = s.rtc.handle_input(input) {
                tracing::debug!(session = %s.id, error = %e, "bad input from peer");
            }
            s.drain(now, out, ev);
        });
    }

    fn handle_frame_batch(&mut self) {
        for _ in 0..FRAME_BATCH {
            match self.frames.try_recv() {
                Ok((sub, frame)) => self.handle_frame(&sub, &frame),
                Err(_) => break,
            }
        }
    }

    fn handle_frame(&mut self, sub: &Arc<Subscription>, frame: &Arc<Frame>) {
        let Some(fanout) = self.fanouts.get_mut(&sub.name) else { return };
        // Codecs WebRTC cannot carry (AAC, H.265) are neither packetized here nor kept for new viewers.
        if !matches!(frame.track.codec, Codec::H264 | Codec::Vp8 | Codec::Opus | Codec::Pcmu | Codec::Pcma) {
            return;
        }
        let Some(rtp) = frame.rtp().cloned() else { return };
        // The GOP starts at a video keyframe; audio-only routes keep none (every audio frame stands alone). One
        // too long to replay is dropped: new viewers then wait for (and ask for) a keyframe.
        fanout.gop.push(frame, frame.kind() == MediaKind::Video && frame.keyframe);
        let now = Instant::now();
        let wallclock = fanout.clock.wallclock(frame, now);
        let mut measured = false;
        for i in 0..fanout.viewers.len() {
            let Some(key) = self.fanouts.get(&sub.name).and_then(|f| f.viewers.get(i)).copied() else { break };
            let mut sent = false;
            self.with_session(key, now, |s, out, ev| sent = s.send_frame(&rtp, wallclock, now, out, ev));
            if sent && !measured {
                // Once per frame: its first packets are in the kernel now.
                measured = true;
                self.latency.record(frame.received.elapsed().as_secs_f64());
            }
        }
    }

    fn handle_timeouts(&mut self) {
        let now = Instant::now();
        // Collect first: a session may ask to be woken at `now` again, which belongs to the next wake.
        let mut due = Vec::new();
        while let Some(&(t, key)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            due.push(key);
        }
        for key in due {
            self.with_session(key, now, |s, out, ev| {
                if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(session = %s.id, error = %e, "timeout handling failed");
                }
                s.drain(now, out, ev);
            });
        }
    }

    /// Runs `f` on a session, sends what it produced, reschedules its timer, and acts on its events.
    fn with_session(
        &mut self,
        key: Key,
        now: Instant,
        f: impl FnOnce(&mut Session, &mut dyn FnMut(Transmit), &mut Vec<SessionEvent>),
    ) {
        let Some(session) = self.sessions.get_mut(&key) else { return };
        let before = session.next_timeout;
        let mut events = Vec::new();
        let io = &mut self.io;
        let mut out = |t: Transmit| io.send(t.destination, t.source, &t.contents);
        f(session, &mut out, &mut events);
        self.io.flush();
        let after = session.next_timeout;
        if before != after || !self.timers.contains(&(after, key)) {
            self.timers.remove(&(before, key));
            self.timers.insert((after, key));
        }
        for event in events {
            self.handle_event(key, event, now);
        }
    }

    fn handle_event(&mut self, key: Key, event: SessionEvent, now: Instant) {
        match event {
            SessionEvent::Closed => self.remove(key, "peer gone"),
            SessionEvent::KeyframeWanted => {
                if let Some(Session { role: Role::Viewer(v), .. }) = self.sessions.get(&key) {
                    v.subscription.route.request_keyframe();
                }
            }
            SessionEvent::Connected => {
                let Some(Session { role: Role::Viewer(v), .. }) = self.sessions.get(&key) else { return };
                let route = v.subscription.name.clone();
                let gop = self.fanouts.get(&route).map(|f| f.gop.frames().to_vec()).unwrap_or_default();
                if gop.is_empty() {
                    v.subscription.route.request_keyframe();
                }
                let Some(fanout) = self.fanouts.get(&route) else { return };
                let wallclocks: Vec<Instant> = gop.iter().map(|f| fanout.clock.peek(f, now)).collect();
                for (frame, wallclock) in gop.iter().zip(wallclocks) {
                    let Some(rtp) = frame.rtp() else { continue };
                    self.with_session(key, now, |s, out, ev| {
                        s.send_frame(rtp, wallclock, now, out, ev);
                    });
                }
            }
        }
    }

    /// A route that ended (removed by a reload) ends its viewers' and publisher's sessions.
    fn end_viewers_of_ended_routes(&mut self) {
        let ended: Vec<Key> = self
            .sessions
            .iter()
            .filter(|(_, s)| match &s.role {
                Role::Viewer(v) => !v.subscription.is_alive(),
                Role::Publisher(p) => p.feed.is_closed(),
            })
            .map(|(k, _)| *k)
            .collect();
        for key in ended {
            self.remove(key, "route ended");
        }
    }

    fn remove(&mut self, key: Key, why: &str) {
        // Tell the peer (RTCP BYE, DTLS close_notify) so it does not wait for an ICE timeout to notice.
        self.with_session(key, Instant::now(), |s, out, _| {
            let _ = s.rtc.close();
            s.drain(Instant::now(), out, &mut Vec::new());
        });
        let Some(session) = self.sessions.remove(&key) else { return };
        // A publisher that went without ending its session (no DELETE): the route records it, so the publish
        // counts as failed rather than finished.
        if why == "peer gone"
            && let Role::Publisher(p) = &session.role
        {
            let error = "the WHIP publisher went without ending its session (ICE or DTLS lost)".to_string();
            let _ = p.feed.try_send(crate::route::SourceEvent::Problem { error });
        }
        self.timers.remove(&(session.next_timeout, key));
        self.ids.remove(&session.id);
        self.by_ufrag.remove(&session.ufrag);
        for addr in &session.addrs {
            if self.by_addr.get(addr) == Some(&key) {
                self.by_addr.remove(addr);
            }
        }
        if let Role::Viewer(v) = &session.role
            && let Some(fanout) = self.fanouts.get_mut(&v.subscription.name)
        {
            fanout.viewers.retain(|k| *k != key);
            if fanout.viewers.is_empty() {
                self.fanouts.remove(&v.subscription.name);
            }
        }
        tracing::info!(session = %session.id, route = %session.route, role = ?session.kind(), why, "WebRTC session ended");
    }
}

/// The local (our) ufrag of a STUN binding request: its USERNAME attribute is "ourufrag:theirufrag" (RFC 8445
/// 7.2.2). `None` for anything that is not STUN.
pub fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    // STUN: first two bits zero, magic cookie 0x2112A442 at bytes 4..8 (RFC 5389 6).
    if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let mut attrs = &data[20..];
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([attrs[0], attrs[1]]);
        let len = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + len)?;
        if kind == 0x0006 {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        attrs = attrs.get(4 + len.div_ceil(4) * 4..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_username_gives_our_ufrag() {
        let mut msg = vec![0x00, 0x01, 0x00, 0x10, 0x21, 0x12, 0xa4, 0x42];
        msg.extend_from_slice(&[7u8; 12]);
        msg.extend_from_slice(&[0x00, 0x06, 0x00, 0x09]);
        msg.extend_from_slice(b"abcd:wxyz\0\0\0");
        assert_eq!(stun_local_ufrag(&msg), Some("abcd"));
        assert_eq!(stun_local_ufrag(&msg[..30]), None, "truncated");
        assert_eq!(stun_local_ufrag(b"\x80\x60 this is RTP, not STUN......"), None);
        assert_eq!(stun_local_ufrag(&[]), None);
    }
}
