//! `from = "rtsp://..."`: pulls an IP camera with retina, reconnecting with backoff for as long as the route
//! wants it.
//!
//! retina owns the protocol (RTSP state machine, RTP/RTCP, depacketizing, camera quirks as named policies); this
//! is the thin driver: connect, pick the streams a route can carry, turn retina's frames into route frames, and
//! retry with exponential backoff and jitter when the camera drops, restarts or refuses us.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions};
use retina::codec::{CodecItem, ParametersRef};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;

use crate::backoff::Backoff;
use crate::config::model::{RtspOptions, redact_url};
use crate::media::h264;
use crate::media::{Codec, CodecParams, Frame, Track, TrackId};
use crate::route::actor::{SourceEvent, SourceFactory, SourceFeed};

/// Connecting (DESCRIBE, SETUP, PLAY) must finish in this time, or it counts as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No frame for this long on a playing session means the camera stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RtspSource {
    url: Url,
    options: RtspOptions,
}

impl RtspSource {
    pub fn new(url: Url, options: RtspOptions) -> Self {
        RtspSource { url, options }
    }
}

impl SourceFactory for RtspSource {
    fn start(&self, feed: SourceFeed) -> JoinHandle<()> {
        tokio::spawn(run(self.clone(), feed))
    }
}

/// Why a session ended: the route stopped us, or the camera failed (with what to tell the user).
enum Ended {
    RouteStopped,
    Failed { error: String, delivered_for: Option<Duration> },
}

async fn run(source: RtspSource, feed: SourceFeed) {
    let name = redact_url(&source.url);
    let mut backoff = Backoff::default();
    let mut last_error: Option<String> = None;
    loop {
        match session(&source, &feed).await {
            Ended::RouteStopped => return,
            Ended::Failed { error, delivered_for } => {
                let wait = backoff.failed(delivered_for);
                // One warning per distinct error, then quiet retries: a camera that is down for a day must not
                // write a line every 30 seconds for a day. retina appends per-connection context (ports, times)
                // after the first line, so errors are compared by that line.
                let kind = error.lines().next().unwrap_or_default().to_string();
                if last_error.as_deref() != Some(kind.as_str()) {
                    tracing::warn!(camera = %name, %error, retry_in_ms = wait.as_millis() as u64, "RTSP source failed; retrying with backoff");
                } else {
                    tracing::debug!(camera = %name, %error, failures = backoff.failures, "RTSP source still failing");
                }
                last_error = Some(kind);
                if !feed.send(SourceEvent::Reconnecting { error }).await {
                    return;
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn session(source: &RtspSource, feed: &SourceFeed) -> Ended {
    let failed = |error: String| Ended::Failed { error, delivered_for: None };
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, connect(source));
    let (mut demuxed, mut tracks) = match connect.await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return failed(e),
        Err(_) => return failed(format!("the camera did not answer within {}s", CONNECT_TIMEOUT.as_secs())),
    };
    if !feed.send(SourceEvent::Connected).await {
        return Ended::RouteStopped;
    }
    let mut announced = false;
    let mut first_frame: Option<Instant> = None;
    // Measured from the last media frame: a camera whose encoder froze may still send RTCP reports.
    let mut stall_at = Instant::now() + STALL_TIMEOUT;
    loop {
        let item = match tokio::time::timeout_at(stall_at, demuxed.next()).await {
            Ok(Some(Ok(item))) => item,
            Ok(Some(Err(e))) => {
                return Ended::Failed { error: e.to_string(), delivered_for: first_frame.map(|t| t.elapsed()) };
            }
            Ok(None) => {
                return Ended::Failed {
                    error: "the camera ended the stream".into(),
                    delivered_for: first_frame.map(|t| t.elapsed()),
                };
            }
            Err(_) => {
                return Ended::Failed {
                    error: format!("no media from the camera for {}s", STALL_TIMEOUT.as_secs()),
                    delivered_for: first_frame.map(|t| t.elapsed()),
                };
            }
        };
        let frame = match item {
            CodecItem::VideoFrame(f) => {
                let Some(slot) = tracks.iter_mut().find(|t| t.stream == f.stream_id()) else { continue };
                if (f.has_new_parameters() || slot.track.is_none())
                    && let Some(ParametersRef::Video(p)) = demuxed.streams()[f.stream_id()].parameters()
                {
                    slot.set_video(p);
                    announced = false;
                }
                let Some(track) = slot.track.clone() else { continue };
                let ts = f.timestamp().elapsed();
                let keyframe = f.is_random_access_point();
                Frame {
                    track,
                    pts: ts,
                    dts: ts,
                    keyframe,
                    data: Bytes::from(f.into_data()),
                    received: std::time::Instant::now(),
                    wallclock: None,
                    forms: Default::default(),
                }
            }
            CodecItem::AudioFrame(f) => {
                let Some(slot) = tracks.iter_mut().find(|t| t.stream == f.stream_id()) else { continue };
                if slot.track.is_none()
                    && let Some(ParametersRef::Audio(p)) = demuxed.streams()[f.stream_id()].parameters()
                {
                    slot.set_audio(p);
                    announced = false;
                }
                let Some(track) = slot.track.clone() else { continue };
                let ts = f.timestamp().elapsed();
                Frame {
                    track,
                    pts: ts,
                    dts: ts,
                    keyframe: true,
                    data: Bytes::copy_from_slice(f.data()),
                    received: std::time::Instant::now(),
                    wallclock: None,
                    forms: Default::default(),
                }
            }
            CodecItem::Rtcp(rtcp) => {
                // Sender reports tie the camera's RTP clock to its wall clock (NTP).
                let Some(ts) = rtcp.rtp_timestamp() else { continue };
                let Some(slot) = tracks.iter().find(|t| t.stream == rtcp.stream_id()) else { continue };
                let sr = rtcp.pkts().find_map(|p| p.as_sender_report().ok().flatten());
                if let Some(sr) = sr
                    && let Some(wallclock) = ntp_to_system_time(sr.ntp_timestamp().0)
                    && !feed.send(SourceEvent::Clock { track: slot.id, pts: ts.elapsed(), wallclock }).await
                {
                    return Ended::RouteStopped;
                }
                continue;
            }
            _ => continue,
        };
        if !announced {
            announced = true;
            let list: Vec<Arc<Track>> = tracks.iter().filter_map(|t| t.track.clone()).collect();
            if !feed.send(SourceEvent::Tracks(list)).await {
                return Ended::RouteStopped;
            }
        }
        first_frame.get_or_insert_with(Instant::now);
        stall_at = Instant::now() + STALL_TIMEOUT;
        if !feed.send(SourceEvent::Frame(frame)).await {
            return Ended::RouteStopped;
        }
    }
}

/// One stream of the camera that the route carries.
struct PulledTrack {
    stream: usize,
    id: TrackId,
    codec: Codec,
    track: Option<Arc<Track>>,
}

impl PulledTrack {
    fn set_video(&mut self, p: &retina::codec::VideoParameters) {
        let (w, h) = p.pixel_dimensions();
        let params = match self.codec {
            Codec::H264 => match h264::parse_avc_decoder_config(p.extra_data()) {
                Ok((sps, pps)) => CodecParams::H264 { sps, pps },
                Err(_) => CodecParams::None,
            },
            Codec::H265 => match h264::parse_hevc_decoder_config(p.extra_data()) {
                Ok((vps, sps, pps)) => CodecParams::H265 { vps, sps, pps },
                Err(_) => CodecParams::None,
            },
            _ => CodecParams::None,
        };
        let description = format!("{w}x{h} {}", p.rfc6381_codec());
        self.track = Some(Arc::new(Track { id: self.id, codec: self.codec, clock_rate: 90_000, params, description }));
    }

    fn set_audio(&mut self, p: &retina::codec::AudioParameters) {
        let params = match self.codec {
            Codec::Aac => CodecParams::Aac { audio_specific_config: Bytes::copy_from_slice(p.extra_data()) },
            _ => CodecParams::None,
        };
        let description = format!("{} Hz, {} ch", p.clock_rate(), p.channels());
        self.track =
            Some(Arc::new(Track { id: self.id, codec: self.codec, clock_rate: p.clock_rate(), params, description }));
    }
}

/// The route codec for a camera stream, or why it is not carried.
fn stream_codec(media: &str, encoding: &str) -> Result<Codec, String> {
    match (media, encoding) {
        ("video", "h264") => Ok(Codec::H264),
        ("video", "h265") => Ok(Codec::H265),
        ("audio", "mpeg4-generic") => Ok(Codec::Aac),
        ("audio", "pcmu") => Ok(Codec::Pcmu),
        ("audio", "pcma") => Ok(Codec::Pcma),
        // retina has no Opus depacketizer; a route that drops the audio says so rather than failing the video.
        ("audio", "opus") => Err("Opus audio over RTSP is not supported (retina cannot depacketize it)".into()),
        (m, e) => Err(format!("{m} in {e} is not carried by routes")),
    }
}

async fn connect(source: &RtspSource) -> Result<(retina::client::Demuxed, Vec<PulledTrack>), String> {
    let o = &source.options;
    let mut url = source.url.clone();
    let creds = (!url.username().is_empty()).then(|| retina::client::Credentials {
        username: percent_decode(url.username()),
        password: percent_decode(url.password().unwrap_or_default()),
    });
    // retina takes credentials separately; they must not also travel in the request URL.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let options = SessionOptions::default()
        .creds(creds)
        .user_agent(format!("Sluice/{}", env!("CARGO_PKG_VERSION")))
        .teardown(o.teardown.parse().map_err(|e: retina::Error| e.to_string())?)
        .unassigned_channel_data(o.unassigned_channel_data.parse().map_err(|e: retina::Error| e.to_string())?)
        .session_id(o.session_id.parse().map_err(|e: retina::Error| e.to_string())?);
    let mut session = Session::describe(url, options).await.map_err(|e| e.to_string())?;
    let mut tracks = Vec::new();
    let mut skipped = Vec::new();
    for (i, stream) in session.streams().iter().enumerate() {
        let codec = stream_codec(stream.media(), &stream.encoding_name().to_ascii_lowercase());
        let already = tracks
            .iter()
            .any(|t: &PulledTrack| t.codec.kind() == codec.as_ref().map(|c| c.kind()).unwrap_or(t.codec.kind()));
        match codec {
            // One video and one audio track: the first of each kind the camera offers.
            Ok(c) if !already => tracks.push(PulledTrack { stream: i, id: TrackId(i as u32), codec: c, track: None }),
            Ok(_) => {}
            Err(why) => skipped.push(why),
        }
    }
    if tracks.is_empty() {
        return Err(format!("the camera offers no stream a route can carry: {}", skipped.join("; ")));
    }
    for why in &skipped {
        tracing::info!(camera = %redact_url(&source.url), "skipping a stream: {why}");
    }
    for t in &tracks {
        let transport = o.transport.parse().map_err(|e: retina::Error| e.to_string())?;
        session.setup(t.stream, SetupOptions::default().transport(transport)).await.map_err(|e| e.to_string())?;
    }
    // No timestamp enforcement in retina: some servers step back a frame for late joiners (gst-rtsp-server's
    // shared media does), and the route's timeline already keeps what readers see monotonic.
    let play = PlayOptions::default()
        .initial_timestamp(o.initial_timestamp.parse().map_err(|e: retina::Error| e.to_string())?)
        .initial_seq(o.initial_seq.parse().map_err(|e: retina::Error| e.to_string())?)
        .unknown_rtcp_ssrc(o.unknown_rtcp_ssrc.parse().map_err(|e: retina::Error| e.to_string())?);
    let playing = session.play(play).await.map_err(|e| e.to_string())?;
    let demuxed = playing.demuxed().map_err(|e| e.to_string())?;
    Ok((demuxed, tracks))
}

/// URL userinfo is percent-encoded (RFC 3986), where '+' is a literal plus, not a space as in forms.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// NTP time (seconds since 1900 in the upper 32 bits, fraction in the lower) as system time.
fn ntp_to_system_time(ntp: u64) -> Option<std::time::SystemTime> {
    const UNIX_EPOCH_AS_NTP_SECS: u64 = 2_208_988_800;
    let secs = (ntp >> 32).checked_sub(UNIX_EPOCH_AS_NTP_SECS)?;
    let nanos = ((ntp & 0xffff_ffff) * 1_000_000_000) >> 32;
    std::time::UNIX_EPOCH.checked_add(Duration::new(secs, nanos as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_timestamps_map_to_unix_time() {
        let ntp = ((2_208_988_800u64 + 1_700_000_000) << 32) | (1u64 << 31);
        let t = ntp_to_system_time(ntp).expect("valid");
        assert_eq!(t.duration_since(std::time::UNIX_EPOCH).ok(), Some(Duration::from_millis(1_700_000_000_500)));
        assert_eq!(ntp_to_system_time(5 << 32), None, "before 1970");
    }

    #[test]
    fn passwords_keep_their_plus_signs() {
        assert_eq!(percent_decode("p%40ss+w0rd"), "p@ss+w0rd");
    }

    #[test]
    fn camera_codecs() {
        assert_eq!(stream_codec("video", "h264"), Ok(Codec::H264));
        assert_eq!(stream_codec("audio", "pcma"), Ok(Codec::Pcma));
        assert!(stream_codec("audio", "opus").is_err_and(|e| e.contains("Opus")));
        assert!(stream_codec("application", "vnd.onvif.metadata").is_err());
    }
}
