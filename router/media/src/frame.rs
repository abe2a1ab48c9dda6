//! Tracks and frames.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::flv::FlvMessage;
use crate::rtp::RtpFrame;

/// Identifies a track within one route's source; stable while the source runs, even when parameters change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Video,
    Audio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    H264,
    H265,
    Vp8,
    Opus,
    Aac,
    Pcmu,
    Pcma,
}

impl Codec {
    pub fn is_video(self) -> bool {
        self.kind() == MediaKind::Video
    }

    pub fn kind(self) -> MediaKind {
        match self {
            Codec::H264 | Codec::H265 | Codec::Vp8 => MediaKind::Video,
            Codec::Opus | Codec::Aac | Codec::Pcmu | Codec::Pcma => MediaKind::Audio,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Codec::H264 => "H.264",
            Codec::H265 => "H.265",
            Codec::Vp8 => "VP8",
            Codec::Opus => "Opus",
            Codec::Aac => "AAC",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        };
        f.write_str(name)
    }
}

/// Out-of-band codec configuration a decoder needs before the first frame.
#[derive(Clone, PartialEq, Eq)]
pub enum CodecParams {
    H264 {
        sps: Bytes,
        pps: Bytes,
    },
    H265 {
        vps: Bytes,
        sps: Bytes,
        pps: Bytes,
    },
    Aac {
        audio_specific_config: Bytes,
    },
    /// Codecs whose frames are self-describing (Opus, G.711, VP8).
    None,
}

impl fmt::Debug for CodecParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Byte dumps of parameter sets are noise in logs; lengths are what one checks.
        match self {
            CodecParams::H264 { sps, pps } => {
                write!(f, "H264 {{ sps: {}B, pps: {}B }}", sps.len(), pps.len())
            }
            CodecParams::H265 { vps, sps, pps } => {
                write!(f, "H265 {{ vps: {}B, sps: {}B, pps: {}B }}", vps.len(), sps.len(), pps.len())
            }
            CodecParams::Aac { audio_specific_config } => write!(f, "Aac {{ asc: {}B }}", audio_specific_config.len()),
            CodecParams::None => f.write_str("None"),
        }
    }
}

/// One elementary stream of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub id: TrackId,
    pub codec: Codec,
    /// Ticks per second of this track's pts/dts (90 000 for video, the sample rate for audio).
    pub clock_rate: u32,
    pub params: CodecParams,
    /// Human-readable details derived from the parameters ("640x360 Constrained Baseline 3.1"), for the API.
    pub description: String,
}

impl Track {
    pub fn kind(&self) -> MediaKind {
        self.codec.kind()
    }
}

/// One access unit: a whole video picture or one audio frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub track: Arc<Track>,
    /// Presentation time in `track.clock_rate` ticks. Continuous and monotonic per track for the life of a route,
    /// across source loops and reconnects (sources rebase their clocks to keep it so).
    pub pts: i64,
    /// Decode time in the same clock; equals `pts` without B-frames.
    pub dts: i64,
    /// A video frame a decoder can start from (IDR); always true for audio.
    pub keyframe: bool,
    pub data: Bytes,
    /// When the router got the frame (its last packet, for packetized sources): latency is measured from here.
    pub received: std::time::Instant,
    /// When the source captured it, in wall-clock time, where the source says (RTCP sender reports).
    pub wallclock: Option<std::time::SystemTime>,
    /// The frame in the forms outputs send it in, each made once: see [`Forms`].
    pub forms: Forms,
}

/// A route frame in the forms its outputs send: an RTMP message ([`Frame::flv`]) and RTP payloads
/// ([`Frame::rtp`]); fMP4 fragments join them when HLS lands. The route hands every reader the same
/// `Arc<Frame>`, so each form is made once per route frame, by the first reader that needs it, and shared by
/// all the others (every RTMP player, every WebRTC viewer, a new viewer's GOP replay): converted once per route,
/// not once per reader, and only into the forms someone reads.
#[derive(Debug, Default)]
pub struct Forms {
    flv: OnceLock<Option<FlvMessage>>,
    rtp: OnceLock<Option<Arc<RtpFrame>>>,
}

impl Clone for Forms {
    /// A copy of a frame (a source rebasing its timestamps) starts with no forms: they depend on the timestamps.
    fn clone(&self) -> Forms {
        Forms::default()
    }
}

impl Frame {
    /// A frame received now, with no wall-clock time known.
    pub fn new(track: Arc<Track>, pts: i64, dts: i64, keyframe: bool, data: Bytes) -> Frame {
        Frame {
            track,
            pts,
            dts,
            keyframe,
            data,
            received: std::time::Instant::now(),
            wallclock: None,
            forms: Forms::default(),
        }
    }

    pub fn kind(&self) -> MediaKind {
        self.track.kind()
    }

    /// The frame as one RTMP message; `None` for a codec FLV cannot carry.
    pub fn flv(&self) -> Option<&FlvMessage> {
        self.forms.flv.get_or_init(|| crate::flv::route_message(self)).as_ref()
    }

    /// The frame as RTP payloads; `None` for a codec WebRTC cannot carry.
    pub fn rtp(&self) -> Option<&Arc<RtpFrame>> {
        self.forms.rtp.get_or_init(|| crate::rtp::packetize(self).map(Arc::new)).as_ref()
    }
}
