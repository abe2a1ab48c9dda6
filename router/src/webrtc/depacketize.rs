//! What a WebRTC publisher sends, as route frames: codec mapping, clocks, H.264 parameter sets.
//!
//! Pure: fed str0m's depacketized frames (Annex B for H.264), returns [`Frame`]s. A parameter-set change makes a
//! new `Arc<Track>` so readers see it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use str0m::format::Codec as WebrtcCodec;
use str0m::media::Mid;

use crate::media::h264::{self, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS};
use crate::media::{Codec, CodecParams, Frame, Track, TrackId};

/// Our codec for a negotiated WebRTC codec, with its RTP clock; `None` for codecs routes do not carry.
pub fn route_codec(codec: WebrtcCodec) -> Option<(Codec, u32)> {
    Some(match codec {
        WebrtcCodec::H264 => (Codec::H264, 90_000),
        WebrtcCodec::Vp8 => (Codec::Vp8, 90_000),
        WebrtcCodec::Opus => (Codec::Opus, 48_000),
        WebrtcCodec::PCMU => (Codec::Pcmu, 8_000),
        WebrtcCodec::PCMA => (Codec::Pcma, 8_000),
        _ => return None,
    })
}

/// The tracks of one publisher, by media line.
#[derive(Debug, Default)]
pub struct PublishedTracks {
    by_mid: HashMap<Mid, Arc<Track>>,
}

impl PublishedTracks {
    /// Converts one depacketized frame; `None` for codecs routes do not carry or empty payloads.
    pub fn frame(&mut self, mid: Mid, codec: WebrtcCodec, timestamp: u64, data: &[u8]) -> Option<Frame> {
        let (codec, clock_rate) = route_codec(codec)?;
        if data.is_empty() {
            return None;
        }
        let next_id = TrackId(self.by_mid.len() as u32);
        let track = self.by_mid.entry(mid).or_insert_with(|| {
            Arc::new(Track { id: next_id, codec, clock_rate, params: CodecParams::None, description: String::new() })
        });
        let ts = timestamp as i64;
        let (payload, keyframe) = match codec {
            Codec::H264 => {
                let nals = h264::split_annex_b(data);
                let sps = nals.iter().find(|n| h264::nal_type(n) == NAL_SPS);
                let pps = nals.iter().find(|n| h264::nal_type(n) == NAL_PPS);
                if let (Some(sps), Some(pps)) = (sps, pps) {
                    let params =
                        CodecParams::H264 { sps: Bytes::copy_from_slice(sps), pps: Bytes::copy_from_slice(pps) };
                    if track.params != params {
                        let description = h264::parse_sps(sps).map(|i| i.describe()).unwrap_or_default();
                        *track = Arc::new(Track { id: track.id, codec, clock_rate, params, description });
                    }
                }
                let keyframe = nals.iter().any(|n| h264::nal_type(n) == NAL_IDR);
                (h264::to_avcc(nals.into_iter().filter(|n| h264::nal_type(n) != NAL_AUD)), keyframe)
            }
            // VP8 payload header: the inverse key frame flag is bit 0 of the first byte (RFC 6386 9.1).
            Codec::Vp8 => (Bytes::copy_from_slice(data), data[0] & 1 == 0),
            _ => (Bytes::copy_from_slice(data), true),
        };
        Some(Frame::new(Arc::clone(track), ts, ts, keyframe, payload))
    }

    pub fn tracks(&self) -> Vec<Arc<Track>> {
        let mut tracks: Vec<Arc<Track>> = self.by_mid.values().cloned().collect();
        tracks.sort_by_key(|t| t.id);
        tracks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter().flat_map(|n| [&[0u8, 0, 0, 1][..], n].concat()).collect()
    }

    #[test]
    fn h264_parameter_sets_become_track_params_and_changes_make_a_new_track() {
        let clip = crate::ingest::demo::clip();
        let CodecParams::H264 { sps, pps } = &clip.track.params else { panic!("h264 params") };
        let mut tracks = PublishedTracks::default();
        let mid = Mid::from("0");
        let key = tracks.frame(mid, WebrtcCodec::H264, 90_000, &annex_b(&[sps, pps, &[0x65, 0x88]])).expect("frame");
        assert!(key.keyframe);
        assert_eq!(key.track.description, "640x360 Constrained Baseline 3.1");
        assert_eq!(key.pts, 90_000);
        let delta = tracks.frame(mid, WebrtcCodec::H264, 93_000, &annex_b(&[&[0x41, 0x9a]])).expect("frame");
        assert!(!delta.keyframe);
        assert!(Arc::ptr_eq(&key.track, &delta.track), "same parameters, same track");
        let mut other_pps = pps.to_vec();
        other_pps.push(0x80);
        let changed = tracks.frame(mid, WebrtcCodec::H264, 96_000, &annex_b(&[sps, &other_pps, &[0x65, 0x88]]));
        assert!(!Arc::ptr_eq(&key.track, &changed.expect("frame").track), "new parameters, new track");
    }

    #[test]
    fn opus_and_unsupported_codecs() {
        let mut tracks = PublishedTracks::default();
        let audio = tracks.frame(Mid::from("1"), WebrtcCodec::Opus, 960, &[1, 2, 3]).expect("opus");
        assert_eq!((audio.track.codec, audio.track.clock_rate, audio.keyframe), (Codec::Opus, 48_000, true));
        assert!(tracks.frame(Mid::from("2"), WebrtcCodec::Vp9, 0, &[1]).is_none());
        assert!(tracks.frame(Mid::from("1"), WebrtcCodec::Opus, 0, &[]).is_none());
    }
}
