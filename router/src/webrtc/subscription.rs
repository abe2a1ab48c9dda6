//! One route reader per route with WebRTC viewers: frames cross into the shard once, however many viewers, and
//! AAC audio is transcoded to Opus here, once for all of them, while one of them takes audio.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::model::RouteName;
use crate::media::{Codec, Frame};
use crate::route::reader::ReaderId;
use crate::route::{ReaderKind, RouteError, RouteHandle};
use crate::transcode::ToOpus;

/// A frame for the shard, tagged with the subscription it came through.
pub type ShardFrame = (Arc<Subscription>, Arc<Frame>);

/// Forwards a route's frames to the shard while any viewer holds it; dropping the last `Arc` ends the reader.
#[derive(Debug)]
pub struct Subscription {
    pub route: RouteHandle,
    pub name: RouteName,
    pub reader: ReaderId,
    task: std::sync::OnceLock<JoinHandle<()>>,
    /// Viewers whose audio line takes Opus: the route's AAC audio is transcoded while there is one.
    opus_viewers: AtomicUsize,
}

/// A viewer's demand for the route's audio as Opus, held for the life of its session.
#[derive(Debug)]
pub struct OpusDemand(Arc<Subscription>);

impl Drop for OpusDemand {
    fn drop(&mut self) {
        self.0.opus_viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Subscription {
    /// Attaches a WHEP reader to `route` and starts forwarding into `frames`. The forwarder holds only a weak
    /// reference, so the subscription ends with its last viewer.
    pub async fn start(route: &RouteHandle, frames: mpsc::Sender<ShardFrame>) -> Result<Arc<Subscription>, RouteError> {
        let mut reader = route.add_reader(ReaderKind::Whep, Some("webrtc".into())).await?;
        let sub = Arc::new(Subscription {
            route: route.clone(),
            name: route.name().clone(),
            reader: reader.id(),
            task: std::sync::OnceLock::new(),
            opus_viewers: AtomicUsize::new(0),
        });
        let weak = Arc::downgrade(&sub);
        let task = tokio::spawn(async move {
            let mut to_opus = ToOpus::default();
            while let Some(frame) = reader.recv().await {
                let Some(sub) = weak.upgrade() else { return };
                if frame.track.codec == Codec::Aac {
                    if sub.opus_viewers.load(Ordering::Relaxed) == 0 {
                        to_opus.stop();
                        continue;
                    }
                    for opus in to_opus.convert(sub.name.as_str(), &frame).unwrap_or_default() {
                        if frames.send((Arc::clone(&sub), Arc::new(opus))).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                // Waiting here when the shard is behind fills this reader's queue at the route, which then drops
                // to the next keyframe for all of this shard's viewers of the route: overload degrades, never
                // stalls the route or other readers.
                if frames.send((sub, frame)).await.is_err() {
                    return;
                }
            }
        });
        let _ = sub.task.set(task);
        Ok(sub)
    }

    /// Registers a viewer that takes Opus audio until the returned demand is dropped.
    pub fn demand_opus(self: &Arc<Self>) -> OpusDemand {
        self.opus_viewers.fetch_add(1, Ordering::Relaxed);
        OpusDemand(Arc::clone(self))
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
