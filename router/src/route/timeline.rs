//! Keeps each track's timestamps monotonic across source sessions.
//!
//! A source restart (camera reconnect, a reload swapping `from`, a publisher coming back) starts a new clock. The
//! first frame of each track in a new session is placed one frame interval after the last frame readers saw, and
//! the rest of the session keeps its own spacing.

use std::collections::HashMap;

use crate::media::{Frame, TrackId};

#[derive(Debug, Default)]
struct TrackTimeline {
    /// Added to the source's timestamps in the current session; `None` until its first frame.
    offset: Option<i64>,
    last_dts: Option<i64>,
    /// Last observed dts step, used to place the first frame after a restart.
    last_step: i64,
}

#[derive(Debug, Default)]
pub struct Timeline {
    tracks: HashMap<TrackId, TrackTimeline>,
}

impl Timeline {
    /// Call when a new source session starts.
    pub fn new_session(&mut self) {
        for t in self.tracks.values_mut() {
            t.offset = None;
        }
    }

    /// Rewrites `frame`'s pts/dts into the route's continuous timeline.
    pub fn rebase(&mut self, frame: &mut Frame) {
        let t = self.tracks.entry(frame.track.id).or_default();
        let offset = *t.offset.get_or_insert_with(|| match t.last_dts {
            Some(last) => last + t.last_step.max(1) - frame.dts,
            None => 0,
        });
        let dts = frame.dts + offset;
        // Within a session the source's own dts must not go backwards; if it does, hold it at the last value + 1
        // rather than handing readers a timestamp that would confuse every muxer downstream.
        let dts = match t.last_dts {
            Some(last) if dts <= last => last + 1,
            _ => dts,
        };
        let shift = dts - (frame.dts + offset);
        if let Some(last) = t.last_dts {
            t.last_step = dts - last;
        }
        t.last_dts = Some(dts);
        frame.pts += offset + shift;
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
    fn backwards_dts_within_a_session_is_clamped() {
        let mut tl = Timeline::default();
        let mut a = frame(3000);
        tl.rebase(&mut a);
        let mut b = frame(1000);
        tl.rebase(&mut b);
        assert_eq!(b.dts, 3001);
    }
}
