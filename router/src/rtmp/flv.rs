//! FLV tag bodies as RTMP carries them (video and audio messages), to and from route frames.
//!
//! Pure functions over untrusted bytes: every parse returns an error value, never panics.

use bytes::Bytes;

use crate::media::Codec;
use crate::media::flv::{CODEC_AVC, DATA_CSID, PLAYER_CHUNK_SIZE, SOUND_AAC, chunk_message};
use crate::route::TrackInfo;

/// Parsing FLV tags is shared with sluice-edge (its RTMP pull), so it lives in `sluice-media`.
pub use crate::media::flv::{AudioTag, FlvError, VideoTag, parse_audio, parse_video};

/// Shared with sluice-edge, which publishes with it.
pub use crate::media::flv::sequence_header;

/// The `onMetaData` a player is sent before its first frame, as a chunked data message at timestamp 0: which
/// tracks follow, in FLV's codec ids. Tracks FLV cannot carry are left out, as their frames are.
///
/// Timestamp 0 matters: ffmpeg's FLV reader skips script data only at dts 0, and turns any later one into a
/// subtitle ("text") stream, which makes `-map 0 -c copy out.mp4` fail (issue 18). rml_rtmp stamps its data
/// messages with the session's age, so players get theirs from here instead.
pub fn metadata_message(tracks: &[TrackInfo], stream_id: u32) -> Option<Bytes> {
    use rml_rtmp::rml_amf0::Amf0Value;
    let number = |n: u32| Amf0Value::Number(f64::from(n));
    let mut properties = std::collections::HashMap::new();
    if let Some(video) = tracks.iter().find(|t| t.codec == Codec::H264) {
        properties.insert("videocodecid".to_string(), number(u32::from(CODEC_AVC)));
        if let Some([w, h]) = video.video_size {
            properties.insert("width".to_string(), number(w));
            properties.insert("height".to_string(), number(h));
        }
    }
    if let Some(audio) = tracks.iter().find(|t| t.codec == Codec::Aac) {
        properties.insert("audiocodecid".to_string(), number(u32::from(SOUND_AAC)));
        properties.insert("audiosamplerate".to_string(), number(audio.clock_rate));
    }
    properties.insert("encoder".to_string(), Amf0Value::Utf8String(format!("sluice {}", env!("CARGO_PKG_VERSION"))));
    data_message(vec![Amf0Value::Utf8String("onMetaData".into()), Amf0Value::Object(properties)], stream_id)
}

/// `|RtmpSampleAccess`, which Flash-era players expect after play starts; at timestamp 0 for the same reason as
/// [`metadata_message`].
pub fn sample_access_message(stream_id: u32) -> Option<Bytes> {
    use rml_rtmp::rml_amf0::Amf0Value;
    let values =
        vec![Amf0Value::Utf8String("|RtmpSampleAccess".into()), Amf0Value::Boolean(false), Amf0Value::Boolean(false)];
    data_message(values, stream_id)
}

fn data_message(values: Vec<rml_rtmp::rml_amf0::Amf0Value>, stream_id: u32) -> Option<Bytes> {
    let payload = rml_rtmp::messages::RtmpMessage::Amf0Data { values }
        .into_message_payload(rml_rtmp::time::RtmpTimestamp::new(0), stream_id)
        .ok()?;
    Some(chunk_message(DATA_CSID, 0, payload.type_id, stream_id, &payload.data, PLAYER_CHUNK_SIZE))
}

/// The chunk stream rml_rtmp's serializer puts data messages (AMF0/AMF3 data, types 18 and 19) on.
pub const RML_DATA_CSID: u8 = 3;

/// Whether a packet rml_rtmp serialized is a data message (by its chunk stream). Its play acceptance sends two,
/// `|RtmpSampleAccess` and `onStatus NetStream.Data.Start`, stamped with the session's age: ffmpeg reads the
/// first as a subtitle stream and the second as a data stream. Dropping them is safe because nothing else
/// rml_rtmp sends a player uses that chunk stream (players' data messages go on [`DATA_CSID`]), so no later
/// header is compressed against them.
pub fn is_rml_data_packet(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| b & 0x3f == RML_DATA_CSID)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::CodecParams;

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
    fn chunking_matches_rml_rtmp() {
        // rml_rtmp's own serializer, for a fresh chunk stream, writes a full header then type-3 continuations.
        let body = vec![0xabu8; 10_000];
        for ts in [0u32, 1234, 0x0100_0000] {
            let ours = chunk_message(4, ts, 9, 1, &body, 4096);
            let mut serializer = rml_rtmp::chunk_io::ChunkSerializer::new();
            let _ = serializer.set_max_chunk_size(4096, rml_rtmp::time::RtmpTimestamp::new(0));
            let message = rml_rtmp::messages::RtmpMessage::VideoData { data: Bytes::from(body.clone()) }
                .into_message_payload(rml_rtmp::time::RtmpTimestamp::new(ts), 1)
                .expect("payload");
            // A fresh serializer writes a full header first and type-3 continuation chunks.
            let theirs = serializer.serialize(&message, false, false).expect("serialize");
            assert!(ours[..] == theirs.bytes[..], "timestamp {ts}: {} bytes vs {}", ours.len(), theirs.bytes.len());
        }
    }

    #[test]
    fn rml_data_packets_are_told_apart_and_ours_read_back_at_timestamp_0() {
        use rml_rtmp::messages::RtmpMessage;
        use rml_rtmp::rml_amf0::Amf0Value;
        use rml_rtmp::time::RtmpTimestamp;
        let mut serializer = rml_rtmp::chunk_io::ChunkSerializer::new();
        let mut packet = |m: RtmpMessage| {
            let payload = m.into_message_payload(RtmpTimestamp::new(5000), 1).expect("payload");
            serializer.serialize(&payload, false, false).expect("serialize").bytes
        };
        let data = packet(RtmpMessage::Amf0Data { values: vec![Amf0Value::Utf8String("|RtmpSampleAccess".into())] });
        let status = packet(RtmpMessage::Amf0Data { values: vec![Amf0Value::Utf8String("onStatus".into())] });
        let command = packet(RtmpMessage::Amf0Command {
            command_name: "onStatus".into(),
            transaction_id: 0.0,
            command_object: Amf0Value::Null,
            additional_arguments: vec![],
        });
        let video = packet(RtmpMessage::VideoData { data: Bytes::from_static(&[0x17, 0]) });
        assert!(
            is_rml_data_packet(&data) && is_rml_data_packet(&status),
            "both data messages, full or compressed header"
        );
        assert!(!is_rml_data_packet(&command) && !is_rml_data_packet(&video));

        let tracks = [TrackInfo {
            id: 1,
            kind: crate::media::MediaKind::Video,
            codec: Codec::H264,
            clock_rate: 90_000,
            description: String::new(),
            h264_profile_idc: Some(66),
            video_size: Some([640, 360]),
            opus_refusal: None,
        }];
        let ours = metadata_message(&tracks, 1).expect("message");
        assert!(!is_rml_data_packet(&ours), "on a chunk stream of our own");
        let mut deserializer = rml_rtmp::chunk_io::ChunkDeserializer::new();
        let payload = deserializer.get_next_message(&ours).expect("parse").expect("one message");
        assert_eq!(payload.timestamp, RtmpTimestamp::new(0));
        let Ok(RtmpMessage::Amf0Data { values }) = payload.to_rtmp_message() else { panic!("a data message") };
        assert_eq!(values[0], Amf0Value::Utf8String("onMetaData".into()));
        let Amf0Value::Object(props) = &values[1] else { panic!("properties") };
        assert_eq!(props["videocodecid"], Amf0Value::Number(7.0));
        assert_eq!(props["width"], Amf0Value::Number(640.0));
        assert!(!props.contains_key("audiocodecid"), "only the tracks the route carries");
    }

    #[test]
    fn aac_sequence_header_fields() {
        assert_eq!(
            parse_audio(&[0xaf, 0, 0x11, 0x90])
                .map(|t| matches!(t, AudioTag::AacConfig { sample_rate: 48000, channels: 2, .. })),
            Ok(true)
        );
    }
}
