//! A route frame as RTMP sends it: the FLV tag body (the RTMP message payload) and, for players, the same message
//! already chunked. Pure and free of any RTMP session: the router's RTMP paths (`rtmp`, players, pushes) build on
//! it, and what the bytes mean on the wire is theirs to know.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{Codec, Frame};

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
