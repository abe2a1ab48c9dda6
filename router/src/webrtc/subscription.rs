//! One route reader per route with WebRTC viewers, however many viewers on however many shards. A route's frames
//! are made ready for WebRTC here, once: AAC transcoded to Opus (while a viewer takes audio), RTP payloads made
//! (`Frame::rtp`), each frame numbered, dated on the route's media clock and kept in the GOP that new viewers are
//! sent first. Every shard with a viewer of the route is then handed the same `Arc`s: nothing is copied per shard
//! or per viewer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::media_clock::MediaClock;
use crate::config::model::RouteName;
use crate::media::{Codec, Frame, MediaKind};
use crate::route::gop::{GopCache, GopLimits};
use crate::route::reader::ReaderId;
use crate::route::{ReaderKind, RouteError, RouteHandle};
use crate::transcode::ToOpus;

/// What a newly connected viewer is sent at once: the route's frames since its last keyframe, at most 800 frames
/// and what a viewer can take in one burst without overflowing socket buffers (~4 s of a 4 Mbit/s stream).
/// Longer GOPs (browsers publishing without periodic keyframes) make new viewers ask the publisher for a keyframe
/// instead.
const REPLAY_LIMITS: GopLimits = GopLimits { max_frames: 800, max_bytes: 2 << 20 };

/// A route frame for a shard, ready to send: its RTP form is made, `seq` numbers it within the subscription and
/// `wallclock` is its time on the route's media clock.
#[derive(Debug)]
pub struct ShardFrame {
    pub sub: Arc<Subscription>,
    pub frame: Arc<Frame>,
    pub seq: u64,
    pub wallclock: Instant,
}

/// Forwards a route's frames to the shards while any viewer holds it; dropping the last `Arc` ends the reader.
#[derive(Debug)]
pub struct Subscription {
    pub route: RouteHandle,
    pub name: RouteName,
    pub reader: ReaderId,
    task: std::sync::OnceLock<JoinHandle<()>>,
    /// Viewers whose audio line takes Opus: the route's AAC audio is transcoded while there is one.
    opus_viewers: AtomicUsize,
    /// Viewers per shard: a frame goes to the shards that have one.
    shard_viewers: Box<[AtomicUsize]>,
    timeline: Mutex<Timeline>,
}

/// The route as WebRTC viewers see it: frames numbered in order, their clock, and the GOP to replay.
#[derive(Debug)]
struct Timeline {
    gop: GopCache,
    clock: MediaClock,
    seq: u64,
}

/// A viewer's demand for the route's audio as Opus, held for the life of its session.
#[derive(Debug)]
pub struct OpusDemand(Arc<Subscription>);

impl Drop for OpusDemand {
    fn drop(&mut self) {
        self.0.opus_viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A viewer on a shard: the route's frames go to that shard while it holds one.
#[derive(Debug)]
pub struct ShardDemand {
    sub: Arc<Subscription>,
    shard: usize,
}

impl Drop for ShardDemand {
    fn drop(&mut self) {
        if let Some(n) = self.sub.shard_viewers.get(self.shard) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Subscription {
    /// Attaches a WHEP reader to `route` and starts forwarding into the shards' frame queues (`shards`, one per
    /// shard, by index). The forwarder holds only a weak reference, so the subscription ends with its last viewer.
    pub async fn start(
        route: &RouteHandle,
        shards: Vec<mpsc::Sender<ShardFrame>>,
    ) -> Result<Arc<Subscription>, RouteError> {
        let mut reader = route.add_reader(ReaderKind::Whep, Some("webrtc".into())).await?;
        let sub = Arc::new(Subscription {
            route: route.clone(),
            name: route.name().clone(),
            reader: reader.id(),
            task: std::sync::OnceLock::new(),
            opus_viewers: AtomicUsize::new(0),
            shard_viewers: shards.iter().map(|_| AtomicUsize::new(0)).collect(),
            timeline: Mutex::new(Timeline { gop: GopCache::new(REPLAY_LIMITS), clock: MediaClock::default(), seq: 0 }),
        });
        let weak = Arc::downgrade(&sub);
        let task = tokio::spawn(async move {
            let mut to_opus = ToOpus::default();
            let mut targets = Vec::with_capacity(shards.len());
            while let Some(frame) = reader.recv().await {
                let Some(sub) = weak.upgrade() else { return };
                if frame.track.codec == Codec::Aac {
                    if sub.opus_viewers.load(Ordering::Relaxed) == 0 {
                        to_opus.stop();
                        continue;
                    }
                    for opus in to_opus.convert(sub.name.as_str(), &frame).unwrap_or_default() {
                        if !sub.forward(Arc::new(opus), &shards, &mut targets).await {
                            return;
                        }
                    }
                    continue;
                }
                if !sub.forward(frame, &shards, &mut targets).await {
                    return;
                }
            }
        });
        let _ = sub.task.set(task);
        Ok(sub)
    }

    /// Numbers, dates and keeps one frame, then hands it to every shard with a viewer; `false` once the shards
    /// are gone. Waiting on a shard that is behind fills this reader's queue at the route, which then drops to the
    /// next keyframe for the route's WebRTC viewers: overload degrades, never stalls the route or other readers.
    async fn forward(
        self: &Arc<Self>,
        frame: Arc<Frame>,
        shards: &[mpsc::Sender<ShardFrame>],
        targets: &mut Vec<usize>,
    ) -> bool {
        // Codecs WebRTC cannot carry (AAC, H.265) are neither packetized nor kept for new viewers; the rest are
        // packetized here, once, before any shard sees them.
        let webrtc_codec =
            matches!(frame.track.codec, Codec::H264 | Codec::Vp8 | Codec::Opus | Codec::Pcmu | Codec::Pcma);
        if !webrtc_codec || frame.rtp().is_none() {
            return true;
        }
        let now = Instant::now();
        let (seq, wallclock) = {
            let mut t = self.timeline.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // The GOP starts at a video keyframe; audio-only routes keep none (every audio frame stands alone).
            // One too long to replay is dropped: new viewers then wait for (and ask for) a keyframe.
            t.gop.push(&frame, frame.kind() == MediaKind::Video && frame.keyframe);
            t.seq += 1;
            // Read under the lock that `replay` takes: a viewer replayed before this frame was numbered is counted
            // here, so the frame reaches it; one replayed after has the frame in its replay.
            targets.clear();
            targets.extend(
                self.shard_viewers.iter().enumerate().filter(|(_, n)| n.load(Ordering::Relaxed) > 0).map(|(i, _)| i),
            );
            (t.seq, t.clock.wallclock(&frame, now))
        };
        for &shard in targets.iter() {
            let item = ShardFrame { sub: Arc::clone(self), frame: Arc::clone(&frame), seq, wallclock };
            if shards[shard].send(item).await.is_err() {
                return false;
            }
        }
        true
    }

    /// The frames a viewer connecting now is sent first (since the last keyframe, each with its time on the
    /// route's clock) and the number of the last of them: the viewer skips frames up to it that reach its shard
    /// afterwards.
    pub fn replay(&self, now: Instant) -> (Vec<(Arc<Frame>, Instant)>, u64) {
        let t = self.timeline.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let frames = t.gop.frames().iter().map(|f| (Arc::clone(f), t.clock.peek(f, now))).collect();
        (frames, t.seq)
    }

    /// Registers a viewer that takes Opus audio until the returned demand is dropped.
    pub fn demand_opus(self: &Arc<Self>) -> OpusDemand {
        self.opus_viewers.fetch_add(1, Ordering::Relaxed);
        OpusDemand(Arc::clone(self))
    }

    /// Registers a viewer on `shard`: the route's frames go there until the returned demand is dropped.
    pub fn attach(self: &Arc<Self>, shard: usize) -> ShardDemand {
        if let Some(n) = self.shard_viewers.get(shard) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        ShardDemand { sub: Arc::clone(self), shard }
    }

    /// Whether the route still feeds this subscription (it ends when the route does).
    pub fn is_alive(&self) -> bool {
        self.task.get().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}
