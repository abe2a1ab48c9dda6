//! The WebRTC driver: a thread with its own socket and its own peers.
//!
//! Owns its socket and its [`Session`]s; nothing else touches either. Four inputs wake it: commands (new session,
//! trickle, end, stats), datagrams other shards passed on, datagrams on its socket, and frames of subscribed routes
//! (ready to send, written to each viewer). Timers are one ordered set of (deadline, session), so a wake costs
//! O(log n), not a scan of every peer.
//!
//! Shards share the UDP port as a SO_REUSEPORT group, and the kernel hands each flow to a socket by a hash of its
//! addresses, not to the shard its peer lives on. A datagram is therefore placed ([`Shard::place`]): to a session
//! here that holds its source address, or to the shard the [`AddrTable`] names for that address, or, for a STUN
//! check from an address nobody holds yet, to the shard our ufrag in it names (ICE-lite: a peer's first datagram
//! from every address is its check). Only the owner adopts an address, after the check proved the peer.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Input};
use tokio::sync::{mpsc, oneshot};

use super::WebRtcError;
use super::session::{Role, RoleKind, Session, SessionEvent, SessionStats};
use super::subscription::ShardFrame;
use super::udp::{Received, UdpIo, recv_buffers};
use crate::config::model::RouteName;

/// Receive calls (each up to 32 datagrams) per wake before looking at other inputs, so a flood cannot starve
/// timers or frames.
const RECV_ROUNDS: usize = 4;
/// Route frames handled per wake.
const FRAME_BATCH: usize = 16;
/// Which shard holds each peer address: written by the owner as it adopts or drops an address, read by a shard
/// whose socket got a datagram from an address it does not hold.
#[derive(Debug, Default)]
pub struct AddrTable(RwLock<HashMap<SocketAddr, usize>>);

impl AddrTable {
    fn owner(&self, addr: &SocketAddr) -> Option<usize> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(addr).copied()
    }

    /// Gives `addr` to `shard`, returning the shard that held it before.
    fn adopt(&self, addr: SocketAddr, shard: usize) -> Option<usize> {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(addr, shard)
    }

    /// Forgets `addr` if `shard` still holds it.
    fn release(&self, addr: &SocketAddr, shard: usize) {
        let mut table = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if table.get(addr) == Some(&shard) {
            table.remove(addr);
        }
    }
}

/// What one shard hands another.
#[derive(Debug)]
pub enum Inbox {
    /// Datagrams that reached the sender's socket for peers of the receiver.
    Datagrams(Vec<Forwarded>),
    /// The receiver's session no longer holds this address: a peer on the sender's shard took it over.
    Forget(SocketAddr),
}

#[derive(Debug)]
pub struct Forwarded {
    data: Vec<u8>,
    source: SocketAddr,
    destination: SocketAddr,
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    Here(Key),
    Shard(usize),
    Drop,
}

/// What a shard is made of, besides its socket.
#[derive(Debug)]
pub struct ShardParts {
    pub index: usize,
    pub commands: mpsc::Receiver<ShardCommand>,
    pub frames: mpsc::Receiver<ShardFrame>,
    pub inbox: mpsc::Receiver<Inbox>,
    /// Every shard's inbox, by index (this one's included).
    pub peers: Arc<[mpsc::Sender<Inbox>]>,
    pub addrs: Arc<AddrTable>,
    /// This shard's session count, read when choosing a shard for a new peer.
    pub load: Arc<AtomicUsize>,
}

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

/// Sessions and socket counters: of one shard, or of all of them merged.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShardStats {
    pub frame_latency: LatencyHistogram,
    pub sessions: Vec<SessionInfo>,
    pub datagrams_sent: u64,
    /// Send system calls: fewer than datagrams when GSO batches them.
    pub send_calls: u64,
    /// Datagrams dropped because the socket buffer was full.
    pub send_errors: u64,
    /// Per shard, by index.
    pub shards: Vec<ShardLoad>,
}

/// One shard's share of the work.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShardLoad {
    pub shard: usize,
    pub sessions: usize,
    pub datagrams_received: u64,
    pub datagrams_sent: u64,
    /// Datagrams this shard's socket got for peers of another shard, passed on to it.
    pub datagrams_forwarded: u64,
    /// Datagrams that could not be passed on (the other shard's inbox was full).
    pub forward_drops: u64,
}

impl ShardStats {
    /// Adds another shard's figures to these.
    pub fn merge(&mut self, other: ShardStats) {
        for (mine, theirs) in self.frame_latency.buckets.iter_mut().zip(other.frame_latency.buckets) {
            *mine += theirs;
        }
        self.frame_latency.count += other.frame_latency.count;
        self.frame_latency.sum_seconds += other.frame_latency.sum_seconds;
        self.sessions.extend(other.sessions);
        self.datagrams_sent += other.datagrams_sent;
        self.send_calls += other.send_calls;
        self.send_errors += other.send_errors;
        self.shards.extend(other.shards);
    }
}

/// A session as /metrics and the API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub id: String,
    pub route: String,
    pub role: RoleKind,
    pub remote: Option<SocketAddr>,
    /// The shard (thread) the session lives on.
    pub shard: usize,
    pub connected: bool,
    pub age_seconds: f64,
    #[serde(flatten)]
    pub stats: SessionStats,
}

type Key = u64;

#[derive(Debug)]
pub struct Shard {
    index: usize,
    io: UdpIo,
    recv_bufs: Vec<Vec<u8>>,
    commands: mpsc::Receiver<ShardCommand>,
    frames: mpsc::Receiver<ShardFrame>,
    inbox: mpsc::Receiver<Inbox>,
    peers: Arc<[mpsc::Sender<Inbox>]>,
    addrs: Arc<AddrTable>,
    load: Arc<AtomicUsize>,
    /// Datagrams for other shards from the current receive, by shard.
    outgoing: Vec<Vec<Forwarded>>,
    sessions: HashMap<Key, Session>,
    ids: HashMap<String, Key>,
    by_addr: HashMap<SocketAddr, Key>,
    by_ufrag: HashMap<String, Key>,
    timers: BTreeSet<(Instant, Key)>,
    /// Each subscribed route's viewers on this shard.
    fanouts: HashMap<RouteName, Vec<Key>>,
    next_key: Key,
    latency: LatencyHistogram,
    datagrams_received: u64,
    datagrams_forwarded: u64,
    forward_drops: u64,
}

impl Shard {
    pub fn new(io: UdpIo, parts: ShardParts) -> Shard {
        let ShardParts { index, commands, frames, inbox, peers, addrs, load } = parts;
        Shard {
            index,
            io,
            recv_bufs: recv_buffers(),
            commands,
            frames,
            inbox,
            outgoing: peers.iter().map(|_| Vec::new()).collect(),
            peers,
            addrs,
            load,
            sessions: HashMap::new(),
            ids: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            timers: BTreeSet::new(),
            fanouts: HashMap::new(),
            next_key: 1,
            latency: LatencyHistogram::default(),
            datagrams_received: 0,
            datagrams_forwarded: 0,
            forward_drops: 0,
        }
    }

    pub async fn run(mut self) {
        let mut received = Vec::with_capacity(128);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        loop {
            let deadline =
                self.timers.first().map(|(t, _)| *t).unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            // Commands first (a session is added before datagrams for it are looked at), then what other shards
            // passed on, then the socket.
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.handle_command(cmd),
                    None => return,
                },
                Some(msg) = self.inbox.recv() => self.handle_inbox(msg),
                r = self.io.readable() => {
                    if r.is_ok() {
                        self.receive(&mut received);
                    }
                    // A busy socket must not starve timers (RTCP, NACK, consent) or route frames.
                    self.handle_timeouts();
                    self.handle_frame_batch();
                }
                f = self.frames.recv() => {
                    if let Some(f) = f {
                        self.handle_frame(&f);
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
                    self.fanouts.entry(v.subscription.name.clone()).or_default().push(key);
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
                        shard: self.index,
                        connected: s.connected_at.is_some(),
                        age_seconds: now.duration_since(s.created).as_secs_f64(),
                        stats: s.stats.clone(),
                    })
                    .collect();
                let load = ShardLoad {
                    shard: self.index,
                    sessions: self.sessions.len(),
                    datagrams_received: self.datagrams_received,
                    datagrams_sent: self.io.datagrams_sent,
                    datagrams_forwarded: self.datagrams_forwarded,
                    forward_drops: self.forward_drops,
                };
                let _ = reply.send(ShardStats {
                    frame_latency: self.latency.clone(),
                    sessions,
                    datagrams_sent: self.io.datagrams_sent,
                    send_calls: self.io.send_calls,
                    send_errors: self.io.send_errors,
                    shards: vec![load],
                });
            }
        }
    }

    /// Reads and handles what the socket holds, a bounded number of rounds; what belongs to other shards is
    /// passed on to them, one batch each.
    fn receive(&mut self, received: &mut Vec<Received>) {
        let mut bufs = std::mem::take(&mut self.recv_bufs);
        for _ in 0..RECV_ROUNDS {
            received.clear();
            if self.io.try_recv(&mut bufs, received).is_err() {
                break;
            }
            self.datagrams_received += received.len() as u64;
            for r in received.iter() {
                let data = &bufs[r.slot][r.offset..r.offset + r.len];
                if let Some(shard) = self.handle_datagram(data, r.source, r.destination, true) {
                    self.outgoing[shard].push(Forwarded {
                        data: data.to_vec(),
                        source: r.source,
                        destination: r.destination,
                    });
                }
            }
        }
        self.recv_bufs = bufs;
        for shard in 0..self.outgoing.len() {
            if self.outgoing[shard].is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut self.outgoing[shard]);
            let n = batch.len() as u64;
            // UDP is lossy by contract: a shard too far behind to take these loses them like a congested link.
            match self.peers[shard].try_send(Inbox::Datagrams(batch)) {
                Ok(()) => self.datagrams_forwarded += n,
                Err(_) => self.forward_drops += n,
            }
        }
    }

    fn handle_inbox(&mut self, msg: Inbox) {
        match msg {
            Inbox::Datagrams(batch) => {
                for d in batch {
                    // Placed here by the other shard's reading; not passed on again, whatever this shard thinks.
                    let _ = self.handle_datagram(&d.data, d.source, d.destination, false);
                }
            }
            Inbox::Forget(addr) => {
                if let Some(key) = self.by_addr.remove(&addr)
                    && let Some(s) = self.sessions.get_mut(&key)
                {
                    s.addrs.retain(|a| *a != addr);
                }
            }
        }
    }

    /// The session a URL names, if the route and role in the URL are its own.
    fn lookup(&self, r: &SessionRef) -> Option<Key> {
        let key = *self.ids.get(&r.id)?;
        let s = self.sessions.get(&key)?;
        (s.route.as_str() == r.route && s.kind() == r.role).then_some(key)
    }

    /// Hands a datagram to the session it belongs to, or returns the shard it belongs to when that is another
    /// (and `may_pass` allows it); anything else is dropped.
    fn handle_datagram(
        &mut self,
        data: &[u8],
        source: SocketAddr,
        destination: SocketAddr,
        may_pass: bool,
    ) -> Option<usize> {
        let now = Instant::now();
        let Ok(contents) = data.try_into() else { return None };
        let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination, contents });
        let key = match self.place(&input, data, source) {
            Placement::Here(key) => key,
            Placement::Shard(shard) => return may_pass.then_some(shard),
            Placement::Drop => return None,
        };
        self.with_session(key, now, |s, out, ev| {
            if let Err(e) = s.rtc.handle_input(input) {
                tracing::debug!(session = %s.id, error = %e, "bad input from peer");
            }
            s.drain(now, out, ev);
        });
        None
    }

    /// Where a datagram from `source` goes; a STUN check that proves a peer of this shard at a new address gives
    /// the address to its session.
    fn place(&mut self, input: &Input, data: &[u8], source: SocketAddr) -> Placement {
        // A STUN check from a known address for another session (a peer reusing a port) re-points it.
        if let Some(&key) = self.by_addr.get(&source)
            && self.sessions.get(&key).is_some_and(|s| s.rtc.accepts(input))
        {
            return Placement::Here(key);
        }
        let sharded = self.peers.len() > 1;
        if sharded
            && let Some(owner) = self.addrs.owner(&source)
            && owner != self.index
            && stun_local_ufrag(data).is_none()
        {
            return Placement::Shard(owner);
        }
        // A new address: only a STUN check naming one of our sessions' ICE username can open it; anything else
        // from an address no session holds is dropped without touching any session.
        let Some(ufrag) = stun_local_ufrag(data) else { return Placement::Drop };
        if sharded
            && let Some(shard) = super::shard_of(ufrag)
            && shard != self.index
        {
            return if shard < self.peers.len() { Placement::Shard(shard) } else { Placement::Drop };
        }
        let Some(&key) = self.by_ufrag.get(ufrag) else { return Placement::Drop };
        if !self.sessions.get(&key).is_some_and(|s| s.rtc.accepts(input)) {
            return Placement::Drop;
        }
        self.adopt(source, key);
        Placement::Here(key)
    }

    /// Routes `addr` to session `key` from now on, here and in the shared table; the shard that held it before
    /// forgets it.
    fn adopt(&mut self, addr: SocketAddr, key: Key) {
        self.by_addr.insert(addr, key);
        if let Some(s) = self.sessions.get_mut(&key) {
            if !s.addrs.contains(&addr) {
                s.addrs.push(addr);
            }
            s.remote = Some(addr);
        }
        if self.peers.len() > 1
            && let Some(before) = self.addrs.adopt(addr, self.index)
            && before != self.index
            && let Some(peer) = self.peers.get(before)
        {
            let _ = peer.try_send(Inbox::Forget(addr));
        }
    }

    fn handle_frame_batch(&mut self) {
        for _ in 0..FRAME_BATCH {
            match self.frames.try_recv() {
                Ok(f) => self.handle_frame(&f),
                Err(_) => break,
            }
        }
    }

    /// Sends a route frame (packetized and dated by the route's subscription) to this shard's viewers of the route.
    fn handle_frame(&mut self, f: &ShardFrame) {
        let Some(viewers) = self.fanouts.get(&f.sub.name) else { return };
        let Some(rtp) = f.frame.rtp().cloned() else { return };
        let now = Instant::now();
        let mut measured = false;
        for i in 0..viewers.len() {
            let Some(key) = self.fanouts.get(&f.sub.name).and_then(|v| v.get(i)).copied() else { break };
            let mut sent = false;
            self.with_session(key, now, |s, out, ev| {
                if s.replayed_through() < f.seq {
                    sent = s.send_frame(&rtp, f.wallclock, now, out, ev);
                }
            });
            if sent && !measured {
                // Once per frame: its first packets are in the kernel now.
                measured = true;
                self.latency.record(f.frame.received.elapsed().as_secs_f64());
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
                let Some(Session { role: Role::Viewer(v), .. }) = self.sessions.get_mut(&key) else { return };
                // The route's frames since its last keyframe, at once; frames numbered up to the last of them that
                // are still on their way to this shard are skipped.
                let (gop, through) = v.subscription.replay(now);
                v.replayed_through = through;
                if gop.is_empty() {
                    v.subscription.route.request_keyframe();
                }
                for (frame, wallclock) in &gop {
                    let Some(rtp) = frame.rtp() else { continue };
                    self.with_session(key, now, |s, out, ev| {
                        s.send_frame(rtp, *wallclock, now, out, ev);
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
        self.load.fetch_sub(1, Ordering::Relaxed);
        self.timers.remove(&(session.next_timeout, key));
        self.ids.remove(&session.id);
        self.by_ufrag.remove(&session.ufrag);
        for addr in &session.addrs {
            if self.by_addr.get(addr) == Some(&key) {
                self.by_addr.remove(addr);
                if self.peers.len() > 1 {
                    self.addrs.release(addr, self.index);
                }
            }
        }
        if let Role::Viewer(v) = &session.role
            && let Some(viewers) = self.fanouts.get_mut(&v.subscription.name)
        {
            viewers.retain(|k| *k != key);
            if viewers.is_empty() {
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
