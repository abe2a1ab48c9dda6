//! `from = "demo"`: a 4-second H.264 clip shipped inside the binary, looped in real time.
//!
//! The clip (`router/assets/demo.h264`, made by `router/assets/make-demo-clip.sh`) is split into access units once
//! per process. Timestamps count frames since the source started, so they stay continuous across loops; the
//! clip's GOP length divides its frame count, so every loop starts on a keyframe.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::media::Frame;
use crate::media::h264;
use crate::route::actor::{SourceEvent, SourceFactory, SourceFeed};

const CLIP: &[u8] = include_bytes!("../../assets/demo.h264");
pub const DEMO_FPS: u32 = 30;
const CLOCK_RATE: u32 = 90_000;

/// The parsed clip, shared by every demo route: its track and (AVCC payload, keyframe) per access unit.
pub type DemoClip = h264::Clip;

/// The clip, parsed on first use.
pub fn clip() -> &'static DemoClip {
    static CLIP_CELL: OnceLock<DemoClip> = OnceLock::new();
    CLIP_CELL
        .get_or_init(|| h264::parse_clip(CLIP, CLOCK_RATE).expect("the embedded demo clip is valid H.264 (tested)"))
}

/// Starts a paced loop of the clip per route.
#[derive(Debug)]
pub struct DemoSource;

impl SourceFactory for DemoSource {
    fn start(&self, feed: SourceFeed) -> JoinHandle<()> {
        tokio::spawn(run(feed))
    }
}

async fn run(feed: SourceFeed) {
    let clip = clip();
    if !feed.send(SourceEvent::Tracks(vec![Arc::clone(&clip.track)])).await {
        return;
    }
    let period = Duration::from_secs(1) / DEMO_FPS;
    let ticks_per_frame = i64::from(CLOCK_RATE / DEMO_FPS);
    let start = Instant::now();
    for n in 0u64.. {
        // Absolute deadlines, so timer jitter never accumulates into drift.
        tokio::time::sleep_until(start + period * n as u32).await;
        let (data, keyframe) = &clip.frames[(n % clip.frames.len() as u64) as usize];
        let ts = n as i64 * ticks_per_frame;
        let frame = Frame::new(Arc::clone(&clip.track), ts, ts, *keyframe, data.clone());
        if !feed.send(SourceEvent::Frame(frame)).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_loops_on_a_keyframe() {
        let clip = clip();
        assert_eq!(clip.frames.len(), 120);
        assert!(clip.frames[0].1);
        assert_eq!(clip.frames.len() % 30, 0, "GOP length divides the clip");
        assert_eq!(clip.track.description, "640x360 Constrained Baseline 3.1");
        // No start codes left: every payload parses as length-prefixed NAL units covering all its bytes.
        for (data, _) in &clip.frames {
            let covered: usize = h264::avcc_nals(data).map(|n| n.len() + 4).sum();
            assert_eq!(covered, data.len());
        }
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert_eq!(h264::parse_clip(b"not h264", CLOCK_RATE).err().as_deref(), Some("no SPS"));
    }
}
