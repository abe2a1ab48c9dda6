//! The WebRTC driver: one UDP socket, every peer, one thread.
//!
//! Owns the socket and all [`Session`]s; nothing else touches either. Three inputs wake it: datagrams (routed to
//! the session whose ICE/DTLS state accepts them, then remembered by source address), frames of subscribed
//! routes (packetized once, written to each viewer), and commands (new session, trickle, end, stats). Timers are
//! one ordered set of (deadline, session), so a wake costs O(log n), not a scan of every peer.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Input};
use tokio::sync::{mpsc, oneshot};

use super::WebRtcError;
use super::packetize::{RtpFrame, packetize};
use super::session::{Role, RoleKind, Session, SessionEvent, SessionStats};
use super::subscription::{ShardFrame, Subscription};
use super::udp::{Received, UdpIo, recv_buffers};
use crate::media::MediaKind;

/// Receive calls (each up to 32 datagrams) per wake before looking at other inputs, so a flood cannot starve
/// timers or frames.
const RECV_ROUNDS: usize = 4;
/// Route frames handled per wake.
const FRAME_BATCH: usize = 16;
/// A route's packetized GOP is capped like the route's own GOP cache.
const MAX_GOP_FRAMES: usize = 800;

#[derive(Debug)]
pub enum ShardCommand {
    Add(Box<Session>),
    Trickle { id: String, candidates: Vec<Candidate>, reply: oneshot::Sender<Result<(), WebRtcError>> },
    End { id: String, reply: oneshot::Sender<bool> },
    KeyframeRequest { id: String },
    Stats(oneshot::Sender<ShardStats>),
}

/// The shard's sessions and socket counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShardStats {
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

/// A route's viewers in this shard, and its packetized GOP for viewers that connect later.
#[derive(Debug, Default)]
struct Fanout {
    viewers: Vec<Key>,
    gop: Vec<Arc<RtpFrame>>,
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
    timers: BTreeSet<(Instant, Key)>,
    fanouts: HashMap<crate::config::model::RouteName, Fanout>,
    next_key: Key,
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
            timers: BTreeSet::new(),
            fanouts: HashMap::new(),
            next_key: 1,
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
                }
                f = self.frames.recv() => {
                    if let Some((sub, frame)) = f {
                        self.handle_frame(&sub, &frame);
                    }
                    for _ in 0..FRAME_BATCH {
                        match self.frames.try_recv() {
                            Ok((sub, frame)) => self.handle_frame(&sub, &frame),
                            Err(_) => break,
                        }
                    }
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
                self.sessions.insert(key, *session);
                self.with_session(key, now, |s, out, ev| s.drain(now, out, ev));
            }
            ShardCommand::Trickle { id, candidates, reply } => {
                let result = match self.ids.get(&id).copied() {
                    Some(key) => {
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
                let found = self.ids.get(&id).copied();
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

    fn handle_datagram(&mut self, data: &[u8], source: SocketAddr, destination: SocketAddr) {
        let now = Instant::now();
        let Ok(contents) = data.try_into() else { return };
        let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination, contents });
        let key = match self.by_addr.get(&source) {
            Some(k) => *k,
            None => {
                // A new address: whichever session's ICE credentials or DTLS state claim the packet.
                let Some(k) = self.sessions.iter().find(|(_, s)| s.rtc.accepts(&input)).map(|(k, _)| *k) else {
                    return;
                };
                self.by_addr.insert(source, k);
                if let Some(s) = self.sessions.get_mut(&k) {
                    s.remote.get_or_insert(source);
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

    fn handle_frame(&mut self, sub: &Arc<Subscription>, frame: &Arc<crate::media::Frame>) {
        let Some(fanout) = self.fanouts.get_mut(&sub.name) else { return };
        let Some(rtp) = packetize(frame) else { return };
        let rtp = Arc::new(rtp);
        if frame.kind() == MediaKind::Video && rtp.keyframe {
            fanout.gop.clear();
        }
        if fanout.gop.len() < MAX_GOP_FRAMES && (!fanout.gop.is_empty() || rtp.keyframe) {
            fanout.gop.push(Arc::clone(&rtp));
        }
        let now = Instant::now();
        for key in fanout.viewers.clone() {
            self.with_session(key, now, |s, out, ev| s.send_frame(&rtp, now, out, ev));
        }
    }

    fn handle_timeouts(&mut self) {
        let now = Instant::now();
        while let Some(&(t, key)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
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
                let gop = self.fanouts.get(&route).map(|f| f.gop.clone()).unwrap_or_default();
                if gop.is_empty() {
                    v.subscription.route.request_keyframe();
                }
                for frame in gop {
                    self.with_session(key, now, |s, out, ev| s.send_frame(&frame, now, out, ev));
                }
            }
        }
    }

    /// A route that ended (removed by a reload) ends its viewers' sessions.
    fn end_viewers_of_ended_routes(&mut self) {
        let ended: Vec<Key> = self
            .sessions
            .iter()
            .filter(|(_, s)| matches!(&s.role, Role::Viewer(v) if !v.subscription.is_alive()))
            .map(|(k, _)| *k)
            .collect();
        for key in ended {
            self.remove(key, "route ended");
        }
    }

    fn remove(&mut self, key: Key, why: &str) {
        let Some(session) = self.sessions.remove(&key) else { return };
        self.timers.remove(&(session.next_timeout, key));
        self.ids.remove(&session.id);
        self.by_addr.retain(|_, k| *k != key);
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
