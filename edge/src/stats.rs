//! What the log says every `stats_interval` while pushing: frames per second, bitrate, round-trip time (WHIP),
//! keyframe requests, frames the source dropped, reconnects.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::source::{AccessUnit, Control};

#[derive(Debug)]
pub struct Stats {
    every: Duration,
    since: Instant,
    frames: u64,
    bytes: u64,
    pub keyframe_requests: u64,
    pub reconnects: u64,
    pub rtt: Option<Duration>,
    /// Frames sent since the start, for the last line.
    pub total_frames: u64,
    control: Arc<Control>,
}

impl Stats {
    pub fn new(every: Duration, control: Arc<Control>) -> Stats {
        Stats {
            every,
            since: Instant::now(),
            frames: 0,
            bytes: 0,
            keyframe_requests: 0,
            reconnects: 0,
            rtt: None,
            total_frames: 0,
            control,
        }
    }

    pub fn sent(&mut self, unit: &AccessUnit) {
        self.frames += 1;
        self.total_frames += 1;
        self.bytes += unit.len() as u64;
    }

    /// Logs a line when the interval has passed, and starts the next one.
    pub fn maybe_log(&mut self) {
        let elapsed = self.since.elapsed();
        if elapsed < self.every {
            return;
        }
        let secs = elapsed.as_secs_f64();
        tracing::info!(
            fps = format!("{:.1}", self.frames as f64 / secs),
            kbps = (self.bytes as f64 * 8.0 / secs / 1000.0) as u64,
            rtt_ms = self.rtt.map(|r| r.as_millis() as u64),
            keyframe_requests = self.keyframe_requests,
            dropped = self.control.dropped.load(Ordering::Relaxed),
            reconnects = self.reconnects,
            sent = self.total_frames,
            "stats"
        );
        self.since = Instant::now();
        self.frames = 0;
        self.bytes = 0;
    }
}
