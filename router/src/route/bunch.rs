//! Frames held back for readers that are served in bunches (RTMP and RTSP players), so that each of them wakes once per
//! bunch and sends it in one system call instead of one per frame.
//!
//! Why: with many players of one stream, the cost that grows with them is per write, not per byte (on a TCP socket
//! each write is at least one segment through the kernel's send path and one wake of the peer). Players buffer a
//! second or more before they start, so delaying their frames by a fraction of that costs them nothing they
//! notice; SRS does the same for its RTMP players ("merged write", 350 ms by default).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::media::Frame;

/// A bunch holds at most this many frames: beyond it (a burst after a stall) it is offered at once, well inside
/// a reader's queue.
const MAX_FRAMES: usize = 256;

/// The frames of the bunch being gathered, with whether each is a sync point.
#[derive(Debug)]
pub struct Bunch {
    interval: Duration,
    frames: Vec<(Arc<Frame>, bool)>,
    /// When the frames held now are due: `interval` after the first of them arrived.
    due: Option<Instant>,
}

impl Bunch {
    pub fn new(interval: Duration) -> Self {
        Bunch { interval, frames: Vec::new(), due: None }
    }

    /// Frames are held at all: a zero interval offers every frame as it comes.
    pub fn enabled(&self) -> bool {
        !self.interval.is_zero()
    }

    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// Holds a frame; true when the bunch should be offered now (it is full).
    pub fn hold(&mut self, frame: &Arc<Frame>, sync_point: bool, now: Instant) -> bool {
        if self.frames.is_empty() {
            self.due = Some(now + self.interval);
        }
        self.frames.push((Arc::clone(frame), sync_point));
        self.frames.len() >= MAX_FRAMES
    }

    /// When the held frames must be offered; `None` while nothing is held.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The held frames, oldest first.
    pub fn frames(&self) -> &[(Arc<Frame>, bool)] {
        &self.frames
    }

    /// Forgets the held frames once offered; the next frame starts a new bunch.
    pub fn clear(&mut self) {
        self.due = None;
        self.frames.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::reader::tests::video_frame;

    #[test]
    fn a_bunch_is_due_one_interval_after_its_first_frame() {
        let mut bunch = Bunch::new(Duration::from_millis(100));
        let t0 = Instant::now();
        assert_eq!(bunch.due(), None);
        assert!(!bunch.hold(&video_frame(0, true), true, t0));
        assert!(!bunch.hold(&video_frame(1, false), false, t0 + Duration::from_millis(40)));
        assert_eq!(bunch.due(), Some(t0 + Duration::from_millis(100)), "the second frame does not move it");
        let held: Vec<(i64, bool)> = bunch.frames().iter().map(|(f, sync)| (f.pts, *sync)).collect();
        assert_eq!(held, [(0, true), (1, false)]);
        bunch.clear();
        assert_eq!(bunch.due(), None);
        assert!(bunch.is_empty());
        let t1 = t0 + Duration::from_millis(130);
        bunch.hold(&video_frame(2, false), false, t1);
        assert_eq!(bunch.due(), Some(t1 + Duration::from_millis(100)));
    }

    #[test]
    fn a_full_bunch_asks_to_be_offered_at_once() {
        let mut bunch = Bunch::new(Duration::from_secs(1));
        let now = Instant::now();
        let full = (0..MAX_FRAMES as i64).map(|i| bunch.hold(&video_frame(i, i == 0), i == 0, now)).collect::<Vec<_>>();
        assert!(!full[..MAX_FRAMES - 1].iter().any(|f| *f));
        assert!(full[MAX_FRAMES - 1]);
    }

    #[test]
    fn a_zero_interval_disables_holding() {
        assert!(!Bunch::new(Duration::ZERO).enabled());
        assert!(Bunch::new(Duration::from_millis(1)).enabled());
    }
}
