//! The group-of-pictures cache: every frame since the latest sync point, so a new reader starts at once.

use std::sync::Arc;

use crate::media::Frame;

/// Bounds on what one route keeps for late joiners. A source with no keyframe for a long time (or a huge one)
/// stops being cached rather than growing without limit; new readers then wait for the next keyframe.
#[derive(Debug, Clone, Copy)]
pub struct GopLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
}

impl Default for GopLimits {
    fn default() -> Self {
        // 10 s of 30 fps video plus 50 audio frames/s; 32 MiB is 10 s of a 25 Mbit/s stream.
        GopLimits { max_frames: 800, max_bytes: 32 << 20 }
    }
}

#[derive(Debug, Default)]
pub struct GopCache {
    frames: Vec<Arc<Frame>>,
    bytes: usize,
    /// False after an overflow, until the next sync point restarts the cache.
    valid: bool,
    limits: GopLimits,
}

impl GopCache {
    pub fn new(limits: GopLimits) -> Self {
        GopCache { frames: Vec::new(), bytes: 0, valid: false, limits }
    }

    /// Records a frame; `sync_point` frames start a new group.
    pub fn push(&mut self, frame: &Arc<Frame>, sync_point: bool) {
        if sync_point {
            self.frames.clear();
            self.bytes = 0;
            self.valid = true;
        }
        if !self.valid {
            return;
        }
        if self.frames.len() + 1 > self.limits.max_frames || self.bytes + frame.data.len() > self.limits.max_bytes {
            self.clear();
            return;
        }
        self.bytes += frame.data.len();
        self.frames.push(Arc::clone(frame));
    }

    /// The cached group, starting with its sync point; empty when there is none.
    pub fn frames(&self) -> &[Arc<Frame>] {
        if self.valid { &self.frames } else { &[] }
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.valid = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::reader::tests::video_frame;

    #[test]
    fn keeps_frames_from_the_latest_sync_point() {
        let mut gop = GopCache::new(GopLimits::default());
        gop.push(&video_frame(0, false), false);
        assert!(gop.frames().is_empty(), "nothing before the first keyframe");
        gop.push(&video_frame(1, true), true);
        gop.push(&video_frame(2, false), false);
        gop.push(&video_frame(3, true), true);
        gop.push(&video_frame(4, false), false);
        let pts: Vec<i64> = gop.frames().iter().map(|f| f.pts).collect();
        assert_eq!(pts, vec![3, 4]);
    }

    #[test]
    fn overflow_empties_the_cache_until_the_next_keyframe() {
        let mut gop = GopCache::new(GopLimits { max_frames: 2, max_bytes: usize::MAX });
        gop.push(&video_frame(0, true), true);
        gop.push(&video_frame(1, false), false);
        gop.push(&video_frame(2, false), false);
        assert!(gop.frames().is_empty());
        gop.push(&video_frame(3, false), false);
        assert!(gop.frames().is_empty());
        gop.push(&video_frame(4, true), true);
        assert_eq!(gop.frames().len(), 1);
    }
}
