//! A route frame as RTMP sends it: the FLV tag body (the RTMP message payload) and, for players, the same message
//! already chunked. Pure and free of any RTMP session: the router's RTMP paths (`rtmp`, players, pushes) build on
//! it, and what the bytes mean on the wire is theirs to know.

use bytes::{BufMut, Bytes, BytesMut};

use crate::aac::aac_config;
use crate::h264::{self, avc_decoder_config};
use crate::{Codec, CodecParams, Frame};

/// A frame as one RTMP message.
#[derive(Debug, Clone)]
pub struct FlvMessage {
    pub video: bool,
    pub timestamp_ms: u32,
    /// The FLV tag body (the RTMP message payload), for sessions that chunk it themselves (pushes).
    pub body: Bytes,
    /// The body already chunked for players of stream id 1: the same bytes for every one of them.
    pub chunked: Bytes,
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

/// FLV codec ids (video: AVC; audio: AAC).
pub const CODEC_AVC: u8 = 7;
pub const SOUND_AAC: u8 = 10;
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

/// Chunk stream ids for media and data Sluice chunks itself (rml_rtmp uses 2 to 6).
pub const VIDEO_CSID: u8 = 7;
pub const AUDIO_CSID: u8 = 8;
pub const DATA_CSID: u8 = 9;
/// The outbound chunk size every server session announces (rml_rtmp's `ServerSessionConfig` default).
pub const PLAYER_CHUNK_SIZE: usize = 4096;
/// The message stream id players get for their first stream (`createStream` answers 1).
pub const PLAYER_STREAM_ID: u32 = 1;

/// One RTMP message as chunks with a full (type 0) header, so the bytes depend on nothing a session remembers:
/// every player of a route can be sent the same bytes. Continuation chunks are type 3; timestamps from
/// 0xFFFFFF up go in the extended timestamp field of every chunk (RTMP 5.3.1.3).
pub fn chunk_message(
    csid: u8,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Bytes {
    let extended = timestamp >= 0x00ff_ffff;
    let chunks = payload.len().div_ceil(chunk_size).max(1);
    let mut b = BytesMut::with_capacity(payload.len() + 16 + chunks * 5);
    for (i, part) in payload.chunks(chunk_size).enumerate() {
        if i == 0 {
            b.put_u8(csid & 0x3f);
            let ts = if extended { 0x00ff_ffff } else { timestamp };
            b.put_slice(&ts.to_be_bytes()[1..]);
            b.put_slice(&(payload.len() as u32).to_be_bytes()[1..]);
            b.put_u8(type_id);
            b.put_u32_le(stream_id);
        } else {
            b.put_u8(0xc0 | (csid & 0x3f));
        }
        if extended {
            b.put_u32(timestamp);
        }
        b.put_slice(part);
    }
    b.freeze()
}

/// The frame as an RTMP message, its body also chunked for players of stream id 1. Readers ask [`Frame::flv`],
/// which makes this once per route frame, shared by every player and push.
pub fn route_message(frame: &Frame) -> Option<FlvMessage> {
    let (video, timestamp_ms, body) = frame_message(frame)?;
    let (csid, type_id) = if video { (VIDEO_CSID, 9) } else { (AUDIO_CSID, 8) };
    let chunked = chunk_message(csid, timestamp_ms, type_id, PLAYER_STREAM_ID, &body, PLAYER_CHUNK_SIZE);
    Some(FlvMessage { video, timestamp_ms, body, chunked })
}
