//! Push over RTMP, the fallback where UDP does not pass: rml_rtmp's client session (through `sluice-client`),
//! the AVC sequence header (`sluice_media::flv`, as the router sends its players) whenever the SPS/PPS change, then
//! one FLV video tag per access unit.

use std::time::Instant;

use anyhow::Context;

use bytes::{BufMut, Bytes, BytesMut};
use rml_rtmp::sessions::StreamMetadata;
use rml_rtmp::time::RtmpTimestamp;
use sluice_client::rtmp::{Client, Mode, RtmpTarget};
use sluice_media::CodecParams;
use sluice_media::flv::sequence_header;
use sluice_media::h264::{NAL_AUD, NAL_PPS, NAL_SPS, nal_type};
use tokio::io::AsyncReadExt;
use url::Url;

use super::{Ended, KeyframeGate, Link};
use crate::config::Video;
use crate::source::AccessUnit;

pub async fn push(url: &Url, video: Video, link: &mut Link<'_>) -> anyhow::Result<Ended> {
    let target = RtmpTarget::parse(url)?;
    let (mut client, _) = Client::connect(&target, Mode::Publish).await?;
    link.connected_at = Some(Instant::now());
    link.capture.request_keyframe();
    tracing::info!("connected over RTMP");
    let mut metadata = StreamMetadata::new();
    metadata.video_width = Some(video.width);
    metadata.video_height = Some(video.height);
    metadata.video_codec_id = Some(7); // AVC
    metadata.video_frame_rate = Some(video.fps as f32);
    metadata.video_bitrate_kbps = Some(video.bitrate / 1000);
    metadata.encoder = Some(format!("sluice-edge {}", env!("CARGO_PKG_VERSION")));
    let r = client.session.publish_metadata(&metadata)?;
    client.apply(vec![r]).await?;

    let mut gate = KeyframeGate::default();
    let mut parameter_sets: Option<(Bytes, Bytes)> = None;
    let mut first: Option<Instant> = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        link.stats.maybe_log();
        tokio::select! {
            unit = link.capture.units.recv() => {
                let Some(unit) = unit else {
                    if let Ok(results) = client.session.stop_publishing() {
                        let _ = client.apply(results).await;
                    }
                    return Ok(Ended::SourceEnded);
                };
                if !gate.pass(&unit, link.capture) {
                    continue;
                }
                let start = *first.get_or_insert(unit.captured);
                let ms = unit.captured.saturating_duration_since(start).as_millis() as u32;
                if let Some(sets) = unit.parameter_sets()
                    && parameter_sets.as_ref() != Some(&sets)
                {
                    let params = CodecParams::H264 { sps: sets.0.clone(), pps: sets.1.clone() };
                    let (_, header) = sequence_header(&params).context("an H.264 sequence header")?;
                    // At the frame's time: a header from the past would run a player's clock backwards.
                    let r = client.session.publish_video_data(header, RtmpTimestamp::new(ms), false)?;
                    client.apply(vec![r]).await?;
                    parameter_sets = Some(sets);
                }
                if parameter_sets.is_none() {
                    anyhow::bail!("the source's keyframes carry no SPS/PPS (use rpicam-vid --inline)");
                }
                let r = client.session.publish_video_data(video_tag(&unit), RtmpTimestamp::new(ms), !unit.keyframe)?;
                client.apply(vec![r]).await?;
                link.stats.sent(&unit);
            }
            n = client.tcp.read(&mut buf) => {
                // The server's acknowledgements and pings; a close is the end of this connection.
                match n? {
                    0 => anyhow::bail!("the router closed the RTMP connection"),
                    n => { client.input(&buf[..n]).await?; }
                }
            }
            _ = link.stop.changed() => {
                if let Ok(results) = client.session.stop_publishing() {
                    let _ = client.apply(results).await;
                }
                return Ok(Ended::Stopped);
            }
        }
    }
}

/// One access unit as an FLV video tag body: frame type and AVC, packet type 1 (NALU), composition time 0 (no
/// B-frames from a camera pipeline), then the NAL units length-prefixed. Parameter sets travel in the sequence
/// header and access unit delimiters mean nothing in FLV.
fn video_tag(unit: &AccessUnit) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + unit.len() + 4 * unit.nals.len());
    b.put_slice(&[if unit.keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
    for nal in unit.nals.iter().filter(|n| !matches!(nal_type(n), NAL_SPS | NAL_PPS | NAL_AUD)) {
        b.put_u32(nal.len() as u32);
        b.put_slice(nal);
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_the_pictures_and_the_header_the_parameter_sets() {
        let nals = vec![
            Bytes::from_static(&[0x09, 0x10]),
            Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1f, 1]),
            Bytes::from_static(&[0x68, 2]),
            Bytes::from_static(&[0x65, 0x88, 3]),
        ];
        let unit = AccessUnit::new(nals, Instant::now());
        assert!(unit.keyframe);
        assert_eq!(&video_tag(&unit)[..], [0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 3]);
        let (sps, pps) = unit.parameter_sets().expect("sets");
        let (_, header) = sequence_header(&CodecParams::H264 { sps, pps }).expect("header");
        assert_eq!(&header[..6], [0x17, 0, 0, 0, 0, 1]);
        assert_eq!(&header[6..9], [0x42, 0xc0, 0x1f], "profile, constraints, level from the SPS");
    }
}
