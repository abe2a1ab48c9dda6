//! SDP both ways: what DESCRIBE answers for a route's tracks (with the parameters a player needs before the
//! first frame: sprop-parameter-sets, the AAC config), and what an ANNOUNCE's SDP says a publisher will send.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use crate::media::{Codec, CodecParams, Track, TrackId, aac, h264};

/// A route track as DESCRIBE offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    pub track: TrackId,
    pub codec: Codec,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// The control URL relative to the route's (`trackID=N`).
    pub control: String,
}

/// The SDP for `tracks`, and the tracks as offered (in SDP order).
pub fn describe(route: &str, tracks: &[Arc<Track>], server: IpAddr) -> (String, Vec<Offered>) {
    let family = if server.is_ipv6() { "IP6" } else { "IP4" };
    let mut sdp = format!(
        "v=0\r\no=- 0 0 IN {family} {server}\r\ns={route}\r\nc=IN {family} {}\r\nt=0 0\r\na=tool:Sluice\r\na=control:*\r\n",
        if server.is_ipv6() { "::" } else { "0.0.0.0" }
    );
    let mut offered = Vec::new();
    for (i, track) in tracks.iter().enumerate() {
        let dynamic = 96 + i as u8;
        let (kind, payload_type, rtpmap, fmtp) = match (&track.codec, &track.params) {
            (Codec::H264, params) => {
                let mut fmtp = "packetization-mode=1".to_string();
                if let CodecParams::H264 { sps, pps } = params {
                    if let Ok(info) = h264::parse_sps(sps) {
                        let _ = write!(fmtp, ";profile-level-id={}", info.profile_level_id());
                    }
                    let _ = write!(fmtp, ";sprop-parameter-sets={},{}", BASE64.encode(sps), BASE64.encode(pps));
                }
                ("video", dynamic, "H264/90000".to_string(), Some(fmtp))
            }
            (Codec::H265, params) => {
                let fmtp = match params {
                    CodecParams::H265 { vps, sps, pps } => Some(format!(
                        "sprop-vps={};sprop-sps={};sprop-pps={}",
                        BASE64.encode(vps),
                        BASE64.encode(sps),
                        BASE64.encode(pps)
                    )),
                    _ => None,
                };
                ("video", dynamic, "H265/90000".to_string(), fmtp)
            }
            (Codec::Vp8, _) => ("video", dynamic, "VP8/90000".to_string(), None),
            (Codec::Aac, params) => {
                let asc = match params {
                    CodecParams::Aac { audio_specific_config } => audio_specific_config.clone(),
                    _ => Bytes::new(),
                };
                let channels = aac::aac_config(&asc).map_or(2, |(_, c)| c.max(1));
                let config: String = asc.iter().map(|b| format!("{b:02x}")).collect();
                let fmtp = format!(
                    "profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={config}"
                );
                ("audio", dynamic, format!("mpeg4-generic/{}/{channels}", track.clock_rate), Some(fmtp))
            }
            (Codec::Opus, _) => ("audio", dynamic, "opus/48000/2".to_string(), None),
            (Codec::Pcmu, _) => ("audio", 0, "PCMU/8000".to_string(), None),
            (Codec::Pcma, _) => ("audio", 8, "PCMA/8000".to_string(), None),
        };
        let control = format!("trackID={i}");
        let _ = write!(sdp, "m={kind} 0 RTP/AVP {payload_type}\r\na=rtpmap:{payload_type} {rtpmap}\r\n");
        if let Some(fmtp) = fmtp {
            let _ = write!(sdp, "a=fmtp:{payload_type} {fmtp}\r\n");
        }
        let _ = write!(sdp, "a=control:{control}\r\n");
        offered.push(Offered {
            track: track.id,
            codec: track.codec,
            payload_type,
            clock_rate: track.clock_rate,
            control,
        });
    }
    (sdp, offered)
}

/// A stream an ANNOUNCE describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// Its `a=control` (relative or absolute), what the client's SETUP names.
    pub control: String,
    pub codec: Codec,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub params: CodecParams,
    /// The `a=fmtp` parameters (the AAC depacketizer needs them).
    pub fmtp: Option<String>,
}

/// The streams of an ANNOUNCE's SDP that routes carry, and a note for each one skipped.
pub fn parse_announce(body: &[u8]) -> Result<(Vec<Announced>, Vec<String>), String> {
    let session = sdp_types::Session::parse(body).map_err(|e| format!("the SDP does not parse: {e}"))?;
    if session.medias.len() > 16 {
        return Err("more than 16 media sections".into());
    }
    let mut streams = Vec::new();
    let mut skipped = Vec::new();
    for (i, media) in session.medias.iter().enumerate() {
        match announced(media, i) {
            Ok(a) => streams.push(a),
            Err(why) => skipped.push(format!("{} stream {i}: {why}", media.media)),
        }
    }
    if streams.is_empty() {
        return Err(match skipped.first() {
            Some(why) => format!("no stream a route can carry ({why})"),
            None => "the SDP has no media".into(),
        });
    }
    Ok((streams, skipped))
}

fn announced(media: &sdp_types::Media, index: usize) -> Result<Announced, String> {
    let payload_type: u8 = media
        .fmt
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .filter(|pt| *pt < 128)
        .ok_or("no payload type")?;
    let attribute = |name: &str| -> Option<&str> {
        media.attributes.iter().filter(|a| a.attribute == name).filter_map(|a| a.value.as_deref()).find_map(|v| {
            let (pt, rest) = v.split_once(' ')?;
            (pt.trim().parse::<u8>().ok()? == payload_type).then_some(rest.trim())
        })
    };
    let rtpmap = attribute("rtpmap").map(str::to_string).or(match payload_type {
        0 => Some("PCMU/8000".into()),
        8 => Some("PCMA/8000".into()),
        _ => None,
    });
    let rtpmap = rtpmap.ok_or("no rtpmap for its payload type")?;
    let mut parts = rtpmap.split('/');
    let encoding = parts.next().unwrap_or_default().to_ascii_lowercase();
    let clock_rate: u32 = parts.next().and_then(|c| c.trim().parse().ok()).filter(|c| *c > 0).ok_or("no clock rate")?;
    let fmtp = attribute("fmtp").map(str::to_string);
    let param = |key: &str| -> Option<&str> {
        fmtp.as_deref()?
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find_map(|(k, v)| k.trim().eq_ignore_ascii_case(key).then_some(v.trim()))
    };
    // A parameter set shorter than its NAL header (two bytes for H.265) is no parameter set.
    let decode = |v: &str| BASE64.decode(v.trim()).ok().filter(|b| b.len() >= 2).map(Bytes::from);
    let (codec, params) = match (media.media.as_str(), encoding.as_str()) {
        ("video", "h264") => {
            let sets: Vec<Bytes> =
                param("sprop-parameter-sets").unwrap_or_default().split(',').filter_map(decode).collect();
            let sps = sets.iter().find(|n| h264::nal_type(n) == h264::NAL_SPS);
            let pps = sets.iter().find(|n| h264::nal_type(n) == h264::NAL_PPS);
            let params = match (sps, pps) {
                (Some(sps), Some(pps)) => CodecParams::H264 { sps: sps.clone(), pps: pps.clone() },
                _ => CodecParams::None,
            };
            (Codec::H264, params)
        }
        ("video", "h265") => {
            let sets = (
                param("sprop-vps").and_then(decode),
                param("sprop-sps").and_then(decode),
                param("sprop-pps").and_then(decode),
            );
            let params = match sets {
                (Some(vps), Some(sps), Some(pps)) => CodecParams::H265 { vps, sps, pps },
                _ => CodecParams::None,
            };
            (Codec::H265, params)
        }
        ("audio", "mpeg4-generic") => {
            let config = param("config").ok_or("AAC without its config")?;
            let asc = hex(config).ok_or("AAC with a config that is not hex")?;
            (Codec::Aac, CodecParams::Aac { audio_specific_config: asc })
        }
        ("audio", "opus") => (Codec::Opus, CodecParams::None),
        ("audio", "pcmu") => (Codec::Pcmu, CodecParams::None),
        ("audio", "pcma") => (Codec::Pcma, CodecParams::None),
        (kind, other) => return Err(format!("{other} {kind} is not a codec routes carry")),
    };
    let control = media
        .attributes
        .iter()
        .find(|a| a.attribute == "control")
        .and_then(|a| a.value.clone())
        .unwrap_or_else(|| format!("trackID={index}"));
    Ok(Announced { control, codec, payload_type, clock_rate, params, fmtp })
}

fn hex(s: &str) -> Option<Bytes> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ffmpeg 5.1 announces for `-c:v libx264 -c:a aac -f rtsp`.
    const FFMPEG: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat 59.27.100\r\n\
        m=video 0 RTP/AVP 96\r\nb=AS:200\r\na=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkAoD2wEQAAAwABAAADADIPFi5I,aMuMsg==; profile-level-id=42C01E\r\na=control:streamid=0\r\n\
        m=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\n\
        a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=121056E500\r\na=control:streamid=1\r\n";

    #[test]
    fn ffmpegs_announce_gives_h264_with_its_parameter_sets_and_aac_with_its_config() {
        let (streams, skipped) = parse_announce(FFMPEG.as_bytes()).expect("parses");
        assert!(skipped.is_empty());
        assert_eq!(streams.len(), 2);
        assert_eq!(
            (streams[0].codec, streams[0].payload_type, streams[0].control.as_str()),
            (Codec::H264, 96, "streamid=0")
        );
        assert!(matches!(&streams[0].params, CodecParams::H264 { sps, pps } if sps[0] == 0x67 && pps[0] == 0x68));
        assert_eq!((streams[1].codec, streams[1].clock_rate), (Codec::Aac, 44_100));
        assert!(
            matches!(&streams[1].params, CodecParams::Aac { audio_specific_config } if audio_specific_config[..2] == [0x12, 0x10])
        );
        assert!(streams[1].fmtp.as_deref().is_some_and(|f| f.contains("sizelength=13")));
    }

    #[test]
    fn what_routes_cannot_carry_is_skipped_or_refused() {
        let jpeg = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 26\r\n";
        assert!(parse_announce(jpeg.as_bytes()).is_err_and(|e| e.contains("no stream")));
        let mixed = format!("{jpeg}m=audio 0 RTP/AVP 0\r\n");
        let (streams, skipped) = parse_announce(mixed.as_bytes()).expect("parses");
        assert_eq!((streams.len(), streams[0].codec, skipped.len()), (1, Codec::Pcmu, 1));
        assert!(parse_announce(b"\xff\xfe garbage").is_err());
    }

    #[test]
    fn describe_then_parse_gives_the_same_tracks() {
        let (streams, _) = parse_announce(FFMPEG.as_bytes()).expect("parses");
        let tracks: Vec<Arc<Track>> = streams
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Arc::new(Track {
                    id: TrackId(i as u32),
                    codec: s.codec,
                    clock_rate: s.clock_rate,
                    params: s.params.clone(),
                    description: String::new(),
                })
            })
            .collect();
        let (sdp, offered) = describe("cam", &tracks, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(offered.iter().map(|o| o.control.as_str()).collect::<Vec<_>>(), ["trackID=0", "trackID=1"]);
        assert!(sdp.to_ascii_lowercase().contains("profile-level-id=42c01e"), "{sdp}");
        let (again, _) = parse_announce(sdp.as_bytes()).expect("our own SDP parses");
        assert_eq!(
            again.iter().map(|a| (&a.params, a.codec)).collect::<Vec<_>>(),
            streams.iter().map(|a| (&a.params, a.codec)).collect::<Vec<_>>()
        );
    }
}
