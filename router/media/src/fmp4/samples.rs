//! What the muxer takes: tracks and samples as the sink world's WIT `media` describes them, in plain types, so
//! native users (the router, its benchmark, tests) need neither the SDK's guest bindings nor a wasm host.

use crate::Codec;

/// One track of the route, as the host describes it (WIT `media.track`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// The id samples name their track by; any u32 (MP4 track ids are assigned separately, from 1).
    pub id: u32,
    pub codec: Codec,
    /// Timestamps are in 1/clock_rate seconds; also the MP4 media timescale.
    pub clock_rate: u32,
    /// Coded size for video; 0 when unknown (players read it from the parameter sets then).
    pub width: u32,
    pub height: u32,
    /// Audio only; 0 for video.
    pub channels: u32,
    pub sample_rate: u32,
    /// AVCDecoderConfigurationRecord (H.264), HEVCDecoderConfigurationRecord (H.265), AudioSpecificConfig (AAC);
    /// empty otherwise.
    pub config: Vec<u8>,
}

impl TrackInfo {
    /// A route track as the muxer describes it: the decoder configuration record built from its parameter sets,
    /// the coded size from its SPS, the audio rate and channels from its AudioSpecificConfig (or the codec's own).
    pub fn of(track: &crate::Track) -> TrackInfo {
        use crate::CodecParams;
        let (mut width, mut height, mut channels, mut sample_rate) = (0, 0, 0, 0);
        let config = match &track.params {
            CodecParams::H264 { sps, pps } => {
                if let Ok(info) = crate::h264::parse_sps(sps) {
                    (width, height) = (info.width, info.height);
                }
                crate::h264::avc_decoder_config(sps, pps).to_vec()
            }
            CodecParams::H265 { vps, sps, pps } => crate::h264::hevc_decoder_config(vps, sps, pps).to_vec(),
            CodecParams::Aac { audio_specific_config } => {
                if let Some((rate, ch)) = crate::aac::aac_config(audio_specific_config) {
                    (sample_rate, channels) = (rate, u32::from(ch));
                }
                audio_specific_config.to_vec()
            }
            CodecParams::None => Vec::new(),
        };
        match track.codec {
            Codec::Opus => (sample_rate, channels) = (48_000, 2),
            Codec::Pcmu | Codec::Pcma => (sample_rate, channels) = (track.clock_rate, 1),
            Codec::Aac if sample_rate == 0 => (sample_rate, channels) = (track.clock_rate, 2),
            _ => {}
        }
        TrackInfo {
            id: track.id.0,
            codec: track.codec,
            clock_rate: track.clock_rate,
            width,
            height,
            channels,
            sample_rate,
            config,
        }
    }
}

/// One access unit inside a batch payload (WIT `media.sample`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub track: u32,
    pub pts: i64,
    pub dts: i64,
    pub keyframe: bool,
    /// The sample's bytes are `payload[offset..offset + len]`: video as 4-byte length-prefixed NAL units (MP4's
    /// own sample format), audio as raw frames.
    pub offset: u32,
    pub len: u32,
    /// Capture time in milliseconds since the Unix epoch, when the source reports one.
    pub wallclock_ms: Option<u64>,
}

/// The bytes of one batch, which the segmenter shares among the samples that came in it until their part is
/// written: host memory behind a handle in the plugin, a plain buffer natively.
pub trait Payload {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Payload for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

/// A sample's bytes: `len` bytes at `offset` of a batch payload.
#[derive(Debug)]
pub struct SampleData<P> {
    pub payload: std::sync::Arc<P>,
    pub offset: u32,
    pub len: u32,
}

impl<P> Clone for SampleData<P> {
    fn clone(&self) -> Self {
        SampleData { payload: std::sync::Arc::clone(&self.payload), offset: self.offset, len: self.len }
    }
}

impl<P: AsRef<[u8]>> SampleData<P> {
    /// The sample's bytes, where the payload's bytes are at hand (natively).
    pub fn bytes(&self) -> &[u8] {
        &(*self.payload).as_ref()[self.offset as usize..][..self.len as usize]
    }
}

impl<P> SampleData<P> {
    /// Whether `next` starts where this ends in the same payload (so the two can be written as one range).
    pub fn continues_with(&self, next: &SampleData<P>) -> bool {
        std::sync::Arc::ptr_eq(&self.payload, &next.payload) && self.offset.checked_add(self.len) == Some(next.offset)
    }
}
