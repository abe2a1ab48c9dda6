//! Keeps timestamps monotonic across source sessions, with tracks still aligned to each other.
//!
//! A source restart (camera reconnect, a reload swapping `from`, a publisher coming back) starts a new clock. The
//! first frame of a new session is placed one frame interval after the latest frame readers saw; one offset, in
//! seconds, shifts every track of the session, so audio and video keep their relative timing. A jump of more than
//! [`MAX_JUMP_SECS`] inside a session (a camera resetting its clock without reconnecting) is handled the same way.

use std::collections::HashMap;

use crate::media::{Frame, TrackId};

/// Larger jumps within a session are treated as a new session rather than passed on to readers.
pub const MAX_JUMP_SECS: f64 = 10.0;

#[derive(Debug, Clone, Copy)]
struct TrackTime {
    clock_rate: u32,
    last_dts: i64,
    /// Last observed dts step, used to place the first frame after a restart.
    last_step: i64,
}

impl TrackTime {
    fn secs(&self, ticks: i64) -> f64 {
        ticks as f64 / f64::from(self.clock_rate.max(1))
    }
}

#[derive(Debug, Default)]
pub struct Timeline {
    tracks: HashMap<TrackId, TrackTime>,
    /// Seconds added to the current session's timestamps; `None` until its first frame.
    offset_secs: Option<f64>,
}

impl Timeline {
    /// Call when a new source session starts.
    pub fn new_session(&mut self) {
        self.offset_secs = None;
    }

    /// Where the route's timeline ends: the latest frame end over all tracks, in seconds.
    fn end_secs(&self) -> Option<f64> {
        self.tracks.values().map(|t| t.secs(t.last_dts.saturating_add(t.last_step.max(1)))).reduce(f64::max)
    }

    /// Rewrites `frame`'s pts/dts into the route's continuous timeline.
    pub fn rebase(&mut self, frame: &mut Frame) {
        let clock = f64::from(frame.track.clock_rate.max(1));
        let offset_ticks = |offset_secs: f64| (offset_secs * clock).round() as i64;
        if let (Some(offset), Some(t)) = (self.offset_secs, self.tracks.get(&frame.track.id)) {
            let jump = t.secs(frame.dts.saturating_add(offset_ticks(offset)).saturating_sub(t.last_dts));
            if !(-MAX_JUMP_SECS..=MAX_JUMP_SECS).contains(&jump) {
                self.offset_secs = None;
            }
        }
        let offset = match self.offset_secs {
            Some(o) => o,
            None => {
                let o = self.end_secs().map_or(0.0, |end| end - frame.dts as f64 / clock);
                self.offset_secs = Some(o);
                o
            }
        };
        let ticks = offset_ticks(offset);
        let mut dts = frame.dts.saturating_add(ticks);
        let entry = self.tracks.get(&frame.track.id).copied();
        // Within a session the source's own dts must not go backwards; hold it at the last value + 1 rather than
        // hand readers a timestamp that would confuse every muxer downstream.
        if let Some(t) = entry
            && dts <= t.last_dts
        {
            dts = t.last_dts.saturating_add(1);
        }
        let shift = dts - frame.dts.saturating_add(ticks);
        let last_step = entry.map_or(0, |t| dts - t.last_dts);
        self.tracks.insert(
            frame.track.id,
            TrackTime {
                clock_rate: frame.track.clock_rate,
                last_dts: dts,
                last_step: if entry.is_some() { last_step } else { 0 },
            },
        );
        frame.pts = frame.pts.saturating_add(ticks).saturating_add(shift);
        frame.dts = dts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::reader::tests::video_frame;

    fn frame(dts: i64) -> Frame {
        let mut f = (*video_frame(dts, false)).clone();
        f.pts = dts;
        f
    }

    fn audio(dts: i64) -> Frame {
        crate::route::reader::tests::audio_frame(dts, b"")
    }

    #[test]
    fn first_session_is_untouched() {
        let mut tl = Timeline::default();
        for dts in [1000, 4000, 7000] {
            let mut f = frame(dts);
            tl.rebase(&mut f);
            assert_eq!(f.dts, dts);
        }
    }

    #[test]
    fn a_restarted_source_continues_one_interval_later() {
        let mut tl = Timeline::default();
        let mut seen = Vec::new();
        for dts in [0, 3000, 6000] {
            let mut f = frame(dts);
            tl.rebase(&mut f);
            seen.push(f.dts);
        }
        tl.new_session();
        for dts in [500, 3500] {
            let mut f = frame(dts);
            tl.rebase(&mut f);
            seen.push(f.dts);
            assert_eq!(f.pts, f.dts);
        }
        assert_eq!(seen, vec![0, 3000, 6000, 9000, 12000]);
    }

    #[test]
    fn tracks_stay_aligned_across_a_restart() {
        let mut tl = Timeline::default();
        // One second of both tracks.
        for (v, a) in [(0, 0), (90_000, 48_000)] {
            tl.rebase(&mut frame(v));
            tl.rebase(&mut audio(a));
        }
        tl.new_session();
        // The new session's audio starts at its 5 s and video at its 5 s: they must stay together.
        let mut a = audio(5 * 48_000);
        tl.rebase(&mut a);
        let mut v = frame(5 * 90_000);
        tl.rebase(&mut v);
        assert!((a.dts as f64 / 48_000.0 - v.dts as f64 / 90_000.0).abs() < 0.001, "{} vs {}", a.dts, v.dts);
    }

    #[test]
    fn backwards_dts_within_a_session_is_clamped() {
        let mut tl = Timeline::default();
        let mut a = frame(3000);
        tl.rebase(&mut a);
        let mut b = frame(1000);
        tl.rebase(&mut b);
        assert_eq!(b.dts, 3001);
    }

    #[test]
    fn a_clock_reset_inside_a_session_is_a_new_session() {
        let mut tl = Timeline::default();
        for dts in [900_000_000, 900_003_000] {
            tl.rebase(&mut frame(dts));
        }
        let mut f = frame(0);
        tl.rebase(&mut f);
        assert_eq!(f.dts, 900_006_000, "continues instead of clamping for hours");
        let mut g = frame(i64::MAX);
        tl.rebase(&mut g);
        assert!(g.dts > f.dts, "hostile timestamps saturate instead of overflowing");
    }
}
