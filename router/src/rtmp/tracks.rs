//! FLV tags from a publisher or a pulled stream, as route events: sequence headers become track parameters,
//! tag timestamps (ms) become track clocks.

use std::sync::Arc;

use bytes::Bytes;

use super::flv::{self, AudioTag, FlvError, VideoTag};
use crate::media::{Codec, CodecParams, Frame, Track, TrackId, h264};
use crate::route::SourceEvent;

/// The tracks of one RTMP stream.
#[derive(Debug, Default)]
pub struct FlvTracks {
    video: Option<Arc<Track>>,
    audio: Option<Arc<Track>>,
    /// Audio in a codec routes do not carry (MP3, Speex...): dropped, the video still flows; said once.
    audio_refused: bool,
}

impl FlvTracks {
    /// Events for one video message (`timestamp` in ms): a track change, a frame, or nothing.
    pub fn video(&mut self, data: &Bytes, timestamp_ms: u32) -> Result<Vec<SourceEvent>, FlvError> {
        match flv::parse_video(data)? {
            VideoTag::AvcSequenceHeader { sps, pps } => {
                let description = h264::parse_sps(&sps).map(|i| i.describe()).unwrap_or_default();
                let params = CodecParams::H264 { sps, pps };
                if self.video.as_ref().is_some_and(|t| t.params == params) {
                    return Ok(Vec::new());
                }
                self.video = Some(Arc::new(Track {
                    id: TrackId(0),
                    codec: Codec::H264,
                    clock_rate: 90_000,
                    params,
                    description,
                }));
                Ok(vec![self.announce()])
            }
            VideoTag::AvcNalus { keyframe, composition_time_ms, data: nalus } => {
                // Pictures before the sequence header cannot be decoded by anyone: skip them.
                let Some(track) = self.video.clone() else { return Ok(Vec::new()) };
                let dts = i64::from(timestamp_ms) * 90;
                let pts = dts + i64::from(composition_time_ms) * 90;
                Ok(vec![SourceEvent::Frame(Frame::new(track, pts, dts, keyframe, data.slice_ref(nalus)))])
            }
            VideoTag::Ignored => Ok(Vec::new()),
        }
    }

    /// Events for one audio message. Unsupported audio codecs are dropped (reported once), not fatal.
    pub fn audio(&mut self, data: &Bytes, timestamp_ms: u32) -> Result<Vec<SourceEvent>, FlvError> {
        let tag = match flv::parse_audio(data) {
            Err(e @ FlvError::AudioCodec(_)) => {
                if self.audio_refused {
                    return Ok(Vec::new());
                }
                self.audio_refused = true;
                return Ok(vec![SourceEvent::Problem { error: format!("{e}; the audio is dropped, video continues") }]);
            }
            other => other?,
        };
        match tag {
            AudioTag::AacConfig { config, sample_rate, channels } => {
                let params = CodecParams::Aac { audio_specific_config: config };
                if self.audio.as_ref().is_some_and(|t| t.params == params) {
                    return Ok(Vec::new());
                }
                let description = format!("{sample_rate} Hz, {channels} ch");
                self.audio = Some(Arc::new(Track {
                    id: TrackId(1),
                    codec: Codec::Aac,
                    clock_rate: sample_rate,
                    params,
                    description,
                }));
                Ok(vec![self.announce()])
            }
            AudioTag::AacRaw(raw) => {
                let Some(track) = self.audio.clone() else { return Ok(Vec::new()) };
                let ts = i64::from(timestamp_ms) * i64::from(track.clock_rate) / 1000;
                Ok(vec![SourceEvent::Frame(Frame::new(track, ts, ts, true, data.slice_ref(raw)))])
            }
        }
    }

    fn announce(&self) -> SourceEvent {
        SourceEvent::Tracks([&self.video, &self.audio].into_iter().flatten().cloned().collect())
    }
}
