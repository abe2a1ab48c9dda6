//! The media model every protocol converts to and from.
//!
//! A [`Frame`] is one access unit of one [`Track`]. Tracks carry their codec parameters (SPS/PPS,
//! AudioSpecificConfig); when a source's parameters change mid-stream it makes a new `Arc<Track>` with the same
//! [`TrackId`], so a reader notices the change by pointer comparison, without parsing anything per frame.
//!
//! Canonical payloads: H.264/H.265 frames are length-prefixed NAL units (4-byte big-endian lengths, "AVCC"), the
//! form RTMP, MP4 and retina already use; parameter sets live in the track (they may also appear in-band).
//! Audio frames are raw codec frames (an AAC raw data block, an Opus packet, G.711 bytes).

//!
//! Conversions to what outputs send are here too, made once per route frame and cached on it ([`Forms`]):
//! [`flv`] (an RTMP message) and [`rtp`] (RTP payloads, RFC 6184 / RFC 7741). [`fmp4`] is the fragmented-MP4
//! muxer recordings are written with.

pub mod aac;
pub mod depacketize;
pub mod flv;
pub mod fmp4;
pub mod frame;
pub mod h264;
pub mod h265;
pub mod payload;
pub mod rtp;
pub mod wallclock;

pub use flv::FlvMessage;
pub use frame::{Codec, CodecParams, Forms, Frame, MediaKind, Track, TrackId};
pub use payload::Payload;
