//! The route actor and its handle.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::model::{RouteConfig, RouteName};
use crate::media::{Frame, MediaKind, Track, TrackId};
use crate::route::bunch::Bunch;
use crate::route::gop::{GopCache, GopLimits};
use crate::route::reader::{Offer, ReaderCounters, ReaderId, ReaderKind, ReaderSlot, RouteReader, reader_pair};
use crate::route::stats::{ReaderInfo, RouteSnapshot, RouteState, TrackInfo};
use crate::route::timeline::Timeline;

/// Frames a reader may have queued before it starts losing frames. Generous because tokio's channel allocates
/// lazily: an idle or fast reader costs far less than this.
pub const READER_QUEUE_FRAMES: usize = 1024;
/// Events a source may queue before the route; generous for bursts (a GOP arriving at once after a stall).
const SOURCE_QUEUE: usize = 512;
const TICK: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(500);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Viewers ask for keyframes on every loss burst; the source hears at most one request per interval.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route {0} has ended")]
    Ended(RouteName),
    #[error("route {route} already has {max} readers (max_readers)")]
    TooManyReaders { route: RouteName, max: u32 },
    #[error("route {route} does not list `{kind}` in `to`")]
    OutputNotAllowed { route: RouteName, kind: String },
    #[error("route {0} already has a publisher")]
    PublisherBusy(RouteName),
    #[error("route {route} does not take publishers: {reason}")]
    NotPublishable { route: RouteName, reason: String },
}

/// Starts a route's source. Implemented per source kind in `ingest`; the route only knows this trait.
pub trait SourceFactory: Send + Sync + fmt::Debug {
    /// Spawns the source task. It sends into `feed` until it ends (the route restarts it with backoff) or is
    /// aborted (the route stopped it).
    fn start(&self, feed: SourceFeed) -> JoinHandle<()>;
}

/// How a route gets its media.
#[derive(Debug, Clone)]
pub enum RouteSource {
    /// The route runs the source itself (demo clip, pulled camera).
    Pull(Arc<dyn SourceFactory>),
    /// A publisher connects to the router (WHIP, RTMP, RTSP RECORD) and feeds the route.
    Publish,
    /// The source cannot run; the reason is shown in the route's `last_error`.
    Unavailable(String),
}

/// What a source tells its route.
#[derive(Debug)]
pub enum SourceEvent {
    /// The tracks the source will send, known before the first frame (from SDP, FLV headers, a file).
    Tracks(Vec<Arc<Track>>),
    Frame(Frame),
    /// The source lost its peer (or could not reach it) and is retrying by itself, with backoff; readers stay.
    Reconnecting {
        error: String,
    },
    /// The source reached its peer again: it is setting up streams, frames follow.
    Connected,
    /// Something the user should know about the source that does not stop it (an unsupported audio codec):
    /// shown as the route's `last_error`.
    Problem {
        error: String,
    },
    /// The source's clock for a track: `pts` (in the source's own timeline, like its frames) was captured at
    /// `wallclock` (from an RTCP sender report). Frames after it carry their wall-clock time.
    Clock {
        track: TrackId,
        pts: i64,
        wallclock: std::time::SystemTime,
    },
}

/// The source's handle into its route. Dropping every clone ends the source session: a publisher leaving.
#[derive(Debug, Clone)]
pub struct SourceFeed {
    tx: mpsc::Sender<SourceEvent>,
    keyframe: Arc<Notify>,
}

/// Why [`SourceFeed::try_send`] did not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedError {
    /// The route is behind; the event was dropped.
    Full,
    /// The route stopped this source.
    Closed,
}

impl SourceFeed {
    /// Sends an event; `false` means the route stopped this source and it should end.
    pub async fn send(&self, event: SourceEvent) -> bool {
        self.tx.send(event).await.is_ok()
    }

    /// Sends without waiting, for drivers that serve many peers on one task and must not block on one route.
    pub fn try_send(&self, event: SourceEvent) -> Result<(), FeedError> {
        self.tx.try_send(event).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => FeedError::Full,
            mpsc::error::TrySendError::Closed(_) => FeedError::Closed,
        })
    }

    /// Resolves when a reader asked for a keyframe (a viewer's PLI/FIR, a new reader); rate-limited by the route.
    pub async fn keyframe_requested(&self) {
        self.keyframe.notified().await
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A viewer counted against `max_readers` on a reader that serves many (a WebRTC shard's route reader).
/// Dropping it frees the slot.
#[derive(Debug)]
pub struct ViewerTicket {
    counters: Arc<ReaderCounters>,
}

impl Drop for ViewerTicket {
    fn drop(&mut self) {
        self.counters.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Command {
    AddReader { kind: ReaderKind, remote: Option<String>, reply: oneshot::Sender<Result<RouteReader, RouteError>> },
    AdmitViewer { reader: ReaderId, reply: oneshot::Sender<Result<ViewerTicket, RouteError>> },
    AttachPublisher { remote: Option<String>, replace: bool, reply: oneshot::Sender<Result<SourceFeed, RouteError>> },
    RequestKeyframe,
    RemoveReader(ReaderId),
    Snapshot(oneshot::Sender<RouteSnapshot>),
    Tracks(oneshot::Sender<Vec<Arc<Track>>>),
    Update { config: Arc<RouteConfig>, source: Option<RouteSource>, reply: oneshot::Sender<()> },
    Stop(oneshot::Sender<()>),
}

type WeakCommands = mpsc::WeakSender<Command>;

/// How the rest of the router talks to a route. Cheap to clone.
#[derive(Clone)]
pub struct RouteHandle {
    name: RouteName,
    tx: mpsc::Sender<Command>,
    /// The route's state as it changes (signaling adapters tell their clients when a camera goes live).
    state: watch::Receiver<RouteState>,
}

impl fmt::Debug for RouteHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteHandle").field("name", &self.name).finish()
    }
}

impl RouteHandle {
    pub fn name(&self) -> &RouteName {
        &self.name
    }

    /// Whether both handles talk to the same route actor (a route replaced under the same name is another).
    pub fn same_route(&self, other: &RouteHandle) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// The route's state now and as it changes; the sender is gone once the route ended.
    pub fn watch_state(&self) -> watch::Receiver<RouteState> {
        self.state.clone()
    }

    fn ended(&self) -> RouteError {
        RouteError::Ended(self.name.clone())
    }

    /// Attaches a reader. Its first frames are the GOP cache (starting on a keyframe) when there is one.
    pub async fn add_reader(&self, kind: ReaderKind, remote: Option<String>) -> Result<RouteReader, RouteError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::AddReader { kind, remote, reply }).await.map_err(|_| self.ended())?;
        rx.await.map_err(|_| self.ended())?
    }

    /// Counts one more viewer on `reader` (which fans out to many), refusing past `max_readers`.
    pub async fn admit_viewer(&self, reader: ReaderId) -> Result<ViewerTicket, RouteError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::AdmitViewer { reader, reply }).await.map_err(|_| self.ended())?;
        rx.await.map_err(|_| self.ended())?
    }

    /// Becomes the route's source, for routes that take publishers. Fails while another publisher is attached,
    /// unless `replace`: then the old publisher's feed closes and it is dropped.
    pub async fn attach_publisher(&self, remote: Option<String>, replace: bool) -> Result<SourceFeed, RouteError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::AttachPublisher { remote, replace, reply }).await.map_err(|_| self.ended())?;
        rx.await.map_err(|_| self.ended())?
    }

    /// Asks the source for a keyframe (forwarded at most every [`KEYFRAME_REQUEST_INTERVAL`]).
    pub fn request_keyframe(&self) {
        let _ = self.tx.try_send(Command::RequestKeyframe);
    }

    pub async fn snapshot(&self) -> Result<RouteSnapshot, RouteError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Snapshot(reply)).await.map_err(|_| self.ended())?;
        rx.await.map_err(|_| self.ended())
    }

    /// The source's tracks as known now (announced, or seen in frames), with their parameters: what a player
    /// must be told before the first frame (RTSP's DESCRIBE).
    pub async fn tracks(&self) -> Result<Vec<Arc<Track>>, RouteError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Tracks(reply)).await.map_err(|_| self.ended())?;
        rx.await.map_err(|_| self.ended())
    }

    /// Applies a changed configuration in place. With `source`, the old source stops and the new one starts;
    /// readers stay attached and resume at the new source's first keyframe.
    pub async fn update(&self, config: Arc<RouteConfig>, source: Option<RouteSource>) -> Result<(), RouteError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Update { config, source, reply }).await.map_err(|_| self.ended())?;
        rx.await.map_err(|_| self.ended())
    }

    /// Ends the route: the source stops and every reader's `recv` returns `None`.
    pub async fn stop(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Stop(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Spawns a route actor. It runs until [`RouteHandle::stop`] or until every handle is dropped.
pub fn spawn_route(config: Arc<RouteConfig>, source: RouteSource) -> RouteHandle {
    let (tx, rx) = mpsc::channel(256);
    let (state_tx, state) = watch::channel(RouteState::Waiting);
    let handle = RouteHandle { name: config.name.clone(), tx: tx.clone(), state };
    // The actor and its readers hold weak senders, so dropping the last handle ends the route.
    let actor = RouteActor::new(config, source, tx.downgrade(), state_tx);
    tokio::spawn(actor.run(rx));
    handle
}

/// A source session: the route's receiving end, and the task for pulled sources. Aborts the task when dropped,
/// so a stopped route never leaves its source running.
#[derive(Debug)]
struct RunningSource {
    task: Option<JoinHandle<()>>,
    events: mpsc::Receiver<SourceEvent>,
    keyframe: Arc<Notify>,
    last_keyframe_request: Option<Instant>,
}

impl RunningSource {
    /// A session and the feed its producer writes into.
    fn new() -> (Self, SourceFeed) {
        let (tx, events) = mpsc::channel(SOURCE_QUEUE);
        let keyframe = Arc::new(Notify::new());
        let feed = SourceFeed { tx, keyframe: Arc::clone(&keyframe) };
        (RunningSource { task: None, events, keyframe, last_keyframe_request: None }, feed)
    }
}

impl Drop for RunningSource {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

struct RouteActor {
    config: Arc<RouteConfig>,
    source: RouteSource,
    running: Option<RunningSource>,
    /// When the source may be restarted after it ended on its own.
    restart_at: Option<Instant>,
    restart_backoff: Duration,
    /// When an on-demand source with no readers is stopped.
    idle_since: Option<Instant>,
    commands: WeakCommands,

    state: RouteState,
    /// Where `state` is published for [`RouteHandle::watch_state`].
    state_tx: watch::Sender<RouteState>,
    last_error: Option<String>,
    live_since: Option<Instant>,
    source_starts: u64,
    reconnects: u64,
    tracks: BTreeMap<TrackId, Arc<Track>>,
    has_video: bool,
    /// The source's video has frames out of presentation order (B-frames), seen in this source session. WebRTC
    /// viewers cannot play those (browsers freeze after a frame or two), so it is shown with the fix.
    reordered_video: bool,
    timeline: Timeline,
    /// Per track, the source's latest (pts, wall clock) pair; cleared with each new source session.
    clocks: std::collections::HashMap<TrackId, (i64, std::time::SystemTime)>,
    gop: GopCache,
    /// Frames held for readers served in bunches (RTMP and RTSP players).
    bunch: Bunch,
    readers: Vec<ReaderSlot>,
    next_reader_id: ReaderId,

    frames_in: u64,
    bytes_in: u64,
    frames_out: u64,
    bytes_out: u64,
    /// Drops of readers that already left; live readers' drops are read from their counters.
    dropped_by_departed: u64,
    bitrate_in_bps: u64,
    bitrate_out_bps: u64,
    last_tick: Instant,
    bytes_in_at_tick: u64,
    bytes_out_at_tick: u64,
    last_drop_log: Option<Instant>,
    dropped_at_drop_log: u64,
}

impl RouteActor {
    fn set_state(&mut self, state: RouteState) {
        self.state = state;
        self.state_tx.send_if_modified(|s| std::mem::replace(s, state) != state);
    }

    fn new(
        config: Arc<RouteConfig>,
        source: RouteSource,
        commands: WeakCommands,
        state_tx: watch::Sender<RouteState>,
    ) -> Self {
        let now = Instant::now();
        // RTMP and RTSP players are the readers served in bunches.
        let bunch = Bunch::new(config.write_interval);
        RouteActor {
            config,
            source,
            running: None,
            restart_at: None,
            restart_backoff: RESTART_BACKOFF_MIN,
            idle_since: None,
            commands,
            state: RouteState::Waiting,
            state_tx,
            last_error: None,
            live_since: None,
            source_starts: 0,
            reconnects: 0,
            tracks: BTreeMap::new(),
            has_video: false,
            reordered_video: false,
            timeline: Timeline::default(),
            clocks: Default::default(),
            gop: GopCache::new(GopLimits::default()),
            bunch,
            readers: Vec::new(),
            next_reader_id: 1,
            frames_in: 0,
            bytes_in: 0,
            frames_out: 0,
            bytes_out: 0,
            dropped_by_departed: 0,
            bitrate_in_bps: 0,
            bitrate_out_bps: 0,
            last_tick: now,
            bytes_in_at_tick: 0,
            bytes_out_at_tick: 0,
            last_drop_log: None,
            dropped_at_drop_log: 0,
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        self.source_changed();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One timer for the route's bunches, moved to each new bunch's due time.
        let bunch_due = tokio::time::sleep(TICK);
        tokio::pin!(bunch_due);
        loop {
            if let Some(due) = self.bunch.due()
                && bunch_due.deadline() != due
            {
                bunch_due.as_mut().reset(due);
            }
            tokio::select! {
                // Commands first: a reader joining or a stop must not queue behind a burst of frames; then the
                // tick, so a source that always has a frame ready cannot starve stats, sweeps and restarts.
                biased;
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop(reply)) => {
                        self.shutdown();
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => self.handle_command(cmd),
                    // Every handle is gone (the runtime dropped the route).
                    None => return self.shutdown(),
                },
                _ = tick.tick() => self.handle_tick(Instant::now()),
                () = &mut bunch_due, if self.bunch.due().is_some() => self.offer_bunch(),
                event = next_source_event(&mut self.running) => match event {
                    Some(event) => self.handle_source_event(event),
                    None => self.source_ended(),
                },
            }
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::AddReader { kind, remote, reply } => {
                let _ = reply.send(self.add_reader(kind, remote));
            }
            Command::AdmitViewer { reader, reply } => {
                let _ = reply.send(self.admit_viewer(reader));
            }
            Command::AttachPublisher { remote, replace, reply } => {
                let _ = reply.send(self.attach_publisher(remote, replace));
            }
            Command::RequestKeyframe => {
                if let Some(running) = &mut self.running {
                    let now = Instant::now();
                    if running.last_keyframe_request.is_none_or(|t| now - t >= KEYFRAME_REQUEST_INTERVAL) {
                        running.last_keyframe_request = Some(now);
                        running.keyframe.notify_one();
                    }
                }
            }
            Command::RemoveReader(id) => {
                self.retain_readers(|r| r.id != id);
            }
            Command::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Command::Tracks(reply) => {
                let _ = reply.send(self.tracks.values().cloned().collect());
            }
            Command::Update { config, source, reply } => {
                self.config = config;
                self.bunch.set_interval(self.config.write_interval);
                if !self.bunch.enabled() {
                    self.offer_bunch();
                }
                let config = Arc::clone(&self.config);
                let removed = self.retain_readers(|r| r.kind.allowed_by(&config));
                if removed > 0 {
                    tracing::info!(route = %self.config.name, removed, "readers of outputs no longer in `to` disconnected");
                }
                if let Some(source) = source {
                    self.source = source;
                    self.running = None;
                    self.restart_backoff = RESTART_BACKOFF_MIN;
                    self.source_changed();
                } else {
                    self.ensure_source();
                }
                let _ = reply.send(());
            }
            Command::Stop(_) => unreachable!("handled in run"),
        }
    }

    /// Keeps the readers `keep` accepts; the rest leave, their drops stay counted. Returns how many left.
    fn retain_readers(&mut self, mut keep: impl FnMut(&ReaderSlot) -> bool) -> usize {
        let before = self.readers.len();
        let mut departed_drops = 0;
        self.readers.retain(|r| {
            let stays = keep(r) && !r.is_closed();
            if !stays {
                departed_drops += r.counters.dropped.load(Ordering::Relaxed);
            }
            stays
        });
        self.dropped_by_departed += departed_drops;
        let left = before - self.readers.len();
        if left > 0 && self.readers.is_empty() && self.config.on_demand && self.idle_since.is_none() {
            self.idle_since = Some(Instant::now());
        }
        left
    }

    /// Readers and the viewers behind fan-out readers, as `max_readers` counts them.
    fn audience(&self) -> usize {
        self.readers.iter().map(|r| r.counters.viewers.load(Ordering::Relaxed).max(1)).sum()
    }

    fn add_reader(&mut self, kind: ReaderKind, remote: Option<String>) -> Result<RouteReader, RouteError> {
        let name = self.config.name.clone();
        if !kind.allowed_by(&self.config) {
            return Err(RouteError::OutputNotAllowed { route: name, kind: format!("{kind:?}").to_lowercase() });
        }
        self.retain_readers(|_| true);
        // `max_readers` limits viewers; a recording the admin asked for is not one of them.
        if let Some(max) = self.config.max_readers
            && kind != ReaderKind::Record
            && self.audience() >= max as usize
        {
            return Err(RouteError::TooManyReaders { route: name, max });
        }
        let id = self.next_reader_id;
        self.next_reader_id += 1;
        let commands = self.commands.clone();
        let leave = Box::new(move |id| {
            // Best effort: if the queue is full the actor still notices the closed reader on its next frame or tick.
            if let Some(commands) = commands.upgrade() {
                let _ = commands.try_send(Command::RemoveReader(id));
            }
        });
        let (mut slot, reader) = reader_pair(id, kind, remote, READER_QUEUE_FRAMES, leave);
        if kind.served_in_bunches() {
            // The held frames are in the GOP cache too: the others get them now, the newcomer with the cache.
            self.offer_bunch();
        }
        for (i, frame) in self.gop.frames().iter().enumerate() {
            if slot.offer(frame, i == 0) == Offer::Queued {
                self.frames_out += 1;
                self.bytes_out += frame.data.len() as u64;
            }
        }
        tracing::debug!(route = %name, reader = id, ?kind, gop = self.gop.frames().len(), "reader joined");
        self.readers.push(slot);
        self.idle_since = None;
        self.ensure_source();
        Ok(reader)
    }

    fn admit_viewer(&mut self, reader: ReaderId) -> Result<ViewerTicket, RouteError> {
        let Some(slot) = self.readers.iter().find(|r| r.id == reader) else {
            return Err(RouteError::Ended(self.config.name.clone()));
        };
        let viewers = slot.counters.viewers.load(Ordering::Relaxed);
        // The first viewer of a fan-out reader takes the slot the reader itself already counts.
        if let Some(max) = self.config.max_readers
            && viewers > 0
            && self.audience() >= max as usize
        {
            return Err(RouteError::TooManyReaders { route: self.config.name.clone(), max });
        }
        slot.counters.viewers.fetch_add(1, Ordering::Relaxed);
        Ok(ViewerTicket { counters: Arc::clone(&slot.counters) })
    }

    fn attach_publisher(&mut self, remote: Option<String>, replace: bool) -> Result<SourceFeed, RouteError> {
        let route = self.config.name.clone();
        match &self.source {
            RouteSource::Publish => {}
            RouteSource::Pull(_) => {
                let reason = format!("its source is {}", self.config.from.redacted());
                return Err(RouteError::NotPublishable { route, reason });
            }
            RouteSource::Unavailable(reason) => {
                return Err(RouteError::NotPublishable { route, reason: reason.clone() });
            }
        }
        if self.running.as_ref().is_some_and(|r| !r.events.is_closed()) {
            if !replace {
                return Err(RouteError::PublisherBusy(route));
            }
            tracing::info!(route = %self.config.name, "a new publisher replaces the current one (override_publisher)");
        }
        let (running, feed) = RunningSource::new();
        self.running = Some(running);
        self.new_session();
        // What went wrong with the last publisher is not this one's problem.
        self.last_error = None;
        tracing::info!(route = %self.config.name, remote = remote.as_deref().unwrap_or("-"), "publisher attached");
        Ok(feed)
    }

    /// The source definition changed (or the route started): reset per-source state and start if wanted.
    fn source_changed(&mut self) {
        self.tracks.clear();
        self.has_video = false;
        self.live_since = None;
        self.last_error = None;
        self.restart_at = None;
        self.gop.clear();
        if let RouteSource::Unavailable(reason) = &self.source {
            self.last_error = Some(reason.clone());
            self.set_state(RouteState::Unavailable);
        } else {
            self.set_state(RouteState::Waiting);
        }
        self.ensure_source();
    }

    /// Starts a pulled source if the route wants it running and it is not; stops it for an idle on-demand route.
    fn ensure_source(&mut self) {
        let wanted = !self.config.on_demand || !self.readers.is_empty();
        if !wanted {
            if self.idle_since.is_none() && self.running.is_some() {
                self.idle_since = Some(Instant::now());
            }
            return;
        }
        self.idle_since = None;
        if self.running.is_some() || self.restart_at.is_some() {
            return;
        }
        let RouteSource::Pull(factory) = &self.source else {
            return;
        };
        let (mut running, feed) = RunningSource::new();
        running.task = Some(factory.start(feed));
        self.running = Some(running);
        self.new_session();
        tracing::info!(route = %self.config.name, source = %self.config.from.redacted(), "source started");
    }

    /// A source session begins (pulled source started, publisher attached): readers resync on its first keyframe.
    fn new_session(&mut self) {
        // What is held belongs to the old session; readers get it before they start waiting for the new one.
        self.offer_bunch();
        self.source_starts += 1;
        self.timeline.new_session();
        self.clocks.clear();
        self.reordered_video = false;
        self.gop.clear();
        for reader in &mut self.readers {
            reader.resync();
        }
    }

    fn handle_source_event(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Frame(frame) => self.handle_frame(frame),
            SourceEvent::Tracks(tracks) => {
                self.tracks = tracks.into_iter().map(|t| (t.id, t)).collect();
                self.has_video = self.tracks.values().any(|t| t.kind() == MediaKind::Video);
            }
            SourceEvent::Reconnecting { error } => {
                // The source logs its own failures (rate-limited); the route records state for the API.
                self.reconnects += 1;
                self.set_state(RouteState::Reconnecting);
                self.last_error = Some(error);
                self.live_since = None;
                self.new_session();
                // The source restarts by itself: count it as a session, not as a start by the route.
                self.source_starts -= 1;
            }
            SourceEvent::Problem { error } => {
                tracing::warn!(route = %self.config.name, %error, "source problem");
                self.last_error = Some(error);
            }
            SourceEvent::Clock { track, pts, wallclock } => {
                self.clocks.insert(track, (pts, wallclock));
            }
            SourceEvent::Connected => {
                if self.state == RouteState::Reconnecting {
                    self.set_state(RouteState::Waiting);
                }
            }
        }
    }

    /// The hot path: one frame in, offered to every reader without waiting on any.
    fn handle_frame(&mut self, mut frame: Frame) {
        // Wall-clock time from the source's clock mapping, in the source's own timeline (before rebasing).
        if frame.wallclock.is_none()
            && let Some((pts, wall)) = self.clocks.get(&frame.track.id)
        {
            let secs = (frame.pts - pts) as f64 / f64::from(frame.track.clock_rate.max(1));
            frame.wallclock = if secs >= 0.0 {
                wall.checked_add(Duration::from_secs_f64(secs))
            } else {
                wall.checked_sub(Duration::from_secs_f64(-secs))
            };
        }
        self.timeline.rebase(&mut frame);
        let track = &frame.track;
        if self.tracks.get(&track.id).is_none_or(|known| !Arc::ptr_eq(known, track)) {
            self.tracks.insert(track.id, Arc::clone(track));
        }
        let is_video = frame.kind() == MediaKind::Video;
        self.has_video |= is_video;
        if is_video && frame.pts != frame.dts && !self.reordered_video {
            self.reordered_video = true;
            // What to do about it is in the route's `warnings` (API, viewer page), which say it for its outputs.
            tracing::warn!(route = %self.config.name,
                "the video has B-frames (frames out of order); see the route's warnings in the API");
        }
        let sync_point = frame.keyframe && (is_video || !self.has_video);
        if self.state != RouteState::Live {
            self.set_state(RouteState::Live);
            self.live_since = Some(Instant::now());
            self.restart_backoff = RESTART_BACKOFF_MIN;
        }
        let len = frame.data.len() as u64;
        self.frames_in += 1;
        self.bytes_in += len;
        let frame = Arc::new(frame);
        self.gop.push(&frame, sync_point);
        let bunching = self.bunch.enabled();
        let mut queued = 0u64;
        let mut closed = false;
        let mut bunched_readers = false;
        for reader in &mut self.readers {
            if bunching && reader.kind.served_in_bunches() {
                bunched_readers = true;
                continue;
            }
            match reader.offer(&frame, sync_point) {
                Offer::Queued => queued += 1,
                Offer::Dropped => {}
                Offer::Closed => closed = true,
            }
        }
        self.frames_out += queued;
        self.bytes_out += queued * len;
        if closed {
            self.retain_readers(|_| true);
        }
        if bunched_readers && self.bunch.hold(&frame, sync_point, Instant::now()) {
            self.offer_bunch();
        }
    }

    /// Offers the held frames to the readers served in bunches: reader by reader, so each gets its whole bunch
    /// before its task can run and write.
    fn offer_bunch(&mut self) {
        if self.bunch.is_empty() {
            return;
        }
        let mut closed = false;
        for reader in self.readers.iter_mut().filter(|r| r.kind.served_in_bunches()) {
            for (frame, sync_point) in self.bunch.frames() {
                match reader.offer(frame, *sync_point) {
                    Offer::Queued => {
                        self.frames_out += 1;
                        self.bytes_out += frame.data.len() as u64;
                    }
                    Offer::Dropped => {}
                    Offer::Closed => closed = true,
                }
            }
        }
        self.bunch.clear();
        if closed {
            self.retain_readers(|_| true);
        }
    }

    fn source_ended(&mut self) {
        self.offer_bunch();
        self.running = None;
        self.live_since = None;
        self.gop.clear();
        if matches!(self.source, RouteSource::Publish) {
            tracing::info!(route = %self.config.name, "publisher left; waiting for the next one");
            self.set_state(RouteState::Waiting);
            return;
        }
        let error = "source ended".to_string();
        tracing::warn!(route = %self.config.name, backoff_ms = self.restart_backoff.as_millis() as u64, "{error}; restarting");
        self.set_state(RouteState::Reconnecting);
        self.last_error = Some(error);
        self.restart_at = Some(Instant::now() + self.restart_backoff);
        self.restart_backoff = (self.restart_backoff * 2).min(RESTART_BACKOFF_MAX);
    }

    fn handle_tick(&mut self, now: Instant) {
        let secs = now.duration_since(self.last_tick).as_secs_f64().max(1e-3);
        self.bitrate_in_bps = ((self.bytes_in - self.bytes_in_at_tick) as f64 * 8.0 / secs) as u64;
        self.bitrate_out_bps = ((self.bytes_out - self.bytes_out_at_tick) as f64 * 8.0 / secs) as u64;
        self.bytes_in_at_tick = self.bytes_in;
        self.bytes_out_at_tick = self.bytes_out;
        self.last_tick = now;

        self.retain_readers(|_| true);
        if let Some(at) = self.restart_at
            && now >= at
        {
            self.restart_at = None;
            self.ensure_source();
        }
        if let Some(since) = self.idle_since
            && now.duration_since(since) >= self.config.idle_timeout
            && self.readers.is_empty()
            && self.running.is_some()
        {
            tracing::info!(route = %self.config.name, "no readers left; on-demand source stopped");
            self.running = None;
            self.idle_since = None;
            self.set_state(RouteState::Waiting);
            self.live_since = None;
            self.gop.clear();
        }
        self.log_drops(now);
    }

    /// One warning per route per interval at most, however many readers drop.
    fn log_drops(&mut self, now: Instant) {
        let dropped = self.frames_dropped();
        if dropped <= self.dropped_at_drop_log || self.last_drop_log.is_some_and(|t| now - t < DROP_LOG_INTERVAL) {
            return;
        }
        let slow = self.readers.iter().filter(|r| r.counters.dropped.load(Ordering::Relaxed) > 0).count();
        tracing::warn!(route = %self.config.name, frames = dropped - self.dropped_at_drop_log, slow_readers = slow,
            "slow readers: frames dropped to the next keyframe");
        self.dropped_at_drop_log = dropped;
        self.last_drop_log = Some(now);
    }

    fn frames_dropped(&self) -> u64 {
        self.dropped_by_departed + self.readers.iter().map(|r| r.counters.dropped.load(Ordering::Relaxed)).sum::<u64>()
    }

    fn snapshot(&self) -> RouteSnapshot {
        RouteSnapshot {
            state: self.state,
            source_running: self.running.as_ref().is_some_and(|r| !r.events.is_closed()),
            source: self.config.from.redacted(),
            last_error: self.last_error.clone(),
            reordered_video: self.reordered_video,
            source_starts: self.source_starts,
            reconnects: self.reconnects,
            uptime_seconds: self.live_since.map(|t| t.elapsed().as_secs_f64()),
            tracks: self.tracks.values().map(|t| TrackInfo::from(&**t)).collect(),
            reader_count: self.audience(),
            readers: self
                .readers
                .iter()
                .map(|r| ReaderInfo {
                    id: r.id,
                    kind: r.kind,
                    remote: r.remote.clone(),
                    viewers: r.counters.viewers.load(Ordering::Relaxed),
                    frames: r.counters.frames.load(Ordering::Relaxed),
                    bytes: r.counters.bytes.load(Ordering::Relaxed),
                    dropped: r.counters.dropped.load(Ordering::Relaxed),
                })
                .collect(),
            frames_in: self.frames_in,
            bytes_in: self.bytes_in,
            frames_out: self.frames_out,
            bytes_out: self.bytes_out,
            frames_dropped: self.frames_dropped(),
            bitrate_in_bps: self.bitrate_in_bps,
            bitrate_out_bps: self.bitrate_out_bps,
            gop_frames: self.gop.frames().len(),
        }
    }

    fn shutdown(&mut self) {
        self.offer_bunch();
        self.running = None;
        self.readers.clear();
        tracing::debug!(route = %self.config.name, "route ended");
    }
}

async fn next_source_event(running: &mut Option<RunningSource>) -> Option<SourceEvent> {
    match running {
        Some(source) => source.events.recv().await,
        None => std::future::pending().await,
    }
}
