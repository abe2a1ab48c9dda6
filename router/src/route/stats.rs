//! What a route reports about itself: state, tracks, readers and traffic counters.

use serde::Serialize;

use crate::media::{Codec, CodecParams, MediaKind, Track};
use crate::route::reader::{ReaderId, ReaderKind};

/// Where a route is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteState {
    /// No frames yet: the source is connecting, an on-demand route has no readers, or a publish route has no
    /// publisher.
    Waiting,
    /// Frames are flowing.
    Live,
    /// The source failed and is being restarted with backoff; readers stay attached.
    Reconnecting,
    /// The source cannot run in this build or with this configuration; `last_error` says why.
    Unavailable,
}

impl RouteState {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteState::Waiting => "waiting",
            RouteState::Live => "live",
            RouteState::Reconnecting => "reconnecting",
            RouteState::Unavailable => "unavailable",
        }
    }

    pub const ALL: [RouteState; 4] =
        [RouteState::Waiting, RouteState::Live, RouteState::Reconnecting, RouteState::Unavailable];
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackInfo {
    pub id: u32,
    pub kind: MediaKind,
    pub codec: Codec,
    pub clock_rate: u32,
    pub description: String,
    /// H.264 `profile_idc` from the SPS (66 baseline, 77 main, 100 high): what a viewer's decoder must handle.
    pub h264_profile_idc: Option<u8>,
    /// H.264 picture size from the SPS, [width, height].
    pub video_size: Option<[u32; 2]>,
    /// Why WebRTC viewers hear nothing of this AAC track (it cannot be transcoded to Opus: HE-AAC, surround).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opus_refusal: Option<String>,
}

impl From<&Track> for TrackInfo {
    fn from(t: &Track) -> Self {
        let (h264_profile_idc, video_size) = match &t.params {
            CodecParams::H264 { sps, .. } => {
                (sps.get(1).copied(), crate::media::h264::parse_sps(sps).ok().map(|i| [i.width, i.height]))
            }
            _ => (None, None),
        };
        TrackInfo {
            id: t.id.0,
            kind: t.kind(),
            codec: t.codec,
            clock_rate: t.clock_rate,
            description: t.description.clone(),
            h264_profile_idc,
            video_size,
            opus_refusal: crate::transcode::opus_refusal(t),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReaderInfo {
    pub id: ReaderId,
    pub kind: ReaderKind,
    pub remote: Option<String>,
    /// Viewers behind this reader when it fans out (WebRTC); 0 otherwise.
    pub viewers: usize,
    pub frames: u64,
    pub bytes: u64,
    pub dropped: u64,
}

/// A point-in-time view of a route, as the API and /metrics show it.
#[derive(Debug, Clone, Serialize)]
pub struct RouteSnapshot {
    pub state: RouteState,
    /// A publisher is attached, or a pulled source runs (before its first frame too).
    pub source_running: bool,
    /// The source, with any password in its URL replaced by `***`.
    pub source: String,
    /// Why the source last failed, if it did.
    pub last_error: Option<String>,
    /// The video has B-frames (pts differs from dts) in the current source session.
    pub reordered_video: bool,
    /// Source (re)starts since the route was created.
    pub source_starts: u64,
    /// Times the source lost or failed to reach its peer and retried (cameras, pulled streams).
    pub reconnects: u64,
    /// Seconds since the route last became live; `None` when not live.
    pub uptime_seconds: Option<f64>,
    pub tracks: Vec<TrackInfo>,
    /// Readers, counting every viewer behind fan-out readers: what `max_readers` limits.
    pub reader_count: usize,
    pub readers: Vec<ReaderInfo>,
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    /// Frames not delivered to slow readers (summed over readers, including ones that left).
    pub frames_dropped: u64,
    pub bitrate_in_bps: u64,
    pub bitrate_out_bps: u64,
    /// Frames a new reader would receive at once.
    pub gop_frames: usize,
}
