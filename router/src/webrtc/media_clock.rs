//! A route's media clock: the wall-clock time WebRTC sender reports give each of its frames.

use std::time::{Duration, Instant};

use crate::media::Frame;

/// A route's timeline on the router's clock: the wall-clock time sender reports give each frame. One origin for
/// all the route's tracks, so a browser lines audio up with video as the source timestamped them, not as their
/// frames happened to arrive (an AAC encoder's delay, a muxer's interleaving, the transcoder's 20 ms packets).
#[derive(Debug, Default)]
pub struct MediaClock {
    /// An instant and the route time (seconds) it corresponds to.
    origin: Option<(Instant, f64)>,
}

impl MediaClock {
    /// Further behind its arrival than this, a frame's route time is taken as a new start (a source that stalled or
    /// restarted): the origin moves up to it.
    const MAX_LAG: Duration = Duration::from_secs(1);

    /// A frame's time without moving the origin, for replays of frames already dated once (never after `now`).
    pub fn peek(&self, frame: &Frame, now: Instant) -> Instant {
        let Some(origin) = self.origin else { return frame.received.min(now) };
        Self::on_clock(origin, Self::route_secs(frame)).unwrap_or(frame.received).min(now)
    }

    /// A frame's time on the route's timeline, in seconds.
    fn route_secs(frame: &Frame) -> f64 {
        frame.pts as f64 / f64::from(frame.track.clock_rate.max(1))
    }

    /// Route time `secs` as an instant, from `origin`; `None` when out of the clock's range.
    fn on_clock((at, origin): (Instant, f64), secs: f64) -> Option<Instant> {
        let offset = secs - origin;
        if offset >= 0.0 {
            at.checked_add(Duration::from_secs_f64(offset.min(1e9)))
        } else {
            at.checked_sub(Duration::from_secs_f64((-offset).min(1e9)))
        }
    }

    pub fn wallclock(&mut self, frame: &Frame, now: Instant) -> Instant {
        let secs = Self::route_secs(frame);
        let received = frame.received.min(now);
        let Some((at, origin)) = self.origin else {
            self.origin = Some((received, secs));
            return received;
        };
        match Self::on_clock((at, origin), secs) {
            // Ahead of now (a source clock running fast, a reordered frame): the origin moves back for every
            // track alike, since reports must not be dated in the future.
            Some(w) if w > now => {
                self.origin = Some((at.checked_sub(w - now).unwrap_or(at), origin));
                now
            }
            Some(w) if received.duration_since(w) <= Self::MAX_LAG => w,
            _ => {
                self.origin = Some((received, secs));
                received
            }
        }
    }
}
