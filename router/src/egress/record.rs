//! One recording of one route with one sink plugin: a route reader, a batcher and a writer.
//!
//! ```text
//! route ──frames──▶ batcher (async task) ──batches, bounded queue──▶ writer (plugin calls on blocking threads)
//! ```
//!
//! The batcher always drains the route reader, so the route never waits for the recorder. It groups frames into
//! one payload plus a sample index (flushed every [`FLUSH_EVERY`] or at [`FLUSH_BYTES`]): one plugin call per
//! batch, not per frame, and the payload stays in the router (the plugin gets a handle and has the storage write
//! ranges of it). When the writer falls behind and the queue is full, the batch is dropped
//! (counted) and the batcher skips to the next keyframe. A recorder that fails (the plugin refuses, traps, times
//! out) ends its session; what it left uncommitted goes through the plugin's `recover`, and a new session starts
//! after a backoff, at a keyframe.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::backoff::Backoff;
use crate::media::{Codec, Frame, MediaKind, Payload, Track, TrackId};
use crate::plugin::LoadedPlugin;
use crate::plugin::sink::{self, RecorderError, RecorderSession};
use crate::route::{ReaderKind, RouteHandle};

/// A batch is handed to the plugin after this long...
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// ...or once it holds this many bytes.
pub const FLUSH_BYTES: usize = 1 << 20;
/// Batches waiting for the writer; beyond it they are dropped (about 2 s of media).
const QUEUE_BATCHES: usize = 8;

/// How a recording is doing, for the API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecordingStatus {
    pub plugin: String,
    /// "starting", "recording", "retrying" (after a failure) or "stopped".
    pub state: &'static str,
    /// Started from the API rather than by the route's `to`.
    pub started_by_api: bool,
    pub frames: u64,
    pub bytes: u64,
    pub batches: u64,
    /// Frames not recorded because the recorder fell behind or was restarting.
    pub frames_dropped: u64,
    /// Sessions that ended in a failure.
    pub failures: u64,
    pub last_error: Option<String>,
}

/// A running recording. Dropping it stops the recording cleanly (the current segment is committed).
#[derive(Debug)]
pub struct Recording {
    plugin: watch::Sender<Option<Arc<LoadedPlugin>>>,
    pub status: Arc<Mutex<RecordingStatus>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Recording {
    /// Starts recording `route` with `plugin` (a sink).
    pub fn start(route: RouteHandle, plugin_name: &str, plugin: Arc<LoadedPlugin>, started_by_api: bool) -> Recording {
        let status = Arc::new(Mutex::new(RecordingStatus {
            plugin: plugin_name.to_string(),
            state: "starting",
            started_by_api,
            ..Default::default()
        }));
        let (tx, rx) = watch::channel(Some(plugin));
        let task = tokio::spawn(run(route, rx, Arc::clone(&status)));
        Recording { plugin: tx, status, task }
    }

    /// A new version of the plugin (a reload changed it): the current session ends at the next keyframe and
    /// the next one runs on the new version.
    pub fn switch_plugin(&self, plugin: &Arc<LoadedPlugin>) {
        self.plugin.send_if_modified(|current| {
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, plugin)) {
                return false;
            }
            *current = Some(Arc::clone(plugin));
            true
        });
    }

    /// Stops the recording; the task finishes the current segment and ends.
    pub fn stop(&self) {
        let _ = self.plugin.send(None);
    }

    pub fn status(&self) -> RecordingStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the batcher sends the writer.
enum Job {
    Write {
        batch: sink::MediaBatch,
        frames: u64,
        tracks: Arc<[Arc<Track>]>,
    },
    /// End the session (plugin switched); the next batch opens a new one.
    Rotate,
}

async fn run(
    route: RouteHandle,
    mut plugin: watch::Receiver<Option<Arc<LoadedPlugin>>>,
    status: Arc<Mutex<RecordingStatus>>,
) {
    let mut reader = match route.add_reader(ReaderKind::Record, None).await {
        Ok(r) => r,
        Err(e) => {
            set(&status, |s| {
                s.state = "stopped";
                s.last_error = Some(e.to_string());
            });
            return;
        }
    };
    let (jobs, queue) = mpsc::channel(QUEUE_BATCHES);
    let writer = tokio::spawn(write(queue, plugin.clone(), Arc::clone(&status), route.name().to_string()));
    let mut batcher = Batcher::default();
    let mut tick = tokio::time::interval(FLUSH_EVERY / 5);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rotate = false;
    loop {
        tokio::select! {
            frame = reader.recv() => {
                let Some(frame) = frame else { break };
                if rotate && batcher.sync_point(&frame) {
                    send(&jobs, &mut batcher, &status);
                    if jobs.send(Job::Rotate).await.is_err() {
                        break;
                    }
                    rotate = false;
                }
                // A parameter change starts a new batch: the plugin learns of it before the frames that need it.
                if batcher.tracks.get(&frame.track.id).is_some_and(|t| !Arc::ptr_eq(t, &frame.track)) {
                    send(&jobs, &mut batcher, &status);
                }
                if batcher.push(&frame) {
                    send(&jobs, &mut batcher, &status);
                }
                if jobs.is_closed() {
                    // The writer is gone (it never should be): stop rather than batch for nobody.
                    tracing::error!(route = %route.name(), "recording writer ended; recording stopped");
                    break;
                }
            }
            _ = tick.tick() => {
                if batcher.started.is_some_and(|t| t.elapsed() >= FLUSH_EVERY) {
                    send(&jobs, &mut batcher, &status);
                }
            }
            changed = plugin.changed() => {
                if changed.is_err() || plugin.borrow_and_update().is_none() {
                    break;
                }
                rotate = true;
            }
        }
    }
    // Stopped or the route ended: what is batched is written, then the writer finishes the segment.
    if !batcher.samples.is_empty() {
        let _ = jobs.send(batcher.take()).await;
    }
    drop(jobs);
    let _ = writer.await;
    set(&status, |s| s.state = "stopped");
}

/// Queues the current batch without waiting: a full queue drops it and the batcher resyncs on a keyframe.
fn send(jobs: &mpsc::Sender<Job>, batcher: &mut Batcher, status: &Mutex<RecordingStatus>) {
    if batcher.samples.is_empty() {
        return;
    }
    let job = batcher.take();
    if let Err(mpsc::error::TrySendError::Full(Job::Write { frames, .. })) = jobs.try_send(job) {
        batcher.skip_to_keyframe = true;
        set(status, |s| s.frames_dropped += frames);
        tracing::warn!(frames, "recorder falling behind: a batch was dropped");
    }
}

fn set(status: &Mutex<RecordingStatus>, f: impl FnOnce(&mut RecordingStatus)) {
    f(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
}

/// `data` (the bytes of `samples`, in the same order) as one payload laid out by track, in `tracks` order, each
/// track's samples in arrival order; sets each sample's offset. Nothing is copied. `tracks` must name every
/// sample's track once: the payload then holds exactly the samples' bytes, as WIT `media.batch` promises. Public
/// for the benchmark, which times it as part of the plugin path.
pub fn lay_out(samples: &mut [sink::Sample], data: &[bytes::Bytes], tracks: impl Iterator<Item = u32>) -> Payload {
    let mut payload = Payload::with_capacity(data.len());
    for track in tracks {
        for (sample, data) in samples.iter_mut().zip(data).filter(|(s, _)| s.track == track) {
            sample.offset = payload.len() as u32;
            payload.push(data.clone());
        }
    }
    payload
}

/// Frames collected into one payload and its sample index.
#[derive(Default)]
struct Batcher {
    /// The bytes of each sample, shared with the route (never copied): when the batch is sent they are laid end to
    /// end in one payload, track by track, so a track's samples form one range (a sink names it as one piece).
    data: Vec<bytes::Bytes>,
    bytes: usize,
    /// In arrival order; offsets are set when the payload is laid out.
    samples: Vec<sink::Sample>,
    /// The latest version of every track seen, by id.
    tracks: BTreeMap<TrackId, Arc<Track>>,
    tracks_sent: Option<Arc<[Arc<Track>]>>,
    started: Option<Instant>,
    /// After a dropped batch: nothing until the next video keyframe.
    skip_to_keyframe: bool,
}

impl Batcher {
    /// Adds a frame; true when the batch should be flushed now.
    fn push(&mut self, frame: &Frame) -> bool {
        if self.skip_to_keyframe {
            if !self.sync_point(frame) {
                return false;
            }
            self.skip_to_keyframe = false;
        }
        if u32::try_from(self.bytes + frame.data.len()).is_err() {
            return true;
        }
        let Ok(len) = u32::try_from(frame.data.len()) else { return false };
        if self.tracks.get(&frame.track.id).is_none_or(|t| !Arc::ptr_eq(t, &frame.track)) {
            self.tracks.insert(frame.track.id, Arc::clone(&frame.track));
            self.tracks_sent = None;
        }
        self.data.push(frame.data.clone());
        self.bytes += frame.data.len();
        let wallclock = frame.wallclock.unwrap_or_else(|| SystemTime::now() - frame.received.elapsed());
        self.samples.push(sink::Sample {
            track: frame.track.id.0,
            pts: frame.pts,
            dts: frame.dts,
            keyframe: frame.keyframe,
            offset: 0,
            len,
            wallclock_ms: wallclock.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_millis() as u64),
        });
        self.started.get_or_insert_with(Instant::now);
        self.bytes >= FLUSH_BYTES
    }

    /// Where a recording can resume: a video keyframe, or any frame of a route without video.
    fn sync_point(&self, frame: &Frame) -> bool {
        match frame.kind() {
            MediaKind::Video => frame.keyframe,
            MediaKind::Audio => !self.tracks.values().any(|t| t.kind() == MediaKind::Video),
        }
    }

    fn take(&mut self) -> Job {
        let tracks = match &self.tracks_sent {
            Some(t) => Arc::clone(t),
            None => {
                let t: Arc<[Arc<Track>]> = self.tracks.values().cloned().collect();
                self.tracks_sent = Some(Arc::clone(&t));
                t
            }
        };
        self.started = None;
        let frames = self.samples.len() as u64;
        let payload = lay_out(&mut self.samples, &self.data, self.tracks.keys().map(|t| t.0));
        self.data.clear();
        self.bytes = 0;
        let batch = sink::MediaBatch { payload, samples: std::mem::take(&mut self.samples) };
        Job::Write { batch, frames, tracks }
    }
}

/// The open session and the tracks it was told about.
struct Open {
    session: RecorderSession,
    tracks: Arc<[Arc<Track>]>,
    plugin: Arc<LoadedPlugin>,
}

async fn write(
    mut jobs: mpsc::Receiver<Job>,
    plugin: watch::Receiver<Option<Arc<LoadedPlugin>>>,
    status: Arc<Mutex<RecordingStatus>>,
    route: String,
) {
    let mut open: Option<Open> = None;
    let mut backoff = Backoff::default();
    let mut retry_at: Option<Instant> = None;
    let mut opened_at = Instant::now();
    while let Some(job) = jobs.recv().await {
        let (batch, frames, tracks) = match job {
            Job::Write { batch, frames, tracks } => (batch, frames, tracks),
            Job::Rotate => {
                if let Some(o) = open.take() {
                    finish(o, &status, &route).await;
                }
                continue;
            }
        };
        if open.is_none() {
            if retry_at.is_some_and(|t| Instant::now() < t) {
                set(&status, |s| s.frames_dropped += frames);
                continue;
            }
            let Some(current) = plugin.borrow().clone() else { break };
            let route_name = route.clone();
            let wit_tracks = tracks.iter().map(|t| wit_track(t)).collect::<Vec<_>>();
            let p = Arc::clone(&current);
            let opened = blocking(move || match p.plugin.as_sink() {
                Some(s) => s.open(&route_name, &wit_tracks),
                None => Err(RecorderError::Refused("the plugin is not a sink".to_string())),
            })
            .await;
            match opened {
                Ok(session) => {
                    open = Some(Open { session, tracks: Arc::clone(&tracks), plugin: current });
                    opened_at = Instant::now();
                    retry_at = None;
                    set(&status, |s| s.state = "recording");
                }
                Err(e) => {
                    failed(e, &current, &mut backoff, None, &mut retry_at, &status, &route).await;
                    set(&status, |s| s.frames_dropped += frames);
                    continue;
                }
            }
        }
        let Some(mut o) = open.take() else { continue };
        let changed =
            o.tracks.len() != tracks.len() || o.tracks.iter().zip(tracks.iter()).any(|(a, b)| !Arc::ptr_eq(a, b));
        let bytes = batch.payload.len() as u64;
        let (o_back, result) = blocking(move || {
            let mut result = Ok(());
            if changed {
                let wit_tracks = tracks.iter().map(|t| wit_track(t)).collect::<Vec<_>>();
                result = o.session.update_tracks(&wit_tracks);
                o.tracks = tracks;
            }
            if result.is_ok() {
                result = o.session.write(batch);
            }
            (o, result)
        })
        .await;
        match result {
            Ok(()) => {
                open = Some(o_back);
                set(&status, |s| {
                    s.frames += frames;
                    s.bytes += bytes;
                    s.batches += 1;
                });
            }
            Err(e) => {
                let plugin = Arc::clone(&o_back.plugin);
                drop(o_back);
                failed(e, &plugin, &mut backoff, Some(opened_at.elapsed()), &mut retry_at, &status, &route).await;
                set(&status, |s| s.frames_dropped += frames);
            }
        }
    }
    if let Some(o) = open.take() {
        finish(o, &status, &route).await;
    }
}

async fn finish(open: Open, status: &Mutex<RecordingStatus>, route: &str) {
    let plugin = Arc::clone(&open.plugin);
    let result = blocking(move || open.session.finish()).await;
    if let Err(e) = result {
        tracing::warn!(route, error = %e, "recorder could not finish its segment");
        set(status, |s| s.last_error = Some(e.to_string()));
        recover(&plugin);
    }
}

/// A session failed: report, repair what it left, and wait before the next one.
async fn failed(
    e: RecorderError,
    plugin: &Arc<LoadedPlugin>,
    backoff: &mut Backoff,
    healthy_for: Option<Duration>,
    retry_at: &mut Option<Instant>,
    status: &Mutex<RecordingStatus>,
    route: &str,
) {
    let wait = backoff.failed(healthy_for);
    tracing::warn!(route, error = %e, retry_in = ?wait, "recorder failed; the route keeps flowing");
    set(status, |s| {
        s.state = "retrying";
        s.failures += 1;
        s.last_error = Some(e.to_string());
    });
    *retry_at = Some(Instant::now() + wait);
    recover(plugin);
}

/// Repairs what a failed session left, in the background: the next session does not wait for it (recovery never
/// touches a file being written, and a plugin's passes are coalesced, so many failing at once cause few passes).
fn recover(plugin: &Arc<LoadedPlugin>) {
    let p = Arc::clone(plugin);
    tokio::task::spawn_blocking(move || p.plugin.as_sink().map_or(0, |s| s.recover_orphans()));
}

/// Runs a plugin call on a blocking thread (calls take up to the plugin's timeout).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(t) => t,
        // A panic in the host code of a plugin call: nothing sensible to continue with.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down and this task with it.
        Err(_) => std::future::pending().await,
    }
}

/// A route track as the sink world describes it.
pub fn wit_track(track: &Track) -> sink::Track {
    let info = crate::media::fmp4::TrackInfo::of(track);
    let codec = match track.codec {
        Codec::H264 => sink::Codec::H264,
        Codec::H265 => sink::Codec::H265,
        Codec::Vp8 => sink::Codec::Vp8,
        Codec::Opus => sink::Codec::Opus,
        Codec::Aac => sink::Codec::Aac,
        Codec::Pcmu => sink::Codec::Pcmu,
        Codec::Pcma => sink::Codec::Pcma,
    };
    sink::Track {
        id: info.id,
        codec,
        clock_rate: info.clock_rate,
        width: info.width,
        height: info.height,
        channels: info.channels,
        sample_rate: info.sample_rate,
        config: info.config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::reader::tests::{audio_frame as audio, video_frame};

    #[test]
    fn a_batch_lays_its_payload_out_track_by_track() {
        let mut batcher = Batcher::default();
        let v0 = video_frame(0, true);
        let v1 = video_frame(3000, false);
        for frame in [&*v0, &audio(0, b"a0"), &*v1, &audio(960, b"a1")] {
            assert!(!batcher.push(frame), "far below the flush size");
        }
        let Job::Write { batch, frames, .. } = batcher.take() else { panic!("a write") };
        assert_eq!(frames, 4);
        // Samples stay in arrival order; the bytes are video first (track 0), then audio (track 1).
        let order: Vec<u32> = batch.samples.iter().map(|s| s.track).collect();
        assert_eq!(order, [v0.track.id.0, 1, v1.track.id.0, 1]);
        let bytes = |i: usize| {
            let s = &batch.samples[i];
            batch.payload.copy_range(s.offset as usize, s.len as usize)
        };
        assert_eq!((bytes(0), bytes(2)), (v0.data.to_vec(), v1.data.to_vec()));
        assert_eq!((bytes(1), bytes(3)), (b"a0".to_vec(), b"a1".to_vec()));
        assert_eq!(batch.samples[2].offset, batch.samples[0].offset + batch.samples[0].len, "video is one range");
        assert_eq!(batch.samples[3].offset, batch.samples[1].offset + 2, "audio is one range");
        assert_eq!(batch.payload.len(), v0.data.len() + v1.data.len() + 4);
        let first = batch.payload.slices(0, 1).and_then(|mut s| s.next()).expect("a first byte");
        assert!(std::ptr::eq(first.as_ptr(), v0.data.as_ptr()), "the payload shares the frame's bytes, not a copy");
        assert!(batcher.data.is_empty() && batcher.samples.is_empty() && batcher.bytes == 0);
    }
}
