//! `from = "whip"`: a WebRTC publisher (a browser, OBS, GStreamer's whipclientsink) feeding its route. The HTTP
//! API admits the offer (`POST /{route}/whip`); this negotiates the publisher's side and starts its session on
//! the WebRTC engine, which depacketizes what it sends into route frames (`webrtc::depacketize`).

use std::collections::HashMap;
use std::net::SocketAddr;

use str0m::media::{Direction, MediaKind};

use crate::admit::Admitted;
use crate::connections::AddressSlot;
use crate::media::Codec;
use crate::webrtc::session::{Publisher, Role};
use crate::webrtc::{Answer, WebRtc, WebRtcError, depacketize, sdp};

/// Answers a WHIP offer: the admitted route's publisher (replacing a current one when the route allows it).
pub async fn publish(
    webrtc: &WebRtc,
    admitted: &Admitted,
    offer: &str,
    remote: Option<SocketAddr>,
    slot: AddressSlot,
) -> Result<Answer, WebRtcError> {
    let negotiated = webrtc.accept_offer(offer, false, preferred_video_codec(offer))?;
    let receiving: Vec<_> =
        negotiated.media.iter().filter(|(_, _, d)| matches!(d, Direction::RecvOnly | Direction::SendRecv)).collect();
    let usable = receiving.iter().any(|(mid, _, _)| {
        sdp::negotiated_params(&negotiated.rtc, *mid).iter().any(|p| depacketize::route_codec(p.spec().codec).is_some())
    });
    if !usable {
        return Err(WebRtcError::NoCommonCodec(
            "the offer sends no media in a codec the router takes (H.264, VP8, Opus, PCMU, PCMA)".into(),
        ));
    }
    let video_mids = receiving.iter().filter(|(_, k, _)| *k == MediaKind::Video).map(|(m, _, _)| *m).collect();
    let route = &admitted.route;
    let feed = route.attach_publisher(remote.map(|r| r.to_string()), admitted.config.override_publisher).await?;
    let role = Role::Publisher(Publisher::new(feed, video_mids));
    webrtc.start_session(negotiated, route.name(), role, remote, slot).await
}

/// The publisher's first choice among the video codecs routes carry (SDP lists formats in preference order),
/// so the answer keeps it instead of imposing ours.
fn preferred_video_codec(offer: &str) -> Option<Codec> {
    let mut formats: Vec<&str> = Vec::new();
    let mut in_video = false;
    let mut rtpmap: HashMap<&str, &str> = HashMap::new();
    let mut h264_mode1: Vec<&str> = Vec::new();
    for line in offer.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video");
            if in_video && formats.is_empty() {
                formats = m.split_whitespace().skip(3).collect();
            }
        } else if in_video {
            if let Some(rest) = line.strip_prefix("a=rtpmap:")
                && let Some((pt, codec)) = rest.split_once(' ')
            {
                rtpmap.insert(pt, codec);
            } else if let Some(rest) = line.strip_prefix("a=fmtp:")
                && let Some((pt, params)) = rest.split_once(' ')
                && params.contains("packetization-mode=1")
            {
                h264_mode1.push(pt);
            }
        }
    }
    formats.iter().find_map(|pt| {
        let codec = rtpmap.get(pt)?.split('/').next()?.to_ascii_uppercase();
        match codec.as_str() {
            "H264" if h264_mode1.contains(pt) => Some(Codec::H264),
            "VP8" => Some(Codec::Vp8),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publishers_first_video_codec_wins() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 102 103\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n\
            a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n";
        assert_eq!(preferred_video_codec(offer), Some(Codec::Vp8));
        let h264_first = offer
            .replace("96 102 103", "103 102 96")
            .replace("a=rtpmap:102", "a=rtpmap:103 H264/90000\r\na=rtpmap:102");
        // 103 is H.264 without packetization mode 1: skipped, 102 qualifies.
        assert_eq!(preferred_video_codec(&h264_first), Some(Codec::H264));
    }
}
