//! `from = "rtsp"`: an RTSP publisher (ffmpeg `-f rtsp`, GStreamer `rtspclientsink`, a camera pushing) feeding
//! its route. The RTSP port's driver (`listen::rtsp`) admits it at ANNOUNCE, sets up its streams and, at RECORD,
//! starts this; then it hands over each RTP and RTCP packet, from the interleaved channels or UDP.
//!
//! Packets are depacketized per stream (`media::depacketize`) into route frames. Each stream's RTP clock starts
//! at a random value, so the streams are put on one timeline by when their first packet arrived; a publisher's
//! sender reports give the frames their wall-clock time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::admit::Admitted;
use crate::media::depacketize::{Depacketizer, Unit};
use crate::media::{Codec, CodecParams, Frame, Track, TrackId, h264, h265};
use crate::route::{RouteError, SourceEvent, SourceFeed};
use crate::rtsp::packet::{parse_rtp, parse_sender_report};
use crate::rtsp::sdp::Announced;

/// One announced stream, as it is received.
#[derive(Debug)]
struct Stream {
    track: Arc<Track>,
    payload_type: u8,
    /// The sender the stream is taken from: the first SSRC seen, until another one sends alone for a while.
    ssrc: Option<u32>,
    /// Another SSRC and how many packets it sent in a row with none from `ssrc` between.
    other: Option<(u32, u32)>,
    depacketizer: Depacketizer,
    codec: Codec,
    fmtp: Option<String>,
    /// The first packet's extended RTP timestamp, and the route time it maps to.
    zero: Option<(i64, i64)>,
    /// The last extended timestamp out of the depacketizer, to place sender reports on the route's timeline.
    last: Option<(u32, i64)>,
    /// The stream restarted (a sequence jump, a new SSRC): its next frame goes just after this one.
    rebased_after: Option<i64>,
}

/// A recording connection's side of its route.
#[derive(Debug)]
pub struct RtspPublisher {
    pub route: String,
    feed: SourceFeed,
    /// By the SDP's order, as the driver numbers them; `None` for a stream that cannot be depacketized.
    streams: Vec<Option<Stream>>,
    started: Instant,
}

/// Why a packet ended the publisher.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("another publisher replaced this one, or the route ended")]
    Replaced,
}

impl RtspPublisher {
    /// Takes the route's publisher slot for the announced streams (all of them, in SDP order: stream `i` of the
    /// driver is `streams[i]`).
    pub async fn start(
        admitted: Admitted,
        peer: SocketAddr,
        streams: &[Announced],
    ) -> Result<RtspPublisher, RouteError> {
        let feed = admitted.route.attach_publisher(Some(peer.to_string()), admitted.config.override_publisher).await?;
        let streams: Vec<Option<Stream>> = streams
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let depacketizer = Depacketizer::new(a.codec, a.fmtp.as_deref()).ok()?;
                let description = match &a.params {
                    CodecParams::H264 { sps, .. } => h264::parse_sps(sps).map(|i| i.describe()).unwrap_or_default(),
                    _ => String::new(),
                };
                let track = Arc::new(Track {
                    id: TrackId(i as u32),
                    codec: a.codec,
                    clock_rate: a.clock_rate,
                    params: a.params.clone(),
                    description,
                });
                Some(Stream {
                    track,
                    payload_type: a.payload_type,
                    ssrc: None,
                    other: None,
                    depacketizer,
                    codec: a.codec,
                    fmtp: a.fmtp.clone(),
                    zero: None,
                    last: None,
                    rebased_after: None,
                })
            })
            .collect();
        let tracks = streams.iter().flatten().map(|s| Arc::clone(&s.track)).collect();
        let _ = feed.send(SourceEvent::Tracks(tracks)).await;
        Ok(RtspPublisher { route: admitted.config.name.to_string(), feed, streams, started: Instant::now() })
    }

    /// One RTP packet of stream `index`. Malformed packets are dropped (UDP may carry anything); a frame the
    /// route will not take ends the publisher.
    pub async fn rtp(&mut self, index: usize, packet: Bytes) -> Result<(), PublishError> {
        let Some(Some(stream)) = self.streams.get_mut(index) else { return Ok(()) };
        let Some(rtp) = parse_rtp(&packet) else { return Ok(()) };
        if rtp.payload_type != stream.payload_type || !stream.accepts(rtp.ssrc) {
            return Ok(());
        }
        let payload = packet.slice(rtp.payload.0..rtp.payload.1);
        if let Err(e) = stream.depacketizer.push(rtp.seq, rtp.timestamp, rtp.marker, payload) {
            tracing::debug!(route = %self.route, error = %e, "RTSP publisher packet dropped");
        }
        let started = self.started;
        let mut frames = Vec::new();
        while let Some(unit) = stream.depacketizer.pull() {
            frames.extend(stream.frame(unit, started));
        }
        for frame in frames {
            if !self.feed.send(SourceEvent::Frame(frame)).await {
                return Err(PublishError::Replaced);
            }
        }
        Ok(())
    }

    /// One RTCP packet of stream `index`: a sender report dates the stream's frames in wall-clock time.
    pub async fn rtcp(&mut self, index: usize, packet: &[u8]) -> Result<(), PublishError> {
        let Some(Some(stream)) = self.streams.get(index) else { return Ok(()) };
        let (Some((rtp_ts, wallclock)), Some((last_raw, last_pts)), Some(_)) =
            (parse_sender_report(packet), stream.last, stream.zero)
        else {
            return Ok(());
        };
        let pts = last_pts + i64::from(rtp_ts.wrapping_sub(last_raw) as i32);
        let event = SourceEvent::Clock { track: stream.track.id, pts, wallclock };
        if self.feed.send(event).await { Ok(()) } else { Err(PublishError::Replaced) }
    }

    /// How many packets the publisher's streams lost so far.
    pub fn lost(&self) -> u64 {
        self.streams.iter().flatten().map(|s| s.depacketizer.lost()).sum()
    }

    /// The connection ended without TEARDOWN: tells the route why (its `last_error`).
    pub async fn gone(self, why: &str) {
        let error = format!("the publisher went without ending its stream ({why})");
        let _ = self.feed.send(SourceEvent::Problem { error }).await;
    }
}

/// Packets a new SSRC must send in a row, with none from the current one, to take the stream over (an encoder
/// that restarted with a new SSRC); a stray packet or two from elsewhere changes nothing.
const SSRC_TAKEOVER: u32 = 16;

impl Stream {
    /// Whether a packet from `ssrc` belongs to the stream. The first SSRC is the stream's; another one takes over
    /// after [`SSRC_TAKEOVER`] packets in a row, with the depacketizer started afresh and its frames placed
    /// after what the stream sent so far.
    fn accepts(&mut self, ssrc: u32) -> bool {
        let current = *self.ssrc.get_or_insert(ssrc);
        if ssrc == current {
            self.other = None;
            return true;
        }
        let run = match self.other {
            Some((other, n)) if other == ssrc => n + 1,
            _ => 1,
        };
        self.other = Some((ssrc, run));
        if run < SSRC_TAKEOVER {
            return false;
        }
        let Ok(fresh) = Depacketizer::new(self.codec, self.fmtp.as_deref()) else { return false };
        self.depacketizer = fresh;
        self.ssrc = Some(ssrc);
        self.other = None;
        self.rebase();
        true
    }

    /// The stream's next unit starts a new RTP timeline: it is placed just after the last frame.
    fn rebase(&mut self) {
        self.zero = None;
        self.rebased_after = self.last.map(|(_, pts)| pts);
    }

    /// A depacketized unit as a route frame on the route's timeline.
    fn frame(&mut self, unit: Unit, started: Instant) -> Option<Frame> {
        let clock = i64::from(self.track.clock_rate);
        if unit.restarted {
            self.rebase();
        }
        let after = self.rebased_after.take();
        let (zero_ts, zero_pts) = *self.zero.get_or_insert_with(|| match after {
            // Continuing after a restart: one tick past the last frame (the route keeps the timeline monotonic).
            Some(pts) => (unit.timestamp, pts + 1),
            // This stream starts where the publisher's session is now, so streams that began together line up.
            None => (unit.timestamp, (started.elapsed().as_secs_f64() * clock as f64) as i64),
        });
        let pts = zero_pts + (unit.timestamp - zero_ts);
        self.last = Some((unit.timestamp as u32, pts));
        let data = match self.track.codec {
            Codec::H264 => self.video_payload(&unit.parts, h264::nal_type, |t| t == h264::NAL_AUD)?,
            Codec::H265 => self.video_payload(&unit.parts, h265::nal_type, |t| t == h265::NAL_AUD)?,
            // Audio comes out as slices of the connection's read buffer: copied, so a GOP's worth of audio in
            // the route does not hold every buffer its video arrived in.
            _ => Bytes::copy_from_slice(unit.parts.first()?),
        };
        // RTP carries presentation times only: frames with B-frames reach the route out of decode order, which
        // the route counts (`reordered_video`).
        Some(Frame::new(Arc::clone(&self.track), pts, pts, unit.keyframe, data))
    }

    /// The picture as length-prefixed NAL units, without access unit delimiters; parameter sets sent in-band
    /// update the track, so readers joining later get them.
    fn video_payload(&mut self, nals: &[Bytes], nal_type: fn(&[u8]) -> u8, skip: fn(u8) -> bool) -> Option<Bytes> {
        let params = match self.track.codec {
            Codec::H264 => {
                let find = |t| nals.iter().find(|n| nal_type(n) == t).cloned();
                match (find(h264::NAL_SPS), find(h264::NAL_PPS)) {
                    (Some(sps), Some(pps)) => Some(CodecParams::H264 { sps, pps }),
                    _ => None,
                }
            }
            _ => {
                let find = |t| nals.iter().find(|n| nal_type(n) == t).cloned();
                match (find(h265::NAL_VPS), find(h265::NAL_SPS), find(h265::NAL_PPS)) {
                    (Some(vps), Some(sps), Some(pps)) => Some(CodecParams::H265 { vps, sps, pps }),
                    _ => None,
                }
            }
        };
        if let Some(params) = params
            && params != self.track.params
        {
            let description = match &params {
                CodecParams::H264 { sps, .. } => h264::parse_sps(sps).map(|i| i.describe()).unwrap_or_default(),
                _ => String::new(),
            };
            self.track = Arc::new(Track { params, description, ..(*self.track).clone() });
        }
        let kept: Vec<&[u8]> = nals.iter().map(|n| &n[..]).filter(|n| !skip(nal_type(n))).collect();
        (!kept.is_empty()).then(|| h264::to_avcc(kept))
    }
}
