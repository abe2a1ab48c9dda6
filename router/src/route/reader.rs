//! Readers: a bounded queue per reader and the drop-to-next-keyframe policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::config::model::{Output, RouteConfig};
use crate::media::Frame;

/// Which kind of output a reader serves; a reload that removes an output from `to` ends its readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReaderKind {
    Whep,
    /// The route's HLS muxer, which serves every HLS viewer (counted as viewers on it).
    Hls,
    Rtsp,
    Rtmp,
    Record,
    Push,
    /// The HTTP frame tap (`GET /v1/routes/{name}/frames`) and in-process tools; always allowed.
    Api,
}

impl ReaderKind {
    /// Readers of this kind get the route's frames in bunches ([`crate::route::bunch`]).
    pub fn served_in_bunches(self) -> bool {
        matches!(self, ReaderKind::Rtmp | ReaderKind::Rtsp)
    }

    /// The kind of reader an output of `to` serves.
    pub fn of(output: &Output) -> ReaderKind {
        match output {
            Output::Whep => ReaderKind::Whep,
            Output::Hls => ReaderKind::Hls,
            Output::Rtsp => ReaderKind::Rtsp,
            Output::Rtmp => ReaderKind::Rtmp,
            Output::Record { .. } => ReaderKind::Record,
            Output::Push(_) => ReaderKind::Push,
        }
    }

    /// Whether a reader of this kind may attach to a route with this configuration, given its `to`.
    pub fn allowed_by(self, config: &RouteConfig) -> bool {
        // Recordings are started and stopped by the runtime (`to` and `POST /v1/routes/{name}/record`), not here.
        config.to.iter().any(|o| ReaderKind::of(o) == self) || matches!(self, ReaderKind::Api | ReaderKind::Record)
    }
}

pub type ReaderId = u64;

/// Counters a reader shares with its route, readable without messaging the actor.
#[derive(Debug, Default)]
pub struct ReaderCounters {
    /// Viewers served through this reader when it fans out further (a WebRTC shard); 0 for a plain reader.
    pub viewers: std::sync::atomic::AtomicUsize,
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
}

/// What happened to a frame offered to a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// Dropped: the queue was full now or earlier and no sync point has come since.
    Dropped,
    /// The reader is gone; remove it.
    Closed,
}

/// The route's side of one reader.
#[derive(Debug)]
pub struct ReaderSlot {
    pub id: ReaderId,
    pub kind: ReaderKind,
    pub remote: Option<String>,
    tx: mpsc::Sender<Arc<Frame>>,
    /// Set when the queue overflowed: everything up to the next sync point is dropped, so the reader resumes
    /// on a frame its decoder can start from instead of a picture referencing frames it never got.
    skipping: bool,
    pub counters: Arc<ReaderCounters>,
}

impl ReaderSlot {
    /// Offers a frame without ever waiting.
    pub fn offer(&mut self, frame: &Arc<Frame>, sync_point: bool) -> Offer {
        if self.skipping && !sync_point {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Offer::Dropped;
        }
        match self.tx.try_send(Arc::clone(frame)) {
            Ok(()) => {
                self.skipping = false;
                self.counters.frames.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes.fetch_add(frame.data.len() as u64, Ordering::Relaxed);
                Offer::Queued
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.skipping = true;
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                Offer::Dropped
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Drop everything until the next sync point: the source changed, and what follows may reference frames of
    /// a stream this reader never saw.
    pub fn resync(&mut self) {
        self.skipping = true;
    }
}

/// A consumer of a route's frames. Dropping it leaves the route.
pub struct RouteReader {
    id: ReaderId,
    rx: mpsc::Receiver<Arc<Frame>>,
    counters: Arc<ReaderCounters>,
    leave: Option<Box<dyn FnOnce(ReaderId) + Send + Sync>>,
}

impl std::fmt::Debug for RouteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteReader").field("id", &self.id).field("queued", &self.rx.len()).finish()
    }
}

impl RouteReader {
    /// The next frame; `None` once the route ended or dropped this reader (its output was removed).
    pub async fn recv(&mut self) -> Option<Arc<Frame>> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Option<Arc<Frame>> {
        self.rx.try_recv().ok()
    }

    pub fn id(&self) -> ReaderId {
        self.id
    }

    /// Frames this reader lost to its full queue so far.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for RouteReader {
    fn drop(&mut self) {
        if let Some(leave) = self.leave.take() {
            leave(self.id);
        }
    }
}

/// Makes the two ends of a reader queue holding at most `capacity` frames.
pub fn reader_pair(
    id: ReaderId,
    kind: ReaderKind,
    remote: Option<String>,
    capacity: usize,
    leave: Box<dyn FnOnce(ReaderId) + Send + Sync>,
) -> (ReaderSlot, RouteReader) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let counters = Arc::new(ReaderCounters::default());
    // A new reader starts skipping: its first frame must be one a decoder can start from.
    let slot = ReaderSlot { id, kind, remote, tx, skipping: true, counters: Arc::clone(&counters) };
    (slot, RouteReader { id, rx, counters, leave: Some(leave) })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::{Codec, CodecParams, Track, TrackId};
    use bytes::Bytes;
    use std::sync::OnceLock;

    pub(crate) fn video_track() -> Arc<Track> {
        static TRACK: OnceLock<Arc<Track>> = OnceLock::new();
        Arc::clone(TRACK.get_or_init(|| {
            Arc::new(Track {
                id: TrackId(0),
                codec: Codec::H264,
                clock_rate: 90_000,
                params: CodecParams::None,
                description: String::new(),
            })
        }))
    }

    pub(crate) fn video_frame(pts: i64, keyframe: bool) -> Arc<Frame> {
        Arc::new(Frame {
            track: video_track(),
            pts,
            dts: pts,
            keyframe,
            data: Bytes::from_static(b"frame"),
            received: std::time::Instant::now(),
            wallclock: None,
            forms: Default::default(),
        })
    }

    /// An Opus frame on track 1 (48 kHz).
    pub(crate) fn audio_frame(dts: i64, data: &'static [u8]) -> Frame {
        let track = Arc::new(Track {
            id: TrackId(1),
            codec: Codec::Opus,
            clock_rate: 48_000,
            params: CodecParams::None,
            description: String::new(),
        });
        Frame {
            track,
            pts: dts,
            dts,
            keyframe: true,
            data: Bytes::from_static(data),
            received: std::time::Instant::now(),
            wallclock: None,
            forms: Default::default(),
        }
    }

    fn pair(capacity: usize) -> (ReaderSlot, RouteReader) {
        reader_pair(1, ReaderKind::Api, None, capacity, Box::new(|_| {}))
    }

    #[test]
    fn full_queue_drops_until_the_next_keyframe() {
        let (mut slot, mut reader) = pair(2);
        assert_eq!(slot.offer(&video_frame(0, true), true), Offer::Queued);
        assert_eq!(slot.offer(&video_frame(1, false), false), Offer::Queued);
        assert_eq!(slot.offer(&video_frame(2, false), false), Offer::Dropped, "queue full");
        // The reader catches up, but frame 3 references frame 2, which it never got: still dropped.
        assert!(reader.try_recv().is_some());
        assert!(reader.try_recv().is_some());
        assert_eq!(slot.offer(&video_frame(3, false), false), Offer::Dropped);
        assert_eq!(slot.offer(&video_frame(4, true), true), Offer::Queued);
        assert_eq!(reader.try_recv().map(|f| f.pts), Some(4));
        assert_eq!(reader.dropped(), 2);
    }

    #[test]
    fn a_new_reader_waits_for_a_keyframe() {
        let (mut slot, mut reader) = pair(4);
        assert_eq!(slot.offer(&video_frame(0, false), false), Offer::Dropped);
        assert_eq!(slot.offer(&video_frame(1, true), true), Offer::Queued);
        slot.resync();
        assert_eq!(slot.offer(&video_frame(2, false), false), Offer::Dropped);
        assert_eq!(reader.try_recv().map(|f| f.pts), Some(1));
        assert!(reader.try_recv().is_none());
    }

    #[test]
    fn a_dropped_reader_reports_closed() {
        let (mut slot, reader) = pair(2);
        drop(reader);
        assert_eq!(slot.offer(&video_frame(0, true), true), Offer::Closed);
    }

    #[test]
    fn dropping_a_reader_calls_leave_once() {
        let left = Arc::new(AtomicU64::new(0));
        let l = Arc::clone(&left);
        let (_slot, reader) =
            reader_pair(7, ReaderKind::Api, None, 1, Box::new(move |id| l.store(id, Ordering::SeqCst)));
        drop(reader);
        assert_eq!(left.load(Ordering::SeqCst), 7);
    }
}
