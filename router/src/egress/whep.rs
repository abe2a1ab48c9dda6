//! `to = ["whep"]`: WebRTC viewers (browsers, players) of a route. The HTTP API admits the offer
//! (`POST /{route}/whep`); this picks what the viewer is sent and starts its session on the WebRTC engine, which
//! sends every viewer of the route the RTP payloads made once per frame (`Frame::rtp`). AAC audio reaches viewers
//! as Opus, transcoded once per route while a viewer takes audio (`webrtc::subscription`).

use std::net::SocketAddr;

use str0m::media::{Direction, MediaKind};

use crate::connections::AddressSlot;
use crate::media::Codec;
use crate::route::{RouteHandle, RouteSnapshot};
use crate::webrtc::session::{Outgoing, Role, Viewer, accepted_payload_types};
use crate::webrtc::{Answer, WebRtc, WebRtcError, sdp};

/// Answers a WHEP offer: a viewer of `route`.
pub async fn view(
    webrtc: &WebRtc,
    route: &RouteHandle,
    offer: &str,
    remote: Option<SocketAddr>,
    slot: AddressSlot,
) -> Result<Answer, WebRtcError> {
    let snapshot = route.snapshot().await?;
    let negotiated = webrtc.accept_offer(offer, true, None)?;
    let profile = snapshot.tracks.iter().find(|t| t.codec == Codec::H264).and_then(|t| t.h264_profile_idc);
    let mut video = None;
    let mut audio = None;
    for (mid, kind, direction) in &negotiated.media {
        if !matches!(direction, Direction::SendOnly | Direction::SendRecv) {
            continue;
        }
        let pts = accepted_payload_types(sdp::negotiated_params(&negotiated.rtc, *mid).into_iter(), profile);
        match kind {
            MediaKind::Video if video.is_none() => video = Some(Outgoing::new(*mid, pts)),
            MediaKind::Audio if audio.is_none() => audio = Some(Outgoing::new(*mid, pts)),
            _ => {}
        }
    }
    check_codecs(&snapshot, video.as_ref(), audio.as_ref())?;
    let subscription = webrtc.subscribe(route).await?;
    let ticket = route.admit_viewer(subscription.reader).await?;
    let role = Role::Viewer(Viewer::new(subscription, ticket, video, audio, negotiated.shard));
    webrtc.start_session(negotiated, route.name(), role, remote, slot).await
}

/// A viewer must be able to decode the route's video (or audio, for audio-only routes).
fn check_codecs(
    snapshot: &RouteSnapshot,
    video: Option<&Outgoing>,
    audio: Option<&Outgoing>,
) -> Result<(), WebRtcError> {
    let accepts =
        |out: Option<&Outgoing>, codec: Codec| out.is_some_and(|o| o.payload_types.iter().any(|(c, _)| *c == codec));
    let route_video = snapshot.tracks.iter().find(|t| t.kind == crate::media::MediaKind::Video);
    let route_audio = snapshot.tracks.iter().find(|t| t.kind == crate::media::MediaKind::Audio);
    match (route_video, route_audio) {
        (Some(v), _) if !accepts(video, v.codec) => Err(WebRtcError::NoCommonCodec(format!(
            "the route sends {} video and the offer does not accept it{}",
            v.codec,
            if v.codec == Codec::H264 { " (H.264 with packetization-mode=1)" } else { "" }
        ))),
        (None, Some(a)) if a.codec == Codec::Aac && a.opus_refusal.is_some() => {
            Err(WebRtcError::NoCommonCodec(format!(
                "the route sends AAC audio that WebRTC cannot carry and {}",
                a.opus_refusal.as_deref().unwrap_or("")
            )))
        }
        (None, Some(a)) if !accepts(audio, webrtc_codec(a.codec)) => Err(WebRtcError::NoCommonCodec(format!(
            "the route sends {} audio and the offer does not accept it{}",
            a.codec,
            if a.codec == Codec::Aac { " as Opus, which the router transcodes it to" } else { "" }
        ))),
        (None, None)
            if video.is_none_or(|v| v.payload_types.is_empty()) && audio.is_none_or(|a| a.payload_types.is_empty()) =>
        {
            Err(WebRtcError::NoCommonCodec("the offer accepts none of H.264, VP8, Opus, PCMU, PCMA".into()))
        }
        _ => Ok(()),
    }
}

/// The codec a viewer is sent for a route codec: AAC goes out as Opus (see `crate::transcode`).
fn webrtc_codec(codec: Codec) -> Codec {
    if codec == Codec::Aac { Codec::Opus } else { codec }
}
