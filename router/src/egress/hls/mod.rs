//! `to = ["hls"]`: (LL-)HLS viewers. One muxer per route, started by the first viewer and stopped once no viewer
//! has asked for anything for a while, reads the route like any reader and keeps its output in memory for every
//! viewer ([`media::Media`]); the HTTP handlers (`api::hls`) only look things up and wait for them.
//!
//! ```text
//! route ──frames──▶ muxer task: Muxer (frames → events) ──▶ Media (segments, parts) ◀── HTTP: playlists, files
//!                                                              └─ `changed` wakes blocked playlist and part requests
//! ```
//!
//! Viewers: a multivariant playlist request (`index.m3u8`) is admitted like a WHEP offer and opens a viewer
//! session, counted against the route's `max_readers`; the media playlist and files it lists carry the session in
//! their URIs, so later requests need no credentials and a file URL without a live session is refused.

pub mod media;
pub mod muxer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::admit::Admitted;
use crate::route::{ReaderKind, RouteError, RouteHandle, RouteReader, ViewerTicket};
use media::Media;
use muxer::{Muxer, Settings};

/// A viewer that asked for nothing for this long is gone (players reload the playlist every part or segment).
const SESSION_IDLE: Duration = Duration::from_secs(20);
/// A muxer with no viewer for this long stops (a viewer returning within it starts at the live edge at once).
const MUXER_IDLE: Duration = Duration::from_secs(30);
/// Viewer sessions kept per route at most, live or not, so a client minting sessions cannot grow memory.
const MAX_SESSIONS: usize = 10_000;

/// Every route's HLS muxer. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Hls {
    streams: Arc<Mutex<HashMap<String, Arc<Stream>>>>,
    /// Held while a muxer starts, so two first viewers arriving together start one (and take one reader slot).
    starting: Arc<tokio::sync::Mutex<()>>,
    settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    #[error("{0}")]
    Route(#[from] RouteError),
    /// The route has no media yet, or none an HLS player can play.
    #[error("{0}")]
    NotReady(String),
    #[error("this HLS viewer session is unknown or expired: load the route's index.m3u8 again")]
    NoSession,
}

impl Hls {
    pub fn new(settings: Settings) -> Hls {
        Hls { streams: Arc::default(), starting: Arc::default(), settings }
    }

    /// The muxer of an admitted route, started if it is not running.
    pub async fn stream(&self, admitted: &Admitted) -> Result<Arc<Stream>, HlsError> {
        let name = admitted.route.name().as_str().to_string();
        let running = |hls: &Hls| hls.running(&name).filter(|s| s.route.same_route(&admitted.route) && !s.ending());
        if let Some(s) = running(self) {
            *lock(&s.last_request) = Instant::now();
            return Ok(s);
        }
        let _starting = self.starting.lock().await;
        if let Some(s) = running(self) {
            return Ok(s);
        }
        let reader = admitted.route.add_reader(ReaderKind::Hls, None).await?;
        let stream = Arc::new(Stream {
            route: admitted.route.clone(),
            reader: reader.id(),
            media: Mutex::new(Media::new(self.settings)),
            changed: watch::channel(0).0,
            sessions: Mutex::default(),
            last_request: Mutex::new(Instant::now()),
            problem: Mutex::new(None),
        });
        lock(&self.streams).insert(name.clone(), Arc::clone(&stream));
        tracing::info!(route = %name, "HLS muxer started");
        tokio::spawn(run(Arc::clone(&stream), reader, self.settings, self.clone(), name));
        Ok(stream)
    }

    /// The running muxer of a route, if any.
    pub fn running(&self, route: &str) -> Option<Arc<Stream>> {
        lock(&self.streams).get(route).cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One route's muxer output and its viewers.
#[derive(Debug)]
pub struct Stream {
    route: RouteHandle,
    /// The muxer's route reader, which viewers are counted on.
    reader: crate::route::reader::ReaderId,
    media: Mutex<Media>,
    /// Bumped after every change to `media`.
    changed: watch::Sender<u64>,
    sessions: Mutex<HashMap<String, Session>>,
    last_request: Mutex<Instant>,
    /// Why nothing can be muxed (no playable track), while that holds.
    problem: Mutex<Option<String>>,
}

#[derive(Debug)]
struct Session {
    last_seen: Instant,
    _ticket: ViewerTicket,
}

impl Stream {
    /// Opens a viewer session (one per multivariant playlist request), counted against `max_readers`.
    pub async fn open_session(&self) -> Result<String, HlsError> {
        if self.ending() {
            return Err(HlsError::NotReady("the route's HLS output just stopped: ask again".into()));
        }
        let ticket = self.route.admit_viewer(self.reader).await?;
        let id = crate::webrtc::random_hex(16);
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS {
            // The oldest goes: a client minting sessions pushes out its own, not live viewers who keep theirs fresh.
            if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone()) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), Session { last_seen: Instant::now(), _ticket: ticket });
        *lock(&self.last_request) = Instant::now();
        Ok(id)
    }

    /// Checks a viewer's session and notes that it is alive.
    pub fn touch(&self, session: &str) -> Result<(), HlsError> {
        let mut sessions = lock(&self.sessions);
        let s = sessions.get_mut(session).ok_or(HlsError::NoSession)?;
        s.last_seen = Instant::now();
        *lock(&self.last_request) = Instant::now();
        Ok(())
    }

    /// Reads the media now.
    pub fn with_media<T>(&self, f: impl FnOnce(&Media) -> T) -> T {
        f(&lock(&self.media))
    }

    /// Whether the muxer has stopped (or is stopping): no new viewer joins it.
    pub fn ending(&self) -> bool {
        lock(&self.media).ended
    }

    /// Why the route cannot be muxed, if it cannot.
    pub fn problem(&self) -> Option<String> {
        lock(&self.problem).clone()
    }

    /// Waits until `ready` holds of the media (checked after every change) or `limit` passes; returns its last
    /// answer.
    pub async fn wait_for<T>(&self, limit: Duration, mut ready: impl FnMut(&Media) -> Option<T>) -> Option<T> {
        let mut changed = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(v) = ready(&lock(&self.media)) {
                return Some(v);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the muxer ended (its last state was checked above).
                _ => return ready(&lock(&self.media)),
            }
        }
    }

    fn apply(&self, events: Vec<muxer::Event>) {
        if events.is_empty() {
            return;
        }
        let mut media = lock(&self.media);
        for e in events {
            media.apply(e);
        }
        drop(media);
        self.changed.send_modify(|v| *v += 1);
    }

    fn set_problem(&self, problem: Option<String>) {
        *lock(&self.problem) = problem;
        self.changed.send_modify(|v| *v += 1);
    }
}

/// The muxer task: reads the route until it ends or no viewer is left.
async fn run(stream: Arc<Stream>, mut reader: RouteReader, settings: Settings, hls: Hls, name: String) {
    let mut muxer: Option<Muxer> = None;
    // Track versions a muxer could not start on: only a new one is worth another try.
    let mut tried: Vec<Arc<crate::media::Track>> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut keyframe_asked: Option<Instant> = None;
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            frame = reader.recv() => {
                let Some(frame) = frame else { break };
                let date = frame.wallclock.unwrap_or_else(|| SystemTime::now() - frame.received.elapsed());
                if muxer.is_none() && !tried.iter().any(|t| Arc::ptr_eq(t, &frame.track)) {
                    // The first frame (or the first of a new track): the route's tracks are known now.
                    let mut tracks = stream.route.tracks().await.unwrap_or_default();
                    if !tracks.iter().any(|t| t.id == frame.track.id) {
                        tracks.push(Arc::clone(&frame.track));
                    }
                    match Muxer::new(settings, &tracks) {
                        Ok((m, events)) => {
                            stream.set_problem(None);
                            stream.apply(events);
                            muxer = Some(m);
                        }
                        Err(why) => {
                            tried.retain(|t| t.id != frame.track.id);
                            tried.push(Arc::clone(&frame.track));
                            if stream.problem().is_none() {
                                tracing::warn!(route = %name, "HLS: {why}");
                                stream.set_problem(Some(why.to_string()));
                            }
                            continue;
                        }
                    }
                }
                if let Some(m) = &mut muxer {
                    stream.apply(m.push(&frame, date));
                    // Segments start on keyframes; WebRTC publishers send one only when asked. The route forwards
                    // at most one request per interval; this keeps from asking on every frame.
                    if m.wants_keyframe() && keyframe_asked.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
                        stream.route.request_keyframe();
                        keyframe_asked = Some(Instant::now());
                    }
                }
            }
            _ = tick.tick() => {
                // Players of long segments reload once a segment, and a blocked reload may wait three.
                let idle = SESSION_IDLE.max(lock(&stream.media).hold_limit() + Duration::from_secs(5));
                lock(&stream.sessions).retain(|_, s| s.last_seen.elapsed() < idle);
                let idle = lock(&stream.last_request).elapsed();
                if lock(&stream.sessions).is_empty() && idle >= MUXER_IDLE {
                    break;
                }
            }
        }
    }
    if let Some(m) = &mut muxer {
        stream.apply(m.finish());
    }
    {
        // Under the registry's lock: a request finds either this stream ending or none, and starts a new one.
        let mut streams = lock(&hls.streams);
        lock(&stream.media).ended = true;
        if streams.get(&name).is_some_and(|s| Arc::ptr_eq(s, &stream)) {
            streams.remove(&name);
        }
    }
    lock(&stream.sessions).clear();
    stream.changed.send_modify(|v| *v += 1);
    tracing::info!(route = %name, "HLS muxer stopped");
}
