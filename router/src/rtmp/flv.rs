//! FLV tag bodies as RTMP carries them (video and audio messages), to and from route frames.
//!
//! Pure functions over untrusted bytes: every parse returns an error value, never panics.

use bytes::{BufMut, Bytes, BytesMut};

use crate::media::{Codec, CodecParams, Frame, h264};

const CODEC_AVC: u8 = 7;
const SOUND_AAC: u8 = 10;
/// Enhanced RTMP: the top bit of the first video byte marks an extended header with a FourCC.
const EX_HEADER: u8 = 0x80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag<'a> {
    /// AVCDecoderConfigurationRecord: SPS and PPS.
    AvcSequenceHeader { sps: Bytes, pps: Bytes },
    /// Length-prefixed NAL units of one picture.
    AvcNalus { keyframe: bool, composition_time_ms: i32, data: &'a [u8] },
    /// End of sequence, or a frame-type-5 info frame: nothing to forward.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("empty {0} message")]
    Empty(&'static str),
    #[error("{0} message is truncated")]
    Truncated(&'static str),
    #[error("video codec {0} is not supported over RTMP (publish H.264)")]
    VideoCodec(u8),
    #[error("Enhanced RTMP video ({0}) is not supported yet; publish H.264 (in OBS: x264 or NVENC H.264)")]
    EnhancedVideo(String),
    #[error("audio format {0} is not supported over RTMP (publish AAC)")]
    AudioCodec(u8),
    #[error("bad AVC sequence header: {0}")]
    BadSequenceHeader(&'static str),
    #[error("bad AudioSpecificConfig")]
    BadAudioConfig,
}

pub fn parse_video(data: &[u8]) -> Result<VideoTag<'_>, FlvError> {
    let first = *data.first().ok_or(FlvError::Empty("video"))?;
    if first & EX_HEADER != 0 {
        let fourcc = data.get(1..5).map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default();
        return Err(FlvError::EnhancedVideo(fourcc));
    }
    let frame_type = first >> 4;
    let codec = first & 0x0f;
    if frame_type == 5 {
        return Ok(VideoTag::Ignored);
    }
    if codec != CODEC_AVC {
        return Err(FlvError::VideoCodec(codec));
    }
    let header = data.get(1..5).ok_or(FlvError::Truncated("video"))?;
    // Composition time: signed 24-bit.
    let cts = (i32::from(header[1]) << 16 | i32::from(header[2]) << 8 | i32::from(header[3])) << 8 >> 8;
    match header[0] {
        0 => {
            let (sps, pps) = h264::parse_avc_decoder_config(&data[5..]).map_err(FlvError::BadSequenceHeader)?;
            Ok(VideoTag::AvcSequenceHeader { sps, pps })
        }
        1 => Ok(VideoTag::AvcNalus { keyframe: frame_type == 1, composition_time_ms: cts, data: &data[5..] }),
        _ => Ok(VideoTag::Ignored),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag<'a> {
    AacConfig { config: Bytes, sample_rate: u32, channels: u8 },
    AacRaw(&'a [u8]),
}

pub fn parse_audio(data: &[u8]) -> Result<AudioTag<'_>, FlvError> {
    let first = *data.first().ok_or(FlvError::Empty("audio"))?;
    let format = first >> 4;
    if format != SOUND_AAC {
        return Err(FlvError::AudioCodec(format));
    }
    match data.get(1).ok_or(FlvError::Truncated("audio"))? {
        0 => {
            let config = &data[2..];
            let (sample_rate, channels) = aac_config(config).ok_or(FlvError::BadAudioConfig)?;
            Ok(AudioTag::AacConfig { config: Bytes::copy_from_slice(config), sample_rate, channels })
        }
        _ => Ok(AudioTag::AacRaw(&data[2..])),
    }
}

/// Sample rate and channel count from an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).
pub fn aac_config(asc: &[u8]) -> Option<(u32, u8)> {
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    let bits = u32::from(*asc.first()?) << 8 | u32::from(*asc.get(1)?);
    let index = ((bits >> 7) & 0x0f) as usize;
    let channels = ((bits >> 3) & 0x0f) as u8;
    Some((*RATES.get(index)?, channels))
}

/// An AVCDecoderConfigurationRecord for one SPS and one PPS.
pub fn avc_decoder_config(sps: &[u8], pps: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(11 + sps.len() + pps.len());
    b.put_u8(1);
    b.put_slice(sps.get(1..4).unwrap_or(&[0x42, 0xc0, 0x1f]));
    b.put_u8(0xff); // 4-byte NAL lengths
    b.put_u8(0xe1); // one SPS
    b.put_u16(sps.len() as u16);
    b.put_slice(sps);
    b.put_u8(1);
    b.put_u16(pps.len() as u16);
    b.put_slice(pps);
    b.freeze()
}

/// The sequence-header message for a track, sent to a player before its first frame (and on changes).
pub fn sequence_header(params: &CodecParams) -> Option<(bool, Bytes)> {
    match params {
        CodecParams::H264 { sps, pps } => {
            let mut b = BytesMut::new();
            b.put_slice(&[0x17, 0, 0, 0, 0]);
            b.put_slice(&avc_decoder_config(sps, pps));
            Some((true, b.freeze()))
        }
        CodecParams::Aac { audio_specific_config } => {
            let mut b = BytesMut::new();
            b.put_slice(&[0xaf, 0]);
            b.put_slice(audio_specific_config);
            Some((false, b.freeze()))
        }
        _ => None,
    }
}

/// A frame as an RTMP message body (FLV tag without the tag header), or `None` for codecs FLV cannot carry.
/// Returns (is_video, timestamp in ms, body).
pub fn frame_message(frame: &Frame) -> Option<(bool, u32, Bytes)> {
    let clock = i64::from(frame.track.clock_rate.max(1));
    let dts_ms = frame.dts.max(0) * 1000 / clock;
    match frame.track.codec {
        Codec::H264 => {
            let cts = ((frame.pts - frame.dts) * 1000 / clock).clamp(-(1 << 23), (1 << 23) - 1) as i32;
            let mut b = BytesMut::with_capacity(5 + frame.data.len());
            b.put_u8(if frame.keyframe { 0x17 } else { 0x27 });
            b.put_u8(1);
            b.put_slice(&cts.to_be_bytes()[1..]);
            b.put_slice(&frame.data);
            Some((true, dts_ms as u32, b.freeze()))
        }
        Codec::Aac => {
            let mut b = BytesMut::with_capacity(2 + frame.data.len());
            b.put_slice(&[0xaf, 1]);
            b.put_slice(&frame.data);
            Some((false, dts_ms as u32, b.freeze()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_sequence_header_round_trip() {
        let sps = [0x67u8, 0x42, 0xc0, 0x1f, 0xda];
        let pps = [0x68u8, 0xce, 0x3c, 0x80];
        let (_, msg) = sequence_header(&CodecParams::H264 {
            sps: Bytes::copy_from_slice(&sps),
            pps: Bytes::copy_from_slice(&pps),
        })
        .expect("h264");
        assert_eq!(
            parse_video(&msg),
            Ok(VideoTag::AvcSequenceHeader { sps: Bytes::copy_from_slice(&sps), pps: Bytes::copy_from_slice(&pps) })
        );
    }

    #[test]
    fn nalus_with_negative_composition_time() {
        let msg = [0x27, 1, 0xff, 0xff, 0xd8, 0, 0, 0, 1, 0x41];
        assert_eq!(
            parse_video(&msg),
            Ok(VideoTag::AvcNalus { keyframe: false, composition_time_ms: -40, data: &[0, 0, 0, 1, 0x41] })
        );
    }

    #[test]
    fn unsupported_and_broken_input_is_an_error() {
        assert_eq!(parse_video(&[]), Err(FlvError::Empty("video")));
        assert_eq!(parse_video(&[0x17]), Err(FlvError::Truncated("video")));
        assert_eq!(parse_video(&[0x12, 0]), Err(FlvError::VideoCodec(2)));
        assert_eq!(parse_video(&[0x90, b'h', b'v', b'c', b'1']), Err(FlvError::EnhancedVideo("hvc1".into())));
        assert!(matches!(parse_video(&[0x17, 0, 0, 0, 0, 1]), Err(FlvError::BadSequenceHeader(_))));
        assert_eq!(parse_audio(&[0x2f, 1]), Err(FlvError::AudioCodec(2)));
        assert_eq!(parse_audio(&[0xaf, 0, 0xff]), Err(FlvError::BadAudioConfig));
    }

    #[test]
    fn aac_config_fields() {
        // AAC-LC, 44.1 kHz (index 4), stereo: 0x12 0x10.
        assert_eq!(aac_config(&[0x12, 0x10]), Some((44100, 2)));
        assert_eq!(
            parse_audio(&[0xaf, 0, 0x11, 0x90])
                .map(|t| matches!(t, AudioTag::AacConfig { sample_rate: 48000, channels: 2, .. })),
            Ok(true)
        );
    }
}
