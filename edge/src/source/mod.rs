//! Capture sources. Each hands complete H.264 access units to the pusher through a small queue: the test pattern
//! and V4L2 cameras from a thread of their own (they compute or block), byte streams from a task on the pusher's
//! runtime. A source never waits for the network: when the queue is full (the pusher is reconnecting, or the
//! link is slower than the camera) frames are dropped and the pusher asks for a keyframe before it sends again.
//!
//! - [`test_pattern`] draws a moving pattern with a clock, encoded by [`pcm_h264`];
//! - [`annexb`] reads Annex B H.264 from standard input, a file, or `rpicam-vid` ([`rpicam`]);
//! - [`v4l2`] drives a V4L2 camera, and the Pi's memory-to-memory encoder for cameras that give raw frames.

pub mod annexb;
pub mod pcm_h264;
pub mod rpicam;
pub mod test_pattern;
pub mod v4l2;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::config::{SourceKind, Video};

/// One picture: its NAL units (no start codes), whether it starts a GOP, and when it was captured.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    pub nals: Vec<Bytes>,
    pub keyframe: bool,
    pub captured: Instant,
}

impl AccessUnit {
    pub fn new(nals: Vec<Bytes>, captured: Instant) -> AccessUnit {
        let keyframe = nals.iter().any(|n| sluice_media::h264::nal_type(n) == sluice_media::h264::NAL_IDR);
        AccessUnit { nals, keyframe, captured }
    }

    pub fn len(&self) -> usize {
        self.nals.iter().map(Bytes::len).sum()
    }

    /// The SPS and PPS it carries in-band, if it carries both.
    pub fn parameter_sets(&self) -> Option<(Bytes, Bytes)> {
        use sluice_media::h264::{NAL_PPS, NAL_SPS, nal_type};
        let sps = self.nals.iter().rev().find(|n| nal_type(n) == NAL_SPS)?;
        let pps = self.nals.iter().rev().find(|n| nal_type(n) == NAL_PPS)?;
        Some((sps.clone(), pps.clone()))
    }
}

/// How many access units wait for the pusher at most (a second at 30 fps).
const QUEUE: usize = 32;

/// The source side of the queue, handed to the capture thread.
#[derive(Debug, Clone)]
pub struct Output {
    tx: mpsc::Sender<AccessUnit>,
    control: Arc<Control>,
}

/// Shared between the capture thread and the pusher.
#[derive(Debug, Default)]
pub struct Control {
    /// Set by the pusher (a viewer's PLI, a reconnect); the source makes its next picture a keyframe if it can.
    pub keyframe_wanted: AtomicBool,
    /// Access units dropped because the queue was full.
    pub dropped: AtomicU64,
    /// After a drop, nothing goes out until the next keyframe: later pictures refer to the dropped ones.
    resyncing: AtomicBool,
    /// Why the source stopped, if it failed (an end of standard input is no failure).
    failure: std::sync::Mutex<Option<String>>,
}

impl Control {
    /// Why the source stopped, if it failed.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn fail(&self, why: String) {
        if let Ok(mut f) = self.failure.lock() {
            *f = Some(why);
        }
    }
}

/// Why a capture thread stopped.
#[derive(Debug)]
pub enum Stop {
    /// The pusher is gone (the program is stopping).
    Closed,
}

impl Output {
    /// Queues an access unit, or drops it when the pusher is behind (and then every picture up to the next
    /// keyframe, which is asked for). `Err` once the pusher is gone.
    pub fn send(&self, unit: AccessUnit) -> Result<(), Stop> {
        let c = &self.control;
        if c.resyncing.load(Ordering::Relaxed) {
            if !unit.keyframe {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                c.keyframe_wanted.store(true, Ordering::Relaxed);
                return if self.tx.is_closed() { Err(Stop::Closed) } else { Ok(()) };
            }
            c.resyncing.store(false, Ordering::Relaxed);
        }
        match self.tx.try_send(unit) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                c.resyncing.store(true, Ordering::Relaxed);
                c.keyframe_wanted.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Stop::Closed),
        }
    }

    /// Whether a keyframe was asked for since the last call (clears the request).
    pub fn take_keyframe_request(&self) -> bool {
        self.control.keyframe_wanted.swap(false, Ordering::Relaxed)
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A running source, as the pusher holds it.
#[derive(Debug)]
pub struct Capture {
    pub units: mpsc::Receiver<AccessUnit>,
    pub control: Arc<Control>,
    /// What is captured, for the log ("test pattern 640x360 at 30 fps").
    pub describe: String,
}

impl Capture {
    pub fn request_keyframe(&self) {
        self.control.keyframe_wanted.store(true, Ordering::Relaxed);
    }

    /// The source has no more frames: `Ok` at the end of standard input, the failure otherwise.
    pub fn ended(&self) -> anyhow::Result<()> {
        match self.control.failure() {
            Some(why) => anyhow::bail!("the source failed: {why}"),
            None => Ok(()),
        }
    }
}

/// Keeps the last SPS and PPS a stream carried and puts whichever is missing before keyframes that come without
/// (a camera that sends them once): every keyframe must be decodable alone, by a viewer joining there or after a
/// reconnect.
#[derive(Debug, Default)]
pub struct ParameterSets {
    sps: Option<Bytes>,
    pps: Option<Bytes>,
}

impl ParameterSets {
    pub fn complete(&mut self, nals: Vec<Bytes>, captured: Instant) -> AccessUnit {
        use sluice_media::h264::{NAL_AUD, NAL_PPS, NAL_SPS, nal_type};
        let last = |t| nals.iter().rev().find(|n| nal_type(n) == t).cloned();
        let (sps, pps) = (last(NAL_SPS), last(NAL_PPS));
        let complete = sps.is_some() && pps.is_some();
        let missing: Vec<Bytes> = [sps.is_none().then(|| self.sps.clone()), pps.is_none().then(|| self.pps.clone())]
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        if let Some(sps) = sps {
            self.sps = Some(sps);
        }
        if let Some(pps) = pps {
            self.pps = Some(pps);
        }
        let unit = AccessUnit::new(nals, captured);
        if !unit.keyframe || complete || missing.is_empty() {
            return unit;
        }
        // After an access unit delimiter, which must come first.
        let at = usize::from(unit.nals.first().is_some_and(|n| nal_type(n) == NAL_AUD));
        let mut nals = unit.nals;
        nals.splice(at..at, missing);
        AccessUnit { nals, ..unit }
    }
}

/// Starts the source on its own thread.
pub fn start(kind: &SourceKind, video: Video) -> anyhow::Result<Capture> {
    let (out, mut capture) = channel();
    let spawn_task = |name: &'static str, f| spawn_task(name, capture.control.clone(), f);
    capture.describe = match kind {
        SourceKind::Test => {
            spawn("test-pattern", out, Box::new(move |out| test_pattern::run(video, out)))?;
            format!("test pattern {}x{} at {} fps", video.width, video.height, video.fps)
        }
        SourceKind::Stdin => {
            spawn_task("stdin", Box::pin(annexb::run_stdin(video, out)));
            format!("H.264 from standard input at {} fps", video.fps)
        }
        SourceKind::File(path) => {
            let path = path.clone();
            // Opened here so a missing file is an error at start, not a log line later.
            std::fs::File::open(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let describe = format!("H.264 file {} at {} fps, looped", path.display(), video.fps);
            spawn_task("file", Box::pin(annexb::run_file_looped(path, video, out)));
            describe
        }
        SourceKind::Rpicam => {
            spawn_task("rpicam", Box::pin(rpicam::run(video, out)));
            format!("rpicam-vid {}x{} at {} fps, {} bit/s", video.width, video.height, video.fps, video.bitrate)
        }
        SourceKind::V4l2 { device, encoder } => {
            let (device, encoder) = (device.clone(), encoder.clone());
            let describe = format!("V4L2 {} {}x{} at {} fps", device.display(), video.width, video.height, video.fps);
            spawn("v4l2", out, Box::new(move |out| v4l2::run_device(&device, &encoder, video, out)))?;
            describe
        }
    };
    Ok(capture)
}

/// The queue between a capture thread and the pusher.
pub fn channel() -> (Output, Capture) {
    let (tx, units) = mpsc::channel(QUEUE);
    let control = Arc::new(Control::default());
    (Output { tx, control: control.clone() }, Capture { units, control, describe: String::new() })
}

/// A capture thread's body.
type SourceThread = Box<dyn FnOnce(&Output) -> anyhow::Result<()> + Send>;

/// A boxed source task: byte-stream sources run on the pusher's runtime (see [`annexb`]).
type SourceTask = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;

/// Runs a source task; its failure is kept for the pusher, which exits with it (systemd restarts it then).
fn spawn_task(name: &'static str, control: Arc<Control>, f: SourceTask) {
    tokio::spawn(async move {
        if let Err(e) = f.await {
            tracing::error!(source = name, "the source stopped: {e:#}");
            control.fail(format!("{e:#}"));
        }
    });
}

/// Runs a capture thread. Its failure is recorded before its end of the queue closes, so the pusher, which
/// sees the close, always finds the reason.
fn spawn(name: &'static str, out: Output, f: SourceThread) -> anyhow::Result<()> {
    std::thread::Builder::new().name(format!("source-{name}")).spawn(move || {
        if let Err(e) = f(&out) {
            tracing::error!(source = %name, "the source stopped: {e:#}");
            out.control.fail(format!("{e:#}"));
        }
        drop(out);
    })?;
    Ok(())
}

/// Paces frames read from a byte stream (a file has no timestamps) at the configured rate: frame `n` is due at
/// `start + n / fps`. A live pipe that delivers later than that is never held back, and a source that fell more
/// than a second behind is re-anchored instead of being let to burst.
#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    n: u32,
    frame: Duration,
}

impl Pacer {
    pub fn new(fps: u32) -> Pacer {
        Pacer { start: Instant::now(), n: 0, frame: Duration::from_secs(1) / fps.max(1) }
    }

    /// When the next frame is due (now, if it is late); also its capture time.
    pub fn next(&mut self) -> Instant {
        let due = self.start + self.frame * self.n;
        let now = Instant::now();
        let at = if due > now {
            due
        } else {
            if now - due > Duration::from_secs(1) {
                self.start = now;
                self.n = 0;
            }
            now
        };
        self.n += 1;
        at
    }

    /// [`next`](Self::next), waited for on this thread.
    pub fn wait(&mut self) -> Instant {
        let at = self.next();
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: &[u8]) -> Bytes {
        Bytes::copy_from_slice(x)
    }

    #[test]
    fn keyframes_get_the_parameter_sets_they_lack_after_their_delimiter() {
        let mut sets = ParameterSets::default();
        let now = Instant::now();
        let first = sets.complete(vec![b(&[0x67, 1]), b(&[0x68, 1]), b(&[0x65, 9])], now);
        assert_eq!(first.nals.len(), 3);
        let bare = sets.complete(vec![b(&[0x09, 0x10]), b(&[0x65, 9])], now);
        assert_eq!(bare.nals, vec![b(&[0x09, 0x10]), b(&[0x67, 1]), b(&[0x68, 1]), b(&[0x65, 9])]);
        let new_sps = sets.complete(vec![b(&[0x67, 2]), b(&[0x65, 9])], now);
        assert_eq!(new_sps.nals, vec![b(&[0x68, 1]), b(&[0x67, 2]), b(&[0x65, 9])], "only the PPS was missing");
        assert_eq!(new_sps.parameter_sets(), Some((b(&[0x67, 2]), b(&[0x68, 1]))));
        let p = sets.complete(vec![b(&[0x41, 9])], now);
        assert_eq!(p.nals.len(), 1, "pictures that are not keyframes stay as they are");
    }
}
